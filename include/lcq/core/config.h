// The architecture description every format loader fills in and the runtime reads.
// Plain data, no libtorch, so the io layer can produce it.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <string>

namespace lcq {

enum class Arch { Llama, OPT };

struct RopeScaling {
  std::string type = "none";  // none | linear | llama3
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  int original_max_position = 8192;  // llama3
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string family = "llama";  // llama | mistral | qwen2 | smollm | opt ... (informative)
  int dim = 0;                    // hidden size
  int hidden_dim = 0;             // feed-forward inner size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;               // usually dim / n_heads
  int vocab_size = 0;
  int max_seq_len = 0;            // trained context length
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;    // output head shares token_embd.weight
  bool attn_qkv_bias = false;     // Qwen2, OPT
  bool attn_out_bias = false;     // OPT
  bool mlp_bias = false;          // OPT
  bool opt_pre_layer_norm = true; // OPT do_layer_norm_before (false only for opt-350m)
  std::string activation = "silu"; // silu (gated MLP) | relu (OPT fc1/fc2)

  // Throws lcq::Error (prefixed by `where`) if sizes are inconsistent.
  void validate(const std::string& where) const;
  int64_t kv_dim() const { return int64_t(n_kv_heads) * head_dim; }
};

std::string arch_name(Arch a);
void to_json(nlohmann::json& j, const ModelConfig& c);

}  // namespace lcq
