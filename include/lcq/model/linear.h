// A linear layer y = x W^T + b, optionally with activation quantization of its input.
// Quantizers substitute `weight` with fake-quantized tensors during training.
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>

namespace lcq::kernels {
class PackedCodebookMatrix;
class LutCodebookMatrix;
}

namespace lcq::model {

// Fake quantization of activations (weight-activation schemes, e.g. W8A8). Applied to the
// input of a linear layer (and, for k/v, optionally to its output).
struct ActQuant {
  int bits = 0;  // 0: off
  enum class Scheme { PerTensorStatic, PerTokenDynamic } scheme = Scheme::PerTokenDynamic;
  float static_scale = 0.f;  // per-tensor static (symmetric) scale, calibrated
  torch::Tensor apply(const torch::Tensor& x) const;
};

// Which packed kernel runs a packed layer (docs/packed-format.md): kFloat (the default) is
// the float product of the dequantized weights; kInt8 the integer kernel (int8 activations
// per group, 7-bit codebook levels) wherever it applies; kAuto the integer kernel for single
// tokens (decoding, where the product streams the weights and the integer kernel is faster)
// and the float kernel for several tokens (prompts, perplexity); kLut the look-up-table
// kernel (int8 tables of activation sums, lcq/kernels/lut_codebook.h) for the 2- and 3-bit
// layers it holds, where the CPU runs it, and the float kernel elsewhere. The integer and LUT
// kernels are not the default because their rounding costs perplexity (BENCHMARKS.md, issue 5).
enum class PackedKernel { kAuto, kFloat, kInt8, kLut };
PackedKernel parse_packed_kernel(const std::string& name);  // "auto", "float", "int8", "lut"

// The weight is either a dense tensor (trainable; what quantizers substitute) or an LCQ
// codebook layer in its packed form, run by the packed kernels (inference only, CPU).
struct Linear {
  torch::Tensor weight;  // [out, in]; undefined when `packed` or `lut` holds the layer
  std::shared_ptr<const kernels::PackedCodebookMatrix> packed;
  std::shared_ptr<const kernels::LutCodebookMatrix> lut;  // instead of `packed` (PackedKernel::kLut)
  PackedKernel kernel = PackedKernel::kFloat;
  torch::Tensor bias;    // [out] or undefined
  std::shared_ptr<const ActQuant> input_quant;   // quantize x before the product
  std::shared_ptr<const ActQuant> output_quant;  // quantize y (LRQ's KV8 on k/v projections)

  bool defined() const { return weight.defined() || packed != nullptr || lut != nullptr; }
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
