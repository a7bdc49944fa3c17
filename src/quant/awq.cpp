#include "lcq/quant/awq.h"

#include "layer_inputs.h"
#include "lcq/core/error.h"
#include "lcq/core/named.h"
#include "lcq/core/progress.h"
#include "lcq/quant/uniform.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

namespace lcq::quant {

namespace {
constexpr Named<AwqInputs> kAwqInputs[] = {{AwqInputs::kFp, "fp"}, {AwqInputs::kQuantized, "quantized"}};
}  // namespace

const std::vector<std::string>& awq_inputs_names() {
  static const auto v = names_of(kAwqInputs);
  return v;
}

AwqInputs parse_awq_inputs(const std::string& name) { return parse_named(kAwqInputs, name, "--awq-inputs"); }

std::string to_string(AwqInputs i) { return name_of(kAwqInputs, i); }

void validate(const AwqOptions& a, const LcqOptions& o) {
  validate(o);
  LCQ_CHECK(a.grid >= 1, "--awq-grid must be >= 1, got {}", a.grid);
  LCQ_CHECK(a.clip_grid >= 1, "--awq-clip-grid must be >= 1, got {}", a.clip_grid);
  LCQ_CHECK(a.max_shrink >= 0 && a.max_shrink < 1, "--awq-max-shrink must be in [0, 1), got {}", a.max_shrink);
  LCQ_CHECK(a.search_samples >= 0, "--awq-search-samples must be >= 0 (0 = all), got {}", a.search_samples);
}

const char* to_string(AwqSite site) {
  switch (site) {
    case AwqSite::kAttnInput: return "attn_input";
    case AwqSite::kAttnOutput: return "attn_output";
    case AwqSite::kMlpInput: return "mlp_input";
    case AwqSite::kMlpOutput: return "mlp_output";
  }
  return "?";
}

bool awq_site_applies(const model::Block& b, const ModelConfig& c, AwqSite site) {
  const bool post_norm = c.arch == Arch::OPT && !c.opt_pre_layer_norm;
  switch (site) {
    case AwqSite::kAttnInput:
    case AwqSite::kMlpInput: return !post_norm;
    case AwqSite::kAttnOutput: return b.v.out_features() == b.o.in_features();
    case AwqSite::kMlpOutput: return true;  // silu(gate) * up and relu(fc1) commute with positive scales
  }
  return false;
}

std::vector<std::string> awq_site_layers(const model::Block& b, AwqSite site) {
  switch (site) {
    case AwqSite::kAttnInput: return {"attn_q", "attn_k", "attn_v"};
    case AwqSite::kAttnOutput: return {"attn_output"};
    case AwqSite::kMlpInput:
      return b.gate.defined() ? std::vector<std::string>{"ffn_gate", "ffn_up"} : std::vector<std::string>{"ffn_up"};
    case AwqSite::kMlpOutput: return {"ffn_down"};
  }
  return {};
}

void fold_awq_scales(model::Block& b, AwqSite site, const torch::Tensor& s_in) {
  torch::NoGradGuard ng;
  const std::vector<std::string> consumers = awq_site_layers(b, site);
  const int64_t n = detail::linear_named(b, consumers[0]).in_features();
  LCQ_CHECK(s_in.dim() == 1 && s_in.numel() == n, "AWQ {}: {} scales for {} input channels", to_string(site),
            s_in.numel(), n);
  LCQ_CHECK((s_in > 0).all().item<bool>(), "AWQ {}: scales must be positive", to_string(site));
  auto as = [&](const torch::Tensor& t) { return s_in.to(t.options()); };
  auto divide_norm = [&](model::Norm& nm) {
    nm.weight = nm.weight / as(nm.weight);
    if (nm.bias.defined()) nm.bias = nm.bias / as(nm.bias);
  };
  auto divide_rows = [&](model::Linear& l) {
    LCQ_CHECK(l.out_features() == n, "AWQ {}: the producer has {} outputs for {} scales", to_string(site),
              l.out_features(), n);
    l.weight = l.weight / as(l.weight).unsqueeze(1);
    if (l.bias.defined()) l.bias = l.bias / as(l.bias);
  };
  switch (site) {
    case AwqSite::kAttnInput: divide_norm(b.attn_norm); break;
    case AwqSite::kAttnOutput: divide_rows(b.v); break;
    case AwqSite::kMlpInput: divide_norm(b.ffn_norm); break;
    case AwqSite::kMlpOutput: divide_rows(b.up); break;
  }
  for (const auto& name : consumers) {
    model::Linear& l = detail::linear_named(b, name);
    l.weight = l.weight * as(l.weight).unsqueeze(0);
  }
}

namespace {

constexpr AwqSite kSites[] = {AwqSite::kAttnInput, AwqSite::kAttnOutput, AwqSite::kMlpInput, AwqSite::kMlpOutput};

torch::Tensor fake_rtn(const torch::Tensor& W, const LcqOptions& o) {
  const GroupedWeight gw = GroupedWeight::make(W, o.group);
  return fake_quantize(gw, minmax_grid(gw, o.bits), o.bits);
}

// Mean squared output error of a linear whose weight changes by dW, over the tokens whose
// Gram matrix is st.gram: ||X dW^T||^2 / (tokens * rows).
double gram_mse(const torch::Tensor& dW, const detail::InputStats& st) {
  return (dW.mm(st.gram) * dW).sum().item<double>() / (double(st.tokens) * double(dW.size(0)));
}

// The output of the sub-layer a norm-fed site feeds (attention up to o, or the MLP) on its
// inputs h [N, L, dim], in chunks.
torch::Tensor sublayer(const model::BlockContext& ctx, const model::Block& block, AwqSite site,
                       const torch::Tensor& h) {
  std::vector<torch::Tensor> outs;
  for (int64_t i = 0; i < h.size(0); i += detail::kChunkSamples) {
    const torch::Tensor hc = h.slice(0, i, std::min(h.size(0), i + detail::kChunkSamples));
    outs.push_back(site == AwqSite::kAttnInput ? model::attention_forward(ctx, block, hc, 0)
                                               : model::mlp_forward(*ctx.config, block, hc));
  }
  return torch::cat(outs, 0);
}

// The reference's clipping search: per group, the symmetric range max|w| * shrink (shrink
// 1, 1 - 1/clip_grid, ...) minimising the group's output error (RTN of the clamped group
// against the unclamped weights) under H, the Gram matrix of the layer's inputs. Returns W
// clamped to the best range of each group.
torch::Tensor clip_search(const torch::Tensor& W, const torch::Tensor& H, const LcqOptions& o, const AwqOptions& a) {
  const GroupedWeight gw = GroupedWeight::make(W, o.group);
  const int64_t n = W.size(1), G = gw.w.size(1), g = gw.group;
  // Diagonal blocks of H, zero-padded for the ragged tail (whose padded weights then count nothing).
  torch::Tensor Hb = torch::zeros({G, g, g}, torch::kFloat32);
  for (int64_t j = 0; j < G; ++j) {
    const int64_t c0 = j * g, c1 = std::min(n, c0 + g);
    Hb[j].slice(0, 0, c1 - c0).slice(1, 0, c1 - c0).copy_(H.slice(0, c0, c1).slice(1, c0, c1));
  }
  const torch::Tensor org_max = gw.w.abs().amax(-1);  // [m, G]
  torch::Tensor best_max = org_max.clone();
  torch::Tensor best_err = torch::full_like(org_max, std::numeric_limits<float>::infinity());
  const int steps = int(a.max_shrink * a.clip_grid);
  for (int i = 0; i < steps; ++i) {
    const torch::Tensor mv = org_max * (1.0 - double(i) / a.clip_grid);
    GroupedWeight c = gw;
    c.w = torch::max(torch::min(gw.w, mv.unsqueeze(-1)), -mv.unsqueeze(-1));
    const UniformGrid grid = minmax_grid(c, o.bits);
    const torch::Tensor sc = grid.scale.unsqueeze(-1);
    const torch::Tensor d = (quantize_codes(c, grid, o.bits) * sc - sc * grid.zero.unsqueeze(-1)) - gw.w;
    const torch::Tensor dt = d.permute({1, 0, 2});                 // [G, m, g]
    const torch::Tensor err = (torch::bmm(dt, Hb) * dt).sum(-1).t();  // [m, G]: d_k^T H_k d_k
    const torch::Tensor better = err < best_err;
    best_err = torch::where(better, err, best_err);
    best_max = torch::where(better, mv, best_max);
  }
  const torch::Tensor bm = best_max.unsqueeze(-1);
  return gw.ungroup(torch::max(torch::min(gw.w, bm), -bm));
}

class AwqMethod final : public BlockMethod {
 public:
  AwqMethod(const model::Model& m, const LcqOptions& o, const AwqOptions& a, bool progress)
      : model_(&m), o_(o), a_(a), progress_(progress) {
    validate(a_, o_);
  }

  void begin_block(int layer, const model::Block& fp, const std::vector<torch::Tensor>& inputs) override {
    LCQ_CHECK(!inputs.empty() && inputs[0].defined(), "AWQ needs the block's calibration inputs");
    torch::NoGradGuard ng;
    layer_ = layer;
    const model::BlockContext ctx = detail::exact_context(*model_);
    if (a_.inputs == AwqInputs::kFp && (layer == 0 || !x_fp_.defined())) x_fp_ = inputs[0];  // the embeddings
    const torch::Tensor x = a_.inputs == AwqInputs::kFp ? x_fp_ : inputs[0];
    rtn_.clear();
    awq_layers_.clear();
    scaled_.clear();
    for (const auto& [name, lin] : fp.linears()) rtn_.emplace(name, detail::rtn_layer(lin->weight, o_));

    std::vector<std::string> stat_sites;
    for (AwqSite site : kSites) stat_sites.push_back(detail::input_site(fp, awq_site_layers(fp, site)[0]));
    std::map<std::string, detail::InputStats> stats;
    const int64_t ns = a_.search_samples > 0 ? std::min(x.size(0), a_.search_samples) : x.size(0);
    detail::StatsOptions so;
    so.keep_samples = ns;
    const torch::Tensor y = detail::collect_input_stats(ctx, fp, x, stat_sites, stats, so);

    std::vector<AwqSite> sites;
    for (AwqSite site : kSites)
      if (awq_site_applies(fp, model_->config, site)) sites.push_back(site);
    Progress bar(fmt::format("block {} awq", layer), int64_t(sites.size()) * a_.grid + int64_t(rtn_.size()),
                 progress_);

    // 1. Scale search, every site on the full-precision block (as the reference).
    std::vector<std::pair<AwqSite, torch::Tensor>> chosen;
    std::string alphas;
    for (AwqSite site : sites) {
      const std::vector<std::string> names = awq_site_layers(fp, site);
      const detail::InputStats& st = stats.at(detail::input_site(fp, names[0]));
      const torch::Tensor mean_abs = st.abs_sum / double(st.tokens);
      const bool norm_fed = site == AwqSite::kAttnInput || site == AwqSite::kMlpInput;
      const torch::Tensor target = norm_fed ? sublayer(ctx, fp, site, st.inputs) : torch::Tensor();
      double best = std::numeric_limits<double>::infinity(), best_alpha = 0;
      torch::Tensor best_s;
      for (int k = 0; k < a_.grid; ++k) {
        const double alpha = double(k) / a_.grid;
        torch::Tensor s = mean_abs.pow(alpha).clamp_min(1e-4);
        s = s / std::sqrt((s.max() * s.min()).item<double>());
        model::Block cand = fp;
        for (const auto& name : names) {
          model::Linear& l = detail::linear_named(cand, name);
          const torch::Tensor sw = s.to(l.weight.options()).unsqueeze(0);
          l.weight = fake_rtn(l.weight * sw, o_) / sw;
        }
        const double loss =
            norm_fed ? (sublayer(ctx, cand, site, st.inputs) - target).pow(2).mean().item<double>()
                     : gram_mse(detail::linear_named(cand, names[0]).weight - detail::linear_named(fp, names[0]).weight, st);
        if (loss < best) {
          best = loss;
          best_alpha = alpha;
          best_s = s;
        }
        bar.add(1, to_string(site));
      }
      LCQ_CHECK(best_s.defined(), "blk.{}: AWQ found no finite output error for the {} scales", layer,
                to_string(site));
      chosen.emplace_back(site, best_s);
      alphas += fmt::format(" {} {:.2f}", to_string(site), best_alpha);
    }

    // 2. Fold the scales; 3. clip and quantize the scaled weights.
    awq_ = fp;
    for (const auto& [site, s] : chosen) fold_awq_scales(awq_, site, s);
    for (auto& [name, lin] : awq_.linears()) {
      torch::Tensor W = lin->weight;
      scaled_[name] = W.to(torch::kFloat32);  // clipping then rounding = rounding onto the clipped grid
      if (a_.clip && (a_.clip_qk || (name != "attn_q" && name != "attn_k"))) {
        // The layer now reads x / s: its Gram matrix is divided by s s^T.
        torch::Tensor H = stats.at(detail::input_site(fp, name)).gram;
        for (const auto& [site, s] : chosen) {
          const auto names = awq_site_layers(fp, site);
          if (std::find(names.begin(), names.end(), name) != names.end()) H = H / s.unsqueeze(1) / s.unsqueeze(0);
        }
        W = clip_search(W.to(torch::kFloat32), H, o_, a_);
      }
      CodebookLayer cl = detail::rtn_layer(W, o_);
      lin->weight = detail::dequantized(cl, lin->weight);
      awq_layers_.emplace(name, std::move(cl));
      bar.add(1, name);
    }
    bar.finish("alpha" + alphas);
    if (a_.inputs == AwqInputs::kFp) x_fp_ = y;  // the next block's full-precision inputs
  }

  std::vector<torch::optim::OptimizerParamGroup> param_groups() override { return {}; }

  void apply(model::Block& working) override {
    for (auto& [name, lin] : working.linears()) lin->weight = detail::dequantized(rtn_.at(name), lin->weight);
  }

  std::map<std::string, torch::Tensor> full_precision_weights() const override { return scaled_; }

  std::map<std::string, torch::Tensor> carried_state() const override {
    if (!x_fp_.defined()) return {};
    return {{"x_fp", x_fp_}};
  }

  void restore_state(const std::map<std::string, torch::Tensor>& state) override {
    const auto it = state.find("x_fp");
    x_fp_ = it != state.end() ? it->second : torch::Tensor();
  }

  std::map<std::string, CodebookLayer> end_block(model::Block& working) override {
    // The folded norms and biases go with the quantized weights: the engine makes `working`
    // the model's block, and the writer stores norms and biases from the model.
    working.attn_norm = awq_.attn_norm;
    working.ffn_norm = awq_.ffn_norm;
    std::map<std::string, CodebookLayer> out;
    auto src = awq_.linears();
    auto dst = working.linears();
    for (size_t i = 0; i < dst.size(); ++i) {
      dst[i].second->weight = src[i].second->weight;
      dst[i].second->bias = src[i].second->bias;
      out.emplace(model::layer_name(layer_, dst[i].first), std::move(awq_layers_.at(dst[i].first)));
    }
    awq_ = model::Block();
    rtn_.clear();
    awq_layers_.clear();
    return out;
  }

 private:
  const model::Model* model_;
  LcqOptions o_;
  AwqOptions a_;
  bool progress_;
  int layer_ = 0;
  torch::Tensor x_fp_;  // inputs of the current block in the full-precision model (inputs = fp)
  model::Block awq_;    // the block with folded scales and quantized weights
  std::map<std::string, CodebookLayer> rtn_, awq_layers_;
  std::map<std::string, torch::Tensor> scaled_;  // the scaled full-precision weights, before clipping
};

}  // namespace

std::unique_ptr<BlockMethod> make_awq_method(const model::Model& model, const LcqOptions& o, const AwqOptions& a,
                                             bool progress) {
  return std::make_unique<AwqMethod>(model, o, a, progress);
}

}  // namespace lcq::quant
