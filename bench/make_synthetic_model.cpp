// Writes a LLaMA-shaped GGUF model of any size with random weights, for speed and memory
// measurements of shapes no small real model has (e.g. the 813 M "synthetic LLaMA", 4096
// wide, 4 layers, in bench/vs_llamacpp.sh). Linear and embedding weights are N(0, std^2),
// norms 1; the vocabulary is another model's tokenizer file. Both lcq and llama.cpp load it.
//
//   make_synthetic_model OUT.gguf --tokenizer tok512.bin [--dim 4096] [--ffn 11008] [--layers 4]
//                        [--heads 32] [--kv-heads 32] [--type f16] [--std 0.02] [--seed 1]
//
// Weights are generated straight into the stored type, one tensor at a time next to the rest,
// so memory is about the file's size.
#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/io/writers.h"
#include "lcq/tokenizer/vocab.h"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <deque>

namespace {

struct Rng {  // xorshift64* with Box-Muller: fast enough for billions of values
  uint64_t s;
  double spare = 0;
  bool has_spare = false;
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }  // in (0, 1)
  double normal() {
    if (has_spare) {
      has_spare = false;
      return spare;
    }
    const double r = std::sqrt(-2 * std::log(uniform())), a = 2 * M_PI * uniform();
    spare = r * std::sin(a);
    has_spare = true;
    return r * std::cos(a);
  }
};

}  // namespace

int main(int argc, char** argv) try {
  std::string out, tokenizer_path, type = "f16";
  int dim = 4096, ffn = 11008, layers = 4, heads = 32, kv_heads = 32, context = 2048;
  double stddev = 0.02;
  uint64_t seed = 1;
  CLI::App app{"Write a LLaMA-shaped GGUF with random weights"};
  app.add_option("out", out, "Output .gguf file (written atomically)")->required();
  app.add_option("--tokenizer", tokenizer_path, "Vocabulary: tokenizer.bin, .model or tokenizer.json")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--dim", dim, "Hidden size")->check(CLI::Range(8, 1 << 16));
  app.add_option("--ffn", ffn, "Feed-forward inner size")->check(CLI::Range(8, 1 << 18));
  app.add_option("--layers", layers, "Transformer blocks")->check(CLI::Range(1, 1024));
  app.add_option("--heads", heads, "Query heads (dim must be a multiple)")->check(CLI::Range(1, 1024));
  app.add_option("--kv-heads", kv_heads, "Key/value heads (must divide --heads)")->check(CLI::Range(1, 1024));
  app.add_option("--context", context, "Context length stored in the file")->check(CLI::Range(16, 1 << 20));
  app.add_option("--type", type, "Stored type of the matrices")->check(CLI::IsMember({"f16", "bf16", "f32"}));
  app.add_option("--std", stddev, "Standard deviation of the weights")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "Random seed");
  CLI11_PARSE(app, argc, argv);
  LCQ_CHECK(dim % heads == 0, "--dim {} is not a multiple of --heads {}", dim, heads);
  LCQ_CHECK(heads % kv_heads == 0, "--kv-heads {} does not divide --heads {}", kv_heads, heads);

  const lcq::tokenizer::Vocab vocab = lcq::tokenizer::load_vocab_file(tokenizer_path);
  LCQ_CHECK(!vocab.empty(), "{}: no vocabulary", tokenizer_path);
  lcq::ModelConfig c;
  c.family = "llama";
  c.dim = dim;
  c.hidden_dim = ffn;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.vocab_size = vocab.size();
  c.max_seq_len = context;

  const lcq::io::DType dtype =
      type == "f32" ? lcq::io::DType::F32 : type == "bf16" ? lcq::io::DType::BF16 : lcq::io::DType::F16;
  const size_t elem = dtype == lcq::io::DType::F32 ? 4 : 2;
  Rng rng{0x9E3779B97F4A7C15ull ^ (seed * 0x100000001B3ull)};
  std::deque<std::vector<uint8_t>> storage;  // stable addresses until the write
  std::vector<lcq::io::WriteTensor> tensors;
  int64_t params = 0;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    params += n;
    const lcq::io::DType t = norm ? lcq::io::DType::F32 : dtype;
    std::vector<uint8_t>& buf = storage.emplace_back(size_t(n) * (norm ? 4 : elem));
    for (int64_t i = 0; i < n; ++i) {
      const float v = norm ? 1.0f : float(stddev * rng.normal());
      if (t == lcq::io::DType::F32) {
        std::memcpy(buf.data() + 4 * i, &v, 4);
      } else {
        const uint16_t h = t == lcq::io::DType::F16 ? lcq::f32_to_f16(v) : lcq::f32_to_bf16(v);
        std::memcpy(buf.data() + 2 * i, &h, 2);
      }
    }
    tensors.push_back({name, std::move(shape), t, nullptr, buf.data()});
  };
  const int64_t kv = c.kv_dim(), V = c.vocab_size;
  add("token_embd.weight", {V, dim}, false);
  for (int l = 0; l < layers; ++l) {
    const std::string b = fmt::format("blk.{}.", l);
    add(b + "attn_norm.weight", {dim}, true);
    add(b + "attn_q.weight", {dim, dim}, false);
    add(b + "attn_k.weight", {kv, dim}, false);
    add(b + "attn_v.weight", {kv, dim}, false);
    add(b + "attn_output.weight", {dim, dim}, false);
    add(b + "ffn_norm.weight", {dim}, true);
    add(b + "ffn_gate.weight", {ffn, dim}, false);
    add(b + "ffn_up.weight", {ffn, dim}, false);
    add(b + "ffn_down.weight", {dim, ffn}, false);
  }
  add("output_norm.weight", {dim}, true);
  add("output.weight", {V, dim}, false);

  lcq::io::WriteOptions wo;
  wo.extra_metadata["general.name"] = fmt::format("synthetic-llama-{}x{}", dim, layers);
  wo.extra_metadata["general.description"] =
      fmt::format("random N(0, {}^2) weights, seed {}, written by make_synthetic_model", stddev, seed);
  lcq::io::write_gguf_model(out, c, tensors, vocab, wo);
  fmt::print("wrote {} ({} parameters, {}, {} layers of {} x {}, vocabulary {})\n", out, params, type, layers, dim, ffn,
             V);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "make_synthetic_model: error: {}\n", e.what());
  return 1;
}
