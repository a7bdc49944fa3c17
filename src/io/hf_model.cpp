// Hugging Face model directories: config.json, model.safetensors (or shards listed in
// model.safetensors.index.json), tokenizer.json / tokenizer.model and tokenizer_config.json.
// Llama-family models (llama, mistral, qwen2) and OPT. Tensors are renamed to canonical names
// and checked against the shapes the config implies; q/k keep Hugging Face's rotate-half order.
#include "formats.h"
#include "hf_json.h"
#include "hf_names.h"
#include "lcq/core/error.h"
#include "lcq/core/printable.h"
#include "lcq/io/safetensors.h"

#include <filesystem>
#include <map>
#include <set>

namespace lcq::io {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace hf;

RopeScaling parse_rope_scaling(const json& cfg, const std::string& where) {
  RopeScaling rs;
  auto it = cfg.find("rope_scaling");
  if (it == cfg.end() || it->is_null()) return rs;
  LCQ_CHECK(it->is_object(), "{}: 'rope_scaling' must be an object", where);
  const json& r = *it;
  std::string type = json_string(r, "rope_type", where, "");
  if (type.empty()) type = json_string(r, "type", where, "");
  if (type.empty() || type == "default") return rs;
  if (type == "linear") {
    rs.type = "linear";
    rs.factor = json_float(r, "factor", where);
  } else if (type == "llama3") {
    rs.type = "llama3";
    rs.factor = json_float(r, "factor", where);
    rs.low_freq_factor = json_float(r, "low_freq_factor", where, 1.0f);
    rs.high_freq_factor = json_float(r, "high_freq_factor", where, 4.0f);
    rs.original_max_position = json_int(r, "original_max_position_embeddings", where, 8192);
  } else {
    fail("{}: unsupported rope_scaling type '{}' (supported: linear, llama3)", where, printable(type));
  }
  return rs;
}

ModelConfig parse_llama_config(const json& cfg, const std::string& type, const std::string& where) {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.family = type;
  c.dim = json_int(cfg, "hidden_size", where);
  c.hidden_dim = json_int(cfg, "intermediate_size", where);
  c.n_layers = json_int(cfg, "num_hidden_layers", where);
  c.n_heads = json_int(cfg, "num_attention_heads", where);
  c.n_kv_heads = json_int(cfg, "num_key_value_heads", where, c.n_heads);
  LCQ_CHECK(c.n_heads > 0, "{}: num_attention_heads must be positive", where);
  c.head_dim = json_int(cfg, "head_dim", where, c.dim / c.n_heads);
  c.vocab_size = json_int(cfg, "vocab_size", where);
  c.max_seq_len = json_int(cfg, "max_position_embeddings", where);
  c.norm_eps = json_float(cfg, "rms_norm_eps", where, 1e-6f);
  c.rope_theta = json_float(cfg, "rope_theta", where, 10000.0f);
  c.rope_scaling = parse_rope_scaling(cfg, where);
  c.tie_embeddings = json_bool(cfg, "tie_word_embeddings", where, false);
  const std::string act = json_string(cfg, "hidden_act", where, "silu");
  LCQ_CHECK(act == "silu", "{}: unsupported hidden_act '{}' (only silu)", where, printable(act));
  c.activation = "silu";
  if (type == "qwen2") {
    c.attn_qkv_bias = true;  // Qwen2 always has q/k/v biases and none on o_proj
  } else {
    c.attn_qkv_bias = c.attn_out_bias = json_bool(cfg, "attention_bias", where, false);
  }
  c.mlp_bias = json_bool(cfg, "mlp_bias", where, false);
  return c;
}

ModelConfig parse_opt_config(const json& cfg, const std::string& where) {
  ModelConfig c;
  c.arch = Arch::OPT;
  c.family = "opt";
  c.dim = json_int(cfg, "hidden_size", where);
  c.hidden_dim = json_int(cfg, "ffn_dim", where);
  c.n_layers = json_int(cfg, "num_hidden_layers", where);
  c.n_heads = c.n_kv_heads = json_int(cfg, "num_attention_heads", where);
  LCQ_CHECK(c.n_heads > 0, "{}: num_attention_heads must be positive", where);
  c.head_dim = c.dim / c.n_heads;
  c.vocab_size = json_int(cfg, "vocab_size", where);
  c.max_seq_len = json_int(cfg, "max_position_embeddings", where);
  c.norm_eps = 1e-5f;  // OPT's LayerNorm uses torch's default epsilon
  c.tie_embeddings = json_bool(cfg, "tie_word_embeddings", where, true);
  c.opt_pre_layer_norm = json_bool(cfg, "do_layer_norm_before", where, true);
  const std::string act = json_string(cfg, "activation_function", where, "relu");
  LCQ_CHECK(act == "relu", "{}: unsupported OPT activation_function '{}' (only relu)", where, printable(act));
  c.activation = "relu";
  c.attn_qkv_bias = c.attn_out_bias = c.mlp_bias = json_bool(cfg, "enable_bias", where, true);
  const int proj = json_int(cfg, "word_embed_proj_dim", where, c.dim);
  LCQ_CHECK(proj == c.dim,
            "{}: unsupported: OPT with project_in/out (word_embed_proj_dim {} != hidden_size {})", where,
            proj, c.dim);
  LCQ_CHECK(json_bool(cfg, "layer_norm_elementwise_affine", where, true),
            "{}: unsupported: OPT layer norms without weights", where);
  LCQ_CHECK(!json_bool(cfg, "_remove_final_layer_norm", where, false),
            "{}: unsupported: OPT with _remove_final_layer_norm", where);
  return c;
}

// The safetensors files holding the weights: model.safetensors, or the shards named by the
// index (each listed tensor must be in the shard the index names).
std::vector<SafetensorsFile> open_weights(const fs::path& dir) {
  const fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::is_regular_file(index, ec)) {
    const std::string where = index.string();
    const json idx = read_json(where);
    auto wm = idx.find("weight_map");
    LCQ_CHECK(wm != idx.end() && wm->is_object() && !wm->empty(), "{}: missing or empty 'weight_map'", where);
    std::map<std::string, std::vector<std::string>> by_shard;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      LCQ_CHECK(it->is_string(), "{}: weight_map entry '{}' is not a file name", where, printable(it.key()));
      const std::string shard = it->get<std::string>();
      LCQ_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..",
                "{}: shard name '{}' must be a plain file name in the model directory", where, printable(shard));
      by_shard[shard].push_back(it.key());
    }
    std::vector<SafetensorsFile> files;
    for (const auto& [shard, names] : by_shard) {
      const fs::path p = dir / shard;
      LCQ_CHECK(fs::is_regular_file(p, ec), "{}: shard '{}' does not exist", where, printable(shard));
      files.push_back(read_safetensors(p.string()));
      for (const std::string& n : names)
        LCQ_CHECK(files.back().find(n), "{}: the index lists tensor '{}' but the shard does not hold it",
                  p.string(), printable(n));
    }
    return files;
  }
  if (fs::is_regular_file(single, ec)) return {read_safetensors(single.string())};
  if (fs::exists(dir / "pytorch_model.bin", ec))
    fail("{}: only safetensors weights are supported (found pytorch_model.bin; convert it to safetensors)",
         dir.string());
  fail("{}: no model.safetensors or model.safetensors.index.json", dir.string());
}

void collect_tensors(ModelSource& src, std::vector<SafetensorsFile>& files, const std::string& model_type) {
  const ModelConfig& c = src.config;
  const ExpectedTensors expected = expected_tensors(c);
  std::map<std::string, const std::vector<int64_t>*> wanted;
  for (const auto& [name, shape] : expected) wanted[name] = &shape;

  std::map<std::string, TensorView> found;
  for (const SafetensorsFile& f : files) {
    for (const TensorView& v : f.tensors) {
      const std::string canonical = to_canonical(v.name, c.arch);
      if (canonical.empty()) {
        if (is_harmless_extra(v.name)) continue;
        fail("{}: unknown tensor '{}' for a {} model", f.path, printable(v.name), model_type);
      }
      if (canonical == "output.weight" && c.tie_embeddings) continue;  // tied: the embedding serves
      auto w = wanted.find(canonical);
      LCQ_CHECK(w != wanted.end(), "{}: tensor '{}' does not fit the model that config.json describes",
                f.path, printable(v.name));
      LCQ_CHECK(found.count(canonical) == 0, "{}: tensor '{}' is stored twice", f.path, printable(v.name));
      LCQ_CHECK(shape_matches(*w->second, v.shape), "{}: tensor '{}' has shape {}, config.json implies {}",
                f.path, printable(v.name), shape_str(v.shape), shape_str(*w->second));
      LCQ_CHECK(dtype_is_float_convertible(v.dtype),
                "{}: tensor '{}' has type {}; only float tensors are supported", f.path, printable(v.name),
                dtype_name(v.dtype));
      TensorView cv = v;
      cv.name = canonical;
      found.emplace(canonical, std::move(cv));
    }
  }
  for (const auto& [name, shape] : expected) {
    auto it = found.find(name);
    if (it == found.end()) {
      if (name == "output.weight")
        fail("{}: lm_head.weight is missing and tie_word_embeddings is false", src.path);
      fail("{}: tensor '{}' is missing", src.path, to_hf(name, c.arch));
    }
    src.tensors.push_back(std::move(it->second));
  }
  for (auto& f : files) src.keepalive.push_back(f.keepalive);
}

// bos/eos ids in config.json may be a number, a list (first one counts) or null.
int token_id(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end()) return -1;
  const json* v = &*it;
  if (v->is_array()) {
    if (v->empty()) return -1;
    v = &(*v)[0];
  }
  if (!v->is_number_integer() || v->get<int64_t>() < 0 || v->get<int64_t>() > (int64_t(1) << 30)) return -1;
  return v->get<int>();
}

// tokenizer_config.json spells special tokens as strings or as {"content": ...} objects.
int token_by_text(const json& tc, const char* key, const tokenizer::Vocab& vocab) {
  auto it = tc.find(key);
  if (it == tc.end()) return -1;
  std::string text;
  if (it->is_string())
    text = it->get<std::string>();
  else if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    text = (*it)["content"];
  if (text.empty()) return -1;
  for (int i = 0; i < vocab.size(); ++i)
    if (vocab.tokens[size_t(i)] == text) return i;
  return -1;
}

tokenizer::Vocab load_tokenizer(const fs::path& dir, const LoadOptions& opts, const json& cfg,
                                int model_vocab) {
  std::string path = opts.tokenizer_path;
  std::error_code ec;
  for (const char* name : {"tokenizer.json", "tokenizer.model"})
    if (path.empty() && fs::is_regular_file(dir / name, ec)) path = (dir / name).string();
  if (path.empty()) return {};
  tokenizer::Vocab vocab = tokenizer::load_vocab_file(path);
  if (vocab.empty()) return vocab;
  LCQ_CHECK(vocab.size() <= model_vocab, "{}: the tokenizer has {} tokens but the model {} has only {}", path,
            vocab.size(), dir.string(), model_vocab);

  json tc;
  const fs::path tc_path = dir / "tokenizer_config.json";
  if (fs::is_regular_file(tc_path, ec)) tc = read_json(tc_path.string());
  const std::string tc_where = tc_path.string();
  if (tc.is_object()) {
    vocab.add_bos = json_bool(tc, "add_bos_token", tc_where, vocab.add_bos);
    vocab.add_eos = json_bool(tc, "add_eos_token", tc_where, vocab.add_eos);
  }
  // config.json's ids are what generation uses; tokenizer_config.json's strings fill gaps.
  auto in_range = [&](int id) { return id >= 0 && id < vocab.size(); };
  int bos = token_id(cfg, "bos_token_id"), eos = token_id(cfg, "eos_token_id");
  if (!in_range(bos) && tc.is_object()) bos = token_by_text(tc, "bos_token", vocab);
  if (!in_range(eos) && tc.is_object()) eos = token_by_text(tc, "eos_token", vocab);
  if (in_range(bos)) vocab.bos_id = bos;
  if (in_range(eos)) vocab.eos_id = eos;
  return vocab;
}

}  // namespace

ModelSource load_hf_model(const std::string& dir, const LoadOptions& opts) {
  const fs::path d(dir);
  std::error_code ec;
  LCQ_CHECK(fs::is_directory(d, ec), "{}: not a directory", dir);
  const fs::path cfg_path = d / "config.json";
  LCQ_CHECK(fs::is_regular_file(cfg_path, ec), "{}: no config.json (not a Hugging Face model directory)",
            dir);
  const std::string where = cfg_path.string();
  const json cfg = read_json(where);
  LCQ_CHECK(cfg.is_object(), "{}: not a JSON object", where);

  const std::string model_type = json_string(cfg, "model_type", where, "");
  ModelSource src;
  src.path = dir;
  src.format = Format::HF;
  src.qk_interleaved = false;
  if (model_type == "llama" || model_type == "mistral" || model_type == "qwen2")
    src.config = parse_llama_config(cfg, model_type, where);
  else if (model_type == "opt")
    src.config = parse_opt_config(cfg, where);
  else
    fail("{}: unsupported model_type '{}' (supported: llama, mistral, qwen2, opt)", where, printable(model_type));
  src.config.validate(where);
  src.metadata = cfg;

  std::vector<SafetensorsFile> files = open_weights(d);
  collect_tensors(src, files, model_type);
  src.vocab = load_tokenizer(d, opts, cfg, src.config.vocab_size);
  return src;
}

}  // namespace lcq::io
