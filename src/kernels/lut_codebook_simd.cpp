// The SIMD look-up-table kernel of LutCodebookMatrix (lut_internal.h has the definitions).
// x86 AVX-512 with VBMI and VNNI only (Highway's AVX3_DL target): vpermb looks 64 bytes up
// in a 64-byte table, which is what lets one table register serve 4 column pairs (2 bits),
// 8 columns (3 bits) or 4 columns (4 bits) of 16 rows; vpdpbusd with a vector of ones sums
// each row's 4 looked-up bytes into its int32 lane. Other targets report no kernel and the
// scalar reference runs.
//
// Per 4 tiles (64 rows) and group j: for each 16-column chunk of the group, the 2 * rank
// tables of the chunk (4 * rank at 4 bits) serve the 4 tiles; per tile, 2 bits: one 64-byte
// load of indices, two nibble extractions (AND/OR with the table offsets in one vpternlogd),
// then per rank two vpermb + two vpdpbusd; 3 bits: 96 bytes whose 3-bit indices vpermb +
// vpmultishiftqb spread into 4 vectors of 64 bytes, then per rank four vpermb + four
// vpdpbusd; 4 bits: two 64-byte loads, four nibble extractions, then per rank four vpermb +
// four vpdpbusd. At the group's end the int32 sums become float and are scaled by the rows'
// S (decoded from their codes, 16 rows per vector) and the table step.

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL 1  // the AVX-512 VBMI/VNNI target (Highway leaves it out by default)
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "lcq/kernels/lut_codebook.h"
#include "lut_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/kernels/lut_codebook_simd.cpp"  // relative to include/
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
#if HWY_TARGET == HWY_AVX3_DL && (defined(__GNUC__) || defined(__clang__))
// Highway 1.0's AVX3_DL target string names AVX-VNNI (VEX); the kernel uses only the EVEX
// forms of AVX512-VNNI and AVX512-VBMI, which the target's run-time check covers.
#if defined(__clang__)  // clang ignores "#pragma GCC target": widen Highway's pushed target instead
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target(HWY_TARGET_STR ",avx512vnni,avx512vbmi"))), apply_to = function)
#else
#pragma GCC target("avx512vnni,avx512vbmi")
#endif
#endif
namespace lcq::kernels {
namespace HWY_NAMESPACE {

#if HWY_TARGET == HWY_AVX3_DL

namespace {

// The weights stream once per product, as 4 streams side by side (one per tile of a step):
// several streams keep more lines in flight than one, which is what lets the loads overlap
// the look-ups (BENCHMARKS.md, issue 5, ninth round: with the short distances below, a cold
// 3-bit GEMV takes 13-20 % less time than as one stream). Each stream is prefetched into L2
// a short way ahead and on into L1 just before use: at 2 and 3 bits 1 KiB and 256 bytes
// (tuned on the Intel VM), at 4 bits, whose chunks are 128 bytes, 2 KiB and 512 bytes, 16 and
// 4 chunks ahead (issue 24: on the Zen 4 VM the shorter distances took 22-29 % longer cold).
#ifndef LCQ_LUT_PREFETCH  // (macros only so that variants can be built for measurements)
#define LCQ_LUT_PREFETCH 1024
#endif
#ifndef LCQ_LUT_L1_PREFETCH
#define LCQ_LUT_L1_PREFETCH 256
#endif
#ifndef LCQ_LUT_HINT
#define LCQ_LUT_HINT _MM_HINT_T1
#endif
template <int kBits>
constexpr int kPrefetchBytes = kBits >= 4 ? 2048 : LCQ_LUT_PREFETCH;
template <int kBits>
constexpr int kL1PrefetchBytes = kBits >= 4 ? 512 : LCQ_LUT_L1_PREFETCH;

// Prefetches the `lines` cache lines at l2 into L2 and those at l1 into L1.
template <int lines, bool kL1>
HWY_INLINE void PrefetchWeights(const uint8_t* l2, const uint8_t* l1) {
#pragma GCC unroll 2
  for (int l = 0; l < lines; ++l) {
    _mm_prefetch(reinterpret_cast<const char*>(l2) + 64 * l, LCQ_LUT_HINT);
    if (kL1) _mm_prefetch(reinterpret_cast<const char*>(l1) + 64 * l, _MM_HINT_T0);
  }
}

void BuildLut(const detail::LutView& m, detail::LutTables& L) {
  using namespace detail;
  const int64_t cpg = m.group / kLutChunkCols;
  const float* x = L.xpad.data();
  const int K = 1 << m.bits, nt = lut_chunk_tables(m.bits);
  // After packs_epi32 and packs_epi16 of four vectors v0..v3, dword 4i + k holds lane i of v_k;
  // this permutation puts v_k's 16 bytes at bytes 16k .. 16k + 15.
  const __m512i unshuffle = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  for (int64_t j = 0; j < m.groups_per_row; ++j) {
    const int64_t ch0 = j * cpg, ch1 = std::min(m.chunks, ch0 + cpg);
    __m512 sum = _mm512_setzero_ps(), xmax = _mm512_setzero_ps();
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const __m512 xv = _mm512_loadu_ps(x + ch * kLutChunkCols);
      sum = _mm512_add_ps(sum, xv);
      const __m512 ax = _mm512_abs_ps(xv);  // 2 bits: |x_2p| + |x_2p+1| in both lanes of pair p
      xmax = _mm512_max_ps(xmax, m.bits == 2 ? _mm512_add_ps(ax, _mm512_permute_ps(ax, 0xB1)) : ax);
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sum);
    const float s = lut_lane_sum(lanes);
    const float xm = _mm512_reduce_max_ps(xmax);
    L.sumx[size_t(j)] = s;
    for (int r = 0; r < m.rank; ++r) {
      const float* U = L.u[r];
      L.shift[size_t(j * m.rank + r)] = L.mid[r] * s;
      const float inv = lut_scale(L.umax[r], xm, &L.d[size_t(j * m.rank + r)]);
      // 2 bits: lo[n] = U[n & 3] / d, hi[n] = U[n >> 2] / d; 3 bits: lo = U[0..7] / d twice;
      // 4 bits: lo = U[0..15] / d.
      alignas(64) float lo[16], hi[16];
      for (int n = 0; n < 16; ++n) lo[n] = U[n % K] * inv, hi[n] = U[(n >> 2) % K] * inv;
      const __m512 vlo = _mm512_load_ps(lo), vhi = _mm512_load_ps(hi);
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        const float* xc = x + ch * kLutChunkCols;
        int8_t* out = L.t.data() + (ch * m.rank + r) * nt * kLutTableBytes;
        if (m.bits == 4) {  // table h: columns 4h .. 4h + 3, one vector of 16 entries each
#pragma GCC unroll 4
          for (int h = 0; h < 4; ++h) {
            __m512i q[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; ++k) q[k] = _mm512_cvtps_epi32(_mm512_mul_ps(vlo, _mm512_set1_ps(xc[4 * h + k])));
            const __m512i b =
                _mm512_packs_epi16(_mm512_packs_epi32(q[0], q[1]), _mm512_packs_epi32(q[2], q[3]));
            _mm512_storeu_si512(out + h * kLutTableBytes, _mm512_permutexvar_epi32(unshuffle, b));
          }
          continue;
        }
        // Vector k: table k / 4, entries 16 * (k % 4) .. + 15, from the chunk's columns 2k, 2k + 1
        // (one pair at 2 bits, two columns of 8 entries at 3).
        __m512i q[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          const __m512 v =
              m.bits == 2
                  ? _mm512_fmadd_ps(vhi, _mm512_set1_ps(xc[2 * k + 1]), _mm512_mul_ps(vlo, _mm512_set1_ps(xc[2 * k])))
                  : _mm512_mul_ps(vlo, _mm512_insertf32x8(_mm512_set1_ps(xc[2 * k]), _mm256_set1_ps(xc[2 * k + 1]), 1));
          q[k] = _mm512_cvtps_epi32(v);  // round to nearest even, as std::nearbyint
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {  // saturating packs, as lut_round()
          const __m512i b = _mm512_packs_epi16(_mm512_packs_epi32(q[4 * h], q[4 * h + 1]),
                                               _mm512_packs_epi32(q[4 * h + 2], q[4 * h + 3]));
          _mm512_storeu_si512(out + h * kLutTableBytes, _mm512_permutexvar_epi32(unshuffle, b));
        }
      }
    }
  }
}

// build_levels() on 16 columns at a time: the same lane sums, maximum, products, rounding
// (vcvtps2dq: nearest even) and saturation (vpmovsdb), so the same bytes and floats.
void BuildLevels(const detail::LutView& m, detail::LutTables& L) {
  using namespace detail;
  const int64_t cpg = m.group / kLutChunkCols;
  const float* x = L.xpad.data();
  for (int64_t j = 0; j < m.groups_per_row; ++j) {
    const int64_t ch0 = j * cpg, ch1 = std::min(m.chunks, ch0 + cpg);
    __m512 sum = _mm512_setzero_ps(), xmax = _mm512_setzero_ps();
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const __m512 xv = _mm512_loadu_ps(x + ch * kLutChunkCols);
      sum = _mm512_add_ps(sum, xv);
      xmax = _mm512_max_ps(xmax, _mm512_abs_ps(xv));
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sum);
    const float xm = _mm512_reduce_max_ps(xmax);
    const __m512 inv = _mm512_set1_ps(xm > 0.f ? 127.f / xm : 0.f);
    __m512i sq = _mm512_setzero_si512();
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + ch * kLutChunkCols), inv));
      const __m512i qs = _mm512_max_epi32(_mm512_min_epi32(q, _mm512_set1_epi32(127)), _mm512_set1_epi32(-128));
      sq = _mm512_add_epi32(sq, qs);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(L.t.data() + ch * kLutChunkCols), _mm512_cvtepi32_epi8(qs));
    }
    level_group_scales(m, L, j, lut_lane_sum(lanes), xm, _mm512_reduce_add_epi32(sq));
  }
}

// acc += the sums of 4 consecutive signed bytes of v (vpdpbusd with a vector of ones).
HWY_INLINE __m512i SumBytes(__m512i acc, __m512i ones, __m512i v) {
  return _mm512_dpbusd_epi32(acc, ones, v);
}

// The decoded double-quantization block parameters (scale and offset of each of the rank + 1
// parameters) of a tile's 16 rows at the current group. Group numbers g = row * gpr + j grow
// by one per step, so a row crosses at most one block boundary per step; the parameters are
// read again only then (reading them for every group doubled the kernel's time, measured).
struct TileBlocks {
  __m512i g, blk, next, last_block;
  __m512 scale[5], offset[5];  // per parameter, one lane per row
  int64_t base = 0;  // the tile's first block (parameters are read from here on)
  bool permute = false;  // all the tile's blocks lie within base .. base + 31

  void start(const detail::LutView& m, int64_t tile) {
    alignas(64) int32_t gg[16], bb[16], nn[16];
    // Row r's first group g0 and its block g0 / dq_group, with one division per tile instead of
    // two per row: g0 grows by gpr = qstep * dq_group + rstep.
    const int64_t qstep = m.groups_per_row / m.dq_group, rstep = m.groups_per_row % m.dq_group;
    int64_t g0 = tile * detail::kLutTileRows * m.groups_per_row, q = g0 / m.dq_group, rem = g0 % m.dq_group;
    for (int r = 0; r < 16; ++r) {
      gg[r] = int32_t(g0);
      bb[r] = int32_t(q);
      nn[r] = int32_t((q + 1) * m.dq_group);
      g0 += m.groups_per_row;
      q += qstep;
      rem += rstep;
      if (rem >= m.dq_group) rem -= m.dq_group, ++q;
    }
    g = _mm512_load_si512(gg);
    blk = _mm512_load_si512(bb);
    next = _mm512_load_si512(nn);
    // Rows past the matrix (padding, their codes are 0) read the last block instead.
    const int64_t nb_last = m.n_blocks - 1;
    last_block = _mm512_set1_epi32(int32_t(nb_last));
    base = std::min<int64_t>(bb[0], nb_last);
    const int64_t last = ((tile * detail::kLutTileRows + 15) * m.groups_per_row + m.groups_per_row - 1) / m.dq_group;
    permute = std::min(last, nb_last) - base < 32;
    refresh(m);
  }
  void step(const detail::LutView& m) {
    g = _mm512_add_epi32(g, _mm512_set1_epi32(1));
    const __mmask16 cross = _mm512_cmpge_epi32_mask(g, next);
    if (cross == 0) return;
    blk = _mm512_mask_add_epi32(blk, cross, blk, _mm512_set1_epi32(1));
    next = _mm512_mask_add_epi32(next, cross, next, _mm512_set1_epi32(int32_t(m.dq_group)));
    refresh(m);
  }
  void refresh(const detail::LutView& m) {
    for (int q = 0; q <= m.rank; ++q) {
      scale[q] = read(m.blk_scale + q * m.n_blocks);
      offset[q] = read(m.blk_offset + q * m.n_blocks);
    }
  }
  __m512 read(const float* a) const {  // a[blk] per lane
    const __m512i b = _mm512_min_epi32(blk, last_block);
    if (permute)
      return _mm512_permutex2var_ps(_mm512_loadu_ps(a + base), _mm512_sub_epi32(b, _mm512_set1_epi32(int32_t(base))),
                                    _mm512_loadu_ps(a + base + 16));
    return _mm512_i32gather_ps(b, a, 4);
  }
};

// The level form's indices of column quad k (64 positions p = 4m + column % 4 of a tile's 16
// rows) from the chunk's low-nibble half w (quads 2h, 2h + 1: k % 2 picks the nibble) and the
// high-bit planes (lut_internal.h, lut_level_place()); bits past the width may be left set
// where the look-up ignores them (vpermb reads 6 bits, vpermt2b 7).
template <int kBits>
HWY_INLINE __m512i LevelIndices(const uint8_t* chunk, __m512i w, __m512i h2, __m512i wh, int k) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  const __m512i lo = k % 2 ? _mm512_srli_epi16(w, 4) : w;
  if constexpr (kBits == 5 || kBits == 7) {
    __m512i idx;
    if constexpr (kBits == 5) {
      idx = _mm512_and_si512(lo, nib);
    } else {  // bits 4-5 as at 6 bits, then bits 6-7 cleared
      const __m512i hi = k == 0 ? _mm512_slli_epi16(h2, 4) : k == 1 ? _mm512_slli_epi16(h2, 2) : k == 2 ? h2 : _mm512_srli_epi16(h2, 2);
      idx = _mm512_and_si512(_mm512_ternarylogic_epi32(lo, hi, nib, 0xE4), _mm512_set1_epi8(0x3F));
    }
    uint64_t bits;  // one bit per position: bit 4 (5 bits) or 6 (7 bits)
    std::memcpy(&bits, chunk + (kBits == 5 ? 128 : 192) + 8 * k, 8);
    return _mm512_mask_add_epi8(idx, _cvtu64_mask64(bits), idx, _mm512_set1_epi8(kBits == 5 ? 0x10 : 0x40));
  } else if constexpr (kBits == 6) {
    const __m512i hi = k == 0 ? _mm512_slli_epi16(h2, 4) : k == 1 ? _mm512_slli_epi16(h2, 2) : k == 2 ? h2 : _mm512_srli_epi16(h2, 2);
    return _mm512_ternarylogic_epi32(lo, hi, nib, 0xE4);  // nib ? lo : hi
  } else {  // 8 bits: the high nibble plane
    return _mm512_ternarylogic_epi32(lo, k % 2 ? wh : _mm512_slli_epi16(wh, 4), nib, 0xE4);
  }
}

// The levels of rank r at the 64 indices.
template <int kBits, int kRegs>
HWY_INLINE __m512i LookUpLevels(__m512i idx, const __m512i (&lv)[kRegs]) {
  if constexpr (kBits <= 6) {
    return _mm512_permutexvar_epi8(idx, lv[0]);
  } else if constexpr (kBits == 7) {
    return _mm512_permutex2var_epi8(lv[0], idx, lv[1]);
  } else {  // index bit 7 picks levels 128-255
    const __m512i lo = _mm512_permutex2var_epi8(lv[0], idx, lv[1]);
    const __m512i hi = _mm512_permutex2var_epi8(lv[2], idx, lv[3]);
    return _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi);
  }
}

// What one 16-column chunk adds to the 4 tiles of a step, per form (RowsR's loop is shared):
// each is built once per call and run on every chunk with the chunk's weights `p` (tile u at
// p + u * tile_bytes), its tables (or int8 activations) `lt`, the step's int32 accumulators
// and the prefetch addresses. kTableStep: the bytes of `lt` one chunk uses.

// The table form at 4 bits: half h of the chunk (column quads 2h, 2h + 1) for the 4 tiles,
// then the next half; only that half's 2 * R tables are held, so rank 4 fits the 32 registers.
template <int R>
struct Table4Chunk {
  static constexpr int kTables = 4, kTableStep = R * kTables * detail::kLutTableBytes;
  const __m512i ones = _mm512_set1_epi8(1), nib = _mm512_set1_epi8(0x0F);
  const __m512i offs = _mm512_set1_epi32(0x30201000);  // byte 4m + p looks up entry 16p + n

  explicit Table4Chunk(const detail::LutView&) {}
  HWY_INLINE void operator()(const uint8_t* p, int64_t tile_bytes, const int8_t* lt,
                             __m512i (&acc)[detail::kLutStepTiles][R], const uint8_t* pf2, const uint8_t* pf1) const {
    constexpr int kTab = detail::kLutTableBytes;
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m512i ta[R], tb[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        ta[r] = _mm512_loadu_si512(lt + (r * kTables + 2 * h) * kTab);
        tb[r] = _mm512_loadu_si512(lt + (r * kTables + 2 * h + 1) * kTab);
      }
#pragma GCC unroll 4
      for (int u = 0; u < detail::kLutStepTiles; ++u) {
        if (h == 0) PrefetchWeights<2, true>(pf2 + u * tile_bytes, pf1 + u * tile_bytes);  // 128 bytes
        const __m512i w = _mm512_load_si512(p + u * tile_bytes + h * kTab);
        const __m512i il = _mm512_ternarylogic_epi32(w, nib, offs, 0xEA);  // quad 2h: (w & nib) | offs
        const __m512i ih = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), nib, offs, 0xEA);  // quad 2h + 1
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          acc[u][r] = SumBytes(acc[u][r], ones, _mm512_permutexvar_epi8(il, ta[r]));
          acc[u][r] = SumBytes(acc[u][r], ones, _mm512_permutexvar_epi8(ih, tb[r]));
        }
      }
    }
  }
};

// The table form at 2 and 3 bits: two tables per rank (low and high column quads).
template <int kBits, int R>
struct Table23Chunk {
  static constexpr int kTableStep = R * 2 * detail::kLutTableBytes;
  const __m512i ones = _mm512_set1_epi8(1), nib = _mm512_set1_epi8(0x0F), seven = _mm512_set1_epi8(7);
  // 2 bits: byte 4m + p looks up table entry 16p + n. 3 bits: slot 4m + p of column group k
  // looks up entry 8 * (4 * (k % 2) + p) + n of table k / 2.
  const __m512i offs = _mm512_set1_epi32(0x30201000);
  const __m512i offs3[2] = {_mm512_set1_epi32(0x18100800), _mm512_set1_epi32(0x38302820)};
  // 3 bits: column groups come in pairs (2h, 2h + 1), read from the chunk's bytes 32h .. 32h + 63
  // (two loads that overlap: vpermt2b, which would spread from bytes 0..95 of two registers,
  // takes twice as long as vpermb on port 5, the kernel's busiest port). One vpermb puts into
  // 64-bit lane i the bytes 24k + 3i .. + 2 of both groups k of the pair (lane bytes 0-2 and
  // 3-5); then vpmultishiftqb takes slot 8i + s of group 2h from lane bits 3s .. 3s + 2, of
  // group 2h + 1 from bits 24 + 3s ...
  __m512i spread[2], shifts[2];

  explicit Table23Chunk(const detail::LutView&) {
    alignas(64) uint8_t spread_bytes[2][64], shift_bytes[2][64];
    for (int h = 0; h < 2; ++h)
      for (int j = 0; j < 64; ++j) {  // lane byte b of lane i (bytes 6, 7 are not read)
        const int i = j / 8, b = j % 8, k = 2 * h + (b < 3 ? 0 : 1);
        spread_bytes[h][j] = uint8_t(24 * k + 3 * i + (b < 3 ? b : std::min(b - 3, 2)) - 32 * h);
      }
    for (int e = 0; e < 2; ++e)
      for (int j = 0; j < 64; ++j) shift_bytes[e][j] = uint8_t(24 * e + 3 * (j % 8));  // slot j % 8 of group 2h + e
    for (int h = 0; h < 2; ++h) spread[h] = _mm512_load_si512(spread_bytes[h]), shifts[h] = _mm512_load_si512(shift_bytes[h]);
  }

  HWY_INLINE void operator()(const uint8_t* p, int64_t tile_bytes, const int8_t* lt,
                             __m512i (&acc)[detail::kLutStepTiles][R], const uint8_t* pf2, const uint8_t* pf1) const {
    constexpr int kTab = detail::kLutTableBytes;
    __m512i tl[R], th[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      tl[r] = _mm512_loadu_si512(lt + r * 2 * kTab);
      th[r] = _mm512_loadu_si512(lt + r * 2 * kTab + kTab);
    }
#pragma GCC unroll 4
    for (int u = 0; u < detail::kLutStepTiles; ++u) {
      const uint8_t* pu = p + u * tile_bytes;
      PrefetchWeights<kBits == 2 ? 1 : 2, (kL1PrefetchBytes<kBits> > 0)>(pf2 + u * tile_bytes,
                                                                         pf1 + u * tile_bytes);  // 64 or 96 bytes
      if constexpr (kBits == 2) {
        const __m512i w = _mm512_load_si512(pu);
        const __m512i il = _mm512_ternarylogic_epi32(w, nib, offs, 0xEA);  // (w & nib) | offs
        const __m512i ih = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), nib, offs, 0xEA);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          acc[u][r] = SumBytes(acc[u][r], ones, _mm512_permutexvar_epi8(il, tl[r]));
          acc[u][r] = SumBytes(acc[u][r], ones, _mm512_permutexvar_epi8(ih, th[r]));
        }
      } else {
        const __m512i ab[2] = {_mm512_loadu_si512(pu), _mm512_loadu_si512(pu + 32)};
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {  // column groups 2h, 2h + 1: table h
          const __m512i lanes = _mm512_permutexvar_epi8(spread[h], ab[h]);
#pragma GCC unroll 2
          for (int e = 0; e < 2; ++e) {
            const __m512i idx =
                _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(shifts[e], lanes), seven, offs3[e], 0xEA);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r)
              acc[u][r] = SumBytes(acc[u][r], ones, _mm512_permutexvar_epi8(idx, h == 0 ? tl[r] : th[r]));
          }
        }
      }
    }
  }
};

// The level form (5-8 bits): per chunk the token's 16 int8 activations instead of tables, and
// each rank's levels held in 1 (up to 6 bits: vpermb), 2 (7 bits: vpermt2b) or 4 registers.
// Per column quad k, each tile's 64 indices look up each rank's levels, and vpdpbusd adds
// level * activation over the quad's 4 columns into each row's int32 lane.
template <int kBits, int R>
struct LevelChunk {
  static constexpr int kTableStep = detail::kLutChunkCols;
  static constexpr int kRegs = kBits <= 6 ? 1 : kBits == 7 ? 2 : 4;
  __m512i lv[R][kRegs];

  explicit LevelChunk(const detail::LutView& m) {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < kRegs; ++v) lv[r][v] = _mm512_loadu_si512(m.levels + r * 256 + 64 * v);
  }

  HWY_INLINE void operator()(const uint8_t* p, int64_t tile_bytes, const int8_t* xq,
                             __m512i (&acc)[detail::kLutStepTiles][R], const uint8_t* pf2, const uint8_t* pf1) const {
    constexpr int kLines = (32 * kBits + 63) / 64;
    int32_t xw[4];
    std::memcpy(xw, xq, sizeof xw);
    __m512i xb[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) xb[k] = _mm512_set1_epi32(xw[k]);  // columns 4k .. 4k + 3 in every lane
#pragma GCC unroll 4
    for (int u = 0; u < detail::kLutStepTiles; ++u) {
      const uint8_t* pu = p + u * tile_bytes;
      PrefetchWeights<kLines, true>(pf2 + u * tile_bytes, pf1 + u * tile_bytes);
      const __m512i h2 = kBits == 6 || kBits == 7 ? _mm512_loadu_si512(pu + 128) : _mm512_setzero_si512();
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m512i w = _mm512_loadu_si512(pu + 64 * h);
        const __m512i wh = kBits == 8 ? _mm512_loadu_si512(pu + 128 + 64 * h) : _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int e = 0; e < 2; ++e) {
          const __m512i idx = LevelIndices<kBits>(pu, w, h2, wh, 2 * h + e);
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r)
            acc[u][r] = _mm512_dpbusd_epi32(acc[u][r], LookUpLevels<kBits>(idx, lv[r]), xb[2 * h + e]);
        }
      }
    }
  }
};

template <int kBits, int R>
using ChunkOf = std::conditional_t<(kBits >= 5), LevelChunk<kBits, R>,
                                   std::conditional_t<kBits == 4, Table4Chunk<R>, Table23Chunk<kBits, R>>>;

// Tiles [tile0, tile1) of kBits-bit indices with rank R; kDq: parameters are codes with block
// scales and offsets. Steps of 4 tiles; per group, every chunk's sums go into int32
// accumulators (ChunkOf: the form's chunk), then the group's scale-back into the rows' floats.
template <int kBits, int R, bool kDq>
void RowsR(const detail::LutView& m, const detail::LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  using namespace detail;
  constexpr int NT = kLutStepTiles, NP = R + 1;
  constexpr int64_t kCoefStride = NP * kLutTileRows;  // parameters of one tile and group
  constexpr int kChunkBytes = 32 * kBits;            // lut_chunk_bytes()
  using Chunk = ChunkOf<kBits, R>;
  const Chunk chunk(m);
  const int64_t cpg = m.group / kLutChunkCols, gpr = m.groups_per_row, chunks = m.chunks, rows = m.rows;
  // A row's groups cross a block boundary only when dq_group is not a multiple of gpr.
  const bool stepping = kDq && m.dq_group % gpr != 0;
  const float* d = L.d.data();
  const float* sumx = L.sumx.data();
  const float* shift = L.shift.data();
  const int64_t tile_bytes = chunks * kChunkBytes;  // tile u's chunks are at p + u * tile_bytes
  // A prefetch that would pass the end of its tile goes on to the same tile of the next step,
  // (NT - 1) tiles further on: with short rows (576 columns: 2-3 KiB per tile) the next
  // step's streams would otherwise start cold.
  const int64_t wrap = (NT - 1) * tile_bytes;
  for (int64_t t0 = tile0; t0 < tile1; t0 += NT) {
    const uint8_t* p = m.idx + t0 * tile_bytes;
    int64_t off = 0;  // p's offset in its tile
    TileBlocks tb[NT];
    if constexpr (kDq) {
      for (int u = 0; u < NT; ++u) tb[u].start(m, t0 + u);
      // The next step's block parameters, which start() reads first: without this their
      // misses stalled the start of every step (about 15 % of a 5-bit decode's kernel time).
      const int64_t next = std::min(((t0 + NT) * kLutTileRows * gpr) / m.dq_group, m.n_blocks - 1);
      for (int q = 0; q < NP; ++q) {
        _mm_prefetch(reinterpret_cast<const char*>(m.blk_scale + q * m.n_blocks + next), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(m.blk_offset + q * m.n_blocks + next), _MM_HINT_T0);
      }
    }
    const uint8_t* codes = m.coef_codes + t0 * gpr * kCoefStride;  // tile t0 + u at + u * kCoefStride
    const float* coef = m.coef_f32 + t0 * gpr * kCoefStride;
    __m512 yy[NT];
#pragma GCC unroll 4
    for (int u = 0; u < NT; ++u) yy[u] = _mm512_setzero_ps();
    const int8_t* lt = L.t.data();
    for (int64_t j = 0; j < gpr; ++j, codes += NT * kCoefStride, coef += NT * kCoefStride) {
      __m512i acc[NT][R];
#pragma GCC unroll 4
      for (int u = 0; u < NT; ++u)
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) acc[u][r] = _mm512_setzero_si512();
      const int64_t nch = std::min(cpg, chunks - j * cpg);
      for (int64_t ch = 0; ch < nch; ++ch, lt += Chunk::kTableStep, p += kChunkBytes, off += kChunkBytes) {
        constexpr int kPf2 = kPrefetchBytes<kBits>, kPf1 = kL1PrefetchBytes<kBits>;
        const uint8_t* pf2 = p + kPf2 + (off + kPf2 >= tile_bytes ? wrap : 0);
        const uint8_t* pf1 = p + kPf1 + (off + kPf1 >= tile_bytes ? wrap : 0);
        chunk(p, tile_bytes, lt, acc, pf2, pf1);
      }
      // The group's scale-back, as lut_rows_scalar(): y = fma(S_r, fma(d_r, acc_r, shift_r), y), then B.
      const __m512 neg_sumx = _mm512_set1_ps(-sumx[j]);
#pragma GCC unroll 4
      for (int u = 0; u < NT; ++u) {
#pragma GCC unroll 5
        for (int q = 0; q < NP; ++q) {
          __m512 s;
          if constexpr (kDq) {
            const __m128i c8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + u * kCoefStride + q * kLutTileRows));
            s = _mm512_fmadd_ps(tb[u].scale[q], _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(c8)), tb[u].offset[q]);
          } else {
            s = _mm512_loadu_ps(coef + u * kCoefStride + q * kLutTileRows);
          }
          if (q < R)
            yy[u] = _mm512_fmadd_ps(
                s, _mm512_fmadd_ps(_mm512_set1_ps(d[j * R + q]), _mm512_cvtepi32_ps(acc[u][q]), _mm512_set1_ps(shift[j * R + q])),
                yy[u]);
          else
            yy[u] = _mm512_fmadd_ps(s, neg_sumx, yy[u]);
        }
        if (stepping) tb[u].step(m);
      }
    }
#pragma GCC unroll 4
    for (int u = 0; u < NT; ++u) {
      const int64_t r0 = (t0 + u) * kLutTileRows;
      if (r0 >= rows) break;
      const int64_t valid = std::min<int64_t>(kLutTileRows, rows - r0);
      _mm512_mask_storeu_ps(y + r0, __mmask16((1u << valid) - 1), yy[u]);
    }
  }
}

}  // namespace

bool LutAvailable() { return true; }

bool LevelsBuild(const detail::LutView& m, detail::LutTables& L) {
  BuildLevels(m, L);
  return true;
}

bool LutBuild(const detail::LutView& m, detail::LutTables& L) {
  BuildLut(m, L);
  return true;
}

bool LutRows(const detail::LutView& m, const detail::LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  if (m.layout != detail::kLutLayoutPermute) return false;
  // Group numbers are advanced in int32 lanes.
  if ((m.tiles * detail::kLutTileRows + 1) * m.groups_per_row >= (int64_t(1) << 31)) return false;
  return detail::with_lut_shape<2, 3, 4, 5, 6, 7, 8>(m.bits, m.rank, m.dq_bits > 0, [&](auto b, auto r, auto dq) {
    RowsR<decltype(b)::value, decltype(r)::value, decltype(dq)::value>(m, L, y, tile0, tile1);
  });
}

#else  // no LUT kernel on this target

bool LutAvailable() { return false; }
bool LevelsBuild(const detail::LutView&, detail::LutTables&) { return false; }
bool LutBuild(const detail::LutView&, detail::LutTables&) { return false; }
bool LutRows(const detail::LutView&, const detail::LutTables&, float*, int64_t, int64_t) { return false; }

#endif

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lcq::kernels {

HWY_EXPORT(LutAvailable);
HWY_EXPORT(LutBuild);
HWY_EXPORT(LutRows);
HWY_EXPORT(LevelsBuild);

namespace detail {
bool build_lut_simd(const LutView& m, LutTables& L) {
  return HWY_DYNAMIC_DISPATCH(LutBuild)(m, L);
}
bool build_levels_simd(const LutView& m, LutTables& L) { return HWY_DYNAMIC_DISPATCH(LevelsBuild)(m, L); }
bool lut_rows_simd(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  return HWY_DYNAMIC_DISPATCH(LutRows)(m, L, y, tile0, tile1);
}
}  // namespace detail

bool lut_simd_available() { return HWY_DYNAMIC_DISPATCH(LutAvailable)(); }

}  // namespace lcq::kernels
#endif  // HWY_ONCE
