// Memory read bandwidth, measured the ways the GEMV kernels read weights: a SIMD sum over a
// buffer (make it much larger than the last-level cache), split over `threads` OpenMP
// threads, each reading its slice as one sequential stream and then as four side by side.
// Returns the higher of the two medians of `repetitions` timed passes, in GB/s (1e9 bytes/s).
#pragma once

#include <cstddef>

namespace lcq::kernels {

double measure_read_bandwidth_gbs(size_t bytes, int threads, int repetitions = 7);

}  // namespace lcq::kernels
