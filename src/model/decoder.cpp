#include "lcq/model/decoder.h"

#include "lcq/core/error.h"
#include "lcq/kernels/vec.h"

#include <omp.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace lcq::model {

namespace {

using MatrixPtr = std::shared_ptr<const kernels::Matrix>;

// The matrix a Linear multiplies by: its packed layer, or a view of its dense weight.
MatrixPtr matrix_of(const Linear& l) {
  if (l.packed) return l.packed;
  const torch::Tensor& w = l.weight;
  LCQ_CHECK(w.defined() && w.dim() == 2 && w.is_contiguous() && w.device().is_cpu(),
            "decoder: a linear layer has no usable weight");
  switch (w.scalar_type()) {
    case torch::kFloat32: return kernels::make_dense_matrix(w.data_ptr(), kernels::DenseType::kF32, w.size(0), w.size(1));
    case torch::kBFloat16: return kernels::make_dense_matrix(w.data_ptr(), kernels::DenseType::kBF16, w.size(0), w.size(1));
    case torch::kHalf: return kernels::make_dense_matrix(w.data_ptr(), kernels::DenseType::kF16, w.size(0), w.size(1));
    default: fail("decoder: no kernel for weights of type {}", c10::toString(w.scalar_type()));
  }
}

const float* f32_data(const torch::Tensor& t) {
  if (!t.defined()) return nullptr;
  LCQ_CHECK(t.scalar_type() == torch::kFloat32 && t.is_contiguous(), "decoder: a norm or bias is not contiguous f32");
  return t.data_ptr<float>();
}

// One product of a group of matrices that read the same input, split between the threads:
// thread `id` of `nt` takes its share of the concatenated work units. Returns, per matrix,
// the rows it wrote ([r0, r1)), so that the caller can finish those rows (bias, residual).
struct Product {
  const kernels::Matrix* m;
  float* y;
  const float* bias;
};

template <size_t N>
void run_share(const Product (&ps)[N], const float* x, int id, int nt, int64_t (*rows)[2] = nullptr) {
  int64_t total = 0;
  for (const Product& p : ps) total += p.m->work_units();
  const int64_t a = total * id / nt, b = total * (id + 1) / nt;
  int64_t base = 0;
  for (size_t i = 0; i < N; ++i) {
    const kernels::Matrix& m = *ps[i].m;
    const int64_t units = m.work_units();
    const int64_t u0 = std::clamp(a - base, int64_t(0), units), u1 = std::clamp(b - base, int64_t(0), units);
    base += units;
    const int64_t r0 = m.row_of_unit(u0), r1 = m.row_of_unit(u1);
    if (u0 < u1) {
      m.gemv_units(x, ps[i].y, u0, u1);
      if (ps[i].bias) kernels::add_inplace(ps[i].y + r0, ps[i].bias + r0, r1 - r0);
    }
    if (rows) rows[i][0] = r0, rows[i][1] = std::max(r0, r1);
  }
}

}  // namespace

struct Decoder::Layer {
  const float *attn_norm, *ffn_norm;
  MatrixPtr q, k, v, o, gate, up, down;
  const float *bq, *bk, *bv, *bo, *bgate, *bup, *bdown;
};

bool Decoder::supports(const Model& m) {
  if (m.config.arch != Arch::Llama || m.options.dtype != torch::kFloat32 || !m.options.device.is_cpu()) return false;
  for (const Block& b : m.blocks) {
    if (!b.attn_norm.rms || !b.ffn_norm.rms) return false;
    for (const auto& [name, lin] : b.linears())
      if (lin->input_quant || lin->output_quant) return false;
  }
  return true;
}

Decoder::~Decoder() = default;

Decoder::Decoder(const Model& m, KVCache& cache) : m_(m), cache_(cache) {
  LCQ_CHECK(supports(m), "decoder: the lean path runs LLaMA-family models in f32 without activation quantization");
  const ModelConfig& c = m.config;
  for (const Block& b : m.blocks) {
    Layer l;
    l.attn_norm = f32_data(b.attn_norm.weight);
    l.ffn_norm = f32_data(b.ffn_norm.weight);
    l.q = matrix_of(b.q), l.k = matrix_of(b.k), l.v = matrix_of(b.v), l.o = matrix_of(b.o);
    l.gate = matrix_of(b.gate), l.up = matrix_of(b.up), l.down = matrix_of(b.down);
    l.bq = f32_data(b.q.bias), l.bk = f32_data(b.k.bias), l.bv = f32_data(b.v.bias), l.bo = f32_data(b.o.bias);
    l.bgate = f32_data(b.gate.bias), l.bup = f32_data(b.up.bias), l.bdown = f32_data(b.down.bias);
    layers_.push_back(std::move(l));
  }
  out_norm_ = f32_data(m.output_norm.weight);
  head_ = matrix_of(m.output);
  if (m.tok_embd_packed) {
    embedding_ = m.tok_embd_packed;
  } else {
    Linear e;
    e.weight = m.tok_embd;
    embedding_ = matrix_of(e);
  }
  x_.resize(size_t(c.dim));
  q_.resize(size_t(c.n_heads * c.head_dim));
  k_.resize(size_t(c.kv_dim()));
  v_.resize(size_t(c.kv_dim()));
  att_.resize(q_.size());
  proj_.resize(size_t(c.dim));
  gate_.resize(size_t(c.hidden_dim));
  up_.resize(size_t(c.hidden_dim));
  logits_.resize(size_t(head_->rows()));
}

const float* Decoder::step(int token) {
  const ModelConfig& c = m_.config;
  const int64_t pos = cache_.length();
  LCQ_CHECK(token >= 0 && token < embedding_->rows(), "decoder: token {} outside the vocabulary of {}", token,
            embedding_->rows());
  LCQ_CHECK(pos < cache_.capacity(), "KV cache full: position {} exceeds its capacity {}", pos, cache_.capacity());
  LCQ_CHECK(pos < m_.rope.cos.size(0), "position {} exceeds the prepared {} positions", pos, m_.rope.cos.size(0));
  embedding_->dequantize_rows(token, token + 1, x_.data());

  const int threads = std::max(1, omp_get_max_threads());
  if (int(norm_.size()) < threads) norm_.resize(size_t(threads)), scores_.resize(size_t(threads));
  const int64_t D = c.dim, hd = c.head_dim, H = c.n_heads, Hkv = c.n_kv_heads, G = H / Hkv, F = c.hidden_dim;
  const int64_t cap = cache_.capacity(), len = pos + 1;
  const float* cos = m_.rope.cos.data_ptr<float>() + pos * hd;
  const float* sin = m_.rope.sin.data_ptr<float>() + pos * hd;
  const float scale = 1.f / std::sqrt(float(hd));
  const float eps = c.norm_eps;

#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num(), nt = omp_get_num_threads();
    std::vector<float>& h = norm_[size_t(id)];
    std::vector<float>& scores = scores_[size_t(id)];
    h.resize(size_t(std::max(D, F)));
    scores.resize(size_t(cap));
    for (size_t li = 0; li < layers_.size(); ++li) {
      const Layer& L = layers_[li];
      float* kc = cache_.keys(int(li)).data_ptr<float>();    // [Hkv][cap][hd]
      float* vc = cache_.values(int(li)).data_ptr<float>();
      // Attention: q, k, v of the normalized input.
      kernels::rms_norm(x_.data(), L.attn_norm, eps, h.data(), D);
      run_share({Product{L.q.get(), q_.data(), L.bq}, Product{L.k.get(), k_.data(), L.bk},
                 Product{L.v.get(), v_.data(), L.bv}},
                h.data(), id, nt);
#pragma omp barrier
      // Keys are rotated and appended with the values, one key/value head per thread...
      for (int64_t j = id; j < Hkv; j += nt) {
        float* kj = kc + (j * cap + pos) * hd;
        std::copy(k_.data() + j * hd, k_.data() + (j + 1) * hd, kj);
        kernels::rope_rotate_half(kj, cos, sin, hd);
        std::copy(v_.data() + j * hd, v_.data() + (j + 1) * hd, vc + (j * cap + pos) * hd);
      }
#pragma omp barrier
      // ... then each query head attends to its key/value head's positions.
      for (int64_t qh = id; qh < H; qh += nt) {
        float* q = q_.data() + qh * hd;
        kernels::rope_rotate_half(q, cos, sin, hd);
        const int64_t j = qh / G;
        kernels::attend(q, kc + j * cap * hd, vc + j * cap * hd, len, hd, scale, scores.data(),
                        att_.data() + qh * hd);
      }
#pragma omp barrier
      int64_t rows[1][2];
      run_share({Product{L.o.get(), proj_.data(), L.bo}}, att_.data(), id, nt, rows);
      kernels::add_inplace(x_.data() + rows[0][0], proj_.data() + rows[0][0], rows[0][1] - rows[0][0]);
#pragma omp barrier
      // MLP: down(silu(gate h) * up h).
      kernels::rms_norm(x_.data(), L.ffn_norm, eps, h.data(), D);
      run_share({Product{L.gate.get(), gate_.data(), L.bgate}, Product{L.up.get(), up_.data(), L.bup}}, h.data(), id,
                nt);
#pragma omp barrier
      const int64_t f0 = F * id / nt, f1 = F * (id + 1) / nt;
      kernels::silu_mul(gate_.data() + f0, up_.data() + f0, gate_.data() + f0, f1 - f0);
#pragma omp barrier
      run_share({Product{L.down.get(), proj_.data(), L.bdown}}, gate_.data(), id, nt, rows);
      kernels::add_inplace(x_.data() + rows[0][0], proj_.data() + rows[0][0], rows[0][1] - rows[0][0]);
#pragma omp barrier
    }
    kernels::rms_norm(x_.data(), out_norm_, eps, h.data(), D);
    run_share({Product{head_.get(), logits_.data(), nullptr}}, h.data(), id, nt);
  }
  cache_.advance(1);
  return logits_.data();
}

}  // namespace lcq::model
