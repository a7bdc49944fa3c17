// Tests for LutCodebookMatrix (the activation look-up-table kernel): exact round trips of the
// tile layout, the scalar reference against the exact product within the rounding bound of
// its int8 tables, and the SIMD kernel against the scalar reference (same operations in the
// same order, so the same bits) for every rank, ragged groups, padded rows, both ways of
// reading double-quantization blocks, and 1 and 2 threads.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
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
}

TEST(LutCodebook, RejectsLayersItCannotHold) {
  for (const Config& c : {Config{4, 256, 4, 64, 2, 8}, Config{4, 256, 2, 24, 1, 8}, Config{4, 256, 3, 8, 1, 0},
                          Config{4, 256, 8, 64, 1, 0}}) {
    const CodebookLayer l = random_layer(c, 9, 8);
    EXPECT_FALSE(LutCodebookMatrix::applies(l)) << describe(c);
    try {
      (void)LutCodebookMatrix::pack(l);
      ADD_FAILURE() << "packed " << describe(c);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("LUT kernel needs 2- or 3-bit indices"), std::string::npos) << e.what();
    }
  }
}

// |y - y_ref| <= sum over groups and ranks of |S_r| * (step_r / 2) * (entries looked up in
// the group: column pairs at 2 bits, columns at 3): each entry is off by at most half its
// group's step.
TEST(LutCodebook, ScalarReferenceIsWithinTheTableRoundingBound) {
  uint32_t seed = 100;
  for (const LutCase& k : lut_cases()) {
    const Config& c = k.c;
    const CodebookLayer l = random_layer(c, seed++, k.dq_group);
    const LutCodebookMatrix m = LutCodebookMatrix::pack(l);
    std::vector<float> W(size_t(c.rows * c.cols));
    l.dequantize(W.data());
    const int64_t gpr = l.groups_per_row();
    for (int64_t n : {1, 2}) {
      std::vector<float> X = random_vector(size_t(n * c.cols), seed++);
      X[size_t(c.cols / 3)] = 25.f;  // an outlier: its group's tables get a coarse step
      std::vector<double> want, scale;
      reference_product(W, c.rows, c.cols, X, n, want, scale);
      std::vector<float> got(size_t(n * c.rows), NAN);
      m.gemm(X.data(), n, got.data(), LutPath::kScalar);
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < c.rows; ++i) {
          double bound = 0;
          for (int64_t j = 0; j < gpr; ++j) {
            const int64_t c0 = j * c.group, c1 = std::min(c.cols, c0 + c.group);
            const int64_t entries = (c.bits == 2 ? 8 : 16) * ((c1 - c0 + 15) / 16);
            for (int r = 0; r < c.rank; ++r) {
              // The tables hold sums of V[r] centered on its mid-range.
              std::vector<float> U(size_t(l.levels()));
              float lo = l.v_at(r, 0), hi = lo;
              for (int k = 1; k < l.levels(); ++k) lo = std::min(lo, l.v_at(r, k)), hi = std::max(hi, l.v_at(r, k));
              for (int k = 0; k < l.levels(); ++k) U[size_t(k)] = l.v_at(r, k) - 0.5f * (lo + hi);
              double tmax = 0;  // max |table entry| over the group
              for (int64_t a = c0; a < c1; a += 2) {
                const double x0 = X[size_t(t * c.cols + a)], x1 = a + 1 < c1 ? X[size_t(t * c.cols + a + 1)] : 0.0;
                for (int qa = 0; qa < l.levels(); ++qa)
                  for (int qb = 0; qb < l.levels(); ++qb)
                    tmax = std::max(tmax, c.bits == 2 ? std::fabs(double(U[size_t(qa)]) * x0 + double(U[size_t(qb)]) * x1)
                                                     : std::fabs(double(U[size_t(qa)])) * std::max(std::fabs(x0), std::fabs(x1)));
              }
              bound += std::fabs(double(l.s(r, i * gpr + j))) * tmax / 127 / 2 * double(entries);
            }
          }
          const size_t e = size_t(t * c.rows + i);
          EXPECT_LE(std::fabs(double(got[e]) - want[e]), 1.01 * bound + 1e-5 * scale[e]) << describe(c) << " row " << i;
          EXPECT_GT(std::fabs(double(got[e]) - want[e]), 1e-7 * scale[e]) << describe(c) << " row " << i;
        }
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

}  // namespace
}  // namespace lcq::kernels
