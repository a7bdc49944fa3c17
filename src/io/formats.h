// Per-format loaders behind load_model_source() (internal to the io layer).
#pragma once

#include "lcq/core/mapped_file.h"
#include "lcq/io/model_source.h"

namespace lcq::io {

// Single-file formats parse the file's bytes (a mapping, or a buffer in the fuzzers); errors
// and ModelSource::path name file->path().
ModelSource load_gguf_model(std::shared_ptr<const MappedFile> file, const LoadOptions& opts);
ModelSource load_llama2c_model(std::shared_ptr<const MappedFile> file, const LoadOptions& opts);
inline ModelSource load_gguf_model(const std::string& path, const LoadOptions& opts) {
  return load_gguf_model(MappedFile::open(path), opts);
}
inline ModelSource load_llama2c_model(const std::string& path, const LoadOptions& opts) {
  return load_llama2c_model(MappedFile::open(path), opts);
}
ModelSource load_hf_model(const std::string& dir, const LoadOptions& opts);

// Rows of q/k between Hugging Face rotate-half order and interleaved-pair order
// (GGUF "llama", llama2.c). `rows` = n_heads * head_dim, each row `row_len` values.
void permute_qk_to_interleaved(const float* src, float* dst, int n_heads, int64_t head_dim, int64_t row_len);
void permute_qk_to_rotate_half(const float* src, float* dst, int n_heads, int64_t head_dim, int64_t row_len);

}  // namespace lcq::io
