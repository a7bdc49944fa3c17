// LCQ: a learned low-rank codebook per linear layer (METHODS.md section 1).
//
// Weight W [m, n] in groups of `group` columns (G = m * ceil(n / group) groups). Group k
// has K = 2^bits codebook values C[k] = sum_r S[r, k] V[r, :] - B[k], and each weight is
// replaced by its nearest value. Training sees S = S~ * s0 and B = B~ * s0 with s0 the
// initial per-group scale (reparameterization), so S~ and B~ are order one.
#pragma once

#include "lcq/kernels/codebook_layer.h"
#include "lcq/quant/uniform.h"

#include <torch/torch.h>

#include <string>

namespace lcq::quant {

// How dL/dC is formed from dL/dW_hat. kGather: W_hat = C[k, q] with the assignment q held
// fixed within a step, so each entry collects the gradients of the weights assigned to it
// (the project's reading of the paper). Kept switchable so alternatives can be compared.
enum class CodebookGradient { kGather };

struct LcqOptions {
  int bits = 2;
  int group = 128;
  int rank = 2;
  std::string init = "mse";  // rank-one start: rtn (min-max) | mse (clipping search)
  double v_init = 0.5;       // extra rows of V start uniform in [-v_init, v_init]
  int dq_bits = 8;           // double quantization of S and B; 0 = keep f32
  int dq_group = 64;
  CodebookGradient gradient = CodebookGradient::kGather;
};

// Checks the options; throws lcq::Error with a message for the user.
void validate(const LcqOptions& o);

class LcqLinear {
 public:
  // W: the full-precision weight [m, n]. `gen` seeds the extra rows of V.
  LcqLinear(const torch::Tensor& W, const LcqOptions& o, torch::Generator gen);

  torch::Tensor codebook() const;                       // [m, Gr, K], differentiable
  torch::Tensor assign(const torch::Tensor& C) const;   // nearest entries [m, Gr, g], no grad
  torch::Tensor weight() const;                         // W_hat [m, n], differentiable in S~, B~, V
  torch::Tensor weight(const torch::Tensor& q) const;   // ... with a given assignment [m, Gr, g]

  std::vector<torch::Tensor> scale_parameters() { return {s_tilde_, b_tilde_}; }  // S~, B~
  std::vector<torch::Tensor> codebook_parameters() { return {v_}; }               // V
  // {S~, B~} and {V}: the two learning rates (--lr-scale, --lr-codebook).
  std::vector<std::vector<torch::Tensor>> parameter_sets() { return {scale_parameters(), codebook_parameters()}; }

  // Merges the reparameterization, double-quantizes S and B (opts.dq_bits), rounds V to
  // fp16 and re-assigns every weight to the nearest entry of that final codebook.
  CodebookLayer finalize() const;

  const LcqOptions& options() const { return o_; }

 private:
  LcqOptions o_;
  GroupedWeight gw_;
  torch::Tensor s0_;        // [m, Gr] initial scales (fixed)
  torch::Tensor s_tilde_;   // [r, m, Gr]
  torch::Tensor b_tilde_;   // [m, Gr]
  torch::Tensor v_;         // [r, K]
};

// Nearest-entry assignment against an exact CodebookLayer's own codebook (C++ loop, the
// file's semantics): fills layer.indices from the dense weight W [rows * cols].
void assign_nearest(CodebookLayer& layer, const float* W);

// Double quantization of one parameter row x[0..n) into blocks of `group` values with an
// fp16 scale and offset each (value = offset + scale * code).
void double_quantize(const float* x, int64_t n, int bits, int group, uint8_t* codes, uint16_t* scale,
                     uint16_t* offset);

}  // namespace lcq::quant
