// Helpers shared by the kernel tests (test_kernels.cpp, test_lut_kernels.cpp): random
// codebook layers, a double-precision reference product and guards for threads and targets.
#pragma once

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "lcq/core/half.h"
#include "lcq/kernels/codebook_layer.h"
#include "lcq/kernels/packed_codebook.h"

namespace lcq::kernels::test {

struct Config {
  int64_t rows, cols;
  int bits, group, rank, dq_bits;
};

inline std::string describe(const Config& c) {
  return fmt::format("{}x{} b={} g={} r={} dq={}", c.rows, c.cols, c.bits, c.group, c.rank, c.dq_bits);
}

inline CodebookLayer random_layer(const Config& c, uint32_t seed, int dq_group = 5) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uni(0.f, 1.f);
  CodebookLayer l;
  l.rows = c.rows;
  l.cols = c.cols;
  l.bits = c.bits;
  l.group = c.group;
  l.rank = c.rank;
  l.dq_bits = c.dq_bits;
  l.dq_group = dq_group;  // default small, so rows straddle double-quantization blocks
  const int K = l.levels();
  l.indices.resize(size_t(c.rows * c.cols));
  for (auto& q : l.indices) q = uint8_t(rng() % unsigned(K));
  l.v.resize(size_t(c.rank * K));
  for (auto& v : l.v) v = f32_to_f16(normal(rng));
  const int64_t G = l.n_groups();
  if (c.dq_bits > 0) {
    const int max_code = (1 << c.dq_bits) - 1;
    const int64_t nb = l.n_dq_blocks();
    l.s_codes.resize(size_t(c.rank * G));
    l.b_codes.resize(size_t(G));
    for (auto& q : l.s_codes) q = uint8_t(rng() % unsigned(max_code + 1));
    for (auto& q : l.b_codes) q = uint8_t(rng() % unsigned(max_code + 1));
    for (int64_t k = 0; k < c.rank * nb; ++k) {
      l.s_scale.push_back(f32_to_f16(0.01f + 0.05f * uni(rng)));
      l.s_offset.push_back(f32_to_f16(0.5f * normal(rng)));
    }
    for (int64_t k = 0; k < nb; ++k) {
      l.b_scale.push_back(f32_to_f16(0.01f * uni(rng)));
      l.b_offset.push_back(f32_to_f16(0.2f * normal(rng)));
    }
  } else {
    l.s_f32.resize(size_t(c.rank * G));
    l.b_f32.resize(size_t(G));
    for (auto& s : l.s_f32) s = normal(rng);
    for (auto& b : l.b_f32) b = 0.3f * normal(rng);
  }
  l.validate("random layer");
  return l;
}

inline std::vector<float> random_vector(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> x(n);
  for (auto& v : x) v = normal(rng);
  return x;
}

// Y_ref = X W^T in double, and the scale sum |w x| that the tolerance is relative to.
inline void reference_product(const std::vector<float>& W, int64_t rows, int64_t cols, const std::vector<float>& X,
                       int64_t n, std::vector<double>& y, std::vector<double>& scale) {
  y.assign(size_t(n * rows), 0.0);
  scale.assign(size_t(n * rows), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < rows; ++i) {
      double s = 0, a = 0;
      for (int64_t c = 0; c < cols; ++c) {
        const double p = double(W[size_t(i * cols + c)]) * double(X[size_t(t * cols + c)]);
        s += p;
        a += std::fabs(p);
      }
      y[size_t(t * rows + i)] = s;
      scale[size_t(t * rows + i)] = a;
    }
}

// Counts mismatches so one failing config does not print thousands of lines.
inline int count_mismatches(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale,
                     double rel, const std::string& what) {
  int bad = 0;
  for (size_t k = 0; k < want.size(); ++k) {
    if (std::fabs(double(got[k]) - want[k]) <= rel * scale[k] + 1e-30 && std::isfinite(got[k])) continue;
    if (bad++ < 3) ADD_FAILURE() << what << ": element " << k << " got " << got[k] << " want " << want[k];
  }
  return bad;
}

class ThreadGuard {
 public:
  explicit ThreadGuard(int n) : saved_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadGuard() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

class TargetGuard {
 public:
  explicit TargetGuard(int64_t id) { force_simd_target(id); }
  ~TargetGuard() { force_simd_target(0); }
};

}  // namespace lcq::kernels::test
