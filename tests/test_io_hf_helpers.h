// Helpers for test_io_hf.cpp: loading and comparing tensors, synthetic checkpoints and
// in-place edits of Hugging Face directories.
#pragma once

#include "../src/io/formats.h"
#include "lcq/core/error.h"
#include "lcq/io/model_source.h"
#include "lcq/io/safetensors.h"
#include "lcq/io/writers.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace lcq::test {

using namespace lcq::io;

inline std::string stories_bin() { return test::shared("models/stories260K/stories260K.bin"); }

// Runs f, which must throw lcq::Error whose single-line message contains every part.
inline void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << parts.at(0) << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

inline std::vector<float> floats_at(const std::string& bytes, size_t offset, size_t n) {
  std::vector<float> v(n);
  std::memcpy(v.data(), bytes.data() + offset, n * 4);
  return v;
}

inline std::vector<float> view_floats(const TensorView& v) {
  std::vector<float> out(size_t(v.numel()));
  dequantize(v, out.data(), v.name);
  return out;
}

template <typename T>
inline void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

inline std::string view_bytes(const TensorView& v) {
  return std::string(reinterpret_cast<const char*>(v.data), v.nbytes);
}

// Re-serialises a legacy model in export.py's version-1 order.
inline std::string to_version1(const ModelSource& src, int version, bool shared) {
  const ModelConfig& c = src.config;
  std::string out;
  put<uint32_t>(out, 0x616b3432);
  put<int32_t>(out, version);
  for (int v : {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.max_seq_len})
    put<int32_t>(out, v);
  put<uint8_t>(out, shared ? 1 : 0);
  out.resize(256, '\0');
  auto layers = [&](const std::string& kind) {
    for (int l = 0; l < c.n_layers; ++l) out += view_bytes(src.get("blk." + std::to_string(l) + "." + kind));
  };
  layers("attn_norm.weight");
  layers("ffn_norm.weight");
  out += view_bytes(src.get("output_norm.weight"));
  out += view_bytes(src.get("token_embd.weight"));
  for (const char* k : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"})
    layers(std::string(k) + ".weight");
  return out;
}

inline std::vector<float> random_floats(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::string make_safetensors(const std::string& header, const std::string& data) {
  std::string out;
  put<uint64_t>(out, header.size());
  return out + header + data;
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// f32 copies of a source's tensors in canonical layout (q/k rows in rotate-half order).
struct CanonicalTensors {
  std::map<std::string, std::vector<float>> values;
  std::vector<WriteTensor> tensors;
};

inline CanonicalTensors canonical_f32(const ModelSource& src, DType dtype) {
  CanonicalTensors out;
  const ModelConfig& c = src.config;
  for (const TensorView& t : src.tensors) {
    std::vector<float> v = view_floats(t);
    const bool q = ends_with(t.name, ".attn_q.weight"), k = ends_with(t.name, ".attn_k.weight");
    if (src.qk_interleaved && (q || k)) {
      std::vector<float> p(v.size());
      permute_qk_to_rotate_half(v.data(), p.data(), q ? c.n_heads : c.n_kv_heads, c.head_dim, t.shape[1]);
      v = std::move(p);
    }
    out.values[t.name] = std::move(v);
  }
  for (const TensorView& t : src.tensors)
    out.tensors.push_back({t.name, t.shape, dtype, out.values[t.name].data()});
  return out;
}

inline void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.hidden_dim, b.hidden_dim);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.max_seq_len, b.max_seq_len);
  EXPECT_EQ(a.norm_eps, b.norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
  EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
  EXPECT_EQ(a.rope_scaling.original_max_position, b.rope_scaling.original_max_position);
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.attn_qkv_bias, b.attn_qkv_bias);
  EXPECT_EQ(a.attn_out_bias, b.attn_out_bias);
  EXPECT_EQ(a.mlp_bias, b.mlp_bias);
  EXPECT_EQ(a.activation, b.activation);
}

inline void expect_tensors(const ModelSource& loaded, const CanonicalTensors& want) {
  EXPECT_EQ(loaded.tensors.size(), want.values.size());
  for (const auto& [name, values] : want.values) {
    const TensorView* v = loaded.find(name);
    ASSERT_NE(v, nullptr) << name;
    EXPECT_EQ(view_floats(*v), values) << name;
  }
}

// stories260K written as a Hugging Face directory (f32), with its canonical tensors.
inline std::string write_stories_hf(const std::string& dir, CanonicalTensors& tensors) {
  const ModelSource src = load_model_source(stories_bin());
  tensors = canonical_f32(src, DType::F32);
  write_hf_model(dir, src.config, tensors.tensors, src.vocab);
  return dir;
}

// Rewrites dir/model.safetensors through `edit`, which may add, drop or rename tensors.
inline void edit_weights(const std::string& dir, const std::function<void(std::vector<WriteTensor>&)>& edit) {
  const SafetensorsFile f = read_safetensors(dir + "/model.safetensors");
  std::vector<WriteTensor> ts;
  for (const TensorView& v : f.tensors) ts.push_back({v.name, v.shape, v.dtype, nullptr, v.data});
  edit(ts);
  write_safetensors(dir + "/model.safetensors", ts);
}

inline void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  auto cfg = nlohmann::json::parse(read_bytes(dir + "/config.json"));
  edit(cfg);
  write_bytes(dir + "/config.json", cfg.dump());
}

// Canonical tensors with random values for a Llama-family config.
inline CanonicalTensors random_llama(const ModelConfig& c) {
  CanonicalTensors out;
  const int64_t q = int64_t(c.n_heads) * c.head_dim, kv = c.kv_dim();
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"token_embd.weight", {c.vocab_size, c.dim}}, {"output_norm.weight", {c.dim}}};
  if (!c.tie_embeddings) shapes.push_back({"output.weight", {c.vocab_size, c.dim}});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (auto s :
         std::vector<std::pair<std::string, std::vector<int64_t>>>{{"attn_norm.weight", {c.dim}},
                                                                   {"attn_q.weight", {q, c.dim}},
                                                                   {"attn_k.weight", {kv, c.dim}},
                                                                   {"attn_v.weight", {kv, c.dim}},
                                                                   {"attn_output.weight", {c.dim, q}},
                                                                   {"ffn_norm.weight", {c.dim}},
                                                                   {"ffn_gate.weight", {c.hidden_dim, c.dim}},
                                                                   {"ffn_up.weight", {c.hidden_dim, c.dim}},
                                                                   {"ffn_down.weight", {c.dim, c.hidden_dim}},
                                                                   {"attn_q.bias", {q}},
                                                                   {"attn_k.bias", {kv}},
                                                                   {"attn_v.bias", {kv}}})
      if (c.attn_qkv_bias || s.first.find("bias") == std::string::npos)
        shapes.push_back({b + s.first, s.second});
  }
  uint32_t seed = 10;
  for (const auto& [name, shape] : shapes) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    out.values[name] = random_floats(size_t(n), seed++);
  }
  for (const auto& [name, shape] : shapes)
    out.tensors.push_back({name, shape, DType::F32, out.values[name].data()});
  return out;
}

// A tiny OPT checkpoint as transformers names it ("model." prefix optional).
inline void write_tiny_opt(const std::string& dir, const std::string& prefix,
                           std::map<std::string, std::vector<float>>& vals) {
  std::filesystem::create_directories(dir);
  const nlohmann::json cfg = {
      {"model_type", "opt"},           {"hidden_size", 16},         {"ffn_dim", 32},
      {"num_hidden_layers", 2},        {"num_attention_heads", 4},  {"vocab_size", 50},
      {"max_position_embeddings", 20}, {"word_embed_proj_dim", 16}, {"do_layer_norm_before", true},
      {"activation_function", "relu"}};
  write_bytes(dir + "/config.json", cfg.dump());
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"decoder.embed_tokens.weight", {50, 16}},
      {"decoder.embed_positions.weight", {22, 16}},
      {"decoder.final_layer_norm.weight", {16}},
      {"decoder.final_layer_norm.bias", {16}}};
  for (int l = 0; l < 2; ++l) {
    const std::string b = "decoder.layers." + std::to_string(l) + ".";
    for (const char* p : {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"}) {
      shapes.push_back({b + p + ".weight", {16, 16}});
      shapes.push_back({b + p + ".bias", {16}});
    }
    for (const char* p : {"self_attn_layer_norm", "final_layer_norm"}) {
      shapes.push_back({b + p + ".weight", {16}});
      shapes.push_back({b + p + ".bias", {16}});
    }
    shapes.push_back({b + "fc1.weight", {32, 16}});
    shapes.push_back({b + "fc1.bias", {32}});
    shapes.push_back({b + "fc2.weight", {16, 32}});
    shapes.push_back({b + "fc2.bias", {16}});
  }
  std::vector<WriteTensor> ts;
  uint32_t seed = 100;
  for (const auto& [name, shape] : shapes)
    vals[name] = random_floats(size_t(shape[0] * (shape.size() > 1 ? shape[1] : 1)), seed++);
  for (const auto& [name, shape] : shapes)
    ts.push_back({prefix + name, shape, DType::F32, vals[name].data()});
  write_safetensors(dir + "/model.safetensors", ts);
}

}  // namespace lcq::test
