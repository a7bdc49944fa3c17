// IEEE half and bfloat16 conversions (scalar; used on load/store paths, not hot loops).
#pragma once

#include <cstdint>
#include <cstring>

namespace lcq {

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t f32_to_bf16(float f) {  // round to nearest even, NaN preserved
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 0x40);
  u += 0x7fff + ((u >> 16) & 1);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, saturates to inf

void f16_to_f32_n(const uint16_t* src, float* dst, size_t n);
void bf16_to_f32_n(const uint16_t* src, float* dst, size_t n);

}  // namespace lcq
