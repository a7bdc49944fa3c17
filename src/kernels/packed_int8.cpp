// The integer product path of PackedCodebookMatrix: the integer activation order,
// activation quantization, per-group 7-bit levels and the scalar reference. The SIMD kernel
// is packed_int8_simd.cpp. See packed_int8.h for the arithmetic.
#include "packed_int8.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace lcq::kernels::detail {

namespace {

constexpr int kBlockBytes = 32;  // a full block: 8 lane words of 4 bytes
constexpr int kTailBytes = 16;   // a short tail: 8 lane words of 2 bytes

int steps(int format) { return 8 / format; }  // indices per byte: 4 at 2 bits, 2 at 4 bits

}  // namespace

std::vector<Fmt3Run> fmt3_runs(int fields) {
  std::vector<Fmt3Run> out;
  const int regular = std::min(fields, 30);  // fields 30 and 31 live in the spare bits
  for (int w = 0; 10 * w < regular; ++w)
    for (int half = 0; half < 2; ++half) {
      std::vector<std::pair<int, int>> slots;  // (field, odd), even lanes first
      for (int odd = 0; odd < 2; ++odd)
        for (int f = 10 * w; f < std::min(10 * w + 10, regular); ++f)
          if (f / 16 == half) slots.emplace_back(f, odd);
      for (size_t i = 0; i < slots.size(); i += 8) {
        Fmt3Run r{w, half, {}, {}};
        for (size_t s = 0; s < 8; ++s) {
          const bool real = i + s < slots.size();
          r.field[s] = int8_t(real ? slots[i + s].first : -1);
          r.odd[s] = int8_t(real ? slots[i + s].second : 0);
        }
        out.push_back(r);
      }
    }
  if (fields == 32) out.push_back({-1, 1, {30, 31, 30, 31, -1, -1, -1, -1}, {0, 0, 1, 1, 0, 0, 0, 0}});
  return out;
}

namespace {
int64_t fmt3_run_count(int fields) {  // 0 for 0 fields
  static const std::vector<int64_t> counts = [] {
    std::vector<int64_t> c(33, 0);
    for (int f = 1; f <= 32; ++f) c[size_t(f)] = int64_t(fmt3_runs(f).size());
    return c;
  }();
  return counts[size_t(fields)];
}
}  // namespace

int64_t int8_stride(int format, const RowShape& s) {
  if (format == kFmt3) return kBlockBytes * (s.full_blocks * fmt3_run_count(32) + fmt3_run_count(s.tail_fields));
  return s.full_blocks * int8_block_cols(format) + (s.tail_fields > 0 ? kTailBytes * steps(format) : 0);
}

// Byte j of a block of `word_bytes`-byte lane words holds, in its k-th index slot, field
// steps * (j % word_bytes) + k of lane j / word_bytes (docs/packed-format.md, "Index
// layout"). The integer order keeps, for every block and slot k, the 32 (tail: 16)
// activations of those bytes in one run. Full blocks go in pairs whose runs interleave
// (slot k of block 2P, then of block 2P + 1), so that a 64-byte load covers both blocks of
// the pair; an odd last block and the tail list their runs slot after slot.
std::vector<int32_t> int8_columns(int format, int64_t cols) {
  const RowShape s = row_shape(format, cols);
  if (format == kFmt3) {
    std::vector<int32_t> out;
    out.reserve(size_t(int8_stride(format, s)));
    auto fill = [&](int64_t col0, int fields) {
      for (const Fmt3Run& r : fmt3_runs(fields))
        for (int j = 0; j < kBlockBytes; ++j) {
          const int f = r.field[j % 8];
          const int64_t col = col0 + 8 * f + 2 * (j / 8) + r.odd[j % 8];
          out.push_back(f >= 0 && col < cols ? int32_t(col) : -1);
        }
    };
    for (int64_t b = 0; b < s.full_blocks; ++b) fill(256 * b, 32);
    if (s.tail_fields > 0) fill(256 * s.full_blocks, s.tail_fields);
    return out;
  }
  const int S = steps(format), bc = int8_block_cols(format);
  std::vector<int32_t> out(size_t(int8_stride(format, s)), -1);
  auto fill = [&](int64_t pos0, int64_t run_stride, int64_t col0, int bytes, int word_bytes) {
    for (int k = 0; k < S; ++k)
      for (int j = 0; j < bytes; ++j) {
        const int64_t col = col0 + 8 * (S * (j % word_bytes) + k) + j / word_bytes;
        out[size_t(pos0 + k * run_stride + j)] = col < cols ? int32_t(col) : -1;
      }
  };
  const int64_t paired = s.full_blocks / 2 * 2;
  for (int64_t b = 0; b < paired; ++b) fill((b / 2) * 2 * bc + (b % 2) * kBlockBytes, 2 * kBlockBytes, b * bc, kBlockBytes, 4);
  if (paired < s.full_blocks) fill(paired * bc, kBlockBytes, paired * bc, kBlockBytes, 4);
  if (s.tail_fields > 0) fill(s.full_blocks * bc, kTailBytes, s.full_blocks * bc, kTailBytes, 2);
  return out;
}

std::vector<int32_t> int8_block_groups(int format, int64_t cols, int group) {
  const RowShape s = row_shape(format, cols);
  if (format == kFmt3) {  // per block half (128 columns), the tail's halves last
    const int64_t groups = (cols + group - 1) / group;
    std::vector<int32_t> out(size_t(2 * (s.full_blocks + 1)));
    for (size_t h = 0; h < out.size(); ++h) out[h] = int32_t(std::min(int64_t(h) * 128 / group, groups - 1));
    return out;
  }
  const int64_t bpg = group / int8_block_cols(format), groups = (cols + group - 1) / group;
  std::vector<int32_t> out(size_t(s.full_blocks + 1));
  for (int64_t b = 0; b < s.full_blocks; ++b) out[size_t(b)] = int32_t(b / bpg);
  out[size_t(s.full_blocks)] = int32_t(std::min(s.full_blocks / bpg, groups - 1));
  return out;
}

void quantize_activations(const MatrixView& m, const int32_t* columns, const float* X, int64_t n,
                          Int8Activations& a) {
  const int64_t gpr = m.groups_per_row;
  a.n = n;
  a.stride = int8_stride(m.format, row_shape(m.format, m.cols));
  a.groups = gpr;
  a.q.resize(size_t(n * a.stride));
  a.scale.resize(size_t(n * gpr));
  a.scaled_sum.resize(size_t(n * gpr));
  thread_local std::vector<int8_t> natural;  // one token's int8 activations in column order
  thread_local std::vector<int32_t> sum;
  natural.resize(size_t(m.cols));
  sum.resize(size_t(gpr));
  for (int64_t t = 0; t < n; ++t) {
    float* scale = a.scale.data() + t * gpr;
    quantize_token(X + t * m.cols, m.cols, m.group, scale, natural.data(), sum.data());
    int8_t* q = a.q.data() + t * a.stride;
    for (int64_t p = 0; p < a.stride; ++p) q[p] = columns[p] < 0 ? int8_t(0) : natural[size_t(columns[p])];
    for (int64_t j = 0; j < gpr; ++j) a.scaled_sum[size_t(t * gpr + j)] = scale[j] * float(sum[size_t(j)]);
  }
}

void group_params(const MatrixView& m, int64_t g, float* out) {
  const int np = m.rank + 1;
  if (m.dq_bits == 0) {
    for (int p = 0; p < np; ++p) out[p] = m.coef_f32[coef_index(m, g, p)];
    return;
  }
  const int64_t blk = g / m.dq_group;
  for (int p = 0; p < np; ++p)
    out[p] = std::fma(m.blk_scale[p * m.n_blocks + blk], float(m.coef_codes[coef_index(m, g, p)]),
                      m.blk_offset[p * m.n_blocks + blk]);
}

GroupLevels group_levels(const MatrixView& m, const float* params) {
  const int K = m.levels;
  float C[16] = {};
  for (int k = 0; k < K; ++k) C[k] = -params[m.rank];
  for (int r = 0; r < m.rank; ++r)
    for (int k = 0; k < K; ++k) C[k] = std::fma(params[r], m.v[r * K + k], C[k]);
  float lo = C[0], hi = C[0];
  for (int k = 1; k < K; ++k) {
    lo = std::min(lo, C[k]);
    hi = std::max(hi, C[k]);
  }
  const float range = hi - lo;
  const float inv = range > 0.f ? 127.f / range : 0.f;
  GroupLevels out{};
  out.d = range * (1.f / 127.f);
  out.min = lo;
  for (int k = 0; k < K; ++k) out.u[k] = uint8_t(std::clamp(std::nearbyint((C[k] - lo) * inv), 0.f, 127.f));
  return out;
}

void gemm_rows_int8_scalar(const MatrixView& m, const Int8Activations& a, float* Y, int64_t row0, int64_t row1) {
  const RowShape s = row_shape(m.format, m.cols);
  const int64_t gpr = m.groups_per_row;
  std::vector<uint8_t> q(static_cast<size_t>(m.cols));
  std::vector<GroupLevels> lv(static_cast<size_t>(gpr));
  std::vector<int32_t> isum(static_cast<size_t>(gpr));
  float params[16];
  for (int64_t i = row0; i < row1; ++i) {
    decode_row(m.format, m.bits, s, m.cols, m.idx + i * m.row_bytes, q.data());
    for (int64_t j = 0; j < gpr; ++j) {
      group_params(m, i * gpr + j, params);
      lv[size_t(j)] = group_levels(m, params);
    }
    for (int64_t t = 0; t < a.n; ++t) {
      const int8_t* xq = a.q.data() + t * a.stride;
      std::fill(isum.begin(), isum.end(), 0);
      for (int64_t p = 0; p < a.stride; ++p) {
        const int32_t c = m.int8_col[p];
        if (c < 0) continue;
        const int64_t j = c / m.group;
        isum[size_t(j)] += int32_t(lv[size_t(j)].u[q[size_t(c)]]) * int32_t(xq[p]);
      }
      float y = 0.f;
      for (int64_t j = 0; j < gpr; ++j)
        y += float(isum[size_t(j)]) * (lv[size_t(j)].d * a.scale[size_t(t * gpr + j)]) +
             lv[size_t(j)].min * a.scaled_sum[size_t(t * gpr + j)];
      Y[t * m.rows + i] = y;
    }
  }
}

}  // namespace lcq::kernels::detail
