#include "lcq/model/loader.h"

#include "lcq/core/error.h"
#include "lcq/core/mapped_file.h"
#include "lcq/core/progress.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/kernels/matrix.h"
#include "lcq/model/act_quant.h"
#include "lcq/run/weights.h"
#include "tensor_reader.h"

#include <torch/torch.h>

#include <cstring>

namespace lcq::model {

namespace detail {

namespace {

// Copies an F16 tensor as it is (the compact runtime's embedding and tied head).
torch::Tensor load_tensor_f16(const io::TensorView& view) {
  auto t = torch::empty(view.shape, torch::kHalf);
  std::memcpy(t.data_ptr<at::Half>(), view.data, view.nbytes);
  release_file_pages(view.data, view.nbytes);  // the weights never sit in memory twice
  return t;
}

}  // namespace

TensorReader::TensorReader(const io::ModelSource& src, const RuntimeOptions& opts, Progress* progress)
    : src_(src), opts_(opts), progress_(progress), compact_(opts.packed && opts.device.is_cpu()) {}

const io::TensorView& TensorReader::view(const std::string& name, const std::vector<int64_t>& shape) const {
  const io::TensorView& v = src_.get(name);
  LCQ_CHECK(v.shape == shape, "{}: tensor '{}' has shape [{}], expected [{}] for this architecture", src_.path, name,
            fmt::join(v.shape, ", "), fmt::join(shape, ", "));
  if (progress_) progress_->add();
  return v;
}

torch::Tensor TensorReader::get(const std::string& name, const std::vector<int64_t>& shape) const {
  const io::TensorView& v = view(name, shape);
  auto t = torch::empty(v.shape, torch::kFloat32);
  io::load_tensor_f32(src_, v, t.data_ptr<float>());
  release_file_pages(v.data, v.nbytes);
  return t.to(torch::TensorOptions().dtype(opts_.dtype).device(opts_.device));
}

torch::Tensor TensorReader::get_opt(const std::string& name, const std::vector<int64_t>& shape) const {
  return src_.find(name) ? get(name, shape) : torch::Tensor();
}

ResidualRotation TensorReader::rotation() const {
  ResidualRotation r;
  const io::TensorView* mix = src_.find("residual_rotation.mix");
  if (!mix && !src_.find("residual_rotation.signs")) return r;
  LCQ_CHECK(src_.config.arch == Arch::Llama, "{}: a rotated residual stream (residual_rotation.*) is for LLaMA-family models, not {}",
            src_.path, arch_name(src_.config.arch));
  const int64_t D = src_.config.dim, a = mix && !mix->shape.empty() ? mix->shape[0] : 0;
  r.mix = get("residual_rotation.mix", {a, a}).to(torch::kFloat32).contiguous();
  r.signs = get("residual_rotation.signs", {D}).to(torch::kFloat32).contiguous();
  std::vector<float> m;
  try {
    m = run::expand_rotation(r.mix.data_ptr<float>(), a, r.signs.data_ptr<float>(), D);
  } catch (const Error& e) {
    fail("{}: {}", src_.path, e.what());
  }
  r.matrix = torch::from_blob(m.data(), {D, D}, torch::kFloat32).to(torch::TensorOptions().dtype(opts_.dtype).device(opts_.device)).clone();
  return r;
}

Norm TensorReader::norm(const std::string& prefix) const {
  const int64_t D = src_.config.dim;
  Norm n;
  n.weight = get(prefix + ".weight", {D});
  n.bias = get_opt(prefix + ".bias", {D});
  n.eps = src_.config.norm_eps;
  n.rms = src_.config.arch != Arch::OPT;
  return n;
}

void TensorReader::codebook(const std::string& name, int64_t rows, int64_t cols, Linear& out) const {
  const CodebookLayer cl = io::read_codebook_layer(src_, name, rows, cols);
  if (compact_) {
    out.packed = kernels::make_codebook_matrix(cl, kernels::choose_family(cl, opts_.kernel));
    out.panel_dtype = opts_.prompt_dtype;
  } else {
    auto w = torch::empty({rows, cols}, torch::kFloat32);
    cl.dequantize(w.data_ptr<float>());
    out.weight = w.to(torch::TensorOptions().dtype(opts_.dtype).device(opts_.device));
  }
  if (progress_) progress_->add(io::codebook_tensor_count(src_, name));  // the total counts the file's tensors
}

namespace {

// Block l's linear layers: name, rows, columns.
std::vector<std::tuple<std::string, int64_t, int64_t>> block_linears(const ModelConfig& c) {
  const int64_t D = c.dim, q_dim = int64_t(c.n_heads) * c.head_dim, kv_dim = c.kv_dim();
  std::vector<std::tuple<std::string, int64_t, int64_t>> out = {
      {"attn_q", q_dim, D}, {"attn_k", kv_dim, D}, {"attn_v", kv_dim, D}, {"attn_output", D, q_dim}};
  if (c.arch != Arch::OPT) out.emplace_back("ffn_gate", c.hidden_dim, D);
  out.emplace_back("ffn_up", c.hidden_dim, D);
  out.emplace_back("ffn_down", D, c.hidden_dim);
  return out;
}

Linear& linear_of(Block& b, const std::string& name) {
  if (name == "attn_q") return b.q;
  if (name == "attn_k") return b.k;
  if (name == "attn_v") return b.v;
  if (name == "attn_output") return b.o;
  if (name == "ffn_gate") return b.gate;
  if (name == "ffn_up") return b.up;
  return b.down;
}

}  // namespace

Block TensorReader::block(int l) const {
  const std::string p = "blk." + std::to_string(l) + ".";
  Block b;
  b.attn_norm = norm(p + "attn_norm");
  b.ffn_norm = norm(p + "ffn_norm");
  for (const auto& [name, out, in] : block_linears(src_.config)) {
    Linear& x = linear_of(b, name);
    const std::string base = p + name;
    if (!src_.find(base + ".weight") && io::has_codebook_layer(src_, base))
      codebook(base, out, in, x);  // an LCQ layer
    else
      x.weight = get(base + ".weight", {out, in});
    x.bias = get_opt(base + ".bias", {out});
  }
  return b;
}

void TensorReader::check_block(int l) const {
  const std::string p = "blk." + std::to_string(l) + ".";
  const int64_t D = src_.config.dim;
  auto check_opt = [&](const std::string& name, const std::vector<int64_t>& shape) {
    if (src_.find(name)) view(name, shape);
  };
  for (const char* n : {"attn_norm", "ffn_norm"}) {
    view(p + n + ".weight", {D});
    check_opt(p + n + ".bias", {D});
  }
  for (const auto& [name, out, in] : block_linears(src_.config)) {
    const std::string base = p + name;
    if (src_.find(base + ".weight") || !io::has_codebook_layer(src_, base)) view(base + ".weight", {out, in});
    check_opt(base + ".bias", {out});
  }
}

ActQuantConfig file_activation_quant(const io::ModelSource& src, const RuntimeOptions& opts) {
  ActQuantConfig act = act_quant_from_metadata(src.metadata, src.path).value_or(ActQuantConfig{});
  if (opts.act_bits >= 0) act.bits = opts.act_bits;
  if (opts.act_scheme) act.scheme = *opts.act_scheme;
  if (opts.kv_bits >= 0) act.kv_bits = opts.kv_bits;
  return act;
}

}  // namespace detail

void set_threads(int threads) {
  if (threads > 0) torch::set_num_threads(threads);
}

Model build_model(const io::ModelSource& src, const RuntimeOptions& opts) {
  const ModelConfig& c = src.config;
  c.validate(src.path);
  set_threads(opts.threads);
  Model m;
  m.config = c;
  m.options = opts;

  Progress progress("loading " + src.path, int64_t(src.tensors.size()));
  const detail::TensorReader read(src, opts, &progress);
  const int64_t D = c.dim;
  if (io::has_codebook_layer(src, "token_embd") && !src.find("token_embd.weight")) {
    Linear e;
    read.codebook("token_embd", c.vocab_size, D, e);
    m.tok_embd = e.weight;
    m.tok_embd_packed = e.packed;
  } else {
    const io::TensorView& embd = read.view("token_embd.weight", {c.vocab_size, D});
    if (read.compact() && embd.dtype == io::DType::F16) {
      m.tok_embd = detail::load_tensor_f16(embd);
    } else {
      m.tok_embd = torch::empty(embd.shape, torch::kFloat32);
      io::load_tensor_f32(src, embd, m.tok_embd.data_ptr<float>());
      release_file_pages(embd.data, embd.nbytes);
      m.tok_embd = m.tok_embd.to(m.tensor_options());
    }
  }
  if (c.arch == Arch::OPT) {
    const io::TensorView& pe = src.get("position_embd.weight");
    m.pos_embd = read.get("position_embd.weight", {pe.shape.empty() ? 0 : pe.shape[0], D});
  }
  m.rotation = read.rotation();
  for (int l = 0; l < c.n_layers; ++l) m.blocks.push_back(read.block(l));
  m.output_norm = read.norm("output_norm");
  if (io::has_codebook_layer(src, "output") && !src.find("output.weight")) {
    m.config.tie_embeddings = false;
    read.codebook("output", c.vocab_size, D, m.output);
  } else if (c.tie_embeddings || !src.find("output.weight")) {
    m.config.tie_embeddings = true;
    m.output.weight = m.tok_embd;
    m.output.packed = m.tok_embd_packed;
    m.output.panel_dtype = opts.prompt_dtype;
  } else {
    m.output.weight = read.get("output.weight", {c.vocab_size, D});
  }
  progress.finish();
  m.ensure_positions(c.max_seq_len);
  const ActQuantConfig act = detail::file_activation_quant(src, opts);
  if (act.bits > 0 || act.kv_bits > 0) {
    try {
      set_activation_quant(m, act);
    } catch (const Error& e) {
      fail("{}: {}", src.path, e.what());
    }
  }
  return m;
}

const tokenizer::Tokenizer& LoadedModel::tok() const {
  LCQ_CHECK(tokenizer != nullptr, "{}: no tokenizer found in or beside the model; pass --tokenizer FILE", path);
  return *tokenizer;
}

LoadedModel load_model(const std::string& path, const io::LoadOptions& load, const RuntimeOptions& opts) {
  io::ModelSource src = io::load_model_source(path, load);
  LoadedModel lm;
  lm.path = path;
  lm.format = src.format;
  lm.metadata = src.metadata;
  lm.tokenizer = make_model_tokenizer(src);
  lm.model = build_model(src, opts);
  return lm;
}

std::unique_ptr<tokenizer::Tokenizer> make_model_tokenizer(const io::ModelSource& src) {
  if (src.vocab.empty()) return nullptr;
  auto tok = tokenizer::make_tokenizer(src.vocab);
  LCQ_CHECK(tok->size() <= src.config.vocab_size || src.config.vocab_size == 0,
            "{}: tokenizer has {} tokens but the model only {}", src.path, tok->size(), src.config.vocab_size);
  return tok;
}

}  // namespace lcq::model
