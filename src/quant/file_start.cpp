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

// True when the two tensors are both undefined or equal up to the runtime's rounding (a bf16
// runtime rounds the file's f32 norms); folded scales change them by far more.
bool same_tensor(const torch::Tensor& a, const torch::Tensor& b) {
  if (!a.defined() || !b.defined()) return a.defined() == b.defined();
  if (a.sizes() != b.sizes()) return false;
  const torch::Tensor x = a.to(torch::kFloat32), y = b.to(torch::kFloat32);
  return (x - y).abs().le(1e-2 * y.abs() + 1e-6).all().item<bool>();
}

class FileStart final : public BlockMethod {
 public:
  FileStart(const std::string& path, const model::Model& target, const LcqOptions& o) : path_(path) {
    src_ = io::load_model_source(path);
    // Only the file's norms, biases and shapes are used from the model: its layers are read
    // as CodebookLayers per block. Packed, the model does not hold a dense copy of them.
    model::RuntimeOptions rt;
    rt.packed = true;
    rt.act_bits = 0;
    rt.kv_bits = 0;
    start_ = model::build_model(src_, rt);
    LCQ_CHECK(start_.blocks.size() == target.blocks.size(), "{}: --init-from: the file has {} blocks, the model {}",
              path, start_.blocks.size(), target.blocks.size());
    // --init-codes nearest assigns the model's full-precision weights to the file's grid, so
    // the grid must be in the model's basis. A start that folded scales into the norms (AWQ,
    // or a SmoothQuant the run does not repeat) has its grid in another basis; AWQ also folds
    // scales between linears (up -> down), which the norms do not show.
    const bool nearest = o.start_codes == StartCodes::kNearest;
    if (nearest) {
      const auto method = src_.metadata.find("lcq.method");
      LCQ_CHECK(method == src_.metadata.end() || !method->is_string() || method->get<std::string>() != "awq",
                "{}: --init-codes nearest needs a start in the model's own basis; this AWQ file folded scales "
                "into its norms and layers: use --init-codes keep, or --init awq",
                path);
    }
    for (size_t l = 0; l < target.blocks.size(); ++l) {
      const model::Block& tb = target.blocks[l];
      const model::Block& sb = start_.blocks[l];
      auto want = tb.linears();
      auto have = sb.linears();
      for (size_t i = 0; i < want.size(); ++i) {
        const std::string name = model::layer_name(l, want[i].first);
        const torch::Tensor& w = want[i].second->weight;
        const int64_t rows = have[i].second->out_features(), cols = have[i].second->in_features();
        LCQ_CHECK(rows == w.size(0) && cols == w.size(1), "{}: --init-from: {} has shape {}x{}, the model's is {}",
                  path, name, rows, cols, fmt::join(w.sizes(), "x"));
        LCQ_CHECK(io::has_codebook_layer(src_, name), "{}: --init-from: {} is not a quantized layer", path, name);
        const CodebookLayer layer = io::read_codebook_layer(src_, name, w.size(0), w.size(1));
        LCQ_CHECK(layer.rank == 1 && layer.bits == o.bits && layer.group == std::min<int64_t>(o.group, w.size(1)),
                  "{}: --init-from: {} is rank {}, {} bits, group {}; LCQ --bits {} --group {} starts from a "
                  "rank-one layer of the same bits and group",
                  path, name, layer.rank, layer.bits, layer.group, o.bits, o.group);
        LCQ_CHECK(!nearest || same_tensor(have[i].second->bias, want[i].second->bias),
                  "{}: --init-codes nearest needs a start in the model's own basis; the bias of {} differs from the "
                  "model's (folded scales): use --init-codes keep",
                  path, name);
      }
      const std::string blk = "blk." + std::to_string(l);
      LCQ_CHECK(!nearest || (same_tensor(sb.attn_norm.weight, tb.attn_norm.weight) &&
                             same_tensor(sb.attn_norm.bias, tb.attn_norm.bias) &&
                             same_tensor(sb.ffn_norm.weight, tb.ffn_norm.weight) &&
                             same_tensor(sb.ffn_norm.bias, tb.ffn_norm.bias)),
                "{}: --init-codes nearest needs a start in the model's own basis; the norms of {} differ from the "
                "model's (scales folded into them, as AWQ or SmoothQuant do): use --init-codes keep",
                path, blk);
    }
  }

  void begin_block(int layer, const model::Block&, const std::vector<torch::Tensor>&) override { layer_ = layer; }
  std::vector<torch::optim::OptimizerParamGroup> param_groups() override { return {}; }
  void apply(model::Block&) override {}

  // The file's layers; the block's norms and biases become the file's (a start may have
  // folded scales into them, as AWQ does). The weights stay the model's: LCQ quantizes those
  // (full_precision_weights() is empty), never the file's rounded ones.
  std::map<std::string, CodebookLayer> end_block(model::Block& working) override {
    const model::Block& s = start_.blocks[size_t(layer_)];
    working.attn_norm = s.attn_norm;
    working.ffn_norm = s.ffn_norm;
    std::map<std::string, CodebookLayer> out;
    auto dst = working.linears();
    auto src = s.linears();
    for (size_t i = 0; i < dst.size(); ++i) {
      dst[i].second->bias = src[i].second->bias;
      const std::string name = model::layer_name(layer_, dst[i].first);
      out.emplace(name, io::read_codebook_layer(src_, name, src[i].second->out_features(), src[i].second->in_features()));
    }
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
