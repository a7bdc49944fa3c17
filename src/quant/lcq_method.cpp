// The LCQ block methods: from a plain grid (rtn, mse) or from another method's result
// (gptq, awq). See lcq/quant/lcq.h.
#include "lcq/quant/lcq.h"

#include "per_linear_method.h"

#include <map>
#include <memory>
#include <utility>

namespace lcq::quant {

LcqOptions with_layer_bits(const LcqOptions& o, const std::map<std::string, int>& layer_bits, int layer,
                           const std::string& name) {
  LcqOptions own = o;
  const auto it = layer_bits.find(model::layer_name(layer, name));
  if (it != layer_bits.end()) own.bits = it->second;
  return own;
}

std::unique_ptr<BlockMethod> make_lcq_method(const LcqOptions& o, std::vector<double> lrs, bool train,
                                             torch::Generator gen, std::map<std::string, int> layer_bits,
                                             const model::Model* inputs_of) {
  auto method = std::make_unique<detail::PerLinearMethod<LcqLinear>>(
      [o, gen, layer_bits = std::move(layer_bits)](int layer, const std::string& name, const torch::Tensor& W,
                                                   const torch::Tensor& energy) {
        return LcqLinear(W, with_layer_bits(o, layer_bits, layer, name), gen, energy);
      },
      std::move(lrs), train, gen);
  if (o.init == LcqInit::kWmse && inputs_of) method->weigh_inputs(detail::exact_context(*inputs_of));
  return method;
}

namespace {

struct Start {
  torch::Tensor weight;  // the full-precision weight in the start's basis: what LCQ quantizes
  CodebookLayer layer;   // start's rank-one grid and codes
};

class LcqFromStart final : public BlockMethod {
 public:
  LcqFromStart(std::unique_ptr<BlockMethod> start, const LcqOptions& o, std::vector<double> lrs, bool train,
               torch::Generator gen)
      : start_(std::move(start)),
        starts_(std::make_shared<std::map<std::string, Start>>()),
        lcq_([o, gen, starts = starts_](int, const std::string& name, const torch::Tensor&, const torch::Tensor&) {
               const Start& s = starts->at(name);
               LcqOptions own = o;
               own.bits = s.layer.bits;  // a size target's width, as the start method chose it
               return LcqLinear(s.weight, s.layer, own, gen);
             },
             std::move(lrs), train, gen) {}

  void begin_block(int layer, const model::Block& fp, const std::vector<torch::Tensor>& inputs) override {
    start_->begin_block(layer, fp, inputs);
    start_block_ = fp;  // start's end_block writes its weights, folded norms and biases here
    std::map<std::string, CodebookLayer> layers = start_->end_block(start_block_);
    // The weights to quantize are the model's own (start_block_ now holds start's rounded
    // ones), in start's basis where it folded scales into the norms (AWQ).
    const std::map<std::string, torch::Tensor> weights = start_->full_precision_weights();
    starts_->clear();
    for (const auto& [name, lin] : fp.linears()) {
      const auto it = weights.find(name);
      const std::string full = model::layer_name(layer, name);
      LCQ_CHECK(layers.count(full), "internal: the start method produced no layer {}", full);
      (*starts_)[name] = Start{it != weights.end() ? it->second : lin->weight, std::move(layers.at(full))};
    }
    lcq_.begin_block(layer, start_block_, inputs);
  }

  std::vector<torch::optim::OptimizerParamGroup> param_groups() override { return lcq_.param_groups(); }

  void apply(model::Block& working) override {
    keep_folded(working);
    lcq_.apply(working);
  }

  std::map<std::string, torch::Tensor> carried_state() const override {
    std::map<std::string, torch::Tensor> out = lcq_.carried_state();
    for (auto& [key, value] : start_->carried_state()) out.emplace("start." + key, value);
    return out;
  }

  void restore_state(const std::map<std::string, torch::Tensor>& state) override {
    std::map<std::string, torch::Tensor> own, start;
    for (const auto& [key, value] : state)
      (key.rfind("start.", 0) == 0 ? start[key.substr(6)] : own[key]) = value;
    lcq_.restore_state(own);
    start_->restore_state(start);
  }

  std::map<std::string, CodebookLayer> end_block(model::Block& working) override {
    keep_folded(working);
    auto out = lcq_.end_block(working);
    starts_->clear();
    start_block_ = model::Block();
    return out;
  }

 private:
  // Norms and biases as the start method left them (AWQ folds its scales into them).
  void keep_folded(model::Block& working) const {
    working.attn_norm = start_block_.attn_norm;
    working.ffn_norm = start_block_.ffn_norm;
    auto src = start_block_.linears();
    auto dst = working.linears();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].second->bias = src[i].second->bias;
  }

  std::unique_ptr<BlockMethod> start_;
  std::shared_ptr<std::map<std::string, Start>> starts_;
  detail::PerLinearMethod<LcqLinear> lcq_;
  model::Block start_block_;
};

}  // namespace

std::unique_ptr<BlockMethod> make_lcq_method_from(std::unique_ptr<BlockMethod> start, const LcqOptions& o,
                                                  std::vector<double> lrs, bool train, torch::Generator gen) {
  return std::make_unique<LcqFromStart>(std::move(start), o, std::move(lrs), train, gen);
}

}  // namespace lcq::quant
