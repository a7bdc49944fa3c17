#include "hf_names.h"

#include <cctype>

namespace lcq::io::hf {

namespace {

struct Pair {
  const char* hf;
  const char* canonical;
};

// Module paths (without ".weight"/".bias"); the parameter suffix carries over unchanged.
constexpr Pair kLlamaLayer[] = {
    {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},      {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
    {"mlp.gate_proj", "ffn_gate"},       {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
};
constexpr Pair kLlamaGlobal[] = {{"embed_tokens", "token_embd"}, {"norm", "output_norm"}};

constexpr Pair kOptLayer[] = {
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.out_proj", "attn_output"},
    {"self_attn_layer_norm", "attn_norm"},
    {"final_layer_norm", "ffn_norm"},
    {"fc1", "ffn_up"},
    {"fc2", "ffn_down"},
};
constexpr Pair kOptGlobal[] = {{"decoder.embed_tokens", "token_embd"},
                               {"decoder.embed_positions", "position_embd"},
                               {"decoder.final_layer_norm", "output_norm"}};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Splits "<module>.weight" / "<module>.bias"; false for any other parameter.
bool split_param(const std::string& name, std::string& module, std::string& param) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  param = name.substr(dot + 1);
  module = name.substr(0, dot);
  return param == "weight" || param == "bias";
}

// Parses "<digits>.<rest>" into layer and rest; layer numbers are small non-negative ints.
bool split_layer(const std::string& s, int& layer, std::string& rest) {
  size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0 || i > 6 || i >= s.size() || s[i] != '.') return false;
  layer = std::stoi(s.substr(0, i));
  rest = s.substr(i + 1);
  return true;
}

template <size_t N>
const char* lookup(const Pair (&table)[N], const std::string& key, bool from_hf) {
  for (const Pair& p : table)
    if (key == (from_hf ? p.hf : p.canonical)) return from_hf ? p.canonical : p.hf;
  return nullptr;
}

}  // namespace

std::string to_canonical(const std::string& hf_name, Arch arch) {
  std::string module, param;
  if (!split_param(hf_name, module, param)) return "";
  if (module == "lm_head") return "output." + param;
  if (starts_with(module, "model.")) module = module.substr(6);
  const bool opt = arch == Arch::OPT;
  const std::string layer_prefix = opt ? "decoder.layers." : "layers.";
  if (starts_with(module, layer_prefix)) {
    int layer = 0;
    std::string rest;
    if (!split_layer(module.substr(layer_prefix.size()), layer, rest)) return "";
    const char* c = opt ? lookup(kOptLayer, rest, true) : lookup(kLlamaLayer, rest, true);
    return c ? "blk." + std::to_string(layer) + "." + c + "." + param : "";
  }
  const char* c = opt ? lookup(kOptGlobal, module, true) : lookup(kLlamaGlobal, module, true);
  return c ? std::string(c) + "." + param : "";
}

std::string to_hf(const std::string& canonical, Arch arch) {
  std::string module, param;
  if (!split_param(canonical, module, param)) return "";
  if (module == "output") return "lm_head." + param;
  const bool opt = arch == Arch::OPT;
  if (starts_with(module, "blk.")) {
    int layer = 0;
    std::string rest;
    if (!split_layer(module.substr(4), layer, rest)) return "";
    const char* h = opt ? lookup(kOptLayer, rest, false) : lookup(kLlamaLayer, rest, false);
    if (!h) return "";
    return std::string(opt ? "model.decoder.layers." : "model.layers.") + std::to_string(layer) + "." + h +
           "." + param;
  }
  const char* h = opt ? lookup(kOptGlobal, module, false) : lookup(kLlamaGlobal, module, false);
  return h ? "model." + std::string(h) + "." + param : "";
}

bool is_harmless_extra(const std::string& hf_name) { return ends_with(hf_name, "rotary_emb.inv_freq"); }

ExpectedTensors expected_tensors(const ModelConfig& c) {
  const int64_t dim = c.dim, hidden = c.hidden_dim, vocab = c.vocab_size;
  const int64_t q_dim = int64_t(c.n_heads) * c.head_dim, kv_dim = c.kv_dim();
  ExpectedTensors out;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) {
    out.emplace_back(name, std::move(shape));
  };
  add("token_embd.weight", {vocab, dim});
  if (c.arch == Arch::OPT) add("position_embd.weight", {-1, dim});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    const bool opt = c.arch == Arch::OPT;
    add(b + "attn_norm.weight", {dim});
    if (opt) add(b + "attn_norm.bias", {dim});
    add(b + "attn_q.weight", {q_dim, dim});
    if (c.attn_qkv_bias) add(b + "attn_q.bias", {q_dim});
    add(b + "attn_k.weight", {kv_dim, dim});
    if (c.attn_qkv_bias) add(b + "attn_k.bias", {kv_dim});
    add(b + "attn_v.weight", {kv_dim, dim});
    if (c.attn_qkv_bias) add(b + "attn_v.bias", {kv_dim});
    add(b + "attn_output.weight", {dim, q_dim});
    if (c.attn_out_bias) add(b + "attn_output.bias", {dim});
    add(b + "ffn_norm.weight", {dim});
    if (opt) add(b + "ffn_norm.bias", {dim});
    if (!opt) {
      add(b + "ffn_gate.weight", {hidden, dim});
      if (c.mlp_bias) add(b + "ffn_gate.bias", {hidden});
    }
    add(b + "ffn_up.weight", {hidden, dim});
    if (c.mlp_bias) add(b + "ffn_up.bias", {hidden});
    add(b + "ffn_down.weight", {dim, hidden});
    if (c.mlp_bias) add(b + "ffn_down.bias", {dim});
  }
  // OPT without pre-layer-norm (opt-350m) has no final layer norm.
  if (c.arch != Arch::OPT || c.opt_pre_layer_norm) {
    add("output_norm.weight", {dim});
    if (c.arch == Arch::OPT) add("output_norm.bias", {dim});
  }
  if (!c.tie_embeddings) add("output.weight", {vocab, dim});
  return out;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

bool shape_matches(const std::vector<int64_t>& expected, const std::vector<int64_t>& actual) {
  if (expected.size() != actual.size()) return false;
  for (size_t i = 0; i < expected.size(); ++i)
    if (expected[i] >= 0 && expected[i] != actual[i]) return false;
  return true;
}

}  // namespace lcq::io::hf
