// Synthetic LCQ layers with random indices and plausible parameters, for benchmarks that
// need real shapes without a quantized model (kernel speed does not depend on the values).
#pragma once

#include "lcq/kernels/codebook_layer.h"

#include <cstdint>

namespace lcq::kernels {

// rows x cols, b-bit indices, rank r, groups of `group`, double quantization 8/64.
CodebookLayer synthetic_codebook_layer(int64_t rows, int64_t cols, int bits, int rank, int group = 128,
                                       uint64_t seed = 1);

}  // namespace lcq::kernels
