// run::load_weights: a model file straight into the kernels' matrices, without libtorch.
#include "lcq/core/error.h"
#include "lcq/core/mapped_file.h"
#include "lcq/core/progress.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/run/weights.h"

#include <nlohmann/json.hpp>

#include <cstring>

namespace lcq::run {

namespace {

// A dense matrix that owns the array it views.
template <class T>
MatrixPtr owning_dense(std::vector<T> data, kernels::DenseType type, int64_t rows, int64_t cols) {
  struct Owner {
    std::vector<T> data;
    MatrixPtr m;
  };
  auto o = std::make_shared<Owner>();
  o->data = std::move(data);
  o->m = kernels::make_dense_matrix(o->data.data(), type, rows, cols);
  return MatrixPtr(o, o->m.get());  // shares ownership of the array and the view
}

class Reader {
 public:
  Reader(const io::ModelSource& src, const LoadOptions& opts, Weights& w)
      : src_(src), opts_(opts), w_(w), progress_("loading " + src.path, int64_t(src.tensors.size())) {}

  const io::TensorView& view(const std::string& name, const std::vector<int64_t>& shape) {
    const io::TensorView& v = src_.get(name);
    LCQ_CHECK(v.shape == shape, "{}: tensor '{}' has shape [{}], expected [{}] for this architecture", src_.path,
              name, fmt::join(v.shape, ", "), fmt::join(shape, ", "));
    progress_.add();
    return v;
  }

  std::vector<float> f32(const std::string& name, const std::vector<int64_t>& shape) {
    const io::TensorView& v = view(name, shape);
    std::vector<float> out(size_t(v.numel()));
    io::load_tensor_f32(src_, v, out.data());
    release_file_pages(v.data, v.nbytes);  // the weights never sit in memory twice
    return out;
  }

  // A norm weight or bias kept alive by the weights; null when absent and optional.
  const float* vec(const std::string& name, int64_t n, bool optional) {
    if (optional && !src_.find(name)) return nullptr;
    auto v = std::make_shared<std::vector<float>>(f32(name, {n}));
    w_.storage.push_back(v);
    return v->data();
  }

  // Linear layer `base` (rows x cols): an LCQ codebook layer packed for this CPU's kernel
  // family, or the dense weight (F16 / BF16 kept as stored where its row order needs no
  // permutation, else f32).
  MatrixPtr matrix(const std::string& base, int64_t rows, int64_t cols) {
    if (!src_.find(base + ".weight") && io::has_codebook_layer(src_, base)) {
      const CodebookLayer cl = io::read_codebook_layer(src_, base, rows, cols);
      progress_.add(io::codebook_tensor_count(src_, base));
      const std::string prefix = base + ".lcq_";
      for (const io::TensorView& v : src_.tensors)  // the file's pages go as the packed copy comes
        if (v.name.compare(0, prefix.size(), prefix) == 0) release_file_pages(v.data, v.nbytes);
      return kernels::make_codebook_matrix(cl, kernels::choose_family(cl, opts_.kernel));
    }
    const std::string name = base + ".weight";
    const io::TensorView& v = src_.get(name);
    const auto ends_with = [&](const std::string& s) {
      return base.size() >= s.size() && base.compare(base.size() - s.size(), s.size(), s) == 0;
    };
    const bool permuted = src_.qk_interleaved && (ends_with(".attn_q") || ends_with(".attn_k"));
    if ((v.dtype == io::DType::F16 || v.dtype == io::DType::BF16) && !permuted) {
      view(name, {rows, cols});
      std::vector<uint16_t> half(size_t(rows * cols));
      std::memcpy(half.data(), v.data, v.nbytes);
      release_file_pages(v.data, v.nbytes);
      const auto type = v.dtype == io::DType::F16 ? kernels::DenseType::kF16 : kernels::DenseType::kBF16;
      return owning_dense(std::move(half), type, rows, cols);
    }
    return owning_dense(f32(name, {rows, cols}), kernels::DenseType::kF32, rows, cols);
  }

  void finish() { progress_.finish(); }

 private:
  const io::ModelSource& src_;
  const LoadOptions& opts_;
  Weights& w_;
  Progress progress_;
};

}  // namespace

Weights load_weights(const io::ModelSource& src, const LoadOptions& opts) {
  const ModelConfig& c = src.config;
  c.validate(src.path);
  LCQ_CHECK(c.arch == Arch::Llama, "{}: the lean runtime runs LLaMA-family models only, not {} (use lcq generate)",
            src.path, arch_name(c.arch));
  const nlohmann::json& md = src.metadata;
  LCQ_CHECK(!md.is_object() || (md.value("lcq.act.bits", 0) == 0 && md.value("lcq.act.kv_bits", 0) == 0),
            "{}: the model quantizes activations, which the lean runtime does not (use lcq generate)", src.path);

  Weights w;
  w.config = c;
  Reader read(src, opts, w);
  const int64_t D = c.dim, V = c.vocab_size, F = c.hidden_dim, Q = int64_t(c.n_heads) * c.head_dim, KV = c.kv_dim();
  w.embedding = read.matrix("token_embd", V, D);
  if (const io::TensorView* mix = src.find("residual_rotation.mix")) {
    const int64_t a = mix->shape.empty() ? 0 : mix->shape[0];
    const std::vector<float> m = read.f32("residual_rotation.mix", {a, a}), s = read.f32("residual_rotation.signs", {D});
    try {
      set_rotation(w, expand_rotation(m.data(), a, s.data(), D).data());
    } catch (const Error& e) {
      fail("{}: {}", src.path, e.what());
    }
  } else {
    LCQ_CHECK(!src.find("residual_rotation.signs"), "{}: residual_rotation.signs without residual_rotation.mix", src.path);
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights L;
    L.attn_norm = read.vec(p + "attn_norm.weight", D, false);
    L.ffn_norm = read.vec(p + "ffn_norm.weight", D, false);
    LCQ_CHECK(!src.find(p + "attn_norm.bias") && !src.find(p + "ffn_norm.bias"),
              "{}: layer {} has LayerNorm biases; the lean runtime runs RMSNorm models only", src.path, l);
    L.q = read.matrix(p + "attn_q", Q, D), L.bq = read.vec(p + "attn_q.bias", Q, true);
    L.k = read.matrix(p + "attn_k", KV, D), L.bk = read.vec(p + "attn_k.bias", KV, true);
    L.v = read.matrix(p + "attn_v", KV, D), L.bv = read.vec(p + "attn_v.bias", KV, true);
    L.o = read.matrix(p + "attn_output", D, Q), L.bo = read.vec(p + "attn_output.bias", D, true);
    L.gate = read.matrix(p + "ffn_gate", F, D), L.bgate = read.vec(p + "ffn_gate.bias", F, true);
    L.up = read.matrix(p + "ffn_up", F, D), L.bup = read.vec(p + "ffn_up.bias", F, true);
    L.down = read.matrix(p + "ffn_down", D, F), L.bdown = read.vec(p + "ffn_down.bias", D, true);
    w.layers.push_back(std::move(L));
  }
  w.out_norm = read.vec("output_norm.weight", D, false);
  // As the torch loader decides: a quantized head, else tied when the config says so or the
  // file has no head, else the file's dense head.
  const bool dense_head = src.find("output.weight") != nullptr;
  const bool own_head = dense_head ? !c.tie_embeddings : io::has_codebook_layer(src, "output");
  w.head = own_head ? read.matrix("output", V, D) : w.embedding;
  read.finish();

  auto rope = std::make_shared<RopeTables>(make_rope_tables(c, opts.positions > 0 ? opts.positions : c.max_seq_len));
  w.rope_cos = rope->cos.data(), w.rope_sin = rope->sin.data(), w.rope_positions = rope->positions;
  w.storage.push_back(rope);
  return w;
}

}  // namespace lcq::run
