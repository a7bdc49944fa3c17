// Mixed precision under a size target (lcq quantize --target-size MIB | --target-bpw X).
//
// Instead of one bit width for every linear, each block linear gets the width among the
// candidates (2, 3, 4 by default) that buys the most accuracy per byte, and the output file
// never exceeds the target:
//  1. Sensitivity, measured: for every block linear and every candidate width b, the damage
//     done when only that linear is quantized at b (the rank-one start LCQ trains from: the
//     mse or rtn grid of the options), on the first calibration samples: by default the KL
//     divergence of the model's next-token distributions, estimated per block
//     (SensitivityMeasure below).
//  2. Bytes, exact: what the layer adds to the file at b bits (its tensors, their infos and
//     padding, a per-layer metadata key), at the run's rank, group and double quantization.
//  3. Greedy allocation: every layer starts at the narrowest width; the step with the largest
//     error reduction per added byte that still fits is taken until none fits. The errors of
//     different layers are treated as additive.
// The budget for the linears is the target minus everything else the file holds (header,
// vocabulary, metadata with this allocation, norms, the embedding and head as
// --embed-bits stores them), computed by the writer's own size arithmetic.
#pragma once

#include "lcq/model/model.h"
#include "lcq/quant/quantize.h"
#include "lcq/tokenizer/vocab.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace lcq::quant {

// How a layer's sensitivity is measured (--target-measure), each for one layer quantized at a
// time, all others full precision:
//  kBlock ("block"): the error of its block's output (token-relative), with full-precision
//    inputs. Cheap (one block forward per trial) but blind to how an error grows through the
//    later blocks.
//  kModel ("model"): the KL divergence of the model's next-token distributions from the
//    full-precision ones, averaged over positions (the trial runs from its block to the head):
//    what perplexity sees; to first order the KLs of small independent errors add up.
//  kScaled ("scaled"): the block error, times its block's gain: the KL divergence over the
//    block error of one probe per block (all its linears at the narrowest width). One
//    model forward per block instead of one per trial: the model measure to first order.
enum class SensitivityMeasure { kBlock, kModel, kScaled };
const std::vector<std::string>& sensitivity_measure_names();
SensitivityMeasure parse_sensitivity_measure(const std::string& name);
std::string to_string(SensitivityMeasure m);

struct AllocationOptions {
  // scaled by measurement: SmolLM2-135M RTN at 3 bits (docs/quantization.md)
  SensitivityMeasure measure = SensitivityMeasure::kScaled;
  uint64_t target_bytes = 0;          // the output file's size limit
  std::vector<int> candidates = {2, 3, 4};  // widths of the block linears, ascending
  // Widths of the token embedding (and the head, tied or not: one width for both), ascending;
  // empty = the embedding is stored as QuantizeOptions::embedding says, outside the allocation.
  // Needs a KL measure (model or scaled): it is scored by the model's KL with only the
  // embedding and head quantized.
  std::vector<int> embedding_candidates;
  int64_t samples = 4;                // calibration samples the sensitivities are measured on
  bool progress = true;
};

// "2,3,4" -> {2, 3, 4}: ascending, distinct, each 1..8; throws lcq::Error naming `option`.
std::vector<int> parse_bit_candidates(const std::string& list, const std::string& option = "--target-bits");

// The entry of the token embedding (and head) in an allocation.
inline const char* kEmbeddingEntry = "token_embd";

struct LayerCost {
  std::string name;              // "blk.3.attn_q", or kEmbeddingEntry
  std::vector<int> widths;       // the widths it may get, ascending
  std::vector<double> error;     // per width: the measured damage (SensitivityMeasure)
  std::vector<uint64_t> bytes;   // per width: the bytes the layer adds to the file
};

struct Allocation {
  uint64_t target_bytes = 0;
  uint64_t other_bytes = 0;      // the file without the allocated layers
  uint64_t layer_bytes = 0;      // the allocated layers at the chosen widths
  SensitivityMeasure measure = SensitivityMeasure::kScaled;
  std::vector<LayerCost> layers;  // in block order, the embedding (when allocated) last
  std::map<std::string, int> bits;  // the choice per layer
};

// Step 1 for every block linear of `model` (full precision, in memory) on calib [N, L], and
// the embedding when a.embedding_candidates is not empty.
std::vector<LayerCost> measure_layer_costs(model::Model& model, const torch::Tensor& calib, const QuantizeOptions& o,
                                           const AllocationOptions& a);

// Step 3: the choice per layer with sum of bytes <= budget. Throws lcq::Error when even the
// narrowest widths exceed it.
std::map<std::string, int> allocate_bits(const std::vector<LayerCost>& layers, uint64_t budget);

// All three steps, the budget computed for the file write_quantized_model writes with
// `metadata` (to which the caller adds "lcq.allocation" = to_json(result).dump()). The caller
// quantizes the block linears at bits[name] and, when allocated, the embedding at
// bits[kEmbeddingEntry].
Allocation plan_allocation(model::Model& model, const torch::Tensor& calib, const QuantizeOptions& o,
                           const tokenizer::Vocab& vocab, const nlohmann::json& metadata, const AllocationOptions& a);

// Quantize as `a` chose: o.layer_bits for the block linears, o.embedding.bits for the
// embedding when it was allocated.
void apply(const Allocation& a, QuantizeOptions& o);

// The block linears per width ("3" -> how many; a JSON object's keys), and the embedding's
// width (0 when it was not allocated).
std::map<std::string, int> linears_at_bits(const Allocation& a);
int embedding_bits(const Allocation& a);

// As stored in a file's "lcq.allocation" key, and back (throws lcq::Error on a malformed one).
nlohmann::json to_json(const Allocation& a);
Allocation allocation_from_json(const nlohmann::json& j);

// A heat map of the chosen widths: one row per linear kind, one column per block.
std::string allocation_svg(const Allocation& a, const std::string& title);

}  // namespace lcq::quant
