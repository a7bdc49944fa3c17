#include "lcq/core/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace lcq {

bool cpu_has_native_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16")) return true;
  // AMX-BF16 from CPUID leaf 7 (EDX bit 22): clang 14's __builtin_cpu_supports has no name for it.
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22)) != 0;
#else
  return false;
#endif
}

}  // namespace lcq
