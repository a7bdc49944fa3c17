// The block-wise reconstruction engine shared by the learned methods (LCQ; OmniQuant,
// FlexRound and LRQ later). Blocks are quantized in order. For block l:
//   inputs  = calibration activations after the already-quantized blocks < l
//   targets = the full-precision block's outputs on full-precision inputs (default), or on
//             the quantized inputs (targets_from_quantized_inputs)
// the method's parameters are trained with Adam on the loss between the two (MSE by default,
// see ReconstructOptions::loss), then frozen;
// the block's weights are replaced by the final quantized ones and the engine moves on.
// Only one block's training state and three activation sets [N, L, dim] live at a time. The
// blocks come from and go to a BlockStore (the model in memory, or a file read a block at a
// time with the finished blocks checkpointed), and what one block hands the next is an
// EngineState, so that a run can stop after any block and continue exactly.
#pragma once

#include "lcq/kernels/codebook_layer.h"
#include "lcq/model/model.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lcq::quant {

struct LayerReport {
  std::string name;           // e.g. "blk.3.attn_q"
  double init_error = 0;      // relative output error ||x(W_hat - W)^T||^2 / ||x W^T||^2, at init
  double final_error = 0;     // ... after training and double quantization
  double bits_per_weight = 0;
};

struct BlockReport {
  int layer = 0;
  // Block output MSEs on the first ReconstructOptions::loss_samples calibration samples.
  double init_loss = 0;       // before training
  double trained_loss = 0;    // after training (float parameters)
  double final_loss = 0;      // after double quantization and re-assignment (what is stored)
  double seconds = 0;
  std::vector<LayerReport> layers;
};

// A quantization method as the engine sees it, for one block at a time.
class BlockMethod {
 public:
  virtual ~BlockMethod() = default;
  // Prepares the quantizers of `fp`'s linear layers (named "blk.<l>.<linear>").
  virtual void begin_block(int layer, const model::Block& fp, const std::vector<torch::Tensor>& calib_inputs) = 0;
  // Parameter groups (each with its own learning rate) to train; empty = nothing to train.
  virtual std::vector<torch::optim::OptimizerParamGroup> param_groups() = 0;
  // Writes the current quantized weights (differentiable in the parameters) into `working`.
  virtual void apply(model::Block& working) = 0;
  // Freezes the block: the final quantized layers, and their dequantized weights in `working`.
  virtual std::map<std::string, CodebookLayer> end_block(model::Block& working) = 0;
  // After end_block, per linear ("attn_q", ...): the full-precision weight in the basis of
  // the stored layer, where that is not the block's own weight (AWQ: W diag(s), the scales it
  // folded into the norms). LCQ started from this method (--init gptq|awq) quantizes these
  // weights. Empty: the block's full-precision weights.
  virtual std::map<std::string, torch::Tensor> full_precision_weights() const { return {}; }
  // What the method carries from one block to the next (its random generator's state, AWQ's
  // full-precision activations), read between blocks for a checkpoint; restore_state() puts
  // it back in a fresh method, which then continues as the original would have.
  virtual std::map<std::string, torch::Tensor> carried_state() const { return {}; }
  virtual void restore_state(const std::map<std::string, torch::Tensor>& state) {}
};

// The closed choices of ReconstructOptions. Each has one name table: the CLI's accepted
// values (*_names()), the parsing (parse_*(), which throws lcq::Error naming the option and
// the accepted values) and the names files and reports carry (to_string) all come from it.
enum class TrainingLoss { Mse, TokenRelative };        // --loss mse | token-relative
enum class LrSchedule { Cosine, Constant };            // --schedule cosine | constant
enum class TrainDtype { Fp32, Bf16, Auto };            // --train-dtype fp32 | bf16 | auto
const std::vector<std::string>& loss_names();
const std::vector<std::string>& schedule_names();
const std::vector<std::string>& train_dtype_names();
TrainingLoss parse_loss(const std::string& name);
LrSchedule parse_schedule(const std::string& name);
TrainDtype parse_train_dtype(const std::string& name);
std::string to_string(TrainingLoss l);
std::string to_string(LrSchedule s);
std::string to_string(TrainDtype d);

// Fp32 or Bf16: what `d` means on this CPU (Auto: Bf16 where the CPU has native bf16 dot
// products).
TrainDtype resolve_train_dtype(TrainDtype d);

struct ReconstructOptions {
  int epochs = 10;
  int64_t batch_size = 4;       // calibration samples per Adam step
  LrSchedule schedule = LrSchedule::Cosine;  // cosine (to 0) | constant
  // Training objective. mse: mean squared error of the block output (the papers').
  // token-relative: each position's squared error divided by its target's mean square, so
  // every position weighs the same whatever its norm. Models with an attention-sink massive
  // activation (SmolLM2: 71-98 % of a block's output energy at the first position) otherwise
  // spend the whole loss on one position; the next block's RMSNorm sees only relative error.
  TrainingLoss loss = TrainingLoss::Mse;
  bool targets_from_quantized_inputs = false;
  uint64_t seed = 0;
  bool progress = true;
  int64_t error_samples = 4;    // samples used for the per-layer errors in the report
  // Samples (the first ones) on which the report's block losses (init, trained, final) are
  // measured; 0 = all. Training always uses all. Over all samples, the init and trained
  // losses would each be a forward pass of the whole calibration set that only feeds the
  // report.
  int64_t loss_samples = 32;
  // Precision of the training steps' matrix products (the block's linears and attention, in
  // the forward pass and its gradients): fp32, or bf16 (inputs rounded to bfloat16,
  // accumulated in fp32 by oneDNN: about 3x the fp32 speed on CPUs with AVX512-BF16 or AMX),
  // or auto (bf16 where the CPU has such instructions, else fp32). The quantizer, Adam, the
  // elementwise operations, the targets and every reported loss stay fp32.
  TrainDtype train_dtype = TrainDtype::Auto;
};

// What the engine hands from one block to the next: everything block next_block needs to run
// as it would have in an uninterrupted run.
struct EngineState {
  int next_block = 0;
  torch::Tensor x_q;   // calibration activations entering next_block, after the quantized blocks
  torch::Tensor x_fp;  // ... in the full-precision model (undefined when targets_from_quantized_inputs)
  std::string shuffle_rng;  // the std::mt19937_64 the batches are shuffled with, as operator<< writes it
  torch::Tensor torch_rng;  // libtorch's default CPU generator
  std::map<std::string, torch::Tensor> method;  // BlockMethod::carried_state()
};

// The state before block 0: the embeddings of the calibration tokens and the generators
// seeded from o.seed (libtorch's default generator is seeded here).
EngineState initial_state(const torch::Tensor& embeddings, const ReconstructOptions& o);

// Where the blocks come from and where the finished ones go.
class BlockStore {
 public:
  virtual ~BlockStore() = default;
  virtual int size() const = 0;
  // Block l at full precision, with the activation quantizers it is trained with.
  virtual model::Block load(int l) = 0;
  // Block l is done: `block` holds its final (dequantized) weights, norms and biases, `layers`
  // its stored form (moved from at will), `next` what continuing after it takes.
  virtual void finish(int l, model::Block& block, std::map<std::string, CodebookLayer>& layers,
                      const BlockReport& report, const EngineState& next) = 0;
};

class ActivationStore;

struct ReconstructResult {
  std::vector<BlockReport> blocks;  // of the blocks this call quantized
  // The mean of h h^T over the output head's inputs h on the calibration set (the final norm's
  // output after the quantized blocks) [dim, dim], f64: its diagonal is each column's mean
  // square, the head's importance matrix.
  torch::Tensor head_gram;
};

// Quantizes blocks state.next_block.. of `store` with `method`. `model` gives the context (RoPE
// tables, extended to the calibration length) and the final norm; its blocks are not used.
// Activation sets are allocated in `acts` (in memory when null).
ReconstructResult reconstruct(model::Model& model, BlockStore& store, EngineState state, BlockMethod& method,
                              const ReconstructOptions& opts, const ActivationStore* acts = nullptr);

// The same for the model's own blocks, in memory: they become the dequantized quantized
// blocks and `layers` receives the stored ones.
ReconstructResult reconstruct(model::Model& model, const torch::Tensor& calib_tokens, BlockMethod& method,
                              const ReconstructOptions& opts, std::map<std::string, CodebookLayer>& layers);

nlohmann::json to_json(const BlockReport& r);
// The inverse of to_json (a checkpoint's reports); throws lcq::Error on a malformed one.
BlockReport block_report_from_json(const nlohmann::json& j);

}  // namespace lcq::quant
