// The process's own memory.
#pragma once

namespace lcq {

// Hands the heap's free pages back to the system (glibc's malloc_trim: every arena, and the
// whole free pages inside it, not only its top). Long runs call it between phases so that
// what one phase freed in many small pieces does not stay resident through the next.
void return_free_heap();

}  // namespace lcq
