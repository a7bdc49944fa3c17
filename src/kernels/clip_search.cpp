// The clipping search of a rank-one grid (lcq/kernels/clip_search.h), Highway SIMD
// dispatched at run time.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/kernels/clip_search.cpp"  // relative to include/
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "lcq/kernels/clip_search.h"

HWY_BEFORE_NAMESPACE();
namespace lcq::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// The error norm |e|^p: exact products for p = 1 and 2, exp(p log |e|) otherwise.
enum class Norm { kAbs, kSquare, kPower };

inline float scalar_norm(float e, Norm norm, float p) {
  const float a = std::fabs(e);
  return norm == Norm::kAbs ? a : norm == Norm::kSquare ? a * a : (a > 0 ? std::pow(a, p) : 0.f);
}

// sum_i c_i |s (clamp(round(w_i / s) + z, 0, qmax) - z) - w_i|^p, the grid's products
// rounded as the tensor form rounds them (q s - s z).
template <Norm norm>
HWY_INLINE double GridError(const float* HWY_RESTRICT w, const float* HWY_RESTRICT c, int64_t n, float s, float z,
                            float qmax, float p) {
  using DF = hn::ScalableTag<float>;
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const auto vs = hn::Set(d, s), vz = hn::Set(d, z), vsz = hn::Set(d, s * z), vq = hn::Set(d, qmax),
             vp = hn::Set(d, p), tiny = hn::Set(d, 1e-30f), zero = hn::Zero(d);
  auto acc = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto x = hn::LoadU(d, w + i);
    const auto q = hn::Min(hn::Max(hn::Add(hn::Round(hn::Div(x, vs)), vz), zero), vq);
    const auto a = hn::Abs(hn::Sub(hn::Sub(hn::Mul(q, vs), vsz), x));
    hn::Vec<DF> e;
    if constexpr (norm == Norm::kAbs) {
      e = a;
    } else if constexpr (norm == Norm::kSquare) {
      e = hn::Mul(a, a);
    } else {
      // log(0) is -inf; exp of it need not be 0 in every target: zero errors stay zero.
      e = hn::IfThenElseZero(hn::Gt(a, zero), hn::Exp(d, hn::Mul(vp, hn::Log(d, hn::Max(a, tiny)))));
    }
    acc = c ? hn::MulAdd(e, hn::LoadU(d, c + i), acc) : hn::Add(acc, e);
  }
  double sum = double(hn::GetLane(hn::SumOfLanes(d, acc)));
  for (; i < n; ++i) {
    const float q = std::min(std::max(std::nearbyint(w[i] / s) + z, 0.f), qmax);
    const float e = scalar_norm(q * s - s * z - w[i], norm, p);
    sum += double(c ? e * c[i] : e);
  }
  return sum;
}

template <Norm norm>
ClipChoice Search(const float* w, const float* c, int64_t n, int bits, int steps, double min_shrink, float p) {
  const float qmax = float((1 << bits) - 1);
  float wmin = w[0], wmax = w[0];
  for (int64_t i = 1; i < n; ++i) wmin = std::min(wmin, w[i]), wmax = std::max(wmax, w[i]);
  ClipChoice best;
  for (int k = 0; k < std::max(steps, 1); ++k) {
    const float t = k == 0 ? 1.f : float(1.0 - (1.0 - min_shrink) * double(k) / double(steps));
    const float hi = wmax * t, lo = wmin * t;
    // A group whose values are all equal gets a tiny positive scale (no division by zero).
    const float s = std::max((hi - lo) / qmax, 1e-8f);
    const float z = std::min(std::max(std::nearbyint(-lo / s), 0.f), qmax);
    const double err = GridError<norm>(w, c, n, s, z, qmax, p);
    if (k == 0 || err < best.error) best = ClipChoice{s, z, err};
  }
  return best;
}

ClipChoice SearchClipping(const float* w, const float* c, int64_t n, int bits, int steps, double min_shrink,
                          double p) {
  if (p == 1.0) return Search<Norm::kAbs>(w, c, n, bits, steps, min_shrink, 1.f);
  if (p == 2.0) return Search<Norm::kSquare>(w, c, n, bits, steps, min_shrink, 2.f);
  return Search<Norm::kPower>(w, c, n, bits, steps, min_shrink, float(p));
}

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lcq::kernels {

HWY_EXPORT(SearchClipping);

ClipChoice search_clipping(const float* w, const float* c, int64_t n, int bits, int steps, double min_shrink,
                           double p) {
  if (n <= 0) return {1e-8f, 0.f, 0.0};
  return HWY_DYNAMIC_DISPATCH(SearchClipping)(w, c, n, bits, steps, min_shrink, p);
}

}  // namespace lcq::kernels
#endif  // HWY_ONCE
