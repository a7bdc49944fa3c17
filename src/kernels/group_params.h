// Internal to lcq_kernels: moving a CodebookLayer's group parameters (S and B as codes or
// f32 values, and the double-quantization block scales and offsets) into the order of a
// packed layout and back. Both layouts (PackedCodebookMatrix, LutCodebookMatrix) keep the
// block arrays as [rank + 1][n_dq_blocks] (the S rows, then B) and the per-group parameters
// wherever `at(g, p)` says (p = 0 .. rank - 1: S_p of group g; p = rank: B).
#pragma once

#include "lcq/kernels/codebook_layer.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lcq::kernels::detail {

// Fills `codes` (dq) or `f32` (no dq) with n entries (zero where `at` never points) and the
// block arrays from the layer.
template <class At>
void scatter_group_params(const CodebookLayer& l, size_t n, At at, std::vector<uint8_t>& codes,
                          std::vector<float>& f32, std::vector<uint16_t>& blk_scale,
                          std::vector<uint16_t>& blk_offset) {
  const int64_t G = l.n_groups();
  if (l.dq_bits > 0) {
    codes.assign(n, 0);
    for (int64_t g = 0; g < G; ++g) {
      for (int r = 0; r < l.rank; ++r) codes[at(g, r)] = l.s_codes[size_t(r * G + g)];
      codes[at(g, l.rank)] = l.b_codes[size_t(g)];
    }
    blk_scale = l.s_scale;
    blk_scale.insert(blk_scale.end(), l.b_scale.begin(), l.b_scale.end());
    blk_offset = l.s_offset;
    blk_offset.insert(blk_offset.end(), l.b_offset.begin(), l.b_offset.end());
  } else {
    f32.assign(n, 0.f);
    for (int64_t g = 0; g < G; ++g) {
      for (int r = 0; r < l.rank; ++r) f32[at(g, r)] = l.s_f32[size_t(r * G + g)];
      f32[at(g, l.rank)] = l.b_f32[size_t(g)];
    }
  }
}

// The reverse: the layer's parameter arrays from a layout's (l's shape, rank and dq fields
// must be set).
template <class At>
void gather_group_params(CodebookLayer& l, At at, const std::vector<uint8_t>& codes, const std::vector<float>& f32,
                         const std::vector<uint16_t>& blk_scale, const std::vector<uint16_t>& blk_offset) {
  const int64_t G = l.n_groups();
  if (l.dq_bits > 0) {
    l.s_codes.resize(size_t(l.rank * G));
    l.b_codes.resize(size_t(G));
    for (int64_t g = 0; g < G; ++g) {
      for (int r = 0; r < l.rank; ++r) l.s_codes[size_t(r * G + g)] = codes[at(g, r)];
      l.b_codes[size_t(g)] = codes[at(g, l.rank)];
    }
    const long split = long(size_t(l.rank) * size_t(l.n_dq_blocks()));
    l.s_scale.assign(blk_scale.begin(), blk_scale.begin() + split);
    l.b_scale.assign(blk_scale.begin() + split, blk_scale.end());
    l.s_offset.assign(blk_offset.begin(), blk_offset.begin() + split);
    l.b_offset.assign(blk_offset.begin() + split, blk_offset.end());
  } else {
    l.s_f32.resize(size_t(l.rank * G));
    l.b_f32.resize(size_t(G));
    for (int64_t g = 0; g < G; ++g) {
      for (int r = 0; r < l.rank; ++r) l.s_f32[size_t(r * G + g)] = f32[at(g, r)];
      l.b_f32[size_t(g)] = f32[at(g, l.rank)];
    }
  }
}

}  // namespace lcq::kernels::detail
