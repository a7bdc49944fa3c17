// LCQ: a learned low-rank codebook per linear layer (METHODS.md section 1).
//
// Weight W [m, n] in groups of `group` columns (G = m * ceil(n / group) groups). Group k
// has K = 2^bits codebook values C[k] = sum_r S[r, k] V[r, :] - B[k], and each weight is
// replaced by its nearest value. Training sees S = S~ * s0 and B = B~ * s0 with s0 the
// initial per-group scale (reparameterization), so S~ and B~ are order one.
#pragma once

#include "lcq/kernels/codebook_layer.h"
#include "lcq/quant/reconstruct.h"
#include "lcq/quant/uniform.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace lcq::quant {

// How dL/dC is formed from dL/dW_hat. kGather: W_hat = C[k, q] with the assignment q held
// fixed within a step, so each entry collects the gradients of the weights assigned to it
// (the project's reading of the paper). Kept switchable so alternatives can be compared.
enum class CodebookGradient { kGather };

struct LcqOptions {
  int bits = 2;
  int group = 128;
  int rank = 2;
  // Rank-one start: rtn (min-max) | mse (clipping search) | gptq | awq (that method's
  // result on the block, see lcq/quant/quantize.h).
  std::string init = "mse";
  // With --init gptq|awq: keep = train the codebook with the start's codes held fixed (and
  // store them); nearest = re-assign every weight to its nearest entry at each step, as
  // plain LCQ does. Measured on stories260K W3: nearest loses GPTQ's error-feedback codes
  // within a few steps and ends above GPTQ's loss, keep improves on it (docs/quantization.md).
  std::string start_codes = "keep";
  double v_init = 0.5;       // extra rows of V start uniform in [-v_init, v_init]
  int dq_bits = 8;           // double quantization of S and B; 0 = keep f32
  int dq_group = 64;
  CodebookGradient gradient = CodebookGradient::kGather;
};

// Checks the options; throws lcq::Error with a message for the user.
void validate(const LcqOptions& o);

class LcqLinear {
 public:
  // W: the full-precision weight [m, n]. `gen` seeds the extra rows of V.
  LcqLinear(const torch::Tensor& W, const LcqOptions& o, torch::Generator gen);
  // Starts from another method's rank-one layer `start` (V = [0..K-1], same bits and group):
  // its per-group S and B become the rank-one row, and W is the weight whose nearest-entry
  // rounding onto that grid gives start's codes (GPTQ: the weights its sweep rounded), so
  // step 0 reproduces `start` (up to ties). With o.start_codes == "keep" the codes stay
  // start's for good: training fits the codebook to them and finalize() stores them.
  LcqLinear(const torch::Tensor& W, const CodebookLayer& start, const LcqOptions& o, torch::Generator gen);

  torch::Tensor codebook() const;                       // [m, Gr, K], differentiable
  torch::Tensor assign(const torch::Tensor& C) const;   // nearest entries [m, Gr, g], no grad
  torch::Tensor weight() const;                         // W_hat [m, n], differentiable in S~, B~, V
  torch::Tensor weight(const torch::Tensor& q) const;   // ... with a given assignment [m, Gr, g]

  std::vector<torch::Tensor> scale_parameters() { return {s_tilde_, b_tilde_}; }  // S~, B~
  std::vector<torch::Tensor> codebook_parameters() { return {v_}; }               // V
  // {S~, B~} and {V}: the two learning rates (--lr-scale, --lr-codebook).
  std::vector<std::vector<torch::Tensor>> parameter_sets() { return {scale_parameters(), codebook_parameters()}; }

  // Merges the reparameterization, double-quantizes S and B (opts.dq_bits), rounds V to
  // fp16 and re-assigns every weight to the nearest entry of that final codebook.
  CodebookLayer finalize() const;

  const LcqOptions& options() const { return o_; }

 private:
  void init_parameters(const torch::Tensor& scale, const torch::Tensor& zero, torch::Generator gen);

  LcqOptions o_;
  GroupedWeight gw_;
  torch::Tensor s0_;        // [m, Gr] initial scales (fixed)
  torch::Tensor s_tilde_;   // [r, m, Gr]
  torch::Tensor b_tilde_;   // [m, Gr]
  torch::Tensor v_;         // [r, K]
  torch::Tensor fixed_q_;   // [m, Gr, g] codes held fixed (start_codes = keep), else undefined
};

// The LCQ block method (the engine trains {S~, B~} at lrs[0] and {V} at lrs[1]), each layer
// starting from the rtn or mse grid of o.init. One generator for the run: extra rows of V
// differ between layers but are the same for the same seed.
std::unique_ptr<BlockMethod> make_lcq_method(const LcqOptions& o, std::vector<double> lrs, bool train,
                                             torch::Generator gen);
// LCQ starting from another method's rank-one result (--init gptq|awq): per block, `start`
// runs first (and may fold scales into the block's norms, as AWQ does: those folded norms
// and biases are kept), then every layer's LcqLinear starts from start's layer and rounded
// weight, so training begins at start's solution.
std::unique_ptr<BlockMethod> make_lcq_method_from(std::unique_ptr<BlockMethod> start, const LcqOptions& o,
                                                  std::vector<double> lrs, bool train, torch::Generator gen);

// The start of LCQ --init-from FILE: per block, the rank-one layers a quantized model file
// holds (with their codes and dequantized weights, and the file's norms and biases), so LCQ
// can start from a method whose result needs its own calibration pass (FlexRound, LRQ,
// OmniQuant). Checks before any work that every linear of `model` is in the file as a
// rank-one layer of o.bits and o.group; holds the file's model dequantized meanwhile.
std::unique_ptr<BlockMethod> make_file_start(const std::string& path, const model::Model& model, const LcqOptions& o);

// Nearest-entry assignment against an exact CodebookLayer's own codebook (C++ loop, the
// file's semantics): fills layer.indices from the dense weight W [rows * cols].
void assign_nearest(CodebookLayer& layer, const float* W);

// Double quantization of one parameter row x[0..n) into blocks of `group` values with an
// fp16 scale and offset each (value = offset + scale * code).
void double_quantize(const float* x, int64_t n, int bits, int group, uint8_t* codes, uint16_t* scale,
                     uint16_t* offset);

}  // namespace lcq::quant
