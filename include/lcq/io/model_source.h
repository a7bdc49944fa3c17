// A model as it sits in a file: config, tensor views under canonical names, the tokenizer
// it carries, and the raw metadata. One loader per format produces it; the runtime (model/)
// turns it into tensors. Canonical names follow GGUF ("token_embd.weight",
// "blk.3.attn_q.weight", "output_norm.weight", ...; docs/model-formats.md lists them), with
// PyTorch shapes ([out, in] for linear weights) and Hugging Face's rotate-half q/k row order.
#pragma once

#include "lcq/core/config.h"
#include "lcq/core/mapped_file.h"
#include "lcq/io/tensor.h"
#include "lcq/tokenizer/vocab.h"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lcq::io {

enum class Format { Llama2c, GGUF, HF };
const char* format_name(Format f);

struct ModelSource {
  std::string path;
  Format format = Format::GGUF;
  ModelConfig config;
  std::vector<TensorView> tensors;  // canonical names
  // True when attn_q/attn_k rows are stored in interleaved-pair RoPE order (GGUF "llama",
  // llama2.c); the runtime permutes them back to rotate-half order on load.
  bool qk_interleaved = false;
  // The tokenizer the file carries or that was found beside it; empty() when none.
  tokenizer::Vocab vocab;
  nlohmann::json metadata;  // everything else the file says (GGUF KV pairs, config.json)
  std::vector<std::shared_ptr<const void>> keepalive;  // mappings the views point into

  const TensorView* find(const std::string& name) const;
  const TensorView& get(const std::string& name) const;  // throws naming path and tensor
};

struct LoadOptions {
  std::string tokenizer_path;  // override / supply a tokenizer (tokenizer.bin, .model, tokenizer.json)
};

// Detects the format (directory -> HF, GGUF magic, else llama2.c) and loads it.
ModelSource load_model_source(const std::string& path, const LoadOptions& opts = {});
// A single-file model (GGUF, else llama2.c) from its bytes: what load_model_source() does
// with a file once it has mapped it. A llama2.c checkpoint's tokenizer is looked for beside
// file->path().
ModelSource load_model_file(std::shared_ptr<const MappedFile> file, const LoadOptions& opts = {});

// The Hugging Face directory a model path names: the directory itself, or the directory of
// one of its files (config.json, *.safetensors, the index); "" for a single-file model.
std::string hf_directory_of(const std::string& path);
// The files of Hugging Face directory `dir` its loader may read (config, weights, index,
// tokenizer files) that exist.
std::vector<std::string> hf_input_files(const std::string& dir);

}  // namespace lcq::io

namespace lcq::io {
// Dequantizes a tensor of `src` to f32 in canonical layout (q/k rows permuted back to
// rotate-half order when the file stores them interleaved). out has view.numel() floats.
void load_tensor_f32(const ModelSource& src, const TensorView& view, float* out);
}  // namespace lcq::io
