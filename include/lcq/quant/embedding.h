// Quantization of the token embedding and the output head. In a small model they are the
// largest matrices (SmolLM2-135M: 28 M of its 135 M weights, tied), so a file whose linear
// layers are at 2-4 bits is mostly embedding unless it is quantized too.
//
// Each is a rank-one codebook layer (the file format of every quantized matrix,
// docs/lcq-format.md) whose per-group grid comes from a clipping search minimising the
// quantization error weighted per column by the head's importance: the mean square of the
// head's inputs (the final norm's output) on the calibration set, the statistic llama.cpp's
// --imatrix uses to round. Without calibration the columns weigh the same. The grid is then
// double-quantized like every layer's and each weight assigned to its nearest entry.
#pragma once

#include "lcq/kernels/codebook_layer.h"

#include <torch/types.h>

namespace lcq::quant {

struct EmbeddingOptions {
  int bits = 0;      // 0: keep the matrix in fp16
  int group = 64;
  int dq_bits = 8;   // double quantization of the group scales and offsets, as for linears
  int dq_group = 64;
};

// Checks the options (bits 0 or 2..8, group >= 8); throws lcq::Error naming the options.
void validate(const EmbeddingOptions& o);

// W [rows, cols] (float), column_importance [cols] (> 0) or undefined.
CodebookLayer quantize_embedding(const torch::Tensor& W, const EmbeddingOptions& o,
                                 const torch::Tensor& column_importance);

}  // namespace lcq::quant
