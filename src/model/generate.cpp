#include "lcq/model/generate.h"

#include "lcq/core/error.h"
#include "lcq/model/decoder.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <numeric>

namespace lcq::model {

int Sampler::sample(const torch::Tensor& logits_in) {
  auto logits = logits_in.to(torch::kCPU, torch::kFloat32).contiguous();
  if (opts_.temperature <= 0.0f) return int(logits.argmax().item<int64_t>());

  const float* l = logits.data_ptr<float>();
  const int n = int(logits.numel());
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const int k = opts_.top_k > 0 ? std::min(opts_.top_k, n) : n;
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return l[a] > l[b]; });
  order.resize(size_t(k));

  // Softmax over the kept tokens at the given temperature, then the nucleus cut.
  std::vector<double> p(order.size());
  const double mx = l[order[0]];
  double sum = 0;
  for (size_t i = 0; i < order.size(); ++i) sum += p[i] = std::exp((l[order[i]] - mx) / opts_.temperature);
  size_t keep = order.size();
  if (opts_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += p[i] / sum;
      if (cum >= opts_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  std::discrete_distribution<int> dist(p.begin(), p.begin() + long(keep));
  return order[size_t(dist(rng_))];
}

GenerateResult generate(const Model& model, const std::vector<int>& prompt, const GenerateOptions& opts,
                        const std::function<void(int)>& on_token) {
  LCQ_CHECK(!prompt.empty(), "generate: the prompt is empty (no tokens)");
  const int64_t total = int64_t(prompt.size()) + opts.max_new_tokens;
  const int64_t limit = model.config.arch == Arch::OPT ? model.pos_embd.size(0) - 2 : model.rope.cos.size(0);
  LCQ_CHECK(total <= limit, "generate: prompt ({} tokens) plus {} new tokens exceed the model's {} positions",
            prompt.size(), opts.max_new_tokens, limit);
  torch::NoGradGuard no_grad;
  GenerateResult res;
  Sampler sampler(opts.sampler);
  KVCache cache = model.make_cache(1, total);
  using clock = std::chrono::steady_clock;

  auto t0 = clock::now();
  auto ids = torch::tensor(std::vector<int64_t>(prompt.begin(), prompt.end()), torch::kInt64).unsqueeze(0);
  auto logits = model.forward(ids, &cache, /*last_only=*/true);
  int next = sampler.sample(logits[0][-1]);
  auto t1 = clock::now();
  res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  // Decoding runs on the lean path where it supports the model (lcq/model/decoder.h).
  std::unique_ptr<Decoder> decoder = Decoder::supports(model) ? std::make_unique<Decoder>(model, cache) : nullptr;
  for (int i = 0; i < opts.max_new_tokens; ++i) {
    res.tokens.push_back(next);
    if (on_token) on_token(next);
    if (next == opts.stop_token || i + 1 == opts.max_new_tokens) break;
    if (decoder) {
      const float* l = decoder->step(next);
      next = sampler.sample(torch::from_blob(const_cast<float*>(l), {model.output.out_features()}, torch::kFloat32));
    } else {
      auto step = torch::tensor({int64_t(next)}, torch::kInt64).unsqueeze(0);
      logits = model.forward(step, &cache);
      next = sampler.sample(logits[0][-1]);
    }
  }
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace lcq::model
