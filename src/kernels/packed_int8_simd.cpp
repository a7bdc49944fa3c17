// The SIMD integer kernel of PackedCodebookMatrix (packed_int8.h has the arithmetic).
// x86 only: AVX2 (pmaddubsw + pmaddwd) and, when the CPU has AVX-512 VNNI, vpdpbusd; other
// targets report no integer kernel and the float kernel runs instead. The activations'
// int8 quantization (QuantizeToken) is here too, for every target.
//
// Per row: the 7-bit levels of 8 groups are built at once, one group per vector lane, with
// the same operations as group_levels(). Per block of 32 index bytes and per index slot k:
// one shift and one AND expose 32 indices, pshufb looks their levels up in the group's
// 16-byte table, and one multiply-add accumulates them against 32 int8 activations.
// The group's int32 sums become float once per group.

// Scalable vectors are not used here; keep the targets the float kernel builds.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL 1  // compile the AVX-512 VNNI target too (Highway leaves it out by default)
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "lcq/kernels/packed_codebook.h"
#include "packed_int8.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/kernels/packed_int8_simd.cpp"  // relative to include/
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL && (defined(__GNUC__) || defined(__clang__))
// Highway 1.0's AVX3_DL target string names AVX-VNNI (VEX) although the target's run-time
// check is for AVX512-VNNI; the kernel uses only the EVEX vpdpbusd under it (and, for 3-bit
// indices, vpmultishiftqb of AVX512-VBMI, which the target's check also covers).
#if defined(__clang__)  // clang ignores "#pragma GCC target": widen Highway's pushed target instead
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target(HWY_TARGET_STR ",avx512vnni,avx512vbmi"))), apply_to = function)
#else
#pragma GCC target("avx512vnni,avx512vbmi")
#endif
#endif
namespace lcq::kernels {
namespace HWY_NAMESPACE {

int64_t Int8TargetId() { return HWY_TARGET; }

// One token of detail::quantize_activations() in column order (every target): per group of
// `group` columns scale[j] = amax / 127, q[c] = round_even(x[c] * (127 / amax)) clamped to
// [-127, 127] and sum[j] = the sum of the group's q. The same operations as a scalar loop
// (a max, one multiply, ties-to-even rounding), so the results do not depend on the target.
void QuantizeToken(const float* HWY_RESTRICT x, int64_t cols, int64_t group, float* HWY_RESTRICT scale,
                   int8_t* HWY_RESTRICT q, int32_t* HWY_RESTRICT sum) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 16> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const int64_t N = int64_t(hn::Lanes(df));
  const auto lo = hn::Set(df, -127.f), hi = hn::Set(df, 127.f);
  for (int64_t j = 0, c0 = 0; c0 < cols; ++j, c0 += group) {
    const int64_t c1 = std::min(cols, c0 + group);
    auto vmax = hn::Zero(df);
    int64_t c = c0;
    for (; c + N <= c1; c += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, x + c)));
    float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    for (; c < c1; ++c) amax = std::max(amax, std::fabs(x[c]));
    scale[j] = amax / 127.f;
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    const auto vinv = hn::Set(df, inv);
    auto vsum = hn::Zero(di);
    for (c = c0; c + N <= c1; c += N) {
      const auto iv = hn::ConvertTo(di, hn::Min(hn::Max(hn::Round(hn::Mul(hn::LoadU(df, x + c), vinv)), lo), hi));
      vsum = hn::Add(vsum, iv);
      hn::StoreU(hn::DemoteTo(d8, iv), d8, q + c);
    }
    int32_t total = hn::GetLane(hn::SumOfLanes(di, vsum));
    for (; c < c1; ++c) {
      const auto iv = hn::ConvertTo(di, hn::Min(hn::Max(hn::Round(hn::Mul(hn::Set(df, x[c]), vinv)), lo), hi));
      const int32_t v = hn::GetLane(iv);
      q[c] = int8_t(v);
      total += v;
    }
    sum[j] = total;
  }
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2

namespace {  // helpers private to this file (other kernels share the target namespaces)

// acc (int32 lanes) += the dot products of 4 unsigned bytes of u with 4 signed bytes of x.
// The pairwise int16 sums cannot saturate: u <= 127 and |x| <= 127.
HWY_INLINE __m256i Dot(__m256i acc, __m256i u, __m256i x) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)));
}

HWY_INLINE __m128i Dot128(__m128i acc, __m128i u, __m128i x) {
  return _mm_add_epi32(acc, _mm_madd_epi16(_mm_maddubs_epi16(u, x), _mm_set1_epi16(1)));
}

HWY_INLINE float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Per-thread scratch of one row: the 7-bit tables (K bytes per group: 4, 8 or 16 at 2, 3
// or 4 bits), d and min per group, and per token d_w * d_x per group.
struct RowLevels {
  std::vector<float> d, min, dd;
  std::vector<uint8_t> tabs;
  int64_t padded = 0;  // groups rounded up to whole vectors
};

namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::CappedTag<float, 16>;  // 16 groups per vector on AVX-512, 8 on AVX2
using DI = hn::RebindToSigned<DF>;
using VF = hn::Vec<DF>;
constexpr int64_t kGroupsPerVector = int64_t(hn::MaxLanes(DF()));

// cvtps2dq: round to nearest even (the default mode). The values are in [0, 127], so
// Highway's NearestInt overflow fix-up is not needed.
HWY_INLINE hn::Vec<DI> RoundToInt(VF v) {
#if HWY_TARGET <= HWY_AVX3
  return hn::Vec<DI>{_mm512_cvtps_epi32(v.raw)};
#else
  return hn::Vec<DI>{_mm256_cvtps_epi32(v.raw)};
#endif
}

// The levels of row i's groups, one group per vector lane, operation for operation as
// detail::group_params() and detail::group_levels() (fused multiply-adds in the same order,
// the same rounding), so the scalar reference reproduces them bit for bit.
template <int kBits>
HWY_INLINE void BuildLevels(const detail::MatrixView& m, int64_t i, RowLevels& L) {
  constexpr int K = 1 << kBits;  // compile-time, so the per-level loops unroll
  constexpr int64_t N = kGroupsPerVector;
  const DF df;
  const DI di;
  const hn::Rebind<uint8_t, DF> d8;
  const int64_t gpr = m.groups_per_row, gp = (gpr + N - 1) / N * N, g0 = i * gpr;
  const int np = m.rank + 1;
  const int64_t coef_count = m.rows * np * gpr;
  if (L.padded != gp) {
    L.padded = gp;
    L.d.assign(size_t(gp), 0.f);
    L.min.assign(size_t(gp), 0.f);
    L.dd.assign(size_t(gp), 0.f);
    L.tabs.assign(size_t(16 * gp), 0);
  }
  for (int64_t j0 = 0; j0 < gp; j0 += N) {
    const int64_t n = std::min(N, gpr - j0);
    // Block scale and offset of parameter q for these groups: one block (the usual case) or
    // a gather where a double-quantization block ends among them.
    const int64_t b0 = m.dq_bits > 0 ? (g0 + j0) / m.dq_group : 0;
    const bool one_block = m.dq_bits == 0 || b0 == (g0 + j0 + n - 1) / m.dq_group;
    alignas(64) int32_t blk[N];
    if (!one_block)
      for (int64_t l = 0; l < N; ++l) blk[l] = int32_t((g0 + j0 + std::min(l, n - 1)) / m.dq_group);
    // Parameter q (S_0 .. S_{rank-1}, B) of the N groups. Past the row's last group a full
    // load reads the next parameter's (or row's) values into padding lanes, which nothing
    // reads back; only at the end of the array are the lanes copied (copying them every time
    // stalled narrow rows, such as SmolLM2's 5 groups, on the store-to-load round trip).
    auto param = [&](int q) HWY_ATTR {
      const int64_t at = detail::coef_index(m, g0 + j0, q);
      const bool whole = at + N <= coef_count;
      if (m.dq_bits == 0) {
        if (whole) return hn::LoadU(df, m.coef_f32 + at);
        alignas(64) float f[N] = {};
        std::copy(m.coef_f32 + at, m.coef_f32 + at + n, f);
        return hn::Load(df, f);
      }
      VF code;
      if (whole) {
        code = hn::ConvertTo(df, hn::BitCast(di, hn::PromoteTo(hn::RebindToUnsigned<DF>(), hn::LoadU(d8, m.coef_codes + at))));
      } else {
        alignas(64) uint8_t c8[N] = {};
        std::copy(m.coef_codes + at, m.coef_codes + at + n, c8);
        code = hn::ConvertTo(df, hn::BitCast(di, hn::PromoteTo(hn::RebindToUnsigned<DF>(), hn::Load(d8, c8))));
      }
      VF sc, off;
      if (one_block) {
        sc = hn::Set(df, m.blk_scale[q * m.n_blocks + b0]);
        off = hn::Set(df, m.blk_offset[q * m.n_blocks + b0]);
      } else {
        sc = hn::GatherIndex(df, m.blk_scale + q * m.n_blocks, hn::Load(di, blk));
        off = hn::GatherIndex(df, m.blk_offset + q * m.n_blocks, hn::Load(di, blk));
      }
      return hn::MulAdd(sc, code, off);
    };
    VF C[K];
    const VF negb = hn::Neg(param(m.rank));
    for (int k = 0; k < K; ++k) C[k] = negb;
    for (int r = 0; r < m.rank; ++r) {
      const VF s = param(r);
      for (int k = 0; k < K; ++k) C[k] = hn::MulAdd(s, hn::Set(df, m.v[r * K + k]), C[k]);
    }
    VF lo = C[0], hi = C[0];
    for (int k = 1; k < K; ++k) {
      lo = hn::Min(lo, C[k]);
      hi = hn::Max(hi, C[k]);
    }
    const VF range = hn::Sub(hi, lo);
    const VF inv = hn::IfThenElseZero(hn::Gt(range, hn::Zero(df)), hn::Div(hn::Set(df, 127.f), range));
    hn::StoreU(hn::Mul(range, hn::Set(df, 1.f / 127.f)), df, &L.d[size_t(j0)]);
    hn::StoreU(lo, df, &L.min[size_t(j0)]);
    // Levels to bytes, word w of a group's table holding levels 4w .. 4w + 3. They are in
    // [0, 127] without clamping: C - lo >= 0 exactly, and (hi - lo) * inv rounds to 127.
    hn::Vec<DI> words[K / 4];
    for (int w = 0; w < K / 4; ++w) {
      words[w] = hn::Zero(di);
      for (int b = 0; b < 4; ++b) {
        const auto u = RoundToInt(hn::Mul(hn::Sub(C[4 * w + b], lo), inv));
        words[w] = hn::Or(words[w], hn::ShiftLeftSame(u, 8 * b));
      }
    }
    int32_t* tab = reinterpret_cast<int32_t*>(&L.tabs[size_t(K * j0)]);
    if constexpr (K == 4) {
      hn::StoreU(words[0], di, tab);  // one word per group
    } else if constexpr (K == 8) {
      hn::StoreInterleaved2(words[0], words[1], di, tab);  // two words per group
    } else {
      hn::StoreInterleaved4(words[0], words[1], words[2], words[3], di, tab);  // four words per group
    }
  }
}

// Per token: d_w * d_x of every group into L.dd, and the row's offset term
// sum_j min_j * d_x * sum(xq_j).
HWY_INLINE float TokenScales(const detail::MatrixView& m, const detail::Int8Activations& a, int64_t t, RowLevels& L) {
  const int64_t gpr = m.groups_per_row;
  const float* dx = a.scale.data() + t * gpr;
  const float* xs = a.scaled_sum.data() + t * gpr;
  __m256 acc = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= gpr; k += 8) {
    _mm256_storeu_ps(&L.dd[size_t(k)], _mm256_mul_ps(_mm256_loadu_ps(&L.d[size_t(k)]), _mm256_loadu_ps(dx + k)));
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(&L.min[size_t(k)]), _mm256_loadu_ps(xs + k), acc);
  }
  float off = HorizontalSum(acc);
  for (; k < gpr; ++k) {
    L.dd[size_t(k)] = L.d[size_t(k)] * dx[k];
    off += L.min[size_t(k)] * xs[k];
  }
  return off;
}

// The lookup table of group j in every 128-bit lane: K = 4 or 8 levels repeat across the
// lane (indices are < K), K = 16 fill it.
template <int kBits>
HWY_INLINE __m256i Table256(const RowLevels& L, int64_t j) {
  if constexpr (kBits == 2) {
    int32_t w;
    std::memcpy(&w, &L.tabs[size_t(4 * j)], 4);
    return _mm256_set1_epi32(w);
  } else if constexpr (kBits == 3) {
    long long w;
    std::memcpy(&w, &L.tabs[size_t(8 * j)], 8);
    return _mm256_set1_epi64x(w);
  } else {
    return _mm256_castps_si256(_mm256_broadcast_ps(reinterpret_cast<const __m128*>(&L.tabs[size_t(16 * j)])));
  }
}

template <int kBits>
HWY_INLINE __m128i Table128(const RowLevels& L, int64_t j) {
  return _mm256_castsi256_si128(Table256<kBits>(L, j));
}

// Byte operations under one name for the three vector widths, so that the slot extraction
// below is written once.
HWY_INLINE __m128i Set1(__m128i, char c) { return _mm_set1_epi8(c); }
HWY_INLINE __m256i Set1(__m256i, char c) { return _mm256_set1_epi8(c); }
HWY_INLINE __m128i And(__m128i a, __m128i b) { return _mm_and_si128(a, b); }
HWY_INLINE __m256i And(__m256i a, __m256i b) { return _mm256_and_si256(a, b); }
HWY_INLINE __m128i Shr16(__m128i a, int n) { return _mm_srli_epi16(a, n); }
HWY_INLINE __m256i Shr16(__m256i a, int n) { return _mm256_srli_epi16(a, n); }
HWY_INLINE __m128i Lookup(__m128i tbl, __m128i idx) { return _mm_shuffle_epi8(tbl, idx); }
HWY_INLINE __m256i Lookup(__m256i tbl, __m256i idx) { return _mm256_shuffle_epi8(tbl, idx); }
// Byte n of every 128-bit lane holds n >> 2.
HWY_INLINE __m128i QuarterIndex(__m128i) { return _mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3); }
HWY_INLINE __m256i QuarterIndex(__m256i) { return _mm256_broadcastsi128_si256(QuarterIndex(__m128i())); }
#if HWY_TARGET <= HWY_AVX3
HWY_INLINE __m512i Set1(__m512i, char c) { return _mm512_set1_epi8(c); }
HWY_INLINE __m512i And(__m512i a, __m512i b) { return _mm512_and_si512(a, b); }
HWY_INLINE __m512i Shr16(__m512i a, int n) { return _mm512_srli_epi16(a, unsigned(n)); }
HWY_INLINE __m512i Lookup(__m512i tbl, __m512i idx) { return _mm512_shuffle_epi8(tbl, idx); }
HWY_INLINE __m512i QuarterIndex(__m512i) { return _mm512_broadcast_i32x4(QuarterIndex(__m128i())); }
#endif

// The levels of one block's 8 / kBits index slots: u[k] = tbl[slot k of each byte], per
// 128-bit lane. In general one shift and one AND expose each slot. At 2 bits a nibble holds
// slots (0, 1) or (2, 3): tbl[n] = level[n & 3] (the 4 levels repeat across the lane) and one
// shuffle of it gives hi[n] = level[n >> 2], so looking a whole nibble up in both tables
// yields two slots: 2 extractions instead of 4 (measured in BENCHMARKS.md, issue 5).
template <int kBits, class V>
HWY_INLINE void SlotLevels(V w, V tbl, V* u) {
  if constexpr (kBits == 2) {
    const V nibble = Set1(w, 0x0F);
    const V hi = Lookup(tbl, QuarterIndex(w));
    const V n0 = And(w, nibble), n1 = And(Shr16(w, 4), nibble);
    u[0] = Lookup(tbl, n0);
    u[1] = Lookup(hi, n0);
    u[2] = Lookup(tbl, n1);
    u[3] = Lookup(hi, n1);
  } else {
    const V mask = Set1(w, char((1 << kBits) - 1));
    for (int k = 0; k < 8 / kBits; ++k) u[k] = Lookup(tbl, And(k == 0 ? w : Shr16(w, kBits * k), mask));
  }
}

// Integer dot product of one block's S index slots against 32-byte activation runs at
// x + k * xstride, into int32 lanes.
template <int kBits>
HWY_INLINE __m256i BlockDot256(const uint8_t* p, const int8_t* x, int64_t xstride, __m256i tbl) {
  __m256i u[8 / kBits];
  SlotLevels<kBits>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), tbl, u);
  __m256i acc = _mm256_setzero_si256();
  for (int k = 0; k < 8 / kBits; ++k)
    acc = Dot(acc, u[k], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k * xstride)));
  return acc;
}

// The weights stream once per product; the hardware prefetcher alone leaves the loop
// waiting on loads (measured), so each 64 bytes also prefetch the line this far ahead
// (rows are contiguous, so this runs into the next rows).
constexpr int kPrefetchBytes = 2048;

// One row against one token (packed_int8.h); x in the integer order of int8_columns().
template <int kBits>
HWY_INLINE float RowDot(const detail::MatrixView& m, const uint8_t* HWY_RESTRICT p, const int8_t* HWY_RESTRICT x,
                        const RowLevels& L, float offset) {
  constexpr int S = 8 / kBits;
  constexpr int64_t kBlockX = 32 * S;  // activation bytes per block
  const int64_t fb = m.full_blocks;
  const int32_t* bg = m.int8_block_group;
  const float* dd = L.dd.data();
  int64_t b = 0;
#if HWY_TARGET <= HWY_AVX3
  // Pairs of blocks in 512-bit vectors: the low 256 bits are block b, the high block b + 1,
  // each 128-bit lane looks up in the table of its block's group.
  __m512 acc16 = _mm512_setzero_ps();
  for (; b + 2 <= fb; b += 2, p += 64, x += 2 * kBlockX) {
    _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
    const int64_t g0 = bg[b], g1 = bg[b + 1];
    const __m512i tbl = _mm512_inserti64x4(_mm512_castsi256_si512(Table256<kBits>(L, g0)), Table256<kBits>(L, g1), 1);
    __m512i u[S];
    SlotLevels<kBits>(_mm512_loadu_si512(p), tbl, u);
    __m512i acc = _mm512_setzero_si512();
    for (int k = 0; k < S; ++k) {
      const __m512i xv = _mm512_loadu_si512(x + 64 * k);
#if HWY_TARGET == HWY_AVX3_DL
      acc = _mm512_dpbusd_epi32(acc, u[k], xv);
#else
      acc = _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u[k], xv), _mm512_set1_epi16(1)));
#endif
    }
    const __m512 scale = _mm512_insertf32x8(_mm512_set1_ps(dd[g0]), _mm256_set1_ps(dd[g1]), 1);
    acc16 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), scale, acc16);
  }
  __m256 accf = _mm256_add_ps(_mm512_castps512_ps256(acc16), _mm512_extractf32x8_ps(acc16, 1));
#else
  __m256 accf = _mm256_setzero_ps();
  for (; b + 2 <= fb; b += 2, p += 64, x += 2 * kBlockX) {  // pairs: block b + h at x + 32h, runs 64 apart
    _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
    const __m256i a0 = BlockDot256<kBits>(p, x, 64, Table256<kBits>(L, bg[b]));
    const __m256i a1 = BlockDot256<kBits>(p + 32, x + 32, 64, Table256<kBits>(L, bg[b + 1]));
    accf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), _mm256_set1_ps(dd[bg[b]]), accf);
    accf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a1), _mm256_set1_ps(dd[bg[b + 1]]), accf);
  }
#endif
  if (b < fb) {  // an odd last block: runs 32 apart
    const __m256i a0 = BlockDot256<kBits>(p, x, 32, Table256<kBits>(L, bg[b]));
    accf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(a0), _mm256_set1_ps(dd[bg[b]]), accf);
    p += 32;
    x += kBlockX;
  }
  if (m.tail_fields > 0) {  // 16-bit lane words: the same steps on 16 bytes
    __m128i u[S];
    SlotLevels<kBits>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), Table128<kBits>(L, bg[fb]), u);
    __m128i a = _mm_setzero_si128();
    for (int k = 0; k < S; ++k) a = Dot128(a, u[k], _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + 16 * k)));
    accf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_inserti128_si256(_mm256_setzero_si256(), a, 0)),
                           _mm256_set1_ps(dd[bg[fb]]), accf);
  }
  return HorizontalSum(accf) + offset;
}

// Rows [row0, row1) against every token: a row's levels once, then per token its scales and
// row_dot(packed row, token's activations, levels, offset term).
template <int kBits, class RowDotFn>
HWY_INLINE void ForRows(const detail::MatrixView& m, const detail::Int8Activations& a, float* Y, int64_t row0,
                        int64_t row1, const RowDotFn& row_dot) {
  thread_local RowLevels L;
  for (int64_t i = row0; i < row1; ++i) {
    BuildLevels<kBits>(m, i, L);
    const uint8_t* p = m.idx + i * m.row_bytes;
    for (int64_t t = 0; t < a.n; ++t) {
      const float offset = TokenScales(m, a, t, L);
      Y[t * m.rows + i] = row_dot(p, a.q.data() + t * a.stride, L, offset);
    }
  }
}

template <int kBits>
void RowsT(const detail::MatrixView& m, const detail::Int8Activations& a, float* Y, int64_t row0, int64_t row1) {
  ForRows<kBits>(m, a, Y, row0, row1, [&](const uint8_t* p, const int8_t* x, const RowLevels& L, float offset) HWY_ATTR {
    return RowDot<kBits>(m, p, x, L, offset);
  });
}

#if HWY_TARGET == HWY_AVX3_DL
// 256-bit vpdpbusd in its EVEX (AVX512-VNNI) encoding. This target's flags also name
// AVX-VNNI, so the intrinsic would be encoded as VEX, which CPUs with AVX512-VNNI but without
// AVX-VNNI (Zen 4) do not run.
HWY_INLINE __m256i DotEvex(__m256i acc, __m256i u, __m256i x) {
  asm("%{evex%} vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(x));
  return acc;
}

// 3-bit indices (packed_int8.h, Fmt3Run): a 3-bit field can straddle bytes, so no byte shift
// exposes a whole slot. Each run's 32 indices are picked out of the lane words by
// vpmultishiftqb, which copies 8 bits from any bit offset of its 64-bit word into each byte;
// an AND keeps 3 of them.
// The spare-bit run ORs bits of all three words. Then the same look-up and vpdpbusd as above,
// on 256-bit vectors: two tables per block (its halves' groups).
struct alignas(32) Bytes32 {  // (a std::vector<__m256i> would drop the type's alignment)
  uint8_t b[32];
  __m256i load() const { return _mm256_load_si256(reinterpret_cast<const __m256i*>(b)); }
};
struct Fmt3Plan {
  std::vector<Bytes32> ctl;  // per run: the bit offset of every byte's index in its 64-bit word
  std::vector<int> word, half;
  Bytes32 spare_ctl[3] = {}, spare_mask[3] = {};  // the spare run: per word, offsets and the bits it gives
};

// The runs of a full block: word (-1: the spare bits) and half of each (RowDot3 unrolls them).
constexpr int kFullWord[10] = {0, 0, 0, 1, 1, 1, 2, 2, 2, -1};
constexpr int kFullHalf[10] = {0, 0, 0, 0, 0, 1, 1, 1, 1, 1};

Fmt3Plan MakeFmt3Plan(int fields) {
  Fmt3Plan plan;
  for (const detail::Fmt3Run& r : detail::fmt3_runs(fields)) {
    Bytes32 ctl = {}, sctl[3] = {}, smask[3] = {};
    for (int j = 0; j < 32; ++j) {
      const int f = r.field[j % 8], odd = r.odd[j % 8];
      if (f < 0) continue;
      if (r.word >= 0) {
        ctl.b[j] = uint8_t(detail::fmt3_bit_offset(f, odd));
      } else if (f == 30) {  // index bits 0-1 in w0[30:31], bit 2 in w1[30]
        sctl[0].b[j] = uint8_t(32 * odd + 30), smask[0].b[j] = 3;
        sctl[1].b[j] = uint8_t(32 * odd + 28), smask[1].b[j] = 4;
      } else {  // field 31: bit 0 in w1[31], bits 1-2 in w2[30:31]
        sctl[1].b[j] = uint8_t(32 * odd + 31), smask[1].b[j] = 1;
        sctl[2].b[j] = uint8_t(32 * odd + 29), smask[2].b[j] = 6;
      }
    }
    plan.ctl.push_back(ctl);
    plan.word.push_back(r.word);
    plan.half.push_back(r.half);
    if (r.word < 0)
      for (int w = 0; w < 3; ++w) {
        plan.spare_ctl[w] = sctl[w];
        plan.spare_mask[w] = smask[w];
      }
  }
  if (fields == 32) {
    bool same = plan.word.size() == 10;
    for (size_t r = 0; same && r < 10; ++r) same = plan.word[r] == kFullWord[r] && plan.half[r] == kFullHalf[r];
    if (!same) std::abort();  // fmt3_runs() and this kernel disagree: a build error in effect
  }
  return plan;
}

// acc + one regular run's dot product: its 32 indices picked from lane word `word` at the
// bit offsets in ctl, looked up in tbl, against the 32 activations at x.
HWY_INLINE __m256i RunDot(__m256i acc, __m256i ctl, __m256i word, __m256i tbl, const int8_t* x) {
  const __m256i idx = _mm256_and_si256(_mm256_multishift_epi64_epi8(ctl, word), _mm256_set1_epi8(7));
  return DotEvex(acc, _mm256_shuffle_epi8(tbl, idx), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)));
}

// The runs of a tail (no spare-bit run) whose lane words are w[]; adds each run's dot
// product to acc[its half].
HWY_INLINE void TailRuns(const Fmt3Plan& plan, const __m256i* w, const __m256i* tbl, const int8_t* x, __m256i* acc) {
  for (size_t r = 0; r < plan.ctl.size(); ++r) {
    const int h = plan.half[r];
    acc[h] = RunDot(acc[h], plan.ctl[r].load(), w[plan.word[r]], tbl[h], x + 32 * r);
  }
}

float RowDot3(const detail::MatrixView& m, const uint8_t* HWY_RESTRICT p, const int8_t* HWY_RESTRICT x,
              const RowLevels& L, float offset, const Fmt3Plan& full, const Fmt3Plan& tail) {
  const int32_t* hg = m.int8_block_group;  // group of each block half
  const float* dd = L.dd.data();
  constexpr int nfull = 10;
  __m256i ctl[9];
  for (int r = 0; r < 9; ++r) ctl[r] = full.ctl[size_t(r)].load();
  const __m256i sctl[3] = {full.spare_ctl[0].load(), full.spare_ctl[1].load(), full.spare_ctl[2].load()};
  const __m256i smask[3] = {full.spare_mask[0].load(), full.spare_mask[1].load(), full.spare_mask[2].load()};
  __m256 accf = _mm256_setzero_ps();
  auto finish = [&](const __m256i* acc, int64_t b) HWY_ATTR {
    accf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[0]), _mm256_set1_ps(dd[hg[2 * b]]), accf);
    accf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[1]), _mm256_set1_ps(dd[hg[2 * b + 1]]), accf);
  };
  for (int64_t b = 0; b < m.full_blocks; ++b, p += 3 * detail::kWordBytes, x += 32 * nfull) {
    _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p) + kPrefetchBytes + 64, _MM_HINT_T0);
    const __m256i w[3] = {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + detail::kWordBytes)),
                          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * detail::kWordBytes))};
    const __m256i tbl[2] = {Table256<3>(L, hg[2 * b]), Table256<3>(L, hg[2 * b + 1])};
    __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    // The full block's runs with their words and halves as constants (kFullWord/kFullHalf,
    // checked against fmt3_runs(32) when the plan is made), so nothing is indexed at run time.
#pragma GCC unroll 9
    for (int r = 0; r < 9; ++r) {
      const int h = kFullHalf[r];
      acc[h] = RunDot(acc[h], ctl[r], w[kFullWord[r]], tbl[h], x + 32 * r);
    }
    __m256i idx = _mm256_and_si256(_mm256_multishift_epi64_epi8(sctl[0], w[0]), smask[0]);
    idx = _mm256_ternarylogic_epi32(idx, _mm256_multishift_epi64_epi8(sctl[1], w[1]), smask[1], 0xF8);
    idx = _mm256_ternarylogic_epi32(idx, _mm256_multishift_epi64_epi8(sctl[2], w[2]), smask[2], 0xF8);
    acc[1] = DotEvex(acc[1], _mm256_shuffle_epi8(tbl[1], idx),
                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + 32 * 9)));
    finish(acc, b);
  }
  if (m.tail_fields > 0) {  // ceil(tail_fields / 10) lane words, no spare bits
    const int nw = (m.tail_fields + 9) / 10;
    __m256i w[3] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int k = 0; k < nw; ++k) w[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + k * detail::kWordBytes));
    const int64_t b = m.full_blocks;
    const __m256i tbl[2] = {Table256<3>(L, hg[2 * b]), Table256<3>(L, hg[2 * b + 1])};
    __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    TailRuns(tail, w, tbl, x, acc);
    finish(acc, b);
  }
  return HorizontalSum(accf) + offset;
}

void Rows3(const detail::MatrixView& m, const detail::Int8Activations& a, float* Y, int64_t row0, int64_t row1) {
  // Made once: the full block's plan and every tail length's (1-30 fields).
  static const std::vector<Fmt3Plan> plans = [] {
    std::vector<Fmt3Plan> v(33);
    for (int f = 1; f <= 30; ++f) v[size_t(f)] = MakeFmt3Plan(f);
    v[32] = MakeFmt3Plan(32);
    return v;
  }();
  const Fmt3Plan& full = plans[32];
  const Fmt3Plan& tail = plans[size_t(m.tail_fields)];
  ForRows<3>(m, a, Y, row0, row1, [&](const uint8_t* p, const int8_t* x, const RowLevels& L, float offset) HWY_ATTR {
    return RowDot3(m, p, x, L, offset, full, tail);
  });
}
#endif

}  // namespace

bool Int8Available() { return true; }

bool Int8AvailableFor(int format) {
  return format == detail::kFmt2 || format == detail::kFmt4 || (format == detail::kFmt3 && HWY_TARGET == HWY_AVX3_DL);
}

bool Int8Rows(const detail::MatrixView& m, const detail::Int8Activations& a, float* Y, int64_t row0, int64_t row1) {
  switch (m.format) {
    case detail::kFmt2: RowsT<2>(m, a, Y, row0, row1); return true;
#if HWY_TARGET == HWY_AVX3_DL
    case detail::kFmt3: Rows3(m, a, Y, row0, row1); return true;
#endif
    case detail::kFmt4: RowsT<4>(m, a, Y, row0, row1); return true;
    default: return false;
  }
}

#else  // no integer kernel on this target

bool Int8Available() { return false; }
bool Int8AvailableFor(int) { return false; }
bool Int8Rows(const detail::MatrixView&, const detail::Int8Activations&, float*, int64_t, int64_t) { return false; }

#endif

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lcq::kernels {

HWY_EXPORT(Int8Rows);
HWY_EXPORT(Int8Available);
HWY_EXPORT(Int8AvailableFor);
HWY_EXPORT(Int8TargetId);
HWY_EXPORT(QuantizeToken);

namespace detail {
void quantize_token(const float* x, int64_t cols, int64_t group, float* scale, int8_t* q, int32_t* sum) {
  HWY_DYNAMIC_DISPATCH(QuantizeToken)(x, cols, group, scale, q, sum);
}

bool gemm_rows_int8_simd(const MatrixView& m, const Int8Activations& a, float* Y, int64_t row0, int64_t row1) {
  return HWY_DYNAMIC_DISPATCH(Int8Rows)(m, a, Y, row0, row1);
}
}  // namespace detail

bool int8_simd_available() { return HWY_DYNAMIC_DISPATCH(Int8Available)(); }
bool int8_simd_available(int bits) {
  return HWY_DYNAMIC_DISPATCH(Int8AvailableFor)(detail::format_for_bits(bits));
}
const char* int8_simd_target() { return hwy::TargetName(HWY_DYNAMIC_DISPATCH(Int8TargetId)()); }

}  // namespace lcq::kernels
#endif  // HWY_ONCE
