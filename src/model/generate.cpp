#include "lcq/model/generate.h"

#include "lcq/core/error.h"
#include "lcq/model/decoder.h"

#include <torch/torch.h>

#include <chrono>

namespace lcq::model {

namespace {

int sample(Sampler& s, const torch::Tensor& logits) {
  const torch::Tensor l = logits.to(torch::kCPU, torch::kFloat32).contiguous();
  return s.sample(l.data_ptr<float>(), l.numel());
}

}  // namespace

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
  int next = sample(sampler, logits[0][-1]);
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
      next = sampler.sample(l, model.output.out_features());
    } else {
      auto step = torch::tensor({int64_t(next)}, torch::kInt64).unsqueeze(0);
      logits = model.forward(step, &cache);
      next = sample(sampler, logits[0][-1]);
    }
  }
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace lcq::model
