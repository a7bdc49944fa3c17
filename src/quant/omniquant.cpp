#include "lcq/quant/omniquant.h"

#include "per_linear_method.h"

namespace lcq::quant {

namespace {

torch::Tensor round_ste(const torch::Tensor& x) { return x + (torch::round(x) - x).detach(); }

}  // namespace

LwcLinear::LwcLinear(const torch::Tensor& W, const LcqOptions& o, double init) : o_(o) {
  validate(o);
  torch::NoGradGuard ng;
  gw_ = GroupedWeight::make(W.detach().to(torch::kFloat32), o.group);
  wmax_ = std::get<0>(gw_.w.max(-1));  // the padded tail repeats a real value: min/max unchanged
  wmin_ = std::get<0>(gw_.w.min(-1));
  a_ = torch::full_like(wmax_, init).set_requires_grad(true);
  b_ = torch::full_like(wmin_, init).set_requires_grad(true);
}

UniformGrid LwcLinear::grid() const {
  const double qmax = double((1 << o_.bits) - 1);
  const auto hi = torch::sigmoid(a_) * wmax_, lo = torch::sigmoid(b_) * wmin_;
  UniformGrid g;
  g.scale = ((hi - lo) / qmax).clamp_min(1e-5);  // the official code's floor
  g.zero = round_ste(-lo / g.scale).clamp(-1e4, 1e4);
  return g;
}

torch::Tensor LwcLinear::weight() const {
  const double qmax = double((1 << o_.bits) - 1);
  const UniformGrid g = grid();
  const auto h = g.scale.unsqueeze(-1), z = g.zero.unsqueeze(-1);
  const auto q = torch::clamp(round_ste(gw_.w / h) + z, 0, qmax);
  return gw_.ungroup(q * h - h * z);
}

CodebookLayer LwcLinear::finalize() const {
  torch::NoGradGuard ng;
  const UniformGrid g = grid();
  const auto codes = gw_.ungroup(quantize_codes(gw_, g, o_.bits));
  return uniform_layer(codes, g, o_.bits, gw_.group, o_.dq_bits, o_.dq_group);
}

std::unique_ptr<BlockMethod> make_omniquant_method(const LcqOptions& o, double lr, bool train) {
  return std::make_unique<detail::PerLinearMethod<LwcLinear>>(
      [o](int, const std::string&, const torch::Tensor& W, const torch::Tensor&) { return LwcLinear(W, o); },
      std::vector<double>{lr}, train);
}

}  // namespace lcq::quant
