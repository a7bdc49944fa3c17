#include "lcq/quant/quantize.h"

#include "lcq/core/error.h"
#include "lcq/core/named.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/io/writers.h"
#include "per_linear_method.h"

#include <chrono>
#include <cmath>
#include <deque>

namespace lcq::quant {

namespace {


// Calls fn(name, tensor) for every weight of the model (canonical names; undefined tensors
// included, e.g. absent biases).
template <typename Fn>
void for_each_tensor(const model::Model& m, Fn fn) {
  fn("token_embd.weight", m.tok_embd);
  fn("position_embd.weight", m.pos_embd);
  fn("residual_rotation.mix", m.rotation.mix);
  fn("residual_rotation.signs", m.rotation.signs);
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    const model::Block& b = m.blocks[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    fn(p + "attn_norm.weight", b.attn_norm.weight);
    fn(p + "attn_norm.bias", b.attn_norm.bias);
    fn(p + "ffn_norm.weight", b.ffn_norm.weight);
    fn(p + "ffn_norm.bias", b.ffn_norm.bias);
    for (const auto& [name, lin] : b.linears()) {
      fn(p + name + ".weight", lin->weight);
      fn(p + name + ".bias", lin->bias);
    }
  }
  fn("output_norm.weight", m.output_norm.weight);
  fn("output_norm.bias", m.output_norm.bias);
  if (!m.config.tie_embeddings) fn("output.weight", m.output.weight);
}

const Named<Method> kMethods[] = {{Method::kLcq, "lcq"},           {Method::kRtn, "rtn"},
                                  {Method::kGptq, "gptq"},         {Method::kAwq, "awq"},
                                  {Method::kOmniQuant, "omniquant"}, {Method::kFlexRound, "flexround"},
                                  {Method::kLrq, "lrq"}};

}  // namespace

const std::vector<std::string>& method_names() {
  static const auto v = names_of(kMethods);
  return v;
}
Method parse_method(const std::string& name) { return parse_named(kMethods, name, "--method"); }
std::string to_string(Method m) { return name_of(kMethods, m); }

bool is_learned_grid(Method m) { return m == Method::kOmniQuant || m == Method::kFlexRound || m == Method::kLrq; }
bool is_rank_one_method(Method m) { return m == Method::kRtn || m == Method::kGptq || m == Method::kAwq; }
bool is_trained_method(Method m) { return m == Method::kLcq || is_learned_grid(m); }

void validate(const QuantizeOptions& o) {
  validate(o.lcq);
  validate(o.flexround);
  validate(o.embedding);
  LCQ_CHECK(o.lr >= 0 && std::isfinite(o.lr), "--lr must be positive (0 = the method's default), got {}", o.lr);
  LCQ_CHECK(o.method == Method::kLcq || is_grid_init(o.lcq.init),
            "--init {} starts LCQ from that method's result: it needs --method lcq (got --method {})", to_string(o.lcq.init),
            to_string(o.method));
  LCQ_CHECK(o.init_from.empty() || o.method == Method::kLcq, "--init-from starts LCQ from a file: it needs --method lcq (got --method {})",
            to_string(o.method));
  LCQ_CHECK(o.init_from.empty() || is_grid_init(o.lcq.init),
            "--init-from and --init {} both name LCQ's start: give one", to_string(o.lcq.init));
  if (!o.layer_bits.empty()) check_size_target_applies(o);
  for (const auto& [name, bits] : o.layer_bits)
    LCQ_CHECK(bits >= 1 && bits <= 8, "layer {}: {} bits (1 to 8 allowed)", name, bits);
  if (o.method == Method::kGptq || o.lcq.init == LcqInit::kGptq) validate(o.gptq, o.lcq);
  if (o.method == Method::kAwq || o.lcq.init == LcqInit::kAwq) validate(o.awq, o.lcq);
  LCQ_CHECK(o.lr_scale > 0 && o.lr_codebook > 0 && std::isfinite(o.lr_scale) && std::isfinite(o.lr_codebook),
            "learning rates must be positive and finite, got --lr-scale {} and --lr-codebook {}", o.lr_scale,
            o.lr_codebook);
  LCQ_CHECK(o.engine.epochs >= 0, "--epochs must be >= 0, got {}", o.engine.epochs);
  LCQ_CHECK(o.engine.batch_size >= 1, "--batch-size must be >= 1, got {}", o.engine.batch_size);
  LCQ_CHECK(o.engine.loss_samples >= 0, "--loss-samples must be >= 0, got {}", o.engine.loss_samples);
}

int default_epochs(Method m, int bits) {
  if (m == Method::kOmniQuant) return bits < 3 ? 40 : 20;
  if (m == Method::kFlexRound || m == Method::kLrq) return 20;
  return 2;
}

LcqInit default_init(Method m) { return m == Method::kLcq ? LcqInit::kGptq : LcqInit::kWmse; }

QuantizeOptions default_recipe() {
  QuantizeOptions o;
  o.method = Method::kLcq;
  o.lcq.bits = 4;
  o.lcq.group = 64;
  o.lcq.rank = 2;
  o.lcq.init = default_init(o.method);
  o.gptq.grid = LcqInit::kWmse;
  o.gptq.act_order = true;
  o.embedding.bits = 6;
  o.embedding.group = 64;
  o.embedding.rounding = EmbeddingRounding::kGptq;
  o.engine.epochs = default_epochs(o.method, o.lcq.bits);
  return o;
}

void check_size_target_applies(const QuantizeOptions& o) {
  const bool method = o.method == Method::kLcq || o.method == Method::kRtn || o.method == Method::kGptq;
  LCQ_CHECK(method && o.init_from.empty() && (is_grid_init(o.lcq.init) || o.lcq.init == LcqInit::kGptq),
            "a size target (--target-size, --target-bpw) allocates bits for --method lcq, rtn or gptq from the rtn, "
            "mse, wmse or gptq start, not {}",
            !method               ? "--method " + to_string(o.method)
            : o.init_from.empty() ? "--init " + to_string(o.lcq.init)
                                  : std::string("--init-from"));
}

LcqInit start_grid_kind(const QuantizeOptions& o) {
  return o.method == Method::kGptq || o.lcq.init == LcqInit::kGptq ? o.gptq.grid : o.lcq.init;
}

double default_lr(Method m) { return m == Method::kOmniQuant ? 1e-2 : 3e-3; }

std::unique_ptr<BlockMethod> make_block_method(const QuantizeOptions& o, const model::Model& m) {
  const bool train = o.engine.epochs > 0;
  const double lr = o.lr > 0 ? o.lr : default_lr(o.method);
  if (o.method == Method::kOmniQuant) return make_omniquant_method(o.lcq, lr, train);
  if (o.method == Method::kFlexRound || o.method == Method::kLrq)
    return make_flexround_method(o.lcq, o.flexround, o.method == Method::kLrq, lr, train, o.engine.seed, &m);
  if (o.method == Method::kGptq) return make_gptq_method(m, o.lcq, o.gptq, o.engine.progress, o.layer_bits);
  if (o.method == Method::kAwq) return make_awq_method(m, o.lcq, o.awq, o.engine.progress);
  // lcq, and rtn as untrained rank-one lcq. One generator for the whole run (a handle:
  // copies share its state).
  torch::Generator gen = at::detail::createCPUGenerator(o.engine.seed);
  std::vector<double> lrs = {o.lr_scale, o.lr_codebook};
  LcqOptions lcq = o.lcq;
  lcq.bf16_steps = resolve_train_dtype(o.engine.train_dtype) == TrainDtype::Bf16;
  if (!o.init_from.empty()) return make_lcq_method_from(make_file_start(o.init_from, m, o.lcq), lcq, lrs, train, gen);
  if (!is_grid_init(o.lcq.init)) {
    LcqOptions rank_one = o.lcq;
    rank_one.rank = 1;
    rank_one.init = LcqInit::kRtn;
    auto start = o.lcq.init == LcqInit::kGptq ? make_gptq_method(m, rank_one, o.gptq, o.engine.progress, o.layer_bits)
                                      : make_awq_method(m, rank_one, o.awq, o.engine.progress);
    return make_lcq_method_from(std::move(start), lcq, lrs, train, gen);
  }
  return make_lcq_method(lcq, lrs, train, gen, o.layer_bits, &m);
}

namespace {

// The token embedding and (untied) output head as codebook layers "token_embd" and "output";
// the model keeps their dequantized weights, as the blocks keep theirs.
void quantize_embeddings(model::Model& m, const EmbeddingOptions& o, const torch::Tensor& head_gram,
                         std::map<std::string, CodebookLayer>& layers) {
  torch::NoGradGuard ng;
  auto quantize = [&](const std::string& name, const torch::Tensor& w) {
    CodebookLayer l = quantize_embedding(w, options_for(o, name, m.config.tie_embeddings), head_gram);
    torch::Tensor dq = torch::empty({l.rows, l.cols}, torch::kFloat32);
    l.dequantize(dq.data_ptr<float>());
    layers.emplace(name, std::move(l));
    return dq.to(w.options());
  };
  const bool tied = m.config.tie_embeddings;
  m.tok_embd = quantize("token_embd", m.tok_embd);
  if (tied)
    m.output.weight = m.tok_embd;
  else
    m.output.weight = quantize("output", m.output.weight);
}

}  // namespace

void prepare(QuantizeOptions& o, bool calibrated) {
  validate(o);
  if (is_rank_one_method(o.method)) {  // RTN is rank-one LCQ from the min-max grid, untrained; GPTQ and AWQ start there
    o.lcq.rank = 1;
    o.lcq.init = LcqInit::kRtn;
    o.engine.epochs = 0;
  }
  if (is_learned_grid(o.method)) o.lcq.rank = 1;
  LCQ_CHECK(calibrated || (o.method != Method::kGptq && o.method != Method::kAwq), "--method {} needs calibration data (--calib FILE)",
            to_string(o.method));
  LCQ_CHECK(calibrated || is_grid_init(o.lcq.init), "--init {} needs calibration data (--calib FILE)",
            to_string(o.lcq.init));
  LCQ_CHECK(calibrated || o.engine.epochs == 0, "method '{}' needs calibration data (--calib)", to_string(o.method));
}

namespace {

// Bits per weight over the block linears ("blk.*"; not the embedding or head), as files and
// reports state it.
struct BlockBits {
  double bits = 0;
  int64_t weights = 0;
  void add(const std::string& name, const CodebookLayer& l) {
    if (name.rfind("blk.", 0) != 0) return;
    bits += l.bits_per_weight() * double(l.rows * l.cols);
    weights += l.rows * l.cols;
  }
  double per_weight() const { return weights ? bits / double(weights) : 0; }
};

}  // namespace

void summarize(QuantizeResult& r, const std::map<std::string, CodebookLayer>& layers) {
  BlockBits b;
  for (const auto& [name, l] : layers) b.add(name, l);
  r.bits_per_weight = b.per_weight();
  r.quantized_weights = b.weights;
  r.layer_count = int64_t(layers.size());
}

std::map<std::string, CodebookLayer> quantize_block_uncalibrated(BlockMethod& method, int l, model::Block& block) {
  torch::NoGradGuard ng;
  method.begin_block(l, block, {});
  auto layers = method.end_block(block);
  for (const auto& [name, lin] : block.linears())  // e.g. a grid overflowing on huge weights
    LCQ_CHECK(torch::isfinite(lin->weight).all().item<bool>(), "the quantized weight '{}' contains NaN or infinite values",
              model::layer_name(l, name) + ".weight");
  return layers;
}

QuantizeResult quantize_model(model::Model& m, const torch::Tensor& calib, const QuantizeOptions& opts) {
  QuantizeOptions o = opts;
  prepare(o, calib.defined());
  // NaN or infinite values would silently poison every codebook, or be copied into the
  // output (norms, biases, the embedding): refuse before any work.
  for_each_tensor(m, [](const std::string& name, const torch::Tensor& t) {
    LCQ_CHECK(!t.defined() || torch::isfinite(t).all().item<bool>(), "tensor '{}' contains NaN or infinite values",
              name);
  });

  const auto t0 = std::chrono::steady_clock::now();
  QuantizeResult r;
  const std::unique_ptr<BlockMethod> method_ptr = make_block_method(o, m);
  BlockMethod& method = *method_ptr;
  torch::Tensor head_gram;
  if (calib.defined()) {
    ReconstructResult rr = reconstruct(m, calib, method, o.engine, r.layers);
    r.blocks = std::move(rr.blocks);
    head_gram = rr.head_gram;
  } else {
    for (size_t l = 0; l < m.blocks.size(); ++l)
      for (auto& [name, layer] : quantize_block_uncalibrated(method, int(l), m.blocks[l]))
        r.layers.emplace(name, std::move(layer));
  }
  if (o.embedding.bits > 0) quantize_embeddings(m, o.embedding, head_gram, r.layers);
  summarize(r, r.layers);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<std::string> model_tensor_names(const ModelConfig& c, int n_blocks) {
  std::vector<std::string> out = {"token_embd.weight", "position_embd.weight", "residual_rotation.mix",
                                  "residual_rotation.signs"};
  std::vector<std::string> linears = {"attn_q", "attn_k", "attn_v", "attn_output"};
  if (c.arch != Arch::OPT) linears.push_back("ffn_gate");
  linears.push_back("ffn_up");
  linears.push_back("ffn_down");
  for (int l = 0; l < n_blocks; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* n : {"attn_norm.weight", "attn_norm.bias", "ffn_norm.weight", "ffn_norm.bias"}) out.push_back(p + n);
    for (const auto& name : linears) {
      out.push_back(p + name + ".weight");
      out.push_back(p + name + ".bias");
    }
  }
  out.push_back("output_norm.weight");
  out.push_back("output_norm.bias");
  if (!c.tie_embeddings) out.push_back("output.weight");
  return out;
}

namespace {

// The model's tensors by canonical name as f32 buffers (kept alive in `storage`), stored as
// `dtype` (matrices) or `embedding_dtype` (token embedding and output head); norms and biases
// stay f32. Linear layers present in `skip` are left out.
std::map<std::string, io::WriteTensor> dense_tensors(const model::Model& m,
                                                     const std::map<std::string, CodebookLayer>* skip,
                                                     io::DType dtype, io::DType embedding_dtype,
                                                     std::deque<torch::Tensor>& storage) {
  std::map<std::string, io::WriteTensor> out;
  auto add_as = [&](const std::string& name, const torch::Tensor& t, io::DType matrix_dtype) {
    if (!t.defined()) return;
    storage.push_back(t.detach().to(torch::kFloat32).contiguous());
    const torch::Tensor& c = storage.back();
    io::WriteTensor w;
    w.name = name;
    w.shape = c.sizes().vec();
    w.dtype = c.dim() >= 2 ? matrix_dtype : io::DType::F32;
    w.f32 = c.data_ptr<float>();
    out.emplace(name, std::move(w));
  };
  auto add = [&](const std::string& name, const torch::Tensor& t) { add_as(name, t, dtype); };
  if (!skip || !skip->count("token_embd")) add_as("token_embd.weight", m.tok_embd, embedding_dtype);
  add("position_embd.weight", m.pos_embd);
  add_as("residual_rotation.mix", m.rotation.mix, io::DType::F32);  // a 2-D tensor kept f32 in any file
  add("residual_rotation.signs", m.rotation.signs);
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    const model::Block& b = m.blocks[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", b.attn_norm.weight);
    add(p + "attn_norm.bias", b.attn_norm.bias);
    add(p + "ffn_norm.weight", b.ffn_norm.weight);
    add(p + "ffn_norm.bias", b.ffn_norm.bias);
    for (const auto& [name, lin] : b.linears()) {
      if (!skip || !skip->count(p + name)) add(p + name + ".weight", lin->weight);
      add(p + name + ".bias", lin->bias);
    }
  }
  add("output_norm.weight", m.output_norm.weight);
  add("output_norm.bias", m.output_norm.bias);
  if (!m.config.tie_embeddings && (!skip || !skip->count("output"))) add_as("output.weight", m.output.weight, embedding_dtype);
  return out;
}

}  // namespace

std::vector<io::WriteTensor> in_file_order(const ModelConfig& c, int n_blocks,
                                           std::map<std::string, io::WriteTensor> by_name) {
  std::vector<io::WriteTensor> out;
  for (const std::string& name : model_tensor_names(c, n_blocks)) {
    auto it = by_name.find(name);
    if (it == by_name.end()) continue;
    out.push_back(std::move(it->second));
    by_name.erase(it);
  }
  LCQ_CHECK(by_name.empty(), "internal: tensor '{}' has no place in the file", by_name.begin()->first);
  return out;
}

void write_quantized_file(const std::string& path, const ModelConfig& config, const tokenizer::Vocab& vocab,
                          std::vector<io::WriteTensor> tensors, const std::map<std::string, QuantizedLayer>& layers,
                          const nlohmann::json& extra) {
  LCQ_CHECK(!layers.empty(), "{}: nothing was quantized", path);
  for (const auto& [name, l] : layers) tensors.insert(tensors.end(), l.tensors.begin(), l.tensors.end());
  io::WriteOptions wo;
  wo.extra_metadata = extra;
  // The model-wide settings are the first block linear's (names sort "blk." first).
  const nlohmann::json common = io::codebook_metadata(*layers.begin()->second.layer);
  for (const auto& [k, v] : common.items()) wo.extra_metadata[k] = v;
  // Per-layer keys where a layer differs from the model-wide settings.
  BlockBits bits;
  for (const auto& [name, q] : layers) {
    const nlohmann::json own = io::codebook_metadata(*q.layer);
    for (const auto& [k, v] : own.items())
      if (k != "lcq.format_version" && common.at(k) != v) wo.extra_metadata["lcq.layer." + name + k.substr(3)] = v;
    bits.add(name, *q.layer);
  }
  wo.extra_metadata["lcq.bits_per_weight"] = bits.per_weight();
  io::write_gguf_model(path, config, tensors, vocab, wo);
}

void write_quantized_model(const std::string& path, const model::Model& m, const tokenizer::Vocab& vocab,
                           const QuantizeResult& q, const nlohmann::json& extra) {
  LCQ_CHECK(!q.layers.empty(), "{}: nothing was quantized", path);
  std::deque<torch::Tensor> dense_storage;
  std::deque<std::vector<uint8_t>> raw_storage;
  // The embedding (and head) in fp16: at low bits it would otherwise be most of the file, and
  // the packed runtime keeps it in fp16 (docs/lcq-format.md).
  auto dense = dense_tensors(m, &q.layers, io::DType::F32, io::DType::F16, dense_storage);
  std::map<std::string, QuantizedLayer> layers;
  for (const auto& [name, layer] : q.layers) {
    QuantizedLayer& out = layers[name];
    out.layer = &layer;
    io::add_codebook_tensors(name, layer, out.tensors, raw_storage);
  }
  write_quantized_file(path, m.config, vocab, in_file_order(m.config, int(m.blocks.size()), std::move(dense)), layers,
                       extra);
}

void write_dense_file(const std::string& path, const ModelConfig& config, const tokenizer::Vocab& vocab,
                      const std::vector<io::WriteTensor>& tensors, const nlohmann::json& extra) {
  io::WriteOptions wo;
  wo.extra_metadata = extra;
  const bool gguf = path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
  if (gguf)
    io::write_gguf_model(path, config, tensors, vocab, wo);
  else
    io::write_hf_model(path, config, tensors, vocab, wo);
}

void write_dense_model(const std::string& path, const model::Model& m, const tokenizer::Vocab& vocab,
                       io::DType dtype, const nlohmann::json& extra) {
  std::deque<torch::Tensor> storage;
  auto tensors = dense_tensors(m, nullptr, dtype, dtype, storage);
  write_dense_file(path, m.config, vocab, in_file_order(m.config, int(m.blocks.size()), std::move(tensors)), extra);
}

uint64_t quantized_file_other_bytes(const model::Model& m, const tokenizer::Vocab& vocab, const QuantizeOptions& o,
                                    const nlohmann::json& extra, bool count_embedding) {
  const bool embedding = o.embedding.bits > 0, tied = m.config.tie_embeddings;
  std::map<std::string, CodebookLayer> skip;  // what is not stored densely
  for (size_t l = 0; l < m.blocks.size(); ++l)
    for (const auto& [name, lin] : m.blocks[l].linears()) skip.emplace(model::layer_name(l, name), CodebookLayer());
  if (embedding) {
    skip.emplace("token_embd", CodebookLayer());
    if (!tied) skip.emplace("output", CodebookLayer());
  }
  std::deque<torch::Tensor> storage;
  auto dense = dense_tensors(m, &skip, io::DType::F32, io::DType::F16, storage);
  // The keys write_quantized_file adds: the model-wide codebook settings and the bits per
  // weight (an f64).
  io::WriteOptions wo;
  wo.extra_metadata = extra;
  const CodebookLayer like =
      CodebookLayer::shaped(1, o.lcq.group, o.lcq.bits, o.lcq.group, o.lcq.rank, o.lcq.dq_bits, o.lcq.dq_group);
  const nlohmann::json common = io::codebook_metadata(like);
  for (const auto& [k, v] : common.items()) wo.extra_metadata[k] = v;
  wo.extra_metadata["lcq.bits_per_weight"] = 1.0 / 3.0;
  uint64_t n = io::gguf_model_bytes(m.config, in_file_order(m.config, int(m.blocks.size()), std::move(dense)), vocab,
                                    wo);
  // Every linear may carry a group key (narrower than the group) besides the bits key its
  // allocation counts; the embedding and head may differ in every setting.
  for (const auto& [name, unused] : skip) {
    if (name.rfind("blk.", 0) == 0) {
      n += io::codebook_key_bytes(name, "group_size");
      continue;
    }
    if (!count_embedding) continue;
    const torch::Tensor& w = name == "token_embd" ? m.tok_embd : m.output.weight;
    n += io::codebook_file_bytes(name, CodebookLayer::shaped(w.size(0), w.size(1), o.embedding.bits, o.embedding.group,
                                                             1, o.embedding.dq_bits, o.embedding.dq_group));
    n += io::codebook_all_keys_bytes(name);
  }
  // The header's padding to the alignment may grow by up to alignment - 1 bytes as the
  // quantized layers' tensor infos join it.
  return n + 31;
}

nlohmann::json to_json(const QuantizeResult& r) {
  nlohmann::json blocks = nlohmann::json::array();
  for (const auto& b : r.blocks) blocks.push_back(to_json(b));
  return {{"seconds", r.seconds},
          {"bits_per_weight", r.bits_per_weight},
          {"quantized_weights", r.quantized_weights},
          {"layers", r.layer_count},
          {"blocks", blocks}};
}

}  // namespace lcq::quant
