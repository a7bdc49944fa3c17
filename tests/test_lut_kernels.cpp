// Tests for LutCodebookMatrix (the activation look-up-table kernel): exact round trips of the
// tile layout, the scalar reference against the exact product within the rounding bound of
// its int8 tables, and the SIMD kernel against the scalar reference (same operations in the
// same order, so the same bits) for 2, 3 and 4 bits, every rank, ragged groups, padded rows,
// both ways of reading double-quantization blocks, 1 and 2 threads, the output head's shape,
// and products split into work units by the caller.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "lcq/core/error.h"
#include "lcq/kernels/lut_codebook.h"
#include "kernel_test_helpers.h"

namespace lcq::kernels {
namespace {
using namespace test;

struct LutCase {
  Config c;
  int dq_group;
};

const std::vector<LutCase>& lut_cases() {
  static const std::vector<LutCase> cases = {
      {{7, 300, 2, 128, 1, 8}, 5},     // ragged last group (44 columns, a padded chunk), padded rows
      {{64, 256, 2, 16, 2, 8}, 7},     // one chunk per group, one whole step of 4 tiles
      {{33, 576, 2, 128, 2, 0}, 64},   // SmolLM2's width, f32 parameters
      {{100, 512, 2, 64, 3, 4}, 3},    // 4-bit codes, blocks straddling rows
      {{17, 160, 2, 32, 4, 8}, 2},     // rank 4
      {{40, 512, 2, 128, 2, 8}, 1},    // a block per group: 64 blocks per tile, the gather path
      {{200, 2048, 2, 128, 2, 8}, 64}, // enough work to be split over threads
      {{5, 16, 2, 16, 1, 0}, 64},      // a single chunk
      // 3 bits: single-column tables, indices spread over 3-byte groups
      {{7, 300, 3, 128, 2, 8}, 5},     // ragged last group, padded rows
      {{64, 256, 3, 16, 1, 0}, 64},    // one chunk per group
      {{70, 576, 3, 64, 3, 4}, 3},     // 4-bit codes, two steps of 64 rows (the second padded)
      {{17, 160, 3, 32, 4, 8}, 2},     // rank 4
      {{40, 512, 3, 128, 2, 8}, 1},    // the gather path
      {{150, 2048, 3, 128, 2, 8}, 64}, // split over threads
      // 4 bits: 4-column tables of 16 entries, two 64-byte halves per chunk
      {{7, 300, 4, 128, 2, 8}, 5},     // ragged last group (44 columns, a padded chunk), padded rows
      {{64, 256, 4, 16, 1, 0}, 64},    // one chunk per group, one whole step
      {{33, 576, 4, 64, 2, 0}, 64},    // SmolLM2's width, f32 parameters
      {{70, 576, 4, 64, 3, 4}, 3},     // 4-bit codes, blocks straddling rows, two steps
      {{17, 160, 4, 32, 4, 8}, 2},     // rank 4
      {{40, 512, 4, 128, 2, 8}, 1},    // a block per group: the gather path
      {{150, 2048, 4, 128, 2, 8}, 64}, // split over threads
      {{130, 1024, 4, 32, 1, 8}, 64},  // rank 1, three steps over 2 threads
      // 5-8 bits, the level form: nibble plane plus bit planes (5: one, 6: two, 7: both, 8: a nibble)
      {{7, 300, 5, 128, 2, 8}, 5},     // ragged last group, padded rows
      {{64, 256, 5, 16, 1, 0}, 64},    // one chunk per group, one whole step
      {{70, 576, 5, 64, 3, 4}, 3},     // SmolLM2's width, 4-bit codes, two steps
      {{33, 576, 6, 64, 2, 8}, 64},    // SmolLM2's width
      {{17, 160, 6, 32, 4, 8}, 2},     // rank 4
      {{40, 512, 6, 128, 2, 8}, 1},    // a block per group: the gather path
      {{150, 2048, 6, 128, 2, 0}, 64}, // split over threads, f32 parameters
      {{7, 300, 7, 128, 2, 8}, 5},     // ragged
      {{70, 576, 7, 64, 1, 8}, 64},
      {{7, 300, 8, 128, 2, 8}, 5},     // ragged
      {{33, 576, 8, 64, 2, 0}, 64},
      {{17, 160, 8, 32, 4, 8}, 2},     // rank 4 (levels in 16 registers)
      {{130, 1024, 8, 32, 2, 8}, 64},  // three steps over 2 threads
  };
  return cases;
}

TEST(LutCodebook, RoundTripIsExact) {
  uint32_t seed = 1;
  for (const LutCase& k : lut_cases()) {
    const CodebookLayer l = random_layer(k.c, seed++, k.dq_group);
    const LutCodebookMatrix m = LutCodebookMatrix::pack(l);
    const CodebookLayer u = m.unpack();
    EXPECT_EQ(u.indices, l.indices) << describe(k.c);
    EXPECT_EQ(u.s_codes, l.s_codes) << describe(k.c);
    EXPECT_EQ(u.b_codes, l.b_codes) << describe(k.c);
    EXPECT_EQ(u.s_scale, l.s_scale) << describe(k.c);
    EXPECT_EQ(u.s_offset, l.s_offset) << describe(k.c);
    EXPECT_EQ(u.b_scale, l.b_scale) << describe(k.c);
    EXPECT_EQ(u.b_offset, l.b_offset) << describe(k.c);
    EXPECT_EQ(u.s_f32, l.s_f32) << describe(k.c);
    EXPECT_EQ(u.b_f32, l.b_f32) << describe(k.c);
    EXPECT_EQ(u.v, l.v) << describe(k.c);
    EXPECT_EQ(u.dq_group, l.dq_group);
    for (int64_t i = 0; i < l.rows; i += 3)
      for (int64_t c = 0; c < l.cols; c += 5) ASSERT_EQ(m.index_at(i, c), l.indices[size_t(i * l.cols + c)]);
    // Rows dequantized from the layout are the layer's exactly.
    std::vector<float> want(size_t(l.rows * l.cols));
    l.dequantize(want.data());
    const int64_t r0 = l.rows / 3, r1 = l.rows;
    std::vector<float> got(size_t((r1 - r0) * l.cols));
    m.dequantize_rows(r0, r1, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want.begin() + r0 * l.cols)) << describe(k.c);
    std::vector<float> column(size_t(l.rows));  // a column alone (the outlier split's columns)
    for (int64_t col : {int64_t(0), l.cols / 2, l.cols - 1}) {
      m.dequantize_column(col, column.data());
      for (int64_t i = 0; i < l.rows; ++i)
        ASSERT_EQ(column[size_t(i)], want[size_t(i * l.cols + col)]) << describe(k.c) << " column " << col;
    }
  }
}

// dequantize_rows() looks the indices up in vectors of every width (lut_dequantize_simd.cpp):
// on every SIMD target this CPU has (each packing its own layout: permute, or shuffle for 2 and
// 4 bits without AVX-512 VBMI), any row range equals CodebookLayer::dequantize() bit for bit.
TEST(LutCodebook, DequantizedRowsAreExactOnEveryTarget) {
  uint32_t seed = 900;
  int targets = 0;
  for (const SimdTarget& target : available_simd_targets()) {
    TargetGuard guard(target.id);
    ++targets;
    for (const LutCase& k : lut_cases()) {
      const CodebookLayer l = random_layer(k.c, seed++, k.dq_group);
      const LutCodebookMatrix m = LutCodebookMatrix::pack(l);
      std::vector<float> want(size_t(l.rows * l.cols));
      l.dequantize(want.data());
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, l.rows}, {l.rows / 2, l.rows / 2 + 1}, {l.rows - 1, l.rows}}) {
        std::vector<float> got(size_t((r1 - r0) * l.cols) + 1, NAN);
        m.dequantize_rows(r0, r1, got.data());
        int64_t bad = 0;
        for (int64_t e = 0; e < (r1 - r0) * l.cols; ++e) bad += !(got[size_t(e)] == want[size_t(r0 * l.cols + e)]);
        EXPECT_EQ(bad, 0) << target.name << " " << describe(k.c) << " rows " << r0 << ".." << r1;
        EXPECT_TRUE(std::isnan(got.back())) << target.name << " " << describe(k.c) << ": wrote past the rows";
      }
    }
  }
  EXPECT_GE(targets, 1);
}

TEST(LutCodebook, CloneIsADeepCopy) {
  uint32_t seed = 40;
  for (const LutCase& k : lut_cases()) {
    const CodebookLayer l = random_layer(k.c, seed++, k.dq_group);
    std::vector<float> x(size_t(l.cols)), want(size_t(l.rows)), got(size_t(l.rows));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.29f * float(i));
    LutCodebookMatrix copy;
    {
      const LutCodebookMatrix m = LutCodebookMatrix::pack(l);
      m.gemv(x.data(), want.data(), LutPath::kScalar);
      copy = m.clone();
    }
    copy.gemv(x.data(), got.data(), LutPath::kScalar);
    EXPECT_EQ(got, want) << describe(k.c);
    EXPECT_EQ(copy.unpack().indices, l.indices) << describe(k.c);
  }
}

TEST(LutCodebook, SizeCountsPaddedRowsAndCodes) {
  // 4096 x 4096, group 128, rank 2, 8-bit codes in blocks of 64: the same bytes as the
  // lane-word layout (docs/packed-format.md's example), since 4096 rows need no padding.
  const CodebookLayer big = random_layer({4096, 4096, 2, 128, 2, 8}, 3, 64);
  EXPECT_EQ(LutCodebookMatrix::pack(big).nbytes(), size_t(4612112));
  // At 3 bits the indices are exactly 3 bits per weight (the lane-word layout's 4096-column
  // rows are too), with V of 2 x 8 fp16.
  const CodebookLayer big3 = random_layer({4096, 4096, 3, 128, 2, 8}, 3, 64);
  EXPECT_EQ(LutCodebookMatrix::pack(big3).nbytes(), size_t(4096 * 4096 * 3 / 8 + 393216 + 2 * (2 * 3 * 2048 + 2 * 8)));
  // 7 rows are padded to one step of 64 rows: 64 rows * 19 chunks * 4 bytes of indices, then
  // the f32 parameters (7 rows * 3 groups * 2) and V (1 x 4 fp16).
  const CodebookLayer small = random_layer({7, 300, 2, 128, 1, 0}, 4, 64);
  EXPECT_EQ(LutCodebookMatrix::pack(small).nbytes(), size_t(64 * 19 * 4 + 7 * 3 * 2 * 4 + 1 * 4 * 2));
  // 4 bits: 4 bits per weight of indices, V of 2 x 16 fp16.
  const CodebookLayer big4 = random_layer({4096, 4096, 4, 128, 2, 8}, 3, 64);
  EXPECT_EQ(LutCodebookMatrix::pack(big4).nbytes(), size_t(4096 * 4096 / 2 + 393216 + 2 * (2 * 3 * 2048 + 2 * 16)));
  const CodebookLayer small4 = random_layer({7, 300, 4, 128, 1, 0}, 4, 64);
  EXPECT_EQ(LutCodebookMatrix::pack(small4).nbytes(), size_t(64 * 19 * 8 + 7 * 3 * 2 * 4 + 1 * 16 * 2));
  // 5-8 bits (the level form): exactly b bits per weight of indices, V of 2 x 2^b fp16.
  for (int bits : {5, 6, 7, 8}) {
    const CodebookLayer big = random_layer({4096, 1024, bits, 128, 2, 8}, 3, 64);
    EXPECT_EQ(LutCodebookMatrix::pack(big).nbytes(),
              size_t(4096 * 1024 / 8 * bits + 3 * 4096 * 8 + 2 * (2 * 3 * 512 + 2 * (1 << bits))))
        << bits;
  }
}

TEST(LutCodebook, RejectsLayersItCannotHold) {
  for (const Config& c : {Config{4, 256, 1, 64, 1, 8}, Config{4, 256, 2, 24, 1, 8}, Config{4, 256, 3, 8, 1, 0},
                          Config{4, 256, 4, 40, 1, 0}, Config{4, 256, 6, 24, 1, 0}, Config{4, 256, 4, 64, 5, 0},
                          Config{4, 256, 8, 64, 5, 0}}) {
    const CodebookLayer l = random_layer(c, 9, 8);
    EXPECT_FALSE(LutCodebookMatrix::applies(l)) << describe(c);
    try {
      (void)LutCodebookMatrix::pack(l);
      ADD_FAILURE() << "packed " << describe(c);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("LUT kernel needs 2- to 8-bit indices"), std::string::npos) << e.what();
    }
  }
}

// The rounding bound of the scalar reference for one token x: each looked-up table entry is off
// by at most half its group's step, so |y_i - y_ref_i| <= sum over groups j and ranks r of
// |S_r| * (step_jr / 2) * (entries looked up in the group: column pairs at 2 bits, columns at
// 3 and 4), with step_jr = the group's largest |entry| / 127 (independent of the row).
class TableBound {
 public:
  TableBound(const CodebookLayer& l, const float* x) : l_(l), gpr_(l.groups_per_row()) {
    half_steps_.resize(size_t(gpr_ * l.rank));
    for (int r = 0; r < l.rank; ++r) {
      // The tables hold sums of V[r] centered on its mid-range.
      std::vector<double> U(size_t(l.levels()));
      float lo = l.v_at(r, 0), hi = lo;
      for (int k = 1; k < l.levels(); ++k) lo = std::min(lo, l.v_at(r, k)), hi = std::max(hi, l.v_at(r, k));
      double umax = 0;
      for (int k = 0; k < l.levels(); ++k) {
        U[size_t(k)] = double(l.v_at(r, k) - 0.5f * (lo + hi));
        umax = std::max(umax, std::fabs(U[size_t(k)]));
      }
      for (int64_t j = 0; j < gpr_; ++j) {
        const int64_t c0 = j * l.group, c1 = std::min(l.cols, c0 + l.group);
        double tmax = 0;  // max |table entry| over the group
        for (int64_t a = c0; a < c1; a += 2) {
          const double x0 = x[a], x1 = a + 1 < c1 ? x[a + 1] : 0.0;
          if (l.bits == 2) {
            for (double ua : U)
              for (double ub : U) tmax = std::max(tmax, std::fabs(ua * x0 + ub * x1));
          } else {
            tmax = std::max(tmax, umax * std::max(std::fabs(x0), std::fabs(x1)));
          }
        }
        const int64_t entries = (l.bits == 2 ? 8 : 16) * ((c1 - c0 + 15) / 16);
        half_steps_[size_t(j * l.rank + r)] = tmax / 127 / 2 * double(entries);
      }
    }
  }
  double row(int64_t i) const {
    double bound = 0;
    for (int64_t j = 0; j < gpr_; ++j)
      for (int r = 0; r < l_.rank; ++r)
        bound += std::fabs(double(l_.s(r, i * gpr_ + j))) * half_steps_[size_t(j * l_.rank + r)];
    return bound;
  }

 private:
  const CodebookLayer& l_;
  int64_t gpr_;
  std::vector<double> half_steps_;  // [group][rank]
};

// The level form's bound (5-8 bits) for one token x: V[r][k] is replaced by its 8-bit level
// value Vh (off by at most step_r / 2, step_r = max_k |V[r][k] - mid_r| / 127) and x_c by its
// int8 value (off by at most dx_j / 2, dx_j = max |x_c| over group j / 127), and the mid term
// mid_r * sum x is exact, so per group and rank
//   |sum_c V x - approx| <= step_r / 2 * sum_c |x_c| + dx_j / 2 * sum_c |Vh[q_c] - mid_r|,
// with |Vh - mid_r| <= 127 step_r; times |S_r|, summed over groups and ranks.
class LevelBound {
 public:
  LevelBound(const CodebookLayer& l, const float* x) : l_(l), gpr_(l.groups_per_row()) {
    terms_.resize(size_t(gpr_ * l.rank));
    for (int r = 0; r < l.rank; ++r) {
      float lo = l.v_at(r, 0), hi = lo;
      for (int k = 1; k < l.levels(); ++k) lo = std::min(lo, l.v_at(r, k)), hi = std::max(hi, l.v_at(r, k));
      const double mid = 0.5 * (double(lo) + double(hi)), step = std::max(double(hi) - mid, mid - double(lo)) / 127;
      for (int64_t j = 0; j < gpr_; ++j) {
        const int64_t c0 = j * l.group, c1 = std::min(l.cols, c0 + l.group);
        double sum_ax = 0, xm = 0;
        for (int64_t c = c0; c < c1; ++c) sum_ax += std::fabs(x[c]), xm = std::max(xm, double(std::fabs(x[c])));
        terms_[size_t(j * l.rank + r)] = step / 2 * sum_ax + xm / 127 / 2 * 127 * step * double(c1 - c0);
      }
    }
  }
  double row(int64_t i) const {
    double bound = 0;
    for (int64_t j = 0; j < gpr_; ++j)
      for (int r = 0; r < l_.rank; ++r)
        bound += std::fabs(double(l_.s(r, i * gpr_ + j))) * terms_[size_t(j * l_.rank + r)];
    return bound;
  }

 private:
  const CodebookLayer& l_;
  int64_t gpr_;
  std::vector<double> terms_;  // [group][rank]
};

// Checks `got` against the exact product: every element within the bound (a failure each, up
// to 3), and returns how many are not off by more than float rounding (the tables' rounding
// is real, so few should be; by chance the errors of a row can cancel).
int64_t check_bound(const CodebookLayer& l, const std::vector<float>& X, int64_t n, const std::vector<float>& got,
                    const std::vector<double>& want, const std::vector<double>& scale, const std::string& what) {
  int bad = 0;
  int64_t exact = 0;
  for (int64_t t = 0; t < n; ++t) {
    const float* x = X.data() + t * l.cols;
    std::optional<TableBound> table;
    std::optional<LevelBound> level;
    if (l.bits >= 5) level.emplace(l, x);
    else table.emplace(l, x);
    auto bound = [&](int64_t i) { return level ? level->row(i) : table->row(i); };
    for (int64_t i = 0; i < l.rows; ++i) {
      const size_t e = size_t(t * l.rows + i);
      const double err = std::fabs(double(got[e]) - want[e]);
      exact += err <= 1e-7 * scale[e];
      if (err <= 1.01 * bound(i) + 1e-5 * scale[e]) continue;
      if (bad++ < 3)
        ADD_FAILURE() << what << " token " << t << " row " << i << ": error " << err << ", bound " << bound(i)
                      << ", scale " << scale[e];
    }
  }
  return exact;
}

TEST(LutCodebook, ScalarReferenceIsWithinTheTableRoundingBound) {
  uint32_t seed = 100;
  for (const LutCase& k : lut_cases()) {
    const Config& c = k.c;
    const CodebookLayer l = random_layer(c, seed++, k.dq_group);
    const LutCodebookMatrix m = LutCodebookMatrix::pack(l);
    std::vector<float> W(size_t(c.rows * c.cols));
    l.dequantize(W.data());
    for (int64_t n : {1, 2}) {
      std::vector<float> X = random_vector(size_t(n * c.cols), seed++);
      X[size_t(c.cols / 3)] = 25.f;  // an outlier: its group's tables get a coarse step
      std::vector<double> want, scale;
      reference_product(W, c.rows, c.cols, X, n, want, scale);
      std::vector<float> got(size_t(n * c.rows), NAN);
      m.gemm(X.data(), n, got.data(), LutPath::kScalar);
      // Few elements come out exact by chance (the level form's errors are smaller).
      EXPECT_LE(check_bound(l, X, n, got, want, scale, describe(c)), c.bits >= 5 ? n * c.rows / 20 : 0) << describe(c);
    }
  }
}

TEST(LutCodebook, SimdKernelEqualsTheScalarReference) {
  if (!lut_simd_available()) {
    const LutCodebookMatrix m = LutCodebookMatrix::pack(random_layer({4, 64, 2, 16, 1, 0}, 1));
    std::vector<float> x(64, 1.f), y(4);
    EXPECT_THROW(m.gemv(x.data(), y.data(), LutPath::kSimd), Error);
    GTEST_SKIP() << "this CPU has no AVX-512 VBMI + VNNI";
  }
  uint32_t seed = 200;
  for (const LutCase& k : lut_cases()) {
    const Config& c = k.c;
    const LutCodebookMatrix m = LutCodebookMatrix::pack(random_layer(c, seed++, k.dq_group));
    for (int64_t n : {1, 3}) {
      const std::vector<float> X = random_vector(size_t(n * c.cols), seed++);
      std::vector<float> ref(size_t(n * c.rows), NAN);
      m.gemm(X.data(), n, ref.data(), LutPath::kScalar);
      for (int threads : {1, 2}) {
        ThreadGuard guard(threads);
        std::vector<float> got(ref.size(), NAN);
        if (n == 1) m.gemv(X.data(), got.data(), LutPath::kSimd);
        else m.gemm(X.data(), n, got.data(), LutPath::kSimd);
        int bad = 0;
        for (size_t e = 0; e < ref.size(); ++e)
          if (!(got[e] == ref[e]) && bad++ < 3)
            ADD_FAILURE() << describe(c) << " n=" << n << " threads=" << threads << " element " << e << ": " << got[e]
                          << " vs " << ref[e];
        EXPECT_EQ(bad, 0);
      }
    }
  }
}

// SmolLM2's output head as a 4-bit codebook layer (49152 x 576: 36 chunks per row, the last
// group ragged at group 128): the exact round trip, the scalar reference within its bound, and
// the SIMD kernel equal to it on 1 and 2 threads.
TEST(LutCodebook, FourBitsOnTheOutputHeadShape) {
  uint32_t seed = 300;
  for (const auto& [group, rank, dq_bits] : {std::tuple{32, 1, 8}, std::tuple{64, 2, 8}, std::tuple{128, 2, 0}}) {
    const Config c{49152, 576, 4, group, rank, dq_bits};
    const CodebookLayer l = random_layer(c, seed++, 64);
    const LutCodebookMatrix m = LutCodebookMatrix::pack(l);
    EXPECT_EQ(m.unpack().indices, l.indices) << describe(c);
    std::vector<float> W(size_t(c.rows * c.cols));
    l.dequantize(W.data());
    const std::vector<float> x = random_vector(size_t(c.cols), seed++);
    std::vector<double> want, scale;
    reference_product(W, c.rows, c.cols, x, 1, want, scale);
    std::vector<float> ref(size_t(c.rows), NAN);
    m.gemv(x.data(), ref.data(), LutPath::kScalar);
    EXPECT_LT(check_bound(l, x, 1, ref, want, scale, describe(c)), c.rows / 1000);  // measured: 0-4 of 49152
    if (!lut_simd_available()) continue;
    for (int threads : {1, 2}) {
      ThreadGuard guard(threads);
      std::vector<float> got(ref.size(), NAN);
      m.gemv(x.data(), got.data(), LutPath::kSimd);
      int64_t bad = 0;
      for (size_t e = 0; e < ref.size(); ++e) bad += !(got[e] == ref[e]);
      EXPECT_EQ(bad, 0) << describe(c) << " threads=" << threads;
    }
  }
}

// gemv_units(): every split of the work units over calls, in any order or from the workers of
// one OpenMP region, gives gemv()'s y bit for bit, and writes no row past rows().
TEST(LutCodebook, AnySplitIntoWorkUnitsGivesTheGemvResult) {
  uint32_t seed = 400;
  const std::vector<LutCase> cases = {{{200, 2048, 2, 128, 2, 8}, 64},
                                      {{150, 576, 3, 64, 1, 8}, 5},
                                      {{300, 1024, 4, 64, 2, 8}, 64},
                                      {{7, 300, 4, 128, 3, 0}, 64}};
  std::mt19937 rng(7);
  for (const LutCase& k : cases) {
    const Config& c = k.c;
    const LutCodebookMatrix m = LutCodebookMatrix::pack(random_layer(c, seed++, k.dq_group));
    const int64_t units = m.work_units();
    EXPECT_EQ(units, (c.rows + 63) / 64) << describe(c);
    const std::vector<float> x = random_vector(size_t(c.cols), seed++);
    for (LutPath path : {LutPath::kScalar, LutPath::kAuto}) {
      std::vector<float> ref(size_t(c.rows), NAN);
      {
        ThreadGuard guard(2);
        m.gemv(x.data(), ref.data(), path);
      }
      const float sentinel = 1234.5f;
      auto check = [&](const std::vector<float>& y, const std::string& how) {
        int bad = 0;
        for (int64_t i = 0; i < c.rows; ++i) bad += !(y[size_t(i)] == ref[size_t(i)]);
        for (size_t i = size_t(c.rows); i < y.size(); ++i) bad += y[i] != sentinel;
        EXPECT_EQ(bad, 0) << describe(c) << " " << how;
      };
      for (int trial = 0; trial < 4; ++trial) {  // random cuts, the pieces run last to first
        std::vector<int64_t> cuts{0, units};
        for (int q = 0; q < 3; ++q) cuts.push_back(int64_t(rng() % uint32_t(units + 1)));
        std::sort(cuts.begin(), cuts.end());
        std::vector<float> y(size_t(units * 64), sentinel);
        for (size_t q = cuts.size() - 1; q > 0; --q) m.gemv_units(x.data(), y.data(), cuts[q - 1], cuts[q], path);
        check(y, "random cuts");
      }
      std::vector<float> y(size_t(units * 64), sentinel);
#pragma omp parallel num_threads(2)
      {  // one unit at a time, interleaved between the workers
        for (int64_t u = omp_get_thread_num(); u < units; u += omp_get_num_threads())
          m.gemv_units(x.data(), y.data(), u, u + 1, path);
      }
      check(y, "interleaved units in one parallel region");
    }
    std::vector<float> y(size_t(units * 64));
    EXPECT_THROW(m.gemv_units(x.data(), y.data(), 1, 0), Error);
    EXPECT_THROW(m.gemv_units(x.data(), y.data(), -1, 1), Error);
    EXPECT_THROW(m.gemv_units(x.data(), y.data(), 0, units + 1), Error);
  }
}

// CPUs without AVX-512 VBMI: pack() picks the shuffle layout for 2- and 4-bit layers where the
// AVX2 kernel runs (Highway's AVX2 and AVX3 targets, forced here), which gives the scalar
// reference's result bit for bit; 3-bit layers keep the permute layout on the scalar reference.
TEST(LutCodebook, Avx2KernelEqualsTheScalarReference) {
  int tested = 0;
  for (const SimdTarget& target : available_simd_targets()) {
    const std::string name = target.name;
    if (name != "AVX2" && name != "AVX3") continue;
    TargetGuard guard(target.id);
    ASSERT_FALSE(lut_simd_available()) << name;
    ASSERT_TRUE(lut_simd_available(2) && lut_simd_available(4)) << name;
    ASSERT_FALSE(lut_simd_available(3)) << name;
    for (int bits : {5, 6, 7, 8}) ASSERT_TRUE(lut_simd_available(bits)) << name << " " << bits;  // the level form
    ++tested;
    uint32_t seed = 500;
    for (const LutCase& k : lut_cases()) {
      const Config& c = k.c;
      const CodebookLayer l = random_layer(c, seed++, k.dq_group);
      const LutCodebookMatrix m = LutCodebookMatrix::pack(l);
      EXPECT_EQ(m.unpack().indices, l.indices) << name << " " << describe(c);
      const std::vector<float> x1 = random_vector(size_t(c.cols), seed++);
      std::vector<float> y1(size_t(c.rows));
      if (c.bits == 3) {  // AVX2 has no 3-bit kernel
        EXPECT_THROW(m.gemv(x1.data(), y1.data(), LutPath::kSimd), Error) << name;
        continue;
      }
      {  // the shuffle layout's scalar reference, within its bound
        std::vector<float> W(size_t(c.rows * c.cols));
        l.dequantize(W.data());
        std::vector<double> want, scale;
        reference_product(W, c.rows, c.cols, x1, 1, want, scale);
        m.gemv(x1.data(), y1.data(), LutPath::kScalar);
        EXPECT_LE(check_bound(l, x1, 1, y1, want, scale, name + " " + describe(c)), c.bits >= 5 ? c.rows / 20 : 0);
      }
      for (int64_t n : {1, 3}) {
        const std::vector<float> X = random_vector(size_t(n * c.cols), seed++);
        std::vector<float> ref(size_t(n * c.rows), NAN);
        m.gemm(X.data(), n, ref.data(), LutPath::kScalar);
        for (int threads : {1, 2}) {
          ThreadGuard tg(threads);
          std::vector<float> got(ref.size(), NAN);
          m.gemm(X.data(), n, got.data(), LutPath::kSimd);
          int bad = 0;
          for (size_t e = 0; e < ref.size(); ++e)
            if (!(got[e] == ref[e]) && bad++ < 3)
              ADD_FAILURE() << name << " " << describe(c) << " n=" << n << " threads=" << threads << " element " << e
                            << ": " << got[e] << " vs " << ref[e];
          EXPECT_EQ(bad, 0);
        }
      }
    }
    // The head's shape at 4 and 6 bits, and a group of 512 columns (int16 sums widened mid-group).
    for (const Config& c : {Config{49152, 576, 4, 64, 2, 8}, Config{49152, 576, 6, 64, 1, 8}, Config{100, 1024, 4, 512, 2, 0},
                            Config{70, 2048, 2, 1024, 1, 8}}) {
      const LutCodebookMatrix m = LutCodebookMatrix::pack(random_layer(c, seed++, 64));
      const std::vector<float> x = random_vector(size_t(c.cols), seed++);
      std::vector<float> ref(size_t(c.rows)), got(size_t(c.rows));
      m.gemv(x.data(), ref.data(), LutPath::kScalar);
      ThreadGuard tg(2);
      m.gemv(x.data(), got.data(), LutPath::kSimd);
      int64_t bad = 0;
      for (size_t e = 0; e < ref.size(); ++e) bad += !(got[e] == ref[e]);
      EXPECT_EQ(bad, 0) << name << " " << describe(c);
    }
  }
  if (tested == 0) GTEST_SKIP() << "no AVX2 or AVX3 target on this CPU";
}

}  // namespace
}  // namespace lcq::kernels
