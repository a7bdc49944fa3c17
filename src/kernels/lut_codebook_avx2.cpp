// The AVX2 look-up-table kernels of LutCodebookMatrix, for x86 CPUs without AVX-512 VBMI: 2-
// and 4-bit layers in the shuffle layout (lut_internal.h), and the level form of 5-8-bit
// layers (LevelRowsR, below). Its 16-entry tables are the scalar
// reference's (a column's 16 levels at 4 bits, a column pair's 16 index combinations at 2
// bits; the same bytes as the AVX-512 kernel's tables), so it computes the same int32 sums
// and, with the same float epilogue, the same result bit for bit.
//
// vpshufb looks a 16-entry table up within each 128-bit lane: one 32-byte load of indices
// holds 4 slots (columns or pairs) of a tile's 16 rows, its low and high nibbles each two
// slots, one per lane, and one vpshufb per nibble half looks them up in a register holding the
// two slots' tables. Adding the looked-up bytes per row needs them side by side: vpunpcklbw /
// vpunpckhbw interleave the two halves' bytes (rows 0-7, rows 8-15), and vpmaddubsw against
// ones adds each row's pair into int16. Per 32 index bytes and rank: 2 vpshufb, 2 unpacks, 2
// vpmaddubsw, 2 vpaddw (64 look-ups: 64 weights at 4 bits, 128 at 2). The int16 sums are
// widened to int32 every 16 chunks at most, and the group's epilogue is the scalar reference's.

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "lut_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/kernels/lut_codebook_avx2.cpp"  // relative to include/
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace lcq::kernels {
namespace HWY_NAMESPACE {

#if HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL

namespace {

// Prefetching as the AVX-512 kernel's (lut_codebook_simd.cpp): each of the 4 streams of a
// step into L2 a short way ahead and into L1 just before use, 16 and 4 chunks ahead at 4
// bits (2 KiB, 512 bytes), 1 KiB and 256 bytes at 2.
template <int kBits>
constexpr int kPrefetchBytes = kBits == 4 ? 2048 : 1024;
template <int kBits>
constexpr int kL1PrefetchBytes = kBits == 4 ? 512 : 256;
// int16 row sums are widened to int32 at least every this many chunks: a lane adds at most 8
// entries of [-128, 127] per chunk, so 16 chunks stay within int16.
constexpr int kSegmentChunks = 16;

HWY_INLINE __m256 Abs(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.f), v); }

HWY_INLINE float MaxOfLanes(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// The tables of detail::build_lut_scalar(), the same bytes: slot s of a chunk and rank (a
// column at 4 bits, a column pair at 2) has its 16 entries at byte 16 * s of the chunk's rank
// block, which is where the AVX-512 layout of tables puts them too.
void BuildLut(const detail::LutView& m, detail::LutTables& L) {
  using namespace detail;
  const int64_t cpg = m.group / kLutChunkCols;
  const float* x = L.xpad.data();
  const int K = 1 << m.bits, nt = lut_chunk_tables(m.bits), slots = m.bits == 4 ? 16 : 8;
  // After packs_epi32 and packs_epi16 of q0..q3 (slot s: q0, q1; slot s + 1: q2, q3), dword
  // 4 * lane + k holds elements 4 * lane .. + 3 of q_k; this puts each slot's 16 bytes in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t j = 0; j < m.groups_per_row; ++j) {
    const int64_t ch0 = j * cpg, ch1 = std::min(m.chunks, ch0 + cpg);
    __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps(), xmax = _mm256_setzero_ps();
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const __m256 x0 = _mm256_loadu_ps(x + ch * kLutChunkCols), x1 = _mm256_loadu_ps(x + ch * kLutChunkCols + 8);
      sum0 = _mm256_add_ps(sum0, x0);
      sum1 = _mm256_add_ps(sum1, x1);
      __m256 a0 = Abs(x0), a1 = Abs(x1);
      if (m.bits == 2) {  // |x_2p| + |x_2p+1| in both lanes of pair p
        a0 = _mm256_add_ps(a0, _mm256_permute_ps(a0, 0xB1));
        a1 = _mm256_add_ps(a1, _mm256_permute_ps(a1, 0xB1));
      }
      xmax = _mm256_max_ps(xmax, _mm256_max_ps(a0, a1));
    }
    alignas(32) float lanes[16];
    _mm256_store_ps(lanes, sum0);
    _mm256_store_ps(lanes + 8, sum1);
    const float s = lut_lane_sum(lanes);
    const float xm = MaxOfLanes(xmax);
    L.sumx[size_t(j)] = s;
    for (int r = 0; r < m.rank; ++r) {
      const float* U = L.u[r];
      L.shift[size_t(j * m.rank + r)] = L.mid[r] * s;
      const float inv = lut_scale(L.umax[r], xm, &L.d[size_t(j * m.rank + r)]);
      // 2 bits: lo[n] = U[n & 3] / d, hi[n] = U[n >> 2] / d; 4 bits: lo = U[0..15] / d.
      alignas(32) float lo[16], hi[16];
      for (int n = 0; n < 16; ++n) lo[n] = U[n % K] * inv, hi[n] = U[(n >> 2) % K] * inv;
      const __m256 lo0 = _mm256_load_ps(lo), lo1 = _mm256_load_ps(lo + 8);
      const __m256 hi0 = _mm256_load_ps(hi), hi1 = _mm256_load_ps(hi + 8);
      for (int64_t ch = ch0; ch < ch1; ++ch) {
        const float* xc = x + ch * kLutChunkCols;
        int8_t* out = L.t.data() + (ch * m.rank + r) * nt * kLutTableBytes;
        for (int s0 = 0; s0 < slots; s0 += 2) {
          __m256i q[4];
#pragma GCC unroll 2
          for (int e = 0; e < 2; ++e) {
            __m256 v0, v1;
            if (m.bits == 4) {  // entry n of column s: (U[n] / d) * x_s
              const __m256 xs = _mm256_set1_ps(xc[s0 + e]);
              v0 = _mm256_mul_ps(lo0, xs);
              v1 = _mm256_mul_ps(lo1, xs);
            } else {  // entry n of pair p: fma(U[n >> 2] / d, x_b, (U[n & 3] / d) * x_a)
              const __m256 xa = _mm256_set1_ps(xc[2 * (s0 + e)]), xb = _mm256_set1_ps(xc[2 * (s0 + e) + 1]);
              v0 = _mm256_fmadd_ps(hi0, xb, _mm256_mul_ps(lo0, xa));
              v1 = _mm256_fmadd_ps(hi1, xb, _mm256_mul_ps(lo1, xa));
            }
            q[2 * e] = _mm256_cvtps_epi32(v0);  // round to nearest even, as std::nearbyint
            q[2 * e + 1] = _mm256_cvtps_epi32(v1);
          }
          // Saturating packs, as lut_round().
          const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 16 * s0), _mm256_permutevar8x32_epi32(b, order));
        }
      }
    }
  }
}

// The decoded double-quantization block parameters of a tile's 16 rows (two vectors of 8) at
// the current group, read again only when a row's groups cross a block boundary (as the
// AVX-512 kernel's TileBlocks, with gathers).
struct TileBlocks {
  __m256i g[2], blk[2], next[2];
  __m256 scale[5][2], offset[5][2];  // per parameter and half, one lane per row

  void start(const detail::LutView& m, int64_t tile) {
    alignas(32) int32_t gg[16], bb[16], nn[16];
    for (int r = 0; r < 16; ++r) {
      const int64_t g0 = (tile * detail::kLutTileRows + r) * m.groups_per_row;
      gg[r] = int32_t(g0);
      bb[r] = int32_t(g0 / m.dq_group);
      nn[r] = int32_t((g0 / m.dq_group + 1) * m.dq_group);
    }
    for (int h = 0; h < 2; ++h) {
      g[h] = _mm256_load_si256(reinterpret_cast<const __m256i*>(gg + 8 * h));
      blk[h] = _mm256_load_si256(reinterpret_cast<const __m256i*>(bb + 8 * h));
      next[h] = _mm256_load_si256(reinterpret_cast<const __m256i*>(nn + 8 * h));
    }
    refresh(m);
  }
  void step(const detail::LutView& m) {
    const __m256i one = _mm256_set1_epi32(1);
    __m256i cross[2];
    for (int h = 0; h < 2; ++h) {
      g[h] = _mm256_add_epi32(g[h], one);
      cross[h] = _mm256_cmpgt_epi32(g[h], _mm256_sub_epi32(next[h], one));  // g >= next
    }
    if (_mm256_testz_si256(_mm256_or_si256(cross[0], cross[1]), _mm256_or_si256(cross[0], cross[1]))) return;
    for (int h = 0; h < 2; ++h) {
      blk[h] = _mm256_sub_epi32(blk[h], cross[h]);  // cross lanes are -1
      next[h] = _mm256_add_epi32(next[h], _mm256_and_si256(cross[h], _mm256_set1_epi32(int32_t(m.dq_group))));
    }
    refresh(m);
  }
  void refresh(const detail::LutView& m) {
    // Rows past the matrix (padding, their codes are 0) read the last block instead.
    const __m256i last = _mm256_set1_epi32(int32_t(m.n_blocks - 1));
    for (int h = 0; h < 2; ++h) {
      const __m256i b = _mm256_min_epi32(blk[h], last);
      for (int q = 0; q <= m.rank; ++q) {
        scale[q][h] = _mm256_i32gather_ps(m.blk_scale + q * m.n_blocks, b, 4);
        offset[q][h] = _mm256_i32gather_ps(m.blk_offset + q * m.n_blocks, b, 4);
      }
    }
  }
};

// The group's scale-back of one tile, as lut_rows_scalar(): y = fma(S_r, fma(d_r, acc_r + add,
// shift_r), y) per rank, then y = fma(B, -sumx, y), for rows 0-7 and 8-15. codes / coef point
// at the tile's parameters of group j.
template <int R, bool kDq>
HWY_INLINE void ScaleBack(const detail::LutTables& L, int64_t j, const uint8_t* codes, const float* coef,
                          const TileBlocks& tb, const __m256i (&acc)[R][2], __m256i add, float* yy) {
  for (int h = 0; h < 2; ++h) {
    __m256 yv = _mm256_load_ps(yy + 8 * h);
#pragma GCC unroll 5
    for (int q = 0; q <= R; ++q) {
      __m256 s;
      if constexpr (kDq) {
        const __m128i c8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + q * detail::kLutTileRows + 8 * h));
        s = _mm256_fmadd_ps(tb.scale[q][h], _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c8)), tb.offset[q][h]);
      } else {
        s = _mm256_loadu_ps(coef + q * detail::kLutTileRows + 8 * h);
      }
      if (q < R)
        yv = _mm256_fmadd_ps(s,
                             _mm256_fmadd_ps(_mm256_set1_ps(L.d[size_t(j * R + q)]),
                                             _mm256_cvtepi32_ps(_mm256_add_epi32(acc[q][h], add)),
                                             _mm256_set1_ps(L.shift[size_t(j * R + q)])),
                             yv);
      else
        yv = _mm256_fmadd_ps(s, _mm256_set1_ps(-L.sumx[size_t(j)]), yv);
    }
    _mm256_store_ps(yy + 8 * h, yv);
  }
}

// The rows of the step's 4 tiles that exist.
HWY_INLINE void StoreTiles(float* y, const float (&yy)[detail::kLutStepTiles][16], int64_t t0, int64_t rows) {
  for (int u = 0; u < detail::kLutStepTiles; ++u) {
    const int64_t r0 = (t0 + u) * detail::kLutTileRows;
    if (r0 >= rows) break;
    std::memcpy(y + r0, yy[u], sizeof(float) * size_t(std::min<int64_t>(detail::kLutTileRows, rows - r0)));
  }
}

// Tiles [tile0, tile1) of kBits-bit indices with rank R; kDq: parameters are codes with block
// scales and offsets. Per step of 4 tiles and group, each tile in turn runs through the
// group's chunks (the 4 streams advance a group at a time: 0.5-1 KiB at groups of 128), so the
// group's tables are read from L1 by the other 3 tiles.
template <int kBits, int R, bool kDq>
void RowsR(const detail::LutView& m, const detail::LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  using namespace detail;
  constexpr int NT = kLutStepTiles, NP = R + 1;
  constexpr int64_t kCoefStride = NP * kLutTileRows;
  constexpr int kChunkBytes = 32 * kBits, kLoads = kChunkBytes / 32, kTableBlock = (kBits == 4 ? 4 : 2) * kLutTableBytes;
  const int64_t cpg = m.group / kLutChunkCols, gpr = m.groups_per_row, chunks = m.chunks, rows = m.rows;
  const bool stepping = kDq && m.dq_group % gpr != 0;
  const __m256i ones = _mm256_set1_epi8(1), nib = _mm256_set1_epi8(0x0F);
  const int64_t tile_bytes = chunks * kChunkBytes, wrap = (NT - 1) * tile_bytes;
  for (int64_t t0 = tile0; t0 < tile1; t0 += NT) {
    TileBlocks tb[NT];
    if constexpr (kDq)
      for (int u = 0; u < NT; ++u) tb[u].start(m, t0 + u);
    const uint8_t* codes = m.coef_codes + t0 * gpr * kCoefStride;
    const float* coef = m.coef_f32 + t0 * gpr * kCoefStride;
    alignas(32) float yy[NT][16] = {};
    for (int64_t j = 0; j < gpr; ++j, codes += NT * kCoefStride, coef += NT * kCoefStride) {
      const int64_t nch = std::min(cpg, chunks - j * cpg), off0 = j * cpg * kChunkBytes;
      const int8_t* lt0 = L.t.data() + j * cpg * R * kTableBlock;
      for (int u = 0; u < NT; ++u) {
        const uint8_t* p = m.idx + (t0 + u) * tile_bytes + off0;
        __m256i acc[R][2];  // int32 sums of rows 0-7 and 8-15
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int64_t c0 = 0; c0 < nch; c0 += kSegmentChunks) {
          // int16 sums: lane 0 of [r][h] adds the even slot of each nibble half, lane 1 the odd.
          __m256i a16[R][2];
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r) a16[r][0] = a16[r][1] = _mm256_setzero_si256();
          const int64_t c1 = std::min(nch, c0 + kSegmentChunks);
          for (int64_t ch = c0; ch < c1; ++ch) {
            const uint8_t* pc = p + ch * kChunkBytes;
            const int64_t off = off0 + ch * kChunkBytes;
            constexpr int kPf2 = kPrefetchBytes<kBits>, kPf1 = kL1PrefetchBytes<kBits>;
            const uint8_t* pf2 = pc + kPf2 + (off + kPf2 >= tile_bytes ? wrap : 0);
            const uint8_t* pf1 = pc + kPf1 + (off + kPf1 >= tile_bytes ? wrap : 0);
#pragma GCC unroll 2
            for (int l = 0; l < kChunkBytes / 64; ++l) {
              _mm_prefetch(reinterpret_cast<const char*>(pf2) + 64 * l, _MM_HINT_T1);
              _mm_prefetch(reinterpret_cast<const char*>(pf1) + 64 * l, _MM_HINT_T0);
            }
            const int8_t* lt = lt0 + ch * R * kTableBlock;
#pragma GCC unroll 4
            for (int ld = 0; ld < kLoads; ++ld) {
              const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(pc + 32 * ld));
              const __m256i lo = _mm256_and_si256(w, nib), hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), nib);
#pragma GCC unroll 4
              for (int r = 0; r < R; ++r) {
                // Slots 4ld, 4ld + 1 (low nibbles) and 4ld + 2, 4ld + 3 (high): two tables each.
                const int8_t* tr = lt + r * kTableBlock + 64 * ld;
                const __m256i sl = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tr)), lo);
                const __m256i sh = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tr + 32)), hi);
                a16[r][0] = _mm256_add_epi16(a16[r][0], _mm256_maddubs_epi16(ones, _mm256_unpacklo_epi8(sl, sh)));
                a16[r][1] = _mm256_add_epi16(a16[r][1], _mm256_maddubs_epi16(ones, _mm256_unpackhi_epi8(sl, sh)));
              }
            }
          }
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r)
            for (int h = 0; h < 2; ++h) {
              const __m256i s = _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(a16[r][h])),
                                                 _mm256_cvtepi16_epi32(_mm256_extracti128_si256(a16[r][h], 1)));
              acc[r][h] = _mm256_add_epi32(acc[r][h], s);
            }
        }
        ScaleBack<R, kDq>(L, j, codes + u * kCoefStride, coef + u * kCoefStride, tb[u], acc, _mm256_setzero_si256(), yy[u]);
        if (stepping) tb[u].step(m);
      }
    }
    StoreTiles(y, yy, t0, rows);
  }
}

// The level form (5-8 bits) on AVX2, from the same index layout as the AVX-512 kernel
// (lut_internal.h, lut_level_place()). A 32-byte half of a nibble plane holds 8 rows x 4
// columns of a column quad (byte 4m + column % 4); the indices' high bits come from their
// planes as at AVX-512. vpshufb looks 16 entries up, so a 2^b-entry row of levels is 2^(b-4)
// tables of 16: table t answers the indices whose high part is t, the others get index bit 7
// (vpshufb then gives 0) from one xor and one saturating add, and the tables' answers are ORed.
// The levels are looked up as signed bytes s = u - 128 (|s| <= 127), so that vpmaddubsw can
// multiply them by |x| with x's sign moved onto them (vpsignb) without saturating its int16
// pair sums (at most 2 * 128 * 127); vpmaddwd adds each row's two pairs into its int32 lane.
// sum_c u[q_c] xq_c = sum_c s xq_c + 128 * sum_c xq_c (LutTables::sxq) gives the scalar
// reference's int32 sums exactly, and the epilogue is its own.
template <int kBits>
HWY_INLINE __m256i LevelIndices8(const uint8_t* chunk, int half, int k) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(chunk + 64 * (k / 2) + 32 * half));
  __m256i idx = _mm256_and_si256(k % 2 ? _mm256_srli_epi16(w, 4) : w, nib);
  if constexpr (kBits == 8) {
    const __m256i wh = _mm256_load_si256(reinterpret_cast<const __m256i*>(chunk + 128 + 64 * (k / 2) + 32 * half));
    return _mm256_or_si256(idx, _mm256_andnot_si256(nib, k % 2 ? wh : _mm256_slli_epi16(wh, 4)));
  }
  if constexpr (kBits == 6 || kBits == 7) {  // bits 4-5: byte p holds quad k's at bits 2k, 2k + 1
    const __m256i h2 = _mm256_load_si256(reinterpret_cast<const __m256i*>(chunk + 128 + 32 * half));
    const __m256i hi = k == 0 ? _mm256_slli_epi16(h2, 4) : k == 1 ? _mm256_slli_epi16(h2, 2) : k == 2 ? h2 : _mm256_srli_epi16(h2, 2);
    idx = _mm256_or_si256(idx, _mm256_and_si256(hi, _mm256_set1_epi8(0x30)));
  }
  if constexpr (kBits == 5 || kBits == 7) {  // one bit per position: the 32 bits of this half
    uint32_t bits;
    std::memcpy(&bits, chunk + (kBits == 5 ? 128 : 192) + 8 * k + 4 * half, 4);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(int32_t(bits)),
        _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i select = _mm256_set1_epi64x(int64_t(0x8040201008040201));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
    idx = _mm256_or_si256(idx, _mm256_and_si256(set, _mm256_set1_epi8(kBits == 5 ? 0x10 : 0x40)));
  }
  return idx;
}

template <int kBits, int R, bool kDq>
void LevelRowsR(const detail::LutView& m, const detail::LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  using namespace detail;
  constexpr int NT = kLutStepTiles, NP = R + 1, kTabs = 1 << (kBits - 4);
  constexpr int64_t kCoefStride = NP * kLutTileRows;
  constexpr int kChunkBytes = 32 * kBits;
  const int64_t cpg = m.group / kLutChunkCols, gpr = m.groups_per_row, chunks = m.chunks, rows = m.rows;
  const bool stepping = kDq && m.dq_group % gpr != 0;
  const int64_t tile_bytes = chunks * kChunkBytes, wrap = (NT - 1) * tile_bytes;
  // Table t of rank r: levels 16t .. 16t + 15 as signed bytes, in both 128-bit lanes.
  alignas(32) int8_t tabs[R][kTabs][32];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < kTabs; ++t)
      for (int e = 0; e < 32; ++e) tabs[r][t][e] = int8_t(m.levels[r * 256 + 16 * t + e % 16] ^ 0x80);
  const __m256i ones16 = _mm256_set1_epi16(1), bias = _mm256_set1_epi8(0x70);
  for (int64_t t0 = tile0; t0 < tile1; t0 += NT) {
    TileBlocks tb[NT];
    if constexpr (kDq)
      for (int u = 0; u < NT; ++u) tb[u].start(m, t0 + u);
    const uint8_t* codes = m.coef_codes + t0 * gpr * kCoefStride;
    const float* coef = m.coef_f32 + t0 * gpr * kCoefStride;
    alignas(32) float yy[NT][16] = {};
    for (int64_t j = 0; j < gpr; ++j, codes += NT * kCoefStride, coef += NT * kCoefStride) {
      const int64_t nch = std::min(cpg, chunks - j * cpg), off0 = j * cpg * kChunkBytes;
      const int8_t* xq0 = L.t.data() + j * cpg * kLutChunkCols;
      for (int u = 0; u < NT; ++u) {
        const uint8_t* p = m.idx + (t0 + u) * tile_bytes + off0;
        __m256i acc[R][2];  // int32 sums of rows 0-7 and 8-15
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int64_t ch = 0; ch < nch; ++ch) {
          const uint8_t* pc = p + ch * kChunkBytes;
          const int64_t off = off0 + ch * kChunkBytes;
          const uint8_t* pf2 = pc + 2048 + (off + 2048 >= tile_bytes ? wrap : 0);
          const uint8_t* pf1 = pc + 512 + (off + 512 >= tile_bytes ? wrap : 0);
#pragma GCC unroll 4
          for (int l = 0; l < (kChunkBytes + 63) / 64; ++l) {
            _mm_prefetch(reinterpret_cast<const char*>(pf2) + 64 * l, _MM_HINT_T1);
            _mm_prefetch(reinterpret_cast<const char*>(pf1) + 64 * l, _MM_HINT_T0);
          }
          int32_t xw[4];
          std::memcpy(xw, xq0 + ch * kLutChunkCols, sizeof xw);
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            const __m256i xb = _mm256_set1_epi32(xw[k]), xabs = _mm256_abs_epi8(xb);
#pragma GCC unroll 2
            for (int half = 0; half < 2; ++half) {
              const __m256i idx = LevelIndices8<kBits>(pc, half, k);
              __m256i sel[kTabs];
#pragma GCC unroll 16
              for (int t = 0; t < kTabs; ++t)
                sel[t] = _mm256_adds_epu8(t == 0 ? idx : _mm256_xor_si256(idx, _mm256_set1_epi8(char(16 * t))), bias);
#pragma GCC unroll 4
              for (int r = 0; r < R; ++r) {
                __m256i v = _mm256_shuffle_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(tabs[r][0])), sel[0]);
#pragma GCC unroll 16
                for (int t = 1; t < kTabs; ++t)
                  v = _mm256_or_si256(v, _mm256_shuffle_epi8(_mm256_load_si256(reinterpret_cast<const __m256i*>(tabs[r][t])), sel[t]));
                const __m256i pairs = _mm256_maddubs_epi16(xabs, _mm256_sign_epi8(v, xb));
                acc[r][half] = _mm256_add_epi32(acc[r][half], _mm256_madd_epi16(pairs, ones16));
              }
            }
          }
        }
        // acc_r = sum s xq + 128 sum xq: the scalar reference's sums of level times activation.
        ScaleBack<R, kDq>(L, j, codes + u * kCoefStride, coef + u * kCoefStride, tb[u], acc,
                          _mm256_set1_epi32(128 * L.sxq[size_t(j)]), yy[u]);
        if (stepping) tb[u].step(m);
      }
    }
    StoreTiles(y, yy, t0, rows);
  }
}

}  // namespace

bool ShuffleAvailable() { return true; }

bool LevelRows(const detail::LutView& m, const detail::LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  if (!detail::lut_levels(m.bits) || (m.tiles * detail::kLutTileRows + 1) * m.groups_per_row >= (int64_t(1) << 31))
    return false;
  return detail::with_lut_shape<5, 6, 7, 8>(m.bits, m.rank, m.dq_bits > 0, [&](auto b, auto r, auto dq) {
    LevelRowsR<decltype(b)::value, decltype(r)::value, decltype(dq)::value>(m, L, y, tile0, tile1);
  });
}

bool ShuffleBuild(const detail::LutView& m, detail::LutTables& L) {
  if (m.layout != detail::kLutLayoutShuffle || (m.bits != 2 && m.bits != 4)) return false;
  BuildLut(m, L);
  return true;
}

bool ShuffleRows(const detail::LutView& m, const detail::LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  if (m.layout != detail::kLutLayoutShuffle) return false;
  // Group numbers are advanced in int32 lanes.
  if ((m.tiles * detail::kLutTileRows + 1) * m.groups_per_row >= (int64_t(1) << 31)) return false;
  return detail::with_lut_shape<2, 4>(m.bits, m.rank, m.dq_bits > 0, [&](auto b, auto r, auto dq) {
    RowsR<decltype(b)::value, decltype(r)::value, decltype(dq)::value>(m, L, y, tile0, tile1);
  });
}

#else  // no AVX2

bool ShuffleAvailable() { return false; }
bool LevelRows(const detail::LutView&, const detail::LutTables&, float*, int64_t, int64_t) { return false; }
bool ShuffleBuild(const detail::LutView&, detail::LutTables&) { return false; }
bool ShuffleRows(const detail::LutView&, const detail::LutTables&, float*, int64_t, int64_t) { return false; }

#endif

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lcq::kernels {

HWY_EXPORT(ShuffleAvailable);
HWY_EXPORT(ShuffleBuild);
HWY_EXPORT(ShuffleRows);
HWY_EXPORT(LevelRows);

namespace detail {
bool lut_shuffle_available() { return HWY_DYNAMIC_DISPATCH(ShuffleAvailable)(); }
bool build_lut_shuffle(const LutView& m, LutTables& L) { return HWY_DYNAMIC_DISPATCH(ShuffleBuild)(m, L); }
bool lut_level_rows_avx2(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  return HWY_DYNAMIC_DISPATCH(LevelRows)(m, L, y, tile0, tile1);
}
bool lut_rows_shuffle(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  return HWY_DYNAMIC_DISPATCH(ShuffleRows)(m, L, y, tile0, tile1);
}
}  // namespace detail

}  // namespace lcq::kernels
#endif  // HWY_ONCE
