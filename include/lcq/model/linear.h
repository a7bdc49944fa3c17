// A linear layer y = x W^T + b, optionally with activation quantization of its input.
// Quantizers substitute `weight` with fake-quantized tensors during training.
#pragma once

#include "lcq/kernels/matrix.h"

#include <torch/types.h>

#include <functional>
#include <memory>

namespace lcq::model {

// Fake quantization of activations (weight-activation schemes, e.g. W8A8). Applied to the
// input of a linear layer (and, for k/v, optionally to its output).
struct ActQuant {
  int bits = 0;  // 0: off
  enum class Scheme { PerTensorStatic, PerTokenDynamic } scheme = Scheme::PerTokenDynamic;
  float static_scale = 0.f;  // per-tensor static (symmetric) scale, calibrated
  torch::Tensor apply(const torch::Tensor& x) const;
};

// From this many tokens on, a product is a prompt's (prompts, perplexity windows): a packed
// layer multiplies its dequantized rows through BLAS in its panel_dtype, and attention runs in
// RuntimeOptions::prompt_dtype. Below it (decoding, short prompts) the packed kernels run and
// attention stays f32.
constexpr int64_t kPromptMinTokens = 16;

// The weight is either a dense tensor (trainable; what quantizers substitute) or an LCQ
// codebook layer packed for one kernel family (kernels::Matrix; inference only, CPU).
struct Linear {
  torch::Tensor weight;  // [out, in]; undefined when `packed` holds the layer
  std::shared_ptr<const kernels::Matrix> packed;
  // Products of `packed` with 16 tokens or more (prompts) multiply its dequantized rows through
  // a GEMM in this type: f32 (exact; oneDNN's sgemm) or bf16 (oneDNN's bf16 GEMM through
  // libtorch; RuntimeOptions::prompt_dtype).
  torch::ScalarType panel_dtype = torch::kFloat32;
  torch::Tensor bias;    // [out] or undefined
  std::shared_ptr<const ActQuant> input_quant;   // quantize x before the product
  std::shared_ptr<const ActQuant> output_quant;  // quantize y (LRQ's KV8 on k/v projections)

  bool defined() const { return weight.defined() || packed != nullptr; }
  int64_t in_features() const;
  int64_t out_features() const;
  torch::Tensor forward(const torch::Tensor& x) const;
  // The effective weight as a dense tensor (dequantized when packed).
  torch::Tensor dense_weight() const;
  // Bytes the weight occupies in memory (packed or dense).
  size_t weight_bytes() const;
};

// While alive, sees the input of every Linear::forward on this thread (before activation
// quantization): how quantizers collect per-layer inputs (errors, Hessians, activation
// statistics) without hooks in the model code. Not nestable.
class LinearInputTap {
 public:
  using Fn = std::function<void(const Linear&, const torch::Tensor&)>;
  explicit LinearInputTap(Fn fn);
  ~LinearInputTap();
  LinearInputTap(const LinearInputTap&) = delete;
  LinearInputTap& operator=(const LinearInputTap&) = delete;
};

}  // namespace lcq::model
