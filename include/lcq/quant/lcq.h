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

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lcq::quant {

// How dL/dC is formed from dL/dW_hat (--codebook-grad). The forward value is W_hat = C[k, q]
// with q the nearest entry either way.
//  kGather ("gather"): q held fixed within a step, so each entry collects the gradients of
//    the weights assigned to it: the exact derivative of the loss for a fixed assignment.
//  kSte ("ste"): also a straight-through term for the rounding, LSQ's estimator carried over
//    to an arbitrary codebook. A weight w lying between the sorted entries C_lo <= w <= C_hi
//    has the fractional position t = lo + f, f = (w - C_lo) / (C_hi - C_lo); rounding t with
//    the identity as its derivative gives dW_hat/dtheta = dC_q/dtheta - dC(t)/dtheta, with
//    C(t) = (1 - f) C_lo + f C_hi the codebook interpolated at w. On a uniform grid
//    (C_j = S j - B) that is LSQ's dW_hat/dS = q - (w + B) / S and dW_hat/dB = 0. Weights
//    outside the codebook's range keep the gather term (they stay on the end entry).
// Only where the assignment is recomputed: with the start's codes kept (--init-codes keep)
// there is no rounding to pass through and both are the gather.
enum class CodebookGradient { kGather, kSte };
// The one list of the accepted names ("gather", "ste"), their parsing (throws lcq::Error
// naming the valid ones) and the name of a value.
const std::vector<std::string>& codebook_gradient_names();
CodebookGradient parse_codebook_gradient(const std::string& name);
std::string to_string(CodebookGradient g);

// LCQ's rank-one start (--init): a grid of the weights (rtn: min-max; mse: the clipping
// search; wmse: the clipping search with each input column's error weighted by its mean
// square on the calibration text, as llama.cpp's imatrix weighs it), or another method's
// result on each block (gptq, awq; see lcq/quant/quantize.h).
enum class LcqInit { kRtn, kMse, kWmse, kGptq, kAwq };
// The one list of the accepted names, their parsing (throws lcq::Error naming the valid
// ones) and the name of a value.
const std::vector<std::string>& lcq_init_names();
LcqInit parse_lcq_init(const std::string& name);
std::string to_string(LcqInit i);
// True for the starts that are a grid of the weights (rtn, mse, wmse), false for another
// method's result (gptq, awq).
bool is_grid_init(LcqInit i);

// With a start from another method (--init gptq|awq, --init-from), what becomes of its codes
// (--init-codes): kKeep ("keep") trains the codebook with them held fixed (and stores them);
// kNearest ("nearest") takes only the grid from the start: every weight of the
// full-precision model is assigned to its nearest entry at each step, as plain LCQ does
// (from GPTQ that is RTN's codes at step 0). keep is better (docs/quantization.md).
enum class StartCodes { kKeep, kNearest };
const std::vector<std::string>& start_codes_names();
StartCodes parse_start_codes(const std::string& name);
std::string to_string(StartCodes c);

struct LcqOptions {
  int bits = 2;
  int group = 128;
  int rank = 2;
  // wmse: on SmolLM2 W3 g64 its untrained start halves mse's perplexity (BENCHMARKS.md); without
  // calibration data it is mse.
  LcqInit init = LcqInit::kWmse;
  StartCodes start_codes = StartCodes::kKeep;  // with a start from another method
  double v_init = 0.5;       // extra rows of V start uniform in [-v_init, v_init]
  int dq_bits = 8;           // double quantization of S and B; 0 = keep f32
  int dq_group = 64;
  // gather: lower perplexity than ste in every g128 run on stories260K (docs/quantization.md).
  CodebookGradient gradient = CodebookGradient::kGather;
  // Set by the engine, not an option: training steps run their products in bf16 (--train-dtype),
  // so W_hat is produced in bf16 while gradients are recorded (the value autocast would cast an
  // f32 W_hat to, without the f32 copy: 4 of about 14 bytes per weight of a step's memory).
  bool bf16_steps = false;
};

// Checks the options; throws lcq::Error with a message for the user.
void validate(const LcqOptions& o);

// The rank-one grid of a plain start (o.init rtn, mse or wmse) at o.bits. wmse weighs each
// column's error by `input_energy` [cols] (the mean square of that input column on the
// calibration text) relative to its mean; without energies it is mse.
UniformGrid start_grid(const GroupedWeight& gw, const LcqOptions& o, const torch::Tensor& input_energy = {});

class LcqLinear {
 public:
  // W: the full-precision weight [m, n]. `gen` seeds the extra rows of V. `input_energy`
  // [n] (the mean square of each input column on the calibration text) weighs the clipping
  // search of init wmse; undefined, wmse is mse.
  LcqLinear(const torch::Tensor& W, const LcqOptions& o, torch::Generator gen,
            const torch::Tensor& input_energy = torch::Tensor());
  // Starts from another method's rank-one layer `start` (V = [0..K-1], same bits and group):
  // its per-group S and B become the rank-one row. W is the full-precision weight being
  // quantized (in start's basis if start folded scales into the norms, as AWQ does), never
  // start's rounded weight. With StartCodes::kKeep the codes are start's for good
  // (step 0 reproduces `start`; training fits the codebook to them, finalize() stores them)
  // and W is not used: the training target is the full-precision block's output, not W.
  // With kNearest, W is assigned to the nearest entries of the codebook, as plain LCQ.
  LcqLinear(const torch::Tensor& W, const CodebookLayer& start, const LcqOptions& o, torch::Generator gen);

  torch::Tensor codebook() const;                       // [m, Gr, K], differentiable
  torch::Tensor assign(const torch::Tensor& C) const;   // nearest entries [m, Gr, g] (uint8), no grad
  torch::Tensor weight() const;                         // W_hat [m, n], differentiable in S~, B~, V
  torch::Tensor weight(const torch::Tensor& q) const;   // ... with a given assignment [m, Gr, g]
  // The full-precision weight this layer quantizes [m, n].
  torch::Tensor full_precision_weight() const { return gw_.ungroup(gw_.w); }

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
  torch::ScalarType step_dtype() const;  // bf16 when gradients are recorded with bf16_steps, else f32
  torch::Tensor ste_weight(const torch::Tensor& C) const;  // W_hat with kSte's gradient, grouped

  LcqOptions o_;
  GroupedWeight gw_;
  torch::Tensor s0_;        // [m, Gr] initial scales (fixed)
  torch::Tensor s_tilde_;   // [r, m, Gr]
  torch::Tensor b_tilde_;   // [m, Gr]
  torch::Tensor v_;         // [r, K]
  torch::Tensor fixed_q_;   // [m, Gr, g] codes held fixed (start_codes = keep), else undefined
};

// o with o.bits replaced by layer_bits' entry for linear `name` of block `layer`
// ("blk.3.attn_q" -> bits: a size target's allocation), if it has one.
LcqOptions with_layer_bits(const LcqOptions& o, const std::map<std::string, int>& layer_bits, int layer,
                           const std::string& name);

// The LCQ block method (the engine trains {S~, B~} at lrs[0] and {V} at lrs[1]), each layer
// starting from the rtn, mse or wmse grid of o.init. One generator for the run: extra rows of V
// differ between layers but are the same for the same seed. `layer_bits` ("blk.3.attn_q" ->
// bits) overrides o.bits for the layers it names (a mixed-precision allocation). With init
// wmse, each block's input energies are measured with `inputs_of`'s context (the model the
// blocks belong to); without it, or without calibration inputs, wmse is mse.
std::unique_ptr<BlockMethod> make_lcq_method(const LcqOptions& o, std::vector<double> lrs, bool train,
                                             torch::Generator gen, std::map<std::string, int> layer_bits = {},
                                             const model::Model* inputs_of = nullptr);
// LCQ starting from another method's rank-one result (--init gptq|awq): per block, `start`
// runs first (and may fold scales into the block's norms, as AWQ does: those folded norms
// and biases are kept), then every layer's LcqLinear starts from start's layer and rounded
// weight, so training begins at start's solution.
std::unique_ptr<BlockMethod> make_lcq_method_from(std::unique_ptr<BlockMethod> start, const LcqOptions& o,
                                                  std::vector<double> lrs, bool train, torch::Generator gen);

// The start of LCQ --init-from FILE: per block, the rank-one layers a quantized model file
// holds (with their codes, and the file's norms and biases), so LCQ can start from a method
// whose result needs its own calibration pass (FlexRound, LRQ, OmniQuant). Checks before any
// work that every linear of `model` is in the file as a rank-one layer of o.bits and
// o.group, and, for StartCodes::kNearest, that the file's norms and biases are the
// model's (a start that folded scales into them, as AWQ, has its grid in another basis than
// the model's weights); holds the file's norms and biases meanwhile.
std::unique_ptr<BlockMethod> make_file_start(const std::string& path, const model::Model& model, const LcqOptions& o);

// Nearest-entry assignment against an exact CodebookLayer's own codebook (C++ loop, the
// file's semantics): fills layer.indices from the dense weight W [rows * cols].
void assign_nearest(CodebookLayer& layer, const float* W);

// Double quantization of one parameter row x[0..n) into blocks of `group` values with an
// fp16 scale and offset each (value = offset + scale * code).
void double_quantize(const float* x, int64_t n, int bits, int group, uint8_t* codes, uint16_t* scale,
                     uint16_t* offset);

}  // namespace lcq::quant
