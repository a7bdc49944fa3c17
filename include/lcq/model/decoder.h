// The lean decode path: one token at a time through a LLaMA-family model without framework
// operations. Every buffer is allocated once; a token runs inside one OpenMP parallel region
// in which the threads split every product by the matrices' work units (kernels::Matrix) and
// the attention by heads, meeting at a barrier between dependent steps. Model::forward is the
// reference it is tested against (tests/test_decoder.cpp); it shares the model's weights and
// KV cache, so a prompt prefilled by Model::forward continues here.
#pragma once

#include "lcq/kernels/matrix.h"
#include "lcq/model/model.h"

#include <memory>
#include <vector>

namespace lcq::model {

class Decoder {
 public:
  // Whether the lean path runs `m`: a LLaMA-family model (RMSNorm, RoPE, SwiGLU) with an f32
  // runtime on the CPU and no activation quantization. Otherwise use Model::forward.
  static bool supports(const Model& m);

  // `m` and `cache` (batch 1, the model's tensor options) must outlive the decoder.
  Decoder(const Model& m, KVCache& cache);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Runs `token` at position cache.length(), appends its keys and values to the cache and
  // advances it. Returns the logits [vocab], valid until the next call.
  const float* step(int token);

 private:
  struct Layer;
  const Model& m_;
  KVCache& cache_;
  std::vector<Layer> layers_;
  std::shared_ptr<const kernels::Matrix> embedding_, head_;
  const float* out_norm_ = nullptr;
  // Activations of the current token, shared by the threads (each writes only its rows).
  std::vector<float> x_, q_, k_, v_, att_, proj_, gate_, up_, logits_;
  // Per thread: the normalized input of the current product (each thread computes it for
  // itself rather than waiting for one to) and attention scores.
  std::vector<std::vector<float>> norm_, scores_;
};

}  // namespace lcq::model
