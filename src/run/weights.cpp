#include "lcq/run/weights.h"

#include "lcq/core/error.h"

#include <cmath>

namespace lcq::run {

std::vector<float> expand_rotation(const float* mix, int64_t a, const float* signs, int64_t dim) {
  LCQ_CHECK(a > 0 && dim > 0 && dim % a == 0 && ((dim / a) & (dim / a - 1)) == 0,
            "residual_rotation.mix: {} x {} does not divide the width {} into a power of two", a, a, dim);
  for (int64_t i = 0; i < dim; ++i)
    LCQ_CHECK(signs[i] == 1.f || signs[i] == -1.f, "residual_rotation.signs: entry {} is {}, not +-1", i, signs[i]);
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < a; ++j) {
      double dot = 0;
      for (int64_t k = 0; k < a; ++k) dot += double(mix[i * a + k]) * double(mix[j * a + k]);
      LCQ_CHECK(std::abs(dot - (i == j)) < 1e-4, "residual_rotation.mix is not orthogonal (rows {} and {}: {})", i, j,
                dot);
    }
  const int64_t b = dim / a;
  const double h = 1 / std::sqrt(double(b));
  std::vector<float> r(size_t(dim * dim));
  for (int64_t i = 0; i < dim; ++i)
    for (int64_t j = 0; j < dim; ++j) {
      const double hij = __builtin_popcountll(uint64_t((i % b) & (j % b))) % 2 ? -h : h;
      r[size_t(i * dim + j)] = float(double(mix[(i / b) * a + j / b]) * hij * double(signs[j]));
    }
  return r;
}

void set_rotation(Weights& w, const float* r) {
  const int64_t D = w.config.dim;
  auto both = std::make_shared<std::vector<float>>(size_t(2 * D * D));
  float* in = both->data();
  float* out = in + D * D;
  for (int64_t i = 0; i < D; ++i)
    for (int64_t j = 0; j < D; ++j) in[i * D + j] = out[j * D + i] = r[i * D + j];
  w.storage.push_back(both);
  w.rotate_in = kernels::make_dense_matrix(in, kernels::DenseType::kF32, D, D);
  w.rotate_out = kernels::make_dense_matrix(out, kernels::DenseType::kF32, D, D);
}

RopeTables make_rope_tables(const ModelConfig& c, int64_t positions) {
  LCQ_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "RoPE needs an even head dimension, not {}", c.head_dim);
  const int64_t hd = c.head_dim, half = hd / 2;
  // Hugging Face computes the inverse frequencies in f32 from an integer range: so do we, so
  // that logits match the reference closely at long positions.
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv[size_t(i)] = 1.0f / std::pow(c.rope_theta, float(2 * i) / float(hd));
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "llama3") {
    // Llama 3.1: long wavelengths are divided by `factor`, short ones kept, smooth in between.
    const double low_wavelen = s.original_max_position / s.low_freq_factor;
    const double high_wavelen = s.original_max_position / s.high_freq_factor;
    for (float& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f = float(f / s.factor);
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (s.original_max_position / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = float((1 - smooth) * f / s.factor + smooth * f);
      }
    }
  }
  RopeTables t;
  t.positions = positions;
  t.cos.resize(size_t(positions * hd));
  t.sin.resize(size_t(positions * hd));
  for (int64_t p = 0; p < positions; ++p) {
    const float pos = s.type == "linear" ? float(p) / s.factor : float(p);
    for (int64_t i = 0; i < half; ++i) {
      const float a = pos * inv[size_t(i)];
      const float co = std::cos(a), si = std::sin(a);
      t.cos[size_t(p * hd + i)] = t.cos[size_t(p * hd + half + i)] = co;  // rotate-half: both halves
      t.sin[size_t(p * hd + i)] = t.sin[size_t(p * hd + half + i)] = si;
    }
  }
  return t;
}

KVCache::KVCache(const ModelConfig& c, int64_t capacity) : capacity_(capacity) {
  const size_t n = size_t(c.kv_dim() * capacity);
  k_.assign(size_t(c.n_layers), std::vector<float>(n));
  v_.assign(size_t(c.n_layers), std::vector<float>(n));
}

CacheView KVCache::view() {
  CacheView v;
  for (size_t l = 0; l < k_.size(); ++l) v.keys.push_back(k_[l].data()), v.values.push_back(v_[l].data());
  v.capacity = capacity_;
  v.length = &length_;
  return v;
}

}  // namespace lcq::run
