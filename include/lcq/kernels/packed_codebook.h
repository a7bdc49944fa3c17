// PackedCodebookMatrix: an LCQ CodebookLayer in a SIMD-friendly packed form, with fast
// y = W_hat x (GEMV) and Y = X W_hat^T (GEMM) kernels. The layout is described in
// docs/packed-format.md. Indices stay at their bit width; per-group parameters keep the
// layer's own compact encoding (8-bit codes + fp16 block scales/offsets, or f32 when the
// layer has no double quantization), so loading never expands the matrix to floats.
//
// Threads: the kernels use OpenMP with omp_get_max_threads() threads (omp_set_num_threads
// governs them, as it governs libtorch's parallel backend).
#pragma once

#include "lcq/kernels/codebook_layer.h"
#include "lcq/kernels/packed_params.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace lcq::kernels {

// Which implementation runs the product. kAuto picks the SIMD kernel of the best target this
// CPU supports (or the scalar reference where the SIMD kernel does not apply, e.g. group
// sizes that are not a multiple of 8). kScalar and kSimd compute the float product of the
// dequantized weights. kInt8 is the integer kernel (activations rounded to int8 per group,
// each group's codebook to 7-bit levels; see docs/packed-format.md) and kInt8Scalar its
// scalar reference; both throw lcq::Error where they do not apply (int8_applies()).
enum class KernelPath { kAuto, kScalar, kSimd, kInt8, kInt8Scalar };

struct PreparedActivations;  // packed_codebook.cpp

class PackedCodebookMatrix {
 public:
  PackedCodebookMatrix() = default;
  PackedCodebookMatrix(PackedCodebookMatrix&&) noexcept = default;
  PackedCodebookMatrix& operator=(PackedCodebookMatrix&&) noexcept = default;

  // Validates the layer (lcq::Error on inconsistency) and packs it.
  static PackedCodebookMatrix pack(const CodebookLayer& layer);
  // The exact layer back (indices, codes, scales, V): pack(layer).unpack() == layer.
  CodebookLayer unpack() const;
  // A deep copy (the class is move-only because the index buffer is large).
  PackedCodebookMatrix clone() const { return PackedCodebookMatrix(*this); }

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  int bits() const { return bits_; }
  int group() const { return group_; }
  int rank() const { return rank_; }
  bool double_quantized() const { return dq_bits_ > 0; }
  // Bytes of everything the kernels read (indices, group parameters, block parameters, V).
  size_t nbytes() const;
  size_t index_bytes() const { return size_t(rows_ * row_bytes_); }
  double bits_per_weight() const { return 8.0 * double(nbytes()) / (double(rows_) * double(cols_)); }

  // y[rows] = W_hat x[cols].
  void gemv(const float* x, float* y, KernelPath path = KernelPath::kAuto) const;
  // Y[n][rows] = X[n][cols] W_hat^T, both row-major.
  void gemm(const float* X, int64_t n, float* Y, KernelPath path = KernelPath::kAuto) const;
  // y[r0, r1) of y = W_hat x for one token, on the calling thread (no OpenMP region): what a
  // caller that splits rows between threads itself runs on each. Other rows are not written.
  void gemv_rows(const float* x, float* y, int64_t r0, int64_t r1, KernelPath path = KernelPath::kAuto) const;
  // Row-major rows x cols floats, identical to CodebookLayer::dequantize().
  void dequantize(float* out) const;
  // Rows [r0, r1) of the same, (r1 - r0) x cols floats.
  void dequantize_rows(int64_t r0, int64_t r1, float* out) const;
  // Column c of the same (rows floats), reading only that column's indices.
  void dequantize_column(int64_t c, float* out) const;

  // Layout facts (used by the kernels and tests).
  int64_t row_bytes() const { return row_bytes_; }
  int64_t padded_cols() const { return padded_cols_; }
  int index_at(int64_t row, int64_t col) const;  // decodes one index from the packed bits
  // Whether KernelPath::kInt8Scalar applies (2-, 3- or 4-bit indices, groups of whole index
  // blocks: a multiple of 128 columns at 2 and 3 bits, of 64 at 4 bits); kInt8 also needs
  // int8_simd_available(bits()), and int8_simd_runs() says both.
  bool int8_applies() const { return !int8_col_.empty(); }
  bool int8_simd_runs() const;

 private:
  friend struct PackedAccess;
  PackedCodebookMatrix(const PackedCodebookMatrix&) = default;  // clone()
  int64_t rows_ = 0, cols_ = 0, padded_cols_ = 0, row_bytes_ = 0;
  int bits_ = 0, group_ = 0, rank_ = 0, format_ = 0;
  int64_t full_blocks_ = 0;  // full index blocks per row (see docs/packed-format.md)
  int tail_fields_ = 0;      // 8-column fields in the short tail block (0 = none)
  AlignedBytes idx_;         // rows * row_bytes_
  int dq_bits_ = 0, dq_group_ = 0;
  PackedGroupParams params_;  // per-group entries [rows][rank + 1][groups_per_row] (S rows, then B)
  std::vector<int32_t> int8_col_;  // integer path: column of each activation byte (empty: no path)
  std::vector<int32_t> int8_block_group_;  // integer path: group of each full index block (3 bits: of each
                                           // block half), then the tail's

  void run(const float* X, int64_t n, float* Y, KernelPath path) const;
  PreparedActivations prepare(const float* X, int64_t n, KernelPath path) const;
  void rows_kernel(const PreparedActivations& a, int64_t n, float* Y, int64_t r0, int64_t r1) const;
};

// SIMD targets of the kernels (Highway dynamic dispatch), for tests and benchmarks.
struct SimdTarget {
  int64_t id;        // Highway target bit
  const char* name;  // e.g. "AVX2"
};
// Targets compiled into lcq_kernels that this CPU can run, best first (includes the scalar
// fallback target).
std::vector<SimdTarget> available_simd_targets();
// Restricts dispatch to `id` (one of available_simd_targets()), or back to the best with 0.
// Not thread-safe: call it only while no kernel runs.
void force_simd_target(int64_t id);
// Name of the target dispatch currently selects.
const char* current_simd_target();
// Whether the dispatched target has the SIMD integer kernel (x86 with AVX2 or better), and
// the target the integer kernel dispatches to (it also builds AVX-512 VNNI, "AVX3_DL").
bool int8_simd_available();
// Whether it has one for `bits`-bit indices (3 bits: only AVX-512 VBMI, the AVX3_DL target).
bool int8_simd_available(int bits);
const char* int8_simd_target();

}  // namespace lcq::kernels
