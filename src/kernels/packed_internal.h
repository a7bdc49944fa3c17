// Internal to lcq_kernels: the packed index layout (docs/packed-format.md) and the flat view
// of a PackedCodebookMatrix that the scalar and SIMD kernels share.
#pragma once

#include <cstdint>
#include <cstring>

namespace lcq::kernels::detail {

// Index storage formats. Formats 2, 3 and 4 interleave 8 columns across the 8 32-bit lanes
// of a block word; kFmtByte keeps one byte per index in plain column order (bits 8, and the
// fallback for bit widths without a dedicated format).
enum Format : int { kFmt2 = 2, kFmt3 = 3, kFmt4 = 4, kFmtByte = 8 };

constexpr int kLanes = 8;             // columns per field: lane l holds column 8 * field + l
constexpr int kWordBytes = 4 * kLanes;  // one 32-bit word per lane

struct FormatInfo {
  int block_fields;     // 8-column fields per full block
  int block_bytes;      // bytes per full block
  int max_tail_fields;  // a row remainder up to this many fields uses the short tail block
};

inline FormatInfo format_info(int format) {
  switch (format) {
    case kFmt2: return {16, 32, 8};   // tail: 16-bit lane words
    case kFmt3: return {32, 96, 30};  // tail: up to 3 words of 10 fields
    case kFmt4: return {8, 32, 4};    // tail: 16-bit lane words
    default: return {1, 8, 0};        // byte format: a "block" is one 8-byte field
  }
}

inline int format_for_bits(int bits) { return bits == 2 ? kFmt2 : bits == 3 ? kFmt3 : bits == 4 ? kFmt4 : kFmtByte; }

struct RowShape {
  int64_t full_blocks = 0;
  int tail_fields = 0;  // fields in the tail block (0: no tail)
  int64_t row_bytes = 0;
  int64_t padded_cols = 0;  // 8 * (fields covered), x is zero-padded to this length
};

inline int tail_bytes(int format, int tail_fields) {
  if (tail_fields == 0) return 0;
  if (format == kFmt3) return kWordBytes * ((tail_fields + 9) / 10);
  return 2 * kLanes;  // 16-bit lane words
}

inline RowShape row_shape(int format, int64_t cols) {
  const FormatInfo fi = format_info(format);
  const int64_t fields = (cols + kLanes - 1) / kLanes;
  RowShape s;
  s.full_blocks = fields / fi.block_fields;
  s.tail_fields = int(fields % fi.block_fields);
  if (s.tail_fields > fi.max_tail_fields) {  // too long for the tail form: a padded full block
    s.full_blocks += 1;
    s.tail_fields = 0;
  }
  s.row_bytes = s.full_blocks * fi.block_bytes + tail_bytes(format, s.tail_fields);
  s.padded_cols = int64_t(kLanes) * (s.full_blocks * fi.block_fields + s.tail_fields);
  return s;
}

// One contiguous run of an index's bits: `nbits` bits at bit `shift` of the little-endian
// word of `word_bits` (16 or 32, or 8 for the byte format) at byte `offset` of the row; they
// are bits [value_shift, value_shift + nbits) of the index.
struct Piece {
  int64_t offset;
  int word_bits, shift, nbits, value_shift;
};

// The pieces holding column `col`'s index; returns how many (1 or 2).
inline int locate_pieces(int format, int bits, const RowShape& s, int64_t col, Piece* out) {
  if (format == kFmtByte) {
    out[0] = {col, 8, 0, bits, 0};
    return 1;
  }
  const FormatInfo fi = format_info(format);
  const int64_t field = col / kLanes;
  const int lane = int(col % kLanes);
  const int64_t block = field / fi.block_fields;
  const int f = int(field % fi.block_fields);
  const int64_t base = block * fi.block_bytes;
  const bool tail = block == s.full_blocks;
  if (format == kFmt2 || format == kFmt4) {
    if (tail) {
      out[0] = {base + 2 * lane, 16, bits * f, bits, 0};
    } else {
      out[0] = {base + 4 * lane, 32, bits * f, bits, 0};
    }
    return 1;
  }
  // kFmt3: word w holds fields 10w..10w+9 in bits [0, 30); in a full block the two spare
  // bits of each of the 3 words hold fields 30 and 31.
  if (f < 30) {
    out[0] = {base + int64_t(f / 10) * kWordBytes + 4 * lane, 32, 3 * (f % 10), 3, 0};
    return 1;
  }
  const int64_t w0 = base + 4 * lane, w1 = w0 + kWordBytes, w2 = w1 + kWordBytes;
  if (f == 30) {  // bits 0-1 in w0[30:31], bit 2 in w1[30]
    out[0] = {w0, 32, 30, 2, 0};
    out[1] = {w1, 32, 30, 1, 2};
  } else {  // bit 0 in w1[31], bits 1-2 in w2[30:31]
    out[0] = {w1, 32, 31, 1, 0};
    out[1] = {w2, 32, 30, 2, 1};
  }
  return 2;
}

inline uint32_t load_word(const uint8_t* p, int word_bits) {
  uint32_t w = 0;
  std::memcpy(&w, p, size_t(word_bits / 8));  // little-endian hosts only (x86, Arm)
  return w;
}

inline void store_word(uint8_t* p, int word_bits, uint32_t w) { std::memcpy(p, &w, size_t(word_bits / 8)); }

// Decodes the first `cols` indices of one packed row to bytes: the reference (one index at a
// time through locate_pieces, the rules pack() writes by) and the same a block at a time.
void decode_row(int format, int bits, const RowShape& s, int64_t cols, const uint8_t* row, uint8_t* q);
void decode_row_fast(int format, int bits, const RowShape& s, int64_t cols, const uint8_t* row, uint8_t* q);

// Everything a kernel reads, as plain pointers.
struct MatrixView {
  int64_t rows, cols, padded_cols, row_bytes, full_blocks;
  int tail_fields;
  int format, bits, levels, group, rank;
  int64_t groups_per_row;
  const uint8_t* idx;
  int dq_bits;
  int64_t dq_group, n_blocks;
  const uint8_t* coef_codes;  // [rows][rank + 1][gpr] (dq)
  const float* coef_f32;      // [rows][rank + 1][gpr] (no dq)
  const float* blk_scale;     // [rank + 1][n_blocks]
  const float* blk_offset;
  const float* v;  // [rank][levels]
  const int32_t* int8_col;          // integer path: column of each activation byte (packed_int8.h), or null
  const int32_t* int8_block_group;  // integer path: group of each full index block (3 bits: each half), then the tail's
};

// Position of parameter p (S_0 .. S_{rank-1}, then B) of group g in coef_codes / coef_f32:
// [rows][rank + 1][groups_per_row].
inline int64_t coef_position(int64_t g, int p, int64_t groups_per_row, int n_params) {
  const int64_t row = g / groups_per_row;
  return (row * n_params + p) * groups_per_row + (g - row * groups_per_row);
}
inline int64_t coef_index(const MatrixView& m, int64_t g, int p) {
  return coef_position(g, p, m.groups_per_row, m.rank + 1);
}

// The codebook of a group as a linear combination with its rank + 1 coefficients:
// C = E[0] + sum_p coef[p] * E[p + 1]. With double quantization coef are the raw codes and
// E[0] = sum_r off_r V_r - off_B, E[r + 1] = scale_r V_r, E[rank + 1] = -scale_B (block
// constants); without it coef are S and B, E[0] = 0, E[r + 1] = V_r, E[rank + 1] = -1.
// Writes (rank + 2) tables of `stride` floats; levels < stride repeat cyclically.
void basis_tables(const MatrixView& m, int64_t block, int stride, float* E);

// Scalar reference for rows [row0, row1): Y[t * rows + i] for tokens t < n; X is
// [n][padded_cols] with zero padding.
void gemm_rows_scalar(const MatrixView& m, const float* X, int64_t n, float* Y, int64_t row0, int64_t row1);
// The SIMD kernel of the dispatched target (requires group % 8 == 0).
void gemm_rows_simd(const MatrixView& m, const float* X, int64_t n, float* Y, int64_t row0, int64_t row1);

}  // namespace lcq::kernels::detail
