// kernels::Matrix: the dense and packed weight matrices behind one interface, and the choice
// of kernel family per layer and CPU.
#include "lcq/kernels/matrix.h"

#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/kernels/dense.h"
#include "lcq/kernels/lut_codebook.h"
#include "lcq/kernels/packed_codebook.h"
#include "outlier_split.h"

#include <omp.h>

#include <algorithm>

namespace lcq::kernels {

const std::vector<std::string>& kernel_choice_names() {
  static const std::vector<std::string> names = {"auto", "float", "int8", "lut"};
  return names;
}

KernelChoice parse_kernel_choice(const std::string& name) {
  const auto& names = kernel_choice_names();
  const auto it = std::find(names.begin(), names.end(), name);
  LCQ_CHECK(it != names.end(), "unknown kernel '{}' (expected {})", name, fmt::join(names, ", "));
  return KernelChoice(it - names.begin());
}

const char* family_name(Family f) {
  switch (f) {
    case Family::kFloat: return "float";
    case Family::kInt8: return "int8";
    case Family::kLut: return "lut";
  }
  return "?";
}

namespace {

bool int8_runs(const CodebookLayer& l) {
  // The integer path's conditions (PackedCodebookMatrix::int8_applies) without packing.
  const int unit = l.bits == 2 || l.bits == 3 ? 128 : l.bits == 4 ? 64 : 0;
  return unit > 0 && l.group % unit == 0 && int8_simd_available(l.bits);
}

bool lut_runs(const CodebookLayer& l) { return LutCodebookMatrix::applies(l) && lut_simd_available(l.bits); }

}  // namespace

Family choose_family(const CodebookLayer& layer, KernelChoice choice) {
  switch (choice) {
    case KernelChoice::kFloat: return Family::kFloat;
    case KernelChoice::kInt8: return int8_runs(layer) ? Family::kInt8 : Family::kFloat;
    case KernelChoice::kLut:
    case KernelChoice::kAuto:
      if (lut_runs(layer)) return Family::kLut;
      return int8_runs(layer) ? Family::kInt8 : Family::kFloat;
  }
  return Family::kFloat;
}

void Matrix::gemm(const float* X, int64_t n, float* Y) const {
  // One token after the other, each split over the threads by work units.
  const int64_t units = work_units();
  const int threads = double(rows()) * double(cols()) < 2.0e5 ? 1 : omp_get_max_threads();
  for (int64_t t = 0; t < n; ++t) {
    const float* x = X + t * cols();
    float* y = Y + t * rows();
    if (threads <= 1) {
      gemv_units(x, y, 0, units);
      continue;
    }
#pragma omp parallel num_threads(threads)
    {
      const int id = omp_get_thread_num(), nt = omp_get_num_threads();
      gemv_units(x, y, units * id / nt, units * (id + 1) / nt);
    }
  }
}

void Matrix::dequantize_column(int64_t c, float* out) const {
  LCQ_CHECK(0 <= c && c < cols(), "dequantize_column({}) outside a matrix of {} columns", c, cols());
  constexpr int64_t kRowsAtOnce = 64;
  std::vector<float> block(size_t(kRowsAtOnce * cols()));
  for (int64_t r0 = 0; r0 < rows(); r0 += kRowsAtOnce) {
    const int64_t r1 = std::min(rows(), r0 + kRowsAtOnce);
    dequantize_rows(r0, r1, block.data());
    for (int64_t r = r0; r < r1; ++r) out[r] = block[size_t((r - r0) * cols() + c)];
  }
}

namespace {

// Rows of the packed float and integer kernels are handed out in units of 8 (the float
// kernel reduces 8 rows at a time).
constexpr int64_t kPackedUnitRows = 8;

class PackedMatrix final : public Matrix {
 public:
  PackedMatrix(PackedCodebookMatrix m, KernelPath path)
      : Matrix(m.rows(), m.cols()), m_(std::move(m)), path_(path) {}
  size_t nbytes() const override { return m_.nbytes(); }
  const char* kernel_name() const override { return path_ == KernelPath::kInt8 ? "int8" : "float"; }
  std::unique_ptr<CodebookLayer> codebook() const override { return std::make_unique<CodebookLayer>(m_.unpack()); }
  int64_t work_units() const override { return (rows() + kPackedUnitRows - 1) / kPackedUnitRows; }
  int64_t row_of_unit(int64_t u) const override { return std::min(rows(), u * kPackedUnitRows); }
  void gemv_units(const float* x, float* y, int64_t u0, int64_t u1) const override {
    m_.gemv_rows(x, y, row_of_unit(u0), row_of_unit(u1), path_);
  }
  void gemm(const float* X, int64_t n, float* Y) const override { m_.gemm(X, n, Y, path_); }
  void dequantize_rows(int64_t r0, int64_t r1, float* out) const override { m_.dequantize_rows(r0, r1, out); }
  void dequantize_column(int64_t c, float* out) const override { m_.dequantize_column(c, out); }

 private:
  PackedCodebookMatrix m_;
  KernelPath path_;
};

class LutMatrix final : public Matrix {
 public:
  explicit LutMatrix(LutCodebookMatrix m) : Matrix(m.rows(), m.cols()), m_(std::move(m)) {}
  size_t nbytes() const override { return m_.nbytes(); }
  const char* kernel_name() const override { return "lut"; }
  std::unique_ptr<CodebookLayer> codebook() const override { return std::make_unique<CodebookLayer>(m_.unpack()); }
  int64_t work_units() const override { return m_.work_units(); }
  int64_t row_of_unit(int64_t u) const override { return std::min(rows(), u * LutCodebookMatrix::kUnitRows); }
  void gemv_units(const float* x, float* y, int64_t u0, int64_t u1) const override { m_.gemv_units(x, y, u0, u1); }
  void gemm(const float* X, int64_t n, float* Y) const override { m_.gemm(X, n, Y); }
  void dequantize_rows(int64_t r0, int64_t r1, float* out) const override { m_.dequantize_rows(r0, r1, out); }
  void dequantize_column(int64_t c, float* out) const override { m_.dequantize_column(c, out); }

 private:
  LutCodebookMatrix m_;
};

class DenseMatrix final : public Matrix {
 public:
  DenseMatrix(const void* data, DenseType type, int64_t rows, int64_t cols)
      : Matrix(rows, cols), data_(data), type_(type) {}
  size_t nbytes() const override { return size_t(rows() * cols()) * (type_ == DenseType::kF32 ? 4 : 2); }
  const char* kernel_name() const override {
    return type_ == DenseType::kF32 ? "f32" : type_ == DenseType::kBF16 ? "bf16" : "f16";
  }
  std::unique_ptr<CodebookLayer> codebook() const override { return nullptr; }
  int64_t work_units() const override { return (rows() + kUnitRows - 1) / kUnitRows; }
  int64_t row_of_unit(int64_t u) const override { return std::min(rows(), u * kUnitRows); }
  void gemv_units(const float* x, float* y, int64_t u0, int64_t u1) const override {
    const int64_t r0 = row_of_unit(u0), r1 = row_of_unit(u1);
    switch (type_) {
      case DenseType::kF32: return gemv_f32_rows(static_cast<const float*>(data_), cols(), x, y, r0, r1);
      case DenseType::kBF16: return gemv_bf16_rows(static_cast<const uint16_t*>(data_), cols(), x, y, r0, r1);
      case DenseType::kF16: return gemv_f16_rows(static_cast<const uint16_t*>(data_), cols(), x, y, r0, r1);
    }
  }
  void dequantize_rows(int64_t r0, int64_t r1, float* out) const override {
    LCQ_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows(), "dequantize_rows({}, {}) outside a matrix of {} rows", r0, r1,
              rows());
    const size_t n = size_t((r1 - r0) * cols());
    if (type_ == DenseType::kF32) {
      const float* w = static_cast<const float*>(data_) + r0 * cols();
      std::copy(w, w + n, out);
      return;
    }
    const uint16_t* w = static_cast<const uint16_t*>(data_) + r0 * cols();
    if (type_ == DenseType::kF16) return f16_to_f32_n(w, out, n);
    bf16_to_f32_n(w, out, n);
  }

 private:
  static constexpr int64_t kUnitRows = 16;
  const void* data_;
  DenseType type_;
};

}  // namespace

std::shared_ptr<const Matrix> make_codebook_matrix(const CodebookLayer& layer, Family family) {
  switch (family) {
    case Family::kLut: return detail::split_outliers(std::make_shared<LutMatrix>(LutCodebookMatrix::pack(layer)));
    case Family::kInt8: {
      PackedCodebookMatrix m = PackedCodebookMatrix::pack(layer);
      LCQ_CHECK(m.int8_simd_runs(), "the integer kernel does not run {}-bit layers in groups of {} on this CPU",
                layer.bits, layer.group);
      return detail::split_outliers(std::make_shared<PackedMatrix>(std::move(m), KernelPath::kInt8));
    }
    case Family::kFloat: break;
  }
  return std::make_shared<PackedMatrix>(PackedCodebookMatrix::pack(layer), KernelPath::kAuto);
}

std::shared_ptr<const Matrix> make_dense_matrix(const void* data, DenseType type, int64_t rows, int64_t cols) {
  LCQ_CHECK(data != nullptr && rows > 0 && cols > 0, "make_dense_matrix: empty matrix");
  return std::make_shared<DenseMatrix>(data, type, rows, cols);
}

}  // namespace lcq::kernels
