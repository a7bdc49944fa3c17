// LutCodebookMatrix: packing into 16-row tiles, unpacking, the scalar reference of the
// look-up-table kernel and the threaded driver. The SIMD kernel is lut_codebook_simd.cpp.
#include "lcq/kernels/lut_codebook.h"

#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "group_params.h"
#include "lut_internal.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace lcq::kernels {

struct LutAccess {
  static detail::LutView view(const LutCodebookMatrix& m) {
    detail::LutView v{};
    v.rows = m.rows_;
    v.cols = m.cols_;
    v.tiles = m.tiles_;
    v.chunks = m.chunks_;
    v.groups_per_row = (m.cols_ + m.group_ - 1) / m.group_;
    v.bits = m.bits_;
    v.group = m.group_;
    v.rank = m.rank_;
    v.dq_bits = m.dq_bits_;
    v.layout = m.layout_;
    v.dq_group = m.dq_group_;
    v.idx = m.idx_.get();
    detail::view_group_params(m.params_, m.rank_, m.dq_bits_, v);
    v.levels = m.levels_.data();
    v.level_mid = m.level_mid_;
    v.level_step = m.level_step_;
    return v;
  }
};

bool LutCodebookMatrix::applies(const CodebookLayer& l) {
  return l.bits >= 2 && l.bits <= 8 && l.group > 0 && l.group % detail::kLutChunkCols == 0 && l.rank >= 1 && l.rank <= 4;
}

LutCodebookMatrix LutCodebookMatrix::pack(const CodebookLayer& layer) {
  layer.validate("packing codebook layer for the LUT kernel");
  LCQ_CHECK(applies(layer),
            "the LUT kernel needs 2- to 8-bit indices, groups of a multiple of 16 columns and rank 1-4 "
            "(this layer: {} bits, group {}, rank {})",
            layer.bits, layer.group, layer.rank);
  LutCodebookMatrix m;
  m.rows_ = layer.rows;
  m.cols_ = layer.cols;
  m.bits_ = layer.bits;
  m.group_ = layer.group;
  m.rank_ = layer.rank;
  m.dq_bits_ = layer.dq_bits;
  m.dq_group_ = layer.dq_group;
  // The layout of the kernel this CPU runs: AVX-512 VBMI's, else AVX2's where it has one.
  const bool shuffle = !lut_simd_available() && (m.bits_ == 2 || m.bits_ == 4) && detail::lut_shuffle_available();
  m.layout_ = shuffle ? detail::kLutLayoutShuffle : detail::kLutLayoutPermute;
  const int64_t step_rows = int64_t(detail::kLutTileRows) * detail::kLutStepTiles;
  m.tiles_ = (m.rows_ + step_rows - 1) / step_rows * detail::kLutStepTiles;
  m.chunks_ = (m.cols_ + detail::kLutChunkCols - 1) / detail::kLutChunkCols;
  m.idx_ = AlignedBytes(m.index_bytes());
  const bool levels = detail::lut_levels(m.bits_);
  for (int64_t i = 0; i < m.rows_; ++i) {
    const uint8_t* row = layer.indices.data() + i * m.cols_;
    if (levels) {  // a chunk at a time (placing each index on its own was most of the time)
      const int p0 = 4 * int(i % detail::kLutTileRows);
      for (int64_t ch = 0; ch < m.chunks_; ++ch) {
        uint8_t* chunk = m.idx_.get() + ((i / detail::kLutTileRows) * m.chunks_ + ch) * detail::lut_chunk_bytes(m.bits_);
        const int64_t c0 = ch * detail::kLutChunkCols, n = std::min<int64_t>(detail::kLutChunkCols, m.cols_ - c0);
        for (int cc = 0; cc < n; ++cc) detail::lut_level_put_at(chunk, m.bits_, cc / 4, p0 + cc % 4, row[c0 + cc]);
      }
      continue;
    }
    for (int64_t c = 0; c < m.cols_; ++c)
      detail::lut_put(m.idx_.get(), m.bits_, detail::lut_bit(m.bits_, m.layout_, m.chunks_, i, c), row[c]);
  }
  const detail::LutView v = LutAccess::view(m);  // only the shape fields are valid yet
  const int64_t gpr = layer.groups_per_row();
  const int np = m.rank_ + 1;
  const size_t ncoef = size_t(m.tiles_ * gpr * np * detail::kLutTileRows);
  auto at = [&](int64_t g, int p) {
    const int64_t i = g / gpr;
    return size_t(detail::lut_coef_index(v, i / detail::kLutTileRows, g % gpr, p, int(i % detail::kLutTileRows)));
  };
  // 32 floats of padding: the kernel loads two vectors of block parameters from a tile's first block.
  m.params_ = detail::pack_group_params(layer, ncoef, at, /*pad=*/32);
  if (levels) m.make_levels();
  return m;
}

// V[r] to 8-bit levels: centered on its mid-range, one step per rank (max |V - mid| / 127), so
// the levels are 128 + round((V - mid) / step) in [1, 255], unsigned for vpdpbusd.
void LutCodebookMatrix::make_levels() {
  const int K = 1 << bits_;
  levels_.assign(size_t(rank_) * 256, 0);
  for (int r = 0; r < rank_; ++r) {
    const float* V = params_.v_f.data() + size_t(r * K);
    const auto [lo, hi] = std::minmax_element(V, V + K);
    const float mid = 0.5f * (*lo + *hi);
    float amax = 0.f;
    for (int k = 0; k < K; ++k) amax = std::max(amax, std::fabs(V[k] - mid));
    level_mid_[r] = mid;
    level_step_[r] = amax / 127.f;
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    for (int k = 0; k < K; ++k)
      levels_[size_t(r * 256 + k)] = uint8_t(128 + std::clamp(std::nearbyint((V[k] - mid) * inv), -127.f, 127.f));
  }
}

int LutCodebookMatrix::index_at(int64_t row, int64_t col) const {
  if (detail::lut_levels(bits_)) return detail::lut_level_get(idx_.get(), chunks_, bits_, row, col);
  return detail::lut_get(idx_.get(), bits_, detail::lut_bit(bits_, layout_, chunks_, row, col));
}

CodebookLayer LutCodebookMatrix::unpack() const {
  CodebookLayer l = CodebookLayer::shaped(rows_, cols_, bits_, group_, rank_, dq_bits_, dq_group_);
  l.indices.resize(size_t(rows_ * cols_));
  for (int64_t i = 0; i < rows_; ++i)
    for (int64_t c = 0; c < cols_; ++c) l.indices[size_t(i * cols_ + c)] = uint8_t(index_at(i, c));
  const detail::LutView v = LutAccess::view(*this);
  const int64_t gpr = l.groups_per_row();
  auto at = [&](int64_t g, int p) {
    const int64_t i = g / gpr;
    return size_t(detail::lut_coef_index(v, i / detail::kLutTileRows, g % gpr, p, int(i % detail::kLutTileRows)));
  };
  detail::unpack_group_params(params_, at, l);
  return l;
}

size_t LutCodebookMatrix::nbytes() const {
  return index_bytes() + params_.nbytes(rows_ * ((cols_ + group_ - 1) / group_), rank_);
}

namespace detail {

float lut_param(const LutView& m, int64_t i, int64_t j, int p) {
  const int64_t at = lut_coef_index(m, i / kLutTileRows, j, p, int(i % kLutTileRows));
  if (m.dq_bits == 0) return m.coef_f32[at];
  const int64_t blk = (i * m.groups_per_row + j) / m.dq_group;
  return std::fma(m.blk_scale[p * m.n_blocks + blk], float(m.coef_codes[at]), m.blk_offset[p * m.n_blocks + blk]);
}

void prepare_lut(const LutView& m, const float* x, LutTables& L) {
  L.xpad.assign(size_t(m.chunks * kLutChunkCols), 0.f);
  std::copy(x, x + m.cols, L.xpad.begin());
  L.t.resize(size_t(m.chunks * m.rank * lut_chunk_tables(m.bits) * kLutTableBytes));
  L.d.resize(size_t(m.groups_per_row * m.rank));
  L.sumx.resize(size_t(m.groups_per_row));
  L.shift.resize(size_t(m.groups_per_row * m.rank));
  const int K = 1 << m.bits;
  for (int r = 0; r < m.rank; ++r) {
    const float* V = m.v + K * r;
    const auto [lo, hi] = std::minmax_element(V, V + K);
    L.mid[r] = 0.5f * (*lo + *hi);
    L.umax[r] = 0.f;
    for (int k = 0; k < K; ++k) {
      L.u[r][k] = V[k] - L.mid[r];
      L.umax[r] = std::max(L.umax[r], std::fabs(L.u[r][k]));
    }
  }
}

void prepare_levels(const LutView& m, const float* x, LutTables& L) {
  L.xpad.resize(size_t(m.chunks * kLutChunkCols));
  std::copy(x, x + m.cols, L.xpad.begin());
  std::fill(L.xpad.begin() + m.cols, L.xpad.end(), 0.f);
  L.t.resize(size_t(m.chunks * kLutChunkCols));
  L.d.resize(size_t(m.groups_per_row * m.rank));
  L.sumx.resize(size_t(m.groups_per_row));
  L.sxq.resize(size_t(m.groups_per_row));
  L.shift.resize(size_t(m.groups_per_row * m.rank));
}

void build_levels(const LutView& m, const float* x, LutTables& L) {
  const int64_t cpg = m.group / kLutChunkCols;
  prepare_levels(m, x, L);
  const float* xp = L.xpad.data();
  for (int64_t j = 0; j < m.groups_per_row; ++j) {
    const int64_t c0 = j * cpg * kLutChunkCols, c1 = std::min(m.chunks, (j + 1) * cpg) * kLutChunkCols;
    float lanes[kLutChunkCols] = {}, xm = 0.f;
    for (int64_t c = c0; c < c1; ++c) {
      lanes[c % kLutChunkCols] += xp[c];
      xm = std::max(xm, std::fabs(xp[c]));
    }
    const float inv = xm > 0.f ? 127.f / xm : 0.f;
    int32_t sxq = 0;
    for (int64_t c = c0; c < c1; ++c) {
      const int8_t q = lut_round(xp[c] * inv);
      L.t[size_t(c)] = q;
      sxq += q;
    }
    level_group_scales(m, L, j, lut_lane_sum(lanes), xm, sxq);
  }
}

void build_lut_scalar(const LutView& m, LutTables& L) {
  const int64_t cpg = m.group / kLutChunkCols;
  const int nt = lut_chunk_tables(m.bits);
  const float* x = L.xpad.data();
  for (int64_t j = 0; j < m.groups_per_row; ++j) {
    const int64_t ch0 = j * cpg, ch1 = std::min(m.chunks, ch0 + cpg);
    float lanes[kLutChunkCols] = {}, xm = 0.f;
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const float* xc = x + ch * kLutChunkCols;
      for (int l = 0; l < kLutChunkCols; ++l) {
        lanes[l] += xc[l];
        xm = std::max(xm, m.bits == 2 ? std::fabs(xc[l & ~1]) + std::fabs(xc[l | 1]) : std::fabs(xc[l]));
      }
    }
    const float s = lut_lane_sum(lanes);
    L.sumx[size_t(j)] = s;
    for (int r = 0; r < m.rank; ++r) {
      const float* U = L.u[r];
      L.shift[size_t(j * m.rank + r)] = L.mid[r] * s;
      const float inv = lut_scale(L.umax[r], xm, &L.d[size_t(j * m.rank + r)]);
      for (int64_t ch = ch0; ch < ch1; ++ch)
        for (int h = 0; h < nt; ++h)
          for (int e = 0; e < kLutTableBytes; ++e) {
            const float* xc = x + ch * kLutChunkCols;
            float v;
            if (m.bits == 2) {  // entry 16p + n: pair 4h + p, indices n & 3 and n >> 2
              const int p = e / 16, n = e % 16;
              v = std::fma(U[n >> 2] * inv, xc[8 * h + 2 * p + 1], (U[n & 3] * inv) * xc[8 * h + 2 * p]);
            } else if (m.bits == 3) {  // entry 8c + n: column 8h + c, index n
              v = (U[e % 8] * inv) * xc[8 * h + e / 8];
            } else {  // entry 16c + n: column 4h + c, index n
              v = (U[e % 16] * inv) * xc[4 * h + e / 16];
            }
            L.t[size_t(((ch * m.rank + r) * nt + h) * kLutTableBytes + e)] = lut_round(v);
          }
    }
  }
}

void lut_rows_scalar(const LutView& m, const LutTables& L, float* y, int64_t tile0, int64_t tile1) {
  const int64_t cpg = m.group / kLutChunkCols;
  const int nt = lut_chunk_tables(m.bits);
  const bool levels = lut_levels(m.bits);
  for (int64_t i = tile0 * kLutTileRows; i < std::min(m.rows, tile1 * kLutTileRows); ++i) {
    float acc_y = 0.f;
    for (int64_t j = 0; j < m.groups_per_row; ++j) {
      int32_t acc[4] = {};
      for (int64_t ch = j * cpg; ch < std::min(m.chunks, (j + 1) * cpg); ++ch)
        for (int cc = 0; cc < kLutChunkCols; ++cc) {
          if (levels) {  // the row's level times the token's int8 activation
            const int64_t c = ch * kLutChunkCols + cc;
            const int q = lut_level_get(m.idx, m.chunks, m.bits, i, c);
            for (int r = 0; r < m.rank; ++r) acc[r] += int32_t(m.levels[r * 256 + q]) * int32_t(L.t[size_t(c)]);
            continue;
          }
          // Table h of the chunk and the entry column cc looks up:
          // 2 bits: pair cc / 2 (even cc only) of table cc / 8, entry 16 * (pair % 4) + both indices;
          // 3 bits: table cc / 8, entry 8 * (cc % 8) + the index; 4 bits: table cc / 4, entry 16 * (cc % 4) + the index.
          const int64_t c = ch * kLutChunkCols + cc;
          int h, entry;
          if (m.bits == 2) {
            if (cc % 2) continue;
            h = cc / 8;
            entry = 16 * ((cc % 8) / 2) + lut_get(m.idx, 2, lut_bit(2, m.layout, m.chunks, i, c)) +
                    4 * lut_get(m.idx, 2, lut_bit(2, m.layout, m.chunks, i, c + 1));
          } else if (m.bits == 3) {
            h = cc / 8;
            entry = 8 * (cc % 8) + lut_get(m.idx, 3, lut_bit(3, m.layout, m.chunks, i, c));
          } else {
            h = cc / 4;
            entry = 16 * (cc % 4) + lut_get(m.idx, 4, lut_bit(4, m.layout, m.chunks, i, c));
          }
          for (int r = 0; r < m.rank; ++r)
            acc[r] += L.t[size_t(((ch * m.rank + r) * nt + h) * kLutTableBytes + entry)];
        }
      for (int r = 0; r < m.rank; ++r) {
        const size_t jr = size_t(j * m.rank + r);
        acc_y = std::fma(lut_param(m, i, j, r), std::fma(L.d[jr], float(acc[r]), L.shift[jr]), acc_y);
      }
      acc_y = std::fma(lut_param(m, i, j, m.rank), -L.sumx[size_t(j)], acc_y);
    }
    y[i] = acc_y;
  }
}

}  // namespace detail

void LutCodebookMatrix::gemv(const float* x, float* y, LutPath path) const { gemm(x, 1, y, path); }

bool LutCodebookMatrix::simd_runs() const {
  if (detail::lut_levels(bits_)) return lut_simd_available() || detail::lut_shuffle_available();
  return layout_ == detail::kLutLayoutShuffle ? detail::lut_shuffle_available() : lut_simd_available();
}

bool LutCodebookMatrix::use_simd(LutPath path) const {
  const bool simd = path != LutPath::kScalar && simd_runs();
  LCQ_CHECK(simd || path != LutPath::kSimd,
            "this CPU has no SIMD LUT kernel for this {}-bit layer (it needs AVX-512 VBMI and VNNI, or AVX2 at 2 and "
            "4-8 bits)",
            bits_);
  return simd;
}

bool lut_simd_available(int bits) {
  return bits >= 2 && bits <= 8 && (lut_simd_available() || (bits != 3 && detail::lut_shuffle_available()));
}

static_assert(LutCodebookMatrix::kUnitRows == detail::kLutTileRows * detail::kLutStepTiles);

int64_t LutCodebookMatrix::work_units() const { return tiles_ / detail::kLutStepTiles; }

// Every call builds the whole token's tables into the calling thread's own buffer: that costs
// a few microseconds at 4096 columns, less than splitting the build between threads, waiting
// for all of them and then reading the other threads' tables from their caches (measured in
// BENCHMARKS.md, issue 5, eighth round).
void LutCodebookMatrix::gemv_units(const float* x, float* y, int64_t u0, int64_t u1, LutPath path) const {
  LCQ_CHECK(0 <= u0 && u0 <= u1 && u1 <= work_units(), "LUT kernel: work units [{}, {}) outside [0, {})", u0, u1,
            work_units());
  const bool simd = use_simd(path);
  if (u0 == u1) return;
  const detail::LutView m = LutAccess::view(*this);
  const int64_t tile0 = u0 * detail::kLutStepTiles, tile1 = u1 * detail::kLutStepTiles;
  thread_local detail::LutTables L;  // the calling thread's (an OpenMP worker's own inside a region)
  if (detail::lut_levels(bits_)) {  // the activations' int8 form is the only per-token work
    if (!simd) detail::build_levels(m, x, L);
    else if (detail::prepare_levels(m, x, L), !detail::build_levels_simd(m, L)) detail::build_levels(m, x, L);
    if (!simd || !(detail::lut_rows_simd(m, L, y, tile0, tile1) || detail::lut_level_rows_avx2(m, L, y, tile0, tile1)))
      detail::lut_rows_scalar(m, L, y, tile0, tile1);
    return;
  }
  detail::prepare_lut(m, x, L);
  const bool shuffle = layout_ == detail::kLutLayoutShuffle;
  if (!simd || !(shuffle ? detail::build_lut_shuffle(m, L) : detail::build_lut_simd(m, L))) detail::build_lut_scalar(m, L);
  if (!simd || !(shuffle ? detail::lut_rows_shuffle(m, L, y, tile0, tile1) : detail::lut_rows_simd(m, L, y, tile0, tile1)))
    detail::lut_rows_scalar(m, L, y, tile0, tile1);
}

void LutCodebookMatrix::gemm(const float* X, int64_t n, float* Y, LutPath path) const {
  (void)use_simd(path);  // the error for kSimd comes before any thread starts
  // Small products stay on the calling thread (the same rule as PackedCodebookMatrix).
  const int threads = (rows_ * cols_ < 200000 || tiles_ <= detail::kLutStepTiles) ? 1 : omp_get_max_threads();
  const int64_t units = work_units();
  if (threads == 1) {
    for (int64_t t = 0; t < n; ++t) gemv_units(X + t * cols_, Y + t * rows_, 0, units, path);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t u0 = units * id / nt, u1 = units * (id + 1) / nt;
    for (int64_t t = 0; t < n; ++t) gemv_units(X + t * cols_, Y + t * rows_, u0, u1, path);
  }
}

void LutCodebookMatrix::dequantize_column(int64_t c, float* out) const {
  LCQ_CHECK(0 <= c && c < cols_, "dequantize_column({}) outside a matrix of {} columns", c, cols_);
  const detail::LutView m = LutAccess::view(*this);
  const int K = 1 << bits_;
  const int64_t j = c / group_;
  for (int64_t i = 0; i < rows_; ++i) {
    const int q = index_at(i, c);
    float prm[5] = {};
    detail::lut_exact_params(m, i, j, prm);
    float w = -prm[rank_];  // as dequantize_rows: -B, then + S_p * V_p in order
    for (int p = 0; p < rank_; ++p) w += prm[p] * params_.v_f[size_t(p * K + q)];
    out[i] = w;
  }
}

void LutCodebookMatrix::dequantize_rows(int64_t r0, int64_t r1, float* out) const {
  LCQ_CHECK(0 <= r0 && r0 <= r1 && r1 <= rows_, "dequantize_rows({}, {}) outside a matrix of {} rows", r0, r1, rows_);
  detail::dequantize_lut_rows(LutAccess::view(*this), r0, r1, out);
}

}  // namespace lcq::kernels
