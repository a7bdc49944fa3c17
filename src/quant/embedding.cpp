#include "lcq/quant/embedding.h"

#include "lcq/core/error.h"
#include "lcq/core/named.h"
#include "lcq/quant/gptq.h"
#include "lcq/quant/lcq.h"
#include "lcq/quant/uniform.h"

#include <torch/torch.h>

namespace lcq::quant {

namespace {
constexpr Named<EmbeddingRounding> kRoundings[] = {{EmbeddingRounding::kNearest, "nearest"},
                                                   {EmbeddingRounding::kGptq, "gptq"}};
}  // namespace

const std::vector<std::string>& embedding_rounding_names() {
  static const auto v = names_of(kRoundings);
  return v;
}

EmbeddingRounding parse_embedding_rounding(const std::string& name) {
  return parse_named(kRoundings, name, "--embed-rounding");
}

std::string to_string(EmbeddingRounding r) { return name_of(kRoundings, r); }

void validate(const EmbeddingOptions& o) {
  LCQ_CHECK(o.bits == 0 || (o.bits >= 2 && o.bits <= 8), "--embed-bits must be 0 (fp16) or 2..8, got {}", o.bits);
  LCQ_CHECK(o.group >= 8, "--embed-group must be >= 8, got {}", o.group);
  LCQ_CHECK(o.dq_bits >= 0 && o.dq_bits <= 8 && o.dq_group >= 1, "invalid double quantization {} bits / {} groups",
            o.dq_bits, o.dq_group);
}

EmbeddingOptions options_for(const EmbeddingOptions& o, const std::string& name, bool tied) {
  EmbeddingOptions own = o;
  if (name == "token_embd" && !tied) own.rounding = EmbeddingRounding::kNearest;
  return own;
}

CodebookLayer quantize_embedding(const torch::Tensor& W, const EmbeddingOptions& o, const torch::Tensor& head_gram) {
  validate(o);
  LCQ_CHECK(o.bits > 0, "quantize_embedding: bits 0 keeps the matrix in fp16");
  torch::NoGradGuard ng;
  const torch::Tensor w = W.to(torch::kFloat32).contiguous();
  const int64_t rows = w.size(0);
  LCQ_CHECK(torch::isfinite(w).all().item<bool>(), "the embedding contains NaN or infinite values");
  torch::Tensor importance;
  if (head_gram.defined()) {
    LCQ_CHECK(head_gram.dim() == 2 && head_gram.size(0) == w.size(1) && head_gram.size(1) == w.size(1),
              "internal: the head's gram must be [{0}, {0}]", w.size(1));
    // A column never active would get weight 0 and any grid; keep a floor of 1e-3 of the mean.
    importance = head_gram.diagonal().to(torch::kFloat32);
    importance = importance.clamp_min(1e-3 * importance.mean().item<double>() + 1e-30);
  }
  // The grid row block by row block: the search's temporaries stay a few times one block.
  const int64_t block = 4096;
  std::vector<torch::Tensor> scales, zeros, codes;
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const GroupedWeight gw = GroupedWeight::make(w.slice(0, r0, std::min(rows, r0 + block)), o.group);
    UniformGrid g = weighted_mse_grid(gw, o.bits, importance);
    scales.push_back(g.scale);
    zeros.push_back(g.zero);
    codes.push_back(gw.ungroup(quantize_codes(gw, g, o.bits)));
  }
  UniformGrid grid{torch::cat(scales, 0), torch::cat(zeros, 0)};
  CodebookLayer l = uniform_layer(torch::cat(codes, 0), grid, o.bits, o.group, o.dq_bits, o.dq_group);
  if (o.rounding == EmbeddingRounding::kGptq && head_gram.defined()) {
    GptqOptions g;
    g.act_order = true;
    l = gptq_round(w, head_gram, std::move(l), g);
  } else {
    // The stored (double-quantized) grid differs a little from the searched one: every weight
    // goes to its nearest entry of what is stored.
    assign_nearest(l, w.data_ptr<float>());
  }
  l.validate("embedding");
  return l;
}

}  // namespace lcq::quant
