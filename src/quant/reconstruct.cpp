#include "lcq/quant/reconstruct.h"

#include "lcq/core/cpu.h"
#include "lcq/core/error.h"
#include "lcq/core/memory.h"
#include "lcq/core/named.h"
#include "lcq/core/progress.h"
#include "lcq/quant/activations.h"
#include "layer_inputs.h"

#include <ATen/autocast_mode.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <chrono>
#include <cmath>
#include <mutex>
#include <random>
#include <sstream>

namespace lcq::quant {

namespace {

using Clock = std::chrono::steady_clock;

// While alive, CPU matrix products (linear, matmul) run in bf16 through torch's autocast, and
// so do their gradients; elementwise operations keep their inputs' precision. Restores the
// previous state.
class Bf16Products {
 public:
  explicit Bf16Products(bool on) : on_(on) {
    if (!on_) return;
    was_enabled_ = at::autocast::is_cpu_enabled();
    was_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  ~Bf16Products() {
    if (!on_) return;
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(was_dtype_);
    at::autocast::clear_cache();
  }
  Bf16Products(const Bf16Products&) = delete;
  Bf16Products& operator=(const Bf16Products&) = delete;

 private:
  bool on_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kBFloat16;
};

// Runs `block` over all of x [N, L, D] in chunks, without gradients; the output is allocated
// in `acts` (in memory when null).
torch::Tensor run_block(const model::BlockContext& ctx, const model::Block& block, const torch::Tensor& x,
                        int64_t chunk, const ActivationStore* acts = nullptr) {
  torch::NoGradGuard ng;
  torch::Tensor out;
  for (int64_t i = 0; i < x.size(0); i += chunk) {
    const int64_t j = std::min(x.size(0), i + chunk);
    const torch::Tensor y = model::block_forward(ctx, block, x.slice(0, i, j), 0);
    if (!out.defined()) {
      std::vector<int64_t> shape = y.sizes().vec();
      shape[0] = x.size(0);
      out = acts ? acts->empty(shape, y.scalar_type()) : torch::empty(shape, y.options());
    }
    out.slice(0, i, j).copy_(y);
  }
  if (acts) acts->release(x);
  return out;
}

// Mean squared error of y against target [N, L, D], accumulated in double chunk by chunk.
double mse(const torch::Tensor& y, const torch::Tensor& target, int64_t chunk) {
  torch::NoGradGuard ng;
  double sum = 0;
  for (int64_t i = 0; i < y.size(0); i += chunk) {
    const int64_t j = std::min(y.size(0), i + chunk);
    sum += (y.slice(0, i, j) - target.slice(0, i, j)).pow(2).sum().item<double>();
  }
  return sum / double(target.numel());
}

double block_loss(const model::BlockContext& ctx, const model::Block& block, const torch::Tensor& x,
                  const torch::Tensor& target, int64_t chunk) {
  return mse(run_block(ctx, block, x, chunk), target, chunk);
}

// Relative output error of every linear of `quant` against the same linear of `fp`, on the
// inputs each sees while `quant` runs over x.
std::map<const model::Linear*, double> layer_errors(const model::BlockContext& ctx, const model::Block& quant,
                                                    const model::Block& fp, const torch::Tensor& x) {
  torch::NoGradGuard ng;
  std::map<const model::Linear*, const model::Linear*> fp_of;
  auto ql = quant.linears();
  auto fl = fp.linears();
  for (size_t i = 0; i < ql.size(); ++i) fp_of[ql[i].second] = fl[i].second;
  std::map<const model::Linear*, double> err;
  {
    model::LinearInputTap tap([&](const model::Linear& l, const torch::Tensor& in) {
      auto it = fp_of.find(&l);
      if (it == fp_of.end()) return;
      auto ref = torch::nn::functional::linear(in, it->second->weight);
      auto got = torch::nn::functional::linear(in, l.weight);
      err[&l] = (got - ref).pow(2).sum().item<double>() / std::max(1e-30, ref.pow(2).sum().item<double>());
    });
    model::block_forward(ctx, quant, x, 0);
  }
  return err;
}

// Per-position weights of the training loss [N, L, 1] (undefined for plain MSE): the inverse
// mean square of each target position, so every position's relative error counts the same.
torch::Tensor position_weights(TrainingLoss loss, const torch::Tensor& target) {
  if (loss == TrainingLoss::Mse) return {};
  torch::NoGradGuard ng;
  auto ms = target.pow(2).mean(-1, /*keepdim=*/true);
  return 1.0 / (ms + 1e-6 * ms.mean());  // the floor keeps an all-zero position finite
}

// The shuffling generator's state as the checkpoint keeps it (the standard's text form).
std::string as_text(const std::mt19937_64& rng) {
  std::ostringstream out;
  out << rng;
  return out.str();
}

const Named<TrainingLoss> kLosses[] = {{TrainingLoss::Mse, "mse"}, {TrainingLoss::TokenRelative, "token-relative"}};
const Named<LrSchedule> kSchedules[] = {{LrSchedule::Cosine, "cosine"}, {LrSchedule::Constant, "constant"}};
const Named<TrainDtype> kTrainDtypes[] = {{TrainDtype::Fp32, "fp32"}, {TrainDtype::Bf16, "bf16"}, {TrainDtype::Auto, "auto"}};

}  // namespace

const std::vector<std::string>& loss_names() {
  static const auto v = names_of(kLosses);
  return v;
}
const std::vector<std::string>& schedule_names() {
  static const auto v = names_of(kSchedules);
  return v;
}
const std::vector<std::string>& train_dtype_names() {
  static const auto v = names_of(kTrainDtypes);
  return v;
}
TrainingLoss parse_loss(const std::string& name) { return parse_named(kLosses, name, "--loss"); }
LrSchedule parse_schedule(const std::string& name) { return parse_named(kSchedules, name, "--schedule"); }
TrainDtype parse_train_dtype(const std::string& name) { return parse_named(kTrainDtypes, name, "--train-dtype"); }
std::string to_string(TrainingLoss l) { return name_of(kLosses, l); }
std::string to_string(LrSchedule s) { return name_of(kSchedules, s); }
std::string to_string(TrainDtype d) { return name_of(kTrainDtypes, d); }

TrainDtype resolve_train_dtype(TrainDtype d) {
  if (d != TrainDtype::Auto) return d;
  return cpu_has_native_bf16() ? TrainDtype::Bf16 : TrainDtype::Fp32;
}

nlohmann::json to_json(const BlockReport& r) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : r.layers)
    layers.push_back({{"name", l.name}, {"init_error", l.init_error}, {"final_error", l.final_error},
                      {"bits_per_weight", l.bits_per_weight}});
  return {{"layer", r.layer},        {"init_loss", r.init_loss}, {"trained_loss", r.trained_loss},
          {"final_loss", r.final_loss}, {"seconds", r.seconds},     {"layers", layers}};
}

BlockReport block_report_from_json(const nlohmann::json& j) {
  BlockReport r;
  r.layer = j.at("layer").get<int>();
  r.init_loss = j.at("init_loss").get<double>();
  r.trained_loss = j.at("trained_loss").get<double>();
  r.final_loss = j.at("final_loss").get<double>();
  r.seconds = j.at("seconds").get<double>();
  for (const auto& l : j.at("layers")) {
    LayerReport lr;
    lr.name = l.at("name").get<std::string>();
    // JSON has no NaN: a missing error was written as null.
    auto number = [&](const char* key) { return l.at(key).is_null() ? NAN : l.at(key).get<double>(); };
    lr.init_error = number("init_error");
    lr.final_error = number("final_error");
    lr.bits_per_weight = l.at("bits_per_weight").get<double>();
    r.layers.push_back(lr);
  }
  return r;
}

EngineState initial_state(const torch::Tensor& embeddings, const ReconstructOptions& o) {
  EngineState s;
  s.x_q = embeddings;
  if (!o.targets_from_quantized_inputs) s.x_fp = embeddings;
  s.shuffle_rng = as_text(std::mt19937_64(o.seed));
  torch::manual_seed(o.seed);
  s.torch_rng = at::detail::getDefaultCPUGenerator().get_state();
  return s;
}

namespace {

// The blocks of a model in memory: quantized in place, their stored layers collected.
class ModelBlocks final : public BlockStore {
 public:
  ModelBlocks(model::Model& m, std::map<std::string, CodebookLayer>& layers) : m_(m), layers_(layers) {}
  int size() const override { return int(m_.blocks.size()); }
  model::Block load(int l) override { return m_.blocks[size_t(l)]; }
  void finish(int l, model::Block& block, std::map<std::string, CodebookLayer>& layers, const BlockReport&,
              const EngineState&) override {
    m_.blocks[size_t(l)] = block;
    for (auto& [name, layer] : layers) layers_.emplace(name, std::move(layer));
  }

 private:
  model::Model& m_;
  std::map<std::string, CodebookLayer>& layers_;
};

}  // namespace

ReconstructResult reconstruct(model::Model& m, const torch::Tensor& calib, BlockMethod& method,
                              const ReconstructOptions& o, std::map<std::string, CodebookLayer>& layers) {
  LCQ_CHECK(calib.dim() == 2 && calib.size(0) >= 1, "calibration tokens must be [samples, seqlen]");
  m.ensure_positions(calib.size(1));
  torch::Tensor x0;
  {
    torch::NoGradGuard ng;
    x0 = m.embed(calib);
  }
  ModelBlocks store(m, layers);
  return reconstruct(m, store, initial_state(x0, o), method, o);
}

ReconstructResult reconstruct(model::Model& m, BlockStore& store, EngineState state, BlockMethod& method,
                              const ReconstructOptions& o, const ActivationStore* acts) {
  LCQ_CHECK(state.x_q.defined() && state.x_q.dim() == 3 && state.x_q.size(0) >= 1,
            "calibration activations must be [samples, seqlen, dim]");
  LCQ_CHECK(o.targets_from_quantized_inputs || state.x_fp.defined(), "internal: no full-precision activations");
  LCQ_CHECK(o.epochs >= 0, "--epochs must be >= 0, got {}", o.epochs);
  LCQ_CHECK(o.batch_size >= 1, "--batch-size must be >= 1, got {}", o.batch_size);
  LCQ_CHECK(o.loss_samples >= 0, "--loss-samples must be >= 0, got {}", o.loss_samples);
  const bool bf16_steps = resolve_train_dtype(o.train_dtype) == TrainDtype::Bf16;
  const TrainingLoss loss_kind = o.loss;
  const bool cosine = o.schedule == LrSchedule::Cosine;
  const int64_t N = state.x_q.size(0), chunk = std::max<int64_t>(o.batch_size, 8);
  m.ensure_positions(state.x_q.size(1));
  const model::BlockContext ctx = detail::exact_context(m);
  std::mt19937_64 rng;
  {
    std::istringstream in(state.shuffle_rng);
    in >> rng;
    LCQ_CHECK(!in.fail(), "internal: invalid shuffle generator state");
  }
  if (state.torch_rng.defined()) {
    at::Generator g = at::detail::getDefaultCPUGenerator();  // a handle: shares the default's state
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(state.torch_rng);
  }
  if (!state.method.empty()) method.restore_state(state.method);

  torch::Tensor x_fp = state.x_fp, x_q = state.x_q;
  ReconstructResult result;
  const int64_t steps_per_epoch = (N + o.batch_size - 1) / o.batch_size;
  const int64_t total_steps = steps_per_epoch * o.epochs;
  const int64_t n_err = std::min(N, o.error_samples);
  const int64_t n_loss = o.loss_samples > 0 ? std::min(N, o.loss_samples) : N;
  auto first = [&](const torch::Tensor& t) { return t.slice(0, 0, n_loss); };

  for (int l = state.next_block; l < store.size(); ++l) {
    const auto t0 = Clock::now();
    model::Block block = store.load(l);
    // fp shares the full-precision weight tensors; it computes the targets, so it runs
    // without the activation quantization the block may carry (weight-activation schemes:
    // the quantized block is trained with it, against full-precision outputs).
    model::Block fp = block;
    for (auto& [name, lin] : fp.linears()) lin->input_quant.reset(), lin->output_quant.reset();
    torch::Tensor target = run_block(ctx, fp, o.targets_from_quantized_inputs ? x_q : x_fp, chunk, acts);

    std::vector<torch::Tensor> inputs;  // what the method may use for statistics (GPTQ, AWQ)
    inputs.push_back(x_q);
    method.begin_block(l, fp, inputs);
    model::Block working = fp;
    {
      auto with = block.linears();
      auto to = working.linears();
      for (size_t i = 0; i < to.size(); ++i) {
        to[i].second->input_quant = with[i].second->input_quant;
        to[i].second->output_quant = with[i].second->output_quant;
      }
    }
    block = model::Block();  // working and fp hold the weights now
    {
      torch::NoGradGuard ng;
      method.apply(working);
    }
    BlockReport rep;
    rep.layer = l;
    rep.init_loss = block_loss(ctx, working, first(x_q), first(target), chunk);
    const auto init_err = layer_errors(ctx, working, fp, x_q.slice(0, 0, n_err));
    rep.trained_loss = rep.init_loss;

    auto groups = method.param_groups();
    if (!groups.empty() && total_steps > 0) {
      const torch::Tensor weights = position_weights(loss_kind, target);
      std::vector<double> base_lr;
      for (auto& g : groups) base_lr.push_back(static_cast<torch::optim::AdamOptions&>(g.options()).lr());
      torch::optim::Adam adam(groups, torch::optim::AdamOptions(1e-3));
      Progress bar(fmt::format("block {}/{}", l + 1, store.size()), total_steps, o.progress);
      const char* objective = weights.defined() ? "weighted loss" : "loss";
      std::vector<int64_t> order(static_cast<size_t>(N));
      int64_t step = 0;
      double epoch_loss = 0;
      for (int e = 0; e < o.epochs; ++e) {
        for (int64_t i = 0; i < N; ++i) order[size_t(i)] = i;
        std::shuffle(order.begin(), order.end(), rng);
        epoch_loss = 0;
        for (int64_t b0 = 0; b0 < N; b0 += o.batch_size) {
          const int64_t b1 = std::min(N, b0 + o.batch_size);
          auto idx = torch::tensor(std::vector<int64_t>(order.begin() + b0, order.begin() + b1), torch::kInt64);
          const double scale = cosine ? 0.5 * (1 + std::cos(M_PI * double(step) / double(total_steps))) : 1.0;
          for (size_t gi = 0; gi < groups.size(); ++gi)
            static_cast<torch::optim::AdamOptions&>(adam.param_groups()[gi].options()).lr(base_lr[gi] * scale);
          adam.zero_grad();
          method.apply(working);
          torch::Tensor y;
          {
            Bf16Products bf16(bf16_steps);
            y = model::block_forward(ctx, working, x_q.index_select(0, idx), 0).to(torch::kFloat32);
          }
          auto err = (y - target.index_select(0, idx)).pow(2);
          auto loss = (weights.defined() ? err * weights.index_select(0, idx) : err).mean();
          const double step_loss = loss.item<double>();
          // A diverged run must not be written as a model: stop at the first bad step.
          LCQ_CHECK(std::isfinite(step_loss),
                    "block {}: the training loss became {} in epoch {}: training diverged; use a lower learning "
                    "rate (--lr-scale and --lr-codebook for lcq, --lr for omniquant, flexround and lrq)",
                    l, step_loss, e + 1);
          loss.backward();
          adam.step();
          epoch_loss += step_loss * double(b1 - b0);
          ++step;
          bar.update(step, fmt::format("epoch {}/{} {} {:.3e}", e + 1, o.epochs, objective, epoch_loss / double(b1)));
        }
        if (acts) acts->release(x_q), acts->release(target);
      }
      torch::NoGradGuard ng;
      method.apply(working);
      rep.trained_loss = block_loss(ctx, working, first(x_q), first(target), chunk);
      // The same measure before and after (the training objective may weight positions).
      bar.finish(fmt::format("output MSE {:.3e} -> {:.3e}", rep.init_loss, rep.trained_loss));
    }
    return_free_heap();  // the training steps' activations and gradients, before the block is frozen

    auto layers = method.end_block(working);
    // The frozen block's outputs are both the final loss and the next block's inputs: one pass.
    for (auto& [name, lin] : working.linears()) {
      lin->weight = lin->weight.detach();
      LCQ_CHECK(torch::isfinite(lin->weight).all().item<bool>(),
                "block {}: the quantized weight of {} contains NaN or infinite values: the quantizer diverged; use a "
                "lower learning rate (--lr-scale and --lr-codebook for lcq, --lr for omniquant, flexround and lrq)",
                l, name);
    }
    torch::Tensor x_next = run_block(ctx, working, x_q, chunk, acts);
    rep.final_loss = mse(first(x_next), first(target), chunk);
    const auto final_err = layer_errors(ctx, working, fp, x_q.slice(0, 0, n_err));
    auto wl = working.linears();
    for (const auto& [name, lin] : wl) {
      LayerReport lr;
      lr.name = model::layer_name(l, name);
      auto it_init = init_err.find(lin);
      auto it_final = final_err.find(lin);
      lr.init_error = it_init != init_err.end() ? it_init->second : NAN;
      lr.final_error = it_final != final_err.end() ? it_final->second : NAN;
      auto q = layers.find(lr.name);
      lr.bits_per_weight = q != layers.end() ? q->second.bits_per_weight() : 32.0;
      rep.layers.push_back(lr);
    }
    fp = model::Block();
    // The frozen block's outputs are the next block's inputs.
    x_q = x_next;
    if (!o.targets_from_quantized_inputs) x_fp = target;
    target = torch::Tensor();
    rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    EngineState next;
    next.next_block = l + 1;
    next.x_q = x_q;
    next.x_fp = x_fp;
    next.shuffle_rng = as_text(rng);
    next.torch_rng = at::detail::getDefaultCPUGenerator().get_state();
    next.method = method.carried_state();
    store.finish(l, working, layers, rep, next);
    if (acts) acts->release(x_q), acts->release(x_fp);
    result.blocks.push_back(std::move(rep));
    // The block's many freed intermediates would otherwise stay resident as heap holes that
    // the next block's different sizes cannot reuse: the peak grew over the first blocks.
    return_free_heap();
  }
  {
    torch::NoGradGuard ng;
    const int64_t dim = x_q.size(-1);
    torch::Tensor gram = torch::zeros({dim, dim}, torch::kFloat64);
    for (int64_t i = 0; i < N; i += chunk) {
      const torch::Tensor h =
          m.final_norm(x_q.slice(0, i, std::min(N, i + chunk))).to(torch::kFloat64).reshape({-1, dim});
      gram.addmm_(h.t(), h);
    }
    result.head_gram = gram / double(x_q.size(0) * x_q.size(1));
  }
  return result;
}

}  // namespace lcq::quant
