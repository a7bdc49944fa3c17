// Mixed precision under a size target: sensitivities, exact bytes, greedy choice. See
// lcq/quant/allocation.h.
#include "lcq/quant/allocation.h"

#include "layer_inputs.h"
#include "lcq/core/error.h"
#include "lcq/core/named.h"
#include "lcq/core/progress.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/quant/embedding.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace lcq::quant {

namespace {


// Keeps 4 significant digits: the stored sensitivities stay short.
double rounded(double x) { return std::stod(fmt::format("{:.4g}", x)); }

const Named<SensitivityMeasure> kMeasures[] = {{SensitivityMeasure::kBlock, "block"},
                                               {SensitivityMeasure::kModel, "model"},
                                               {SensitivityMeasure::kScaled, "scaled"}};

// Token-relative squared error of y against the target y0 [n, L, dim]: each position's error
// over its target's mean square, averaged.
double relative_error(const torch::Tensor& y, const torch::Tensor& y0) {
  return ((y - y0).pow(2).mean(-1) / y0.pow(2).mean(-1).clamp_min(1e-30)).mean().item<double>();
}

// Mean over positions of KL(p || q), p given by its log-probabilities logp [n, L, vocab] and q
// by hidden states h [n, L, dim] through the model's head; a sample at a time, so that the
// temporaries stay a few [L, vocab].
double mean_kl(const model::Model& m, const torch::Tensor& logp, const torch::Tensor& h) {
  double sum = 0;
  for (int64_t i = 0; i < h.size(0); ++i) {
    const torch::Tensor p = logp[i], q = torch::log_softmax(m.head(h.slice(0, i, i + 1))[0], -1);
    sum += (p.exp() * (p - q)).sum(-1).mean().item<double>();
  }
  return sum / double(h.size(0));
}

}  // namespace

const std::vector<std::string>& sensitivity_measure_names() {
  static const std::vector<std::string> names = names_of(kMeasures);
  return names;
}
SensitivityMeasure parse_sensitivity_measure(const std::string& name) {
  return parse_named(kMeasures, name, "--target-measure");
}
std::string to_string(SensitivityMeasure m) { return name_of(kMeasures, m); }

std::vector<int> parse_bit_candidates(const std::string& list, const std::string& option) {
  std::vector<int> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    int b = 0;
    size_t used = 0;
    try {
      b = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    LCQ_CHECK(used > 0 && used == item.size() && b >= 1 && b <= 8,
              "{}: '{}' is not a bit width from 1 to 8 (expected a list such as 2,3,4)", option, item);
    out.push_back(b);
  }
  LCQ_CHECK(!out.empty(), "{}: no bit widths given (expected a list such as 2,3,4)", option);
  for (size_t i = 1; i < out.size(); ++i)
    LCQ_CHECK(out[i] > out[i - 1], "{}: widths must be distinct and ascending, got '{}'", option, list);
  return out;
}

namespace {

// The embedding entry: the model's KL with the token embedding and head (tied or not) quantized
// at each width as quantize_embedding stores them (its grids weighted by the full-precision
// head inputs' column energies; the run uses those after its quantized blocks), every block
// at full precision. `tokens` are the samples `inputs` [0] embeds.
LayerCost embedding_cost(model::Model& m, const QuantizeOptions& o, const AllocationOptions& a,
                         const torch::Tensor& tokens, const std::vector<torch::Tensor>& inputs,
                         const torch::Tensor& logp, Progress& bar) {
  const bool tied = m.config.tie_embeddings;
  const model::BlockContext ctx = detail::exact_context(m);
  const torch::Tensor h = m.final_norm(inputs.back()).to(torch::kFloat64).reshape({-1, m.config.dim});
  const torch::Tensor gram = h.t().mm(h) / double(h.size(0));
  const torch::Tensor embd = m.tok_embd, head = m.output.weight;
  // The model gets its own embedding and head back however the trials end.
  struct Restore {
    model::Model& m;
    torch::Tensor embd, head;
    ~Restore() {
      m.tok_embd = embd;
      m.output.weight = head;
    }
  } restore{m, embd, head};
  LayerCost cost;
  cost.name = kEmbeddingEntry;
  cost.widths = a.embedding_candidates;
  for (int bits : a.embedding_candidates) {
    EmbeddingOptions eo = o.embedding;
    eo.bits = bits;
    uint64_t bytes = 0;
    auto quantized = [&](const torch::Tensor& w, const std::string& name) {
      const CodebookLayer l = quantize_embedding(w, options_for(eo, name, tied), gram);
      bytes += io::codebook_file_bytes(name, l) + io::codebook_all_keys_bytes(name);
      return detail::dequantized(l, w);
    };
    m.tok_embd = quantized(embd, "token_embd");
    m.output.weight = tied ? m.tok_embd : quantized(head, "output");
    torch::Tensor h = m.embed(tokens);
    for (const model::Block& b : m.blocks) h = detail::run_block(ctx, b, h);
    cost.error.push_back(mean_kl(m, logp, h));
    cost.bytes.push_back(bytes);
    bar.add(1, kEmbeddingEntry);
  }
  return cost;
}

}  // namespace

std::vector<LayerCost> measure_layer_costs(model::Model& m, const torch::Tensor& calib, const QuantizeOptions& o,
                                           const AllocationOptions& a) {
  LCQ_CHECK(calib.defined() && calib.dim() == 2 && calib.size(0) >= 1,
            "a size target needs calibration data (--calib FILE) to measure each layer's sensitivity");
  LCQ_CHECK(a.samples >= 1, "--target-samples must be >= 1, got {}", a.samples);
  LCQ_CHECK(a.embedding_candidates.empty() || a.measure != SensitivityMeasure::kBlock,
            "the embedding's width is allocated by its KL: --target-measure model or scaled, not block (or give "
            "--embed-bits)");
  torch::NoGradGuard ng;
  const int64_t n = std::min<int64_t>(a.samples, calib.size(0));
  m.ensure_positions(calib.size(1));
  const model::BlockContext ctx = detail::exact_context(m);
  const size_t blocks = m.blocks.size();
  // Every block's full-precision input, and the model's log-probabilities.
  const torch::Tensor tokens = calib.slice(0, 0, n);
  std::vector<torch::Tensor> inputs = {m.embed(tokens)};
  for (size_t l = 0; l < blocks; ++l) inputs.push_back(detail::run_block(ctx, m.blocks[l], inputs.back()));
  const bool model_kl = a.measure == SensitivityMeasure::kModel, scaled = a.measure == SensitivityMeasure::kScaled;
  torch::Tensor logp;  // the full-precision model's log-probabilities [n, L, vocab]
  if (model_kl || scaled || !a.embedding_candidates.empty()) {
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < n; ++i)
      rows.push_back(torch::log_softmax(m.head(inputs.back().slice(0, i, i + 1)), -1));
    logp = torch::cat(rows, 0);
  }
  // The model's KL when `trial` replaces block l (the later blocks full precision).
  auto model_kl_of = [&](const model::Block& trial, size_t l, torch::Tensor* block_out) {
    torch::Tensor h = detail::run_block(ctx, trial, inputs[l]);
    if (block_out) *block_out = h;
    for (size_t k = l + 1; k < blocks; ++k) h = detail::run_block(ctx, m.blocks[k], h);
    return mean_kl(m, logp, h);
  };
  // The grid the run starts from at `bits` (with --init wmse weighted by the energies of the
  // block's inputs on these samples, as the run weighs it by those on all of its own).
  auto rank_one = [&](const torch::Tensor& W, int bits, const torch::Tensor& energy) {
    LcqOptions start = o.lcq;
    start.bits = bits;
    start.rank = 1;
    start.init = start_grid_kind(o);
    const CodebookLayer q = LcqLinear(W, start, at::detail::createCPUGenerator(0), energy).finalize();
    return detail::dequantized(q, W);
  };

  std::vector<LayerCost> out;
  const int64_t per_block = blocks == 0 ? 0 : int64_t(m.blocks[0].linears().size());
  Progress bar("sensitivity",
               int64_t(blocks) * per_block * int64_t(a.candidates.size()) + int64_t(a.embedding_candidates.size()),
               a.progress);
  for (size_t l = 0; l < blocks; ++l) {
    const model::Block& fp = m.blocks[l];
    const torch::Tensor target = inputs[l + 1].to(torch::kFloat32);
    std::map<std::string, torch::Tensor> energies;  // by linear name; empty unless the start grid is wmse
    if (start_grid_kind(o) == LcqInit::kWmse) energies = detail::input_energies(ctx, fp, inputs[l]);
    auto energy_of = [&](const std::string& name) {
      const auto it = energies.find(name);
      return it == energies.end() ? torch::Tensor() : it->second;
    };
    double gain = 1;
    if (scaled) {  // one probe: every linear of the block at the narrowest width
      model::Block probe = fp;
      for (auto& [name, lin] : probe.linears()) lin->weight = rank_one(lin->weight, a.candidates.front(), energy_of(name));
      torch::Tensor h;
      const double kl = model_kl_of(probe, l, &h);
      gain = kl / std::max(relative_error(h.to(torch::kFloat32), target), 1e-30);
    }
    for (const auto& [name, lin] : fp.linears()) {
      LayerCost cost;
      cost.name = model::layer_name(l, name);
      cost.widths = a.candidates;
      for (int bits : a.candidates) {
        model::Block trial = fp;  // shares fp's tensors; one weight is replaced
        detail::linear_named(trial, name).weight = rank_one(lin->weight, bits, energy_of(name));
        if (model_kl)
          cost.error.push_back(model_kl_of(trial, l, nullptr));
        else
          cost.error.push_back(gain * relative_error(detail::run_block(ctx, trial, inputs[l]).to(torch::kFloat32), target));
        const CodebookLayer stored = CodebookLayer::shaped(lin->weight.size(0), lin->weight.size(1), bits,
                                                           o.lcq.group, o.lcq.rank, o.lcq.dq_bits, o.lcq.dq_group);
        cost.bytes.push_back(io::codebook_file_bytes(cost.name, stored) + io::codebook_key_bytes(cost.name, "bits"));
        bar.add(1, cost.name);
      }
      out.push_back(std::move(cost));
    }
  }
  if (!a.embedding_candidates.empty()) out.push_back(embedding_cost(m, o, a, tokens, inputs, logp, bar));
  bar.finish();
  return out;
}

std::map<std::string, int> allocate_bits(const std::vector<LayerCost>& layers, uint64_t budget) {
  std::vector<size_t> choice(layers.size(), 0);  // index into each layer's widths
  uint64_t used = 0;
  for (const LayerCost& l : layers) {
    LCQ_CHECK(!l.widths.empty() && l.error.size() == l.widths.size() && l.bytes.size() == l.widths.size(),
              "internal: layer {} has {} errors and {} sizes for {} widths", l.name, l.error.size(), l.bytes.size(),
              l.widths.size());
    used += l.bytes[0];
  }
  LCQ_CHECK(used <= budget, "the allocated layers need {} bytes at their narrowest widths, {} more than the target "
            "leaves them", used, used - budget);
  for (;;) {
    // The step (a layer to a wider width) with the largest error reduction per byte that fits.
    double best = 0;
    size_t best_layer = layers.size(), best_to = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      const LayerCost& l = layers[i];
      for (size_t k = choice[i] + 1; k < l.widths.size(); ++k) {
        if (l.bytes[k] <= l.bytes[choice[i]]) continue;
        const uint64_t more = l.bytes[k] - l.bytes[choice[i]];
        const double gain = l.error[choice[i]] - l.error[k];
        if (used + more > budget || !(gain > 0)) continue;
        const double ratio = gain / double(more);
        if (ratio > best) {
          best = ratio;
          best_layer = i;
          best_to = k;
        }
      }
    }
    if (best_layer == layers.size()) break;
    used += layers[best_layer].bytes[best_to] - layers[best_layer].bytes[choice[best_layer]];
    choice[best_layer] = best_to;
  }
  std::map<std::string, int> bits;
  for (size_t i = 0; i < layers.size(); ++i) bits[layers[i].name] = layers[i].widths[choice[i]];
  return bits;
}

namespace {

uint64_t chosen_bytes(const LayerCost& l, int bits) {
  const auto pos = std::find(l.widths.begin(), l.widths.end(), bits);
  LCQ_CHECK(pos != l.widths.end(), "layer {} has {} bits, not one of its widths", l.name, bits);
  return l.bytes[size_t(pos - l.widths.begin())];
}

}  // namespace

Allocation plan_allocation(model::Model& m, const torch::Tensor& calib, const QuantizeOptions& o,
                           const tokenizer::Vocab& vocab, const nlohmann::json& metadata, const AllocationOptions& a) {
  QuantizeOptions prepared = o;  // the rank and start the method really uses (rtn: rank 1, min-max grid)
  prepare(prepared, calib.defined());
  const bool embedding = !a.embedding_candidates.empty();
  Allocation plan;
  plan.target_bytes = a.target_bytes;
  plan.measure = a.measure;
  plan.layers = measure_layer_costs(m, calib, prepared, a);
  for (const LayerCost& l : plan.layers) plan.bits[l.name] = l.widths.front();
  // Everything but the allocated layers, with this allocation's metadata (whose length does
  // not depend on the choice: every width is one digit).
  nlohmann::json meta = metadata;
  meta["lcq.allocation"] = to_json(plan).dump();
  if (embedding) prepared.embedding.bits = a.embedding_candidates.front();  // stored as a codebook, not fp16
  plan.other_bytes = quantized_file_other_bytes(m, vocab, prepared, meta, /*count_embedding=*/!embedding);
  uint64_t narrowest = plan.other_bytes;
  for (const LayerCost& l : plan.layers) narrowest += l.bytes.front();
  LCQ_CHECK(narrowest <= a.target_bytes,
            "a target of {} bytes ({:.3f} MiB) is too small: with every block linear at {} bits{} the file takes {} "
            "bytes ({:.3f} MiB), {} of them besides the allocated layers (header, vocabulary, norms{}){}",
            a.target_bytes, double(a.target_bytes) / 1048576.0, a.candidates.front(),
            embedding ? fmt::format(" and the embedding at {}", a.embedding_candidates.front()) : std::string(),
            narrowest, double(narrowest) / 1048576.0, plan.other_bytes, embedding ? "" : ", the embedding",
            !embedding && o.embedding.bits == 0 ? "; --embed-bits 4 stores the embedding in 4 bits" : "");
  plan.bits = allocate_bits(plan.layers, a.target_bytes - plan.other_bytes);
  for (const LayerCost& l : plan.layers) plan.layer_bytes += chosen_bytes(l, plan.bits.at(l.name));
  return plan;
}

void apply(const Allocation& a, QuantizeOptions& o) {
  o.layer_bits = a.bits;
  const auto embedding = o.layer_bits.find(kEmbeddingEntry);
  if (embedding == o.layer_bits.end()) return;
  o.embedding.bits = embedding->second;
  o.layer_bits.erase(embedding);
}

std::map<std::string, int> linears_at_bits(const Allocation& a) {
  std::map<std::string, int> at;
  for (const auto& [name, bits] : a.bits)
    if (name != kEmbeddingEntry) at[std::to_string(bits)] += 1;
  return at;
}

int embedding_bits(const Allocation& a) {
  const auto it = a.bits.find(kEmbeddingEntry);
  return it == a.bits.end() ? 0 : it->second;
}

nlohmann::json to_json(const Allocation& a) {
  nlohmann::json layers = nlohmann::json::array();
  for (const LayerCost& l : a.layers) {
    std::vector<double> err;
    for (double e : l.error) err.push_back(rounded(e));
    layers.push_back(
        {{"name", l.name}, {"bits", a.bits.at(l.name)}, {"widths", l.widths}, {"error", err}, {"bytes", l.bytes}});
  }
  return {{"target_bytes", a.target_bytes},
          {"other_bytes", a.other_bytes},
          {"measure", to_string(a.measure)},
          {"layers", layers}};
}

Allocation allocation_from_json(const nlohmann::json& j) {
  Allocation a;
  try {
    a.target_bytes = j.at("target_bytes").get<uint64_t>();
    a.other_bytes = j.at("other_bytes").get<uint64_t>();
    a.measure = parse_sensitivity_measure(j.at("measure").get<std::string>());
    for (const auto& l : j.at("layers")) {
      LayerCost c;
      c.name = l.at("name").get<std::string>();
      c.widths = l.at("widths").get<std::vector<int>>();
      c.error = l.at("error").get<std::vector<double>>();
      c.bytes = l.at("bytes").get<std::vector<uint64_t>>();
      LCQ_CHECK(!c.widths.empty() && c.error.size() == c.widths.size() && c.bytes.size() == c.widths.size(),
                "layer {} has {} errors and {} sizes for {} widths", c.name, c.error.size(), c.bytes.size(),
                c.widths.size());
      const int bits = l.at("bits").get<int>();
      a.layer_bytes += chosen_bytes(c, bits);
      a.bits[c.name] = bits;
      a.layers.push_back(std::move(c));
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}", e.what());
  }
  return a;
}

std::string allocation_svg(const Allocation& a, const std::string& title) {
  // Rows: the linear kinds in block order of first appearance; columns: blocks.
  std::vector<std::string> kinds;
  int blocks = 0;
  int lo = 8, hi = 1;
  std::string embedding;
  for (const LayerCost& l : a.layers) {
    if (l.name == kEmbeddingEntry) {
      embedding = fmt::format("; embedding and head {} bits", a.bits.at(l.name));
      continue;
    }
    lo = std::min(lo, l.widths.front());
    hi = std::max(hi, l.widths.back());
    const size_t dot = l.name.find('.', 4);
    const int block = std::stoi(l.name.substr(4, dot - 4));
    const std::string kind = l.name.substr(dot + 1);
    blocks = std::max(blocks, block + 1);
    if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) kinds.push_back(kind);
  }
  const int cell = 22, left = 96, top = 46;
  const int width = left + blocks * cell + 20, height = top + int(kinds.size()) * cell + 64;
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"18\" font-size=\"13\">{}</text>\n",
      width, height, left, title);
  for (size_t r = 0; r < kinds.size(); ++r)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 6, top + int(r) * cell + 15,
                     kinds[r]);
  for (int b = 0; b < blocks; ++b)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + b * cell + cell / 2,
                     top - 6, b);
  for (const LayerCost& l : a.layers) {
    if (l.name == kEmbeddingEntry) continue;
    const size_t dot = l.name.find('.', 4);
    const int b = std::stoi(l.name.substr(4, dot - 4));
    const int r = int(std::find(kinds.begin(), kinds.end(), l.name.substr(dot + 1)) - kinds.begin());
    const int bits = a.bits.at(l.name);
    const double t = hi > lo ? double(bits - lo) / double(hi - lo) : 1.0;  // 0 = narrowest
    const int shade = int(std::lround(235 - 185 * t));
    s += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"rgb({},{},255)\" stroke=\"white\"><title>{}: {} "
        "bits</title></rect>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{}\">{}</text>\n",
        left + b * cell, top + r * cell, cell, cell, shade, shade, l.name, bits, left + b * cell + cell / 2,
        top + r * cell + 15, t > 0.5 ? "white" : "black", bits);
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\">block</text>\n", left, top + int(kinds.size()) * cell + 18);
  s += fmt::format(
      "<text x=\"{}\" y=\"{}\">bits per layer{}; file target {} bytes, allocated layers {} bytes, the rest {} "
      "bytes</text>\n</svg>\n",
      left, top + int(kinds.size()) * cell + 40, embedding, a.target_bytes, a.layer_bytes, a.other_bytes);
  return s;
}

}  // namespace lcq::quant
