#include "lcq/core/memory.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace lcq {

void return_free_heap() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

}  // namespace lcq
