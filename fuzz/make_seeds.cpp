// lcq_fuzz_seeds SHARED_DIR OUT_DIR [SMOLLM2_GGUF]: the fuzzers' seed inputs, made at run time
// from the real files in the shared directory (never committed). A real model is too large
// to mutate quickly, so stories260K is shrunk: the top-left corner of every real weight
// (dim 16, 2 heads, feed-forward 32, 2 layers) and 64 of its 512 tokens. From that model the
// writers lcq itself uses make every format: GGUF (llama, qwen2 and opt layouts; f32, f16,
// bf16; tensors of each quantized type), llama2.c checkpoints (legacy and version 1),
// safetensors, Hugging Face directories (in fuzz_hf_model's input layout, hf_parts.h), and
// tokenizer files (tok512.bin and a shortened one, tokenizer.json in both BPE kinds; the
// byte-level one from SmolLM2's vocabulary when its GGUF is given). fuzz/make_corpus.sh adds
// LCQ-quantized models and zero-shot task lines.
#include "../src/io/formats.h"
#include "../src/io/hf_names.h"
#include "hf_parts.h"
#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/io/model_source.h"
#include "lcq/io/safetensors.h"
#include "lcq/io/writers.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

namespace {

namespace fs = std::filesystem;
using namespace lcq;
using namespace lcq::io;

std::string g_out;

std::string out_path(const std::string& target, const std::string& name) {
  fs::create_directories(fs::path(g_out) / target);
  return (fs::path(g_out) / target / name).string();
}

// The real weights, dequantized, and a way to cut a corner out of them.
struct RealWeights {
  std::map<std::string, std::vector<float>> values;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::vector<float> pool;  // every weight one after the other, for tensors stories260K lacks

  explicit RealWeights(const ModelSource& src) {
    for (const TensorView& t : src.tensors) {
      std::vector<float>& v = values[t.name];
      v.resize(size_t(t.numel()));
      load_tensor_f32(src, t, v.data());
      shapes[t.name] = t.shape;
      pool.insert(pool.end(), v.begin(), v.end());
    }
  }

  // Rows `rows` (all when empty) and the first shape[1] columns of `name`; for names the
  // model lacks, consecutive values of the pool.
  std::vector<float> corner(const std::string& name, const std::vector<int64_t>& shape,
                            const std::vector<int>& rows = {}) const {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    std::vector<float> out;
    out.reserve(size_t(numel));
    auto it = values.find(name);
    if (it == values.end()) {
      for (int64_t i = 0; i < numel; ++i) out.push_back(pool[size_t((i * 7919) % int64_t(pool.size()))]);
      return out;
    }
    const std::vector<int64_t>& from = shapes.at(name);
    const int64_t cols = shape.size() > 1 ? shape[1] : 1, from_cols = from.size() > 1 ? from[1] : 1;
    for (int64_t r = 0; r < shape[0]; ++r) {
      const int64_t src_row = rows.empty() ? r : rows[size_t(r)];
      for (int64_t c = 0; c < cols; ++c) out.push_back(it->second[size_t(src_row * from_cols + c)]);
    }
    return out;
  }
};

tokenizer::Vocab subset(const tokenizer::Vocab& v, const std::vector<int>& ids) {
  tokenizer::Vocab s = v;
  s.tokens.clear();
  s.scores.clear();
  s.types.clear();
  for (int id : ids) {
    s.tokens.push_back(v.tokens[size_t(id)]);
    if (!v.scores.empty()) s.scores.push_back(v.scores[size_t(id)]);
    if (!v.types.empty()) s.types.push_back(v.types[size_t(id)]);
  }
  return s;
}

struct TinyModel {
  ModelConfig config;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  std::vector<std::vector<float>> data;
  tokenizer::Vocab vocab;

  std::vector<WriteTensor> tensors(DType dtype) const {
    std::vector<WriteTensor> out;
    for (size_t i = 0; i < shapes.size(); ++i) out.push_back({shapes[i].first, shapes[i].second, dtype, data[i].data(), nullptr, {}, {}});
    return out;
  }
};

ModelConfig tiny_config(Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.family = arch == Arch::OPT ? "opt" : "llama";
  c.dim = 16;
  c.hidden_dim = 32;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = arch == Arch::OPT ? 2 : 1;
  c.head_dim = 8;
  c.max_seq_len = 64;
  c.tie_embeddings = true;
  c.activation = arch == Arch::OPT ? "relu" : "silu";
  if (arch == Arch::OPT) c.attn_qkv_bias = c.attn_out_bias = c.mlp_bias = true;
  return c;
}

TinyModel make_tiny(const RealWeights& real, ModelConfig c, const tokenizer::Vocab& vocab, const std::vector<int>& ids) {
  TinyModel m;
  c.vocab_size = int(ids.size());
  m.config = c;
  m.vocab = subset(vocab, ids);
  for (auto [name, shape] : hf::expected_tensors(c)) {
    if (name == "position_embd.weight") shape[0] = c.max_seq_len + 2;  // OPT's two reserved rows
    const bool by_token = name == "token_embd.weight" || name == "output.weight";
    m.data.push_back(real.corner(by_token ? "token_embd.weight" : name, shape, by_token ? ids : std::vector<int>{}));
    m.shapes.emplace_back(name, shape);
  }
  return m;
}

// llama2.c checkpoints (the loader's layouts, src/io/llama2c.cpp): legacy with the RoPE
// tables, or version 1 ("ak42", 256-byte header, norms first).
void write_llama2c(const std::string& path, const TinyModel& m, bool v1) {
  const ModelConfig& c = m.config;
  std::string bytes;
  auto put_i32 = [&](int32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  auto put_tensor = [&](const std::string& name) {
    for (size_t i = 0; i < m.shapes.size(); ++i)
      if (m.shapes[i].first == name) {
        bytes.append(reinterpret_cast<const char*>(m.data[i].data()), m.data[i].size() * 4);
        return;
      }
    lcq::fail("seed maker: no tensor {}", name);
  };
  auto put_layers = [&](const std::string& kind) {
    for (int l = 0; l < c.n_layers; ++l) put_tensor("blk." + std::to_string(l) + "." + kind);
  };
  const bool tied = c.tie_embeddings;
  if (v1) {
    put_i32(0x616b3432);
    put_i32(1);
  }
  for (int v : {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, v1 || tied ? c.vocab_size : -c.vocab_size,
                c.max_seq_len})
    put_i32(v);
  if (v1) {
    bytes += char(tied ? 1 : 0);
    bytes.resize(256, '\0');
    put_layers("attn_norm.weight");
    put_layers("ffn_norm.weight");
    put_tensor("output_norm.weight");
    put_tensor("token_embd.weight");
  } else {
    put_tensor("token_embd.weight");
    put_layers("attn_norm.weight");
  }
  // q/k rows in llama2.c's interleaved RoPE order (the loader permutes them back).
  for (const char* kind : {"attn_q.weight", "attn_k.weight"}) {
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string name = "blk." + std::to_string(l) + "." + kind;
      for (size_t i = 0; i < m.shapes.size(); ++i) {
        if (m.shapes[i].first != name) continue;
        const int64_t rows = m.shapes[i].second[0], cols = m.shapes[i].second[1];
        std::vector<float> out(m.data[i].size());
        permute_qk_to_interleaved(m.data[i].data(), out.data(), int(rows / c.head_dim), c.head_dim, cols);
        bytes.append(reinterpret_cast<const char*>(out.data()), out.size() * 4);
      }
    }
  }
  for (const char* kind : {"attn_v.weight", "attn_output.weight"}) put_layers(kind);
  if (!v1) put_layers("ffn_norm.weight");
  for (const char* kind : {"ffn_gate.weight", "ffn_down.weight", "ffn_up.weight"}) put_layers(kind);
  if (!v1) {
    put_tensor("output_norm.weight");
    bytes.append(size_t(c.max_seq_len) * size_t(c.head_dim / 2) * 4 * 2, '\0');  // freq_cis real, imag
  }
  if (!tied) put_tensor("output.weight");
  write_file_atomic(path, bytes);
}

// llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, int32 length,
// bytes, with "▁" written as a space and BOS/EOS as "\n<s>\n" / "\n</s>\n" as llama2.c wrote them.
void write_tokenizer_bin(const std::string& path, const tokenizer::Vocab& v) {
  std::vector<std::string> pieces;
  int32_t max_len = 1;
  for (int id = 0; id < v.size(); ++id) {
    std::string p;
    const std::string& t = v.tokens[size_t(id)];
    for (size_t i = 0; i < t.size(); ++i) {
      if (t.compare(i, 3, "\xE2\x96\x81") == 0) {
        p += ' ';
        i += 2;
      } else {
        p += t[i];
      }
    }
    if (id == 1 || id == 2) p = "\n" + p + "\n";
    max_len = std::max(max_len, int32_t(p.size()));
    pieces.push_back(std::move(p));
  }
  std::string bytes(reinterpret_cast<const char*>(&max_len), 4);
  for (int id = 0; id < v.size(); ++id) {
    const float score = v.scores.empty() ? 0.0f : v.scores[size_t(id)];
    const int32_t len = int32_t(pieces[size_t(id)].size());
    bytes.append(reinterpret_cast<const char*>(&score), 4);
    bytes.append(reinterpret_cast<const char*>(&len), 4);
    bytes += pieces[size_t(id)];
  }
  write_file_atomic(path, bytes);
}

// Bytes of real weights stored under every type the readers know, so that each dequantizer
// (and each safetensors dtype) has a seed; the block contents are as arbitrary as a file's.
std::vector<uint8_t> real_bytes(const RealWeights& real, size_t n) {
  std::vector<uint8_t> out(n);
  std::memcpy(out.data(), real.pool.data(), std::min(n, real.pool.size() * 4));
  return out;
}

void write_gguf_seeds(const RealWeights& real, const TinyModel& llama, const TinyModel& qwen2, const TinyModel& opt,
                      const TinyModel& untied) {
  write_gguf_model(out_path("gguf", "llama-f32.gguf"), llama.config, llama.tensors(DType::F32), llama.vocab);
  write_gguf_model(out_path("gguf", "llama-untied-f16.gguf"), untied.config, untied.tensors(DType::F16), untied.vocab);
  write_gguf_model(out_path("gguf", "qwen2-bf16.gguf"), qwen2.config, qwen2.tensors(DType::BF16), qwen2.vocab);
  write_gguf_model(out_path("gguf", "opt-f32.gguf"), opt.config, opt.tensors(DType::F32), opt.vocab);
  // Extra tensors of every quantized type beside the model's own (loaders keep them).
  std::vector<WriteTensor> tensors = llama.tensors(DType::F16);
  std::deque<std::vector<uint8_t>> keep;
  const std::pair<DType, int64_t> quantized[] = {{DType::Q4_0, 64}, {DType::Q4_1, 64}, {DType::Q8_0, 64},
                                                 {DType::Q4_K, 256}, {DType::Q5_K, 256}, {DType::Q6_K, 256},
                                                 {DType::F64, 8}, {DType::I8, 8}, {DType::I32, 8}};
  for (const auto& [type, n] : quantized) {
    keep.push_back(real_bytes(real, dtype_nbytes(type, n, "seed")));
    tensors.push_back({std::string("fuzz.") + dtype_name(type), {n}, type, nullptr, keep.back().data(), {}, {}});
  }
  write_gguf_model(out_path("gguf", "llama-quantized-types.gguf"), llama.config, tensors, llama.vocab);
}

void write_safetensors_seeds(const RealWeights& real) {
  std::vector<WriteTensor> tensors;
  std::deque<std::vector<uint8_t>> keep;
  const DType types[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64,
                         DType::I32, DType::I16, DType::I8,  DType::U8};
  int64_t n = 3;
  for (DType t : types) {
    keep.push_back(real_bytes(real, dtype_nbytes(t, 2 * n, "seed")));
    tensors.push_back({std::string("t.") + dtype_name(t), {2, n}, t, nullptr, keep.back().data(), {}, {}});
    ++n;
  }
  tensors.push_back({"t.empty", {0, 4}, DType::F32, nullptr, nullptr, {}, {}});
  write_safetensors(out_path("safetensors", "dtypes.safetensors"), tensors, {{"format", "pt"}});
}

// A Hugging Face directory as fuzz_hf_model's input: the writer's files, joined.
void write_hf_seed(const std::string& name, const TinyModel& m, DType dtype, bool with_index, bool with_tokenizer) {
  const fs::path dir = fs::temp_directory_path() / ("lcq-fuzz-seed-" + std::to_string(getpid()));
  fs::remove_all(dir);
  write_hf_model(dir.string(), m.config, m.tensors(dtype), with_tokenizer ? m.vocab : tokenizer::Vocab{});
  std::vector<std::string> files;
  for (const std::string& f : lcq::fuzz::kHfFiles) files.push_back(fs::exists(dir / f) ? read_file((dir / f).string()) : "");
  if (with_index) {
    nlohmann::json index = {{"metadata", {{"total_size", fs::file_size(dir / "model.safetensors")}}}};
    for (const TensorView& t : read_safetensors((dir / "model.safetensors").string()).tensors)
      index["weight_map"][t.name] = "model.safetensors";
    files.back() = index.dump(1);
  }
  if (name == "llama-f32") {  // the safetensors target starts from the real writer's file too
    write_file_atomic(out_path("safetensors", "llama-f32.safetensors"), files[1]);
  }
  fs::remove_all(dir);
  write_file_atomic(out_path("hf_model", name), lcq::fuzz::join_parts(files));
}

// SmolLM2's byte-level BPE cut to its first `n` tokens and the merges among them.
tokenizer::Vocab byte_level_subset(const tokenizer::Vocab& full, int n) {
  std::vector<int> ids;
  for (int i = 0; i < n && i < full.size(); ++i) ids.push_back(i);
  tokenizer::Vocab v = subset(full, ids);
  std::set<std::string> have(v.tokens.begin(), v.tokens.end());
  v.merges.clear();
  for (const std::string& m : full.merges) {
    const size_t sp = m.find(' ');
    if (sp == std::string::npos) continue;
    const std::string l = m.substr(0, sp), r = m.substr(sp + 1);
    if (have.count(l) && have.count(r) && have.count(l + r)) v.merges.push_back(m);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: lcq_fuzz_seeds SHARED_DIR OUT_DIR [SMOLLM2_GGUF]\n");
    return 2;
  }
  try {
    const std::string shared = argv[1];
    g_out = argv[2];
    const std::string stories_dir = shared + "/models/stories260K";
    const ModelSource stories = load_model_source(stories_dir + "/stories260K.bin");
    LCQ_CHECK(stories.vocab.size() == 512, "{}: expected tok512.bin beside it", stories.path);
    const RealWeights real(stories);

    // Specials, newline and space bytes, then the first merged pieces.
    std::vector<int> sp_ids = {0, 1, 2, 3 + 0x0A, 3 + 0x20};
    for (int id = 259; sp_ids.size() < 64; ++id) sp_ids.push_back(id);
    const TinyModel llama = make_tiny(real, tiny_config(Arch::Llama), stories.vocab, sp_ids);
    ModelConfig untied_c = tiny_config(Arch::Llama);
    untied_c.tie_embeddings = false;
    untied_c.rope_scaling.type = "llama3";
    untied_c.rope_scaling.factor = 8.0f;
    const TinyModel untied = make_tiny(real, untied_c, stories.vocab, sp_ids);
    ModelConfig qwen2_c = tiny_config(Arch::Llama);
    qwen2_c.family = "qwen2";
    qwen2_c.attn_qkv_bias = true;
    qwen2_c.rope_theta = 1e6f;
    const TinyModel qwen2 = make_tiny(real, qwen2_c, stories.vocab, sp_ids);
    const TinyModel opt = make_tiny(real, tiny_config(Arch::OPT), stories.vocab, sp_ids);

    write_gguf_seeds(real, llama, qwen2, opt, untied);
    write_llama2c(out_path("llama2c", "legacy-tied.bin"), llama, false);
    write_llama2c(out_path("llama2c", "legacy-untied.bin"), untied, false);
    write_llama2c(out_path("llama2c", "v1-tied.bin"), llama, true);
    write_llama2c(out_path("llama2c", "v1-untied.bin"), untied, true);
    write_safetensors_seeds(real);
    write_hf_seed("llama-f32", llama, DType::F32, true, true);
    write_hf_seed("untied-f16", untied, DType::F16, false, true);
    write_hf_seed("qwen2-bf16", qwen2, DType::BF16, false, true);
    write_hf_seed("opt-f16", opt, DType::F16, false, false);

    write_file_atomic(out_path("tokenizer_bin", "tok512.bin"), read_file(stories_dir + "/tok512.bin"));
    write_tokenizer_bin(out_path("tokenizer_bin", "tok64.bin"), llama.vocab);
    write_file_atomic(out_path("tokenizer_json", "tok512.json"), tokenizer::vocab_to_tokenizer_json(stories.vocab));
    write_file_atomic(out_path("tokenizer_json", "tok64.json"), tokenizer::vocab_to_tokenizer_json(llama.vocab));
    write_file_atomic(out_path("spm_proto", "tok512.model"), read_file(stories_dir + "/tok512.model"));

    if (argc == 4) {  // a byte-level BPE vocabulary (GPT-2 style) from SmolLM2
      const ModelSource smol = load_model_source(argv[3]);
      const tokenizer::Vocab bl = byte_level_subset(smol.vocab, 400);
      write_file_atomic(out_path("tokenizer_json", "smollm2-400.json"), tokenizer::vocab_to_tokenizer_json(bl));
      std::vector<int> ids;
      for (int i = 0; i < bl.size(); ++i) ids.push_back(i);
      const TinyModel m = make_tiny(real, tiny_config(Arch::Llama), bl, ids);
      write_gguf_model(out_path("gguf", "llama-bytelevel.gguf"), m.config, m.tensors(DType::F16), m.vocab);
      write_hf_seed("bytelevel-f16", m, DType::F16, false, true);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lcq_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
