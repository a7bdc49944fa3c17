// The LCQ quantized form of one linear layer, exactly as the quantizer produces it and the
// model file stores it (docs/lcq-format.md). Every rank-one method (RTN, GPTQ, AWQ, ...) is
// also a CodebookLayer with rank 1 and V = [0, 1, ..., K-1].
//
// Weight W is rows x cols (out x in). Each row is cut into groups of `group` consecutive
// columns (the last one shorter when cols % group != 0). Groups are numbered row-major:
// g = row * groups_per_row() + j. Group g has K = 2^bits codebook values
//     C[g][t] = sum_r S[r][g] * V[r][t] - B[g]          (t = 0..K-1)
// and every weight of the group is C[g][index].
//
// Double quantization (dq_bits > 0): each parameter row (S[0..rank-1] and B, G values each)
// is cut into blocks of dq_group consecutive groups; block k stores an fp16 scale and fp16
// offset, and each value is offset + scale * code with an unsigned dq_bits-bit code.
// With dq_bits == 0 the parameters are stored as f32 (s_f32, b_f32).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lcq {

struct CodebookLayer {
  int64_t rows = 0, cols = 0;
  int bits = 0;   // index bits b, K = 2^b
  int group = 0;  // group size g (<= cols)
  int rank = 1;   // r

  std::vector<uint8_t> indices;  // rows * cols, one byte per weight, each < 2^bits

  int dq_bits = 0, dq_group = 64;
  std::vector<uint8_t> s_codes;                  // [rank][G]          (dq_bits > 0)
  std::vector<uint16_t> s_scale, s_offset;       // fp16 [rank][n_dq_blocks]
  std::vector<uint8_t> b_codes;                  // [G]
  std::vector<uint16_t> b_scale, b_offset;       // fp16 [n_dq_blocks]
  std::vector<float> s_f32, b_f32;               // [rank][G], [G]  (dq_bits == 0)
  std::vector<uint16_t> v;                       // fp16 [rank][K]

  // A layer with these parameters and no data (group capped at cols): what sizes are computed from.
  static CodebookLayer shaped(int64_t rows, int64_t cols, int bits, int group, int rank, int dq_bits, int dq_group);

  int levels() const { return 1 << bits; }
  int64_t groups_per_row() const { return (cols + group - 1) / group; }
  int64_t n_groups() const { return rows * groups_per_row(); }
  int64_t n_dq_blocks() const { return (n_groups() + dq_group - 1) / dq_group; }

  float s(int r, int64_t g) const;  // decoded S[r][g]
  float b(int64_t g) const;         // decoded B[g]
  float v_at(int r, int t) const;   // V[r][t] as float
  // C[g][0..K-1] into out.
  void codebook(int64_t g, float* out) const;
  // Full dequantized matrix, rows * cols floats, row-major (the reference semantics).
  void dequantize(float* out) const;

  // Exact storage in bits per weight: packed indices (b per weight) + codes + dq scales and
  // offsets (or f32 parameters) + V in fp16, divided by rows * cols.
  double bits_per_weight() const;
  // Throws lcq::Error (prefixed by `where`) if sizes or values are inconsistent or any
  // codebook entry is not finite.
  void validate(const std::string& where) const;

  // Dense b-bit packing of the indices as stored in files: each row starts on a byte
  // boundary, little-endian bit order within bytes (weight c of a row occupies bits
  // [c*b, (c+1)*b) of the row's bit string).
  int64_t packed_row_bytes() const { return (cols * bits + 7) / 8; }
  std::vector<uint8_t> pack_indices() const;
  void unpack_indices(const uint8_t* packed, size_t nbytes, const std::string& where);
};

}  // namespace lcq
