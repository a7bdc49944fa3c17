// Hugging Face tensor names <-> canonical (GGUF-style) names, and the tensors a config implies.
// Internal to the io layer; shared by the Hugging Face loader and writer.
#pragma once

#include "lcq/core/config.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lcq::io::hf {

// "model.layers.3.self_attn.q_proj.weight" -> "blk.3.attn_q.weight" (Llama family);
// "model.decoder.layers.0.fc1.bias" -> "blk.0.ffn_up.bias" (OPT; "model." prefix optional).
// Returns "" for names without a canonical equivalent.
std::string to_canonical(const std::string& hf_name, Arch arch);
// The inverse, spelled as transformers saves it ("model." prefix, "lm_head.weight"); "" if none.
std::string to_hf(const std::string& canonical, Arch arch);
// Buffers some exporters save that carry no weights (rotary inverse frequencies).
bool is_harmless_extra(const std::string& hf_name);

// The canonical tensors a config implies, in a natural order, with their shapes; -1 marks a
// dimension that is not checked (OPT's learned positions keep however many rows are stored).
// output.weight is listed only when the embeddings are not tied.
using ExpectedTensors = std::vector<std::pair<std::string, std::vector<int64_t>>>;
ExpectedTensors expected_tensors(const ModelConfig& c);

std::string shape_str(const std::vector<int64_t>& shape);
bool shape_matches(const std::vector<int64_t>& expected, const std::vector<int64_t>& actual);

}  // namespace lcq::io::hf
