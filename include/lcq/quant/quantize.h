// Quantizing a whole model and writing the result: the entry point `lcq quantize` uses.
#pragma once

#include "lcq/io/writers.h"
#include "lcq/model/loader.h"
#include "lcq/quant/awq.h"
#include "lcq/quant/embedding.h"
#include "lcq/quant/flexround.h"
#include "lcq/quant/gptq.h"
#include "lcq/quant/lcq.h"
#include "lcq/quant/omniquant.h"
#include "lcq/quant/reconstruct.h"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lcq::quant {

// The quantization methods (--method). All but kLcq store rank-one grids: kRtn, kGptq and
// kAwq compute them once (rank-one methods), kOmniQuant, kFlexRound and kLrq learn them by
// block reconstruction (learned grids).
enum class Method { kLcq, kRtn, kGptq, kAwq, kOmniQuant, kFlexRound, kLrq };
const std::vector<std::string>& method_names();  // lcq, rtn, gptq, awq, omniquant, flexround, lrq
Method parse_method(const std::string& name);    // lcq::Error naming --method for other names
std::string to_string(Method m);

struct QuantizeOptions {
  Method method = Method::kLcq;
  LcqOptions lcq;              // bits, group, rank, init, double quantization
  GptqOptions gptq;            // --method gptq
  AwqOptions awq;              // --method awq
  FlexRoundOptions flexround;  // --method flexround | lrq
  EmbeddingOptions embedding;  // the token embedding and output head (--embed-bits, --embed-group)
  double lr_scale = 5e-3;      // lcq: Adam learning rate of S~ and B~
  double lr_codebook = 5e-3;   // ... of V
  double lr = 0;               // omniquant, flexround, lrq: Adam learning rate; 0 = default_lr()
  // lcq: start from the rank-one layers of this quantized model file (make_file_start) instead
  // of lcq.init's grid; e.g. a FlexRound result.
  std::string init_from;
  // Bits per block linear where they differ from lcq.bits ("blk.3.attn_q" -> 3): a size
  // target's allocation (lcq/quant/allocation.h). lcq (from a plain grid or from gptq), rtn
  // and gptq.
  std::map<std::string, int> layer_bits;
  // Rotate the residual stream before anything else (lcq/quant/rotation.h; --rotate), with
  // engine.seed's rotation; the model is then held in memory (not streamed).
  bool rotate = false;
  ReconstructOptions engine;
};

// Throws lcq::Error unless a size target can allocate this run's widths (lcq, rtn or gptq,
// from a plain grid or from gptq).
void check_size_target_applies(const QuantizeOptions& o);

// The rank-one grid a run starts from, which a size target's sensitivities are measured with:
// lcq.init's grid, or GPTQ's (--gptq-grid) for --method gptq and --init gptq (the error
// feedback itself is not part of the measure).
LcqInit start_grid_kind(const QuantizeOptions& o);

// Checks everything before any work; throws lcq::Error with a message for the user.
void validate(const QuantizeOptions& o);

// How a method gets its weights: trained by block reconstruction (lcq, omniquant, flexround,
// lrq; these take --epochs) or computed once (rtn, gptq, awq, the rank-one baselines).
bool is_trained_method(Method m);
bool is_rank_one_method(Method m);  // rtn, gptq, awq
bool is_learned_grid(Method m);     // omniquant, flexround, lrq

// What `lcq quantize MODEL -o OUT --calib FILE` runs when no option says otherwise: the
// configuration that measured best on SmolLM2-135M (BENCHMARKS.md, "The default recipe"): LCQ
// rank 2, 4 bits in groups of 64, started from GPTQ on the activation-weighted grid in
// act-order (default_init(lcq), --gptq-grid wmse, --act-order; its codes kept), the token
// embedding and head at 6 bits in groups of 64 (the width the size targets chose at 4-5 bits
// per weight) rounded by GPTQ on the head's inputs, and default_epochs("lcq") = 2; the
// calibration default is CalibrationOptions' 128 x 512 tokens.
// QuantizeOptions' own member defaults are the library's neutral ones (2 bits, group 128, an
// fp16 embedding), which the tests and the other entry points build on.
QuantizeOptions default_recipe();

// The epochs each method trains per block where the user gives none: lcq 2 (on SmolLM2 W4 g64
// r2, 2 epochs scored lower WikiText-2 perplexity than the LCQ paper's 10 and the same on PTB,
// in a fifth of the time: the longer run fits its calibration text; BENCHMARKS.md); from the
// papers' or official code: omniquant 20, 40 below 3 bits; flexround and lrq 20 (about the
// official 5000 steps of batch 2 on 512 samples). The learning rate of omniquant (1e-2),
// flexround and lrq (3e-3, a starting point not yet settled by a sweep).
int default_epochs(Method m, int bits);
double default_lr(Method m);
// The start each method takes where the user gives no --init: lcq gptq (the recipe's), the
// others wmse (flexround and lrq start from that grid; the rank-one methods set their own).
LcqInit default_init(Method m);

// The block method for o.method (after quantize_model's adjustments: rank 1 and no training
// for the rank-one methods). `model` must outlive it. Each method lives in its own file.
std::unique_ptr<BlockMethod> make_block_method(const QuantizeOptions& o, const model::Model& model);

struct QuantizeResult {
  // Every quantized matrix by name: the block linears ("blk.3.attn_q"), and "token_embd" and
  // (untied) "output" when the embedding is quantized.
  std::map<std::string, CodebookLayer> layers;
  std::vector<BlockReport> blocks;
  double seconds = 0;
  double bits_per_weight = 0;  // over the quantized block linears, exact
  int64_t quantized_weights = 0;  // weights of the block linears
  int64_t layer_count = 0;        // quantized matrices (also when `layers` is not kept: a streamed run)
};

// quantize_model()'s adjustments of the options to the method (rank 1 and no training for
// the rank-one methods, rank 1 for the learned grids), after validate(); refuses a method
// that needs calibration without it.
void prepare(QuantizeOptions& o, bool calibrated);
// Block l quantized in place without calibration (RTN): its stored layers. Refuses a result
// with NaN or infinite weights.
std::map<std::string, CodebookLayer> quantize_block_uncalibrated(BlockMethod& method, int l, model::Block& block);
// bits_per_weight, quantized_weights and layer_count of r from the quantized layers.
void summarize(QuantizeResult& r, const std::map<std::string, CodebookLayer>& layers);

// Quantizes every linear layer of every block of `model` in place. `calib` [N, L] may be
// undefined for rtn (no reconstruction, no report losses); gptq and awq require it.
QuantizeResult quantize_model(model::Model& model, const torch::Tensor& calib, const QuantizeOptions& o);

// Writing model files from their parts, wherever the parts are (a model in memory, or the
// blocks of a streamed run on disk).
//
// The canonical names of a model's tensors in the order they are stored: token embedding,
// OPT's positions, per block the norms and each linear's weight and bias, the final norm and
// the untied head.
std::vector<std::string> model_tensor_names(const ModelConfig& config, int n_blocks);
// The tensors of `by_name` in that order (names it lacks are absent from the model).
std::vector<io::WriteTensor> in_file_order(const ModelConfig& config, int n_blocks,
                                           std::map<std::string, io::WriteTensor> by_name);

// A quantized matrix as the writer needs it: its parameters (`layer`'s bits, group, rank,
// double quantization and shape; its data need not be loaded) and its file tensors
// (io::add_codebook_tensors).
struct QuantizedLayer {
  const CodebookLayer* layer = nullptr;
  std::vector<io::WriteTensor> tensors;
};

// Writes a GGUF model of the dense `tensors` (in file order) followed by `layers` (in name
// order) with the codebook metadata and lcq.bits_per_weight. Atomic.
void write_quantized_file(const std::string& path, const ModelConfig& config, const tokenizer::Vocab& vocab,
                          std::vector<io::WriteTensor> tensors, const std::map<std::string, QuantizedLayer>& layers,
                          const nlohmann::json& extra_metadata);
// Writes an ordinary model file: GGUF (path ends with .gguf) or a Hugging Face directory.
void write_dense_file(const std::string& path, const ModelConfig& config, const tokenizer::Vocab& vocab,
                      const std::vector<io::WriteTensor>& tensors, const nlohmann::json& extra_metadata);

// Writes `model` as GGUF with the quantized linear layers stored as LCQ codebooks
// (lcq/io/codebook_tensors.h) and every other tensor in f32. Atomic.
void write_quantized_model(const std::string& path, const model::Model& model, const tokenizer::Vocab& vocab,
                           const QuantizeResult& q, const nlohmann::json& extra_metadata);

// Writes `model`'s current (dequantized) weights as an ordinary GGUF file (path ends with
// .gguf) or Hugging Face directory, in `dtype` (F32, F16 or BF16).
void write_dense_model(const std::string& path, const model::Model& model, const tokenizer::Vocab& vocab,
                       io::DType dtype, const nlohmann::json& extra_metadata);

// An upper bound of the bytes of the file write_quantized_model writes for `model` quantized
// with `o` and `extra_metadata`, without the block linears' tensors and their "bits" keys
// (io::codebook_file_bytes, io::codebook_key_bytes): the header, vocabulary, metadata, norms,
// every other per-layer key, and (count_embedding) the embedding and head as o.embedding
// stores them; without count_embedding they are left out too (a size target allocates them).
uint64_t quantized_file_other_bytes(const model::Model& model, const tokenizer::Vocab& vocab, const QuantizeOptions& o,
                                    const nlohmann::json& extra_metadata, bool count_embedding = true);

nlohmann::json to_json(const QuantizeResult& r);

}  // namespace lcq::quant
