#include "lcq/quant/streamed.h"

#include "checkpoint.h"
#include "lcq/core/error.h"
#include "lcq/core/mapped_file.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/quant/activations.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <deque>

namespace lcq::quant {

namespace {

// A tensor of a mapped checkpoint file, copied into the output a piece at a time.
io::WriteTensor mapped_tensor(const std::shared_ptr<const io::GgufFile>& file, const io::TensorView& v) {
  io::WriteTensor w;
  w.name = v.name;
  w.shape = v.shape;
  w.dtype = v.dtype;
  const uint8_t* data = v.data;
  w.fill_raw = [file, data, rows = w.rows(), nbytes = v.nbytes](int64_t r0, int64_t r1, uint8_t* out) {
    const size_t row_bytes = rows > 0 ? nbytes / size_t(rows) : 0;
    std::memcpy(out, data + size_t(r0) * row_bytes, size_t(r1 - r0) * row_bytes);
    release_file_pages(data + size_t(r0) * row_bytes, size_t(r1 - r0) * row_bytes);
  };
  return w;
}

// NaN or infinite values would poison every codebook or be copied into the output: every
// dense tensor of the model is checked before any work, a piece at a time (its pages are
// released after), as quantize_model() checks the model in memory.
void check_finite(const model::BlockLoader& loader) {
  const io::ModelSource& src = loader.source();
  std::vector<float> values;
  for (const std::string& name : model_tensor_names(loader.config(), loader.size())) {
    const io::TensorView* v = src.find(name);
    if (!v || !io::dtype_is_float_convertible(v->dtype)) continue;
    const int64_t rows = v->shape.empty() ? 1 : v->shape[0], per_row = rows > 0 ? v->numel() / rows : 0;
    if (per_row == 0) continue;
    const size_t row_bytes = v->nbytes / size_t(rows);
    const int64_t step = std::max<int64_t>(1, (int64_t(4) << 20) / per_row);
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
      const int64_t r1 = std::min(rows, r0 + step);
      io::TensorView piece = *v;
      piece.data = v->data + size_t(r0) * row_bytes;
      piece.nbytes = size_t(r1 - r0) * row_bytes;
      piece.shape = {r1 - r0, per_row};
      values.resize(size_t((r1 - r0) * per_row));
      io::dequantize(piece, values.data(), src.path + ": tensor '" + name + "'");
      release_file_pages(piece.data, piece.nbytes);
      for (float x : values) LCQ_CHECK(std::isfinite(x), "tensor '{}' contains NaN or infinite values", name);
    }
  }
}

// The blocks of the mapped model: loaded one at a time, each finished one checkpointed.
class StreamedBlocks final : public BlockStore {
 public:
  StreamedBlocks(const model::BlockLoader& loader, Checkpoint& ckpt, const model::ActQuantConfig& act)
      : loader_(loader), ckpt_(ckpt), act_(act) {}
  int size() const override { return loader_.size(); }
  model::Block load(int l) override {
    model::Block b = loader_.load(l);
    if (act_.bits > 0 || act_.kv_bits > 0) model::set_activation_quant(b, l, act_);
    return b;
  }
  void finish(int l, model::Block& block, std::map<std::string, CodebookLayer>& layers, const BlockReport& report,
              const EngineState& next) override {
    ckpt_.save_block(l, block, layers, report);
    ckpt_.save_state(next);
  }

 private:
  const model::BlockLoader& loader_;
  Checkpoint& ckpt_;
  model::ActQuantConfig act_;
};

}  // namespace

std::string streaming_obstacle(const QuantizeOptions& o, const model::ActQuantConfig& act, bool export_fake,
                               bool smoothquant) {
  if (!o.init_from.empty()) return "--init-from";
  if (o.rotate) return "--rotate";
  if (export_fake) return "--export-fake";
  if (smoothquant) return "--smoothquant";
  if (act.bits > 0 && act.scheme == model::ActQuant::Scheme::PerTensorStatic) return "--act-scheme per-tensor-static";
  return "";
}

QuantizeResult quantize_streamed(const model::BlockLoader& loader, const torch::Tensor& calib,
                                 const QuantizeOptions& opts, const StreamOptions& s, const std::string& out,
                                 const tokenizer::Vocab& vocab, const nlohmann::json& meta) {
  QuantizeOptions o = opts;
  prepare(o, calib.defined());
  LCQ_CHECK(o.init_from.empty(), "internal: --init-from needs the model in memory");
  check_finite(loader);

  const auto t0 = std::chrono::steady_clock::now();
  const int n = loader.size();
  model::Model skeleton = loader.skeleton();  // context (RoPE tables), final norm; no blocks
  const std::unique_ptr<BlockMethod> method = make_block_method(o, skeleton);
  Checkpoint ckpt(s.checkpoint_dir, s.fingerprint, n, s.resume);
  QuantizeResult r;
  if (ckpt.finished() > 0 && o.engine.progress)
    fmt::print(stderr, "resuming from {}: block{} 0{} done\n", ckpt.dir(), ckpt.finished() > 1 ? "s" : "",
               ckpt.finished() > 1 ? fmt::format("-{} are", ckpt.finished() - 1) : std::string(" is"));
  try {
    const ActivationStore acts(s.offload_dir);
    const ActivationStore* offload = acts.offloaded() ? &acts : nullptr;
    for (int l = 0; l < ckpt.finished(); ++l)
      if (calib.defined()) r.blocks.push_back(ckpt.report(l));
    torch::Tensor head_gram;
    if (calib.defined()) {
      EngineState state;
      if (ckpt.finished() > 0) {
        state = ckpt.state(offload);
      } else {
        torch::Tensor x0;
        {
          torch::NoGradGuard ng;
          skeleton.ensure_positions(calib.size(1));
          x0 = loader.embed(calib);
        }
        state = initial_state(offload ? offload->adopt(x0) : x0, o.engine);
      }
      StreamedBlocks store(loader, ckpt, s.act);
      ReconstructResult rr = reconstruct(skeleton, store, std::move(state), *method, o.engine, offload);
      for (BlockReport& b : rr.blocks) r.blocks.push_back(std::move(b));
      head_gram = rr.head_gram;
    } else {
      for (int l = ckpt.finished(); l < n; ++l) {
        model::Block b = loader.load(l);
        ckpt.save_block(l, b, quantize_block_uncalibrated(*method, l, b), BlockReport{});
        EngineState next;
        next.next_block = l + 1;
        ckpt.save_state(next);
      }
    }

    // The parts of the output file: what the checkpoint holds, the small tensors of the
    // skeleton, and the embedding and head read from the input while the file is written.
    std::map<std::string, CodebookLayer> params;  // every quantized matrix's parameters
    std::map<std::string, QuantizedLayer> layers;
    std::map<std::string, io::WriteTensor> dense;
    std::deque<std::vector<uint8_t>> raw_storage;
    std::deque<torch::Tensor> storage;
    auto add_f32 = [&](const std::string& name, const torch::Tensor& t) {
      if (!t.defined()) return;
      storage.push_back(t.detach().to(torch::kFloat32).contiguous());
      io::WriteTensor w;
      w.name = name;
      w.shape = storage.back().sizes().vec();
      w.dtype = io::DType::F32;
      w.f32 = storage.back().data_ptr<float>();
      dense.emplace(name, std::move(w));
    };
    for (int l = 0; l < n; ++l) {
      const auto file = ckpt.block_file(l);
      for (auto& [name, p] : ckpt.layer_parameters(l)) {
        const CodebookLayer& c = params.emplace(name, std::move(p)).first->second;
        QuantizedLayer& q = layers[name];
        q.layer = &c;
        for (const io::TensorView& v : file->tensors())
          if (v.name.rfind(name + ".lcq_", 0) == 0) q.tensors.push_back(mapped_tensor(file, v));
      }
      for (const io::TensorView& v : file->tensors())
        if (v.name.find(".lcq_") == std::string::npos) dense.emplace(v.name, mapped_tensor(file, v));
    }
    // The embedding and head: quantized (--embed-bits), or stored fp16 as read.
    const bool tied = skeleton.config.tie_embeddings;
    for (const std::string name : {"token_embd", "output"}) {
      if (name == "output" && tied) continue;
      if (o.embedding.bits > 0) {
        torch::NoGradGuard ng;
        CodebookLayer& c = params.emplace(name, quantize_embedding(loader.matrix(name), options_for(o.embedding, name, tied), head_gram))
                               .first->second;
        QuantizedLayer& q = layers[name];
        q.layer = &c;
        io::add_codebook_tensors(name, c, q.tensors, raw_storage);
        continue;
      }
      io::WriteTensor w;
      w.name = name + ".weight";
      w.shape = loader.matrix_shape();
      w.dtype = io::DType::F16;  // as write_quantized_model() stores them
      const model::BlockLoader* from = &loader;
      w.fill_f32 = [from, name](int64_t r0, int64_t r1, float* values) { from->matrix_rows(name, r0, r1, values); };
      dense.emplace(w.name, std::move(w));
    }
    add_f32("position_embd.weight", skeleton.pos_embd);
    add_f32("residual_rotation.mix", skeleton.rotation.mix);
    add_f32("residual_rotation.signs", skeleton.rotation.signs);
    add_f32("output_norm.weight", skeleton.output_norm.weight);
    add_f32("output_norm.bias", skeleton.output_norm.bias);
    write_quantized_file(out, skeleton.config, vocab, in_file_order(skeleton.config, n, std::move(dense)), layers,
                         meta);
    summarize(r, params);
  } catch (const Error& e) {
    if (ckpt.finished() == 0) {
      ckpt.remove();
      throw;
    }
    fail("{} (the {} finished blocks are kept in {}: the same command with --resume continues after them)", e.what(),
         ckpt.finished(), ckpt.dir());
  }
  ckpt.remove();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

MemoryEstimate estimate_memory(const ModelConfig& c, int64_t nsamples, int64_t seqlen, const QuantizeOptions& o,
                               bool offloaded) {
  const double D = double(c.dim), F = double(c.hidden_dim), q_dim = double(c.n_heads) * double(c.head_dim),
               kv = double(c.kv_dim());
  const double linears = D * q_dim * 2 + D * kv * 2 + D * F * (c.arch == Arch::OPT ? 2 : 3);
  MemoryEstimate m;
  // Per weight of the block: its f32 weights, and what one training step keeps. LCQ (plain,
  // from the rank-one start): W_hat, the copy the products run in, its gradient and one byte
  // of code, measured at 14.5 bytes per weight in bf16 steps and 15.5 in f32 steps on 4096 x
  // 11008 blocks (BENCHMARKS.md, "Quantizing beyond RAM"). The other methods: seven f32
  // copies (not measured as closely). GPTQ adds the Hessian of the widest input.
  const bool plain_lcq = o.method == Method::kLcq && o.init_from.empty() && is_grid_init(o.lcq.init);
  m.block = linears * (plain_lcq ? 16.0 : 4.0 * 7);
  if (o.method == Method::kGptq || o.lcq.init == LcqInit::kGptq) m.block += F * F * 4 * 2;
  // Activation sets [N, L, D] f32 alive at once: inputs (quantized and full-precision), the
  // targets and the next inputs; and what one batch's forward and backward keep (MLP and
  // attention intermediates of batch_size samples).
  const double set = double(nsamples) * double(seqlen) * D * 4;
  const double batch = double(std::max<int64_t>(o.engine.batch_size, 8)) * double(seqlen) *
                       (F * 4 + D * 8 + double(c.n_heads) * double(seqlen) * 2) * 4;
  m.activations = (offloaded ? 0.0 : 4 * set) + batch;
  // libtorch and the process (measured about 300 MB), RoPE tables, and the embedding and
  // head when they are quantized (f32 while quantized; GPTQ's rounding adds its working copy
  // and the codebook table, about two more).
  m.other = 300e6 + double(c.max_seq_len) * double(c.head_dim) * 4 * 2;
  if (o.embedding.bits > 0)
    m.other += double(c.vocab_size) * D * 4 * (o.embedding.rounding == EmbeddingRounding::kGptq ? 5 : 3);
  return m;
}

void check_memory(const MemoryEstimate& need, double available, const std::string& available_from, bool offloaded) {
  if (need.total() <= available) return;
  auto gib = [](double b) { return fmt::format("{:.2f} GiB", b / double(1 << 30)); };
  std::string fix;
  if (!offloaded && need.activations > need.block)
    fix = "add --offload-activations DIR (calibration activations on disk), or use fewer --nsamples or a shorter --seqlen";
  else if (need.activations > 0.25 * need.total())
    fix = "use fewer --nsamples, a shorter --seqlen or a smaller --batch-size";
  else
    fix = "the block itself does not fit: use a machine with more memory";
  if (!offloaded && fix.rfind("add", 0) != 0) fix += ", or add --offload-activations DIR";
  fail("quantizing needs about {} of memory (a block's weights and training {}, calibration activations {}, other {}) "
       "but {} is available ({}): {}",
       gib(need.total()), gib(need.block), gib(need.activations), gib(need.other), gib(available), available_from, fix);
}

}  // namespace lcq::quant
