// LutCodebookMatrix's rows back to floats (dequantize_rows: the panels of prompt products,
// the embedding's rows): one row's indices looked up in its groups' codebooks, a 16-column
// chunk at a time, for every Highway target (one vector or two of 16, 8 or 4 lanes).
//
// The codebooks themselves (C_g = S_g^T V - B_g, K = 2^bits floats per group) are formed by
// the caller in lut_codebook.cpp, compiled without any target's FMA, so that their rounding is
// CodebookLayer::dequantize()'s and the rows here are its values bit for bit.
//
// A chunk row's indices in the permute layout at 2, 3 and 4 bits are bit fields of at most 4
// little-endian words (lut_internal.h, lut_bit()): lane c's index is
// (word[src(c)] >> shift(c)) & (K - 1), one lane permutation, one variable shift and one AND
// per vector. Other layouts (the shuffle layout of 2 and 4 bits, the level form of 5-8 bits)
// decode the 16 indices to bytes first. The look-up is a lane permutation of the codebook when
// it fits one vector (K <= lanes), two and a select when it fits two, else a gather.

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "lut_internal.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "../src/kernels/lut_dequantize_simd.cpp"  // relative to include/
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace lcq::kernels {
namespace HWY_NAMESPACE {
namespace {

namespace hn = hwy::HWY_NAMESPACE;
using detail::kLutChunkCols;

// Where lane c of a permute-layout chunk row finds its index: word src[c], bit shift[c].
struct WordFields {
  int32_t src[kLutChunkCols];
  uint32_t shift[kLutChunkCols];
};
// [0]: 2 bits; [1]: 4 bits; [2], [3]: 3 bits in even and odd rows of a tile.
struct WordFieldTable {
  WordFields f[4];
  WordFieldTable() : f{} {
    for (int c = 0; c < kLutChunkCols; ++c) {
      // 2 bits: byte (c % 8) / 2 of the row's word, the pair's nibble (high for c >= 8), bits 2 (c % 2).
      f[0].src[c] = 0, f[0].shift[c] = uint32_t(8 * ((c % 8) / 2) + 4 * (c / 8) + 2 * (c % 2));
      // 4 bits: quad k = c / 4 in word k / 2 (the chunk's 64-byte half), byte c % 4, nibble k % 2.
      f[1].src[c] = c / 8, f[1].shift[c] = uint32_t(8 * (c % 4) + 4 * ((c / 4) % 2));
      // 3 bits: quad k's 24-bit word, 3-bit field 4 (row % 2) + c % 4.
      for (int odd = 0; odd < 2; ++odd) f[2 + odd].src[c] = c / 4, f[2 + odd].shift[c] = uint32_t(3 * (4 * odd + c % 4));
    }
  }
};

// Row m's words of a permute-layout chunk at `base` (word[4] padded with zeros), and its fields.
const WordFields& ChunkWords(int bits, const uint8_t* base, int m, uint32_t* word) {
  static const WordFieldTable table;
  if (bits == 2) {
    std::memcpy(word, base + 4 * m, 4);
    return table.f[0];
  }
  if (bits == 4) {
    std::memcpy(word, base + 4 * m, 4);
    std::memcpy(word + 1, base + 64 + 4 * m, 4);
    return table.f[1];
  }
  for (int k = 0; k < 4; ++k) {  // 3 bytes each: the last chunk's last word ends the buffer
    const uint8_t* w = base + 24 * k + 3 * (m / 2);
    word[k] = uint32_t(w[0]) | uint32_t(w[1]) << 8 | uint32_t(w[2]) << 16;
  }
  return table.f[2 + m % 2];
}

// The 16 indices of row i in chunk ch as bytes, for the layouts ChunkWords() does not read.
void DecodeChunkBytes(const detail::LutView& m, int64_t i, int64_t ch, uint8_t* v) {
  using namespace detail;
  const int r = int(i % kLutTileRows);
  const uint8_t* base = m.idx + ((i / kLutTileRows) * m.chunks + ch) * lut_chunk_bytes(m.bits);
  if (lut_levels(m.bits)) {  // column 4k + j is position 4r + j of quad k
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 4; ++j) v[4 * k + j] = uint8_t(lut_level_get_at(base, m.bits, k, 4 * r + j));
    return;
  }
  for (int cc = 0; cc < kLutChunkCols; ++cc)
    v[cc] = uint8_t(lut_get(m.idx, m.bits, lut_bit(m.bits, m.layout, m.chunks, i, ch * kLutChunkCols + cc)));
}

// cb[idx] for the lanes of idx (indices < K; cb readable for K + 2 * lanes floats).
template <class DF, class VI>
HWY_INLINE hn::Vec<DF> LookUp(DF df, const float* cb, int K, VI idx) {
  const hn::RebindToSigned<DF> di;
  constexpr int32_t kN = int32_t(hn::MaxLanes(df));
  if (K <= kN) return hn::TableLookupLanes(hn::LoadU(df, cb), hn::IndicesFromVec(df, idx));
  if (K <= 2 * kN) {
    const auto low = hn::IndicesFromVec(df, hn::And(idx, hn::Set(di, kN - 1)));
    const auto lo = hn::TableLookupLanes(hn::LoadU(df, cb), low), hi = hn::TableLookupLanes(hn::LoadU(df, cb + kN), low);
    return hn::IfThenElse(hn::RebindMask(df, hn::Lt(idx, hn::Set(di, kN))), lo, hi);
  }
  return hn::GatherIndex(df, cb, idx);
}

}  // namespace

// Row i of the matrix (cols floats) from its groups' codebooks, group j's at cbs + j * K.
void ExpandRow(const detail::LutView& m, int64_t i, const float* cbs, float* row) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::Rebind<uint8_t, decltype(di)> d8;
  constexpr int64_t kN = int64_t(hn::MaxLanes(df));
  static_assert(kLutChunkCols % kN == 0, "a chunk is whole vectors");
  const int K = 1 << m.bits;
  const int64_t cpg = m.group / kLutChunkCols;  // groups are whole chunks
  const bool words = m.layout == detail::kLutLayoutPermute && m.bits <= 4 && kN >= 4;
  const auto mask = hn::Set(du, uint32_t(K - 1));
  const int r = int(i % detail::kLutTileRows);
  HWY_ALIGN float chunk[kLutChunkCols];
  for (int64_t ch = 0; ch < m.chunks; ++ch) {
    const float* cb = cbs + (ch / cpg) * K;
    const int64_t c0 = ch * kLutChunkCols, n = std::min<int64_t>(kLutChunkCols, m.cols - c0);
    float* dst = n == kLutChunkCols ? row + c0 : chunk;
    if (words) {
      const uint8_t* base = m.idx + ((i / detail::kLutTileRows) * m.chunks + ch) * detail::lut_chunk_bytes(m.bits);
      HWY_ALIGN uint32_t word[kN > 4 ? kN : 4] = {};
      const WordFields& f = ChunkWords(m.bits, base, r, word);
      const auto wv = hn::LoadU(du, word);
      for (int64_t v = 0; v < kLutChunkCols; v += kN) {
        const auto lanes = hn::TableLookupLanes(wv, hn::IndicesFromVec(du, hn::LoadU(di, f.src + v)));
        const auto q = hn::And(lanes >> hn::LoadU(du, f.shift + v), mask);
        hn::StoreU(LookUp(df, cb, K, hn::BitCast(di, q)), df, dst + v);
      }
    } else {
      uint8_t bytes[kLutChunkCols];
      DecodeChunkBytes(m, i, ch, bytes);
      for (int64_t v = 0; v < kLutChunkCols; v += kN)
        hn::StoreU(LookUp(df, cb, K, hn::PromoteTo(di, hn::LoadU(d8, bytes + v))), df, dst + v);
    }
    if (dst == chunk) std::memcpy(row + c0, chunk, size_t(n) * sizeof(float));
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lcq::kernels {
HWY_EXPORT(ExpandRow);
namespace detail {
void expand_lut_row(const LutView& m, int64_t i, const float* cbs, float* row) {
  HWY_DYNAMIC_DISPATCH(ExpandRow)(m, i, cbs, row);
}
}  // namespace detail
}  // namespace lcq::kernels
#endif
