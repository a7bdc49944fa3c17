// Internal to lcq_kernels: moving a CodebookLayer's group parameters (S and B as codes or
// f32 values, and the double-quantization block scales and offsets) into the order of a
// packed layout and back. Both layouts (PackedCodebookMatrix, LutCodebookMatrix) keep the
// block arrays as [rank + 1][n_dq_blocks] (the S rows, then B) and the per-group parameters
// wherever `at(g, p)` says (p = 0 .. rank - 1: S_p of group g; p = rank: B).
#pragma once

#include "lcq/core/half.h"
#include "lcq/kernels/codebook_layer.h"
#include "lcq/kernels/packed_params.h"

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

// A layer's parameters in a layout of n per-group entries (`at` as above), V included, with
// the decoded copies; the decoded block arrays get `pad` zero floats more (for kernels that
// load whole vectors from a block's start).
template <class At>
PackedGroupParams pack_group_params(const CodebookLayer& l, size_t n, At at, size_t pad = 0) {
  PackedGroupParams p;
  scatter_group_params(l, n, at, p.coef_codes, p.coef_f32, p.blk_scale, p.blk_offset);
  p.blk_scale_f.assign(p.blk_scale.size() + pad, 0.f);
  p.blk_offset_f.assign(p.blk_offset.size() + pad, 0.f);
  f16_to_f32_n(p.blk_scale.data(), p.blk_scale_f.data(), p.blk_scale.size());
  f16_to_f32_n(p.blk_offset.data(), p.blk_offset_f.data(), p.blk_offset.size());
  p.v = l.v;
  p.v_f.resize(p.v.size());
  f16_to_f32_n(p.v.data(), p.v_f.data(), p.v.size());
  return p;
}

// The reverse, into l (its shape, rank and dq fields set).
template <class At>
void unpack_group_params(const PackedGroupParams& p, At at, CodebookLayer& l) {
  gather_group_params(l, at, p.coef_codes, p.coef_f32, p.blk_scale, p.blk_offset);
  l.v = p.v;
}

// Points a kernel view's parameter fields (coef_codes, coef_f32, blk_scale, blk_offset, v,
// n_blocks) at the decoded arrays.
template <class View>
void view_group_params(const PackedGroupParams& p, int rank, int dq_bits, View& v) {
  v.n_blocks = dq_bits > 0 ? p.n_blocks(rank) : 0;
  v.coef_codes = p.coef_codes.data();
  v.coef_f32 = p.coef_f32.data();
  v.blk_scale = p.blk_scale_f.data();
  v.blk_offset = p.blk_offset_f.data();
  v.v = p.v_f.data();
}

}  // namespace lcq::kernels::detail
