// Internal to lcq_kernels: the tile layout of LutCodebookMatrix and the flat view its scalar
// reference and SIMD kernel share (docs/packed-format.md, "The look-up-table path").
#pragma once

#include <cstdint>
#include <vector>

namespace lcq::kernels::detail {

constexpr int kLutTileRows = 16;    // rows per tile: one int32 lane of vpdpbusd each
constexpr int kLutStepTiles = 4;    // tiles interleaved per chunk (they share each table load)
constexpr int kLutChunkCols = 16;   // columns per 64-byte tile chunk
constexpr int kLutChunkBytes = 64;
constexpr int kLutTableBytes = 64;  // one table: 4 column pairs x 16 entries

struct LutView {
  int64_t rows, cols, tiles, chunks, groups_per_row;
  int group, rank, dq_bits;
  int64_t dq_group, n_blocks;
  const uint8_t* idx;
  const uint8_t* coef_codes;  // [tiles][gpr][rank + 1][16]
  const float* coef_f32;
  const float* blk_scale;     // [rank + 1][n_blocks] (+ 32 zero floats)
  const float* blk_offset;
  const float* v;             // [rank][4]
};

// Where row i, column c's 2-bit index is: byte ((quad * chunks + chunk) * 4 + tile % 4) * 64
// + 4 * (i % 16) + pair % 4, bits shift .. shift + 1. A byte's low nibble holds column pair
// p = 0..3 of its chunk (columns 2p, 2p + 1: bits 0-1, 2-3), its high nibble pair p + 4.
inline int64_t lut_byte(int64_t chunks, int64_t i, int64_t c, int* shift) {
  const int64_t tile = i / kLutTileRows, chunk = c / kLutChunkCols;
  const int cc = int(c % kLutChunkCols), half = cc / 8, pair = (cc % 8) / 2;
  *shift = 4 * half + 2 * (cc % 2);
  return (((tile / kLutStepTiles) * chunks + chunk) * kLutStepTiles + tile % kLutStepTiles) * kLutChunkBytes +
         4 * (i % kLutTileRows) + pair;
}

inline int64_t lut_coef_index(const LutView& m, int64_t tile, int64_t j, int p, int row_in_tile) {
  return ((tile * m.groups_per_row + j) * (m.rank + 1) + p) * kLutTileRows + row_in_tile;
}

// The look-up tables of one token. For chunk ch and rank r, table h (0: pairs 0-3, 1: pairs
// 4-7) at t[(ch * rank + r) * 128 + 64 * h]: entry 16 * p + n = round(T / d) with
// T = V[r][n & 3] * x_a + V[r][n >> 2] * x_b (x_a, x_b: the pair's columns; fused as
// fma(V[r][n >> 2], x_b, V[r][n & 3] * x_a)) and d = d[j * rank + r] = max |T| / 127 over
// group j's tables. sumx[j] = the sum of group j's activations.
struct LutTables {
  std::vector<int8_t> t;
  std::vector<float> d, sumx;
  std::vector<float> xpad;  // the token padded to chunks * 16 columns
};

// Sizes the tables for one token and copies x (cols floats) into xpad.
void prepare_lut(const LutView& m, const float* x, LutTables& L);
// Fills the tables of groups [j0, j1) from L.xpad: the scalar definition and the SIMD
// version (returns false where there is none); both give the same bytes. Threads may fill
// disjoint group ranges of one LutTables.
void build_lut_scalar(const LutView& m, LutTables& L, int64_t j0, int64_t j1);
bool build_lut_simd(const LutView& m, LutTables& L, int64_t j0, int64_t j1);

// Decoded parameter p of row i's group j (fma(scale, code, offset), or the f32 value).
float lut_param(const LutView& m, int64_t i, int64_t j, int p);

// y[i] for rows of tiles [tile0, tile1) (multiples of 4, rows past m.rows are not written):
// per group j, y = fma(S_r * d_r, float(acc_r), y) for r = 0.., then y = fma(B, -sumx, y),
// where acc_r is the exact int32 sum of the group's looked-up entries.
void lut_rows_scalar(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1);
bool lut_rows_simd(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1);

}  // namespace lcq::kernels::detail
