// LutCodebookMatrix: an LCQ codebook layer of 2 to 8 bits laid out for the look-up-table
// (LUT) kernel, docs/packed-format.md "The look-up-table path".
//
// In LCQ the codebook of group g is C_g = S_g^T V - B_g with V shared by the whole layer, so
//   sum_c C_g[q_c] x_c = sum_r S_g[r] * (sum_c V[r][q_c] x_c) - B_g * sum_c x_c.
// The inner sums need no per-row codebook, and S and B are applied once per group and row.
// At 2-4 bits they come from look-up tables: for every pair of columns the 16 values
// V[r][a] x_0 + V[r][b] x_1 (2 bits), for every column the 8 or 16 values V[r][a] x (3 and 4
// bits), tabulated once per token and looked up by every row, 64 bytes per instruction
// (AVX-512 VBMI vpermb), summed in int32 (VNNI vpdpbusd); on x86 CPUs without VBMI, 2- and
// 4-bit layers run an AVX2 form (vpshufb). The tables are rounded to int8 with one step per
// token, group and rank. At 5-8 bits a column's table would be as large as its group's
// weights, so the kernel looks up V itself instead ("levels"): V[r] rounded once per layer to
// 8-bit levels, the activations to int8 per token and group, and vpdpbusd multiplies the
// looked-up levels by the activations (AVX-512 VBMI/VNNI, and an AVX2 form).
//
// The indices are stored in tiles of 16 rows (4 tiles side by side per step of 64 rows), so
// this is a layout of its own, not PackedCodebookMatrix's; unpack() gives the exact layer
// back. It applies to layers of 2 to 8 bits with groups of a multiple of 16 columns and
// rank <= 4.
#pragma once

#include "lcq/kernels/codebook_layer.h"
#include "lcq/kernels/packed_params.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lcq::kernels {

// kAuto: the SIMD kernel where the CPU has it (lut_simd_available()), else the scalar
// reference. kScalar: always the reference. kSimd: the SIMD kernel or lcq::Error.
enum class LutPath { kAuto, kScalar, kSimd };

class LutCodebookMatrix {
 public:
  LutCodebookMatrix() = default;
  LutCodebookMatrix(LutCodebookMatrix&&) noexcept = default;
  LutCodebookMatrix& operator=(LutCodebookMatrix&&) noexcept = default;

  // Whether the layout holds this layer (2 to 8 bits, group % 16 == 0, rank 1..4).
  static bool applies(const CodebookLayer& layer);
  // Validates the layer and packs it; lcq::Error when it does not apply.
  static LutCodebookMatrix pack(const CodebookLayer& layer);
  // The exact layer back: pack(layer).unpack() == layer.
  CodebookLayer unpack() const;
  // A deep copy (the class is move-only because the index buffer is large).
  LutCodebookMatrix clone() const { return LutCodebookMatrix(*this); }

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int bits() const { return bits_; }
  int group() const { return group_; }
  int rank() const { return rank_; }
  // Bytes the kernel reads of the matrix: indices (rows padded to 64), codes (or f32
  // parameters), fp16 block scales and offsets, and V.
  size_t nbytes() const;
  double bits_per_weight() const { return 8.0 * double(nbytes()) / (double(rows_) * double(cols_)); }
  size_t index_bytes() const { return size_t(tiles_ * chunks_ * 2 * 16 * bits_); }  // exactly bits per index
  int index_at(int64_t row, int64_t col) const;

  // y[rows] = W_hat x[cols] (approximately: the look-up tables are int8).
  void gemv(const float* x, float* y, LutPath path = LutPath::kAuto) const;
  // Y[n][rows] = X[n][cols] W_hat^T, one token at a time: per token, the rows are split into
  // contiguous ranges of work units, one per OpenMP thread, each run by gemv_units().
  void gemm(const float* X, int64_t n, float* Y, LutPath path = LutPath::kAuto) const;
  // Rows [r0, r1) of the exact dequantized weights ((r1 - r0) x cols floats), as
  // CodebookLayer::dequantize() computes them.
  void dequantize_rows(int64_t r0, int64_t r1, float* out) const;
  // Column c of the exact dequantized weights (rows floats), reading only that column's indices.
  void dequantize_column(int64_t c, float* out) const;

  // For callers that split products between threads themselves (one parallel region per
  // token, not per product): the rows form work_units() independent units (steps of
  // kUnitRows = 64 rows, the last one padded), and gemv_units() computes y for the rows of
  // units [u0, u1) on the calling thread only (rows past rows() are not written), building its
  // own look-up tables in that thread's scratch. Any split of [0, work_units()) gives gemv()'s
  // y bit for bit.
  static constexpr int64_t kUnitRows = 64;
  int64_t work_units() const;
  void gemv_units(const float* x, float* y, int64_t u0, int64_t u1, LutPath path = LutPath::kAuto) const;

 private:
  friend struct LutAccess;
  LutCodebookMatrix(const LutCodebookMatrix&) = default;  // clone()
  bool simd_runs() const;               // whether this CPU has the SIMD kernel of the layout
  bool use_simd(LutPath path) const;    // whether `path` runs it (lcq::Error for kSimd without one)
  void make_levels();                   // levels_ from V (5-8 bits)
  int64_t rows_ = 0, cols_ = 0, tiles_ = 0, chunks_ = 0;
  int bits_ = 0, group_ = 0, rank_ = 0, dq_bits_ = 0, dq_group_ = 0;
  int layout_ = 0;                      // detail::LutLayout: the SIMD kernel's, chosen by pack()
  AlignedBytes idx_;                   // [tiles][chunks][32 * bits] (lut_internal.h)
  // Per-group entries [tiles / 4][groups_per_row][4][rank + 1][16]; decoded block arrays
  // padded by 32 floats.
  PackedGroupParams params_;
  // Level form (5-8 bits): V[r] as 8-bit levels, [rank][256], and each rank's mid and step.
  std::vector<uint8_t> levels_;
  float level_mid_[4] = {}, level_step_[4] = {};
};

// Whether this CPU runs the SIMD LUT kernel at every width (x86 with AVX-512 VBMI and VNNI).
bool lut_simd_available();
// Whether it runs a SIMD LUT kernel for `bits`-bit layers: the AVX-512 one (2-8 bits), or on
// x86 CPUs without it the AVX2 ones (2 and 4 bits, and the level form at 5-8 bits).
bool lut_simd_available(int bits);

}  // namespace lcq::kernels
