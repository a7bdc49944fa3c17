// Dense f32 / bf16 GEMV baselines and the memory read bandwidth probe (Highway, dispatched
// at run time; OpenMP over rows / buffer slices).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/kernels/dense.cpp"  // relative to include/
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/aligned_allocator.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace lcq::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Sum of w[c] * x[c] with 4 independent FMA chains; LoadWeights(d, ptr) yields f32 lanes.
template <class T, class Load>
HWY_INLINE float DotRow(const T* HWY_RESTRICT w, const float* HWY_RESTRICT x, int64_t cols, Load load) {
  const hn::ScalableTag<float> df;
  const int64_t N = int64_t(hn::Lanes(df));
  auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  int64_t c = 0;
  for (; c + 4 * N <= cols; c += 4 * N) {
    a0 = hn::MulAdd(load(df, w + c), hn::LoadU(df, x + c), a0);
    a1 = hn::MulAdd(load(df, w + c + N), hn::LoadU(df, x + c + N), a1);
    a2 = hn::MulAdd(load(df, w + c + 2 * N), hn::LoadU(df, x + c + 2 * N), a2);
    a3 = hn::MulAdd(load(df, w + c + 3 * N), hn::LoadU(df, x + c + 3 * N), a3);
  }
  for (; c + N <= cols; c += N) a0 = hn::MulAdd(load(df, w + c), hn::LoadU(df, x + c), a0);
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (; c < cols; ++c) sum += hn::GetLane(load(hn::CappedTag<float, 1>(), w + c)) * x[c];
  return sum;
}

struct LoadF32 {
  template <class D>
  HWY_INLINE hn::Vec<D> operator()(D d, const float* p) const {
    return hn::LoadU(d, p);
  }
};

struct LoadBF16 {
  template <class D>
  HWY_INLINE hn::Vec<D> operator()(D d, const uint16_t* p) const {
    const hn::Rebind<hwy::bfloat16_t, D> dbf;
    return hn::PromoteTo(d, hn::LoadU(dbf, reinterpret_cast<const hwy::bfloat16_t*>(p)));
  }
};

struct LoadF16 {
  template <class D>
  HWY_INLINE hn::Vec<D> operator()(D d, const uint16_t* p) const {
    const hn::Rebind<hwy::float16_t, D> dh;
    return hn::PromoteTo(d, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
  }
};

void GemvF32Rows(const float* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1) {
  for (int64_t i = r0; i < r1; ++i) y[i] = DotRow(W + i * cols, x, cols, LoadF32());
}

void GemvBF16Rows(const uint16_t* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1) {
  for (int64_t i = r0; i < r1; ++i) y[i] = DotRow(W + i * cols, x, cols, LoadBF16());
}

void GemvF16Rows(const uint16_t* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1) {
  for (int64_t i = r0; i < r1; ++i) y[i] = DotRow(W + i * cols, x, cols, LoadF16());
}

// The sum of p[0, n), read as `streams` (1 or 4) runs side by side: run k covers the k-th
// quarter. Several streams keep more cache lines in flight than one, and a kernel that reads
// that way (the look-up-table kernel's tiles) reaches the higher figure.
float SumBuffer(const float* p, int64_t n, int streams) {
  const hn::ScalableTag<float> df;
  const int64_t N = int64_t(hn::Lanes(df));
  const int64_t blocks = n / (4 * N);  // each iteration reads 4 vectors: [0, 4 * N * blocks)
  // One stream: the 4 vectors are adjacent. Four: one from each quarter of that range.
  const int64_t apart = streams == 4 ? blocks * N : N, step = streams == 4 ? N : 4 * N;
  auto a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
  for (int64_t k = 0, i = 0; k < blocks; ++k, i += step) {
    a0 = hn::Add(a0, hn::LoadU(df, p + i));
    a1 = hn::Add(a1, hn::LoadU(df, p + i + apart));
    a2 = hn::Add(a2, hn::LoadU(df, p + i + 2 * apart));
    a3 = hn::Add(a3, hn::LoadU(df, p + i + 3 * apart));
  }
  float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(a0, a1), hn::Add(a2, a3))));
  for (int64_t i = 4 * N * blocks; i < n; ++i) sum += p[i];
  return sum;
}

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "lcq/kernels/dense.h"
#include "lcq/kernels/membw.h"

namespace lcq::kernels {

HWY_EXPORT(GemvF32Rows);
HWY_EXPORT(GemvBF16Rows);
HWY_EXPORT(GemvF16Rows);
HWY_EXPORT(SumBuffer);

namespace {

// Splits rows over the OpenMP threads in chunks (small products stay on this thread).
template <class Fn>
void parallel_rows(int64_t rows, int64_t cols, Fn fn) {
  const int threads = omp_get_max_threads();
  if (threads <= 1 || double(rows) * double(cols) < 2.0e5 || rows < 16) {
    fn(0, rows);
    return;
  }
  const int64_t chunk = std::max<int64_t>(8, rows / (int64_t(threads) * 8));
  const int64_t nchunks = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t c = 0; c < nchunks; ++c) fn(c * chunk, std::min(rows, (c + 1) * chunk));
}

}  // namespace

void gemv_f32(const float* W, int64_t rows, int64_t cols, const float* x, float* y) {
  auto kernel = HWY_DYNAMIC_DISPATCH(GemvF32Rows);
  parallel_rows(rows, cols, [&](int64_t r0, int64_t r1) { kernel(W, cols, x, y, r0, r1); });
}

void gemv_bf16(const uint16_t* W, int64_t rows, int64_t cols, const float* x, float* y) {
  auto kernel = HWY_DYNAMIC_DISPATCH(GemvBF16Rows);
  parallel_rows(rows, cols, [&](int64_t r0, int64_t r1) { kernel(W, cols, x, y, r0, r1); });
}

void gemv_f16(const uint16_t* W, int64_t rows, int64_t cols, const float* x, float* y) {
  auto kernel = HWY_DYNAMIC_DISPATCH(GemvF16Rows);
  parallel_rows(rows, cols, [&](int64_t r0, int64_t r1) { kernel(W, cols, x, y, r0, r1); });
}

void gemv_f32_rows(const float* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(GemvF32Rows)(W, cols, x, y, r0, r1);
}

void gemv_bf16_rows(const uint16_t* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(GemvBF16Rows)(W, cols, x, y, r0, r1);
}

void gemv_f16_rows(const uint16_t* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1) {
  HWY_DYNAMIC_DISPATCH(GemvF16Rows)(W, cols, x, y, r0, r1);
}

double measure_read_bandwidth_gbs(size_t bytes, int threads, int repetitions) {
  threads = std::max(1, threads);
  repetitions = std::max(1, repetitions);
  const int64_t n = int64_t(std::max<size_t>(bytes / sizeof(float), 1024));
  auto buf = hwy::AllocateAligned<float>(size_t(n));
  float* p = buf.get();
  const int64_t slice = (n + threads - 1) / threads;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) {  // first touch by the thread that reads the slice
    for (int64_t i = t * slice; i < std::min(n, (t + 1) * slice); ++i) p[i] = float(i & 7);
  }
  auto sum = HWY_DYNAMIC_DISPATCH(SumBuffer);
  volatile float sink = 0.f;
  double best = 0.;
  for (int streams : {1, 4}) {  // each thread reads its slice as one stream, then as four
    std::vector<double> gbs;
    for (int r = 0; r < repetitions + 1; ++r) {  // the first pass warms up threads and TLBs
      const auto t0 = std::chrono::steady_clock::now();
      float total = 0.f;
#pragma omp parallel for num_threads(threads) schedule(static, 1) reduction(+ : total)
      for (int t = 0; t < threads; ++t) {
        const int64_t b = t * slice, e = std::min(n, (t + 1) * slice);
        if (e > b) total += sum(p + b, e - b, streams);
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      sink = sink + total;
      if (r > 0) gbs.push_back(double(n) * sizeof(float) / s / 1e9);
    }
    std::sort(gbs.begin(), gbs.end());
    best = std::max(best, gbs[gbs.size() / 2]);
  }
  return best;
}

}  // namespace lcq::kernels
#endif  // HWY_ONCE
