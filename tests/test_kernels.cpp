// Tests for lcq_kernels: the packed codebook layout (round trips), every kernel path (scalar
// reference and each SIMD target this CPU runs) against CodebookLayer::dequantize() followed
// by a double-precision product, the dense baselines, and the bandwidth probe.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/kernels/clip_search.h"
#include "lcq/kernels/matrix.h"
#include "lcq/kernels/codebook_layer.h"
#include "lcq/kernels/dense.h"
#include "lcq/kernels/membw.h"
#include "lcq/kernels/packed_codebook.h"
#include "../src/kernels/packed_int8.h"  // detail::quantize_token
#include "kernel_test_helpers.h"

namespace lcq::kernels {
namespace {
using namespace test;  // kernel_test_helpers.h

const std::vector<Config>& kernel_configs() {
  static const std::vector<Config> configs = [] {
    std::vector<Config> out;
    const std::vector<Config> shapes = {
        {7, 300, 0, 128, 0, 0},   // ragged last group (44 columns), odd rows
        {33, 129, 0, 32, 0, 0},   // one column past a group boundary
        {1, 1, 0, 1, 0, 0},       // group of 1: the scalar path
        {5, 576, 0, 128, 0, 0},   // SmolLM2 width: 4.5 groups
        {3, 520, 0, 8, 0, 0},     // smallest SIMD group, 3-bit tail words
        {2, 1000, 0, 200, 0, 0},  // group not a power of two
        {4, 300, 0, 100, 0, 0},   // group not a multiple of 8: the scalar path
        {3, 200, 0, 8, 0, 0},     // 2-bit rows end in a padded full block spanning 7 groups
    };
    int k = 0;
    for (int bits : {2, 3, 4, 8})
      for (const Config& s : shapes) {
        Config c = s;
        c.bits = bits;
        c.rank = 1 + (k % 4);
        c.dq_bits = (k / 4) % 2 == 0 ? 8 : 0;
        if (k % 7 == 3) c.dq_bits = 4;
        ++k;
        out.push_back(c);
      }
    for (int rank = 1; rank <= 4; ++rank)
      for (int dq : {0, 8}) out.push_back({9, 256, 2 + rank % 3, 64, rank, dq});
    out.push_back({3, 70, 5, 16, 2, 8});   // bit widths without a dedicated format
    out.push_back({3, 70, 1, 16, 1, 0});
    return out;
  }();
  return configs;
}


TEST(PackedCodebook, PackUnpackRoundTrip) {
  for (const Config& c : kernel_configs()) {
    const CodebookLayer l = random_layer(c, 11);
    const PackedCodebookMatrix m = PackedCodebookMatrix::pack(l);
    const CodebookLayer u = m.unpack();
    EXPECT_EQ(u.indices, l.indices) << describe(c);
    EXPECT_EQ(u.s_codes, l.s_codes) << describe(c);
    EXPECT_EQ(u.b_codes, l.b_codes) << describe(c);
    EXPECT_EQ(u.s_scale, l.s_scale) << describe(c);
    EXPECT_EQ(u.s_offset, l.s_offset) << describe(c);
    EXPECT_EQ(u.b_scale, l.b_scale) << describe(c);
    EXPECT_EQ(u.b_offset, l.b_offset) << describe(c);
    EXPECT_EQ(u.s_f32, l.s_f32) << describe(c);
    EXPECT_EQ(u.b_f32, l.b_f32) << describe(c);
    EXPECT_EQ(u.v, l.v) << describe(c);
    EXPECT_EQ(u.dq_bits, l.dq_bits);
    EXPECT_EQ(u.dq_group, l.dq_group);
    for (int64_t i = 0; i < c.rows; i += 3)
      for (int64_t col = 0; col < c.cols; col += 7)
        ASSERT_EQ(m.index_at(i, col), l.indices[size_t(i * c.cols + col)]) << describe(c);

    std::vector<float> want(size_t(c.rows * c.cols)), got(want.size());
    l.dequantize(want.data());
    m.dequantize(got.data());
    EXPECT_EQ(got, want) << describe(c);
    const int64_t r0 = c.rows / 3, r1 = c.rows - c.rows / 4;  // a range of rows alone
    std::vector<float> part(size_t((r1 - r0) * c.cols));
    m.dequantize_rows(r0, r1, part.data());
    EXPECT_TRUE(std::equal(part.begin(), part.end(), want.begin() + r0 * c.cols)) << describe(c);
    std::vector<float> column(size_t(c.rows));  // a column alone (the outlier split's columns)
    for (int64_t col : {int64_t(0), c.cols / 2, c.cols - 1}) {
      m.dequantize_column(col, column.data());
      for (int64_t i = 0; i < c.rows; ++i)
        ASSERT_EQ(column[size_t(i)], want[size_t(i * c.cols + col)]) << describe(c) << " column " << col;
    }
  }
}

// clone() copies the index bytes and parameters: the copy outlives its original and computes
// what it computed.
TEST(PackedCodebook, CloneIsADeepCopy) {
  for (const Config& c : kernel_configs()) {
    const CodebookLayer l = random_layer(c, 23);
    std::vector<float> x(size_t(c.cols)), want(size_t(c.rows)), got(size_t(c.rows));
    for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * float(i));
    PackedCodebookMatrix copy;
    {
      const PackedCodebookMatrix m = PackedCodebookMatrix::pack(l);
      m.gemv(x.data(), want.data(), KernelPath::kScalar);
      copy = m.clone();
    }
    copy.gemv(x.data(), got.data(), KernelPath::kScalar);
    EXPECT_EQ(got, want) << describe(c);
    EXPECT_EQ(copy.unpack().indices, l.indices) << describe(c);
    EXPECT_EQ(copy.nbytes(), PackedCodebookMatrix::pack(l).nbytes()) << describe(c);
  }
}

TEST(PackedCodebook, MemoryStaysAtBitWidth) {
  const Config c{64, 4096, 2, 128, 2, 8};
  const CodebookLayer l = random_layer(c, 3, 64);
  const PackedCodebookMatrix m = PackedCodebookMatrix::pack(l);
  EXPECT_EQ(m.index_bytes(), size_t(64 * 4096 * 2 / 8));
  // 2 index bits + 3 one-byte codes per 128 weights + block constants + V.
  EXPECT_LT(m.bits_per_weight(), 2.0 + 3 * 8.0 / 128 + 0.05);
  EXPECT_GE(m.bits_per_weight(), l.bits_per_weight());
  for (int bits : {3, 4}) {
    const PackedCodebookMatrix p = PackedCodebookMatrix::pack(random_layer({16, 576, bits, 64, 1, 8}, 5));
    EXPECT_LE(double(p.index_bytes()) * 8 / (16 * 576), bits * 1.12) << bits;  // ragged tails pad a little
  }
}

TEST(PackedCodebook, PackRejectsInconsistentLayers) {
  CodebookLayer l = random_layer({4, 64, 2, 32, 1, 8}, 9);
  l.indices[5] = 7;  // out of range for 2 bits
  EXPECT_THROW(PackedCodebookMatrix::pack(l), Error);
  l = random_layer({4, 64, 2, 32, 1, 0}, 9);
  l.b_f32.pop_back();
  EXPECT_THROW(PackedCodebookMatrix::pack(l), Error);
}

// validate() skips its scan of every group's codebook when all inputs of a double-quantized
// layer are finite fp16 (no sum of them can overflow); a NaN or infinity in any of them is
// still found by the scan and named as the first bad codebook entry.
TEST(CodebookLayer, NonFiniteFp16InputsAreFoundByTheScan) {
  EXPECT_NO_THROW(random_layer({8, 64, 4, 32, 2, 8}, 3).validate("ok"));
  const uint16_t nan = 0x7E00, inf = 0x7C00;
  for (int which = 0; which < 5; ++which) {
    CodebookLayer l = random_layer({8, 64, 4, 32, 2, 8}, 3);
    std::vector<uint16_t>* a[] = {&l.v, &l.s_scale, &l.s_offset, &l.b_scale, &l.b_offset};
    a[which]->back() = which % 2 ? inf : nan;
    try {
      l.validate("layer");
      ADD_FAILURE() << "accepted a non-finite input " << which;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("codebook entry"), std::string::npos) << e.what();
    }
  }
}

TEST(PackedCodebook, LayerIndexPackingRoundTrip) {
  for (int bits : {2, 3, 4})
    for (int64_t cols : {1, 3, 7, 13, 129}) {
      const CodebookLayer l = random_layer({5, cols, bits, 1, 1, 0}, uint32_t(cols * 10 + bits));
      const std::vector<uint8_t> packed = l.pack_indices();
      ASSERT_EQ(packed.size(), size_t(5 * ((cols * bits + 7) / 8)));
      CodebookLayer u = l;
      u.indices.assign(u.indices.size(), 0);
      u.unpack_indices(packed.data(), packed.size(), "test");
      EXPECT_EQ(u.indices, l.indices) << bits << " bits, " << cols << " cols";
      EXPECT_THROW(u.unpack_indices(packed.data(), packed.size() - 1, "test"), Error);
    }
}

TEST(PackedCodebook, TargetsAreListedAndForceable) {
  const std::vector<SimdTarget> targets = available_simd_targets();
  ASSERT_GE(targets.size(), 1u);
  EXPECT_STREQ(targets.back().name, "SCALAR");  // the fallback is always there
  for (const SimdTarget& t : targets) {
    TargetGuard guard(t.id);
    EXPECT_STREQ(current_simd_target(), t.name);
  }
  EXPECT_STREQ(current_simd_target(), targets.front().name);
}

// The integer path's activation quantization, on every SIMD target, equals the scalar
// definition exactly: ragged groups, widths that are no multiple of any vector, an all-zero
// group, and ties (amax 127 makes x * 127 / amax = x, and 2.5 rounds to 2, 3.5 to 4).
TEST(PackedCodebook, ActivationQuantizationIsExactOnEveryTarget) {
  for (const auto [cols, group] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {15, 8}, {300, 128}, {4100, 64}}) {
    std::vector<float> x = random_vector(size_t(cols), uint32_t(cols));
    if (cols >= 8) {
      for (int64_t c = 0; c < std::min<int64_t>(group, cols); ++c) x[size_t(c)] = 0.f;  // group 0: zeros
      if (cols > group + 4) {  // group 1: amax 127 and ties
        x[size_t(group)] = 127.f;
        x[size_t(group + 1)] = 2.5f;
        x[size_t(group + 2)] = -2.5f;
        x[size_t(group + 3)] = 3.5f;
      }
    }
    const int64_t groups = (cols + group - 1) / group;
    std::vector<float> want_scale(static_cast<size_t>(groups));
    std::vector<int8_t> want_q(static_cast<size_t>(cols));
    std::vector<int32_t> want_sum(size_t(groups), 0);
    for (int64_t j = 0; j < groups; ++j) {
      const int64_t c0 = j * group, c1 = std::min(cols, c0 + group);
      float amax = 0.f;
      for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(x[size_t(c)]));
      want_scale[size_t(j)] = amax / 127.f;
      const float inv = amax > 0.f ? 127.f / amax : 0.f;
      for (int64_t c = c0; c < c1; ++c) {
        const int v = int(std::clamp(std::nearbyint(x[size_t(c)] * inv), -127.f, 127.f));
        want_q[size_t(c)] = int8_t(v);
        want_sum[size_t(j)] += v;
      }
    }
    if (cols > group + 4) {
      EXPECT_EQ(want_q[size_t(group + 1)], 2);
      EXPECT_EQ(want_q[size_t(group + 2)], -2);
      EXPECT_EQ(want_q[size_t(group + 3)], 4);
    }
    for (const SimdTarget& t : available_simd_targets()) {
      TargetGuard guard(t.id);
      std::vector<float> scale(size_t(groups), NAN);
      std::vector<int8_t> q(size_t(cols), 99);
      std::vector<int32_t> sum(size_t(groups), -1);
      detail::quantize_token(x.data(), cols, group, scale.data(), q.data(), sum.data());
      EXPECT_EQ(scale, want_scale) << t.name << " cols " << cols;
      EXPECT_EQ(q, want_q) << t.name << " cols " << cols;
      EXPECT_EQ(sum, want_sum) << t.name << " cols " << cols;
    }
  }
}

// Every kernel path, thread count and batch size against the double-precision reference.
TEST(PackedCodebook, KernelsMatchReference) {
  const std::vector<SimdTarget> targets = available_simd_targets();
  uint32_t seed = 100;
  for (const Config& c : kernel_configs()) {
    const CodebookLayer l = random_layer(c, seed++);
    const PackedCodebookMatrix m = PackedCodebookMatrix::pack(l);
    std::vector<float> W(size_t(c.rows * c.cols));
    l.dequantize(W.data());
    for (int64_t n : {1, 3, 17}) {
      const std::vector<float> X = random_vector(size_t(n * c.cols), seed++);
      std::vector<double> want, scale;
      reference_product(W, c.rows, c.cols, X, n, want, scale);
      std::vector<float> Y(size_t(n * c.rows));
      auto check = [&](KernelPath path, const std::string& what) {
        std::fill(Y.begin(), Y.end(), NAN);
        if (n == 1) {
          m.gemv(X.data(), Y.data(), path);
        } else {
          m.gemm(X.data(), n, Y.data(), path);
        }
        EXPECT_EQ(count_mismatches(Y, want, scale, 1e-5, what), 0) << what;
      };
      check(KernelPath::kScalar, describe(c) + " scalar n=" + std::to_string(n));
      for (const SimdTarget& t : targets) {
        TargetGuard guard(t.id);
        check(KernelPath::kAuto, describe(c) + " " + t.name + " n=" + std::to_string(n));
      }
    }
    if (c.group % 8 != 0) EXPECT_THROW(m.gemv(W.data(), W.data(), KernelPath::kSimd), Error);
  }
}

// The integer path (activations to int8 per group, codebooks to 7-bit levels): its scalar
// reference stays within the rounding bound of both quantizations of the exact product, and
// the SIMD kernel equals the scalar reference up to float summation order.
TEST(PackedCodebook, IntegerPathMatchesItsReferenceAndBound) {
  const std::vector<Config> configs = {
      {5, 576, 2, 128, 2, 8},   // SmolLM2 width: 4 blocks + a 2-bit tail, ragged last group
      {7, 1000, 2, 256, 1, 0},  // 2 blocks per group, padded full block at the end
      {3, 200, 2, 128, 3, 4},   // a padded full block and 4-bit double quantization
      {6, 576, 4, 64, 2, 8},    // 4-bit: one block per group, 4-bit tail
      {4, 300, 4, 128, 4, 0},   // 4-bit: two blocks per group, tail in the ragged group
      {33, 512, 2, 128, 2, 8},  // an odd row count (below the thread-split threshold: one thread)
      {3, 576, 2, 128, 1, 8},   // as many full blocks as the one before, plus a tail (per-shape state)
      {100, 2048, 2, 128, 2, 8},  // enough work (>= 2e5 weights x tokens) to be split over threads
      // 3 bits: blocks of 256 columns read in runs of 32 indices, each in one block half
      {5, 576, 3, 128, 2, 8},    // 2 full blocks (4 groups) + an 8-field tail in the ragged group
      {4, 1024, 3, 256, 1, 0},   // one group per block
      {3, 744, 3, 128, 3, 4},    // a 29-field tail over three words and both halves, 4-bit dq
      {6, 248, 3, 128, 4, 8},    // no full block: a 31-field row is one padded full block
      {9, 100, 3, 128, 2, 8},    // a 13-field tail only, its last field partial (4 of 8 lanes)
      {40, 4096, 3, 128, 2, 8},  // enough work to be split over threads
  };
  std::vector<SimdTarget> targets = available_simd_targets();
  targets.insert(targets.begin(), {0, "best"});  // unforced: the integer kernel's own best (AVX-512 VNNI here)
  uint32_t seed = 500;
  for (const Config& c : configs) {
    const CodebookLayer l = random_layer(c, seed++, 7);
    const PackedCodebookMatrix m = PackedCodebookMatrix::pack(l);
    ASSERT_TRUE(m.int8_applies()) << describe(c);
    std::vector<float> W(size_t(c.rows * c.cols));
    l.dequantize(W.data());
    const int64_t gpr = (c.cols + c.group - 1) / c.group;
    std::vector<float> cb(size_t(l.levels()));
    for (int64_t n : {1, 3}) {
      std::vector<float> X = random_vector(size_t(n * c.cols), seed++);
      X[size_t(c.cols / 2)] = 40.f;  // an outlier: its group's activations get a coarse step
      std::vector<double> want, scale;
      reference_product(W, c.rows, c.cols, X, n, want, scale);
      std::vector<float> ref(size_t(n * c.rows), NAN), simd(ref.size(), NAN);
      if (n == 1) m.gemv(X.data(), ref.data(), KernelPath::kInt8Scalar);
      else m.gemm(X.data(), n, ref.data(), KernelPath::kInt8Scalar);
      // |C x - C' x'| <= |C| |x - x'| + |C - C'| |x'|, with |x - x'| <= dx / 2 and
      // |C - C'| <= dw / 2 for the 7-bit levels of the group's whole codebook.
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < c.rows; ++i) {
          double bound = 0;
          for (int64_t j = 0; j < gpr; ++j) {
            l.codebook(i * gpr + j, cb.data());
            const auto [lo, hi] = std::minmax_element(cb.begin(), cb.end());
            const double dw = (double(*hi) - double(*lo)) / 127;
            double amax = 0;
            const int64_t c0 = j * c.group, c1 = std::min(c.cols, c0 + c.group);
            for (int64_t k = c0; k < c1; ++k) amax = std::max(amax, std::fabs(double(X[size_t(t * c.cols + k)])));
            const double dx = amax / 127;
            for (int64_t k = c0; k < c1; ++k)
              bound += std::fabs(double(W[size_t(i * c.cols + k)])) * dx / 2 +
                       dw / 2 * (std::fabs(double(X[size_t(t * c.cols + k)])) + dx / 2);
          }
          const size_t e = size_t(t * c.rows + i);
          EXPECT_LE(std::fabs(double(ref[e]) - want[e]), 1.01 * bound + 1e-5 * scale[e]) << describe(c) << " row " << i;
          // Not trivially within the bound: the rounding is visible.
          EXPECT_GT(std::fabs(double(ref[e]) - want[e]), 1e-7 * scale[e]) << describe(c) << " row " << i;
        }
      for (const SimdTarget& tg : targets) {
        TargetGuard guard(tg.id);
        if (!int8_simd_available(c.bits)) {
          EXPECT_THROW(m.gemv(X.data(), simd.data(), KernelPath::kInt8), Error) << tg.name;
          continue;
        }
        for (int threads : {1, 2}) {
          ThreadGuard th(threads);
          std::fill(simd.begin(), simd.end(), NAN);
          if (n == 1) m.gemv(X.data(), simd.data(), KernelPath::kInt8);
          else m.gemm(X.data(), n, simd.data(), KernelPath::kInt8);
          std::vector<double> ref_d(ref.begin(), ref.end());
          EXPECT_EQ(count_mismatches(simd, ref_d, scale, 2e-6, describe(c) + " int8 " + tg.name), 0)
              << threads << " threads, n=" << n;
        }
      }
    }
  }
}

TEST(PackedCodebook, IntegerPathRejectsLayoutsItCannotRun) {
  const std::vector<float> x(576, 1.f);
  std::vector<float> y(4);
  for (const Config& c : {Config{4, 576, 3, 64, 2, 8}, Config{4, 576, 2, 64, 2, 8}, Config{4, 576, 4, 32, 1, 0},
                          Config{4, 576, 8, 128, 1, 8}}) {
    const PackedCodebookMatrix m = PackedCodebookMatrix::pack(random_layer(c, 3));
    EXPECT_FALSE(m.int8_applies()) << describe(c);
    EXPECT_THROW(m.gemv(x.data(), y.data(), KernelPath::kInt8Scalar), Error) << describe(c);
    EXPECT_THROW(m.gemv(x.data(), y.data(), KernelPath::kInt8), Error) << describe(c);
  }
}

// Large enough that the products are split over threads.
TEST(PackedCodebook, ThreadedMatchesSingleThreaded) {
  const std::vector<SimdTarget> targets = available_simd_targets();
  for (int bits : {2, 3, 4, 8}) {
    const Config c{301, 832, bits, 64, 2, bits == 3 ? 0 : 8};
    const CodebookLayer l = random_layer(c, uint32_t(bits));
    const PackedCodebookMatrix m = PackedCodebookMatrix::pack(l);
    std::vector<float> W(size_t(c.rows * c.cols));
    l.dequantize(W.data());
    for (int64_t n : {1, 3}) {
      const std::vector<float> X = random_vector(size_t(n * c.cols), 77);
      std::vector<double> want, scale;
      reference_product(W, c.rows, c.cols, X, n, want, scale);
      for (int threads : {1, 2}) {
        ThreadGuard tg(threads);
        for (const SimdTarget& t : {targets.front(), targets.back()}) {
          TargetGuard guard(t.id);
          std::vector<float> Y(size_t(n * c.rows), NAN);
          m.gemm(X.data(), n, Y.data());
          EXPECT_EQ(count_mismatches(Y, want, scale, 1e-5, describe(c) + " " + t.name), 0)
              << threads << " threads, n=" << n;
        }
      }
    }
  }
}

// The outlier split (src/kernels/outlier_split.h) of the int8 families: a token's product does
// not depend on the tokens before it. 400 tokens with a massive input each in a different
// column (more columns than a matrix keeps: kMaxColumns, 256) go through one matrix; a fresh
// matrix given only the last token computes the same bits.
TEST(OutlierSplit, AProductDoesNotDependOnEarlierTokens) {
  const Config c{96, 512, 4, 64, 2, 8};
  const CodebookLayer l = random_layer(c, 77, 7);
  for (KernelChoice k : {KernelChoice::kInt8, KernelChoice::kLut}) {
    const Family f = choose_family(l, k);
    if (f == Family::kFloat) continue;  // no int8-rounded kernel here: nothing is split
    const auto seen = make_codebook_matrix(l, f);
    std::vector<float> y(size_t(c.rows)), fresh_y(y.size());
    std::vector<float> x;
    for (int t = 0; t < 400; ++t) {
      x = random_vector(size_t(c.cols), 900 + uint32_t(t));
      x[size_t((t * 37) % c.cols)] = 300.f;  // far past 8x the token's RMS
      seen->gemv_units(x.data(), y.data(), 0, seen->work_units());
    }
    const auto fresh = make_codebook_matrix(l, f);
    fresh->gemv_units(x.data(), fresh_y.data(), 0, fresh->work_units());
    EXPECT_EQ(y, fresh_y) << family_name(f);
  }
}

TEST(DenseKernels, GemvMatchesReference) {
  const std::vector<SimdTarget> targets = available_simd_targets();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{1, 1}, {7, 37}, {300, 1003}}) {
    std::vector<float> W = random_vector(size_t(rows * cols), 5);
    std::vector<uint16_t> Wb(W.size());
    std::vector<float> Wr(W.size());  // the bf16 weights as floats
    for (size_t k = 0; k < W.size(); ++k) {
      Wb[k] = f32_to_bf16(W[k]);
      Wr[k] = bf16_to_f32(Wb[k]);
    }
    const std::vector<float> x = random_vector(size_t(cols), 6);
    std::vector<double> want, scale, want_b, scale_b;
    reference_product(W, rows, cols, x, 1, want, scale);
    reference_product(Wr, rows, cols, x, 1, want_b, scale_b);
    for (int threads : {1, 2}) {
      ThreadGuard tg(threads);
      for (const SimdTarget& t : targets) {
        TargetGuard guard(t.id);
        std::vector<float> y(size_t(rows), NAN);
        gemv_f32(W.data(), rows, cols, x.data(), y.data());
        EXPECT_EQ(count_mismatches(y, want, scale, 1e-5, std::string("f32 ") + t.name), 0) << rows << "x" << cols;
        std::fill(y.begin(), y.end(), NAN);
        gemv_bf16(Wb.data(), rows, cols, x.data(), y.data());
        EXPECT_EQ(count_mismatches(y, want_b, scale_b, 1e-5, std::string("bf16 ") + t.name), 0) << rows << "x" << cols;
      }
    }
  }
}

TEST(MemoryBandwidth, MeasuresSomething) {
  const double one = measure_read_bandwidth_gbs(size_t(4) << 20, 1, 3);
  const double two = measure_read_bandwidth_gbs(size_t(4) << 20, 2, 3);
  EXPECT_GT(one, 0.1);
  EXPECT_LT(one, 1e4);
  EXPECT_GT(two, 0.1);
}

}  // namespace
}  // namespace lcq::kernels

namespace lcq::kernels {
namespace {

// The clipping search against a double-precision evaluation of every candidate shrink: the
// chosen grid is one of the candidates and its error is the smallest within float rounding.
TEST(ClipSearch, ChoosesTheSmallestErrorShrink) {
  std::mt19937 rng(7);
  std::student_t_distribution<float> heavy(3.f);  // outliers, as in real weights
  std::uniform_real_distribution<float> pos(0.1f, 4.f);
  const int steps = 100;
  const double min_shrink = 0.2;
  int cases = 0, shrunk = 0;
  for (int64_t n : {1, 3, 17, 32, 44, 128, 130})
    for (int bits : {2, 3, 4})
      for (double p : {1.0, 2.0, 2.4})
        for (bool weighted : {false, true})
          for (int rep = 0; rep < 4; ++rep) {
            std::vector<float> w(static_cast<size_t>(n)), c(static_cast<size_t>(n));
            for (auto& x : w) x = 0.02f * heavy(rng);
            if (rep == 3) std::fill(w.begin(), w.end(), 0.5f);  // all equal: the tiny scale
            for (auto& x : c) x = pos(rng);
            const float* cp = weighted ? c.data() : nullptr;
            const ClipChoice got = search_clipping(w.data(), cp, n, bits, steps, min_shrink, p);
            const float qmax = float((1 << bits) - 1);
            const float wmin = *std::min_element(w.begin(), w.end()), wmax = *std::max_element(w.begin(), w.end());
            double best = INFINITY, chosen = NAN;
            for (int k = 0; k < steps; ++k) {
              const float t = k == 0 ? 1.f : float(1.0 - (1.0 - min_shrink) * k / steps);
              const float s = std::max((wmax * t - wmin * t) / qmax, 1e-8f);
              const float z = std::min(std::max(std::nearbyint(-wmin * t / s), 0.f), qmax);
              double err = 0;
              for (int64_t i = 0; i < n; ++i) {
                const float q = std::min(std::max(std::nearbyint(w[size_t(i)] / s) + z, 0.f), qmax);
                err += (cp ? cp[i] : 1.0) * std::pow(std::fabs(double(q * s - s * z) - w[size_t(i)]), p);
              }
              best = std::min(best, err);
              // (the same grid up to a contracted multiply-add in either computation)
              if (std::fabs(s - got.scale) <= 1e-6f * s && z == got.zero && std::isnan(chosen)) chosen = err;
            }
            ASSERT_FALSE(std::isnan(chosen)) << "n " << n << " bits " << bits << " p " << p << ": not a candidate grid";
            EXPECT_LE(chosen, best * (1 + 1e-5) + 1e-30) << "n " << n << " bits " << bits << " p " << p;
            EXPECT_NEAR(got.error, chosen, 1e-5 * chosen + 1e-30);
            ++cases;
            shrunk += got.scale < std::max((wmax - wmin) / qmax, 1e-8f);
          }
  EXPECT_GT(shrunk, cases / 4);  // the search does move away from min-max
}

}  // namespace
}  // namespace lcq::kernels
