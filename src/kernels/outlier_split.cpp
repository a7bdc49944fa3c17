#include "outlier_split.h"

#include "lcq/kernels/vec.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <vector>

namespace lcq::kernels::detail {
namespace {

class OutlierSplitMatrix final : public Matrix {
 public:
  explicit OutlierSplitMatrix(std::shared_ptr<const Matrix> inner)
      : Matrix(inner->rows(), inner->cols()), inner_(std::move(inner)), columns_(size_t(cols())) {
    max_columns_ = std::clamp(kColumnBytes / (size_t(rows()) * sizeof(float)), size_t(1), size_t(kMaxColumns));
    kept_.reserve(max_columns_);  // pointers into it are published: it must never move
  }

  size_t nbytes() const override { return inner_->nbytes(); }
  const char* kernel_name() const override { return inner_->kernel_name(); }
  std::unique_ptr<CodebookLayer> codebook() const override { return inner_->codebook(); }
  int64_t work_units() const override { return inner_->work_units(); }
  int64_t row_of_unit(int64_t u) const override { return inner_->row_of_unit(u); }
  void dequantize_rows(int64_t r0, int64_t r1, float* out) const override { inner_->dequantize_rows(r0, r1, out); }
  void dequantize_column(int64_t c, float* out) const override { inner_->dequantize_column(c, out); }

  void gemv_units(const float* x, float* y, int64_t u0, int64_t u1) const override {
    if (u0 >= u1) return;
    const int64_t n = cols();
    float amax;  // one SIMD pass: most tokens of most layers have no input past the limit
    const float limit = kOutlierRatio * std::sqrt(square_sum_max_abs(x, n, &amax) / float(n));
    if (!(amax > limit)) return inner_->gemv_units(x, y, u0, u1);
    // Every input past the limit is split (up to kMaxOutliers), whatever came before: a column
    // beyond the kept ones is dequantized for this call. (Splitting only kept columns made the
    // result depend on the tokens seen before: once a matrix had kept its quota, a new massive
    // input went through the rounding, and a prompt run in chunks and run token by token
    // differed by 0.2 in the logits.)
    int64_t idx[kMaxOutliers];
    const float* col[kMaxOutliers];
    int count = 0, extra = 0;
    thread_local std::vector<float> scratch;  // the columns not kept, rows() floats each
    for (int64_t c = 0; c < n && count < kMaxOutliers; ++c) {
      if (!(std::fabs(x[c]) > limit)) continue;
      const float* p = column(c);
      if (!p) {
        scratch.resize(size_t(rows()) * kMaxOutliers);
        float* q = scratch.data() + size_t(rows()) * size_t(extra++);
        inner_->dequantize_column(c, q);
        p = q;
      }
      idx[count] = c, col[count++] = p;
    }
    thread_local std::vector<float> rest;
    rest.assign(x, x + n);
    for (int i = 0; i < count; ++i) rest[size_t(idx[i])] = 0.f;
    inner_->gemv_units(rest.data(), y, u0, u1);
    const int64_t r0 = row_of_unit(u0), r1 = row_of_unit(u1);
    for (int i = 0; i < count; ++i) axpy(x[idx[i]], col[i] + r0, y + r0, r1 - r0);
  }

 private:
  // Column c of W (dequantized on first use and kept), or nullptr once max_columns_ are kept.
  const float* column(int64_t c) const {
    if (const float* p = columns_[size_t(c)].load(std::memory_order_acquire)) return p;
    std::lock_guard<std::mutex> lock(mu_);
    if (const float* p = columns_[size_t(c)].load(std::memory_order_relaxed)) return p;
    if (kept_.size() >= max_columns_) return nullptr;
    std::vector<float> col(static_cast<size_t>(rows()));
    inner_->dequantize_column(c, col.data());  // only the column's indices (not the whole matrix)
    kept_.push_back(std::move(col));
    columns_[size_t(c)].store(kept_.back().data(), std::memory_order_release);
    return kept_.back().data();
  }

  std::shared_ptr<const Matrix> inner_;
  mutable std::vector<std::atomic<const float*>> columns_;
  size_t max_columns_;
  mutable std::vector<std::vector<float>> kept_;
  mutable std::mutex mu_;
};

}  // namespace

std::shared_ptr<const Matrix> split_outliers(std::shared_ptr<const Matrix> inner) {
  return std::make_shared<OutlierSplitMatrix>(std::move(inner));
}

}  // namespace lcq::kernels::detail
