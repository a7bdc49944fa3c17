// OmniQuant's learnable weight clipping (LWC; METHODS.md section 3), weight-only: each group's
// range is shrunk by learned factors, gamma = sigmoid(a) on the max and beta = sigmoid(b) on
// the min (a = b = 4 at the start, so gamma = beta = 0.982), then
//   h = (gamma max - beta min) / (K-1),  z = round(-beta min / h),
//   q = clamp(round(w / h) + z, 0, K-1),  w_hat = h (q - z)
// with straight-through rounding, trained on the block reconstruction loss. The stored layer
// is the rank-one grid (h, z) with those codes. LET (equivalent transformation) is not here.
#pragma once

#include "lcq/quant/lcq.h"
#include "lcq/quant/reconstruct.h"

#include <torch/torch.h>

#include <memory>

namespace lcq::quant {

class LwcLinear {
 public:
  LwcLinear(const torch::Tensor& W, const LcqOptions& o, double init = 4.0);

  std::vector<std::vector<torch::Tensor>> parameter_sets() { return {{a_, b_}}; }
  torch::Tensor weight() const;  // [m, n], differentiable in a and b
  CodebookLayer finalize() const;

 private:
  UniformGrid grid() const;  // h and z (differentiable, z rounded straight-through)

  LcqOptions o_;
  GroupedWeight gw_;
  torch::Tensor wmax_, wmin_;  // [m, G], fixed
  torch::Tensor a_, b_;        // [m, G]
};

// The block method for --method omniquant; lr is Adam's learning rate (the paper: 1e-2).
std::unique_ptr<BlockMethod> make_omniquant_method(const LcqOptions& o, double lr, bool train);

}  // namespace lcq::quant
