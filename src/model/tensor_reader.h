// Reading a model's tensors out of its source into runtime tensors, shared by build_model()
// (the whole model at once) and BlockLoader (a block at a time). Private to src/model.
#pragma once

#include "lcq/core/progress.h"
#include "lcq/io/model_source.h"
#include "lcq/model/act_quant.h"
#include "lcq/model/model.h"

#include <string>
#include <vector>

namespace lcq::model::detail {

class TensorReader {
 public:
  TensorReader(const io::ModelSource& src, const RuntimeOptions& opts, Progress* progress = nullptr);

  // The view of `name`, checked to have `shape`.
  const io::TensorView& view(const std::string& name, const std::vector<int64_t>& shape) const;
  // Copies (dequantizing) a tensor into a new tensor of the runtime's dtype and device.
  torch::Tensor get(const std::string& name, const std::vector<int64_t>& shape) const;
  torch::Tensor get_opt(const std::string& name, const std::vector<int64_t>& shape) const;  // undefined if absent
  Norm norm(const std::string& prefix) const;
  // The file's residual rotation (Model::rotation), undefined if it has none.
  ResidualRotation rotation() const;
  // A matrix stored as an LCQ codebook layer: packed for the kernels (compact runtime), or
  // dequantized to a dense tensor of the runtime's dtype.
  void codebook(const std::string& name, int64_t rows, int64_t cols, Linear& out) const;
  Block block(int l) const;
  // Checks the shapes of block l's dense tensors without reading them.
  void check_block(int l) const;

  bool compact() const { return compact_; }

 private:
  const io::ModelSource& src_;
  const RuntimeOptions& opts_;
  Progress* progress_;
  bool compact_;
};

// The activation quantization a model from `src` runs with: the file's lcq.act.* keys unless
// the runtime options override them (bits 0 = none).
ActQuantConfig file_activation_quant(const io::ModelSource& src, const RuntimeOptions& opts);

}  // namespace lcq::model::detail
