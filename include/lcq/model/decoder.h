// The torch model on the lean decode path (lcq/run/decoder.h): the decoder runs on views of a
// loaded Model's weights and of its KV cache, so a prompt prefilled by Model::forward continues
// here. Model::forward is the reference it is tested against (tests/test_decoder.cpp).
#pragma once

#include "lcq/model/model.h"
#include "lcq/run/decoder.h"

namespace lcq::model {

// The weights of `m` as the lean runtime sees them: views (the matrices shared, norms and RoPE
// tables pointed into), so `m` must outlive them. Requires Decoder::supports(m).
run::Weights lean_weights(const Model& m);

class Decoder {
 public:
  // Whether the lean path runs `m`: a LLaMA-family model (RMSNorm, RoPE, SwiGLU) with an f32
  // runtime on the CPU and no activation quantization. Otherwise use Model::forward.
  static bool supports(const Model& m);

  // `m` and `cache` (batch 1, the model's tensor options) must outlive the decoder, and `m`'s
  // tensors stay where they are meanwhile (Model::ensure_positions() replaces the RoPE tables).
  Decoder(const Model& m, KVCache& cache);

  // Runs `token` at position cache.length(), appends its keys and values to the cache and
  // advances it. Returns the logits [vocab], valid until the next call.
  const float* step(int token) { return run_.step(token); }

 private:
  run::Decoder run_;
};

}  // namespace lcq::model
