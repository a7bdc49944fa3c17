// FlexRound and LRQ (METHODS.md section 2): learned rounding by element-wise division.
//
// A weight w of group k, column j becomes
//   q = clamp(round(w / (s1[k] * exp(S2[i, j]))) + z[k], 0, K-1),   w_hat = s1[k] * (q - z[k])
// with s1 the learned per-group scale, z the zero point of the initial grid (fixed) and S2
// learned log-scales: a full [m, n] matrix (FlexRound) or L U + r + c (LRQ: L [m, rank] from
// 0, U [rank, n] Kaiming-uniform, r [m] and c [n] from 0). round() passes gradients straight
// through. S2 starts at 0 and s1 = s0 * exp(d) with d from 0, so step 0 is exactly the initial
// grid's RTN. The learned scales only decide the codes: the stored layer is a plain rank-one
// grid (s1, z) with those codes.
#pragma once

#include "lcq/quant/lcq.h"
#include "lcq/quant/reconstruct.h"

#include <torch/torch.h>

#include <memory>

namespace lcq::quant {

struct FlexRoundOptions {
  int64_t lrq_rank = 0;         // LRQ: rank of L U; 0 = lrq_rank_frac * min(m, n)
  double lrq_rank_frac = 0.25;  // the official code's 1024 for 4096-wide layers
};

void validate(const FlexRoundOptions& f);

// The LRQ rank of an m x n layer (at least 1, at most min(m, n)).
int64_t lrq_rank(int64_t m, int64_t n, const FlexRoundOptions& f);

class FlexRoundLinear {
 public:
  // rank 0: FlexRound (full S2); rank >= 1: LRQ. Grid options (bits, group, init, dq) from `o`.
  FlexRoundLinear(const torch::Tensor& W, const LcqOptions& o, int64_t rank, torch::Generator gen,
                  const torch::Tensor& input_energy = {});

  std::vector<std::vector<torch::Tensor>> parameter_sets();  // one set: all learned tensors
  torch::Tensor log_scales() const;                           // S2 [m, n]
  torch::Tensor weight() const;                               // w_hat [m, n], differentiable
  torch::Tensor codes() const;                                // q [m, n], no grad
  CodebookLayer finalize() const;
  int64_t learned_parameters() const;

 private:
  torch::Tensor per_column(const torch::Tensor& per_group) const;  // [m, G] -> [m, n]
  torch::Tensor divided() const;                                   // w / (s1 exp(S2))

  LcqOptions o_;
  int64_t group_ = 0;
  torch::Tensor w_;            // [m, n] f32, fixed
  torch::Tensor s0_, zero_;    // [m, G] initial scale and zero point, fixed
  torch::Tensor d_;            // [m, G] log(s1 / s0)
  torch::Tensor s2_;           // FlexRound: [m, n]
  torch::Tensor l_, u_, r_, c_;  // LRQ: [m, rank], [rank, n], [m, 1], [1, n]
};

// The block method for --method flexround (lrq = false) or lrq; lr is Adam's learning rate.
// With --init wmse the grids are weighted by each block's input energies, measured with
// `inputs_of`'s context (as make_lcq_method does).
std::unique_ptr<BlockMethod> make_flexround_method(const LcqOptions& o, const FlexRoundOptions& f, bool lrq, double lr,
                                                   bool train, uint64_t seed,
                                                   const model::Model* inputs_of = nullptr);

}  // namespace lcq::quant
