#include "lcq/kernels/codebook_layer.h"

#include "lcq/core/error.h"
#include "lcq/core/half.h"

#include <algorithm>
#include <cmath>

namespace lcq {

CodebookLayer CodebookLayer::shaped(int64_t rows, int64_t cols, int bits, int group, int rank, int dq_bits,
                                    int dq_group) {
  CodebookLayer l;
  l.rows = rows;
  l.cols = cols;
  l.bits = bits;
  l.group = int(std::min<int64_t>(group, cols));
  l.rank = rank;
  l.dq_bits = dq_bits;
  l.dq_group = dq_group;
  return l;
}

float CodebookLayer::s(int r, int64_t g) const {
  if (dq_bits == 0) return s_f32[size_t(r * n_groups() + g)];
  const int64_t blk = r * n_dq_blocks() + g / dq_group;
  return f16_to_f32(s_offset[size_t(blk)]) + f16_to_f32(s_scale[size_t(blk)]) * float(s_codes[size_t(r * n_groups() + g)]);
}

float CodebookLayer::b(int64_t g) const {
  if (dq_bits == 0) return b_f32[size_t(g)];
  const int64_t blk = g / dq_group;
  return f16_to_f32(b_offset[size_t(blk)]) + f16_to_f32(b_scale[size_t(blk)]) * float(b_codes[size_t(g)]);
}

float CodebookLayer::v_at(int r, int t) const { return f16_to_f32(v[size_t(r * levels() + t)]); }

void CodebookLayer::codebook(int64_t g, float* out) const {
  const int K = levels();
  const float bg = b(g);
  for (int t = 0; t < K; ++t) out[t] = -bg;
  for (int r = 0; r < rank; ++r) {
    const float sr = s(r, g);
    for (int t = 0; t < K; ++t) out[t] += sr * v_at(r, t);
  }
}

void CodebookLayer::dequantize(float* out) const {
  std::vector<float> cb(static_cast<size_t>(levels()));
  const int64_t gpr = groups_per_row();
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < gpr; ++j) {
      codebook(i * gpr + j, cb.data());
      const int64_t c0 = j * group, c1 = std::min(cols, c0 + group);
      for (int64_t c = c0; c < c1; ++c) out[i * cols + c] = cb[indices[size_t(i * cols + c)]];
    }
  }
}

double CodebookLayer::bits_per_weight() const {
  const double n = double(rows) * double(cols);
  double bits_total = double(bits) * n;
  const double params = double(rank + 1) * double(n_groups());
  if (dq_bits > 0) {
    bits_total += params * dq_bits;
    bits_total += double(rank + 1) * double(n_dq_blocks()) * 2 * 16;  // fp16 scale + offset
  } else {
    bits_total += params * 32;
  }
  bits_total += double(rank) * levels() * 16;  // V in fp16
  return bits_total / n;
}

void CodebookLayer::validate(const std::string& where) const {
  LCQ_CHECK(rows > 0 && cols > 0, "{}: invalid layer shape {}x{}", where, rows, cols);
  LCQ_CHECK(bits >= 1 && bits <= 8, "{}: invalid index bits {}", where, bits);
  LCQ_CHECK(group >= 1, "{}: invalid group size {}", where, group);
  LCQ_CHECK(rank >= 1 && rank <= 64, "{}: invalid codebook rank {}", where, rank);
  LCQ_CHECK(indices.size() == size_t(rows * cols), "{}: {} indices for a {}x{} layer", where, indices.size(), rows, cols);
  LCQ_CHECK(v.size() == size_t(rank * levels()), "{}: V has {} values, expected {}", where, v.size(), rank * levels());
  const size_t G = size_t(n_groups());
  if (dq_bits > 0) {
    LCQ_CHECK(dq_bits <= 8 && dq_group >= 1, "{}: invalid double quantization {} bits / {} groups", where, dq_bits, dq_group);
    const size_t nb = size_t(n_dq_blocks());
    LCQ_CHECK(s_codes.size() == rank * G && b_codes.size() == G && s_scale.size() == rank * nb &&
                  s_offset.size() == rank * nb && b_scale.size() == nb && b_offset.size() == nb,
              "{}: double-quantized codebook parameters have inconsistent sizes", where);
    const int max_code = (1 << dq_bits) - 1;
    for (uint8_t c : s_codes) LCQ_CHECK(c <= max_code, "{}: codebook code {} exceeds {} bits", where, c, dq_bits);
    for (uint8_t c : b_codes) LCQ_CHECK(c <= max_code, "{}: codebook code {} exceeds {} bits", where, c, dq_bits);
  } else {
    LCQ_CHECK(s_f32.size() == rank * G && b_f32.size() == G, "{}: codebook parameters have inconsistent sizes", where);
  }
  const int K = levels();
  for (uint8_t q : indices) LCQ_CHECK(q < K, "{}: index {} out of range for {} bits", where, q, bits);
  // Every stored value enters some group's codebook, so finite codebooks mean no NaN or
  // infinity in V, S, B or their scales, and no product of them that overflows (a file with
  // one would give NaN weights, and the LUT kernel's int8 rounding of NaN is undefined).
  // With double quantization every input is fp16 (|value| <= 65504) or a code <= 255, so an
  // entry -B + sum_r S_r V_r is below 65 * (65504 * 256) * 65504 ~ 7e13 in magnitude: finite
  // fp16 inputs are finite codebooks, and only then is the scan of every group (which also
  // names the first bad entry) skipped. The scan was most of a model's load time.
  auto finite_f16 = [](const std::vector<uint16_t>& h) {
    return std::all_of(h.begin(), h.end(), [](uint16_t x) { return (x & 0x7C00) != 0x7C00; });
  };
  if (dq_bits > 0 && finite_f16(v) && finite_f16(s_scale) && finite_f16(s_offset) && finite_f16(b_scale) &&
      finite_f16(b_offset))
    return;
  std::vector<float> cb(static_cast<size_t>(K));
  for (int64_t g = 0; g < int64_t(G); ++g) {
    codebook(g, cb.data());
    for (int t = 0; t < K; ++t)
      LCQ_CHECK(std::isfinite(cb[size_t(t)]), "{}: codebook entry {} of group {} is {} (V, S or B not finite, or too large)",
                where, t, g, cb[size_t(t)]);
  }
}

std::vector<uint8_t> CodebookLayer::pack_indices() const {
  const int64_t rb = packed_row_bytes();
  std::vector<uint8_t> out(size_t(rows * rb), 0);
  for (int64_t i = 0; i < rows; ++i) {
    uint8_t* row = out.data() + i * rb;
    for (int64_t c = 0; c < cols; ++c) {
      const uint32_t q = indices[size_t(i * cols + c)];
      const int64_t bit = c * bits;
      // An index straddles at most two bytes (bits <= 8).
      row[bit >> 3] |= uint8_t(q << (bit & 7));
      if ((bit & 7) + bits > 8) row[(bit >> 3) + 1] |= uint8_t(q >> (8 - (bit & 7)));
    }
  }
  return out;
}

void CodebookLayer::unpack_indices(const uint8_t* packed, size_t nbytes, const std::string& where) {
  const int64_t rb = packed_row_bytes();
  LCQ_CHECK(nbytes == size_t(rows * rb), "{}: packed indices have {} bytes, expected {}", where, nbytes, rows * rb);
  indices.assign(size_t(rows * cols), 0);
  const uint32_t mask = (1u << bits) - 1;
  for (int64_t i = 0; i < rows; ++i) {
    const uint8_t* row = packed + i * rb;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t bit = c * bits;
      uint32_t w = row[bit >> 3];
      if ((bit & 7) + bits > 8) w |= uint32_t(row[(bit >> 3) + 1]) << 8;
      indices[size_t(i * cols + c)] = uint8_t((w >> (bit & 7)) & mask);
    }
  }
}

}  // namespace lcq
