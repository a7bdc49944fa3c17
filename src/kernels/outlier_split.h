// Massive activations and the int8 families (internal to kernels/).
//
// The int8 and LUT kernels round a token's inputs to int8 with one scale per weight group
// (64-128 columns). LLaMA-family models put a few inputs, most visibly in the FFN down
// projection, at hundreds of times the others' size; the group holding one keeps about a bit
// for its other inputs. On SmolLM2 W4 g64 that cost 4.3 % perplexity with the LUT kernel
// (2.8 % with int8), 2.7 points of it in `down` (bench/decode_accuracy).
//
// split_outliers() wraps such a matrix: before the kernel runs, inputs larger than
// kOutlierRatio times the token's RMS are taken out of x and their columns are added in
// float, from columns dequantized once on first use and kept (at most kMaxColumns per matrix
// and kColumnBytes of them; a column beyond those is dequantized for the call that needs it,
// so that the product of a token never depends on the tokens before it).
#pragma once

#include "lcq/kernels/matrix.h"

#include <cstddef>
#include <memory>

namespace lcq::kernels::detail {

// Measured on SmolLM2 (bench/decode_accuracy, 496 tokens of WikiText-2, perplexity against
// exact): W4 g64 LUT +4.3 % unsplit, +3.9 % at 16, -0.0 % at 8; W3 g128 r2 LUT +5.4 % unsplit,
// +0.8 % at 8 (int8: +2.8 -> +1.8 % and +4.4 -> +2.9 %).
inline constexpr float kOutlierRatio = 8.f;
inline constexpr int kMaxOutliers = 8;     // per token
inline constexpr int kMaxColumns = 256;    // kept per matrix ...
inline constexpr size_t kColumnBytes = size_t(1) << 20;  // ... and at most this many bytes of them

std::shared_ptr<const Matrix> split_outliers(std::shared_ptr<const Matrix> inner);

}  // namespace lcq::kernels::detail
