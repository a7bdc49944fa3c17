#include "lcq/quant/uniform.h"

#include <ATen/Parallel.h>

#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/kernels/clip_search.h"
#include "lcq/quant/lcq.h"

#include <torch/torch.h>

#include <algorithm>

namespace lcq::quant {

using torch::indexing::Slice;

GroupedWeight GroupedWeight::make(const torch::Tensor& W, int64_t group) {
  LCQ_CHECK(W.dim() == 2, "group quantization needs a 2-D weight");
  LCQ_CHECK(group >= 1, "group size must be >= 1, got {}", group);
  GroupedWeight gw;
  const int64_t m = W.size(0), n = W.size(1);
  gw.cols = n;
  gw.group = std::min(group, n);
  const int64_t G = (n + gw.group - 1) / gw.group, padded = G * gw.group;
  torch::Tensor w = W.to(torch::kFloat32);
  if (padded != n) {
    w = torch::cat({w, w.index({Slice(), Slice(n - 1, n)}).expand({m, padded - n})}, 1);
    gw.mask = (torch::arange(padded) < n).reshape({G, gw.group});
  }
  gw.w = w.reshape({m, G, gw.group});
  return gw;
}

torch::Tensor GroupedWeight::ungroup(const torch::Tensor& g) const {
  return g.reshape({g.size(0), -1}).index({Slice(), Slice(0, cols)});
}

UniformGrid minmax_grid(const GroupedWeight& gw, int bits, double shrink) {
  const double qmax = double((1 << bits) - 1);
  auto wmax = std::get<0>(gw.w.max(-1)) * shrink;
  auto wmin = std::get<0>(gw.w.min(-1)) * shrink;
  UniformGrid g;
  // A group whose values are all equal gets a tiny positive scale (no division by zero).
  g.scale = ((wmax - wmin) / qmax).clamp_min(1e-8);
  g.zero = torch::clamp(torch::round(-wmin / g.scale), 0, qmax);
  return g;
}

UniformGrid mse_grid(const GroupedWeight& gw, int bits, int steps, double min_shrink, double norm) {
  return weighted_mse_grid(gw, bits, torch::Tensor(), steps, min_shrink, norm);
}

UniformGrid weighted_mse_grid(const GroupedWeight& gw, int bits, const torch::Tensor& column_weight, int steps,
                              double min_shrink, double norm) {
  torch::NoGradGuard ng;
  torch::Tensor cw;  // per column, or undefined
  if (column_weight.defined()) {
    LCQ_CHECK(column_weight.dim() == 1 && column_weight.size(0) == gw.cols, "column weights: {} values for {} columns",
              column_weight.numel(), gw.cols);
    cw = column_weight.to(torch::kFloat32).contiguous();
  }
  const float* cp = cw.defined() ? cw.data_ptr<float>() : nullptr;
  // One group at a time (kernels/clip_search.h); the padding of a ragged last group (a copy
  // of the row's last column) is left out.
  const torch::Tensor w = gw.w.contiguous();
  const int64_t m = w.size(0), G = w.size(1), g = w.size(2);
  UniformGrid best{torch::empty({m, G}, torch::kFloat32), torch::empty({m, G}, torch::kFloat32)};
  const float* wp = w.data_ptr<float>();
  float* sp = best.scale.data_ptr<float>();
  float* zp = best.zero.data_ptr<float>();
  at::parallel_for(0, m * G, 64, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t c0 = (k % G) * g, n = std::min(g, gw.cols - c0);
      const kernels::ClipChoice r = kernels::search_clipping(wp + k * g, cp ? cp + c0 : nullptr, n,
                                                             bits, steps, min_shrink, norm);
      sp[k] = r.scale;
      zp[k] = r.zero;
    }
  });
  return best;
}

torch::Tensor quantize_codes(const GroupedWeight& gw, const UniformGrid& grid, int bits) {
  const double qmax = double((1 << bits) - 1);
  return torch::clamp(torch::round(gw.w / grid.scale.unsqueeze(-1)) + grid.zero.unsqueeze(-1), 0, qmax);
}

torch::Tensor fake_quantize(const GroupedWeight& gw, const UniformGrid& grid, int bits) {
  // scale*q - scale*zero: the codebook form C = S V - B, so that RTN and a rank-one
  // codebook with V = [0..K-1] agree bit for bit.
  auto q = quantize_codes(gw, grid, bits);
  auto s = grid.scale.unsqueeze(-1);
  return gw.ungroup(q * s - s * grid.zero.unsqueeze(-1));
}

CodebookLayer to_codebook(const GroupedWeight& gw, const UniformGrid& grid, int bits) {
  CodebookLayer L;
  L.rows = gw.w.size(0);
  L.cols = gw.cols;
  L.bits = bits;
  L.group = int(gw.group);
  L.rank = 1;
  auto codes = gw.ungroup(quantize_codes(gw, grid, bits)).to(torch::kUInt8).contiguous();
  L.indices.assign(codes.data_ptr<uint8_t>(), codes.data_ptr<uint8_t>() + codes.numel());
  auto s = grid.scale.contiguous();
  auto b = (grid.scale * grid.zero).contiguous();
  L.s_f32.assign(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
  L.b_f32.assign(b.data_ptr<float>(), b.data_ptr<float>() + b.numel());
  L.dq_bits = 0;
  for (int t = 0; t < (1 << bits); ++t) L.v.push_back(f32_to_f16(float(t)));
  return L;
}

CodebookLayer uniform_layer(const torch::Tensor& codes, const UniformGrid& grid, int bits, int64_t group,
                            int dq_bits, int dq_group) {
  torch::NoGradGuard ng;
  CodebookLayer L;
  L.rows = codes.size(0);
  L.cols = codes.size(1);
  L.bits = bits;
  L.group = int(std::min(group, L.cols));
  L.rank = 1;
  L.dq_bits = dq_bits;
  L.dq_group = dq_group;
  LCQ_CHECK(grid.scale.size(0) == L.rows && grid.scale.size(1) == L.groups_per_row(),
            "internal: grid of [{}, {}] for {} rows of {} groups", grid.scale.size(0), grid.scale.size(1), L.rows,
            L.groups_per_row());
  auto c = codes.to(torch::kUInt8).contiguous();
  L.indices.assign(c.data_ptr<uint8_t>(), c.data_ptr<uint8_t>() + c.numel());
  auto s = grid.scale.to(torch::kFloat32).contiguous();
  auto b = (grid.scale * grid.zero).to(torch::kFloat32).contiguous();
  const int64_t G = L.n_groups();
  if (dq_bits > 0) {
    const int64_t NB = L.n_dq_blocks();
    L.s_codes.resize(size_t(G));
    L.s_scale.resize(size_t(NB));
    L.s_offset.resize(size_t(NB));
    L.b_codes.resize(size_t(G));
    L.b_scale.resize(size_t(NB));
    L.b_offset.resize(size_t(NB));
    double_quantize(s.data_ptr<float>(), G, dq_bits, dq_group, L.s_codes.data(), L.s_scale.data(), L.s_offset.data());
    double_quantize(b.data_ptr<float>(), G, dq_bits, dq_group, L.b_codes.data(), L.b_scale.data(), L.b_offset.data());
  } else {
    L.s_f32.assign(s.data_ptr<float>(), s.data_ptr<float>() + G);
    L.b_f32.assign(b.data_ptr<float>(), b.data_ptr<float>() + G);
  }
  for (int t = 0; t < (1 << bits); ++t) L.v.push_back(f32_to_f16(float(t)));
  L.validate("uniform layer");
  return L;
}

}  // namespace lcq::quant
