// Rank-one (uniform, asymmetric) group quantization: the grid of RTN, GPTQ, AWQ and
// OmniQuant, and the starting point of LCQ. A weight w of group k becomes
//   q = clamp(round(w / scale_k) + zero_k, 0, K-1),   w_hat = scale_k * (q - zero_k)
// which is the LCQ codebook C = S^T V - B with r = 1, V = [0..K-1], S = scale, B = scale*zero.
// Groups are `group` consecutive input columns of a row; the last group may be shorter.
#pragma once

#include "lcq/kernels/codebook_layer.h"

#include <torch/types.h>

namespace lcq::quant {

// W [m, n] viewed as [m, G, group] with the ragged tail padded by repeating the row's last
// column (so min/max are unchanged); `mask` [G, group] marks real entries (undefined if none
// padded).
struct GroupedWeight {
  torch::Tensor w, mask;
  int64_t cols = 0, group = 0;
  static GroupedWeight make(const torch::Tensor& W, int64_t group);
  torch::Tensor ungroup(const torch::Tensor& g) const;  // [m, G, group] -> [m, n]
};

struct UniformGrid {
  torch::Tensor scale, zero;  // [m, G] float; zero holds integers in [0, K-1]
};

// Min-max grid; `shrink` in (0, 1] scales the range (1 = plain RTN).
UniformGrid minmax_grid(const GroupedWeight& gw, int bits, double shrink = 1.0);
// Per-group clipping search: the shrink (of `steps` on (min_shrink, 1]) minimising the
// group's squared quantization error.
UniformGrid mse_grid(const GroupedWeight& gw, int bits, int steps = 100, double min_shrink = 0.2, double norm = 2.4);
// The same search with each column's error weighted by `column_weight` [cols] (> 0), e.g. the
// mean squared activation the column meets (what llama.cpp's importance matrix holds).
UniformGrid weighted_mse_grid(const GroupedWeight& gw, int bits, const torch::Tensor& column_weight, int steps = 100,
                              double min_shrink = 0.2, double norm = 2.4);

torch::Tensor quantize_codes(const GroupedWeight& gw, const UniformGrid& grid, int bits);  // [m, G, group]
torch::Tensor fake_quantize(const GroupedWeight& gw, const UniformGrid& grid, int bits);   // [m, n]

// The grid as an LCQ codebook layer (rank 1, V = [0..K-1], parameters in f32: dq_bits = 0).
CodebookLayer to_codebook(const GroupedWeight& gw, const UniformGrid& grid, int bits);

// A rank-one layer with the given codes [m, n] (integers in [0, 2^bits)) and per-group grid
// ([m, G]): S = scale and B = scale * zero, double-quantized to dq_bits (0 = f32) in blocks of
// dq_group groups. The codes are kept as they are (a learned rounding is not re-assigned to
// the nearest entry). Used by the methods that learn the rounding or the range.
CodebookLayer uniform_layer(const torch::Tensor& codes, const UniformGrid& grid, int bits, int64_t group,
                            int dq_bits, int dq_group);

}  // namespace lcq::quant
