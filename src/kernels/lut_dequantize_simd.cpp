// LutCodebookMatrix's rows back to floats (dequantize_rows: the panels of prompt products,
// the embedding's rows), for every Highway target: per row, its groups' codebooks
// C_g = S_g^T V - B_g (K = 2^bits floats each, a vector at a time), then its indices looked up
// in them a 16-column chunk at a time (one vector or more of 16, 8 or 4 lanes).
//
// The result must be CodebookLayer::dequantize()'s bit for bit: the codebooks are formed with
// its operations in its order (-B, then + S_p * V_p for p = 0..), and this file is compiled
// with -ffp-contract=off (src/CMakeLists.txt) so that no multiply and add fuse into an FMA.
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
#include <vector>

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

// Row m's words of the permute-layout chunk at `base`: 1 (2 bits), 2 (4 bits) or 4 (3 bits).
template <int kBits>
HWY_INLINE void ChunkWords(const uint8_t* base, int m, uint32_t* word) {
  if constexpr (kBits == 2) {
    std::memcpy(word, base + 4 * m, 4);
  } else if constexpr (kBits == 4) {
    std::memcpy(word, base + 4 * m, 4);
    std::memcpy(word + 1, base + 64 + 4 * m, 4);
  } else {
    for (int k = 0; k < 4; ++k) {  // 3 bytes each: the last chunk's last word ends the buffer
      const uint8_t* w = base + 24 * k + 3 * (m / 2);
      word[k] = uint32_t(w[0]) | uint32_t(w[1]) << 8 | uint32_t(w[2]) << 16;
    }
  }
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

// Row i's group codebooks: group j's K entries at cbs + j * K.
void RowCodebooks(const detail::LutView& m, int64_t i, float* cbs) {
  const hn::ScalableTag<float> df;
  constexpr int kN = int(hn::MaxLanes(df));
  const int K = 1 << m.bits;
  for (int64_t j = 0; j < m.groups_per_row; ++j) {
    float prm[5];
    detail::lut_exact_params(m, i, j, prm);
    float* cb = cbs + j * K;
    int t = 0;
    for (; t + kN <= K; t += kN) {
      auto c = hn::Set(df, -prm[m.rank]);
      for (int p = 0; p < m.rank; ++p) c = hn::Add(c, hn::Mul(hn::Set(df, prm[p]), hn::LoadU(df, m.v + p * K + t)));
      hn::StoreU(c, df, cb + t);
    }
    for (; t < K; ++t) {
      float c = -prm[m.rank];
      for (int p = 0; p < m.rank; ++p) c += prm[p] * m.v[p * K + t];
      cb[t] = c;
    }
  }
}

// The chunks of row i's group j, [ch0, ch1), the last one possibly ragged: per chunk,
// chunk(ch, dst) writes its 16 weights to dst, here or in a buffer.
template <class Chunk>
HWY_INLINE void ForEachChunk(const detail::LutView& m, float* row, Chunk chunk) {
  const int64_t cpg = m.group / kLutChunkCols;  // groups are whole chunks
  HWY_ALIGN float tail[kLutChunkCols];
  for (int64_t j = 0, ch = 0; j < m.groups_per_row; ++j)
    for (const int64_t ch1 = std::min(m.chunks, ch + cpg); ch < ch1; ++ch) {
      const int64_t c0 = ch * kLutChunkCols, n = std::min<int64_t>(kLutChunkCols, m.cols - c0);
      if (n == kLutChunkCols) {
        chunk(j, ch, row + c0);
      } else {
        chunk(j, ch, tail);
        std::memcpy(row + c0, tail, size_t(n) * sizeof(float));
      }
    }
}

// Row i of a permute-layout matrix of kBits = 2, 3 or 4 (cols floats) from its groups'
// codebooks, group j's at cbs + j * 2^kBits.
template <int kBits>
void ExpandRowWords(const detail::LutView& m, int64_t i, const float* cbs, float* row) {
  static const WordFieldTable table;
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::RebindToUnsigned<decltype(df)> du;
  constexpr int kN = int(hn::MaxLanes(df)), kVecs = kLutChunkCols / kN, kWords = kBits == 2 ? 1 : kBits == 4 ? 2 : 4;
  constexpr int K = 1 << kBits;
  const int r = int(i % detail::kLutTileRows);
  const WordFields& f = table.f[kBits == 2 ? 0 : kBits == 4 ? 1 : 2 + r % 2];
  // Per vector of the chunk: each lane's bit shift, and which lanes take word k (k >= 1).
  using VU = hn::Vec<decltype(du)>;
  using MU = hn::Mask<decltype(du)>;
  VU shift[kVecs];
  MU take[kVecs][kWords];
  for (int v = 0; v < kVecs; ++v) {
    shift[v] = hn::LoadU(du, f.shift + v * kN);
    for (int k = 0; k < kWords; ++k) take[v][k] = hn::RebindMask(du, hn::Eq(hn::LoadU(di, f.src + v * kN), hn::Set(di, k)));
  }
  const auto mask = hn::Set(du, uint32_t(K - 1));
  const uint8_t* tile = m.idx + (i / detail::kLutTileRows) * m.chunks * detail::lut_chunk_bytes(kBits);
  ForEachChunk(m, row, [&](int64_t j, int64_t ch, float* dst) {
    uint32_t word[4];
    ChunkWords<kBits>(tile + ch * detail::lut_chunk_bytes(kBits), r, word);
    const float* cb = cbs + j * K;
    for (int v = 0; v < kVecs; ++v) {
      // Each lane's word from broadcasts and selects: the words go from registers to lanes
      // (an array of them reloaded as a vector would stall on store forwarding).
      VU lanes = hn::Set(du, word[0]);
      for (int k = 1; k < kWords; ++k) lanes = hn::IfThenElse(take[v][k], hn::Set(du, word[k]), lanes);
      const auto q = hn::And(hn::Shr(lanes, shift[v]), mask);
      hn::StoreU(LookUp(df, cb, K, hn::BitCast(di, q)), df, dst + v * kN);
    }
  });
}

// Row i of any other layout and width: its chunks' indices decoded to bytes first.
void ExpandRowBytes(const detail::LutView& m, int64_t i, const float* cbs, float* row) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(di)> d8;
  constexpr int64_t kN = int64_t(hn::MaxLanes(df));
  const int K = 1 << m.bits;
  ForEachChunk(m, row, [&](int64_t j, int64_t ch, float* dst) {
    uint8_t bytes[kLutChunkCols];
    DecodeChunkBytes(m, i, ch, bytes);
    for (int64_t v = 0; v < kLutChunkCols; v += kN)
      hn::StoreU(LookUp(df, cbs + j * K, K, hn::PromoteTo(di, hn::LoadU(d8, bytes + v))), df, dst + v);
  });
}

}  // namespace

void DequantizeRows(const detail::LutView& m, int64_t r0, int64_t r1, float* out) {
  // One row's codebooks, padded for LookUp()'s reads past a small codebook.
  std::vector<float> cbs(size_t(m.groups_per_row << m.bits) + 2 * hn::MaxLanes(hn::ScalableTag<float>()), 0.f);
  for (int64_t i = r0; i < r1; ++i) {
    RowCodebooks(m, i, cbs.data());
    float* row = out + (i - r0) * m.cols;
    const bool words = m.layout == detail::kLutLayoutPermute && hn::MaxLanes(hn::ScalableTag<float>()) >= 4;
    if (words && m.bits == 2) ExpandRowWords<2>(m, i, cbs.data(), row);
    else if (words && m.bits == 3) ExpandRowWords<3>(m, i, cbs.data(), row);
    else if (words && m.bits == 4) ExpandRowWords<4>(m, i, cbs.data(), row);
    else ExpandRowBytes(m, i, cbs.data(), row);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace lcq::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lcq::kernels {
HWY_EXPORT(DequantizeRows);
namespace detail {
void dequantize_lut_rows(const LutView& m, int64_t r0, int64_t r1, float* out) {
  HWY_DYNAMIC_DISPATCH(DequantizeRows)(m, r0, r1, out);
}
}  // namespace detail
}  // namespace lcq::kernels
#endif
