// Loading a model file into the runtime: format detection (io), tensors (dequantized to the
// runtime's dtype), tokenizer.
#pragma once

#include "lcq/io/model_source.h"
#include "lcq/model/model.h"
#include "lcq/tokenizer/tokenizer.h"

#include <map>
#include <memory>
#include <string>

namespace lcq::model {

struct LoadedModel {
  std::string path;
  io::Format format = io::Format::GGUF;
  Model model;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;  // null when the file has none
  nlohmann::json metadata;

  // The tokenizer, or an lcq::Error telling the user how to supply one.
  const tokenizer::Tokenizer& tok() const;
};

// Builds the runtime model from a source (all tensors copied/dequantized; the source's
// memory maps may be released afterwards).
Model build_model(const io::ModelSource& src, const RuntimeOptions& opts);

LoadedModel load_model(const std::string& path, const io::LoadOptions& load = {}, const RuntimeOptions& opts = {});

// The tokenizer of the vocabulary `src` carries (null when none), checked against the model's size.
std::unique_ptr<tokenizer::Tokenizer> make_model_tokenizer(const io::ModelSource& src);

// Applies opts.threads to libtorch/OpenMP (no-op for 0).
void set_threads(int threads);

}  // namespace lcq::model
