// kernels::Matrix: one weight matrix W [rows x cols] as the runtime multiplies it, whatever
// holds it: a dense f32 / bf16 / fp16 array, or an LCQ codebook layer packed for one kernel
// family (float, int8 or LUT, docs/packed-format.md). The model layer sees only this
// interface; choose_family() is the one place that decides which family runs a quantized
// layer on this CPU.
//
// Threads: gemm() splits its work over omp_get_max_threads() threads itself. gemv_units()
// runs on the calling thread only, so that a caller already inside a parallel region (the
// decode path runs a whole token in one region) splits every product between its threads:
// each thread takes a range of work units.
#pragma once

#include "lcq/kernels/codebook_layer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lcq::kernels {

// The kernel families of packed LCQ layers.
//  kFloat: the float product of the dequantized weights (exact up to float summation order).
//  kInt8:  activations rounded to int8 per group, codebooks to 7-bit levels (2-4 bits).
//  kLut:   int8 look-up tables of activation sums shared by every row (2-4 bits), or 8-bit
//          levels of V times int8 activations (5-8 bits); AVX-512 VBMI/VNNI (AVX2: all but 3 bits).
enum class Family { kFloat, kInt8, kLut };

// What a user asks for (--kernel): a family, or kAuto, the fastest family this CPU runs for
// the layer whose results stay within the accuracy bounds the tests state.
enum class KernelChoice { kAuto, kFloat, kInt8, kLut };

// The accepted names of KernelChoice, in the order --help lists them, and the parser.
const std::vector<std::string>& kernel_choice_names();  // auto, float, int8, lut
KernelChoice parse_kernel_choice(const std::string& name);  // lcq::Error for other names
const char* family_name(Family f);                          // "float", "int8", "lut"

// The family that runs `layer` on this CPU for `choice`. A requested family that does not
// apply to the layer (its bits, group or rank) or has no SIMD kernel on this CPU falls back
// to the next best: lut -> int8 -> float.
Family choose_family(const CodebookLayer& layer, KernelChoice choice);

enum class DenseType { kF32, kBF16, kF16 };

class Matrix {
 public:
  virtual ~Matrix() = default;
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // Bytes the kernels read per product (indices, group parameters, V; or the dense array).
  virtual size_t nbytes() const = 0;
  double bits_per_weight() const { return 8.0 * double(nbytes()) / (double(rows_) * double(cols_)); }
  // e.g. "lut", "int8", "float" for packed layers; "f32", "bf16", "f16" for dense ones.
  virtual const char* kernel_name() const = 0;
  // The quantized layer it holds (exactly), or nullptr for a dense matrix.
  virtual std::unique_ptr<CodebookLayer> codebook() const = 0;

  // One token, split by the caller: y = W x for the rows of work units [u0, u1) of
  // [0, work_units()), on the calling thread. Rows outside those units are not written.
  virtual int64_t work_units() const = 0;
  virtual void gemv_units(const float* x, float* y, int64_t u0, int64_t u1) const = 0;
  // The first row of unit u (row_of_unit(work_units()) == rows()).
  virtual int64_t row_of_unit(int64_t u) const = 0;
  // Y[n][rows] = X[n][cols] W^T, threaded over omp_get_max_threads().
  virtual void gemm(const float* X, int64_t n, float* Y) const;
  // Rows [r0, r1) of W as floats, row-major: the weights the float family multiplies
  // (embedding lookups; panels for prefill through BLAS).
  virtual void dequantize_rows(int64_t r0, int64_t r1, float* out) const = 0;
  // Column c of W (rows floats), the same values as dequantize_rows() gives. The default reads
  // the whole matrix; packed layers read only the column's indices.
  virtual void dequantize_column(int64_t c, float* out) const;

 protected:
  Matrix(int64_t rows, int64_t cols) : rows_(rows), cols_(cols) {}

 private:
  int64_t rows_, cols_;
};

// A packed LCQ layer for `family` (which must apply: choose_family() gives one that does).
std::shared_ptr<const Matrix> make_codebook_matrix(const CodebookLayer& layer, Family family);
// A view of a dense row-major array (not owned: it must outlive the matrix).
std::shared_ptr<const Matrix> make_dense_matrix(const void* data, DenseType type, int64_t rows, int64_t cols);

}  // namespace lcq::kernels
