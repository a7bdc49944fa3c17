// What both packed layouts (PackedCodebookMatrix, LutCodebookMatrix) store besides their
// layout facts: the index bytes (AlignedBytes) and the codebook layer's group parameters
// (PackedGroupParams): each group's S and B as 8-bit codes (double quantization) or f32
// values, in the order of the layout's kernel; the double-quantization block scales and
// offsets as fp16 [rank + 1][n_dq_blocks] (the S rows, then B); V as fp16 [rank][2^bits];
// and decoded f32 copies of the fp16 arrays, so that kernels never convert them per call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace lcq::kernels {

// 64-byte aligned, zero-filled bytes (the packed indices, which SIMD loads read whole
// vectors of). Copies are deep.
class AlignedBytes {
 public:
  AlignedBytes() = default;
  explicit AlignedBytes(size_t nbytes);
  AlignedBytes(const AlignedBytes& o);
  AlignedBytes& operator=(const AlignedBytes& o);
  AlignedBytes(AlignedBytes&&) noexcept = default;
  AlignedBytes& operator=(AlignedBytes&&) noexcept = default;
  uint8_t* get() const { return p_.get(); }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<uint8_t[], Free> p_;
  size_t n_ = 0;
};

struct PackedGroupParams {
  std::vector<uint8_t> coef_codes;              // with double quantization
  std::vector<float> coef_f32;                  // without
  std::vector<uint16_t> blk_scale, blk_offset;  // fp16 [rank + 1][n_dq_blocks]
  std::vector<uint16_t> v;                      // fp16 [rank][2^bits]
  std::vector<float> blk_scale_f, blk_offset_f, v_f;  // decoded (block arrays padded as pack asked)

  // Second-level blocks per parameter row (0 without double quantization).
  int64_t n_blocks(int rank) const { return int64_t(blk_scale.size()) / (rank + 1); }
  // Bytes of the stored parameters of `n_groups` groups (the layout's padding not counted;
  // the decoded copies neither, they mirror the fp16 arrays).
  size_t nbytes(int64_t n_groups, int rank) const;
};

}  // namespace lcq::kernels
