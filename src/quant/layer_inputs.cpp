#include "layer_inputs.h"

#include "lcq/core/error.h"

#include <algorithm>

namespace lcq::quant::detail {

std::string input_site(const model::Block& block, const std::string& linear) {
  if (linear == "attn_k" || linear == "attn_v") return "attn_q";
  if (linear == "ffn_up" && block.gate.defined()) return "ffn_gate";
  return linear;
}

namespace {
// Thrown by the tap to end a forward pass early: it unwinds only our own frames (the tap is
// called from Linear::forward, itself called from block_forward).
struct StopForward {};
}  // namespace

torch::Tensor collect_input_stats(const model::BlockContext& ctx, const model::Block& block, const torch::Tensor& x,
                                  const std::vector<std::string>& sites, std::map<std::string, InputStats>& stats,
                                  const StatsOptions& o) {
  torch::NoGradGuard ng;
  std::map<const model::Linear*, InputStats*> watched;
  for (const auto& [name, lin] : block.linears()) {
    if (std::find(sites.begin(), sites.end(), name) == sites.end()) continue;
    InputStats& s = stats[name];
    const int64_t n = lin->in_features();
    s.gram = o.gram ? torch::zeros({n, n}, torch::kFloat32) : torch::Tensor();
    s.abs_sum = torch::zeros({n}, torch::kFloat32);
    s.sq_sum = o.gram ? torch::Tensor() : torch::zeros({n}, torch::kFloat32);  // with a gram: its diagonal, not kept
    s.tokens = 0;
    watched[lin] = &s;
  }
  LCQ_CHECK(watched.size() == sites.size(), "internal: unknown linear layer among the requested input sites");
  std::map<InputStats*, std::vector<torch::Tensor>> kept;
  int64_t seen = 0;             // samples before the current chunk
  size_t seen_in_chunk = 0;     // watched layers whose input the current chunk has reached
  model::LinearInputTap tap([&](const model::Linear& l, const torch::Tensor& in) {
    auto it = watched.find(&l);
    if (it == watched.end()) return;
    InputStats& s = *it->second;
    const torch::Tensor x2 = in.reshape({-1, in.size(-1)}).to(torch::kFloat32);
    if (o.gram)
      s.gram.addmm_(x2.t(), x2);
    else
      s.sq_sum.add_(x2.square().sum(0));
    s.abs_sum.add_(x2.abs().sum(0));
    s.tokens += x2.size(0);
    if (seen < o.keep_samples) kept[&s].push_back(in.slice(0, 0, o.keep_samples - seen));
    if (++seen_in_chunk == watched.size() && !o.need_output) throw StopForward{};
  });
  std::vector<torch::Tensor> outs;
  for (int64_t i = 0; i < x.size(0); i += kChunkSamples) {
    const int64_t j = std::min(x.size(0), i + kChunkSamples);
    seen_in_chunk = 0;
    try {
      outs.push_back(model::block_forward(ctx, block, x.slice(0, i, j), 0));
    } catch (const StopForward&) {
    }
    seen = j;
  }
  for (auto& [s, parts] : kept) s->inputs = torch::cat(parts, 0);
  return o.need_output ? torch::cat(outs, 0) : torch::Tensor();
}

std::map<std::string, torch::Tensor> input_energies(const model::BlockContext& ctx, const model::Block& block,
                                                    const torch::Tensor& x) {
  std::vector<std::string> sites;
  for (const auto& [name, lin] : block.linears()) {
    const std::string site = input_site(block, name);
    if (std::find(sites.begin(), sites.end(), site) == sites.end()) sites.push_back(site);
  }
  std::map<std::string, InputStats> stats;
  StatsOptions o;
  o.need_output = false;
  o.gram = false;
  collect_input_stats(ctx, block, x, sites, stats, o);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, lin] : block.linears()) {
    const InputStats& s = stats.at(input_site(block, name));
    out.emplace(name, s.sq_sum / double(std::max<int64_t>(s.tokens, 1)));
  }
  return out;
}

torch::Tensor run_block(const model::BlockContext& ctx, const model::Block& block, const torch::Tensor& x) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> outs;
  for (int64_t i = 0; i < x.size(0); i += kChunkSamples)
    outs.push_back(model::block_forward(ctx, block, x.slice(0, i, std::min(x.size(0), i + kChunkSamples)), 0));
  return torch::cat(outs, 0);
}

torch::Tensor dequantized(const CodebookLayer& layer, const torch::Tensor& like) {
  auto w = torch::empty({layer.rows, layer.cols}, torch::kFloat32);
  layer.dequantize(w.data_ptr<float>());
  return w.to(like.options()).detach();
}

CodebookLayer rtn_layer(const torch::Tensor& W, const LcqOptions& o) { return grid_layer(W, o, LcqInit::kRtn); }

CodebookLayer grid_layer(const torch::Tensor& W, const LcqOptions& o, LcqInit init, const torch::Tensor& energy) {
  LcqOptions r = o;
  r.rank = 1;
  r.init = init;
  return LcqLinear(W, r, at::detail::createCPUGenerator(0), energy).finalize();
}

const model::Linear& linear_named(const model::Block& block, const std::string& name) {
  for (const auto& [n, lin] : block.linears())
    if (n == name) return *lin;
  fail("internal: the block has no linear layer '{}'", name);
}

model::Linear& linear_named(model::Block& block, const std::string& name) {
  for (auto& [n, lin] : block.linears())
    if (n == name) return *lin;
  fail("internal: the block has no linear layer '{}'", name);
}

}  // namespace lcq::quant::detail
