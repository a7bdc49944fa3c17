// Quantization of the token embedding and the output head. In a small model they are the
// largest matrices (SmolLM2-135M: 28 M of its 135 M weights, tied), so a file whose linear
// layers are at 2-4 bits is mostly embedding unless it is quantized too.
//
// Each is a rank-one codebook layer (the file format of every quantized matrix,
// docs/lcq-format.md) whose per-group grid comes from a clipping search minimising the
// quantization error weighted per column by the head's importance: the mean square of the
// head's inputs (the final norm's output) on the calibration set, the statistic llama.cpp's
// --imatrix uses to round. Without calibration the columns weigh the same. The grid is then
// double-quantized like every layer's, and each weight is assigned to an entry of it:
//  - nearest: its nearest entry;
//  - gptq: GPTQ's sweep with error feedback on the head's inputs (the gram of the final norm's
//    output, act-order), which minimises the head's output error rather than each weight's.
//    A tied embedding is looked up through the same codes.
#pragma once

#include "lcq/kernels/codebook_layer.h"

#include <torch/types.h>

#include <string>
#include <vector>

namespace lcq::quant {

enum class EmbeddingRounding { kNearest, kGptq };  // --embed-rounding nearest | gptq
const std::vector<std::string>& embedding_rounding_names();
EmbeddingRounding parse_embedding_rounding(const std::string& name);
std::string to_string(EmbeddingRounding r);

struct EmbeddingOptions {
  int bits = 0;      // 0: keep the matrix in fp16
  int group = 64;
  int dq_bits = 8;   // double quantization of the group scales and offsets, as for linears
  int dq_group = 64;
  EmbeddingRounding rounding = EmbeddingRounding::kNearest;
};

// Checks the options (bits 0 or 2..8, group >= 8); throws lcq::Error naming the options.
void validate(const EmbeddingOptions& o);

// The options for matrix `name` ("token_embd" or "output"): an untied token embedding is no
// head, so GPTQ's rounding on the head's inputs does not apply to it (it is rounded to nearest).
EmbeddingOptions options_for(const EmbeddingOptions& o, const std::string& name, bool tied);

// W [rows, cols] (float); head_gram [cols, cols]: the mean of h h^T over the head's calibration
// inputs h (its diagonal is each column's importance), or undefined (columns weigh the same,
// nearest rounding).
CodebookLayer quantize_embedding(const torch::Tensor& W, const EmbeddingOptions& o, const torch::Tensor& head_gram);

}  // namespace lcq::quant
