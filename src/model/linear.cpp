#include "lcq/model/linear.h"

#include "lcq/core/error.h"

#include <torch/torch.h>

namespace lcq::model {

torch::Tensor ActQuant::apply(const torch::Tensor& x) const {
  if (bits <= 0) return x;
  if (scheme == Scheme::PerTensorStatic) {
    // Symmetric signed grid with a calibrated scale; straight-through rounding.
    const double qmax = double((1 << (bits - 1)) - 1);
    auto q = torch::clamp(torch::round(x / static_scale), -qmax - 1, qmax);
    return x + (q * static_scale - x).detach();
  }
  // Per-token (last dimension) dynamic asymmetric min-max.
  const double levels = double((1 << bits) - 1);
  auto xmin = std::get<0>(x.min(-1, true)).clamp_max(0);
  auto xmax = std::get<0>(x.max(-1, true)).clamp_min(0);
  auto scale = ((xmax - xmin) / levels).clamp_min(1e-8);
  auto zero = torch::round(-xmin / scale);
  auto q = torch::clamp(torch::round(x / scale) + zero, 0, levels);
  return x + ((q - zero) * scale - x).detach();
}

int64_t Linear::in_features() const { return weight.size(1); }
int64_t Linear::out_features() const { return weight.size(0); }

namespace {
thread_local LinearInputTap::Fn* g_tap = nullptr;
}  // namespace

LinearInputTap::LinearInputTap(Fn fn) {
  LCQ_CHECK(g_tap == nullptr, "LinearInputTap: taps do not nest");
  g_tap = new Fn(std::move(fn));
}

LinearInputTap::~LinearInputTap() {
  delete g_tap;
  g_tap = nullptr;
}

torch::Tensor Linear::forward(const torch::Tensor& x) const {
  if (g_tap) (*g_tap)(*this, x);
  torch::Tensor in = input_quant ? input_quant->apply(x) : x;
  torch::Tensor y = bias.defined() ? torch::nn::functional::linear(in, weight, bias)
                                   : torch::nn::functional::linear(in, weight);
  return output_quant ? output_quant->apply(y) : y;
}

torch::Tensor Linear::dense_weight() const { return weight; }

}  // namespace lcq::model
