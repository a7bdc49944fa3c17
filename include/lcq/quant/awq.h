// AWQ (Lin et al., "AWQ: Activation-aware Weight Quantization for LLM Compression and
// Acceleration", MLSys 2024; METHODS.md section 3) as a rank-one LCQ codebook.
//
// Per block, for each "site" (a set of linears reading the same input, and the operation
// producing that input):
//   attn input:  attn_norm -> q, k, v          mlp input:  ffn_norm -> gate, up (OPT: fc1)
//   attn output: v -> o (only without GQA)      mlp output: up (OPT: fc1) -> down (fc2)
// per-input-channel scales s = mean|x|^alpha (normalised by sqrt(max s * min s)) are searched
// over alpha in {0, 1/grid, ..., (grid-1)/grid}, each candidate scoring the output error
// with the site's weights fake-quantized as Q(W diag(s)) diag(s)^-1 (RTN at --bits/--group).
// The best scales are folded: the producer is divided by s (norm weight and bias, or the
// previous linear's rows and bias), the consumers' columns multiplied by s, so the block
// computes the same function and only the quantization grid changes. Then a clipping search
// per group (shrinking the symmetric range [-max|w|, max|w|]) and RTN on the scaled, clipped
// weights, stored with the same double quantization as --method rtn.
//
// Output errors, as the reference:
//  - norm-fed sites: MSE of the output of the sub-layer the site feeds, its other weights in
//    full precision: the attention (through o) for the attention input, the MLP for the mlp
//    input. Block-output MSE would equal the MLP's for the mlp input and cost 3x the
//    attention sub-layer for the attention input.
//  - linear-fed sites and the clipping search: the layer's own output error, computed
//    exactly from the Gram matrix X^T X of all calibration tokens (the reference samples 512
//    tokens for clipping).
#pragma once

#include "lcq/model/model.h"
#include "lcq/quant/lcq.h"
#include "lcq/quant/reconstruct.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace lcq::quant {

// Where AWQ's activation statistics come from (--awq-inputs): kFp ("fp") the full-precision
// model's activations (the reference); kQuantized ("quantized") the engine's inputs, i.e.
// after the already-quantized blocks.
enum class AwqInputs { kFp, kQuantized };
const std::vector<std::string>& awq_inputs_names();
AwqInputs parse_awq_inputs(const std::string& name);
std::string to_string(AwqInputs i);

struct AwqOptions {
  int grid = 20;                // alpha candidates k / grid, k = 0 .. grid-1 (alpha 0 = plain RTN)
  bool clip = true;             // the clipping search after scaling
  int clip_grid = 20;           // clipping ranges max|w| * (1 - k / clip_grid) ...
  double max_shrink = 0.5;      // ... for k < max_shrink * clip_grid: 1, 0.95, ..., 0.55
  bool clip_qk = false;         // the reference leaves q and k unclipped (their error passes through q k^T)
  AwqInputs inputs = AwqInputs::kFp;
  int64_t search_samples = 0;   // calibration samples for the sub-layer errors of the scale search (0 = all)
};

void validate(const AwqOptions& a, const LcqOptions& o);

enum class AwqSite { kAttnInput, kAttnOutput, kMlpInput, kMlpOutput };
const char* to_string(AwqSite site);

// Whether a site's scales can be folded in this block: the norm-fed sites need a pre-norm
// block (OPT-350m's post-norm feeds q, k, v and fc1 the raw residual); the attention output
// needs v's outputs to be o's inputs one to one (no grouped-query attention), as the
// reference requires.
bool awq_site_applies(const model::Block& b, const ModelConfig& c, AwqSite site);
// The linears whose input columns the site scales ("attn_q", ...).
std::vector<std::string> awq_site_layers(const model::Block& b, AwqSite site);
// Folds positive per-channel scales s [n] into the block: the producer is divided by s and
// the consumers' input columns multiplied by s. The block computes the same function up to
// float rounding. Tensors are replaced, never written into (they may be shared).
void fold_awq_scales(model::Block& b, AwqSite site, const torch::Tensor& s);

// The block method: begin_block does the search, folding, clipping and quantization; apply()
// writes plain RTN (the report's "init"), end_block() the AWQ weights and the folded norms
// and biases. `model` provides the block context and must outlive the method.
std::unique_ptr<BlockMethod> make_awq_method(const model::Model& model, const LcqOptions& o, const AwqOptions& a,
                                             bool progress);

}  // namespace lcq::quant
