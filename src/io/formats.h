// Per-format loaders behind load_model_source() (internal to the io layer).
#pragma once

#include "lcq/io/model_source.h"

namespace lcq::io {

ModelSource load_gguf_model(const std::string& path, const LoadOptions& opts);
ModelSource load_hf_model(const std::string& dir, const LoadOptions& opts);
ModelSource load_llama2c_model(const std::string& path, const LoadOptions& opts);

// Rows of q/k between Hugging Face rotate-half order and interleaved-pair order
// (GGUF "llama", llama2.c). `rows` = n_heads * head_dim, each row `row_len` values.
void permute_qk_to_interleaved(const float* src, float* dst, int n_heads, int64_t head_dim, int64_t row_len);
void permute_qk_to_rotate_half(const float* src, float* dst, int n_heads, int64_t head_dim, int64_t row_len);

}  // namespace lcq::io
