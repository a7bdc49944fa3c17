// Helpers for test_io_gguf.cpp: error checks, byte edits, and tiny models of each GGUF
// architecture made from random values.
#pragma once

#include "lcq/core/config.h"
#include "lcq/core/error.h"
#include "lcq/io/writers.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace lcq::test {

using namespace lcq::io;


inline std::string fixture(const std::string& name) {
  return (std::filesystem::path(LCQ_SOURCE_DIR) / "tests" / "fixtures" / "gguf" / name).string();
}

// Runs fn and checks it throws lcq::Error whose message has every one of `parts`.
inline void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << parts.front() << "'";
  } catch (const lcq::Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

inline std::vector<float> dequant(const TensorView& t) {
  std::vector<float> out(size_t(t.numel()));
  dequantize(t, out.data(), "test");
  return out;
}

template <typename T>
inline void poke(std::string& bytes, size_t pos, T v) {
  ASSERT_LE(pos + sizeof(T), bytes.size());
  std::memcpy(&bytes[pos], &v, sizeof(T));
}

template <typename T>
T peek(const std::string& bytes, size_t pos) {
  T v;
  std::memcpy(&v, bytes.data() + pos, sizeof(T));
  return v;
}

// Writes bytes to a new file in dir (replacing a file's contents in place is slow here: the
// file system flushes the old data first) and returns its path.
inline std::string write_new(const std::string& dir, const std::string& bytes) {
  static int counter = 0;
  const std::string path = dir + "/case" + std::to_string(counter++) + ".gguf";
  write_bytes(path, bytes);
  return path;
}

// Position right after `needle` (a GGUF string's bytes) in `bytes`.
inline size_t after(const std::string& bytes, const std::string& needle) {
  const size_t p = bytes.find(needle);
  EXPECT_NE(p, std::string::npos) << needle;
  return p + needle.size();
}



struct TinyModel {
  ModelConfig c;
  std::vector<std::pair<std::string, std::vector<int64_t>>> specs;
  std::map<std::string, std::vector<float>> values;
  tokenizer::Vocab vocab;

  std::vector<WriteTensor> tensors(DType dtype) const {
    std::vector<WriteTensor> out;
    for (const auto& [name, shape] : specs) {
      WriteTensor t;
      t.name = name;
      t.shape = shape;
      t.dtype = shape.size() == 1 ? DType::F32 : dtype;  // norms and biases stay f32
      t.f32 = values.at(name).data();
      out.push_back(t);
    }
    return out;
  }
};

// family: "llama" (untied, GQA), "qwen2" (q/k/v biases, tied) or "opt" (learned positions,
// LayerNorm with biases, relu, tied).
inline TinyModel tiny_model(const std::string& family, int vocab_size = 32) {
  TinyModel m;
  ModelConfig& c = m.c;
  const bool opt = family == "opt";
  c.arch = opt ? Arch::OPT : Arch::Llama;
  c.family = family;
  c.dim = 16, c.hidden_dim = 24, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = opt ? 4 : 2, c.head_dim = 4;
  c.vocab_size = vocab_size, c.max_seq_len = 64, c.norm_eps = 1e-6f;
  c.rope_theta = family == "llama" ? 500000.0f : 10000.0f;
  c.tie_embeddings = family != "llama";
  c.attn_qkv_bias = family != "llama";
  c.attn_out_bias = c.mlp_bias = opt;
  if (opt) c.activation = "relu";
  if (family == "llama") c.rope_scaling = RopeScaling{"llama3", 8.0f, 1.0f, 4.0f, 8192};

  const int64_t D = c.dim, F = c.hidden_dim, V = c.vocab_size, Q = c.n_heads * c.head_dim, KV = c.kv_dim();
  auto& s = m.specs;
  s.push_back({"token_embd.weight", {V, D}});
  if (opt) s.push_back({"position_embd.weight", {c.max_seq_len + 2, D}});
  s.push_back({"output_norm.weight", {D}});
  if (opt) s.push_back({"output_norm.bias", {D}});
  if (!c.tie_embeddings) s.push_back({"output.weight", {V, D}});
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    s.push_back({b + "attn_norm.weight", {D}});
    s.push_back({b + "attn_q.weight", {Q, D}});
    s.push_back({b + "attn_k.weight", {KV, D}});
    s.push_back({b + "attn_v.weight", {KV, D}});
    s.push_back({b + "attn_output.weight", {D, Q}});
    s.push_back({b + "ffn_norm.weight", {D}});
    if (!opt) s.push_back({b + "ffn_gate.weight", {F, D}});
    s.push_back({b + "ffn_up.weight", {F, D}});
    s.push_back({b + "ffn_down.weight", {D, F}});
    if (c.attn_qkv_bias) {
      s.push_back({b + "attn_q.bias", {Q}});
      s.push_back({b + "attn_k.bias", {KV}});
      s.push_back({b + "attn_v.bias", {KV}});
    }
    if (opt) {
      for (const char* n : {"attn_output.bias", "attn_norm.bias", "ffn_norm.bias", "ffn_down.bias"})
        s.push_back({b + n, {D}});
      s.push_back({b + "ffn_up.bias", {F}});
    }
  }
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  for (const auto& [name, shape] : s) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    auto& v = m.values[name];
    for (int64_t i = 0; i < n; ++i) v.push_back(dist(rng));
  }

  tokenizer::Vocab& v = m.vocab;
  if (family == "llama") {
    v.kind = tokenizer::VocabKind::SentencePiece;
    v.tokens = {"<unk>", "<s>", "</s>", "<0x41>", "\xe2\x96\x81", "a", "b", "\xe2\x96\x81" "ab"};
    v.scores = {0, 0, 0, 0, -1, -2, -3, -4};
    v.types = {2, 3, 3, 6, 1, 1, 1, 1};
    v.unk_id = 0, v.bos_id = 1, v.eos_id = 2;
    v.add_bos = true;
  } else {
    v.kind = tokenizer::VocabKind::ByteLevelBPE;
    v.tokens = {"<|endoftext|>", "a", "b", "ab", "\xc4\xa0", "\xc4\xa0" "ab"};
    v.merges = {"a b", "\xc4\xa0 ab"};
    v.pre = family;
    v.eos_id = v.pad_id = 0;
    v.add_bos = false, v.add_space_prefix = false;
  }
  return m;
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
  EXPECT_EQ(a.tie_embeddings, b.tie_embeddings);
  EXPECT_EQ(a.attn_qkv_bias, b.attn_qkv_bias);
  EXPECT_EQ(a.attn_out_bias, b.attn_out_bias);
  EXPECT_EQ(a.mlp_bias, b.mlp_bias);
  EXPECT_EQ(a.activation, b.activation);
  if (a.arch == Arch::Llama) {
    EXPECT_EQ(a.rope_theta, b.rope_theta);
    EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
    EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
    EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
    EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
    EXPECT_EQ(a.rope_scaling.original_max_position, b.rope_scaling.original_max_position);
  }
}

inline bool is_qk(const std::string& name) {
  return name.find(".attn_q.") != std::string::npos || name.find(".attn_k.") != std::string::npos;
}


}  // namespace lcq::test
