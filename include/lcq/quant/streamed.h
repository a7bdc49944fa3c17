// Quantizing a model larger than the memory: a block at a time from the memory-mapped input,
// finished blocks checkpointed next to the output, the output assembled from them at the end.
//
// Only the current block's weights and training state, the calibration activations (or,
// with --offload-activations, their pages in use) and the small parts of the model (norms,
// RoPE tables) are resident, so the peak resident set does not grow with the number of
// blocks. The checkpoint (lcq/quant/checkpoint: OUT.gguf.lcq-resume/) lets an interrupted run
// continue with --resume; the result is byte for byte the file an uninterrupted run writes,
// and the file quantize_model() + write_quantized_model() write for the same options.
#pragma once

#include "lcq/model/act_quant.h"
#include "lcq/model/block_loader.h"
#include "lcq/quant/quantize.h"
#include "lcq/tokenizer/vocab.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace lcq::quant {

struct StreamOptions {
  std::string checkpoint_dir;   // where the finished blocks are kept (removed on success)
  std::string fingerprint;      // the run's identity: a checkpoint of another run is refused
  bool resume = false;          // continue the checkpoint in checkpoint_dir
  std::string offload_dir;      // keep the calibration activations in files there (empty: in memory)
  model::ActQuantConfig act;    // the activation quantization the blocks are trained with (not static)
};

// Why quantize_streamed() cannot run these options (they need the whole model in memory), or
// "" when it can. `export_fake`, `smoothquant`: the CLI's options of those names.
std::string streaming_obstacle(const QuantizeOptions& o, const model::ActQuantConfig& act, bool export_fake,
                               bool smoothquant);

// Quantizes every block linear of `loader`'s model on calibration tokens `calib` [N, L]
// (undefined: rtn without calibration) and writes the GGUF model `out` (atomically) with
// `vocab` and `meta` as write_quantized_model() would.
QuantizeResult quantize_streamed(const model::BlockLoader& loader, const torch::Tensor& calib,
                                 const QuantizeOptions& o, const StreamOptions& s, const std::string& out,
                                 const tokenizer::Vocab& vocab, const nlohmann::json& meta);

// The memory a streamed quantization needs, in bytes, by part.
struct MemoryEstimate {
  double block = 0;        // one block's weights: full precision, working copy, method state
  double activations = 0;  // calibration activations resident at once (0 when offloaded... mostly)
  double other = 0;        // embedding rows, head (quantized embedding), RoPE tables, runtime
  double total() const { return block + activations + other; }
};
MemoryEstimate estimate_memory(const ModelConfig& config, int64_t nsamples, int64_t seqlen, const QuantizeOptions& o,
                               bool offloaded);

// Throws lcq::Error when `need` exceeds `available` bytes, naming the parts and the options
// that would make the run fit (--offload-activations, fewer --nsamples, a shorter --seqlen).
void check_memory(const MemoryEstimate& need, double available, const std::string& available_from,
                  bool offloaded);

}  // namespace lcq::quant
