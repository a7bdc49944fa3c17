// What this CPU can do natively, where a choice of arithmetic depends on it.
#pragma once

namespace lcq {

// Native bf16 dot products (AVX512-BF16 or AMX-BF16): oneDNN's bf16 matrix products then run
// about 2-3x its fp32 speed; without them it emulates bf16 and gains nothing.
bool cpu_has_native_bf16();

}  // namespace lcq
