// Internal to lcq_kernels: the tile layout of LutCodebookMatrix and the flat view its scalar
// reference and SIMD kernel share (docs/packed-format.md, "The look-up-table path").
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace lcq::kernels::detail {

constexpr int kLutTileRows = 16;    // rows per tile: one int32 lane of vpdpbusd each
constexpr int kLutStepTiles = 4;    // tiles worked on together (they share each table load)
constexpr int kLutChunkCols = 16;   // columns per tile chunk
constexpr int kLutTableBytes = 64;  // one table: 64 int8 entries (4 column pairs, 8 or 4 columns)

// Bytes of one tile chunk (16 rows x 16 columns): 64 at 2 bits, 96 at 3, 128 at 4 ... 256 at 8.
inline int lut_chunk_bytes(int bits) { return 2 * kLutChunkCols * bits; }

// 5- to 8-bit layers take the *level* form of the kernel (docs/packed-format.md, "Levels at
// 5-8 bits"): V is rounded to 8-bit levels once per layer, the activations to int8 once per
// token and group, and every row looks its weights' levels up; 2-4 bits use activation tables.
inline bool lut_levels(int bits) { return bits >= 5; }
// Tables per chunk and rank: 2 at 2 and 3 bits (8 columns each), 4 at 4 bits (4 columns of 16 entries).
inline int lut_chunk_tables(int bits) { return bits == 4 ? 4 : 2; }

// The index layouts inside a tile chunk (lut_bit()); the tables are the same for both.
enum LutLayout : int {
  kLutLayoutPermute = 0,  // for the AVX-512 VBMI kernel (vpermb: 64-byte tables)
  kLutLayoutShuffle = 1,  // 2 and 4 bits, for the AVX2 kernel (vpshufb: a 16-entry table per 128-bit lane)
};

// The kernels' one dispatch from run-time widths to their template instances: calls
// rows(bits, rank, dq) with each as a compile-time constant (std::integral_constant) when bits
// is one of Bits and rank is 1-4, and returns whether it did.
template <int... Bits, class Rows>
bool with_lut_shape(int bits, int rank, bool dq, Rows rows) {
  auto with_rank = [&](auto b) {
    auto with_dq = [&](auto r) {
      dq ? rows(b, r, std::true_type()) : rows(b, r, std::false_type());
      return true;
    };
    switch (rank) {
      case 1: return with_dq(std::integral_constant<int, 1>());
      case 2: return with_dq(std::integral_constant<int, 2>());
      case 3: return with_dq(std::integral_constant<int, 3>());
      case 4: return with_dq(std::integral_constant<int, 4>());
      default: return false;
    }
  };
  return ((bits == Bits && with_rank(std::integral_constant<int, Bits>())) || ...);
}

struct LutView {
  int64_t rows, cols, tiles, chunks, groups_per_row;
  int bits, group, rank, dq_bits, layout;
  int64_t dq_group, n_blocks;
  const uint8_t* idx;
  const uint8_t* coef_codes;  // [tiles / 4][gpr][4][rank + 1][16]: one stream per 4 tiles
  const float* coef_f32;
  const float* blk_scale;     // [rank + 1][n_blocks] (+ 32 zero floats)
  const float* blk_offset;
  const float* v;             // [rank][2^bits]
  // Level form (5-8 bits): V[r][k] ~ level_mid[r] + level_step[r] * (levels[r * 256 + k] - 128).
  const uint8_t* levels;      // [rank][256], entries past 2^bits zero
  const float* level_mid;
  const float* level_step;
};

// Where row i, column c's index is: the returned bit (counted from bit 0 of byte 0 of the
// buffer, little-endian) of the chunk of tile i / 16 and column chunk c / 16, which starts at
// byte (tile * chunks + chunk) * chunk_bytes: each tile's chunks follow each other, so the 4
// tiles of a step are 4 streams read side by side. Inside a chunk, with m = i % 16 and
// cc = c % 16, in the permute layout:
//  - 2 bits: byte 4m + (cc % 8) / 2; its low nibble holds the column pair (cc / 2) for
//    cc < 8 (columns 2p, 2p + 1 in bits 0-1, 2-3), its high nibble the pair for cc >= 8.
//  - 3 bits: column group k = cc / 4 (columns 4k .. 4k + 3) forms 64 "slots" b = 4m + cc % 4;
//    slot b's index is at bit 3 * (b % 8) of the 24-bit little-endian number at byte
//    24k + 3 * (b / 8). (The kernel moves each 3 bytes into a 64-bit lane and picks the 8
//    indices out with vpmultishiftqb.)
//  - 4 bits: column quad k = cc / 4 (columns 4k .. 4k + 3) is in the 64-byte half k / 2, in
//    the low nibbles for even k and the high ones for odd k: byte 64 * (k / 2) + 4m + cc % 4.
//    (One 64-byte load and one nibble extraction give the 64 look-ups of a quad, row m's 4
//    in bytes 4m .. 4m + 3, the int32 lane vpdpbusd sums them into.)
// In the shuffle layout (2 and 4 bits), the chunk's "slots" are its 16 columns (4 bits) or
// its 8 column pairs (2 bits; one nibble holds both indices as above), each with a table of
// 16 entries: slot s of row m is the nibble at byte 32 * (s / 4) + 16 * (s % 2) + m, the low
// one for s % 4 < 2, the high one otherwise. So each 32-byte load holds 4 slots of the 16
// rows, and each 128-bit lane of its low or high nibbles is one slot's 16 rows, what vpshufb
// looks up in that slot's table.
inline int64_t lut_bit(int bits, int layout, int64_t chunks, int64_t i, int64_t c) {
  const int64_t tile = i / kLutTileRows, chunk = c / kLutChunkCols;
  const int64_t base = (tile * chunks + chunk) * lut_chunk_bytes(bits);
  const int m = int(i % kLutTileRows), cc = int(c % kLutChunkCols);
  if (layout == kLutLayoutShuffle) {
    const int s = bits == 4 ? cc : cc / 2;
    return 8 * (base + 32 * (s / 4) + 16 * (s % 2) + m) + 4 * ((s % 4) / 2) + (bits == 2 ? 2 * (cc % 2) : 0);
  }
  if (bits == 2) return 8 * (base + 4 * m + (cc % 8) / 2) + 4 * (cc / 8) + 2 * (cc % 2);
  if (bits == 4) return 8 * (base + 64 * (cc / 8) + 4 * m + cc % 4) + 4 * ((cc / 4) % 2);
  const int k = cc / 4, b = 4 * m + cc % 4;
  return 8 * (base + 24 * k + 3 * (b / 8)) + 3 * (b % 8);
}

// The level form's index layout (5-8 bits). A chunk (32 * bits bytes) starts with the 4-bit
// permute layout of the indices' low 4 bits (128 bytes: column quad k = cc / 4 in the 64-byte
// half k / 2, byte 4m + cc % 4, low nibble for even k), then the high bits as planes of the
// same 64 positions p = 4m + cc % 4 per quad, in the order the kernel adds them:
//  - bits 4-5 (6 and 7 bits): 64 bytes; byte p holds quad k's two bits at bits 2k, 2k + 1;
//  - one bit (5 bits: bit 4; 7 bits: bit 6): 32 bytes; the 64-bit word k holds quad k's bit
//    of position p at bit p (a mask register's worth);
//  - bits 4-7 (8 bits): 128 bytes, a second nibble plane laid out as the first.
// Writes the byte offsets of row i, column c's pieces: `nib` (the nibble's byte; its shift is
// 4 * (quad % 2)), and returns the quad k and position p. The planes' offsets are fixed per width.
struct LutLevelPlace {
  int64_t chunk;  // byte offset of the chunk
  int quad, pos;
};
inline LutLevelPlace lut_level_place(int64_t chunks, int bits, int64_t i, int64_t c) {
  const int64_t tile = i / kLutTileRows, chunk = c / kLutChunkCols;
  const int m = int(i % kLutTileRows), cc = int(c % kLutChunkCols);
  return {(tile * chunks + chunk) * lut_chunk_bytes(bits), cc / 4, 4 * m + cc % 4};
}
// The index at column quad k, position p of the chunk at `ch`.
inline int lut_level_get_at(const uint8_t* ch, int bits, int k, int p) {
  int q = (ch[64 * (k / 2) + p] >> (4 * (k % 2))) & 15;
  if (bits == 8) return q | ((ch[128 + 64 * (k / 2) + p] >> (4 * (k % 2))) & 15) << 4;
  int at_bit = 4;
  if (bits >= 6) q |= ((ch[128 + p] >> (2 * k)) & 3) << 4, at_bit = 6;
  if (bits == 5 || bits == 7) q |= ((ch[(bits == 5 ? 128 : 192) + 8 * k + p / 8] >> (p % 8)) & 1) << at_bit;
  return q;
}
inline int lut_level_get(const uint8_t* idx, int64_t chunks, int bits, int64_t i, int64_t c) {
  const LutLevelPlace at = lut_level_place(chunks, bits, i, c);
  return lut_level_get_at(idx + at.chunk, bits, at.quad, at.pos);
}
// ORs index q into the chunk at `ch` as column quad k, position p (the buffer starts zeroed).
inline void lut_level_put_at(uint8_t* ch, int bits, int k, int p, int q) {
  ch[64 * (k / 2) + p] = uint8_t(ch[64 * (k / 2) + p] | (q & 15) << (4 * (k % 2)));
  if (bits == 8) {
    ch[128 + 64 * (k / 2) + p] = uint8_t(ch[128 + 64 * (k / 2) + p] | ((q >> 4) & 15) << (4 * (k % 2)));
    return;
  }
  int at_bit = 4;
  if (bits >= 6) ch[128 + p] = uint8_t(ch[128 + p] | ((q >> 4) & 3) << (2 * k)), at_bit = 6;
  if (bits == 5 || bits == 7) {
    uint8_t& b = ch[(bits == 5 ? 128 : 192) + 8 * k + p / 8];
    b = uint8_t(b | ((q >> at_bit) & 1) << (p % 8));
  }
}

// The index at `bit` of the buffer (it may straddle two bytes at 3 bits).
inline int lut_get(const uint8_t* idx, int bits, int64_t bit) {
  const int64_t at = bit / 8;
  const int sh = int(bit % 8);
  const unsigned w = unsigned(idx[at]) | (sh + bits > 8 ? unsigned(idx[at + 1]) << 8 : 0u);
  return int((w >> sh) & ((1u << bits) - 1));
}
inline void lut_put(uint8_t* idx, int bits, int64_t bit, int q) {
  const int64_t at = bit / 8;
  const int sh = int(bit % 8);
  const unsigned w = unsigned(q) << sh;
  idx[at] = uint8_t(idx[at] | (w & 0xFF));
  if (sh + bits > 8) idx[at + 1] = uint8_t(idx[at + 1] | (w >> 8));
}

inline int64_t lut_coef_index(const LutView& m, int64_t tile, int64_t j, int p, int row_in_tile) {
  const int64_t quad = tile / kLutStepTiles;
  return (((quad * m.groups_per_row + j) * kLutStepTiles + tile % kLutStepTiles) * (m.rank + 1) + p) * kLutTileRows +
         row_in_tile;
}

// The rank + 1 parameters of row i's group j (S_0 .. S_{rank-1}, B) with
// CodebookLayer::codebook's arithmetic: offset + scale * code (no fma: the files that call it
// are compiled without FMA or with -ffp-contract=off), or the f32 values.
inline void lut_exact_params(const LutView& m, int64_t i, int64_t j, float* out) {
  const int64_t at = lut_coef_index(m, i / kLutTileRows, j, 0, int(i % kLutTileRows));
  if (m.dq_bits == 0) {
    for (int p = 0; p <= m.rank; ++p) out[p] = m.coef_f32[at + p * kLutTileRows];
    return;
  }
  const int64_t blk = (i * m.groups_per_row + j) / m.dq_group;
  for (int p = 0; p <= m.rank; ++p) {
    const float scaled = m.blk_scale[p * m.n_blocks + blk] * float(m.coef_codes[at + p * kLutTileRows]);
    out[p] = m.blk_offset[p * m.n_blocks + blk] + scaled;
  }
}

// The sum of a group's activations as both table builders form it: 16 lane sums (lane l adds
// columns l, l + 16, ... of the group in order), then the lanes in order.
inline float lut_lane_sum(const float* lanes) {
  float s = 0.f;
  for (int l = 0; l < kLutChunkCols; ++l) s += lanes[l];
  return s;
}

// The table step of one group and rank: every entry of the group's tables is at most
// umax * xm in magnitude (umax = max_k |U_k|, LutTables::umax), xm = max |x_a| + |x_b| over
// the group's column pairs (2 bits) or max |x_c| (3 and 4 bits), and centering puts both +-umax in
// U, so the bound is (up to rounding) the tables' largest entry. Writes d = bound / 127 and
// returns 1 / d (0 for a zero group). Taking it from x instead of from the entries lets the
// tables be built in one pass.
inline float lut_scale(float umax, float xm, float* d) {
  const float amax = umax * xm;
  *d = amax / 127.f;
  return amax > 0.f ? 127.f / amax : 0.f;
}

// An entry T / d (|T / d| <= 127 up to rounding) to int8: nearest even, saturated (as
// vcvtps2dq and the saturating packs).
inline int8_t lut_round(float v) { return int8_t(std::clamp(std::nearbyint(v), -128.f, 127.f)); }

// The look-up tables of one token. For chunk ch and rank r, table h (of nt = lut_chunk_tables())
// at t[((ch * rank + r) * nt + h) * 64], with entries lut_round(T / d), d = d[j * rank + r]
// from lut_scale() for the chunk's group j:
//  - 2 bits: table h serves column pairs 4h .. 4h + 3 of the chunk (columns 2p, 2p + 1 of
//    pair p); entry 16 * (p % 4) + n holds T / d = fma(U[n >> 2] / d, x_b, (U[n & 3] / d) * x_a).
//  - 3 bits: table h serves columns 8h .. 8h + 7; entry 8 * (c % 8) + n holds (U[n] / d) * x_c.
//  - 4 bits: table h serves columns 4h .. 4h + 3; entry 16 * (c % 4) + n holds (U[n] / d) * x_c.
// with U = u[r] and U / d computed as U * lut_scale()'s result. sumx[j] = lut_lane_sum() of
// group j, shift[j * rank + r] = mid[r] * sumx[j].
struct LutTables {
  std::vector<int8_t> t;
  std::vector<float> d, sumx, shift;
  std::vector<int32_t> sxq;  // level form: per group, the sum of its int8 activations
  std::vector<float> xpad;  // the token padded to chunks * 16 columns
  // V[r] centered: u[r][k] = V[r][k] - mid[r] with mid[r] = (max_k V[r][k] + min_k V[r][k]) / 2,
  // umax[r] = max_k |u[r][k]|. The tables hold sums of the centered V, which halves their range
  // where x_a and x_b share a sign (a rank-one grid 0..K-1 is all positive); the group's shift
  // mid * sum(x) is added back exactly.
  float u[4][16], mid[4], umax[4];
};

// Sizes the tables for one token, copies x (cols floats) into xpad and centers V.
void prepare_lut(const LutView& m, const float* x, LutTables& L);
// The level form's "tables" of one token (5-8 bits), one definition for the scalar reference
// and the SIMD kernel: t[c] = the int8 activations, xq_c = lut_round(x_c * 127 / xm_j) with
// xm_j the largest |x_c| of group j; sumx[j] = lut_lane_sum() of the group's x, and per rank
// d[j * rank + r] = (xm_j / 127) * level_step[r],
// shift[j * rank + r] = fma(level_mid[r], sumx[j], -128 * d * sum_c xq_c), so that the group's
// sum_c V[r][q_c] x_c ~ fma(d, acc_r, shift) with acc_r = sum_c levels[r][q_c] * xq_c, the
// same scale-back as the tables' (lut_rows_scalar()).
void build_levels(const LutView& m, const float* x, LutTables& L);
// Its SIMD form (same bytes and floats; false where the CPU has none), and the pieces both share:
// sizing the tables (with x copied into xpad) and group j's sumx, d and shift from the group's
// lane sums' total s, its largest |x| xm and the sum of its int8 activations sxq.
bool build_levels_simd(const LutView& m, LutTables& L);
void prepare_levels(const LutView& m, const float* x, LutTables& L);
inline void level_group_scales(const LutView& m, LutTables& L, int64_t j, float s, float xm, int32_t sxq) {
  L.sumx[size_t(j)] = s;
  L.sxq[size_t(j)] = sxq;
  for (int r = 0; r < m.rank; ++r) {
    const float d = (xm / 127.f) * m.level_step[r];
    L.d[size_t(j * m.rank + r)] = d;
    L.shift[size_t(j * m.rank + r)] = std::fma(m.level_mid[r], s, -128.f * d * float(sxq));
  }
}
// Fills the tables from L.xpad: the scalar definition and the SIMD version (returns false
// where there is none); both give the same bytes.
void build_lut_scalar(const LutView& m, LutTables& L);
bool build_lut_simd(const LutView& m, LutTables& L);

// Decoded parameter p of row i's group j (fma(scale, code, offset), or the f32 value).
float lut_param(const LutView& m, int64_t i, int64_t j, int p);

// y[i] for rows of tiles [tile0, tile1) (multiples of 4, rows past m.rows are not written):
// per group j, y = fma(S_r, fma(d_r, float(acc_r), shift_r), y) for r = 0.., then
// y = fma(B, -sumx, y), where acc_r is the exact int32 sum of the group's looked-up entries
// (level form: of levels[r][q_c] * t[c]).
void lut_rows_scalar(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1);
bool lut_rows_simd(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1);

// The AVX2 kernel of the shuffle layout (lut_codebook_avx2.cpp): whether this CPU runs it, and
// its table build and rows (false where it does not run, or for other layouts and widths).
bool lut_shuffle_available();
bool build_lut_shuffle(const LutView& m, LutTables& L);
bool lut_rows_shuffle(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1);
// The level form's AVX2 kernel (5-8 bits, the same layout as AVX-512's; false where it does not run).
bool lut_level_rows_avx2(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1);

// Rows [r0, r1) of the exact dequantized matrix ((r1 - r0) x m.cols floats; lut_dequantize_simd.cpp,
// every target, CodebookLayer::dequantize()'s values bit for bit).
void dequantize_lut_rows(const LutView& m, int64_t r0, int64_t r1, float* out);

}  // namespace lcq::kernels::detail
