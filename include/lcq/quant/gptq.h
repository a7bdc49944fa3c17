// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", ICLR 2023; METHODS.md section 3) as a rank-one LCQ codebook.
//
// Per linear layer, H = 2 X^T X / tokens from the layer's calibration inputs. Columns are
// quantized one at a time; the error of each is spread over the columns not yet quantized
// through the upper Cholesky factor of H^-1 (error feedback), in lazy batches of `block`
// columns. Optionally the columns go in order of decreasing diag(H) (act-order).
//
// The codes are stored as GPTQ chose them (no nearest re-assignment afterwards), so the file
// holds exactly the weights GPTQ produced. That requires GPTQ to round against the grid the
// file stores, which is double-quantized (--dq-bits) in blocks of 64 groups spanning rows:
//  - static groups (default): every group's min-max grid is computed up front from the
//    original weights, double-quantized, and GPTQ rounds each column to the nearest entry of
//    that final grid. Works with any --dq-bits and with act-order. It is RTN's grid, so with
//    H = identity GPTQ is RTN exactly.
//  - lazy groups (the reference's default): a group's grid is computed from the
//    error-updated weights when the sweep reaches its first column. Exact only with
//    --dq-bits 0 (the parameters of a double-quantization block are not known until all of
//    its groups are), and impossible with act-order (the reference then forms groups of
//    permuted columns, which a file of contiguous groups cannot hold).
#pragma once

#include "lcq/kernels/codebook_layer.h"
#include "lcq/model/model.h"
#include "lcq/quant/lcq.h"
#include "lcq/quant/reconstruct.h"

#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lcq::quant {

enum class GptqGroups { kStatic, kLazy };  // --gptq-groups static | lazy (see above)
const std::vector<std::string>& gptq_groups_names();
GptqGroups parse_gptq_groups(const std::string& name);
std::string to_string(GptqGroups g);

// --gptq-grid: the static groups' grid. rtn (min-max, the reference's), mse (the per-group
// clipping search) or wmse (the same search with each column's error weighted by diag(H), the
// input energy: the grid --init wmse starts LCQ from).
const std::vector<std::string>& gptq_grid_names();
LcqInit parse_gptq_grid(const std::string& name);

struct GptqOptions {
  double damp = 0.01;             // adds damp * mean(diag H) to the diagonal of H
  int64_t block = 128;            // columns per lazy batch update
  bool act_order = false;         // quantize columns in order of decreasing diag(H)
  GptqGroups groups = GptqGroups::kStatic;
  LcqInit grid = LcqInit::kRtn;  // static groups' grid: kRtn, kMse or kWmse
  // Within a block, quantize q,k,v -> o -> gate,up -> down in turn, each layer's H taken from
  // the inputs the already-quantized earlier layers produce (the reference's
  // --true-sequential, AutoGPTQ's default). Off: every H from the full-precision block.
  bool true_sequential = true;
};

// Checks the options together with the grid options (bits, group, dq); throws lcq::Error.
void validate(const GptqOptions& g, const LcqOptions& o);

// GPTQ of one weight W [m, n] with H [n, n] (any positive multiple of X^T X: the result does
// not depend on the scale). Input columns with diag(H) = 0 (never active) are set to 0 before
// quantization, as the reference does. Uses o.bits, o.group, o.dq_bits, o.dq_group; the
// result's dequantize() is exactly the weight GPTQ produced.
CodebookLayer gptq_quantize(const torch::Tensor& W, const torch::Tensor& H, const LcqOptions& o, const GptqOptions& g);

// The same sweep against codebooks given: every group's entries are `codebooks`' (any rank, as
// stored: double quantization included); only its indices are replaced (g.groups and g.grid
// do not apply). Used where the grid is chosen otherwise, e.g. the token embedding's.
CodebookLayer gptq_round(const torch::Tensor& W, const torch::Tensor& H, CodebookLayer codebooks,
                         const GptqOptions& g);

// The block method: begin_block does all the work; apply() writes the RTN weights of the
// same grid (so the engine's report reads "init" = RTN, "final" = GPTQ); end_block() writes
// GPTQ's. `model` provides the block context (RoPE tables) and must outlive the method.
// `layer_bits` ("blk.3.attn_q" -> 3) overrides o.bits per layer (a size target's allocation).
std::unique_ptr<BlockMethod> make_gptq_method(const model::Model& model, const LcqOptions& o, const GptqOptions& g,
                                              bool progress, std::map<std::string, int> layer_bits = {});

}  // namespace lcq::quant
