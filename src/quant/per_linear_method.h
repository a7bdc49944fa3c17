// A BlockMethod made of one independent, trainable quantizer per linear layer of a block:
// the shape of LCQ, OmniQuant, FlexRound and LRQ. Each method supplies the quantizer type and
// a factory; this class does the bookkeeping the engine needs. Private to src/quant.
//
// A Quantizer provides
//   std::vector<std::vector<torch::Tensor>> parameter_sets();  // one list per learning rate
//   torch::Tensor weight() const;       // the fake-quantized weight, differentiable
//   CodebookLayer finalize() const;     // the stored form (its dequantization is what runs)
#pragma once

#include "lcq/core/error.h"
#include "lcq/quant/reconstruct.h"
#include "layer_inputs.h"

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lcq::quant::detail {

template <class Quantizer>
class PerLinearMethod final : public BlockMethod {
 public:
  // make(layer, name, W, energy) builds the quantizer of linear `name` ("attn_q", ...) of
  // block `layer` with weight W; `energy` is the mean square of each of its input columns on
  // the calibration inputs when weigh_inputs() was called and the block has them, else undefined.
  // lrs[i] is the Adam learning rate of parameter set i; train = false: nothing is trained.
  // `gen`: the generator `make` draws from (a handle sharing its state), whose state is the
  // method's carried state.
  using Factory = std::function<Quantizer(int layer, const std::string& name, const torch::Tensor& W,
                                          const torch::Tensor& energy)>;
  PerLinearMethod(Factory make, std::vector<double> lrs, bool train, std::optional<torch::Generator> gen = {})
      : make_(std::move(make)), lrs_(std::move(lrs)), train_(train), gen_(std::move(gen)) {}

  // Measure the input energies of each block's linears (one forward of the block over its
  // calibration inputs) and give them to the factory.
  void weigh_inputs(const model::BlockContext& ctx) { energy_ctx_ = ctx; }

  void begin_block(int layer, const model::Block& fp, const std::vector<torch::Tensor>& inputs) override {
    layer_ = layer;
    quantizers_.clear();
    std::map<std::string, torch::Tensor> energies;
    if (energy_ctx_ && !inputs.empty() && inputs[0].defined()) energies = input_energies(*energy_ctx_, fp, inputs[0]);
    for (const auto& [name, lin] : fp.linears()) {
      const auto it = energies.find(name);
      quantizers_.emplace_back(name, make_(layer, name, lin->weight, it == energies.end() ? torch::Tensor() : it->second));
    }
  }

  std::vector<torch::optim::OptimizerParamGroup> param_groups() override {
    if (!train_) return {};
    std::vector<std::vector<torch::Tensor>> sets(lrs_.size());
    for (auto& [name, q] : quantizers_) {
      auto ps = q.parameter_sets();
      LCQ_CHECK(ps.size() == lrs_.size(), "internal: {} parameter sets for {} learning rates", ps.size(), lrs_.size());
      for (size_t i = 0; i < ps.size(); ++i) sets[i].insert(sets[i].end(), ps[i].begin(), ps[i].end());
    }
    std::vector<torch::optim::OptimizerParamGroup> groups;
    for (size_t i = 0; i < sets.size(); ++i)
      if (!sets[i].empty()) groups.emplace_back(sets[i], std::make_unique<torch::optim::AdamOptions>(lrs_[i]));
    return groups;
  }

  void apply(model::Block& working) override {
    auto lins = working.linears();
    for (size_t i = 0; i < lins.size(); ++i) lins[i].second->weight = quantizers_[i].second.weight();
  }

  std::map<std::string, CodebookLayer> end_block(model::Block& working) override {
    std::map<std::string, CodebookLayer> out;
    auto lins = working.linears();
    for (size_t i = 0; i < lins.size(); ++i) {
      CodebookLayer cl = quantizers_[i].second.finalize();
      auto w = torch::empty({cl.rows, cl.cols}, torch::kFloat32);
      cl.dequantize(w.data_ptr<float>());
      model::Linear& lin = *lins[i].second;
      lin.weight = w.to(lin.weight.options()).detach();
      out.emplace(model::layer_name(layer_, quantizers_[i].first), std::move(cl));
    }
    quantizers_.clear();
    return out;
  }

  std::map<std::string, torch::Tensor> carried_state() const override {
    if (!gen_) return {};
    return {{"generator", gen_->get_state()}};
  }

  void restore_state(const std::map<std::string, torch::Tensor>& state) override {
    const auto it = state.find("generator");
    LCQ_CHECK(!gen_ == (it == state.end()), "internal: the method's generator state is {}",
              gen_ ? "missing" : "unexpected");
    if (gen_) gen_->set_state(it->second);
  }

 private:
  Factory make_;
  std::vector<double> lrs_;
  bool train_;
  int layer_ = 0;
  std::optional<torch::Generator> gen_;
  std::optional<model::BlockContext> energy_ctx_;
  std::vector<std::pair<std::string, Quantizer>> quantizers_;
};

}  // namespace lcq::quant::detail
