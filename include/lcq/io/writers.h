// Writing models: GGUF (one file) and Hugging Face directories (config.json,
// model.safetensors, tokenizer.json). Inputs use canonical names and layouts (see
// model_source.h); each writer converts to its format's names and layout (GGUF "llama"
// q/k rows are permuted to interleaved RoPE order). Files are written atomically.
#pragma once

#include "lcq/core/config.h"
#include "lcq/io/tensor.h"
#include "lcq/tokenizer/vocab.h"

#include <nlohmann/json.hpp>

#include <functional>
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
  // Or the same produced piece by piece while the file is written, so that a tensor is never
  // whole in memory (a streamed model's embedding): rows [r0, r1) along the first dimension
  // (a 1-D tensor's rows are its elements), as f32 values or as stored bytes.
  std::function<void(int64_t r0, int64_t r1, float* out)> fill_f32;
  std::function<void(int64_t r0, int64_t r1, uint8_t* out)> fill_raw;

  bool has_data() const { return f32 || raw || fill_f32 || fill_raw; }
  bool is_f32() const { return f32 || fill_f32; }
  int64_t numel() const;
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  // Rows [r0, r1) of the f32 values (f32 or fill_f32) into out.
  void read_f32(int64_t r0, int64_t r1, float* out) const;
  // Bytes of rows [r0, r1) (raw or fill_raw; row_bytes = stored bytes per row) into out.
  void read_raw(int64_t r0, int64_t r1, size_t row_bytes, uint8_t* out) const;
};

// Rows per piece when a tensor is converted or copied piece by piece: about 16 MiB of f32.
int64_t rows_per_piece(const WriteTensor& t);

struct WriteOptions {
  nlohmann::json extra_metadata = nlohmann::json::object();  // GGUF: extra KV pairs (string/number/bool/arrays)
};

void write_gguf_model(const std::string& path, const ModelConfig& config, const std::vector<WriteTensor>& tensors,
                      const tokenizer::Vocab& vocab, const WriteOptions& opts = {});
// The size in bytes of the file write_gguf_model would write (the tensors' data is not read).
uint64_t gguf_model_bytes(const ModelConfig& config, const std::vector<WriteTensor>& tensors,
                          const tokenizer::Vocab& vocab, const WriteOptions& opts = {});

// Writes dir/config.json, dir/model.safetensors, dir/tokenizer.json (+ tokenizer_config.json).
// Only F32/F16/BF16 tensors are accepted.
void write_hf_model(const std::string& dir, const ModelConfig& config, const std::vector<WriteTensor>& tensors,
                    const tokenizer::Vocab& vocab, const WriteOptions& opts = {});
// The files write_hf_model writes or removes in its directory (for the commands' checks
// that an export replaces no input).
const std::vector<std::string>& hf_model_files();

}  // namespace lcq::io
