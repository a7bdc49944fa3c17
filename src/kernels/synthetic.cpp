#include "lcq/kernels/synthetic.h"

#include "lcq/core/half.h"

#include <algorithm>

namespace lcq::kernels {

namespace {
uint64_t next_random(uint64_t& s) {  // xorshift64*: fast enough for 100M indices
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s * 2685821657736338717ull;
}
}  // namespace

CodebookLayer synthetic_codebook_layer(int64_t rows, int64_t cols, int bits, int rank, int group, uint64_t seed) {
  uint64_t s = 0x9E3779B97F4A7C15ull ^ (seed * 1000003u) ^ uint64_t(rows * 31 + cols * 7 + bits);
  CodebookLayer l = CodebookLayer::shaped(rows, cols, bits, group, rank, 8, 64);
  l.indices.resize(size_t(rows * cols));
  for (size_t k = 0; k < l.indices.size(); k += 8) {
    uint64_t r = next_random(s);
    for (size_t j = k; j < std::min(l.indices.size(), k + 8); ++j, r >>= 8)
      l.indices[j] = uint8_t(r & uint64_t(l.levels() - 1));
  }
  for (int k = 0; k < rank * l.levels(); ++k) l.v.push_back(f32_to_f16(float(int(next_random(s) % 200) - 100) / 50.f));
  const int64_t G = l.n_groups(), nb = l.n_dq_blocks();
  for (int64_t k = 0; k < rank * G; ++k) l.s_codes.push_back(uint8_t(next_random(s)));
  for (int64_t k = 0; k < G; ++k) l.b_codes.push_back(uint8_t(next_random(s)));
  for (int64_t k = 0; k < rank * nb; ++k) {
    l.s_scale.push_back(f32_to_f16(0.001f));
    l.s_offset.push_back(f32_to_f16(0.01f));
  }
  for (int64_t k = 0; k < nb; ++k) {
    l.b_scale.push_back(f32_to_f16(0.0005f));
    l.b_offset.push_back(f32_to_f16(-0.05f));
  }
  return l;
}

}  // namespace lcq::kernels
