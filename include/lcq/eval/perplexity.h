// Perplexity of a model on a token stream, under the two protocols of METHODS.md section 4.
//  - gptq (what the quantization papers report): non-overlapping windows of `seqlen`
//    tokens, the remainder dropped, every token but the first of each window scored.
//  - llamacpp: windows of 512 (`seqlen`) starting with BOS, only the second half scored;
//    optionally the KL divergence of the model's next-token distribution from a reference
//    model's on the same positions.
#pragma once

#include "lcq/model/model.h"

#include <optional>
#include <string>
#include <vector>

namespace lcq::eval {

struct PerplexityOptions {
  std::string protocol = "gptq";  // gptq | llamacpp
  int64_t seqlen = 0;             // 0: 2048 (gptq) or 512 (llamacpp), capped by the context
  int64_t batch = 1;              // windows per forward pass
  int64_t max_windows = 0;        // 0: all
  int bos_id = -1;                // llamacpp: the first token of every window becomes BOS
  const model::Model* kl_reference = nullptr;  // llamacpp: KL divergence against this model
  bool progress = true;
};

struct PerplexityResult {
  std::string protocol;
  double ppl = 0, mean_nll = 0;
  int64_t seqlen = 0, windows = 0, scored_tokens = 0, total_tokens = 0;
  double seconds = 0, tokens_per_second = 0;  // forward throughput over all window tokens
  std::optional<double> kl_mean;              // mean KL(reference || model), nats
  std::optional<double> top1_agreement;       // fraction of positions with the same argmax
  // Mean negative log-likelihood of each window's scored tokens, in window order: two models
  // evaluated on the same text can be compared window by window (a paired difference and its
  // standard error), which separates a real gap from the spread between windows.
  std::vector<double> window_nll;
};

// Throws lcq::Error when the token stream is shorter than one window.
PerplexityResult perplexity(const model::Model& model, const std::vector<int>& tokens, const PerplexityOptions& opts);

}  // namespace lcq::eval
