// llama2.c checkpoints (Karpathy's run.c format), fp32 only:
//  - legacy ("version 0"): 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
//    vocab_size, seq_len; a negative vocab_size means the classifier is stored separately),
//    then the weights stacked per kind over the layers, then the RoPE tables, then wcls;
//  - version 1: uint32 magic "ak42", int32 version, the same 7 int32 (vocab positive), a
//    uint8 shared-classifier flag, zeros up to 256 bytes, then the weights in export.py's
//    version-1 order (norms first, no RoPE tables).
// Neither has a magic number we can trust for the legacy case, so the header is validated
// for plausibility and the file size must match it exactly.
#include "formats.h"
#include "lcq/core/error.h"
#include "lcq/core/mapped_file.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <tuple>

namespace lcq::io {

namespace {

namespace fs = std::filesystem;

constexpr uint32_t kMagicAk42 = 0x616b3432;
constexpr size_t kLegacyHeaderBytes = 7 * 4;
constexpr size_t kV1HeaderBytes = 256;

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// One stacked array of the file: `per_layer` arrays hold n_layers consecutive copies of
// `shape`. An empty name marks data we skip (the legacy RoPE tables, recomputed at runtime).
struct Segment {
  std::string name;
  bool per_layer;
  std::vector<int64_t> shape;
};

void validate_header(const Header& h, bool legacy, const std::string& path) {
  auto bad = [&](const char* why) {
    fail(
        "{}: invalid llama2.c header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, "
        "vocab_size {}, seq_len {}): {}; is this a llama2.c checkpoint?",
        path, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len, why);
  };
  if (h.dim <= 0 || h.hidden_dim <= 0 || h.n_layers <= 0 || h.n_heads <= 0 || h.n_kv_heads <= 0 ||
      h.seq_len <= 0 || h.vocab_size == 0)
    bad("sizes must be positive");
  if (!legacy && h.vocab_size < 0) bad("vocab_size must be positive in a versioned file");
  const int64_t vocab = std::abs(int64_t(h.vocab_size));
  if (h.dim > (1 << 16) || h.hidden_dim > (1 << 18) || h.n_layers > 1024 || vocab > (1 << 22) ||
      h.seq_len > (1 << 20))
    bad("sizes are implausibly large");
  if (h.n_heads > h.dim || h.dim % h.n_heads != 0) bad("dim is not a multiple of n_heads");
  if (h.n_kv_heads > h.n_heads || h.n_heads % h.n_kv_heads != 0)
    bad("n_heads is not a multiple of n_kv_heads");
  if ((h.dim / h.n_heads) % 2 != 0) bad("the head size is odd");
}

std::vector<Segment> layout(const Header& h, bool legacy, bool shared) {
  const int64_t dim = h.dim, hidden = h.hidden_dim, vocab = std::abs(int64_t(h.vocab_size));
  const int64_t head_dim = dim / h.n_heads, kv_dim = int64_t(h.n_kv_heads) * head_dim;
  const Segment embd{"token_embd.weight", false, {vocab, dim}};
  const Segment attn_norm{"attn_norm.weight", true, {dim}};
  const Segment wq{"attn_q.weight", true, {dim, dim}};
  const Segment wk{"attn_k.weight", true, {kv_dim, dim}};
  const Segment wv{"attn_v.weight", true, {kv_dim, dim}};
  const Segment wo{"attn_output.weight", true, {dim, dim}};
  const Segment ffn_norm{"ffn_norm.weight", true, {dim}};
  const Segment w1{"ffn_gate.weight", true, {hidden, dim}};
  const Segment w2{"ffn_down.weight", true, {dim, hidden}};
  const Segment w3{"ffn_up.weight", true, {hidden, dim}};
  const Segment out_norm{"output_norm.weight", false, {dim}};
  std::vector<Segment> segs;
  if (legacy) {
    const Segment freq{"", false, {int64_t(h.seq_len), head_dim / 2}};
    segs = {embd, attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3, out_norm, freq, freq};
  } else {
    segs = {attn_norm, ffn_norm, out_norm, embd, wq, wk, wv, wo, w1, w2, w3};
  }
  if (!shared) segs.push_back({"output.weight", false, {vocab, dim}});
  return segs;
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Sort key that lists tensors as a reader expects them: embeddings, layers in order, head.
std::tuple<int, int, size_t> view_order(const std::string& name, int layer, size_t seg_index) {
  if (layer >= 0) return {1, layer, seg_index};
  return {name == "token_embd.weight" ? 0 : 2, 0, seg_index};
}

tokenizer::Vocab load_tokenizer(const std::string& path, const LoadOptions& opts, int model_vocab) {
  auto fits = [&](const tokenizer::Vocab& v) { return v.size() <= model_vocab; };
  tokenizer::Vocab vocab;
  if (!opts.tokenizer_path.empty()) {
    vocab = tokenizer::load_vocab_file(opts.tokenizer_path);
    LCQ_CHECK(fits(vocab), "{}: the tokenizer has {} tokens but the model {} has only {}",
              opts.tokenizer_path, vocab.size(), path, model_vocab);
  } else {
    // llama2.c keeps its tokenizer beside the checkpoint; a generic tokenizer.bin there may
    // belong to another model, so candidates larger than this model's vocabulary are skipped.
    const fs::path dir = fs::path(path).parent_path();
    const std::string v = std::to_string(model_vocab);
    const std::string names[] = {"tokenizer.bin", "tok" + v + ".bin", "tokenizer.model",
                                 "tok" + v + ".model"};
    for (const std::string& name : names) {
      const fs::path candidate = dir / name;
      std::error_code ec;
      if (!fs::is_regular_file(candidate, ec)) continue;
      tokenizer::Vocab found = tokenizer::load_vocab_file(candidate.string());
      if (fits(found)) {
        vocab = std::move(found);
        break;
      }
    }
  }
  if (!vocab.empty() && vocab.bos_id < 0 && vocab.size() > 2) {
    // llama2.c's run.c hard-codes BOS = 1 and EOS = 2 and always prepends BOS.
    vocab.bos_id = 1;
    vocab.eos_id = 2;
    vocab.add_bos = true;
  }
  return vocab;
}

}  // namespace

ModelSource load_llama2c_model(std::shared_ptr<const MappedFile> map, const LoadOptions& opts) {
  const std::string path = map->path();
  const uint8_t* data = map->data();
  const size_t size = map->size();
  LCQ_CHECK(size >= kLegacyHeaderBytes, "{}: truncated: {} bytes is shorter than a llama2.c header", path,
            size);

  uint32_t magic = 0;
  std::memcpy(&magic, data, 4);
  const bool legacy = magic != kMagicAk42;
  int version = 0;
  Header h{};
  bool shared = false;
  size_t header_bytes = kLegacyHeaderBytes;
  if (legacy) {
    std::memcpy(&h, data, sizeof(Header));
  } else {
    LCQ_CHECK(size >= kV1HeaderBytes, "{}: truncated: {} bytes is shorter than the 256-byte llama2.c header",
              path, size);
    int32_t v = 0;
    std::memcpy(&v, data + 4, 4);
    version = v;
    LCQ_CHECK(version == 1, "{}: unsupported llama2.c version {} (only fp32 version 1)", path, version);
    std::memcpy(&h, data + 8, sizeof(Header));
    LCQ_CHECK(data[8 + sizeof(Header)] <= 1, "{}: invalid shared-classifier flag {}", path,
              int(data[8 + sizeof(Header)]));
    shared = data[8 + sizeof(Header)] == 1;
    header_bytes = kV1HeaderBytes;
  }
  validate_header(h, legacy, path);
  if (legacy) shared = h.vocab_size > 0;

  const std::vector<Segment> segs = layout(h, legacy, shared);
  uint64_t expected = header_bytes;
  for (const Segment& s : segs) expected += uint64_t(numel_of(s.shape)) * (s.per_layer ? h.n_layers : 1) * 4;
  LCQ_CHECK(size >= expected, "{}: truncated: header implies {} bytes, file has {}", path, expected, size);
  LCQ_CHECK(size == expected, "{}: {} trailing bytes: header implies {} bytes, file has {}", path,
            size - expected, expected, size);

  ModelSource src;
  src.path = path;
  src.format = Format::Llama2c;
  src.qk_interleaved = true;  // llama2.c's RoPE rotates adjacent pairs (complex multiplication)
  ModelConfig& c = src.config;
  c.arch = Arch::Llama;
  c.family = "llama2c";
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  c.head_dim = h.dim / h.n_heads;
  c.vocab_size = std::abs(h.vocab_size);
  c.max_seq_len = h.seq_len;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tie_embeddings = shared;
  c.activation = "silu";
  c.validate(path);

  struct Placed {
    std::tuple<int, int, size_t> key;
    TensorView view;
  };
  std::vector<Placed> placed;
  const uint8_t* p = data + header_bytes;
  for (size_t si = 0; si < segs.size(); ++si) {
    const Segment& s = segs[si];
    const size_t nbytes = size_t(numel_of(s.shape)) * 4;
    const int copies = s.per_layer ? h.n_layers : 1;
    for (int l = 0; l < copies; ++l, p += nbytes) {
      if (s.name.empty()) continue;
      TensorView v;
      v.name = s.per_layer ? "blk." + std::to_string(l) + "." + s.name : s.name;
      v.dtype = DType::F32;
      v.shape = s.shape;
      v.data = p;
      v.nbytes = nbytes;
      placed.push_back({view_order(v.name, s.per_layer ? l : -1, si), std::move(v)});
    }
  }
  std::stable_sort(placed.begin(), placed.end(),
                   [](const Placed& a, const Placed& b) { return a.key < b.key; });
  for (auto& pl : placed) src.tensors.push_back(std::move(pl.view));

  src.metadata = {{"format", "llama2c"}, {"version", version}, {"shared_classifier", shared}};
  src.keepalive.push_back(map);
  src.vocab = load_tokenizer(path, opts, c.vocab_size);
  return src;
}

}  // namespace lcq::io
