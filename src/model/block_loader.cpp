#include "lcq/model/block_loader.h"

#include "lcq/core/error.h"
#include "lcq/core/mapped_file.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/model/act_quant.h"
#include "lcq/model/loader.h"
#include "tensor_reader.h"

#include <torch/torch.h>

#include <algorithm>

namespace lcq::model {

BlockLoader::BlockLoader(io::ModelSource src, const RuntimeOptions& opts) : src_(std::move(src)), opts_(opts) {
  opts_.packed = false;  // blocks are read to be computed on and replaced: dense
  const ModelConfig& c = src_.config;
  c.validate(src_.path);
  set_threads(opts_.threads);
  const detail::TensorReader read(src_, opts_);
  for (int l = 0; l < c.n_layers; ++l) read.check_block(l);
  const int64_t D = c.dim;
  if (!io::has_codebook_layer(src_, "token_embd") || src_.find("token_embd.weight"))
    read.view("token_embd.weight", {c.vocab_size, D});
  skeleton_.config = c;
  skeleton_.options = opts_;
  if (c.arch == Arch::OPT) {
    const io::TensorView& pe = src_.get("position_embd.weight");
    skeleton_.pos_embd = read.get("position_embd.weight", {pe.shape.empty() ? 0 : pe.shape[0], D});
  }
  skeleton_.rotation = read.rotation();
  skeleton_.output_norm = read.norm("output_norm");
  // The head as build_model() decides it: a codebook layer or output.weight of its own, else tied.
  if (io::has_codebook_layer(src_, "output") && !src_.find("output.weight")) {
    skeleton_.config.tie_embeddings = false;
  } else if (c.tie_embeddings || !src_.find("output.weight")) {
    skeleton_.config.tie_embeddings = true;
  } else {
    skeleton_.config.tie_embeddings = false;
    read.view("output.weight", {c.vocab_size, D});
  }
  skeleton_.ensure_positions(c.max_seq_len);
}

Block BlockLoader::load(int l) const {
  LCQ_CHECK(l >= 0 && l < size(), "{}: block {} out of range (the model has {})", src_.path, l, size());
  const detail::TensorReader read(src_, opts_);
  Block b = read.block(l);
  const ActQuantConfig act = detail::file_activation_quant(src_, opts_);
  if (act.bits > 0 || act.kv_bits > 0) {
    try {
      set_activation_quant(b, l, act);
    } catch (const Error& e) {
      fail("{}: {}", src_.path, e.what());
    }
  }
  return b;
}

std::vector<int64_t> BlockLoader::matrix_shape() const { return {config().vocab_size, config().dim}; }

void BlockLoader::matrix_rows(const std::string& name, int64_t r0, int64_t r1, float* out) const {
  LCQ_CHECK(name == "token_embd" || (name == "output" && !config().tie_embeddings), "internal: no matrix '{}'", name);
  const int64_t V = config().vocab_size, D = config().dim;
  LCQ_CHECK(r0 >= 0 && r0 <= r1 && r1 <= V, "internal: rows {}..{} of '{}' ({} rows)", r0, r1, name, V);
  if (io::has_codebook_layer(src_, name) && !src_.find(name + ".weight")) {
    auto it = dequantized_.find(name);
    if (it == dequantized_.end()) {
      Linear l;
      detail::TensorReader(src_, opts_).codebook(name, V, D, l);
      it = dequantized_.emplace(name, l.weight.to(torch::kFloat32).contiguous()).first;
    }
    std::copy(it->second.data_ptr<float>() + r0 * D, it->second.data_ptr<float>() + r1 * D, out);
    return;
  }
  const io::TensorView& full = src_.get(name + ".weight");
  io::TensorView rows = full;
  const size_t row_bytes = io::dtype_nbytes(full.dtype, D, src_.path);
  rows.data = full.data + size_t(r0) * row_bytes;
  rows.nbytes = size_t(r1 - r0) * row_bytes;
  rows.shape = {r1 - r0, D};
  io::dequantize(rows, out, src_.path + ": tensor '" + full.name + "'");
  release_file_pages(rows.data, rows.nbytes);
  if (opts_.dtype != torch::kFloat32) {  // the precision a runtime tensor of that dtype has
    torch::Tensor t = torch::from_blob(out, {r1 - r0, D}, torch::kFloat32);
    t.copy_(t.to(opts_.dtype).to(torch::kFloat32));
  }
}

torch::Tensor BlockLoader::matrix(const std::string& name) const {
  LCQ_CHECK(name == "token_embd" || (name == "output" && !config().tie_embeddings), "internal: no matrix '{}'", name);
  const std::vector<int64_t> shape = matrix_shape();
  torch::Tensor w = torch::empty(shape, torch::kFloat32);
  matrix_rows(name, 0, shape[0], w.data_ptr<float>());
  return w.to(skeleton_.tensor_options());
}

torch::Tensor BlockLoader::embed(const torch::Tensor& tokens) const {
  // The rows the tokens use, in a table of their own, and the tokens renumbered into it:
  // the same lookup as in the whole embedding.
  const torch::Tensor ids = tokens.to(torch::kCPU, torch::kInt64).contiguous();
  const auto [used, index] = torch::_unique(ids.flatten(), /*sorted=*/true, /*return_inverse=*/true);
  const int64_t V = config().vocab_size, D = config().dim;
  const int64_t* u = used.data_ptr<int64_t>();
  torch::Tensor table = torch::empty({used.numel(), D}, torch::kFloat32);
  for (int64_t i = 0; i < used.numel(); ++i) {
    LCQ_CHECK(u[i] >= 0 && u[i] < V, "token {} outside the vocabulary of {}", u[i], V);
    matrix_rows("token_embd", u[i], u[i] + 1, table.data_ptr<float>() + i * D);
  }
  Model m = skeleton_;
  m.tok_embd = table.to(m.tensor_options());
  return m.embed(index.view(ids.sizes()));
}

}  // namespace lcq::model
