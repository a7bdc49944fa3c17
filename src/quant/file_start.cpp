// LCQ's start read from a quantized model file (--init-from): any method whose result is a
// rank-one grid (flexround, lrq, omniquant, gptq, awq, rtn) can seed LCQ this way, including
// the trained ones, whose result needs its own pass over the calibration set.
#include "lcq/quant/lcq.h"

#include "lcq/core/error.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/io/model_source.h"
#include "lcq/model/loader.h"

#include <fmt/ranges.h>

#include <map>
#include <memory>
#include <string>

namespace lcq::quant {

namespace {

class FileStart final : public BlockMethod {
 public:
  FileStart(const std::string& path, const model::Model& target, const LcqOptions& o) : path_(path) {
    src_ = io::load_model_source(path);
    model::RuntimeOptions dense;
    dense.packed = false;  // the start's rounded weights, dequantized
    start_ = model::build_model(src_, dense);
    LCQ_CHECK(start_.blocks.size() == target.blocks.size(), "{}: --init-from: the file has {} blocks, the model {}",
              path, start_.blocks.size(), target.blocks.size());
    for (size_t l = 0; l < target.blocks.size(); ++l) {
      auto want = target.blocks[l].linears();
      auto have = start_.blocks[l].linears();
      for (size_t i = 0; i < want.size(); ++i) {
        const std::string name = "blk." + std::to_string(l) + "." + want[i].first;
        const torch::Tensor& w = want[i].second->weight;
        LCQ_CHECK(have[i].second->weight.sizes() == w.sizes(), "{}: --init-from: {} has shape {}, the model's is {}",
                  path, name, fmt::join(have[i].second->weight.sizes(), "x"), fmt::join(w.sizes(), "x"));
        LCQ_CHECK(io::has_codebook_layer(src_, name), "{}: --init-from: {} is not a quantized layer", path, name);
        const CodebookLayer layer = io::read_codebook_layer(src_, name, w.size(0), w.size(1));
        LCQ_CHECK(layer.rank == 1 && layer.bits == o.bits && layer.group == std::min<int64_t>(o.group, w.size(1)),
                  "{}: --init-from: {} is rank {}, {} bits, group {}; LCQ --bits {} --group {} starts from a "
                  "rank-one layer of the same bits and group",
                  path, name, layer.rank, layer.bits, layer.group, o.bits, o.group);
      }
    }
  }

  void begin_block(int layer, const model::Block&, const std::vector<torch::Tensor>&) override { layer_ = layer; }
  std::vector<torch::optim::OptimizerParamGroup> param_groups() override { return {}; }
  void apply(model::Block&) override {}

  // The file's layers; the block's norms and biases become the file's (a start may have
  // folded scales into them, as AWQ does).
  std::map<std::string, CodebookLayer> end_block(model::Block& working) override {
    const model::Block& s = start_.blocks[size_t(layer_)];
    working.attn_norm = s.attn_norm;
    working.ffn_norm = s.ffn_norm;
    std::map<std::string, CodebookLayer> out;
    auto dst = working.linears();
    auto src = s.linears();
    for (size_t i = 0; i < dst.size(); ++i) {
      dst[i].second->bias = src[i].second->bias;
      const std::string name = "blk." + std::to_string(layer_) + "." + dst[i].first;
      const torch::Tensor& w = src[i].second->weight;
      out.emplace(name, io::read_codebook_layer(src_, name, w.size(0), w.size(1)));
    }
    return out;
  }

  std::map<std::string, torch::Tensor> rounded_weights() const override {
    std::map<std::string, torch::Tensor> out;
    for (const auto& [name, lin] : start_.blocks[size_t(layer_)].linears()) out.emplace(name, lin->weight);
    return out;
  }

 private:
  std::string path_;
  io::ModelSource src_;
  model::Model start_;
  int layer_ = 0;
};

}  // namespace

std::unique_ptr<BlockMethod> make_file_start(const std::string& path, const model::Model& target, const LcqOptions& o) {
  return std::make_unique<FileStart>(path, target, o);
}

}  // namespace lcq::quant
