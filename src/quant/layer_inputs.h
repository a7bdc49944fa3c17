// Statistics of the inputs of a block's linear layers over the calibration activations, as
// GPTQ (Hessians) and AWQ (activation magnitudes, output errors) need them. Private to quant.
#pragma once

#include "lcq/kernels/codebook_layer.h"
#include "lcq/model/model.h"
#include "lcq/quant/lcq.h"

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace lcq::quant::detail {

// The context quantizers run a model's blocks in: the model's own, with attention's products
// exact (f32) whatever its runtime's prompt arithmetic (RuntimeOptions::prompt_dtype is for
// running a model; --train-dtype alone decides what training rounds).
inline model::BlockContext exact_context(const model::Model& m) {
  model::BlockContext ctx = m.context();
  ctx.prompt_dtype = torch::kFloat32;
  return ctx;
}

// Calibration samples run through a block per forward call: bounds the attention scores.
constexpr int64_t kChunkSamples = 8;

// Layers that read the same tensor (q, k, v: the attention input; gate, up: the MLP input)
// share their statistics; this is the name they are kept under ("attn_q", "ffn_gate" when
// the block has a gate, else the name itself).
std::string input_site(const model::Block& block, const std::string& linear);

struct InputStats {
  torch::Tensor gram;     // sum over tokens of x^T x, [n, n] f32 (undefined without StatsOptions::gram)
  torch::Tensor abs_sum;  // sum over tokens of |x|, [n] f32
  torch::Tensor sq_sum;   // sum over tokens of x^2, [n] f32; only without a gram (then it is the gram's diagonal)
  int64_t tokens = 0;
  torch::Tensor inputs;   // the inputs of the first `keep_samples` samples, [keep, L, n]
};

struct StatsOptions {
  int64_t keep_samples = 0;  // keep the inputs themselves of this many first samples
  bool need_output = true;   // false: each chunk's forward stops once every site has been seen
  bool gram = true;          // false: no [n, n] gram (the vectors only)
};

// Runs `block` over x [N, L, dim] (in chunks, without gradients) and accumulates the
// statistics of the inputs of the linears in `sites` (input_site names). Returns the block's
// output [N, L, dim], undefined without `need_output`.
torch::Tensor collect_input_stats(const model::BlockContext& ctx, const model::Block& block, const torch::Tensor& x,
                                  const std::vector<std::string>& sites, std::map<std::string, InputStats>& stats,
                                  const StatsOptions& o = {});

// The mean square of every input column of each linear of `block` over x [N, L, dim], by
// linear name ("attn_q", ...; layers that read the same tensor get the same values): the
// column importance llama.cpp's imatrix weighs rounding errors by. The inputs of one block
// forward, stopped after the last linear's input.
std::map<std::string, torch::Tensor> input_energies(const model::BlockContext& ctx, const model::Block& block,
                                                    const torch::Tensor& x);

// `block` over x in chunks, without gradients.
torch::Tensor run_block(const model::BlockContext& ctx, const model::Block& block, const torch::Tensor& x);

// Dequantized weights of a codebook layer as a [rows, cols] tensor of `like`'s dtype.
torch::Tensor dequantized(const CodebookLayer& layer, const torch::Tensor& like);

// RTN as --method rtn stores it: the rank-one codebook of W's min-max grid, double-quantized
// as o says, with nearest-entry codes (LCQ rank 1 from the rtn init is exactly RTN, tested).
CodebookLayer rtn_layer(const torch::Tensor& W, const LcqOptions& o);
// The same for any plain grid (`init` rtn, mse or wmse; wmse weighs each column by `energy`,
// the mean square of its input, and is mse without it).
CodebookLayer grid_layer(const torch::Tensor& W, const LcqOptions& o, LcqInit init,
                         const torch::Tensor& energy = torch::Tensor());

// Name of one linear of the block ("attn_q", ...) -> the block's Linear.
model::Linear& linear_named(model::Block& block, const std::string& name);
const model::Linear& linear_named(const model::Block& block, const std::string& name);

}  // namespace lcq::quant::detail
