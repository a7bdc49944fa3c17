#include "lcq/quant/lcq.h"

#include <ATen/Parallel.h>

#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/core/named.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lcq::quant {

namespace {

// Index of the entry of cb[0..K) nearest to w; the first one on ties (as argmin).
inline int64_t nearest_entry(float w, const float* cb, int64_t K) {
  int64_t at = 0;
  float best = std::fabs(w - cb[0]);
  for (int64_t e = 1; e < K; ++e) {
    const float d = std::fabs(w - cb[e]);
    if (d < best) best = d, at = e;
  }
  return at;
}

// W_hat[m, G, j] = C[m, G, q[m, G, j]] with q stored as one byte per weight (K <= 256), in
// dtype `out` (bf16 in bf16 training steps: the value autocast would have cast an f32 W_hat to,
// without the f32 copy). torch's gather needs int64 indices and keeps them for its backward
// pass: 8 bytes per weight, the largest single piece of an LCQ step's memory on 4096 x 11008
// blocks (docs/quantization.md). The backward pass sums each weight's gradient into its entry
// in f32, group by group.
struct GatherCodes : torch::autograd::Function<GatherCodes> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& C, const torch::Tensor& q,
                               torch::ScalarType dtype) {
    const torch::Tensor c = C.detach().to(torch::kFloat32).contiguous();
    const int64_t groups = q.size(0) * q.size(1), g = q.size(2), K = c.size(-1);
    torch::Tensor out = torch::empty(q.sizes(), c.options().dtype(dtype));
    const float* cp = c.data_ptr<float>();
    const uint8_t* qp = q.data_ptr<uint8_t>();
    auto fill = [&](auto* op) {
      at::parallel_for(0, groups, 256, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k)
          for (int64_t j = k * g; j < (k + 1) * g; ++j) op[j] = cp[k * K + qp[j]];
      });
    };
    if (dtype == torch::kBFloat16)
      fill(out.data_ptr<at::BFloat16>());  // round to nearest even, as Tensor::to
    else
      fill(out.data_ptr<float>());
    ctx->save_for_backward({q});
    ctx->saved_data["K"] = K;
    ctx->saved_data["dtype"] = static_cast<int64_t>(C.scalar_type());
    return out;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const torch::Tensor q = ctx->get_saved_variables()[0];
    const torch::Tensor go = grads[0].contiguous();
    const int64_t m = q.size(0), G = q.size(1), g = q.size(2), K = ctx->saved_data["K"].toInt();
    torch::Tensor gc = torch::zeros({m, G, K}, torch::kFloat32);
    const uint8_t* qp = q.data_ptr<uint8_t>();
    float* cp = gc.data_ptr<float>();
    auto sum = [&](const auto* gp) {
      at::parallel_for(0, m * G, 256, [&](int64_t k0, int64_t k1) {
        for (int64_t k = k0; k < k1; ++k)
          for (int64_t j = k * g; j < (k + 1) * g; ++j) cp[k * K + qp[j]] += static_cast<float>(gp[j]);
      });
    };
    if (go.scalar_type() == torch::kBFloat16)
      sum(go.data_ptr<at::BFloat16>());
    else
      sum(go.to(torch::kFloat32).data_ptr<float>());
    return {gc.to(static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt())), torch::Tensor(), torch::Tensor()};
  }
};

const Named<CodebookGradient> kCodebookGradients[] = {{CodebookGradient::kGather, "gather"},
                                                       {CodebookGradient::kSte, "ste"}};

}  // namespace

const std::vector<std::string>& codebook_gradient_names() {
  static const auto v = names_of(kCodebookGradients);
  return v;
}

CodebookGradient parse_codebook_gradient(const std::string& name) {
  return parse_named(kCodebookGradients, name, "--codebook-grad");
}

std::string to_string(CodebookGradient g) { return name_of(kCodebookGradients, g); }

namespace {
constexpr Named<LcqInit> kInitNames[] = {{LcqInit::kRtn, "rtn"},
                                         {LcqInit::kMse, "mse"},
                                         {LcqInit::kWmse, "wmse"},
                                         {LcqInit::kGptq, "gptq"},
                                         {LcqInit::kAwq, "awq"}};
}  // namespace

constexpr Named<StartCodes> kStartCodes[] = {{StartCodes::kKeep, "keep"}, {StartCodes::kNearest, "nearest"}};

const std::vector<std::string>& start_codes_names() {
  static const auto v = names_of(kStartCodes);
  return v;
}

StartCodes parse_start_codes(const std::string& name) { return parse_named(kStartCodes, name, "--init-codes"); }

std::string to_string(StartCodes c) { return name_of(kStartCodes, c); }

const std::vector<std::string>& lcq_init_names() {
  static const auto v = names_of(kInitNames);
  return v;
}

LcqInit parse_lcq_init(const std::string& name) { return parse_named(kInitNames, name, "--init"); }

std::string to_string(LcqInit i) { return name_of(kInitNames, i); }

bool is_grid_init(LcqInit i) {
  switch (i) {
    case LcqInit::kRtn:
    case LcqInit::kMse:
    case LcqInit::kWmse: return true;
    case LcqInit::kGptq:
    case LcqInit::kAwq: return false;
  }
  fail("internal: an --init without a kind");
}

void validate(const LcqOptions& o) {
  LCQ_CHECK(o.bits >= 1 && o.bits <= 8, "--bits must be between 1 and 8, got {}", o.bits);
  LCQ_CHECK(o.group >= 1, "--group must be >= 1, got {}", o.group);
  LCQ_CHECK(o.rank >= 1 && o.rank <= 64, "--rank must be between 1 and 64, got {}", o.rank);
  LCQ_CHECK(o.dq_bits >= 0 && o.dq_bits <= 8, "--dq-bits must be between 0 (off) and 8, got {}", o.dq_bits);
  LCQ_CHECK(o.dq_group >= 1, "--dq-group must be >= 1, got {}", o.dq_group);
}

UniformGrid start_grid(const GroupedWeight& gw, const LcqOptions& o, const torch::Tensor& input_energy) {
  LCQ_CHECK(is_grid_init(o.init), "internal: --init {} is not a grid of the weights", to_string(o.init));
  if (o.init == LcqInit::kRtn) return minmax_grid(gw, o.bits);
  torch::Tensor column_weight;
  if (o.init == LcqInit::kWmse && input_energy.defined()) {
    // Relative to the mean, floored so that a column never seen active still counts a little.
    const torch::Tensor e = input_energy.to(torch::kFloat32);
    column_weight = e / e.mean().clamp_min(1e-30) + 1e-3;
  }
  return weighted_mse_grid(gw, o.bits, column_weight);
}

LcqLinear::LcqLinear(const torch::Tensor& W, const LcqOptions& o, torch::Generator gen, const torch::Tensor& input_energy)
    : o_(o) {
  validate(o);
  torch::NoGradGuard ng;
  gw_ = GroupedWeight::make(W.detach().to(torch::kFloat32), o.group);
  // gptq/awq starts come through the other constructor; here only the plain grids.
  const UniformGrid grid = start_grid(gw_, o, input_energy);
  init_parameters(grid.scale, grid.zero, gen);
}

LcqLinear::LcqLinear(const torch::Tensor& W, const CodebookLayer& start, const LcqOptions& o, torch::Generator gen)
    : o_(o) {
  validate(o);
  torch::NoGradGuard ng;
  LCQ_CHECK(start.rank == 1 && start.bits == o.bits && start.group == std::min<int64_t>(o.group, W.size(1)) &&
                start.rows == W.size(0) && start.cols == W.size(1),
            "internal: LCQ start layer {}x{} rank {} bits {} group {} does not match {}x{} bits {} group {}",
            start.rows, start.cols, start.rank, start.bits, start.group, W.size(0), W.size(1), o.bits, o.group);
  gw_ = GroupedWeight::make(W.detach().to(torch::kFloat32), o.group);
  // The start's codebook, as stored: C_t = S V_t - B with V = [0..K-1], so S = C_1 - C_0 and
  // B = -C_0. The zero point B / S need not be an integer (a double-quantized B is not).
  const int64_t m = start.rows, G = start.groups_per_row(), K = start.levels();
  torch::Tensor scale = torch::empty({m, G}, torch::kFloat32), zero = torch::empty({m, G}, torch::kFloat32);
  std::vector<float> c(static_cast<size_t>(K));
  float* sp = scale.data_ptr<float>();
  float* zp = zero.data_ptr<float>();
  for (int64_t k = 0; k < m * G; ++k) {
    start.codebook(k, c.data());
    // A group of equal weights has S = 0; a tiny scale keeps the reparameterization finite.
    sp[k] = std::max(c[1] - c[0], 1e-8f);
    zp[k] = -c[0] / sp[k];
  }
  init_parameters(scale, zero, gen);
  if (o.start_codes == StartCodes::kKeep) {
    torch::Tensor codes = torch::from_blob(const_cast<uint8_t*>(start.indices.data()), {m, start.cols}, torch::kUInt8);
    fixed_q_ = GroupedWeight::make(codes.to(torch::kFloat32), o.group).w.to(torch::kUInt8);
  }
}

void LcqLinear::init_parameters(const torch::Tensor& scale, const torch::Tensor& zero, torch::Generator gen) {
  const int64_t K = int64_t(1) << o_.bits, r = o_.rank;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  s0_ = scale.clone();
  // Row 0 is the rank-one grid (S~ = 1, V = [0..K-1], B~ = zero point); extra rows start with
  // S~ = 0, so step 0 reproduces the initial quantizer exactly.
  s_tilde_ = torch::zeros({r, s0_.size(0), s0_.size(1)}, f32);
  s_tilde_[0].fill_(1.0);
  b_tilde_ = zero.clone();
  v_ = torch::empty({r, K}, f32);
  v_[0] = torch::arange(K, f32);
  if (r > 1) v_.slice(0, 1, r).uniform_(-o_.v_init, o_.v_init, gen);
  s_tilde_.set_requires_grad(true);
  b_tilde_.set_requires_grad(true);
  v_.set_requires_grad(true);
}

torch::Tensor LcqLinear::codebook() const {
  // C[m, g, :] = sum_r (S~[r] s0)[m, g] V[r, :] - (B~ s0)[m, g]
  auto S = s_tilde_ * s0_.unsqueeze(0);                    // [r, m, Gr]
  auto C = torch::einsum("rmg,rk->mgk", {S, v_});          // [m, Gr, K]
  return C - (b_tilde_ * s0_).unsqueeze(-1);
}

torch::Tensor LcqLinear::assign(const torch::Tensor& C) const {
  // Nearest entry of each weight's group codebook, in one pass over the weights: the
  // broadcast |w - C| of all K entries (K x the weight count) was most of a training step's
  // memory traffic.
  torch::NoGradGuard ng;
  const torch::Tensor w = gw_.w.contiguous(), c = C.detach().contiguous();
  const int64_t m = w.size(0), G = w.size(1), g = w.size(2), K = c.size(-1);
  LCQ_CHECK(K <= 256, "LCQ codebooks of more than 256 entries are not supported (got {})", K);
  torch::Tensor q = torch::empty({m, G, g}, torch::kUInt8);
  const float* wp = w.data_ptr<float>();
  const float* cp = c.data_ptr<float>();
  uint8_t* qp = q.data_ptr<uint8_t>();
  at::parallel_for(0, m * G, 64, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const float* ck = cp + k * K;
      for (int64_t j = k * g; j < (k + 1) * g; ++j) qp[j] = static_cast<uint8_t>(nearest_entry(wp[j], ck, K));
    }
  });
  return q;
}

torch::ScalarType LcqLinear::step_dtype() const {
  return o_.bf16_steps && torch::GradMode::is_enabled() ? torch::kBFloat16 : torch::kFloat32;
}

torch::Tensor LcqLinear::weight() const {
  if (fixed_q_.defined()) return weight(fixed_q_);
  auto C = codebook();
  if (o_.gradient == CodebookGradient::kSte) return gw_.ungroup(ste_weight(C));
  // The gradient flows to the entries the weights are assigned to.
  return gw_.ungroup(GatherCodes::apply(C, assign(C), step_dtype()));
}

torch::Tensor LcqLinear::ste_weight(const torch::Tensor& C) const {
  // Per weight, without gradient: the nearest entry q (assign()), the entries bracketing the
  // weight in sorted order (lo, hi) and their interpolation weights ((1 - f, f) inside the
  // codebook's range, (0, 0) outside it).
  const torch::Tensor q = assign(C);
  torch::Tensor lo, hi, a_lo, a_hi;
  {
    torch::NoGradGuard ng;
    const torch::Tensor w = gw_.w.contiguous(), c = C.detach().contiguous();
    const int64_t m = w.size(0), G = w.size(1), g = w.size(2), K = c.size(-1);
    lo = torch::empty({m, G, g}, torch::kUInt8);
    hi = torch::empty({m, G, g}, torch::kUInt8);
    a_lo = torch::empty({m, G, g}, torch::kFloat32);
    a_hi = torch::empty({m, G, g}, torch::kFloat32);
    const float* wp = w.data_ptr<float>();
    const float* cp = c.data_ptr<float>();
    const uint8_t* qp = q.data_ptr<uint8_t>();
    uint8_t *lop = lo.data_ptr<uint8_t>(), *hip = hi.data_ptr<uint8_t>();
    float *alp = a_lo.data_ptr<float>(), *ahp = a_hi.data_ptr<float>();
    at::parallel_for(0, m * G, 64, [&](int64_t k0, int64_t k1) {
      std::vector<uint8_t> order(static_cast<size_t>(K));
      for (int64_t k = k0; k < k1; ++k) {
        const float* ck = cp + k * K;
        for (int64_t e = 0; e < K; ++e) order[size_t(e)] = uint8_t(e);
        std::sort(order.begin(), order.end(), [ck](uint8_t x, uint8_t y) { return ck[x] < ck[y]; });
        for (int64_t j = k * g; j < (k + 1) * g; ++j) {
          const float x = wp[j];
          // The first sorted entry above x; x in [C_lo, C_hi] when 0 < s < K.
          const auto it = std::upper_bound(order.begin(), order.end(), x, [ck](float v, uint8_t e) { return v < ck[e]; });
          const int64_t s = it - order.begin();
          if (s == 0 || s == K) {  // outside the range (or on the top entry): the gather term only
            lop[j] = hip[j] = qp[j];
            alp[j] = ahp[j] = 0.f;
            continue;
          }
          const uint8_t l = order[size_t(s - 1)], h = order[size_t(s)];
          const float width = ck[h] - ck[l];
          const float f = width > 0 ? (x - ck[l]) / width : 0.f;
          lop[j] = l;
          hip[j] = h;
          alp[j] = 1.f - f;
          ahp[j] = f;
        }
      }
    });
  }
  auto gather = [&](const torch::Tensor& codes) { return GatherCodes::apply(C, codes, torch::kFloat32); };
  const torch::Tensor at_w = gather(lo) * a_lo + gather(hi) * a_hi;
  // Value: C[q] exactly; gradient: dC_q - dC(t).
  return gather(q) - (at_w - at_w.detach());
}

torch::Tensor LcqLinear::weight(const torch::Tensor& q) const {
  return gw_.ungroup(GatherCodes::apply(codebook(), q.to(torch::kUInt8), step_dtype()));
}

void double_quantize(const float* x, int64_t n, int bits, int group, uint8_t* codes, uint16_t* scale,
                     uint16_t* offset) {
  const float qmax = float((1 << bits) - 1);
  for (int64_t b0 = 0, blk = 0; b0 < n; b0 += group, ++blk) {
    const int64_t b1 = std::min(n, b0 + group);
    float lo = std::numeric_limits<float>::infinity(), hi = -lo;
    for (int64_t i = b0; i < b1; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    // Codes are computed against the fp16-rounded scale and offset that will be stored.
    const uint16_t off16 = f32_to_f16(lo);
    const uint16_t sc16 = f32_to_f16((hi - lo) / qmax);
    const float off = f16_to_f32(off16), sc = f16_to_f32(sc16);
    scale[blk] = sc16;
    offset[blk] = off16;
    for (int64_t i = b0; i < b1; ++i) {
      float c = sc > 0 ? std::nearbyint((x[i] - off) / sc) : 0.f;
      codes[i] = uint8_t(std::min(qmax, std::max(0.f, c)));
    }
  }
}

void assign_nearest(CodebookLayer& l, const float* W) {
  const int K = l.levels();
  const int64_t gpr = l.groups_per_row();
  l.indices.resize(size_t(l.rows * l.cols));
  std::vector<float> cb(static_cast<size_t>(K));
  for (int64_t i = 0; i < l.rows; ++i) {
    for (int64_t j = 0; j < gpr; ++j) {
      l.codebook(i * gpr + j, cb.data());
      const int64_t c0 = j * l.group, c1 = std::min(l.cols, c0 + l.group);
      for (int64_t c = c0; c < c1; ++c)
        l.indices[size_t(i * l.cols + c)] = uint8_t(nearest_entry(W[i * l.cols + c], cb.data(), K));
    }
  }
}

CodebookLayer LcqLinear::finalize() const {
  torch::NoGradGuard ng;
  CodebookLayer l;
  l.rows = gw_.w.size(0);
  l.cols = gw_.cols;
  l.bits = o_.bits;
  l.group = int(gw_.group);
  l.rank = o_.rank;
  l.dq_bits = o_.dq_bits;
  l.dq_group = o_.dq_group;
  const int64_t G = l.n_groups(), NB = l.n_dq_blocks(), r = l.rank;
  auto S = (s_tilde_ * s0_.unsqueeze(0)).reshape({r, G}).contiguous();  // group g = row * Gr + j
  auto B = (b_tilde_ * s0_).reshape({G}).contiguous();
  const float* s = S.data_ptr<float>();
  const float* b = B.data_ptr<float>();
  if (l.dq_bits > 0) {
    l.s_codes.resize(size_t(r * G));
    l.s_scale.resize(size_t(r * NB));
    l.s_offset.resize(size_t(r * NB));
    for (int64_t k = 0; k < r; ++k)
      double_quantize(s + k * G, G, l.dq_bits, l.dq_group, &l.s_codes[size_t(k * G)], &l.s_scale[size_t(k * NB)],
                      &l.s_offset[size_t(k * NB)]);
    l.b_codes.resize(size_t(G));
    l.b_scale.resize(size_t(NB));
    l.b_offset.resize(size_t(NB));
    double_quantize(b, G, l.dq_bits, l.dq_group, l.b_codes.data(), l.b_scale.data(), l.b_offset.data());
  } else {
    l.s_f32.assign(s, s + r * G);
    l.b_f32.assign(b, b + G);
  }
  auto V = v_.detach().contiguous();
  for (int64_t i = 0; i < V.numel(); ++i) l.v.push_back(f32_to_f16(V.data_ptr<float>()[i]));
  if (fixed_q_.defined()) {
    auto q = gw_.ungroup(fixed_q_.to(torch::kFloat32)).to(torch::kUInt8).contiguous();
    l.indices.assign(q.data_ptr<uint8_t>(), q.data_ptr<uint8_t>() + q.numel());
  } else {
    auto W = gw_.ungroup(gw_.w).contiguous();
    assign_nearest(l, W.data_ptr<float>());
  }
  l.validate("lcq");
  return l;
}

}  // namespace lcq::quant
