#include "lcq/run/decoder.h"

#include "lcq/core/error.h"
#include "lcq/kernels/vec.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

namespace lcq::run {

namespace {

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

Decoder::Decoder(Weights w, CacheView cache) : w_(std::move(w)), cache_(std::move(cache)) {
  const ModelConfig& c = w_.config;
  LCQ_CHECK(c.arch == Arch::Llama, "decoder: the lean path runs LLaMA-family models only");
  LCQ_CHECK(w_.layers.size() == size_t(c.n_layers) && cache_.keys.size() == w_.layers.size() &&
                cache_.values.size() == w_.layers.size() && cache_.length && w_.embedding && w_.head &&
                w_.out_norm && w_.rope_cos && w_.rope_sin,
            "decoder: incomplete weights or cache");
  x_.resize(size_t(c.dim));
  q_.resize(size_t(c.n_heads * c.head_dim));
  k_.resize(size_t(c.kv_dim()));
  v_.resize(size_t(c.kv_dim()));
  att_.resize(q_.size());
  proj_.resize(size_t(c.dim));
  gate_.resize(size_t(c.hidden_dim));
  up_.resize(size_t(c.hidden_dim));
  logits_.resize(size_t(w_.head->rows()));
  LCQ_CHECK(!w_.rotate_in == !w_.rotate_out, "decoder: a rotation needs both directions");
  if (w_.rotate_in) unrotated_.resize(size_t(c.dim));
}

void Decoder::check_positions(int64_t pos, int64_t n) const {
  LCQ_CHECK(pos + n <= cache_.capacity, "KV cache full: {} + {} positions exceed its capacity {}", pos, n,
            cache_.capacity);
  LCQ_CHECK(pos + n <= w_.rope_positions, "position {} exceeds the prepared {} positions", pos + n - 1,
            w_.rope_positions);
}

void Decoder::embed(int token, float* x) {
  LCQ_CHECK(token >= 0 && token < w_.embedding->rows(), "decoder: token {} outside the vocabulary of {}", token,
            w_.embedding->rows());
  if (!w_.rotate_in) return w_.embedding->dequantize_rows(token, token + 1, x);
  w_.embedding->dequantize_rows(token, token + 1, unrotated_.data());
  w_.rotate_in->gemv_units(unrotated_.data(), x, 0, w_.rotate_in->work_units());
}

const float* Decoder::step(int token) {
  const ModelConfig& c = w_.config;
  const int64_t pos = *cache_.length;
  check_positions(pos, 1);
  embed(token, x_.data());

  const int threads = std::max(1, omp_get_max_threads());
  if (int(norm_.size()) < threads) norm_.resize(size_t(threads)), scores_.resize(size_t(threads));
  const int64_t D = c.dim, hd = c.head_dim, H = c.n_heads, Hkv = c.n_kv_heads, G = H / Hkv, F = c.hidden_dim;
  const int64_t cap = cache_.capacity, len = pos + 1;
  const float* cos = w_.rope_cos + pos * hd;
  const float* sin = w_.rope_sin + pos * hd;
  const float scale = 1.f / std::sqrt(float(hd));
  const float eps = c.norm_eps;

#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num(), nt = omp_get_num_threads();
    std::vector<float>& h = norm_[size_t(id)];
    std::vector<float>& scores = scores_[size_t(id)];
    h.resize(size_t(std::max(D, F)));
    scores.resize(size_t(cap));
    for (size_t li = 0; li < w_.layers.size(); ++li) {
      const LayerWeights& L = w_.layers[li];
      float* kc = cache_.keys[li];  // [Hkv][cap][hd]
      float* vc = cache_.values[li];
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
    const float* stream = x_.data();
    if (w_.rotate_out) {
      run_share({Product{w_.rotate_out.get(), unrotated_.data(), nullptr}}, x_.data(), id, nt);
      stream = unrotated_.data();
#pragma omp barrier
    }
    kernels::rms_norm(stream, w_.out_norm, eps, h.data(), D);
    run_share({Product{w_.head.get(), logits_.data(), nullptr}}, h.data(), id, nt);
  }
  ++*cache_.length;
  return logits_.data();
}

namespace {

// y[i] += b for each of n rows of y [n][len] (b may be null).
void add_rows(float* y, const float* b, int64_t n, int64_t len) {
  if (!b) return;
  for (int64_t i = 0; i < n; ++i) kernels::add_inplace(y + i * len, b, len);
}

}  // namespace

const float* Decoder::prefill(const int* tokens, int64_t n) {
  LCQ_CHECK(n >= 1, "prefill: no tokens");
  const ModelConfig& c = w_.config;
  const int64_t D = c.dim, hd = c.head_dim, H = c.n_heads, Hkv = c.n_kv_heads, G = H / Hkv, F = c.hidden_dim;
  const int64_t QD = H * hd, KVD = Hkv * hd, cap = cache_.capacity;
  const float scale = 1.f / std::sqrt(float(hd));
  const float eps = c.norm_eps;
  // Chunks of up to 64 tokens: the products' shares stay in cache across a chunk, and the
  // buffers stay small (64 x the hidden size) however long the prompt.
  constexpr int64_t kChunk = 64;
  const int64_t m_max = std::min(n, kChunk);
  for (auto* v : {&cx_, &ch_, &cproj_}) v->resize(size_t(m_max * D));
  for (auto* v : {&cq_, &catt_}) v->resize(size_t(m_max * QD));
  for (auto* v : {&ck_, &cv_}) v->resize(size_t(m_max * KVD));
  for (auto* v : {&cgate_, &cup_}) v->resize(size_t(m_max * F));
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int64_t m = std::min(kChunk, n - c0), pos0 = *cache_.length;
    check_positions(pos0, m);
    for (int64_t i = 0; i < m; ++i) embed(tokens[c0 + i], cx_.data() + i * D);
    float *X = cx_.data(), *Hn = ch_.data(), *Q = cq_.data(), *K = ck_.data(), *V = cv_.data();
    float *A = catt_.data(), *P = cproj_.data(), *Gt = cgate_.data(), *U = cup_.data();
    for (size_t li = 0; li < w_.layers.size(); ++li) {
      const LayerWeights& L = w_.layers[li];
      float* kc = cache_.keys[li];  // [Hkv][cap][hd]
      float* vc = cache_.values[li];
#pragma omp parallel for
      for (int64_t i = 0; i < m; ++i) kernels::rms_norm(X + i * D, L.attn_norm, eps, Hn + i * D, D);
      L.q->gemm(Hn, m, Q), L.k->gemm(Hn, m, K), L.v->gemm(Hn, m, V);
      add_rows(Q, L.bq, m, QD), add_rows(K, L.bk, m, KVD), add_rows(V, L.bv, m, KVD);
#pragma omp parallel for
      for (int64_t i = 0; i < m; ++i) {
        const float* cos = w_.rope_cos + (pos0 + i) * hd;
        const float* sin = w_.rope_sin + (pos0 + i) * hd;
        for (int64_t j = 0; j < Hkv; ++j) {
          float* kj = kc + (j * cap + pos0 + i) * hd;
          std::copy(K + i * KVD + j * hd, K + i * KVD + (j + 1) * hd, kj);
          kernels::rope_rotate_half(kj, cos, sin, hd);
          std::copy(V + i * KVD + j * hd, V + i * KVD + (j + 1) * hd, vc + (j * cap + pos0 + i) * hd);
        }
        for (int64_t qh = 0; qh < H; ++qh) kernels::rope_rotate_half(Q + i * QD + qh * hd, cos, sin, hd);
      }
      // Token i attends to positions 0 .. pos0 + i (its own key included), each query head to
      // its key/value head.
#pragma omp parallel
      {
        std::vector<float> scores(size_t(pos0 + m));
#pragma omp for collapse(2) schedule(dynamic, 4)
        for (int64_t i = 0; i < m; ++i)
          for (int64_t qh = 0; qh < H; ++qh) {
            const int64_t j = qh / G;
            kernels::attend(Q + i * QD + qh * hd, kc + j * cap * hd, vc + j * cap * hd, pos0 + i + 1, hd, scale,
                            scores.data(), A + i * QD + qh * hd);
          }
      }
      L.o->gemm(A, m, P);
      add_rows(P, L.bo, m, D);
      for (int64_t i = 0; i < m; ++i) kernels::add_inplace(X + i * D, P + i * D, D);
#pragma omp parallel for
      for (int64_t i = 0; i < m; ++i) kernels::rms_norm(X + i * D, L.ffn_norm, eps, Hn + i * D, D);
      L.gate->gemm(Hn, m, Gt), L.up->gemm(Hn, m, U);
      add_rows(Gt, L.bgate, m, F), add_rows(U, L.bup, m, F);
      for (int64_t i = 0; i < m; ++i) kernels::silu_mul(Gt + i * F, U + i * F, Gt + i * F, F);  // as step() does
      L.down->gemm(Gt, m, P);
      add_rows(P, L.bdown, m, D);
      for (int64_t i = 0; i < m; ++i) kernels::add_inplace(X + i * D, P + i * D, D);
    }
    *cache_.length += m;
    if (c0 + m == n) {  // the head on the last token only
      const float* last = X + (m - 1) * D;
      if (w_.rotate_out) {
        w_.rotate_out->gemv_units(last, unrotated_.data(), 0, w_.rotate_out->work_units());
        last = unrotated_.data();
      }
      kernels::rms_norm(last, w_.out_norm, eps, Hn, D);
      w_.head->gemm(Hn, 1, logits_.data());
    }
  }
  return logits_.data();
}

}  // namespace lcq::run
