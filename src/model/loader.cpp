#include "lcq/model/loader.h"

#include "lcq/core/error.h"
#include "lcq/core/progress.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/kernels/matrix.h"
#include "lcq/model/act_quant.h"

#include <torch/torch.h>

#include <sys/mman.h>

#include <cstring>

namespace lcq::model {

namespace {

// Tells the kernel it may drop the file pages a tensor was copied from: the weights never
// sit in memory twice.
void release_pages(const io::TensorView& view) {
  const uintptr_t page = 4096;
  uintptr_t begin = (reinterpret_cast<uintptr_t>(view.data) + page - 1) & ~(page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(view.data) + view.nbytes) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// Copies (dequantizing) one tensor into a new tensor of the runtime's dtype and device.
torch::Tensor load_tensor(const io::ModelSource& src, const io::TensorView& view, const RuntimeOptions& opts) {
  auto t = torch::empty(view.shape, torch::kFloat32);
  io::load_tensor_f32(src, view, t.data_ptr<float>());
  release_pages(view);
  return t.to(torch::TensorOptions().dtype(opts.dtype).device(opts.device));
}

// Copies an F16 tensor as it is (the compact runtime's embedding and tied head).
torch::Tensor load_tensor_f16(const io::TensorView& view) {
  auto t = torch::empty(view.shape, torch::kHalf);
  std::memcpy(t.data_ptr<at::Half>(), view.data, view.nbytes);
  release_pages(view);
  return t;
}

}  // namespace

void set_threads(int threads) {
  if (threads > 0) torch::set_num_threads(threads);
}

Model build_model(const io::ModelSource& src, const RuntimeOptions& opts) {
  const ModelConfig& c = src.config;
  c.validate(src.path);
  set_threads(opts.threads);
  Model m;
  m.config = c;
  m.options = opts;

  Progress progress("loading " + src.path, int64_t(src.tensors.size()));
  auto view = [&](const std::string& name, const std::vector<int64_t>& shape) -> const io::TensorView& {
    const io::TensorView& v = src.get(name);
    LCQ_CHECK(v.shape == shape, "{}: tensor '{}' has shape [{}], expected [{}] for this architecture", src.path,
              name, fmt::join(v.shape, ", "), fmt::join(shape, ", "));
    progress.add();
    return v;
  };
  auto get = [&](const std::string& name, const std::vector<int64_t>& shape) {
    return load_tensor(src, view(name, shape), opts);
  };
  // Compact runtime: LCQ layers stay packed and an fp16 embedding (and tied head) stays fp16.
  const bool compact = opts.packed && opts.device.is_cpu();
  auto get_opt = [&](const std::string& name, std::vector<int64_t> shape) {
    return src.find(name) ? get(name, shape) : torch::Tensor();
  };

  const int64_t D = c.dim, Hd = c.head_dim, q_dim = int64_t(c.n_heads) * Hd, kv_dim = c.kv_dim();
  const bool opt = c.arch == Arch::OPT;
  // A matrix stored as an LCQ codebook layer: packed for the kernels, or dequantized to a
  // dense tensor of the runtime's dtype.
  auto codebook = [&](const std::string& name, int64_t rows, int64_t cols, Linear& out) {
    const CodebookLayer cl = io::read_codebook_layer(src, name, rows, cols);
    if (compact) {
      out.packed = kernels::make_codebook_matrix(cl, kernels::choose_family(cl, opts.kernel));
      out.panel_dtype = opts.prompt_dtype;
    } else {
      auto w = torch::empty({rows, cols}, torch::kFloat32);
      cl.dequantize(w.data_ptr<float>());
      out.weight = w.to(torch::TensorOptions().dtype(opts.dtype).device(opts.device));
    }
    progress.add(io::codebook_tensor_count(src, name));  // the total counts the file's tensors
  };
  if (io::has_codebook_layer(src, "token_embd") && !src.find("token_embd.weight")) {
    Linear e;
    codebook("token_embd", c.vocab_size, D, e);
    m.tok_embd = e.weight;
    m.tok_embd_packed = e.packed;
  } else {
    const io::TensorView& embd = view("token_embd.weight", {c.vocab_size, D});
    m.tok_embd = compact && embd.dtype == io::DType::F16 ? load_tensor_f16(embd) : load_tensor(src, embd, opts);
  }
  if (opt) {
    const io::TensorView& pe = src.get("position_embd.weight");
    m.pos_embd = get("position_embd.weight", {pe.shape.empty() ? 0 : pe.shape[0], D});
  }
  auto norm = [&](const std::string& prefix) {
    Norm n;
    n.weight = get(prefix + ".weight", {D});
    n.bias = get_opt(prefix + ".bias", {D});
    n.eps = c.norm_eps;
    n.rms = !opt;
    return n;
  };
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Block b;
    b.attn_norm = norm(p + "attn_norm");
    b.ffn_norm = norm(p + "ffn_norm");
    auto lin = [&](const std::string& name, int64_t out, int64_t in) {
      Linear x;
      const std::string base = p + name;
      if (!src.find(base + ".weight") && io::has_codebook_layer(src, base)) {
        codebook(base, out, in, x);  // an LCQ layer
      } else {
        x.weight = get(base + ".weight", {out, in});
      }
      x.bias = get_opt(p + name + ".bias", {out});
      return x;
    };
    b.q = lin("attn_q", q_dim, D);
    b.k = lin("attn_k", kv_dim, D);
    b.v = lin("attn_v", kv_dim, D);
    b.o = lin("attn_output", D, q_dim);
    if (!opt) b.gate = lin("ffn_gate", c.hidden_dim, D);
    b.up = lin("ffn_up", c.hidden_dim, D);
    b.down = lin("ffn_down", D, c.hidden_dim);
    m.blocks.push_back(std::move(b));
  }
  m.output_norm = norm("output_norm");
  if (io::has_codebook_layer(src, "output") && !src.find("output.weight")) {
    m.config.tie_embeddings = false;
    codebook("output", c.vocab_size, D, m.output);
  } else if (c.tie_embeddings || !src.find("output.weight")) {
    m.config.tie_embeddings = true;
    m.output.weight = m.tok_embd;
    m.output.packed = m.tok_embd_packed;
    m.output.panel_dtype = opts.prompt_dtype;
  } else {
    m.output.weight = get("output.weight", {c.vocab_size, D});
  }
  progress.finish();
  m.ensure_positions(c.max_seq_len);
  ActQuantConfig act = act_quant_from_metadata(src.metadata, src.path).value_or(ActQuantConfig{});
  if (opts.act_bits >= 0) act.bits = opts.act_bits;
  if (!opts.act_scheme.empty()) act.scheme = opts.act_scheme;
  if (opts.kv_bits >= 0) act.kv_bits = opts.kv_bits;
  if (act.bits > 0 || act.kv_bits > 0) {
    try {
      set_activation_quant(m, act);
    } catch (const Error& e) {
      fail("{}: {}", src.path, e.what());
    }
  }
  return m;
}

const tokenizer::Tokenizer& LoadedModel::tok() const {
  LCQ_CHECK(tokenizer != nullptr, "{}: no tokenizer found in or beside the model; pass --tokenizer FILE", path);
  return *tokenizer;
}

LoadedModel load_model(const std::string& path, const io::LoadOptions& load, const RuntimeOptions& opts) {
  io::ModelSource src = io::load_model_source(path, load);
  LoadedModel lm;
  lm.path = path;
  lm.format = src.format;
  lm.metadata = src.metadata;
  if (!src.vocab.empty()) {
    lm.tokenizer = tokenizer::make_tokenizer(src.vocab);
    LCQ_CHECK(lm.tokenizer->size() <= src.config.vocab_size || src.config.vocab_size == 0,
              "{}: tokenizer has {} tokens but the model only {}", path, lm.tokenizer->size(), src.config.vocab_size);
  }
  lm.model = build_model(src, opts);
  return lm;
}

}  // namespace lcq::model
