// Sampling and generation on the lean runtime (no libtorch). The torch model's generate()
// (lcq/model/generate.h) shares the sampler and the options.
#pragma once

#include "lcq/run/decoder.h"

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace lcq::run {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: all tokens
  float top_p = 1.0f;        // nucleus mass (1: off)
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplerOptions o) : opts_(o), rng_(o.seed) {}
  int sample(const float* logits, int64_t n);

 private:
  SamplerOptions opts_;
  std::mt19937_64 rng_;
};

struct GenerateOptions {
  int max_new_tokens = 128;
  SamplerOptions sampler;
  int stop_token = -1;  // usually EOS; -1: never stop early
};

struct GenerateResult {
  std::vector<int> tokens;  // generated tokens (without the prompt)
  double prefill_seconds = 0, decode_seconds = 0;
};

// The prompt (Decoder::prefill), then new tokens one at a time through `decoder`, from its
// cache's current length.
// on_token is called with every generated token as soon as it exists (for streaming).
GenerateResult generate(Decoder& decoder, const std::vector<int>& prompt, const GenerateOptions& opts,
                        const std::function<void(int)>& on_token = nullptr);

}  // namespace lcq::run
