#include "lcq/quant/act_calibration.h"

#include "layer_inputs.h"
#include "lcq/core/error.h"
#include "lcq/core/progress.h"
#include "lcq/quant/awq.h"

#include <torch/torch.h>

namespace lcq::quant {

namespace {

// Per-input-channel max |x| of each linear of `block` over x [N, L, dim]; returns the
// block's output. Activation quantization is off for the pass (the tap sees the inputs
// before it anyway, and the outputs must be the full-precision ones).
torch::Tensor channel_absmax(const model::BlockContext& ctx, const model::Block& block, const torch::Tensor& x,
                             std::map<const model::Linear*, torch::Tensor>& absmax) {
  model::Block plain = block;
  for (auto& [name, lin] : plain.linears()) lin->input_quant.reset(), lin->output_quant.reset();
  std::map<const model::Linear*, const model::Linear*> original;
  auto src = block.linears();
  auto dst = plain.linears();
  for (size_t i = 0; i < dst.size(); ++i) original[dst[i].second] = src[i].second;
  model::LinearInputTap tap([&](const model::Linear& lin, const torch::Tensor& in) {
    auto it = original.find(&lin);
    if (it == original.end()) return;
    torch::Tensor m = in.detach().abs().to(torch::kFloat32).reshape({-1, in.size(-1)}).amax(0);
    torch::Tensor& acc = absmax[it->second];
    acc = acc.defined() ? torch::maximum(acc, m) : m;
  });
  return detail::run_block(ctx, plain, x);
}

}  // namespace

int smooth_quant(model::Model& m, const torch::Tensor& calib, double alpha, bool progress) {
  LCQ_CHECK(alpha >= 0 && alpha <= 1, "--smoothquant alpha must be in [0, 1], got {}", alpha);
  torch::NoGradGuard ng;
  const model::BlockContext ctx = detail::exact_context(m);
  torch::Tensor x = m.embed(calib);
  int sites = 0;
  Progress bar("smoothquant", int64_t(m.blocks.size()), progress);
  for (auto& block : m.blocks) {
    std::map<const model::Linear*, torch::Tensor> absmax;
    const torch::Tensor y = channel_absmax(ctx, block, x, absmax);
    for (AwqSite site : {AwqSite::kAttnInput, AwqSite::kMlpInput}) {
      if (!awq_site_applies(block, m.config, site)) continue;
      const std::vector<std::string> names = awq_site_layers(block, site);
      const torch::Tensor act = absmax.at(&detail::linear_named(block, names[0])).clamp_min(1e-5);
      torch::Tensor wmax;
      for (const auto& name : names) {
        torch::Tensor w = detail::linear_named(block, name).weight.abs().to(torch::kFloat32).amax(0);
        wmax = wmax.defined() ? torch::maximum(wmax, w) : w;
      }
      const torch::Tensor s = (act.pow(alpha) / wmax.clamp_min(1e-5).pow(1 - alpha)).clamp_min(1e-5);
      fold_awq_scales(block, site, s);
      ++sites;
    }
    x = y;  // folding does not change the block's function
    bar.add(1);
  }
  bar.finish();
  return sites;
}

std::map<std::string, float> calibrate_input_absmax(const model::Model& m, const torch::Tensor& calib,
                                                    bool progress) {
  torch::NoGradGuard ng;
  const model::BlockContext ctx = detail::exact_context(m);
  torch::Tensor x = m.embed(calib);
  std::map<std::string, float> out;
  Progress bar("activation ranges", int64_t(m.blocks.size()), progress);
  for (size_t l = 0; l < m.blocks.size(); ++l) {
    std::map<const model::Linear*, torch::Tensor> absmax;
    x = channel_absmax(ctx, m.blocks[l], x, absmax);
    for (const auto& [name, lin] : m.blocks[l].linears()) {
      auto it = absmax.find(lin);
      LCQ_CHECK(it != absmax.end(), "internal: no input seen for blk.{}.{}", l, name);
      out[model::layer_name(l, name)] = it->second.max().item<float>();
    }
    bar.add(1);
  }
  bar.finish();
  return out;
}

}  // namespace lcq::quant
