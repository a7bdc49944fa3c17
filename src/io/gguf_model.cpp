// GGUF models: architectures "llama" (also Mistral and SmolLM files), "qwen2" and lcq's own
// "opt". Tensor names in GGUF are already the canonical ones; "llama" stores q/k rows in
// interleaved RoPE order, which ModelSource reports through qk_interleaved and the writer
// produces with permute_qk_to_interleaved. Keys and layouts: docs/model-formats.md, "GGUF".
#include "formats.h"

#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/core/printable.h"
#include "lcq/io/gguf.h"
#include "lcq/io/writers.h"

#include <climits>
#include <cstring>

namespace lcq::io {

namespace {

enum class GgufArch { Llama, Qwen2, OPT };

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Rows of one head in interleaved order are pairs (x[i], x[i + head_dim/2]) of the
// rotate-half order: interleaved row 2i+j holds rotate-half row j*head_dim/2 + i.
void permute_rows(const uint8_t* src, uint8_t* dst, int n_heads, int64_t head_dim, size_t row_bytes,
                  bool to_interleaved) {
  LCQ_CHECK(n_heads > 0 && head_dim > 0 && head_dim % 2 == 0, "q/k permutation: invalid heads {} x {}", n_heads,
            head_dim);
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t interleaved = h * head_dim + 2 * i + j;
        const int64_t rotate_half = h * head_dim + j * half + i;
        const int64_t from = to_interleaved ? rotate_half : interleaved;
        const int64_t to = to_interleaved ? interleaved : rotate_half;
        std::memcpy(dst + size_t(to) * row_bytes, src + size_t(from) * row_bytes, row_bytes);
      }
}

int get_int(const GgufFile& f, const std::string& key, int64_t def = -1) {
  const int64_t v = def < 0 ? f.get_i64(key) : f.get_i64(key, def);
  if (v < 0 || v > INT_MAX) fail("{}: metadata key '{}' has implausible value {}", f.path(), key, v);
  return int(v);
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// Looks tensors up and checks their shapes. Types lcq cannot dequantize (packed integer
// codes written by the quantizers) have layouts of their own, so only their presence counts.
struct TensorChecker {
  const GgufFile& f;

  const TensorView* check(const std::string& name, const std::vector<int64_t>& shape, bool required) const {
    const TensorView* t = f.find_tensor(name);
    if (!t) {
      if (required) fail("{}: missing tensor '{}'", f.path(), name);
      return nullptr;
    }
    if (dtype_is_float_convertible(t->dtype) && t->shape != shape)
      fail("{}: tensor '{}' has shape {}, expected {}", f.path(), name, shape_str(t->shape), shape_str(shape));
    return t;
  }
  const TensorView* need(const std::string& name, const std::vector<int64_t>& shape) const {
    return check(name, shape, true);
  }
  const TensorView* maybe(const std::string& name, const std::vector<int64_t>& shape) const {
    return check(name, shape, false);
  }
  // A linear layer's weight: dense "<name>.weight", or an LCQ codebook layer (checked in
  // full when it is read, see codebook_tensors.h).
  void linear(const std::string& weight, const std::vector<int64_t>& shape) const {
    const std::string base = weight.substr(0, weight.size() - std::string(".weight").size());
    if (!f.find_tensor(weight) && f.find_tensor(base + ".lcq_idx")) return;
    need(weight, shape);
  }
};

void read_rope_scaling(const GgufFile& f, const std::string& p, RopeScaling& rs) {
  rs.type = f.get_string(p + "rope.scaling.type", "none");
  rs.factor = f.get_f32(p + "rope.scaling.factor", 1.0f);
  if (rs.type == "none" && f.has(p + "rope.scale_linear")) {  // older llama.cpp key
    rs.type = "linear";
    rs.factor = f.get_f32(p + "rope.scale_linear");
  }
  if (rs.type == "llama3") {
    rs.low_freq_factor = f.get_f32(p + "rope.scaling.low_freq_factor", rs.low_freq_factor);
    rs.high_freq_factor = f.get_f32(p + "rope.scaling.high_freq_factor", rs.high_freq_factor);
    rs.original_max_position = get_int(f, p + "rope.scaling.original_context_length", rs.original_max_position);
  }
  if (rs.type != "none" && rs.type != "linear" && rs.type != "llama3")
    fail("{}: unsupported rope scaling type '{}'", f.path(), printable(rs.type));
  if (rs.type == "none") rs.factor = 1.0f;
}

ModelConfig read_config(const GgufFile& f, const std::string& arch, GgufArch kind) {
  const std::string p = arch + ".";
  ModelConfig c;
  c.family = arch;
  c.n_layers = get_int(f, p + "block_count");
  c.dim = get_int(f, p + "embedding_length");
  c.hidden_dim = get_int(f, p + "feed_forward_length");
  c.n_heads = get_int(f, p + "attention.head_count");
  c.n_kv_heads = get_int(f, p + "attention.head_count_kv", c.n_heads);
  c.max_seq_len = get_int(f, p + "context_length");
  const int default_head_dim = c.n_heads > 0 ? c.dim / c.n_heads : 0;
  c.head_dim = get_int(f, p + "attention.key_length", get_int(f, p + "rope.dimension_count", default_head_dim));
  if (kind == GgufArch::OPT) {
    c.arch = Arch::OPT;
    c.norm_eps = f.get_f32(p + "attention.layer_norm_epsilon", 1e-5f);
    c.activation = f.get_string(p + "activation", "relu");
    c.opt_pre_layer_norm = f.get_bool(p + "pre_layer_norm", true);
    c.attn_qkv_bias = c.attn_out_bias = c.mlp_bias = true;
  } else {
    c.arch = Arch::Llama;
    c.norm_eps = f.get_f32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    c.rope_theta = f.get_f32(p + "rope.freq_base", 10000.0f);
    read_rope_scaling(f, p, c.rope_scaling);
    c.attn_qkv_bias = kind == GgufArch::Qwen2;
  }
  return c;
}

void check_tensors(const GgufFile& f, ModelConfig& c, GgufArch kind) {
  const TensorChecker t{f};
  const int64_t D = c.dim, F = c.hidden_dim, V = c.vocab_size;
  const int64_t Q = int64_t(c.n_heads) * c.head_dim, KV = c.kv_dim();
  const bool opt = kind == GgufArch::OPT;
  c.tie_embeddings = t.maybe("output.weight", {V, D}) == nullptr;
  t.check("output_norm.weight", {D}, !opt || c.opt_pre_layer_norm);
  if (opt) {
    t.check("output_norm.bias", {D}, c.opt_pre_layer_norm);
    // As in transformers, the first two rows are reserved: position p uses row p + 2.
    t.need("position_embd.weight", {int64_t(c.max_seq_len) + 2, D});
  } else {
    // llama files may carry q/k/v and output biases; qwen2 files always carry q/k/v ones.
    if (kind == GgufArch::Llama) c.attn_qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.attn_out_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = fmt::format("blk.{}.", l);
    t.need(b + "attn_norm.weight", {D});
    t.need(b + "ffn_norm.weight", {D});
    t.linear(b + "attn_q.weight", {Q, D});
    t.linear(b + "attn_k.weight", {KV, D});
    t.linear(b + "attn_v.weight", {KV, D});
    t.linear(b + "attn_output.weight", {D, Q});
    t.linear(b + "ffn_up.weight", {F, D});
    t.linear(b + "ffn_down.weight", {D, F});
    if (!opt) t.linear(b + "ffn_gate.weight", {F, D});
    if (c.attn_qkv_bias) {
      t.need(b + "attn_q.bias", {Q});
      t.need(b + "attn_k.bias", {KV});
      t.need(b + "attn_v.bias", {KV});
    }
    if (c.attn_out_bias) t.need(b + "attn_output.bias", {D});
    if (opt) {
      t.need(b + "attn_norm.bias", {D});
      t.need(b + "ffn_norm.bias", {D});
      t.need(b + "ffn_up.bias", {F});
      t.need(b + "ffn_down.bias", {D});
    }
  }
}

tokenizer::Vocab read_vocab(const GgufFile& f) {
  using tokenizer::VocabKind;
  tokenizer::Vocab v;
  const std::string model = f.get_string("tokenizer.ggml.model", "none");
  if (model == "none" || model.empty()) return v;
  bool sentencepiece = model == "llama";
  if (!sentencepiece && model != "gpt2") fail("{}: unsupported tokenizer model '{}'", f.path(), printable(model));
  v.kind = sentencepiece ? VocabKind::SentencePiece : VocabKind::ByteLevelBPE;
  v.tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (v.tokens.empty()) fail("{}: tokenizer '{}' has no tokens (tokenizer.ggml.tokens)", f.path(), printable(model));
  const size_t n = v.tokens.size();
  v.scores = f.get_f32_array("tokenizer.ggml.scores");
  v.types = f.get_i32_array("tokenizer.ggml.token_type");
  if (!v.scores.empty() && v.scores.size() != n)
    fail("{}: tokenizer.ggml.scores has {} entries for {} tokens", f.path(), v.scores.size(), n);
  if (!v.types.empty() && v.types.size() != n)
    fail("{}: tokenizer.ggml.token_type has {} entries for {} tokens", f.path(), v.types.size(), n);
  v.merges = f.get_string_array("tokenizer.ggml.merges");
  v.pre = f.get_string("tokenizer.ggml.pre", "default");
  auto id = [&](const char* key) {
    const int64_t x = f.get_i64(std::string("tokenizer.ggml.") + key, -1);
    if (x < -1 || x >= int64_t(n))
      fail("{}: tokenizer.ggml.{} {} is outside the vocabulary of {} tokens", f.path(), key, x, n);
    return int(x);
  };
  v.bos_id = id("bos_token_id");
  v.eos_id = id("eos_token_id");
  v.unk_id = id("unknown_token_id");
  v.pad_id = id("padding_token_id");
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", sentencepiece);
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", sentencepiece);
  v.source_path = f.path();
  return v;
}

}  // namespace

void permute_qk_to_interleaved(const float* src, float* dst, int n_heads, int64_t head_dim, int64_t row_len) {
  permute_rows(reinterpret_cast<const uint8_t*>(src), reinterpret_cast<uint8_t*>(dst), n_heads, head_dim,
               size_t(row_len) * sizeof(float), true);
}

void permute_qk_to_rotate_half(const float* src, float* dst, int n_heads, int64_t head_dim, int64_t row_len) {
  permute_rows(reinterpret_cast<const uint8_t*>(src), reinterpret_cast<uint8_t*>(dst), n_heads, head_dim,
               size_t(row_len) * sizeof(float), false);
}

ModelSource load_gguf_model(std::shared_ptr<const MappedFile> file, const LoadOptions& opts) {
  const GgufFile f(std::move(file));
  const std::string& path = f.path();
  const std::string arch = f.get_string("general.architecture");
  GgufArch kind;
  if (arch == "llama") kind = GgufArch::Llama;
  else if (arch == "qwen2") kind = GgufArch::Qwen2;
  else if (arch == "opt") kind = GgufArch::OPT;
  else fail("{}: unsupported architecture '{}'", path, printable(arch));

  ModelSource src;
  src.path = path;
  src.format = Format::GGUF;
  src.config = read_config(f, arch, kind);
  // The vocabulary size is the embedding's row count: of the dense tensor, or of the packed
  // indices of a quantized embedding (an LCQ codebook layer, docs/lcq-format.md).
  const TensorView* embd = f.find_tensor("token_embd.weight");
  const TensorView* embd_q = embd ? nullptr : f.find_tensor("token_embd.lcq_idx");
  if (!embd && !embd_q) fail("{}: missing tensor 'token_embd.weight'", path);
  if (embd && (embd->shape.size() != 2 || embd->shape[1] != src.config.dim))
    fail("{}: tensor 'token_embd.weight' has shape {}, expected [vocab, {}]", path, shape_str(embd->shape),
         src.config.dim);
  const TensorView& rows = embd ? *embd : *embd_q;
  if (rows.shape.size() != 2 || rows.shape[0] < 1 || rows.shape[0] > INT_MAX)
    fail("{}: tensor '{}' has shape {}, expected [vocab, ...]", path, rows.name, shape_str(rows.shape));
  src.config.vocab_size = int(rows.shape[0]);
  src.config.validate(path);
  check_tensors(f, src.config, kind);

  src.tensors = f.tensors();
  src.qk_interleaved = kind == GgufArch::Llama;
  src.vocab = opts.tokenizer_path.empty() ? read_vocab(f) : tokenizer::load_vocab_file(opts.tokenizer_path);
  if (src.vocab.size() > src.config.vocab_size)
    fail("{}: the tokenizer has {} tokens but the model only {} embeddings", path, src.vocab.size(),
         src.config.vocab_size);
  src.metadata = f.metadata_json();
  src.keepalive.push_back(f.mapping());
  return src;
}

// ---- writing ---------------------------------------------------------------------------

namespace {

std::string gguf_arch_for(const ModelConfig& c) {
  if (c.arch == Arch::OPT) return "opt";
  // Like the HF writer: q/k/v biases without an output bias is the Qwen2 layout.
  return c.family == "qwen2" || (c.attn_qkv_bias && !c.attn_out_bias) ? "qwen2" : "llama";
}

void set_config(GgufWriter& w, const ModelConfig& c, const std::string& arch) {
  const std::string p = arch + ".";
  w.set_u32(p + "context_length", uint32_t(c.max_seq_len));
  w.set_u32(p + "embedding_length", uint32_t(c.dim));
  w.set_u32(p + "block_count", uint32_t(c.n_layers));
  w.set_u32(p + "feed_forward_length", uint32_t(c.hidden_dim));
  w.set_u32(p + "attention.head_count", uint32_t(c.n_heads));
  w.set_u32(p + "attention.head_count_kv", uint32_t(c.n_kv_heads));
  w.set_u32(p + "attention.key_length", uint32_t(c.head_dim));
  w.set_u32(p + "attention.value_length", uint32_t(c.head_dim));
  w.set_u32(p + "vocab_size", uint32_t(c.vocab_size));
  if (c.arch == Arch::OPT) {
    w.set_f32(p + "attention.layer_norm_epsilon", c.norm_eps);
    w.set_string(p + "activation", c.activation);
    w.set_bool(p + "pre_layer_norm", c.opt_pre_layer_norm);
    return;
  }
  w.set_u32(p + "rope.dimension_count", uint32_t(c.head_dim));
  w.set_f32(p + "rope.freq_base", c.rope_theta);
  w.set_f32(p + "attention.layer_norm_rms_epsilon", c.norm_eps);
  if (c.rope_scaling.type != "none") {
    w.set_string(p + "rope.scaling.type", c.rope_scaling.type);
    w.set_f32(p + "rope.scaling.factor", c.rope_scaling.factor);
  }
  if (c.rope_scaling.type == "llama3") {
    w.set_f32(p + "rope.scaling.low_freq_factor", c.rope_scaling.low_freq_factor);
    w.set_f32(p + "rope.scaling.high_freq_factor", c.rope_scaling.high_freq_factor);
    w.set_u32(p + "rope.scaling.original_context_length", uint32_t(c.rope_scaling.original_max_position));
  }
}

void set_vocab(GgufWriter& w, const tokenizer::Vocab& v, const std::string& path) {
  if (v.empty()) return;
  const bool sp = v.kind == tokenizer::VocabKind::SentencePiece;
  const size_t n = v.tokens.size();
  LCQ_CHECK(v.scores.empty() || v.scores.size() == n, "{}: vocabulary has {} scores for {} tokens", path,
            v.scores.size(), n);
  LCQ_CHECK(v.types.empty() || v.types.size() == n, "{}: vocabulary has {} token types for {} tokens", path,
            v.types.size(), n);
  w.set_string("tokenizer.ggml.model", sp ? "llama" : "gpt2");
  if (!sp) w.set_string("tokenizer.ggml.pre", v.pre);
  w.set_string_array("tokenizer.ggml.tokens", v.tokens);
  if (!v.scores.empty()) w.set_f32_array("tokenizer.ggml.scores", v.scores);
  if (!v.types.empty()) w.set_i32_array("tokenizer.ggml.token_type", v.types);
  if (!v.merges.empty()) w.set_string_array("tokenizer.ggml.merges", v.merges);
  const std::pair<const char*, int> ids[] = {{"bos_token_id", v.bos_id}, {"eos_token_id", v.eos_id},
                                             {"unknown_token_id", v.unk_id}, {"padding_token_id", v.pad_id}};
  for (const auto& [key, id] : ids)
    if (id >= 0) w.set_u32(std::string("tokenizer.ggml.") + key, uint32_t(id));
  w.set_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", v.add_eos);
  w.set_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
}

// n f32 values stored as `dtype` (F16 or BF16; two bytes each) into out.
void convert_f32(const float* src, int64_t n, DType dtype, uint8_t* out, const std::string& where) {
  LCQ_CHECK(dtype == DType::F16 || dtype == DType::BF16, "{}: f32 values can be stored as F32, F16 or BF16, not {}",
            where, dtype_name(dtype));
  const bool f16 = dtype == DType::F16;
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f16 ? f32_to_f16(src[i]) : f32_to_bf16(src[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

// A tensor whose values are produced while the file is written, a piece of rows at a time.
// A q/k tensor of a "llama" file (heads > 0) is produced whole and permuted when its turn
// comes, so that no more than one is in memory.
GgufWriter::Producer streamed_tensor(const WriteTensor& t, const std::string& where, int heads, int64_t head_dim) {
  return [&t, where, heads, head_dim](const GgufWriter::Put& put) {
    const int64_t rows = t.rows(), per_row = rows > 0 ? t.numel() / rows : 0;
    const int64_t step = heads > 0 ? std::max<int64_t>(rows, 1) : rows_per_piece(t);
    std::vector<float> values, permuted;
    std::vector<uint8_t> bytes, permuted_bytes;
    const size_t row_bytes = t.is_f32() ? 0 : dtype_nbytes(t.dtype, t.numel(), where) / size_t(std::max<int64_t>(rows, 1));
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
      const int64_t r1 = std::min(rows, r0 + step), n = (r1 - r0) * per_row;
      if (!t.is_f32()) {
        bytes.resize(size_t(r1 - r0) * row_bytes);
        t.read_raw(r0, r1, row_bytes, bytes.data());
        if (heads > 0) {
          permuted_bytes.resize(bytes.size());
          permute_rows(bytes.data(), permuted_bytes.data(), heads, head_dim, row_bytes, true);
          bytes.swap(permuted_bytes);
        }
        put(bytes.data(), bytes.size());
        continue;
      }
      values.resize(size_t(n));
      t.read_f32(r0, r1, values.data());
      if (heads > 0) {
        permuted.resize(values.size());
        permute_qk_to_interleaved(values.data(), permuted.data(), heads, head_dim, per_row);
        values.swap(permuted);
      }
      if (t.dtype == DType::F32) {
        put(values.data(), size_t(n) * sizeof(float));
      } else {
        bytes.resize(size_t(n) * 2);
        convert_f32(values.data(), n, t.dtype, bytes.data(), where);
        put(bytes.data(), bytes.size());
      }
    }
  };
}

// Heads of the q/k tensor a "llama" GGUF stores interleaved (weights and biases), else 0.
int qk_heads(const std::string& name, const ModelConfig& c) {
  if (name.rfind("blk.", 0) != 0) return 0;
  if (ends_with(name, ".attn_q.weight") || ends_with(name, ".attn_q.bias")) return c.n_heads;
  if (ends_with(name, ".attn_k.weight") || ends_with(name, ".attn_k.bias")) return c.n_kv_heads;
  return 0;
}

// A writer holding the key-value pairs of a model file (extra metadata, then the keys of
// `config` and `vocab`), no tensors yet.
GgufWriter model_writer(const std::string& path, const ModelConfig& config, const tokenizer::Vocab& vocab,
                        const WriteOptions& opts) {
  config.validate(path);
  const std::string arch = gguf_arch_for(config);
  GgufWriter w;
  // Extra pairs go first so that the keys derived from config and vocab below win.
  LCQ_CHECK(opts.extra_metadata.is_object(), "{}: extra metadata must be a JSON object", path);
  for (const auto& [key, value] : opts.extra_metadata.items()) {
    if (value.is_object() && value.contains("gguf_array")) continue;  // summarised by metadata_json()
    if (key == "general.alignment") {
      LCQ_CHECK(value.is_number_unsigned() || value.is_number_integer(), "{}: general.alignment must be an integer",
                path);
      w.set_alignment(uint32_t(value.get<int64_t>()));
      continue;
    }
    w.set_json(key, value);
  }
  w.set_string("general.architecture", arch);
  if (!opts.extra_metadata.contains("general.name")) w.set_string("general.name", config.family);
  set_config(w, config, arch);
  set_vocab(w, vocab, path);
  return w;
}

}  // namespace

uint64_t gguf_model_bytes(const ModelConfig& config, const std::vector<WriteTensor>& tensors,
                          const tokenizer::Vocab& vocab, const WriteOptions& opts) {
  GgufWriter w = model_writer("(size estimate)", config, vocab, opts);
  for (const WriteTensor& t : tensors)
    w.add_tensor(t.name, t.dtype, t.shape, GgufWriter::Producer([](const GgufWriter::Put&) {}));
  return w.file_bytes();
}

void write_gguf_model(const std::string& path, const ModelConfig& config, const std::vector<WriteTensor>& tensors,
                      const tokenizer::Vocab& vocab, const WriteOptions& opts) {
  GgufWriter w = model_writer(path, config, vocab, opts);
  const std::string arch = gguf_arch_for(config);

  std::vector<std::vector<uint8_t>> buffers;  // converted / permuted copies, alive until write()
  buffers.reserve(tensors.size() * 2);
  for (const WriteTensor& t : tensors) {
    const std::string where = fmt::format("{}: tensor '{}'", path, printable(t.name));
    int64_t numel = 1;
    for (int64_t d : t.shape) {
      LCQ_CHECK(d >= 0 && (d == 0 || numel <= INT64_MAX / d), "{}: invalid shape {}", where, shape_str(t.shape));
      numel *= d;
    }
    const int heads = arch == "llama" ? qk_heads(t.name, config) : 0;
    const int64_t rows = int64_t(heads) * config.head_dim;
    if (heads > 0)
      LCQ_CHECK(!t.shape.empty() && t.shape[0] == rows, "{}: shape {} does not start with {} heads x {}", where,
                shape_str(t.shape), heads, config.head_dim);
    if (t.fill_f32 || t.fill_raw) {  // produced piece by piece while the file is written
      LCQ_CHECK(!t.is_f32() || t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16,
                "{}: f32 values can be stored as F32, F16 or BF16, not {}", where, dtype_name(t.dtype));
      if (heads > 0 && !t.is_f32()) {
        const size_t nbytes = dtype_nbytes(t.dtype, numel, where);
        LCQ_CHECK(nbytes % size_t(rows) == 0, "{}: {} bytes do not split into {} rows", where, nbytes, rows);
      }
      w.add_tensor(t.name, t.dtype, t.shape, streamed_tensor(t, where, heads, config.head_dim));
      continue;
    }
    const void* data = nullptr;
    if (t.is_f32()) {
      const float* src = t.f32;
      if (heads > 0) {
        std::vector<uint8_t>& tmp = buffers.emplace_back(size_t(numel) * sizeof(float));
        permute_qk_to_interleaved(src, reinterpret_cast<float*>(tmp.data()), heads, config.head_dim, numel / rows);
        src = reinterpret_cast<const float*>(tmp.data());
      }
      if (t.dtype == DType::F32) {
        data = src;
      } else if (t.dtype == DType::F16 || t.dtype == DType::BF16) {
        std::vector<uint8_t>& out = buffers.emplace_back(size_t(numel) * 2);
        convert_f32(src, numel, t.dtype, out.data(), where);
        data = out.data();
      } else {
        fail("{}: f32 values can be stored as F32, F16 or BF16, not {}", where, dtype_name(t.dtype));
      }
    } else if (t.raw) {
      const size_t nbytes = dtype_nbytes(t.dtype, numel, where);
      const uint8_t* src = t.raw;
      data = src;
      if (heads > 0) {
        LCQ_CHECK(nbytes % size_t(rows) == 0, "{}: {} bytes do not split into {} rows", where, nbytes, rows);
        std::vector<uint8_t>& tmp = buffers.emplace_back(nbytes);
        permute_rows(src, tmp.data(), heads, config.head_dim, nbytes / size_t(rows), true);
        data = tmp.data();
      }
    } else {
      fail("{}: no data", where);
    }
    w.add_tensor(t.name, t.dtype, t.shape, data);
  }
  w.write(path);
}

}  // namespace lcq::io
