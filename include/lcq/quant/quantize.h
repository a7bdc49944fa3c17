// Quantizing a whole model and writing the result: the entry point `lcq quantize` uses.
#pragma once

#include "lcq/model/loader.h"
#include "lcq/quant/lcq.h"
#include "lcq/quant/reconstruct.h"

#include <nlohmann/json.hpp>

#include <map>
#include <string>

namespace lcq::quant {

struct QuantizeOptions {
  std::string method = "lcq";  // lcq | rtn
  LcqOptions lcq;              // bits, group, rank, init, double quantization
  double lr_scale = 5e-3;      // Adam learning rate of S~ and B~
  double lr_codebook = 5e-3;   // ... of V
  ReconstructOptions engine;
};

// Checks everything before any work; throws lcq::Error with a message for the user.
void validate(const QuantizeOptions& o);

struct QuantizeResult {
  std::map<std::string, CodebookLayer> layers;
  std::vector<BlockReport> blocks;
  double seconds = 0;
  double bits_per_weight = 0;  // over the quantized linear layers, exact
  int64_t quantized_weights = 0;
};

// Quantizes every linear layer of every block of `model` in place. `calib` [N, L] may be
// undefined for rtn (no reconstruction, no report losses).
QuantizeResult quantize_model(model::Model& model, const torch::Tensor& calib, const QuantizeOptions& o);

// Writes `model` as GGUF with the quantized linear layers stored as LCQ codebooks
// (lcq/io/codebook_tensors.h) and every other tensor in f32. Atomic.
void write_quantized_model(const std::string& path, const model::Model& model, const tokenizer::Vocab& vocab,
                           const QuantizeResult& q, const nlohmann::json& extra_metadata);

// Writes `model`'s current (dequantized) weights as an ordinary GGUF file (path ends with
// .gguf) or Hugging Face directory, in `dtype` (F32, F16 or BF16).
void write_dense_model(const std::string& path, const model::Model& model, const tokenizer::Vocab& vocab,
                       io::DType dtype, const nlohmann::json& extra_metadata);

nlohmann::json to_json(const QuantizeResult& r);

}  // namespace lcq::quant
