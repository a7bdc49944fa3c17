#include "lcq/model/model.h"

#include "lcq/core/cpu.h"
#include "lcq/core/error.h"
#include "lcq/core/named.h"

#include <torch/torch.h>

#include <cmath>

namespace lcq::model {

namespace F = torch::nn::functional;

namespace {
const Named<torch::ScalarType> kComputeTypes[] = {{torch::kFloat32, "f32"}, {torch::kBFloat16, "bf16"}};
// --prompt-dtype; kUndefined stands for auto.
const Named<torch::ScalarType> kPromptTypes[] = {
    {torch::ScalarType::Undefined, "auto"}, {torch::kFloat32, "f32"}, {torch::kBFloat16, "bf16"}};
}  // namespace

const std::vector<std::string>& prompt_dtype_names() {
  static const auto v = names_of(kPromptTypes);
  return v;
}

const std::vector<std::string>& compute_dtype_names() {
  static const auto v = names_of(kComputeTypes);
  return v;
}
torch::ScalarType parse_compute_dtype(const std::string& name) { return parse_named(kComputeTypes, name, "--dtype"); }

torch::ScalarType resolve_prompt_dtype(const std::string& name) {
  const torch::ScalarType t = parse_named(kPromptTypes, name, "--prompt-dtype");
  if (t != torch::ScalarType::Undefined) return t;
  return cpu_has_native_bf16() ? torch::kBFloat16 : torch::kFloat32;
}

torch::Tensor Norm::forward(const torch::Tensor& x) const {
  if (rms) {
    // Computed in float32 whatever the activation type, as the reference implementations do.
    auto xf = x.to(torch::kFloat32);
    auto y = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + eps);
    return (y * weight.to(torch::kFloat32)).to(x.scalar_type());
  }
  return torch::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

std::vector<std::pair<std::string, Linear*>> Block::linears() {
  std::vector<std::pair<std::string, Linear*>> out = {
      {"attn_q", &q}, {"attn_k", &k}, {"attn_v", &v}, {"attn_output", &o}};
  if (gate.defined()) out.emplace_back("ffn_gate", &gate);
  out.emplace_back("ffn_up", &up);
  out.emplace_back("ffn_down", &down);
  return out;
}

std::vector<std::pair<std::string, const Linear*>> Block::linears() const {
  std::vector<std::pair<std::string, const Linear*>> out;
  for (auto& [name, lin] : const_cast<Block*>(this)->linears()) out.emplace_back(name, lin);
  return out;
}

KVCache::KVCache(const ModelConfig& c, int64_t batch, int64_t capacity, const torch::TensorOptions& opts)
    : capacity_(capacity) {
  for (int l = 0; l < c.n_layers; ++l) {
    k_.push_back(torch::zeros({batch, c.n_kv_heads, capacity, c.head_dim}, opts));
    v_.push_back(torch::zeros({batch, c.n_kv_heads, capacity, c.head_dim}, opts));
  }
}

std::pair<torch::Tensor, torch::Tensor> KVCache::append(int layer, const torch::Tensor& k, const torch::Tensor& v) {
  const int64_t t = k.size(2);
  LCQ_CHECK(length_ + t <= capacity_, "KV cache full: {} + {} positions exceed its capacity {}", length_, t,
            capacity_);
  using torch::indexing::Slice;
  k_[layer].index_put_({Slice(), Slice(), Slice(length_, length_ + t)}, k);
  v_[layer].index_put_({Slice(), Slice(), Slice(length_, length_ + t)}, v);
  return {k_[layer].index({Slice(), Slice(), Slice(0, length_ + t)}),
          v_[layer].index({Slice(), Slice(), Slice(0, length_ + t)})};
}

run::CacheView KVCache::view() {
  run::CacheView v;
  for (size_t l = 0; l < k_.size(); ++l) {
    LCQ_CHECK(k_[l].size(0) == 1 && k_[l].scalar_type() == torch::kFloat32 && k_[l].is_contiguous() &&
                  k_[l].device().is_cpu(),
              "KV cache: the lean decode path needs one sequence of f32 on the CPU");
    v.keys.push_back(k_[l].data_ptr<float>());
    v.values.push_back(v_[l].data_ptr<float>());
  }
  v.capacity = capacity_;
  v.length = &length_;
  return v;
}

Rope Rope::make(const ModelConfig& c, int64_t positions, const torch::TensorOptions& opts) {
  run::RopeTables t = run::make_rope_tables(c, positions);  // the one definition, shared with lcq-run
  auto table = [&](std::vector<float>& v) {
    return torch::from_blob(v.data(), {positions, int64_t(c.head_dim)}, torch::kFloat32).clone().to(opts);
  };
  return {table(t.cos), table(t.sin)};
}

namespace {

torch::Tensor rotate_half(const torch::Tensor& x) {
  const int64_t h = x.size(-1) / 2;
  using torch::indexing::Slice;
  auto x1 = x.index({"...", Slice(0, h)});
  auto x2 = x.index({"...", Slice(h, torch::indexing::None)});
  return torch::cat({-x2, x1}, -1);
}

// x [B, H, T, hd]; cos/sin [T, hd]
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  return x * cos + rotate_half(x) * sin;
}

// Queries per chunk of causal attention. A chunk's queries see only the keys up to its own
// last position, so the masked part of the score matrix to the right of the chunk is never
// computed: at 512 positions (4 chunks) 3/8 of the attention products are skipped, at 2048
// (16 chunks) 15/32. Small enough to skip most of the triangle, large enough that each
// product stays a well-shaped matrix multiply.
constexpr int64_t kQueryChunk = 128;

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, int64_t start_pos,
                        torch::ScalarType prompt_dtype) {
  // q [B, H, T, hd]; k, v [B, Hkv, S, hd] with S = start_pos + T; returns [B, T, H, hd].
  // Grouped-query attention without copying k/v: view q as [B, Hkv, G*T, hd] against each
  // shared k/v head. The score matrix is the big tensor at long contexts, so it is touched as
  // few times as possible: the scale is folded into q, the causal mask is added in place,
  // then softmax.
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), hd = q.size(3);
  const int64_t Hkv = k.size(1), G = H / Hkv;
  const auto opts = torch::TensorOptions().dtype(q.scalar_type()).device(q.device());
  // Prompts in bf16: keys and values rounded once, each chunk's products through oneDNN's
  // bf16 GEMM (at 2048 positions the f32 products were a third of a perplexity window's time).
  const bool low = prompt_dtype == torch::kBFloat16 && q.scalar_type() == torch::kFloat32 && T >= kPromptMinTokens;
  const torch::Tensor kp = low ? k.to(torch::kBFloat16) : k, vp = low ? v.to(torch::kBFloat16) : v;
  std::vector<torch::Tensor> outs;
  for (int64_t t0 = 0; t0 < T; t0 += kQueryChunk) {
    const int64_t t1 = std::min(T, t0 + kQueryChunk), Tc = t1 - t0, S = start_pos + t1;
    auto qc = (q.slice(2, t0, t1) * (1.0 / std::sqrt(double(hd)))).reshape({B, Hkv, G * Tc, hd});
    auto kc = kp.slice(2, 0, S), vc = vp.slice(2, 0, S);
    auto scores = torch::matmul(low ? qc.to(torch::kBFloat16) : qc, kc.transpose(2, 3));  // [B, Hkv, G*Tc, S]
    if (low) scores = scores.to(torch::kFloat32);
    if (Tc > 1) {
      // Query at absolute position start_pos + t0 + i sees keys 0..start_pos + t0 + i.
      auto bias = torch::full({Tc, S}, -std::numeric_limits<float>::infinity(), opts).triu_(start_pos + t0 + 1);
      scores.view({B, Hkv, G, Tc, S}).add_(bias);
    }
    auto probs = torch::softmax(scores, -1, torch::kFloat32).to(vc.scalar_type());
    auto out = torch::matmul(probs, vc);
    if (low) out = out.to(q.scalar_type());
    outs.push_back(out.reshape({B, H, Tc, hd}).transpose(1, 2));  // [B, Tc, H, hd]
  }
  return outs.size() == 1 ? outs[0] : torch::cat(outs, 1);
}

}  // namespace

torch::Tensor attention_forward(const BlockContext& ctx, const Block& b, const torch::Tensor& h, int64_t start_pos,
                                KVCache* cache, int layer) {
  const ModelConfig& c = *ctx.config;
  const int64_t B = h.size(0), T = h.size(1);
  const bool opt = c.arch == Arch::OPT;
  auto q = b.q.forward(h).view({B, T, c.n_heads, c.head_dim}).transpose(1, 2);
  auto k = b.k.forward(h).view({B, T, c.n_kv_heads, c.head_dim}).transpose(1, 2);
  auto v = b.v.forward(h).view({B, T, c.n_kv_heads, c.head_dim}).transpose(1, 2);
  if (!opt) {
    using torch::indexing::Slice;
    auto cos = ctx.rope->cos.index({Slice(start_pos, start_pos + T)});
    auto sin = ctx.rope->sin.index({Slice(start_pos, start_pos + T)});
    q = apply_rope(q, cos, sin);
    k = apply_rope(k, cos, sin);
  }
  if (cache) std::tie(k, v) = cache->append(layer, k, v);
  auto att = attention(q, k, v, start_pos, ctx.prompt_dtype).reshape({B, T, c.n_heads * c.head_dim});
  return b.o.forward(att);
}

torch::Tensor mlp_forward(const ModelConfig& c, const Block& b, const torch::Tensor& h) {
  if (c.arch == Arch::OPT) return b.down.forward(torch::relu(b.up.forward(h)));
  return b.down.forward(F::silu(b.gate.forward(h)) * b.up.forward(h));
}

torch::Tensor block_forward(const BlockContext& ctx, const Block& b, const torch::Tensor& x, int64_t start_pos,
                            KVCache* cache, int layer) {
  const ModelConfig& c = *ctx.config;
  const bool opt = c.arch == Arch::OPT;

  auto h = (opt && !c.opt_pre_layer_norm) ? x : b.attn_norm.forward(x);
  auto out = x + attention_forward(ctx, b, h, start_pos, cache, layer);
  if (opt && !c.opt_pre_layer_norm) out = b.attn_norm.forward(out);

  auto h2 = (opt && !c.opt_pre_layer_norm) ? out : b.ffn_norm.forward(out);
  auto y = out + mlp_forward(c, b, h2);
  if (opt && !c.opt_pre_layer_norm) y = b.ffn_norm.forward(y);
  return y;
}

torch::TensorOptions Model::tensor_options() const {
  return torch::TensorOptions().dtype(options.dtype).device(options.device);
}

torch::Tensor Model::embed(const torch::Tensor& tokens, int64_t start_pos) const {
  torch::Tensor x;
  if (tok_embd_packed) {
    const torch::Tensor ids = tokens.to(torch::kCPU, torch::kInt64).contiguous();
    const int64_t n = ids.numel(), D = tok_embd_packed->cols(), V = tok_embd_packed->rows();
    x = torch::empty({n, D}, torch::kFloat32);
    const int64_t* id = ids.data_ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) {
      LCQ_CHECK(id[i] >= 0 && id[i] < V, "token {} outside the vocabulary of {}", id[i], V);
      tok_embd_packed->dequantize_rows(id[i], id[i] + 1, x.data_ptr<float>() + i * D);
    }
    std::vector<int64_t> shape = tokens.sizes().vec();
    shape.push_back(D);
    x = x.view(shape).to(options.device);
  } else {
    x = F::embedding(tokens.to(tok_embd.device()), tok_embd);
  }
  if (x.scalar_type() != options.dtype) x = x.to(options.dtype);  // fp16-stored embeddings
  if (rotation.defined()) x = torch::matmul(x, rotation.matrix.t());      // rows e^T R^T = (R e)^T
  if (pos_embd.defined()) {
    // HF OPT's learned positions are offset by 2 (rows 0 and 1 are unused padding slots).
    const int64_t T = tokens.size(1);
    LCQ_CHECK(start_pos + T + 2 <= pos_embd.size(0), "sequence of {} positions exceeds the model's {} positions",
              start_pos + T, pos_embd.size(0) - 2);
    auto pos = torch::arange(start_pos + 2, start_pos + T + 2, torch::TensorOptions().dtype(torch::kInt64).device(pos_embd.device()));
    x = x + F::embedding(pos, pos_embd).unsqueeze(0);
  }
  return x;
}

torch::Tensor Model::final_norm(const torch::Tensor& x) const {
  return output_norm.forward(rotation.defined() ? torch::matmul(x, rotation.matrix) : x);
}

torch::Tensor Model::head(const torch::Tensor& x) const { return output.forward(final_norm(x)).to(torch::kFloat32); }

void Model::ensure_positions(int64_t positions) {
  if (config.arch == Arch::OPT) return;
  if (!rope.cos.defined() || rope.cos.size(0) < positions)
    rope = Rope::make(config, std::max<int64_t>(positions, config.max_seq_len), tensor_options());
}

torch::Tensor Model::forward(const torch::Tensor& tokens, KVCache* cache, bool last_only) const {
  torch::NoGradGuard no_grad;
  const int64_t start = cache ? cache->length() : 0;
  LCQ_CHECK(config.arch == Arch::OPT || start + tokens.size(1) <= rope.cos.size(0),
            "sequence of {} positions exceeds the prepared {} positions", start + tokens.size(1), rope.cos.size(0));
  auto x = embed(tokens, start);
  const BlockContext ctx = context();
  for (size_t l = 0; l < blocks.size(); ++l) x = block_forward(ctx, blocks[l], x, start, cache, int(l));
  if (cache) cache->advance(tokens.size(1));
  return head(last_only ? x.slice(1, x.size(1) - 1) : x);
}

KVCache Model::make_cache(int64_t batch, int64_t capacity) const {
  return KVCache(config, batch, capacity, tensor_options());
}

int64_t Model::parameter_count() const {
  int64_t n = (tok_embd_packed ? tok_embd_packed->rows() * tok_embd_packed->cols() : tok_embd.numel()) +
              (pos_embd.defined() ? pos_embd.numel() : 0);
  auto add_norm = [&](const Norm& nm) {
    n += nm.weight.defined() ? nm.weight.numel() : 0;
    n += nm.bias.defined() ? nm.bias.numel() : 0;
  };
  auto add_lin = [&](const Linear& l) {
    if (!l.defined()) return;
    n += l.in_features() * l.out_features() + (l.bias.defined() ? l.bias.numel() : 0);
  };
  for (const Block& b : blocks) {
    add_norm(b.attn_norm);
    add_norm(b.ffn_norm);
    for (auto& [name, lin] : b.linears()) add_lin(*lin);
  }
  add_norm(output_norm);
  if (!config.tie_embeddings) add_lin(output);
  return n;
}

}  // namespace lcq::model
