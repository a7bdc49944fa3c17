// LutCodebookMatrix's rows back to floats (dequantize_rows: the panels of prompt products,
// the embedding's rows), for every Highway target: per row, its groups' codebooks
// C_g = S_g^T V - B_g (K = 2^bits floats each, a vector at a time), then its indices looked up
// in them a 16-column chunk at a time (one vector or more of 16, 8 or 4 lanes).
//
// The result must be CodebookLayer::dequantize()'s bit for bit: the codebooks are formed with
// its operations in its order (-B, then + S_p * V_p for p = 0..), and this file is compiled
// with -ffp-contract=off (src/CMakeLists.txt) so that no multiply and add fuse into an FMA.
//
// A chunk row's indices, in every layout (lut_internal.h: lut_bit(), lut_level_get_at()), are
// made of bit fields of at most 4 little-endian words: in each, lane c's bits are
// (word[src(c)] >> shift(c)) & mask, the words broadcast to the lanes by selects, one variable
// shift and one AND per vector (FieldKind, Field); the level form (5-8 bits) ORs its planes.
// The look-up is a lane permutation of the codebook when it fits one vector (K <= lanes), two
// and a select when it fits two, else a gather. (Speeds: bench_kernels' dequantize-lut rows.)

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SVE | HWY_SVE2 | HWY_SVE_256 | HWY_SVE2_128 | HWY_RVV)
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lcq/core/error.h"
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

// A chunk row's indices are bit fields of at most 4 little-endian words (lut_internal.h,
// lut_bit() and the level form's planes): lane c's field is (word[src[c]] >> shift[c]) & mask.
// The kinds of fields, each with its words' places relative to the plane's first byte `at`
// for tile row m:
enum FieldKind {
  kPairs,    // 2 bits: one word at at + 4m; byte (c % 8) / 2, the pair's nibble (high for c >= 8), bits 2 (c % 2)
  kTriples,  // 3 bits: quad k's 24-bit word at at + 24k + 3 (m / 2), field 4 (m % 2) + c % 4
  kNibbles,  // 4 bits: quad k = c / 4 in word k / 2 (at + 4m and at + 64 + 4m), byte c % 4, nibble k % 2
  kTwoBits,  // bits 4-5 of the level form: one word at at + 4m, byte c % 4, bits 2k
  kOneBit,   // bit 4 or 6 of the level form: quad k's byte at at + 8k + m / 2, bit 4 (m % 2) + c % 4
  // The shuffle layout (AVX2's, 2 and 4 bits): slot s (column c at 4 bits, pair c / 2 at 2) is
  // the nibble at byte 32 (s / 4) + 16 (s % 2) + m, the high one for s % 4 >= 2; word q holds
  // bytes 32q + m and 32q + 16 + m, so slot s is word s / 4, bits 8 (s % 2) + 4 ((s % 4) / 2).
  kShuffledNibbles,  // 4 bits
  kShuffledPairs,    // 2 bits: the column's 2 bits 2 (c % 2) inside its pair's nibble
};
constexpr int kFieldBits[] = {2, 3, 4, 2, 1, 4, 2};
constexpr int kFieldWords[] = {1, 4, 2, 1, 4, 4, 4};

struct WordFields {
  int32_t src[kLutChunkCols];
  uint32_t shift[kLutChunkCols];
};
// Per kind, for even and odd tile rows.
struct WordFieldTable {
  WordFields f[7][2];
  WordFieldTable() : f{} {
    for (int odd = 0; odd < 2; ++odd)
      for (int c = 0; c < kLutChunkCols; ++c) {
        const int k = c / 4, j = c % 4;
        f[kPairs][odd].src[c] = 0, f[kPairs][odd].shift[c] = uint32_t(8 * ((c % 8) / 2) + 4 * (c / 8) + 2 * (c % 2));
        f[kTriples][odd].src[c] = k, f[kTriples][odd].shift[c] = uint32_t(3 * (4 * odd + j));
        f[kNibbles][odd].src[c] = k / 2, f[kNibbles][odd].shift[c] = uint32_t(8 * j + 4 * (k % 2));
        f[kTwoBits][odd].src[c] = 0, f[kTwoBits][odd].shift[c] = uint32_t(8 * j + 2 * k);
        f[kOneBit][odd].src[c] = k, f[kOneBit][odd].shift[c] = uint32_t(4 * odd + j);
        f[kShuffledNibbles][odd].src[c] = c / 4, f[kShuffledNibbles][odd].shift[c] = uint32_t(8 * (c % 2) + 4 * ((c % 4) / 2));
        const int s = c / 2;  // the pair's slot
        f[kShuffledPairs][odd].src[c] = s / 4;
        f[kShuffledPairs][odd].shift[c] = uint32_t(8 * (s % 2) + 4 * ((s % 4) / 2) + 2 * (c % 2));
      }
  }
};

// Tile row m's words of a field of kind kKind whose plane starts at `at`.
template <FieldKind kKind>
HWY_INLINE void FieldWords(const uint8_t* at, int m, uint32_t* word) {
  if constexpr (kKind == kPairs || kKind == kTwoBits) {
    std::memcpy(word, at + 4 * m, 4);
  } else if constexpr (kKind == kNibbles) {
    std::memcpy(word, at + 4 * m, 4);
    std::memcpy(word + 1, at + 64 + 4 * m, 4);
  } else if constexpr (kKind == kTriples) {
    for (int k = 0; k < 4; ++k) {  // 3 bytes each: the last chunk's last word ends the buffer
      const uint8_t* w = at + 24 * k + 3 * (m / 2);
      word[k] = uint32_t(w[0]) | uint32_t(w[1]) << 8 | uint32_t(w[2]) << 16;
    }
  } else if constexpr (kKind == kOneBit) {
    for (int k = 0; k < 4; ++k) word[k] = at[8 * k + m / 2];
  } else {
    for (int q = 0; q < 4; ++q) word[q] = uint32_t(at[32 * q + m]) | uint32_t(at[32 * q + 16 + m]) << 8;
  }
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
    float prm[5] = {};
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

// One field of every lane of a chunk row, as decoded for tile row m: its words' selects and
// shifts per vector, hoisted out of the row's chunks.
template <FieldKind kKind, int kOffset, int kAt, class DU>
struct Field {
  static constexpr int kVecs = kLutChunkCols / int(hn::MaxLanes(DU())), kWords = kFieldWords[kKind];
  using VU = hn::Vec<DU>;
  VU shift[kVecs];
  hn::Mask<DU> take[kVecs][kWords];

  explicit Field(int m) {
    static const WordFieldTable table;
    const DU du;
    const hn::RebindToSigned<DU> di;
    const WordFields& f = table.f[kKind][m % 2];
    constexpr int kN = int(hn::MaxLanes(du));
    for (int v = 0; v < kVecs; ++v) {
      shift[v] = hn::LoadU(du, f.shift + v * kN);
      for (int k = 0; k < kWords; ++k) take[v][k] = hn::RebindMask(du, hn::Eq(hn::LoadU(di, f.src + v * kN), hn::Set(di, k)));
    }
  }
  // Vector v of the field's values, placed at bit kAt of the indices, from the chunk at `chunk`.
  // The words go from registers to lanes by broadcasts and selects (an array of them reloaded as
  // a vector would stall on store forwarding).
  HWY_INLINE void Add(const uint8_t* chunk, int m, VU* q) const {
    const DU du;
    uint32_t word[4];
    FieldWords<kKind>(chunk + kOffset, m, word);
    const auto mask = hn::Set(du, uint32_t((1u << kFieldBits[kKind]) - 1));
    for (int v = 0; v < kVecs; ++v) {
      VU lanes = hn::Set(du, word[0]);
      for (int k = 1; k < kWords; ++k) lanes = hn::IfThenElse(take[v][k], hn::Set(du, word[k]), lanes);
      const VU bits = hn::And(hn::Shr(lanes, shift[v]), mask);
      q[v] = kAt == 0 ? bits : hn::Or(q[v], hn::ShiftLeft<kAt>(bits));
    }
  }
};

// Row i of a kBits matrix in the permute layout or, kShuffled, the shuffle layout (cols floats)
// from its groups' codebooks, group j's at cbs + j * 2^kBits: the indices of 2-4 bits are one
// field, the level form's (5-8 bits) its nibble plane and the planes of the high bits above it.
template <int kBits, bool kShuffled = false>
void ExpandRowFields(const detail::LutView& m, int64_t i, const float* cbs, float* row) {
  using DF = hn::ScalableTag<float>;
  using DU = hn::RebindToUnsigned<DF>;
  const DF df;
  const hn::RebindToSigned<DF> di;
  constexpr int kN = int(hn::MaxLanes(df)), kVecs = kLutChunkCols / kN, K = 1 << kBits;
  const int r = int(i % detail::kLutTileRows);
  constexpr FieldKind kLow = kShuffled ? (kBits == 2 ? kShuffledPairs : kShuffledNibbles)
                                       : kBits == 2 ? kPairs : kBits == 3 ? kTriples : kNibbles;
  const Field<kLow, 0, 0, DU> low(r);
  // The high bits: 5: one bit plane at 128; 6: two bits at 128; 7: two bits at 128, one bit at
  // 192; 8: a second nibble plane at 128.
  constexpr FieldKind kHigh1 = kBits == 8 ? kNibbles : kBits == 5 ? kOneBit : kTwoBits;
  const Field<kHigh1, 128, 4, DU> high1(r);
  const Field<kOneBit, 192, 6, DU> high2(r);
  const uint8_t* tile = m.idx + (i / detail::kLutTileRows) * m.chunks * detail::lut_chunk_bytes(kBits);
  ForEachChunk(m, row, [&](int64_t j, int64_t ch, float* dst) {
    const uint8_t* chunk = tile + ch * detail::lut_chunk_bytes(kBits);
    hn::Vec<DU> q[kVecs];
    low.Add(chunk, r, q);
    if constexpr (kBits >= 5) high1.Add(chunk, r, q);
    if constexpr (kBits == 7) high2.Add(chunk, r, q);
    const float* cb = cbs + j * K;
    for (int v = 0; v < kVecs; ++v) hn::StoreU(LookUp(df, cb, K, hn::BitCast(di, q[v])), df, dst + v * kN);
  });
}

using ExpandRow = void (*)(const detail::LutView&, int64_t, const float*, float*);

// The ExpandRowFields instance of m's layout and width (every layout pack() makes has one).
ExpandRow ExpandRowFor(const detail::LutView& m) {
  if (m.layout == detail::kLutLayoutShuffle) {
    LCQ_CHECK(m.bits == 2 || m.bits == 4, "the shuffle layout holds 2- and 4-bit layers only (got {} bits)", m.bits);
    return m.bits == 2 ? &ExpandRowFields<2, true> : &ExpandRowFields<4, true>;
  }
  constexpr ExpandRow kPermute[] = {&ExpandRowFields<2>, &ExpandRowFields<3>, &ExpandRowFields<4>, &ExpandRowFields<5>,
                                    &ExpandRowFields<6>, &ExpandRowFields<7>, &ExpandRowFields<8>};
  LCQ_CHECK(m.bits >= 2 && m.bits <= 8, "the LUT layout holds 2- to 8-bit layers (got {} bits)", m.bits);
  return kPermute[m.bits - 2];
}

}  // namespace

void DequantizeRows(const detail::LutView& m, int64_t r0, int64_t r1, float* out) {
  // One row's codebooks, padded for LookUp()'s reads past a small codebook.
  std::vector<float> cbs(size_t(m.groups_per_row << m.bits) + 2 * hn::MaxLanes(hn::ScalableTag<float>()), 0.f);
  const ExpandRow expand = ExpandRowFor(m);
  for (int64_t i = r0; i < r1; ++i) {
    RowCodebooks(m, i, cbs.data());
    expand(m, i, cbs.data(), out + (i - r0) * m.cols);
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
