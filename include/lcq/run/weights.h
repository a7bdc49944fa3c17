// The runtime without libtorch: what one token needs to pass through a LLaMA-family model
// (matrices, norm weights, RoPE tables) and where its keys and values go. Two producers: the
// torch model's adapter (lcq/model/decoder.h: views of a loaded Model) and load_weights()
// here, which reads a model file straight into the kernels' matrices, for the `lcq-run`
// binary that links no libtorch (its resident memory is the model, not the framework).
#pragma once

#include "lcq/core/config.h"
#include "lcq/io/model_source.h"
#include "lcq/kernels/matrix.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace lcq::run {

using MatrixPtr = std::shared_ptr<const kernels::Matrix>;

// RoPE tables in rotate-half layout, [positions][head_dim] each, honouring the config's theta
// and scaling (none, linear, llama3); inverse frequencies rounded to f32 as Hugging Face does.
struct RopeTables {
  std::vector<float> cos, sin;
  int64_t positions = 0;
};
RopeTables make_rope_tables(const ModelConfig& c, int64_t positions);

// One decoder layer. Pointers are f32 arrays owned elsewhere (Weights::storage or a Model);
// biases may be null.
struct LayerWeights {
  const float *attn_norm = nullptr, *ffn_norm = nullptr;
  MatrixPtr q, k, v, o, gate, up, down;
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
  const float *bgate = nullptr, *bup = nullptr, *bdown = nullptr;
};

struct Weights {
  ModelConfig config;
  std::vector<LayerWeights> layers;
  MatrixPtr embedding, head;  // the head may be the embedding (tied)
  const float* out_norm = nullptr;
  // A rotated residual stream (lcq/quant/rotation.h): R after the embedding lookup, R^T
  // before the final norm; null when the stream is not rotated. See set_rotation().
  MatrixPtr rotate_in, rotate_out;
  const float *rope_cos = nullptr, *rope_sin = nullptr;  // [rope_positions][head_dim]
  int64_t rope_positions = 0;
  // What the pointers above point into, when the weights own it (load_weights()).
  std::vector<std::shared_ptr<const void>> storage;
};

// A residual rotation from its stored factors: R = kron(mix, H) · diag(signs), row-major
// [dim][dim], H the normalised Hadamard matrix of order dim / a (a power of two), each entry
// computed in f64 and rounded once (every loader gets the same bits). Throws lcq::Error for
// factors that do not make an orthogonal matrix (sizes, signs other than +-1, mix not
// orthogonal to 1e-4).
std::vector<float> expand_rotation(const float* mix, int64_t a, const float* signs, int64_t dim);
// Sets w.rotate_in and w.rotate_out from R [dim][dim] (row-major f32), copied into w.storage.
void set_rotation(Weights& w, const float* r);

// Keys and values per layer, [n_kv_heads][capacity][head_dim] f32, and how many positions
// they hold. A view: the torch model's KVCache (model::KVCache::view()) or a run::KVCache.
struct CacheView {
  std::vector<float*> keys, values;
  int64_t capacity = 0;
  int64_t* length = nullptr;
};

// A cache that owns its memory (batch 1).
class KVCache {
 public:
  KVCache(const ModelConfig& c, int64_t capacity);
  CacheView view();
  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }

 private:
  std::vector<std::vector<float>> k_, v_;
  int64_t capacity_ = 0, length_ = 0;
};

struct LoadOptions {
  kernels::KernelChoice kernel = kernels::KernelChoice::kAuto;
  int64_t positions = 0;  // RoPE positions to prepare; 0: the model's max_seq_len
};

// Reads `src` into weights for run::Decoder: LCQ layers packed for the kernels, dense tensors
// kept as F16/BF16 where the file stores them so (else f32), norms in f32. Throws lcq::Error
// naming the file for what the lean runtime cannot run (not LLaMA-family, activation
// quantization) and for any inconsistent tensor.
Weights load_weights(const io::ModelSource& src, const LoadOptions& opts = {});

}  // namespace lcq::run
