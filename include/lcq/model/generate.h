// Text generation: prefill the prompt into a KV cache, then decode one token at a time.
#pragma once

#include "lcq/model/model.h"

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace lcq::model {

struct SamplerOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: all tokens
  float top_p = 1.0f;        // nucleus mass (1: off)
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(SamplerOptions o) : opts_(o), rng_(o.seed) {}
  // logits: [vocab] float32 on any device.
  int sample(const torch::Tensor& logits);

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

// on_token is called with every generated token as soon as it exists (for streaming).
GenerateResult generate(const Model& model, const std::vector<int>& prompt, const GenerateOptions& opts,
                        const std::function<void(int)>& on_token = nullptr);

}  // namespace lcq::model
