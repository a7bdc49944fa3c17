// The transformer runtime: LLaMA-family and OPT decoders on libtorch tensors.
//
// A Model is a list of Blocks plus embeddings and head. block_forward() is a free function
// of (config, block weights, input) so the quantizers can run one block with substituted
// (fake-quantized, trainable) weights through exactly the code that evaluation uses.
#pragma once

#include "lcq/core/config.h"
#include "lcq/model/linear.h"
#include "lcq/run/weights.h"

#include <torch/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lcq::model {

struct RuntimeOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;  // kFloat32 or kBFloat16 (weights and activations)
  int threads = 0;                            // 0: leave libtorch's default
  // LCQ layers stay in their packed form and run on the packed kernels (CPU inference).
  // Off: they are dequantized to dense weights on load (what training and conversion need).
  bool packed = true;
  // Which kernel family runs each packed layer (lcq/kernels/matrix.h: choose_family).
  kernels::KernelChoice kernel = kernels::KernelChoice::kAuto;
  // Packed layers' products of 16 tokens or more (prompts, perplexity windows) run through
  // BLAS on dequantized rows in this type: kFloat32 (exact) or kBFloat16 (faster where the CPU
  // multiplies bf16 natively; inputs and results rounded to bf16).
  torch::ScalarType prompt_dtype = torch::kFloat32;
  // Activation quantization (lcq/model/act_quant.h). -1 / nullopt: as the file says (its
  // lcq.act.* keys; none for an ordinary model); act_bits 0 turns it off, kv_bits 0 too.
  int act_bits = -1;
  std::optional<ActQuant::Scheme> act_scheme;
  int kv_bits = -1;
};

// --prompt-dtype: its accepted names ("auto", "f32", "bf16") and what one means on this CPU
// (auto: bf16 where the CPU multiplies bf16 natively, else f32); lcq::Error for other names.
const std::vector<std::string>& prompt_dtype_names();
// --dtype, the runtime's compute type: its names ("f32", "bf16") and the type one names.
const std::vector<std::string>& compute_dtype_names();
torch::ScalarType parse_compute_dtype(const std::string& name);  // lcq::Error naming --dtype otherwise
torch::ScalarType resolve_prompt_dtype(const std::string& name);

// RMSNorm (weight only) or LayerNorm (weight and bias).
struct Norm {
  torch::Tensor weight, bias;
  float eps = 1e-5f;
  bool rms = true;
  torch::Tensor forward(const torch::Tensor& x) const;
};

// One decoder layer. LLaMA: gate/up/down SwiGLU MLP. OPT: up = fc1, down = fc2, gate unused.
struct Block {
  Norm attn_norm, ffn_norm;
  Linear q, k, v, o, gate, up, down;

  // The quantizable linear layers in a fixed order with their canonical short names
  // ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down").
  std::vector<std::pair<std::string, Linear*>> linears();
  std::vector<std::pair<std::string, const Linear*>> linears() const;
};

// A block linear's name in files and reports: layer_name(3, "attn_q") == "blk.3.attn_q".
inline std::string layer_name(size_t layer, const std::string& linear) {
  return "blk." + std::to_string(layer) + "." + linear;
}

// Keys and values of past positions, per layer: [batch, n_kv_heads, capacity, head_dim].
class KVCache {
 public:
  KVCache(const ModelConfig& c, int64_t batch, int64_t capacity, const torch::TensorOptions& opts);
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  void clear() { length_ = 0; }
  // Appends k/v ([B, Hkv, T, hd]) for `layer` at position length() and returns views of all
  // cached positions. advance() moves length() once every layer has appended.
  std::pair<torch::Tensor, torch::Tensor> append(int layer, const torch::Tensor& k, const torch::Tensor& v);
  void advance(int64_t n) { length_ += n; }
  // The whole cache of a layer, [batch, n_kv_heads, capacity, head_dim] (the decode path
  // writes and reads it in place).
  const torch::Tensor& keys(int layer) const { return k_[size_t(layer)]; }
  const torch::Tensor& values(int layer) const { return v_[size_t(layer)]; }
  // The cache as the lean decode path sees it (batch 1, f32, CPU; lcq/run/weights.h).
  run::CacheView view();

 private:
  std::vector<torch::Tensor> k_, v_;
  int64_t length_ = 0, capacity_ = 0;
};

// Rotary position embedding tables (cos, sin) of shape [positions, head_dim] in
// rotate-half layout, honouring the config's theta and scaling.
struct Rope {
  torch::Tensor cos, sin;
  static Rope make(const ModelConfig& c, int64_t positions, const torch::TensorOptions& opts);
};

// Shared state for running blocks: the config and RoPE tables.
struct BlockContext {
  const ModelConfig* config = nullptr;
  const Rope* rope = nullptr;
  // Attention's score and value products over many query positions (prompts) run in this
  // type: kFloat32 (exact) or kBFloat16 (RuntimeOptions::prompt_dtype: inputs and results
  // rounded to bf16, the softmax in f32). Single positions (decoding) stay f32.
  torch::ScalarType prompt_dtype = torch::kFloat32;
};

// The two halves of a decoder layer, on their (normalised) inputs h [B, T, dim]: the attention
// sub-layer up to and including o, and the MLP. block_forward() is the residual stream
// around them; quantizers score a half on its own (AWQ).
torch::Tensor attention_forward(const BlockContext& ctx, const Block& block, const torch::Tensor& h, int64_t start_pos,
                                KVCache* cache = nullptr, int layer = 0);
torch::Tensor mlp_forward(const ModelConfig& config, const Block& block, const torch::Tensor& h);

// One decoder layer on x [B, T, dim] whose first position is start_pos. With a cache, keys and
// values of earlier positions come from it and this call's are appended (layer index given).
torch::Tensor block_forward(const BlockContext& ctx, const Block& block, const torch::Tensor& x, int64_t start_pos,
                            KVCache* cache = nullptr, int layer = 0);

// An orthogonal R = kron(mix, H) · diag(signs) (run::expand_rotation), stored in files as its
// two factors (residual_rotation.mix, residual_rotation.signs: 2.6 KB for SmolLM2's 576).
struct ResidualRotation {
  torch::Tensor mix;     // [a, a] f32, orthogonal; dim / a is a power of two
  torch::Tensor signs;   // [dim] f32, +-1
  torch::Tensor matrix;  // R [dim, dim], the runtime's dtype
  bool defined() const { return matrix.defined(); }
};

class Model {
 public:
  ModelConfig config;
  RuntimeOptions options;
  torch::Tensor tok_embd;  // [vocab, dim]; undefined when tok_embd_packed holds a quantized embedding
  // A quantized token embedding (its rows are dequantized on lookup); a tied head shares it
  // as output.packed.
  std::shared_ptr<const kernels::Matrix> tok_embd_packed;
  torch::Tensor pos_embd;  // OPT learned positions [max_pos + 2, dim], else undefined
  std::vector<Block> blocks;
  Norm output_norm;
  Linear output;           // shares tok_embd when tied
  Rope rope;
  // Set when the residual stream is rotated (lcq/quant/rotation.h): the blocks see R·h,
  // embed() applies R after the lookup and final_norm() R^T before the norm.
  ResidualRotation rotation;

  BlockContext context() const { return {&config, &rope, options.prompt_dtype}; }
  torch::TensorOptions tensor_options() const;

  // tokens [B, T] (int64) -> hidden states [B, T, dim] for positions start_pos..
  torch::Tensor embed(const torch::Tensor& tokens, int64_t start_pos = 0) const;
  // final norm + output head: [B, T, dim] -> logits [B, T, vocab] (float32)
  torch::Tensor head(const torch::Tensor& x) const;
  // The head's input: the final norm of the (un-rotated) residual stream.
  torch::Tensor final_norm(const torch::Tensor& x) const;
  // Full forward. With a cache, continues after cache->length() and advances it.
  // last_only: the logits of the last position only ([B, 1, vocab]; what generation samples
  // from): the head, a fifth of a small model's weights, runs on one row instead of all.
  torch::Tensor forward(const torch::Tensor& tokens, KVCache* cache = nullptr, bool last_only = false) const;

  KVCache make_cache(int64_t batch, int64_t capacity) const;
  int64_t parameter_count() const;
  // Makes sure the RoPE tables cover `positions` (long prompts beyond max_seq_len are allowed
  // for rope models; OPT's learned positions are a hard limit).
  void ensure_positions(int64_t positions);
};

}  // namespace lcq::model
