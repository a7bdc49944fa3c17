// Writes a Hugging Face model directory that transformers (and load_hf_model) can read:
// config.json, model.safetensors, tokenizer.json and tokenizer_config.json, each atomically.
// config.json is written last, so a directory that has one holds complete weights.
#include "hf_names.h"
#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/io/safetensors.h"
#include "lcq/io/writers.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <set>

namespace lcq::io {

namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

// float -> the shortest decimal that reads back as the same float, so config.json says
// 1e-05 rather than 9.999999747378752e-06.
double json_number(float f) { return std::stod(fmt::format("{}", f)); }

const char* torch_dtype(DType t) {
  switch (t) {
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";
  }
}

ordered_json rope_scaling_json(const RopeScaling& rs) {
  if (rs.type == "none") return nullptr;
  ordered_json r = {{"rope_type", rs.type}, {"type", rs.type}, {"factor", json_number(rs.factor)}};
  if (rs.type == "llama3") {
    r["low_freq_factor"] = json_number(rs.low_freq_factor);
    r["high_freq_factor"] = json_number(rs.high_freq_factor);
    r["original_max_position_embeddings"] = rs.original_max_position;
  }
  return r;
}

ordered_json config_json(const ModelConfig& c, DType dtype, const tokenizer::Vocab& vocab,
                         const std::string& dir) {
  ordered_json j;
  if (c.arch == Arch::OPT) {
    LCQ_CHECK(c.attn_qkv_bias == c.attn_out_bias && c.attn_qkv_bias == c.mlp_bias,
              "{}: OPT config.json can only say that all linear layers have biases or none do", dir);
    LCQ_CHECK(c.activation == "relu", "{}: OPT supports only the relu activation, not {}", dir, c.activation);
    j = {{"architectures", {"OPTForCausalLM"}},
         {"model_type", "opt"},
         {"hidden_size", c.dim},
         {"ffn_dim", c.hidden_dim},
         {"num_hidden_layers", c.n_layers},
         {"num_attention_heads", c.n_heads},
         {"vocab_size", c.vocab_size},
         {"max_position_embeddings", c.max_seq_len},
         {"word_embed_proj_dim", c.dim},
         {"do_layer_norm_before", c.opt_pre_layer_norm},
         {"activation_function", "relu"},
         {"enable_bias", c.attn_qkv_bias},
         {"layer_norm_elementwise_affine", true},
         {"tie_word_embeddings", c.tie_embeddings},
         {"torch_dtype", torch_dtype(dtype)}};
  } else {
    LCQ_CHECK(c.activation == "silu", "{}: Llama-family models use silu, not {}", dir, c.activation);
    // Qwen2 is the Llama layout with q/k/v biases but none on o_proj; Llama's attention_bias
    // covers all four projections.
    const bool qwen2 = c.family == "qwen2" || (c.attn_qkv_bias && !c.attn_out_bias);
    LCQ_CHECK(!qwen2 || (c.attn_qkv_bias && !c.attn_out_bias),
              "{}: a qwen2 model needs q/k/v biases and no o_proj bias", dir);
    LCQ_CHECK(qwen2 || c.attn_qkv_bias == c.attn_out_bias,
              "{}: an o_proj bias without q/k/v biases cannot be expressed in config.json", dir);
    j = {{"architectures", {qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
         {"model_type", qwen2 ? "qwen2" : "llama"},
         {"hidden_size", c.dim},
         {"intermediate_size", c.hidden_dim},
         {"num_hidden_layers", c.n_layers},
         {"num_attention_heads", c.n_heads},
         {"num_key_value_heads", c.n_kv_heads},
         {"head_dim", c.head_dim},
         {"vocab_size", c.vocab_size},
         {"max_position_embeddings", c.max_seq_len},
         {"rms_norm_eps", json_number(c.norm_eps)},
         {"rope_theta", json_number(c.rope_theta)},
         {"rope_scaling", rope_scaling_json(c.rope_scaling)},
         {"hidden_act", "silu"},
         {"tie_word_embeddings", c.tie_embeddings},
         {"mlp_bias", c.mlp_bias},
         {"torch_dtype", torch_dtype(dtype)}};
    if (!qwen2) j["attention_bias"] = c.attn_qkv_bias;
    if (qwen2) j["use_sliding_window"] = false;
  }
  if (vocab.bos_id >= 0) j["bos_token_id"] = vocab.bos_id;
  if (vocab.eos_id >= 0) j["eos_token_id"] = vocab.eos_id;
  if (vocab.pad_id >= 0) j["pad_token_id"] = vocab.pad_id;
  return j;
}

ordered_json tokenizer_config_json(const tokenizer::Vocab& vocab, const ModelConfig& c) {
  ordered_json j = {{"add_bos_token", vocab.add_bos},
                    {"add_eos_token", vocab.add_eos},
                    {"model_max_length", c.max_seq_len},
                    {"tokenizer_class", "PreTrainedTokenizerFast"},
                    {"clean_up_tokenization_spaces", false}};
  auto token = [&](const char* key, int id) {
    if (id >= 0 && id < vocab.size()) j[key] = vocab.tokens[size_t(id)];
  };
  token("bos_token", vocab.bos_id);
  token("eos_token", vocab.eos_id);
  token("unk_token", vocab.unk_id);
  token("pad_token", vocab.pad_id);
  return j;
}

}  // namespace

void write_hf_model(const std::string& dir, const ModelConfig& config,
                    const std::vector<WriteTensor>& tensors, const tokenizer::Vocab& vocab,
                    const WriteOptions& opts) {
  config.validate(dir);
  const hf::ExpectedTensors expected = hf::expected_tensors(config);
  std::map<std::string, const std::vector<int64_t>*> wanted;
  for (const auto& [name, shape] : expected) wanted[name] = &shape;

  // Check everything before creating any file: a directory we could not load back is useless.
  std::vector<WriteTensor> out;
  std::set<std::string> seen;
  DType main_dtype = DType::F32;
  for (const WriteTensor& t : tensors) {
    LCQ_CHECK(t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16,
              "{}: tensor '{}': Hugging Face export supports F32, F16 and BF16, not {}", dir, t.name,
              dtype_name(t.dtype));
    if (t.name == "output.weight" && config.tie_embeddings) continue;  // tied: transformers re-ties on load
    auto w = wanted.find(t.name);
    LCQ_CHECK(w != wanted.end(), "{}: tensor '{}' does not belong to a {} model with this config", dir,
              t.name, arch_name(config.arch));
    LCQ_CHECK(seen.insert(t.name).second, "{}: tensor '{}' given twice", dir, t.name);
    LCQ_CHECK(hf::shape_matches(*w->second, t.shape), "{}: tensor '{}' has shape {}, the config implies {}",
              dir, t.name, hf::shape_str(t.shape), hf::shape_str(*w->second));
    if (t.name == "token_embd.weight") main_dtype = t.dtype;
    WriteTensor hf_tensor = t;
    hf_tensor.name = hf::to_hf(t.name, config.arch);
    LCQ_CHECK(!hf_tensor.name.empty(), "{}: tensor '{}' has no Hugging Face name", dir, t.name);
    out.push_back(hf_tensor);
  }
  for (const auto& [name, shape] : expected)
    LCQ_CHECK(seen.count(name), "{}: tensor '{}' is missing", dir, name);
  const ordered_json cfg = config_json(config, main_dtype, vocab, dir);

  std::error_code ec;
  fs::create_directories(dir, ec);
  LCQ_CHECK(!ec && fs::is_directory(dir), "{}: cannot create directory: {}", dir, ec.message());
  const fs::path d(dir);
  std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (opts.extra_metadata.is_object())
    for (auto it = opts.extra_metadata.begin(); it != opts.extra_metadata.end(); ++it)
      meta[it.key()] = it->is_string() ? it->get<std::string>() : it->dump();
  write_safetensors((d / "model.safetensors").string(), out, meta);
  // A stale index from an earlier sharded export would shadow the new file on load.
  fs::remove(d / "model.safetensors.index.json", ec);
  if (!vocab.empty()) {
    write_file_atomic((d / "tokenizer.json").string(), tokenizer::vocab_to_tokenizer_json(vocab));
    write_file_atomic((d / "tokenizer_config.json").string(),
                      tokenizer_config_json(vocab, config).dump(2) + "\n");
  }
  write_file_atomic((d / "config.json").string(), cfg.dump(2) + "\n");
}

}  // namespace lcq::io

namespace lcq::io {

const std::vector<std::string>& hf_model_files() {
  static const std::vector<std::string> files = {"model.safetensors", "model.safetensors.index.json", "config.json",
                                                 "tokenizer.json", "tokenizer_config.json"};
  return files;
}

}  // namespace lcq::io
