#include "lcq/quant/rotation.h"

#include "lcq/core/error.h"
#include "lcq/run/weights.h"

#include <torch/torch.h>

namespace lcq::quant {

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

torch::Tensor random_signs(int64_t n, torch::Generator& gen) {
  return torch::randint(0, 2, {n}, gen, kF64) * 2 - 1;
}

torch::Tensor random_orthogonal(int64_t n, torch::Generator& gen) {
  auto [q, r] = torch::linalg_qr(torch::randn({n, n}, gen, kF64));
  return (q * torch::sign(torch::diagonal(r)).unsqueeze(0)).contiguous();  // Haar-distributed
}

// An n x n rotation as a file stores it: its factors in f32 and R expanded from them (the
// Hadamard part by run::expand_rotation, as every loader expands it).
model::ResidualRotation residual_rotation_of(int64_t n, torch::Generator& gen) {
  int64_t b = 1;  // the largest power of two dividing n
  while (n % (2 * b) == 0) b *= 2;
  model::ResidualRotation r;
  r.mix = random_orthogonal(n / b, gen).to(torch::kFloat32).contiguous();
  r.signs = random_signs(n, gen).to(torch::kFloat32).contiguous();
  std::vector<float> m = run::expand_rotation(r.mix.data_ptr<float>(), n / b, r.signs.data_ptr<float>(), n);
  r.matrix = torch::from_blob(m.data(), {n, n}, torch::kFloat32).clone();
  return r;
}

torch::Tensor f64(const torch::Tensor& t) { return t.detach().to(torch::kFloat64); }

// w <- f(w) in w's own type.
template <typename F>
void rewrite(torch::Tensor& w, F f) {
  if (!w.defined()) return;
  w = f(f64(w)).to(w.scalar_type()).contiguous();
}

}  // namespace

model::ResidualRotation make_rotation(int64_t n, uint64_t seed) {
  LCQ_CHECK(n > 0, "rotation: invalid size {}", n);
  torch::Generator gen = at::detail::createCPUGenerator(seed);
  return residual_rotation_of(n, gen);
}

void rotate_residual(model::Model& m, uint64_t seed) {
  torch::NoGradGuard no_grad;
  const ModelConfig& c = m.config;
  LCQ_CHECK(c.arch == Arch::Llama, "--rotate rewrites LLaMA-family models, not {}", arch_name(c.arch));
  LCQ_CHECK(!m.rotation.defined(), "--rotate: the model's residual stream is rotated already");
  LCQ_CHECK(!m.tok_embd_packed, "--rotate needs the model's float weights, not a packed model");
  const int64_t D = c.dim, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads;
  LCQ_CHECK(nkv > 0 && nh % nkv == 0, "--rotate: {} query heads do not share {} key/value heads evenly", nh, nkv);

  torch::Generator gen = at::detail::createCPUGenerator(seed);
  model::ResidualRotation rotation = residual_rotation_of(D, gen);
  const torch::Tensor R = rotation.matrix.to(torch::kFloat64);
  for (model::Block& b : m.blocks) {
    LCQ_CHECK(b.attn_norm.rms && b.ffn_norm.rms && !b.attn_norm.bias.defined() && !b.ffn_norm.bias.defined(),
              "--rotate needs RMSNorm layers");
    for (const auto& [name, lin] : b.linears())
      LCQ_CHECK(!lin->packed && !lin->input_quant && !lin->output_quant,
                "--rotate rewrites float weights before quantization; {} is quantized already", name);
    // Readers of the stream: (W diag(g)) R^T; their norms become plain RMS normalisations.
    const torch::Tensor ga = f64(b.attn_norm.weight), gf = f64(b.ffn_norm.weight);
    for (model::Linear* l : {&b.q, &b.k, &b.v})
      rewrite(l->weight, [&](const torch::Tensor& w) { return torch::matmul(w * ga.unsqueeze(0), R.t()); });
    for (model::Linear* l : {&b.gate, &b.up})
      rewrite(l->weight, [&](const torch::Tensor& w) { return torch::matmul(w * gf.unsqueeze(0), R.t()); });
    b.attn_norm.weight = torch::ones_like(b.attn_norm.weight);
    b.ffn_norm.weight = torch::ones_like(b.ffn_norm.weight);
    // Each value head k: values Rk·v (rows and bias), undone in the columns of o that read
    // the query heads sharing it.
    std::vector<torch::Tensor> rv;
    for (int64_t k = 0; k < nkv; ++k) rv.push_back(residual_rotation_of(hd, gen).matrix.to(torch::kFloat64));
    auto per_head = [&](const torch::Tensor& t) {  // [nkv * hd, ...] -> Rk applied to each head's rows
      std::vector<torch::Tensor> parts;
      for (int64_t k = 0; k < nkv; ++k) parts.push_back(torch::matmul(rv[size_t(k)], t.narrow(0, k * hd, hd)));
      return torch::cat(parts, 0);
    };
    rewrite(b.v.weight, per_head);
    rewrite(b.v.bias, [&](const torch::Tensor& v) { return per_head(v.unsqueeze(1)).squeeze(1); });
    rewrite(b.o.weight, [&](const torch::Tensor& w) {
      std::vector<torch::Tensor> parts;
      for (int64_t h = 0; h < nh; ++h)
        parts.push_back(torch::matmul(w.narrow(1, h * hd, hd), rv[size_t(h / (nh / nkv))].t()));
      return torch::matmul(R, torch::cat(parts, 1));
    });
    // Writers to the stream: R W (and R b).
    rewrite(b.down.weight, [&](const torch::Tensor& w) { return torch::matmul(R, w); });
    for (model::Linear* l : {&b.o, &b.down})
      rewrite(l->bias, [&](const torch::Tensor& v) { return torch::matmul(R, v); });
  }
  rotation.matrix = rotation.matrix.to(m.tensor_options()).contiguous();
  m.rotation = std::move(rotation);
}

}  // namespace lcq::quant
