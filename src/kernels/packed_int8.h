// Internal to lcq_kernels: the integer product path of PackedCodebookMatrix
// (docs/packed-format.md, "The integer path"). Activations become int8 per weight group,
// each group's codebook becomes 7-bit unsigned levels, and the product of a group is an
// exact int32 sum that is scaled back to float once per group:
//
//   sum_c C[q_c] x_c  ~=  d_w * d_x * sum_c u[q_c] xq_c  +  min_w * d_x * sum_c xq_c
//
// with C ~= min_w + d_w * u (u in [0, 127]) and x ~= d_x * xq (xq in [-127, 127]). 7-bit
// levels keep pmaddubsw's pairwise sums (at most 2 * 127 * 127) inside int16.
//
// The int8 activations are stored in the order the SIMD kernel extracts indices from a
// block of lane words, so one byte shift + AND of the packed indices lines up with a plain
// load of activations (no index shuffling in the inner loop).
#pragma once

#include "packed_internal.h"

#include <cstdint>
#include <vector>

namespace lcq::kernels::detail {

// Columns one full index block covers in the 2- and 4-bit integer order (3 bits: fmt3_runs).
inline int int8_block_cols(int format) { return format == kFmt2 ? 128 : format == kFmt4 ? 64 : 0; }

// Columns every group must be a multiple of, so that each run of activations belongs to one
// group: a whole 2- or 4-bit index block, half a 3-bit block; 0 when the format has no
// integer path (the byte format).
inline int int8_group_unit(int format) { return format == kFmt3 ? 128 : int8_block_cols(format); }

// Whether the integer path handles this matrix.
inline bool int8_applies(int format, int group) {
  const int unit = int8_group_unit(format);
  return unit > 0 && group % unit == 0;
}

// The 3-bit integer order. A 3-bit block (or tail) is read as runs of 32 activation bytes.
// Run r takes its indices from lane word `word` (0-2; -1: the spare bits, fields 30 and 31,
// which combine bits of all three words) and lies in half `half` of the block (fields 0-15
// or 16-31, so one group whenever groups are multiples of 128 columns). The run's 32 bytes
// are 4 quarters, quarter q reading the 64-bit word of lanes 2q and 2q + 1; slot s of every
// quarter holds field field[s] of lane 2q + odd[s] (field -1: padding, a zero activation).
// Each word's fields of one half are listed even lanes first, 8 slots per run, so a word of
// 10 fields gives runs of 8, 8 and 4 slots (docs/packed-format.md, "The integer path").
struct Fmt3Run {
  int word, half;
  int8_t field[8], odd[8];
};
// The runs of a full block (fields = 32) or of a tail of `fields` < 32 fields.
std::vector<Fmt3Run> fmt3_runs(int fields);
// Bit offset of slot s of run r inside its 64-bit word, for vpmultishiftqb (regular runs).
inline int fmt3_bit_offset(int field, int odd) { return 32 * odd + 3 * (field % 10); }

// Activation bytes per token: the full blocks, then the short tail's capacity.
int64_t int8_stride(int format, const RowShape& s);

// For every activation byte of one token (int8_stride of them), the column it holds, or -1
// for positions past the last column.
std::vector<int32_t> int8_columns(int format, int64_t cols);

// For every full index block of a row, its group; then the tail's group (one entry more).
// 3 bits: two entries per block (its halves), then the tail's two.
std::vector<int32_t> int8_block_groups(int format, int64_t cols, int group);

// Activations quantized for one product.
struct Int8Activations {
  int64_t n = 0, stride = 0, groups = 0;
  std::vector<int8_t> q;            // [n][stride], integer order
  std::vector<float> scale;         // [n][groups]: d_x
  std::vector<float> scaled_sum;    // [n][groups]: d_x * sum of the group's xq
};

// One token in column order, per group of `group` columns: scale[j] = d_x, q[c] = the int8
// activation, sum[j] = the group's sum of q (SIMD, dispatched; packed_int8_simd.cpp).
void quantize_token(const float* x, int64_t cols, int64_t group, float* scale, int8_t* q, int32_t* sum);

// Quantizes X ([n][cols], row-major) per token and weight group: d_x = max|x| / 127.
void quantize_activations(const MatrixView& m, const int32_t* columns, const float* X, int64_t n,
                          Int8Activations& a);

// The rank + 1 decoded parameters of group g (S_0 .. S_{rank-1}, B), as fused multiply-adds
// so that the scalar reference and the SIMD kernel get the same bits.
void group_params(const MatrixView& m, int64_t g, float* out);

// One group's codebook as 7-bit levels: C_k = -B + sum_r S_r V_r[k] (fused, r ascending),
// min = min_k C_k, d = (max - min) / 127, u_k = round((C_k - min) * 127 / (max - min)).
// Written out in scalar form; the SIMD kernel computes the same operations lane-wise.
struct GroupLevels {
  uint8_t u[16];
  float d, min;
};
GroupLevels group_levels(const MatrixView& m, const float* params);

// Scalar reference of the integer path for rows [row0, row1): Y[t * rows + i].
void gemm_rows_int8_scalar(const MatrixView& m, const Int8Activations& a, float* Y, int64_t row0, int64_t row1);
// The SIMD integer kernel; returns false (and computes nothing) when the dispatched target
// has none (int8_simd_available() in packed_codebook.h).
bool gemm_rows_int8_simd(const MatrixView& m, const Int8Activations& a, float* Y, int64_t row0, int64_t row1);

}  // namespace lcq::kernels::detail
