// The lean decode path: one token at a time through a LLaMA-family model without framework
// operations. Every buffer is allocated once; a token runs inside one OpenMP parallel region
// in which the threads split every product by the matrices' work units (kernels::Matrix) and
// the attention by heads, meeting at a barrier between dependent steps. No libtorch: the torch
// model runs it through lcq/model/decoder.h (tested against Model::forward there), `lcq-run`
// on weights read straight from the file (run::load_weights).
#pragma once

#include "lcq/run/weights.h"

#include <vector>

namespace lcq::run {

class Decoder {
 public:
  // `cache` (its memory and length) must outlive the decoder.
  Decoder(Weights w, CacheView cache);

  // Runs `token` at position *cache.length, appends its keys and values to the cache and
  // advances it. Returns the logits [vocab], valid until the next call.
  const float* step(int token);
  // Runs `n` tokens (a prompt) at positions *cache.length on, like n calls of step() but a
  // chunk of tokens per product (kernels::Matrix::gemm: each thread's share of a matrix stays
  // in its cache across the chunk's tokens); returns the last token's logits.
  const float* prefill(const int* tokens, int64_t n);
  int64_t vocab() const { return w_.head->rows(); }
  const Weights& weights() const { return w_; }

 private:
  // Throws unless positions [pos, pos + n) fit the cache and the RoPE tables.
  void check_positions(int64_t pos, int64_t n) const;
  // The embedding row of `token` into x (throws for a token outside the vocabulary), rotated
  // when the residual stream is.
  void embed(int token, float* x);

  Weights w_;
  CacheView cache_;
  // Activations of the current token, shared by the threads (each writes only its rows).
  std::vector<float> x_, q_, k_, v_, att_, proj_, gate_, up_, logits_;
  // An embedding row before its rotation, and the stream un-rotated for the final norm.
  std::vector<float> unrotated_;
  // Per thread: the normalized input of the current product (each thread computes it for
  // itself rather than waiting for one to) and attention scores.
  std::vector<std::vector<float>> norm_, scores_;
  // prefill(): the chunk's rows of the same activations.
  std::vector<float> cx_, ch_, cq_, ck_, cv_, catt_, cproj_, cgate_, cup_;
};

}  // namespace lcq::run
