// The decode path's vector operations (lcq/kernels/vec.h), Highway SIMD dispatched at run time.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/kernels/vec.cpp"  // relative to include/
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

HWY_BEFORE_NAMESPACE();
namespace lcq::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

HWY_INLINE float SumOf(DF d, hn::Vec<DF> v) { return hn::GetLane(hn::SumOfLanes(d, v)); }

// sum x[i] * y[i] with two accumulators.
HWY_INLINE float Dot(const float* HWY_RESTRICT x, const float* HWY_RESTRICT y, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  auto a0 = hn::Zero(d), a1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    a0 = hn::MulAdd(hn::LoadU(d, x + i), hn::LoadU(d, y + i), a0);
    a1 = hn::MulAdd(hn::LoadU(d, x + i + N), hn::LoadU(d, y + i + N), a1);
  }
  for (; i + N <= n; i += N) a0 = hn::MulAdd(hn::LoadU(d, x + i), hn::LoadU(d, y + i), a0);
  float s = SumOf(d, hn::Add(a0, a1));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

// out[i] = x[i] * a * w[i] (+ b[i] when b is given), after subtracting `shift`.
HWY_INLINE void ScaleBy(const float* x, float shift, float a, const float* w, const float* b, float* out, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const auto va = hn::Set(d, a), vs = hn::Set(d, shift);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    auto y = hn::Mul(hn::Mul(hn::Sub(hn::LoadU(d, x + i), vs), va), hn::LoadU(d, w + i));
    if (b) y = hn::Add(y, hn::LoadU(d, b + i));
    hn::StoreU(y, d, out + i);
  }
  for (; i < n; ++i) out[i] = (x[i] - shift) * a * w[i] + (b ? b[i] : 0.f);
}

void RmsNorm(const float* x, const float* w, float eps, float* out, int64_t n) {
  const float ms = Dot(x, x, n) / float(n);
  ScaleBy(x, 0.f, 1.f / std::sqrt(ms + eps), w, nullptr, out, n);
}

void LayerNorm(const float* x, const float* w, const float* b, float eps, float* out, int64_t n) {
  float mean = 0.f;
  for (int64_t i = 0; i < n; ++i) mean += x[i];
  mean /= float(n);
  float var = 0.f;
  for (int64_t i = 0; i < n; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= float(n);
  ScaleBy(x, mean, 1.f / std::sqrt(var + eps), w, b, out, n);
}

void RopeRotateHalf(float* x, const float* cos, const float* sin, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d)), h = n / 2;
  int64_t i = 0;
  for (; i + N <= h; i += N) {
    const auto a = hn::LoadU(d, x + i), b = hn::LoadU(d, x + i + h);
    hn::StoreU(hn::NegMulAdd(b, hn::LoadU(d, sin + i), hn::Mul(a, hn::LoadU(d, cos + i))), d, x + i);
    hn::StoreU(hn::MulAdd(a, hn::LoadU(d, sin + i + h), hn::Mul(b, hn::LoadU(d, cos + i + h))), d, x + i + h);
  }
  for (; i < h; ++i) {
    const float a = x[i], b = x[i + h];
    x[i] = a * cos[i] - b * sin[i];
    x[i + h] = b * cos[i + h] + a * sin[i + h];
  }
}

void SiluMul(const float* gate, const float* up, float* out, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const auto one = hn::Set(d, 1.f);
  const auto silu_mul = [&](auto g, auto u) { return hn::Mul(hn::Mul(g, hn::Div(one, hn::Add(one, hn::Exp(d, hn::Neg(g))))), u); };
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(silu_mul(hn::LoadU(d, gate + i), hn::LoadU(d, up + i)), d, out + i);
  // The tail through the same vector arithmetic, so that an element's result does not depend
  // on where a call's range starts (the decode path splits rows between threads; prefill does not).
  if (i < n) {
    const auto m = hn::FirstN(d, size_t(n - i));
    hn::BlendedStore(silu_mul(hn::MaskedLoad(m, d, gate + i), hn::MaskedLoad(m, d, up + i)), m, d, out + i);
  }
}

void AddInplace(float* y, const float* x, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Add(hn::LoadU(d, y + i), hn::LoadU(d, x + i)), d, y + i);
  for (; i < n; ++i) y[i] += x[i];
}

void Axpy(float a, const float* x, float* y, int64_t n) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  const auto va = hn::Set(d, a);
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

float SquareSumMaxAbs(const float* x, int64_t n, float* amax) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  auto s = hn::Zero(d), m = hn::Zero(d);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto v = hn::LoadU(d, x + i);
    s = hn::MulAdd(v, v, s);
    m = hn::Max(m, hn::Abs(v));
  }
  float sum = SumOf(d, s), mx = hn::GetLane(hn::MaxOfLanes(d, m));
  for (; i < n; ++i) sum += x[i] * x[i], mx = std::max(mx, std::fabs(x[i]));
  *amax = mx;
  return sum;
}

void Attend(const float* q, const float* K, const float* V, int64_t len, int64_t hd, float scale, float* scores,
            float* out) {
  const DF d;
  const int64_t N = int64_t(hn::Lanes(d));
  float mx = -INFINITY;
  for (int64_t p = 0; p < len; ++p) {
    scores[p] = scale * Dot(q, K + p * hd, hd);
    mx = std::max(mx, scores[p]);
  }
  // exp(s - max) in SIMD, summed as it goes.
  const auto vmx = hn::Set(d, mx);
  auto acc = hn::Zero(d);
  int64_t p = 0;
  for (; p + N <= len; p += N) {
    const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, scores + p), vmx));
    hn::StoreU(e, d, scores + p);
    acc = hn::Add(acc, e);
  }
  float sum = SumOf(d, acc);
  for (; p < len; ++p) sum += scores[p] = std::exp(scores[p] - mx);
  const float inv = 1.f / sum;
  // out = sum_t w_t V_t, each lane's sum in the order of t. Four vectors of out at a time stay
  // in registers across the positions (summing into memory made every position wait for the
  // previous one's store: a quarter of a long context's decode time).
  int64_t i = 0;
  for (; i + 4 * N <= hd; i += 4 * N) {
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    for (int64_t t = 0; t < len; ++t) {
      const auto w = hn::Set(d, scores[t] * inv);
      const float* v = V + t * hd + i;
      a0 = hn::MulAdd(w, hn::LoadU(d, v), a0);
      a1 = hn::MulAdd(w, hn::LoadU(d, v + N), a1);
      a2 = hn::MulAdd(w, hn::LoadU(d, v + 2 * N), a2);
      a3 = hn::MulAdd(w, hn::LoadU(d, v + 3 * N), a3);
    }
    hn::StoreU(a0, d, out + i), hn::StoreU(a1, d, out + i + N);
    hn::StoreU(a2, d, out + i + 2 * N), hn::StoreU(a3, d, out + i + 3 * N);
  }
  for (; i + N <= hd; i += N) {
    auto a = hn::Zero(d);
    for (int64_t t = 0; t < len; ++t) a = hn::MulAdd(hn::Set(d, scores[t] * inv), hn::LoadU(d, V + t * hd + i), a);
    hn::StoreU(a, d, out + i);
  }
  for (; i < hd; ++i) {
    float a = 0.f;
    for (int64_t t = 0; t < len; ++t) a += scores[t] * inv * V[t * hd + i];
    out[i] = a;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "lcq/kernels/vec.h"

namespace lcq::kernels {

HWY_EXPORT(RmsNorm);
HWY_EXPORT(LayerNorm);
HWY_EXPORT(RopeRotateHalf);
HWY_EXPORT(SiluMul);
HWY_EXPORT(AddInplace);
HWY_EXPORT(Attend);
HWY_EXPORT(Axpy);
HWY_EXPORT(SquareSumMaxAbs);

void rms_norm(const float* x, const float* w, float eps, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(RmsNorm)(x, w, eps, out, n);
}
void layer_norm(const float* x, const float* w, const float* b, float eps, float* out, int64_t n) {
  HWY_DYNAMIC_DISPATCH(LayerNorm)(x, w, b, eps, out, n);
}
void rope_rotate_half(float* x, const float* cos, const float* sin, int64_t n) {
  HWY_DYNAMIC_DISPATCH(RopeRotateHalf)(x, cos, sin, n);
}
void silu_mul(const float* gate, const float* up, float* out, int64_t n) { HWY_DYNAMIC_DISPATCH(SiluMul)(gate, up, out, n); }
void add_inplace(float* y, const float* x, int64_t n) { HWY_DYNAMIC_DISPATCH(AddInplace)(y, x, n); }
void axpy(float a, const float* x, float* y, int64_t n) { HWY_DYNAMIC_DISPATCH(Axpy)(a, x, y, n); }
float square_sum_max_abs(const float* x, int64_t n, float* amax) {
  return HWY_DYNAMIC_DISPATCH(SquareSumMaxAbs)(x, n, amax);
}
void attend(const float* q, const float* K, const float* V, int64_t len, int64_t hd, float scale, float* scores,
            float* out) {
  HWY_DYNAMIC_DISPATCH(Attend)(q, K, V, len, hd, scale, scores, out);
}

}  // namespace lcq::kernels
#endif  // HWY_ONCE
