#include "lcq/quant/flexround.h"

#include "lcq/core/error.h"
#include "per_linear_method.h"

#include <cmath>

namespace lcq::quant {

void validate(const FlexRoundOptions& f) {
  LCQ_CHECK(f.lrq_rank >= 0, "--lrq-rank must be >= 0 (0 = --lrq-rank-frac of the layer), got {}", f.lrq_rank);
  LCQ_CHECK(f.lrq_rank_frac > 0 && f.lrq_rank_frac <= 1, "--lrq-rank-frac must be in (0, 1], got {}", f.lrq_rank_frac);
}

int64_t lrq_rank(int64_t m, int64_t n, const FlexRoundOptions& f) {
  const int64_t full = std::min(m, n);
  const int64_t r = f.lrq_rank > 0 ? f.lrq_rank : int64_t(std::llround(double(full) * f.lrq_rank_frac));
  return std::max<int64_t>(1, std::min(full, r));
}

namespace {

// round() forward, identity backward.
torch::Tensor round_ste(const torch::Tensor& x) { return x + (torch::round(x) - x).detach(); }

}  // namespace

FlexRoundLinear::FlexRoundLinear(const torch::Tensor& W, const LcqOptions& o, int64_t rank, torch::Generator gen,
                                 const torch::Tensor& input_energy)
    : o_(o) {
  validate(o);
  torch::NoGradGuard ng;
  w_ = W.detach().to(torch::kFloat32).contiguous();
  const GroupedWeight gw = GroupedWeight::make(w_, o.group);
  group_ = gw.group;
  const UniformGrid grid = start_grid(gw, o, input_energy);
  s0_ = grid.scale.clone();
  zero_ = grid.zero.clone();
  d_ = torch::zeros_like(s0_).set_requires_grad(true);
  const int64_t m = w_.size(0), n = w_.size(1);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  if (rank == 0) {
    s2_ = torch::zeros({m, n}, f32).set_requires_grad(true);
  } else {
    // PyTorch's default Linear init (kaiming_uniform with a = sqrt(5)) is U(-1/sqrt(fan_in), +).
    const double bound = 1.0 / std::sqrt(double(n));
    l_ = torch::zeros({m, rank}, f32).set_requires_grad(true);
    u_ = torch::empty({rank, n}, f32).uniform_(-bound, bound, gen).set_requires_grad(true);
    r_ = torch::zeros({m, 1}, f32).set_requires_grad(true);
    c_ = torch::zeros({1, n}, f32).set_requires_grad(true);
  }
}

std::vector<std::vector<torch::Tensor>> FlexRoundLinear::parameter_sets() {
  if (s2_.defined()) return {{d_, s2_}};
  return {{d_, l_, u_, r_, c_}};
}

int64_t FlexRoundLinear::learned_parameters() const {
  int64_t n = d_.numel();
  for (const auto& t : {s2_, l_, u_, r_, c_})
    if (t.defined()) n += t.numel();
  return n;
}

torch::Tensor FlexRoundLinear::per_column(const torch::Tensor& t) const {
  return t.repeat_interleave(group_, 1).slice(1, 0, w_.size(1));
}

torch::Tensor FlexRoundLinear::log_scales() const {
  if (s2_.defined()) return s2_;
  return torch::mm(l_, u_) + r_ + c_;
}

torch::Tensor FlexRoundLinear::divided() const {
  const auto s1 = per_column(s0_ * torch::exp(d_));
  return w_ / (s1 * torch::exp(log_scales()));
}

torch::Tensor FlexRoundLinear::weight() const {
  const double qmax = double((1 << o_.bits) - 1);
  const auto s1 = per_column(s0_ * torch::exp(d_));
  const auto z = per_column(zero_);
  const auto q = torch::clamp(round_ste(divided()) + z, 0, qmax);
  return q * s1 - s1 * z;  // RTN's arithmetic (uniform.cpp), so step 0 equals it bit for bit
}

torch::Tensor FlexRoundLinear::codes() const {
  torch::NoGradGuard ng;
  return torch::clamp(torch::round(divided()) + per_column(zero_), 0, double((1 << o_.bits) - 1));
}

CodebookLayer FlexRoundLinear::finalize() const {
  torch::NoGradGuard ng;
  const UniformGrid grid{s0_ * torch::exp(d_), zero_};
  CodebookLayer l = uniform_layer(codes(), grid, o_.bits, group_, o_.dq_bits, o_.dq_group);
  l.validate(s2_.defined() ? "flexround" : "lrq");
  return l;
}

std::unique_ptr<BlockMethod> make_flexround_method(const LcqOptions& o, const FlexRoundOptions& f, bool lrq, double lr,
                                                   bool train, uint64_t seed, const model::Model* inputs_of) {
  validate(f);
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  auto method = std::make_unique<detail::PerLinearMethod<FlexRoundLinear>>(
      [o, f, lrq, gen](int, const std::string&, const torch::Tensor& W, const torch::Tensor& energy) {
        return FlexRoundLinear(W, o, lrq ? lrq_rank(W.size(0), W.size(1), f) : 0, gen, energy);
      },
      std::vector<double>{lr}, train, gen);
  if (o.init == LcqInit::kWmse && inputs_of) method->weigh_inputs(detail::exact_context(*inputs_of));
  return method;
}

}  // namespace lcq::quant
