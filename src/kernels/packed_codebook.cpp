// PackedCodebookMatrix: packing, unpacking, the scalar reference kernel and the threaded
// driver. The SIMD kernels live in packed_codebook_simd.cpp.
#include "lcq/kernels/packed_codebook.h"

#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "group_params.h"
#include "packed_int8.h"
#include "packed_internal.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace lcq::kernels {

void AlignedBytes::Free::operator()(void* p) const { std::free(p); }

AlignedBytes::AlignedBytes(size_t nbytes) : n_(nbytes) {
  const size_t rounded = std::max<size_t>(64, (nbytes + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, rounded);
  if (!p) fail("out of memory allocating {} bytes for packed weights", nbytes);
  std::memset(p, 0, rounded);
  p_.reset(static_cast<uint8_t*>(p));
}

AlignedBytes::AlignedBytes(const AlignedBytes& o) : AlignedBytes(o.n_) {
  if (n_ > 0) std::memcpy(p_.get(), o.p_.get(), n_);
}

AlignedBytes& AlignedBytes::operator=(const AlignedBytes& o) {
  if (this != &o) *this = AlignedBytes(o);
  return *this;
}

size_t PackedGroupParams::nbytes(int64_t n_groups, int rank) const {
  const size_t per_entry = coef_codes.empty() ? sizeof(float) : 1;
  return size_t(n_groups * (rank + 1)) * per_entry + (blk_scale.size() + blk_offset.size() + v.size()) * sizeof(uint16_t);
}

struct PackedAccess {
  static detail::MatrixView view(const PackedCodebookMatrix& m) {
    detail::MatrixView v{};
    v.rows = m.rows_;
    v.cols = m.cols_;
    v.padded_cols = m.padded_cols_;
    v.row_bytes = m.row_bytes_;
    v.full_blocks = m.full_blocks_;
    v.tail_fields = m.tail_fields_;
    v.format = m.format_;
    v.bits = m.bits_;
    v.levels = 1 << m.bits_;
    v.group = m.group_;
    v.rank = m.rank_;
    v.groups_per_row = (m.cols_ + m.group_ - 1) / m.group_;
    v.idx = m.idx_.get();
    v.dq_bits = m.dq_bits_;
    v.dq_group = m.dq_group_;
    detail::view_group_params(m.params_, m.rank_, m.dq_bits_, v);
    v.int8_col = m.int8_col_.empty() ? nullptr : m.int8_col_.data();
    v.int8_block_group = m.int8_block_group_.empty() ? nullptr : m.int8_block_group_.data();
    return v;
  }
};

namespace {

void encode_row(int format, int bits, const detail::RowShape& s, int64_t cols, const uint8_t* q, uint8_t* row) {
  detail::Piece pieces[2];
  for (int64_t c = 0; c < cols; ++c) {
    const int np = detail::locate_pieces(format, bits, s, c, pieces);
    for (int k = 0; k < np; ++k) {
      const detail::Piece& p = pieces[k];
      uint32_t w = detail::load_word(row + p.offset, p.word_bits);
      w |= ((uint32_t(q[c]) >> p.value_shift) & ((1u << p.nbits) - 1)) << p.shift;
      detail::store_word(row + p.offset, p.word_bits, w);
    }
  }
}

detail::RowShape shape_of(const PackedCodebookMatrix& m, int format) { return detail::row_shape(format, m.cols()); }

}  // namespace

PackedCodebookMatrix PackedCodebookMatrix::pack(const CodebookLayer& layer) {
  layer.validate("packing codebook layer");
  PackedCodebookMatrix m;
  m.rows_ = layer.rows;
  m.cols_ = layer.cols;
  m.bits_ = layer.bits;
  m.group_ = layer.group;
  m.rank_ = layer.rank;
  m.format_ = detail::format_for_bits(layer.bits);
  const detail::RowShape s = detail::row_shape(m.format_, m.cols_);
  m.full_blocks_ = s.full_blocks;
  m.tail_fields_ = s.tail_fields;
  m.row_bytes_ = s.row_bytes;
  m.padded_cols_ = s.padded_cols;

  m.idx_ = AlignedBytes(size_t(m.rows_ * m.row_bytes_));
  for (int64_t i = 0; i < m.rows_; ++i)
    encode_row(m.format_, m.bits_, s, m.cols_, layer.indices.data() + i * m.cols_, m.idx_.get() + i * m.row_bytes_);

  // Group parameters, regrouped per row: [rows][rank + 1][groups_per_row], so that one
  // parameter of consecutive groups is contiguous (kernels build 8 groups' codebooks at once).
  const int64_t G = layer.n_groups(), gpr = layer.groups_per_row();
  const int np = m.rank_ + 1;
  auto at = [&](int64_t g, int p) { return size_t(detail::coef_position(g, p, gpr, np)); };
  m.dq_bits_ = layer.dq_bits;
  m.dq_group_ = layer.dq_group;
  m.params_ = detail::pack_group_params(layer, size_t(G * np), at);
  if (detail::int8_applies(m.format_, m.group_)) {
    m.int8_col_ = detail::int8_columns(m.format_, m.cols_);
    m.int8_block_group_ = detail::int8_block_groups(m.format_, m.cols_, m.group_);
  }
  return m;
}

CodebookLayer PackedCodebookMatrix::unpack() const {
  CodebookLayer l = CodebookLayer::shaped(rows_, cols_, bits_, group_, rank_, dq_bits_, dq_group_);
  l.indices.resize(size_t(rows_ * cols_));
  const detail::RowShape s = shape_of(*this, format_);
  for (int64_t i = 0; i < rows_; ++i)
    detail::decode_row(format_, bits_, s, cols_, idx_.get() + i * row_bytes_, l.indices.data() + i * cols_);
  const int64_t gpr = l.groups_per_row();
  const int np = rank_ + 1;
  auto at = [&](int64_t g, int p) { return size_t(detail::coef_position(g, p, gpr, np)); };
  detail::unpack_group_params(params_, at, l);
  return l;
}

bool PackedCodebookMatrix::int8_simd_runs() const { return int8_applies() && int8_simd_available(bits_); }

size_t PackedCodebookMatrix::nbytes() const {
  return index_bytes() + params_.nbytes(rows_ * ((cols_ + group_ - 1) / group_), rank_);
}

int PackedCodebookMatrix::index_at(int64_t row, int64_t col) const {
  LCQ_CHECK(row >= 0 && row < rows_ && col >= 0 && col < cols_, "index_at({}, {}) outside a {}x{} matrix", row, col,
            rows_, cols_);
  uint8_t q = 0;
  const detail::RowShape s = shape_of(*this, format_);
  detail::Piece pieces[2];
  const int np = detail::locate_pieces(format_, bits_, s, col, pieces);
  const uint8_t* p = idx_.get() + row * row_bytes_;
  for (int k = 0; k < np; ++k)
    q |= uint8_t(((detail::load_word(p + pieces[k].offset, pieces[k].word_bits) >> pieces[k].shift) &
                  ((1u << pieces[k].nbits) - 1))
                 << pieces[k].value_shift);
  return q;
}

namespace detail {

void decode_row_fast(int format, int bits, const RowShape& s, int64_t cols, const uint8_t* row, uint8_t* q) {
  if (format == kFmtByte) {  // index c is byte c
    std::memcpy(q, row, size_t(cols));
    return;
  }
  const FormatInfo fi = format_info(format);
  const uint32_t mask = (1u << bits) - 1;
  uint8_t block[8 * 32];  // the columns of one block (at most 32 fields of 8)
  int64_t c0 = 0;
  for (int64_t b = 0; b <= s.full_blocks && c0 < cols; ++b) {
    const bool tail = b == s.full_blocks;
    const int fields = tail ? s.tail_fields : fi.block_fields;
    const uint8_t* base = row + b * fi.block_bytes;
    for (int l = 0; l < kLanes; ++l) {
      if (format != kFmt3) {  // formats 2 and 4: field f at bits [bits * f, bits * (f + 1)) of the lane word
        const uint32_t w = tail ? load_word(base + 2 * l, 16) : load_word(base + 4 * l, 32);
        for (int f = 0; f < fields; ++f) block[8 * f + l] = uint8_t((w >> (bits * f)) & mask);
        continue;
      }
      // Format 3: word k holds fields 10k .. 10k + 9; a full block's spare bits hold 30 and 31.
      uint32_t w[3] = {0, 0, 0};
      for (int k = 0; k < (fields + 9) / 10 && k < 3; ++k) w[k] = load_word(base + kWordBytes * k + 4 * l, 32);
      for (int f = 0; f < std::min(fields, 30); ++f) block[8 * f + l] = uint8_t((w[f / 10] >> (3 * (f % 10))) & 7);
      if (fields == 32) {
        block[8 * 30 + l] = uint8_t(((w[0] >> 30) & 3) | (((w[1] >> 30) & 1) << 2));
        block[8 * 31 + l] = uint8_t(((w[1] >> 31) & 1) | (((w[2] >> 30) & 3) << 1));
      }
    }
    const int64_t n = std::min<int64_t>(cols - c0, 8 * fields);
    std::memcpy(q + c0, block, size_t(n));
    c0 += n;
  }
}

void decode_row(int format, int bits, const RowShape& s, int64_t cols, const uint8_t* row, uint8_t* q) {
  Piece pieces[2];
  for (int64_t c = 0; c < cols; ++c) {
    const int np = locate_pieces(format, bits, s, c, pieces);
    uint32_t v = 0;
    for (int k = 0; k < np; ++k) {
      const Piece& p = pieces[k];
      v |= ((load_word(row + p.offset, p.word_bits) >> p.shift) & ((1u << p.nbits) - 1)) << p.value_shift;
    }
    q[c] = uint8_t(v);
  }
}

void basis_tables(const MatrixView& m, int64_t block, int stride, float* E) {
  const int K = std::min(m.levels, stride), R = m.rank;
  float* e0 = E;
  for (int t = 0; t < K; ++t) e0[t] = 0.f;
  for (int r = 0; r <= R; ++r) {
    float* er = E + size_t(r + 1) * stride;
    const float sc = m.dq_bits > 0 ? m.blk_scale[r * m.n_blocks + block] : 1.f;
    const float off = m.dq_bits > 0 ? m.blk_offset[r * m.n_blocks + block] : 0.f;
    for (int t = 0; t < K; ++t) {
      const float vt = r < R ? m.v[r * m.levels + t] : -1.f;  // B enters with a minus sign
      er[t] = sc * vt;
      e0[t] += off * vt;
    }
  }
  for (int r = 0; r <= R + 1; ++r)  // repeat short tables across the stride
    for (int t = K; t < stride; ++t) E[size_t(r) * stride + t] = E[size_t(r) * stride + t - K];
}

namespace {

// C[g][t] exactly as CodebookLayer::codebook computes it.
void reference_codebook(const MatrixView& m, int64_t g, float* out) {
  const int K = m.levels;
  auto param = [&](int p) {
    if (m.dq_bits == 0) return m.coef_f32[coef_index(m, g, p)];
    const int64_t blk = g / m.dq_group;
    return m.blk_offset[p * m.n_blocks + blk] +
           m.blk_scale[p * m.n_blocks + blk] * float(m.coef_codes[coef_index(m, g, p)]);
  };
  const float b = param(m.rank);
  for (int t = 0; t < K; ++t) out[t] = -b;
  for (int r = 0; r < m.rank; ++r) {
    const float s = param(r);
    for (int t = 0; t < K; ++t) out[t] += s * m.v[r * K + t];
  }
}

}  // namespace

void gemm_rows_scalar(const MatrixView& m, const float* X, int64_t n, float* Y, int64_t row0, int64_t row1) {
  const RowShape s = row_shape(m.format, m.cols);
  std::vector<uint8_t> q(static_cast<size_t>(m.cols));
  std::vector<float> cb(static_cast<size_t>(m.levels));
  std::vector<float> acc(static_cast<size_t>(n));
  for (int64_t i = row0; i < row1; ++i) {
    decode_row(m.format, m.bits, s, m.cols, m.idx + i * m.row_bytes, q.data());
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int64_t j = 0; j < m.groups_per_row; ++j) {
      reference_codebook(m, i * m.groups_per_row + j, cb.data());
      const int64_t c0 = j * m.group, c1 = std::min(m.cols, c0 + m.group);
      for (int64_t t = 0; t < n; ++t) {
        const float* x = X + t * m.padded_cols;
        float sum = 0.f;
        for (int64_t c = c0; c < c1; ++c) sum += cb[q[size_t(c)]] * x[c];
        acc[size_t(t)] += sum;
      }
    }
    for (int64_t t = 0; t < n; ++t) Y[t * m.rows + i] = acc[size_t(t)];
  }
}

}  // namespace detail

void PackedCodebookMatrix::dequantize(float* out) const { dequantize_rows(0, rows_, out); }

void PackedCodebookMatrix::dequantize_rows(int64_t r0, int64_t r1, float* out) const {
  LCQ_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, "dequantize_rows({}, {}) outside a matrix of {} rows", r0, r1, rows_);
  const detail::MatrixView m = PackedAccess::view(*this);
  const detail::RowShape s = shape_of(*this, format_);
  std::vector<uint8_t> q(static_cast<size_t>(cols_));
  std::vector<float> cb(static_cast<size_t>(m.levels));
  for (int64_t i = r0; i < r1; ++i) {
    float* row = out + (i - r0) * cols_;
    detail::decode_row_fast(format_, bits_, s, cols_, idx_.get() + i * row_bytes_, q.data());
    for (int64_t j = 0; j < m.groups_per_row; ++j) {
      detail::reference_codebook(m, i * m.groups_per_row + j, cb.data());
      const int64_t c1 = std::min(cols_, (j + 1) * group_);
      for (int64_t c = j * group_; c < c1; ++c) row[c] = cb[q[size_t(c)]];
    }
  }
}

void PackedCodebookMatrix::dequantize_column(int64_t c, float* out) const {
  LCQ_CHECK(0 <= c && c < cols_, "dequantize_column({}) outside a matrix of {} columns", c, cols_);
  const detail::MatrixView m = PackedAccess::view(*this);
  std::vector<float> cb(static_cast<size_t>(m.levels));
  for (int64_t i = 0; i < rows_; ++i) {
    detail::reference_codebook(m, i * m.groups_per_row + c / group_, cb.data());
    out[i] = cb[size_t(index_at(i, c))];
  }
}

void PackedCodebookMatrix::gemv(const float* x, float* y, KernelPath path) const { run(x, 1, y, path); }

void PackedCodebookMatrix::gemm(const float* X, int64_t n, float* Y, KernelPath path) const { run(X, n, Y, path); }

namespace {

// Runs kernel(row0, row1) over [0, rows), split over threads. Rows are handed out in chunks
// so that a thread slowed by other load on the machine does not hold everyone back; small
// products stay on the calling thread.
template <class Kernel>
void for_row_chunks(int64_t rows, int64_t cols, int64_t n, Kernel kernel) {
  const int threads = omp_get_max_threads();
  const double work = double(rows) * double(cols) * double(n);
  if (threads <= 1 || work < 2.0e5 || rows < 16) {
    kernel(int64_t(0), rows);
    return;
  }
  const int64_t chunk = std::max<int64_t>(8, rows / (int64_t(threads) * 8));
  const int64_t nchunks = (rows + chunk - 1) / chunk;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t r0 = c * chunk;
    kernel(r0, std::min(rows, r0 + chunk));
  }
}

}  // namespace

// The activations as the chosen path reads them, in the calling thread's buffers: int8 per
// group (integer path), or zero-padded to whole 8-column fields (float path).
struct PreparedActivations {
  bool int8 = false, simd = false;
  const float* x = nullptr;                    // float path
  const detail::Int8Activations* q = nullptr;  // integer path
};

PreparedActivations PackedCodebookMatrix::prepare(const float* X, int64_t n, KernelPath path) const {
  LCQ_CHECK(rows_ > 0, "product with an empty packed matrix");
  const detail::MatrixView m = PackedAccess::view(*this);
  PreparedActivations a;
  if (path == KernelPath::kInt8 || path == KernelPath::kInt8Scalar) {
    LCQ_CHECK(int8_applies(), "no integer kernel for {}-bit indices in groups of {} (needs 2, 3 or 4 bits and groups "
              "of whole index blocks: a multiple of 128 columns at 2 and 3 bits, 64 at 4 bits)", bits_, group_);
    a.int8 = true;
    a.simd = path == KernelPath::kInt8;
    LCQ_CHECK(!a.simd || int8_simd_available(bits_), "no SIMD integer kernel for {}-bit indices on the {} target",
              bits_, int8_simd_target());
    thread_local detail::Int8Activations act;
    detail::quantize_activations(m, int8_col_.data(), X, n, act);
    a.q = &act;
    return a;
  }
  a.simd = path != KernelPath::kScalar && group_ % detail::kLanes == 0;
  LCQ_CHECK(a.simd || path != KernelPath::kSimd, "no SIMD kernel for group size {} (needs a multiple of 8)", group_);
  a.x = X;
  if (padded_cols_ != cols_) {  // the kernels read whole 8-column fields
    thread_local std::vector<float> padded;
    padded.assign(size_t(n * padded_cols_), 0.f);
    for (int64_t t = 0; t < n; ++t) std::copy(X + t * cols_, X + (t + 1) * cols_, padded.data() + t * padded_cols_);
    a.x = padded.data();
  }
  return a;
}

void PackedCodebookMatrix::rows_kernel(const PreparedActivations& a, int64_t n, float* Y, int64_t r0, int64_t r1) const {
  const detail::MatrixView m = PackedAccess::view(*this);
  if (!a.int8)
    (a.simd ? detail::gemm_rows_simd : detail::gemm_rows_scalar)(m, a.x, n, Y, r0, r1);
  else if (a.simd)
    detail::gemm_rows_int8_simd(m, *a.q, Y, r0, r1);
  else
    detail::gemm_rows_int8_scalar(m, *a.q, Y, r0, r1);
}

void PackedCodebookMatrix::gemv_rows(const float* x, float* y, int64_t r0, int64_t r1, KernelPath path) const {
  LCQ_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, "gemv_rows({}, {}) outside a matrix of {} rows", r0, r1, rows_);
  if (r0 < r1) rows_kernel(prepare(x, 1, path), 1, y, r0, r1);
}

void PackedCodebookMatrix::run(const float* X, int64_t n, float* Y, KernelPath path) const {
  if (n <= 0) {
    LCQ_CHECK(rows_ > 0, "product with an empty packed matrix");
    return;
  }
  // Prepared once, in the calling thread's buffers, which the workers read through `a`.
  const PreparedActivations a = prepare(X, n, path);
  for_row_chunks(rows_, cols_, n, [&](int64_t r0, int64_t r1) { rows_kernel(a, n, Y, r0, r1); });
}

}  // namespace lcq::kernels
