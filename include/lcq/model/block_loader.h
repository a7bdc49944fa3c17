// A model's decoder blocks materialized one at a time from its source (a memory-mapped file),
// for passes that visit each block once, such as quantization: only the block being worked on
// is resident. Each tensor is copied (dequantized) out of the mapping, whose pages are then
// released, as build_model() does for the whole model.
#pragma once

#include "lcq/io/model_source.h"
#include "lcq/model/model.h"

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

namespace lcq::model {

class BlockLoader {
 public:
  // Checks the configuration and the shape of every dense tensor before any is read (one
  // error naming the file and the tensor).
  BlockLoader(io::ModelSource src, const RuntimeOptions& opts);

  const io::ModelSource& source() const { return src_; }
  const ModelConfig& config() const { return skeleton_.config; }
  int size() const { return skeleton_.config.n_layers; }

  // Block l with dense weights of the runtime's dtype (LCQ layers dequantized), and the
  // activation quantization the file records (unless the runtime options override it).
  Block load(int l) const;

  // The model without blocks, token embedding and head: config, runtime options, RoPE
  // tables, final norm and OPT's learned positions. config.tie_embeddings says whether the
  // head shares the token embedding (as build_model() decides it).
  const Model& skeleton() const { return skeleton_; }

  // The embeddings of tokens [N, L] as Model::embed computes them, reading only the rows of
  // the token embedding the tokens use.
  torch::Tensor embed(const torch::Tensor& tokens) const;

  // "token_embd" or (untied) "output": [vocab, dim].
  std::vector<int64_t> matrix_shape() const;
  // Rows [r0, r1) of it as f32 values of the runtime's precision (out: (r1 - r0) * dim).
  void matrix_rows(const std::string& name, int64_t r0, int64_t r1, float* out) const;
  // The whole of it, of the runtime's dtype.
  torch::Tensor matrix(const std::string& name) const;

 private:
  io::ModelSource src_;
  RuntimeOptions opts_;
  Model skeleton_;
  mutable std::map<std::string, torch::Tensor> dequantized_;  // f32 of matrices stored as codebooks, read once
};

}  // namespace lcq::model
