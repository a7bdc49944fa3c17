// Writing models: GGUF (one file) and Hugging Face directories (config.json,
// model.safetensors, tokenizer.json). Inputs use canonical names and layouts (see
// model_source.h); each writer converts to its format's names and layout (GGUF "llama"
// q/k rows are permuted to interleaved RoPE order). Files are written atomically.
#pragma once

#include "lcq/core/config.h"
#include "lcq/io/tensor.h"
#include "lcq/tokenizer/vocab.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lcq::io {

// One tensor to write. Either f32 data converted to `dtype` (F32, F16 or BF16), or raw
// bytes stored as they are (dtype = the bytes' type, e.g. I8 for packed indices).
// The pointed-to memory must stay valid until the write function returns.
struct WriteTensor {
  std::string name;              // canonical name
  std::vector<int64_t> shape;    // PyTorch order
  DType dtype = DType::F32;      // stored type
  const float* f32 = nullptr;    // source values (converted), or
  const uint8_t* raw = nullptr;  // source bytes (stored as is; size = dtype_nbytes(dtype, numel))
};

struct WriteOptions {
  nlohmann::json extra_metadata = nlohmann::json::object();  // GGUF: extra KV pairs (string/number/bool/arrays)
};

void write_gguf_model(const std::string& path, const ModelConfig& config, const std::vector<WriteTensor>& tensors,
                      const tokenizer::Vocab& vocab, const WriteOptions& opts = {});

// Writes dir/config.json, dir/model.safetensors, dir/tokenizer.json (+ tokenizer_config.json).
// Only F32/F16/BF16 tensors are accepted.
void write_hf_model(const std::string& dir, const ModelConfig& config, const std::vector<WriteTensor>& tensors,
                    const tokenizer::Vocab& vocab, const WriteOptions& opts = {});
// The files write_hf_model writes or removes in its directory (for the commands' checks
// that an export replaces no input).
const std::vector<std::string>& hf_model_files();

}  // namespace lcq::io
