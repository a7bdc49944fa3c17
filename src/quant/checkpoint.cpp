#include "checkpoint.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/quant/activations.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <deque>
#include <filesystem>
#include <set>

namespace lcq::quant {

namespace fs = std::filesystem;

namespace {

constexpr const char* kRunFile = "run.json";
constexpr const char* kStateFile = "state.gguf";

// How a tensor of the engine's state is stored: its bytes as they are, under the GGUF type
// of the same width (uint8 generator states as I8, listed in lcq.ckpt.uint8).
io::DType stored_dtype(const torch::Tensor& t, const std::string& name) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return io::DType::F32;
    case torch::kBFloat16: return io::DType::BF16;
    case torch::kFloat16: return io::DType::F16;
    case torch::kUInt8:
    case torch::kInt8: return io::DType::I8;
    case torch::kInt64: return io::DType::I64;
    default: fail("internal: checkpoint tensor '{}' has an unsupported type {}", name, c10::toString(t.scalar_type()));
  }
}

torch::ScalarType torch_dtype(io::DType t, bool uint8, const std::string& where) {
  switch (t) {
    case io::DType::F32: return torch::kFloat32;
    case io::DType::BF16: return torch::kBFloat16;
    case io::DType::F16: return torch::kFloat16;
    case io::DType::I8: return uint8 ? torch::kUInt8 : torch::kInt8;
    case io::DType::I64: return torch::kInt64;
    default: fail("{}: unexpected tensor type {}", where, io::dtype_name(t));
  }
}

// A copy of a stored tensor (in `acts` when given).
torch::Tensor read_tensor(const io::GgufFile& f, const std::string& name, bool uint8, const ActivationStore* acts) {
  const io::TensorView* v = f.find_tensor(name);
  LCQ_CHECK(v, "{}: missing tensor '{}'", f.path(), name);
  const torch::ScalarType dt = torch_dtype(v->dtype, uint8, f.path());
  LCQ_CHECK(v->nbytes == size_t(v->numel()) * c10::elementSize(dt), "{}: tensor '{}' has {} bytes", f.path(), name,
            v->nbytes);
  const torch::Tensor view = torch::from_blob(const_cast<uint8_t*>(v->data), v->shape, torch::TensorOptions().dtype(dt));
  return acts ? acts->adopt(view) : view.clone();
}

}  // namespace

Checkpoint::Checkpoint(std::string dir, std::string fingerprint, int n_blocks, bool resume)
    : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)), n_blocks_(n_blocks) {
  std::error_code ec;
  const bool exists = fs::exists(dir_, ec);
  LCQ_CHECK(!exists || fs::is_directory(dir_, ec), "{}: exists and is not a directory (the checkpoint of -o goes there)",
            dir_);
  const bool has_state = exists && fs::exists(path(kStateFile), ec);
  if (has_state && !resume)
    fail("{}: an interrupted quantization to this output left its finished blocks here: add --resume to continue it, "
         "or delete the directory to start over",
         dir_);
  if (has_state) {
    nlohmann::json run;
    try {
      run = nlohmann::json::parse(read_file(path(kRunFile)));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not a valid checkpoint description: {}", path(kRunFile), e.what());
    }
    LCQ_CHECK(run.is_object() && run.value("fingerprint", "") == fingerprint_ && run.value("blocks", -1) == n_blocks_,
              "{}: --resume: this checkpoint is of another run (a different model, calibration text, option or "
              "thread count); run the original command with --resume, or delete the directory to start over",
              dir_);
    const io::GgufFile state(path(kStateFile));
    const int64_t next = state.get_i64("lcq.ckpt.next_block");
    LCQ_CHECK(next >= 1 && next <= n_blocks_, "{}: next block {} out of range", state.path(), next);
    for (int l = 0; l < next; ++l)
      LCQ_CHECK(fs::exists(block_path(l), ec), "{}: missing: the checkpoint is incomplete; delete {} to start over",
                block_path(l), dir_);
    finished_ = int(next);
    return;
  }
  // A new checkpoint (what an earlier run left without finishing a block is replaced).
  if (exists) fs::remove_all(dir_, ec);
  fs::create_directories(dir_, ec);
  LCQ_CHECK(!ec, "{}: cannot create the checkpoint directory: {}", dir_, ec.message());
  write_file_atomic(path(kRunFile), nlohmann::json{{"fingerprint", fingerprint_}, {"blocks", n_blocks_}}.dump(1) + "\n");
}

std::string Checkpoint::block_path(int l) const { return path(fmt::format("block-{}.gguf", l)); }

void Checkpoint::save_block(int l, const model::Block& block, const std::map<std::string, CodebookLayer>& layers,
                            const BlockReport& report) {
  io::GgufWriter w;
  w.set_i32("lcq.ckpt.block", l);
  w.set_string("lcq.ckpt.report", to_json(report).dump());
  nlohmann::json params = nlohmann::json::object();
  std::vector<io::WriteTensor> tensors;
  std::deque<std::vector<uint8_t>> storage;
  for (const auto& [name, layer] : layers) {
    params[name] = {{"rows", layer.rows},   {"cols", layer.cols},       {"bits", layer.bits},
                    {"group", layer.group}, {"rank", layer.rank},       {"dq_bits", layer.dq_bits},
                    {"dq_group", layer.dq_group}};
    io::add_codebook_tensors(name, layer, tensors, storage);
  }
  w.set_string("lcq.ckpt.layers", params.dump());
  // The final norms and biases (AWQ folds its scales into them), f32 as the model file stores them.
  std::deque<torch::Tensor> values;
  const std::string p = fmt::format("blk.{}.", l);
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    if (!t.defined()) return;
    values.push_back(t.detach().to(torch::kFloat32).contiguous());
    w.add_tensor(name, io::DType::F32, values.back().sizes().vec(), values.back().data_ptr());
  };
  add(p + "attn_norm.weight", block.attn_norm.weight);
  add(p + "attn_norm.bias", block.attn_norm.bias);
  add(p + "ffn_norm.weight", block.ffn_norm.weight);
  add(p + "ffn_norm.bias", block.ffn_norm.bias);
  for (const auto& [name, lin] : const_cast<model::Block&>(block).linears()) add(p + name + ".bias", lin->bias);
  for (const io::WriteTensor& t : tensors) w.add_tensor(t.name, t.dtype, t.shape, t.raw);
  w.write(block_path(l));
}

void Checkpoint::save_state(const EngineState& s) {
  io::GgufWriter w;
  w.set_i64("lcq.ckpt.next_block", s.next_block);
  w.set_string("lcq.ckpt.shuffle_rng", s.shuffle_rng);
  std::vector<std::string> uint8_names;
  std::deque<torch::Tensor> keep;
  auto add = [&](const std::string& name, const torch::Tensor& t) {
    if (!t.defined()) return;
    keep.push_back(t.contiguous());
    if (t.scalar_type() == torch::kUInt8) uint8_names.push_back(name);
    w.add_tensor(name, stored_dtype(t, name), keep.back().sizes().vec(), keep.back().data_ptr());
  };
  add("x_q", s.x_q);
  add("x_fp", s.x_fp);
  add("torch_rng", s.torch_rng);
  std::vector<std::string> method_keys;
  for (const auto& [key, value] : s.method) {
    method_keys.push_back(key);
    add("method." + key, value);
  }
  w.set_string_array("lcq.ckpt.method", method_keys);
  w.set_string_array("lcq.ckpt.uint8", uint8_names);
  w.write(path(kStateFile));
  finished_ = s.next_block;
}

EngineState Checkpoint::state(const ActivationStore* acts) const {
  const io::GgufFile f(path(kStateFile));
  const std::vector<std::string> u8 = f.get_string_array("lcq.ckpt.uint8");
  const std::set<std::string> uint8(u8.begin(), u8.end());
  auto get = [&](const std::string& name, const ActivationStore* store) {
    return f.find_tensor(name) ? read_tensor(f, name, uint8.count(name) > 0, store) : torch::Tensor();
  };
  EngineState s;
  s.next_block = int(f.get_i64("lcq.ckpt.next_block"));
  s.shuffle_rng = f.get_string("lcq.ckpt.shuffle_rng");
  s.x_q = get("x_q", acts);
  s.x_fp = get("x_fp", acts);
  s.torch_rng = get("torch_rng", nullptr);
  for (const std::string& key : f.get_string_array("lcq.ckpt.method")) s.method[key] = get("method." + key, nullptr);
  return s;
}

std::shared_ptr<const io::GgufFile> Checkpoint::block_file(int l) const {
  auto f = std::make_shared<const io::GgufFile>(block_path(l));
  LCQ_CHECK(f->get_i64("lcq.ckpt.block") == l, "{}: holds block {}, not {}", f->path(), f->get_i64("lcq.ckpt.block"), l);
  return f;
}

BlockReport Checkpoint::report(int l) const {
  const io::GgufFile f(block_path(l));
  try {
    return block_report_from_json(nlohmann::json::parse(f.get_string("lcq.ckpt.report")));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid block report: {}", f.path(), e.what());
  }
}

std::map<std::string, CodebookLayer> Checkpoint::layer_parameters(int l) const {
  const io::GgufFile f(block_path(l));
  std::map<std::string, CodebookLayer> out;
  try {
    const nlohmann::json all = nlohmann::json::parse(f.get_string("lcq.ckpt.layers"));
    for (const auto& [name, p] : all.items()) {
      CodebookLayer& c = out[name];
      c.rows = p.at("rows").get<int64_t>();
      c.cols = p.at("cols").get<int64_t>();
      c.bits = p.at("bits").get<int>();
      c.group = p.at("group").get<int>();
      c.rank = p.at("rank").get<int>();
      c.dq_bits = p.at("dq_bits").get<int>();
      c.dq_group = p.at("dq_group").get<int>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid layer parameters: {}", f.path(), e.what());
  }
  return out;
}

void Checkpoint::remove() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

}  // namespace lcq::quant
