// lcq info MODEL: what a model file holds, without loading the weights.
#include "common.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/core/paths.h"
#include "lcq/io/model_source.h"
#include "lcq/quant/allocation.h"

#include <fmt/format.h>

#include <filesystem>
#include <map>
#include <optional>

namespace lcq::cli {

void register_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, shapes, parameter count and tensor types");
  auto opts = std::make_shared<ModelOptions>();
  auto list = std::make_shared<bool>(false);
  auto show_allocation = std::make_shared<bool>(false);
  auto svg = std::make_shared<std::string>();
  opts->add_to(*cmd, ModelOptions::Use::kRead);
  cmd->add_flag("--tensors", *list, "List every tensor with its type and shape");
  cmd->add_flag("--allocation", *show_allocation,
                "A file made with a size target (quantize --target-size/--target-bpw): each layer's bits and its\n"
                "measured sensitivity (the measure the file names: scaled, model or block) at every candidate width");
  cmd->add_option("--allocation-svg", *svg, "Plot the bits per layer of such a file as an SVG heat map");
  cmd->footer("Examples: lcq info SmolLM2-135M-Instruct.Q4_1.gguf --tensors\n"
              "          lcq info model-3bpw.gguf --allocation --allocation-svg bits.svg");
  cmd->callback([opts, list, show_allocation, svg] {
    FilePlan files;
    opts->add_inputs(files);
    files.output_file("--allocation-svg", *svg);
    files.check();
    io::ModelSource src = io::load_model_source(opts->path, opts->load_options());
    const ModelConfig& c = src.config;
    int64_t params = 0, bytes = 0;
    std::map<std::string, std::pair<int64_t, int64_t>> by_type;  // type -> (tensors, params)
    for (const auto& t : src.tensors) {
      params += t.numel();
      bytes += int64_t(t.nbytes);
      auto& e = by_type[io::dtype_name(t.dtype)];
      e.first += 1;
      e.second += t.numel();
    }
    nlohmann::json j;
    j["path"] = src.path;
    j["format"] = io::format_name(src.format);
    j["config"] = c;
    j["parameters"] = params;
    j["tensor_bytes"] = bytes;
    j["bits_per_parameter"] = params ? 8.0 * double(bytes) / double(params) : 0.0;
    for (auto& [type, e] : by_type) j["tensor_types"][type] = {{"tensors", e.first}, {"parameters", e.second}};
    if (!src.vocab.empty())
      j["tokenizer"] = {{"kind", src.vocab.kind == tokenizer::VocabKind::SentencePiece ? "sentencepiece" : "bpe"},
                        {"tokens", src.vocab.size()},
                        {"bos_id", src.vocab.bos_id},
                        {"eos_id", src.vocab.eos_id},
                        {"add_bos", src.vocab.add_bos}};
    // LCQ files (docs/lcq-format.md): the quantization settings from the lcq.* keys.
    for (const char* key : {"method", "bits", "group_size", "rank", "dq_bits", "dq_group", "bits_per_weight"})
      if (src.metadata.contains(std::string("lcq.") + key)) j["quantization"][key] = src.metadata[std::string("lcq.") + key];
    // A size target's allocation (lcq/quant/allocation.h).
    std::optional<quant::Allocation> allocation;
    // A rotated residual stream (lcq quantize --rotate): R = kron(Q, H) diag(s).
    const io::TensorView* mix = src.find("residual_rotation.mix");
    const int64_t rot_a = mix && !mix->shape.empty() ? mix->shape[0] : 0, rot_b = rot_a > 0 ? c.dim / rot_a : 0;
    if (mix) j["residual_rotation"] = {{"mix", rot_a}, {"hadamard", rot_b}};
    if (src.metadata.contains("lcq.allocation")) {
      const nlohmann::json& v = src.metadata["lcq.allocation"];
      try {
        LCQ_CHECK(v.is_string(), "not a string");
        allocation = quant::allocation_from_json(nlohmann::json::parse(v.get<std::string>()));
      } catch (const std::exception& e) {
        fail("{}: metadata 'lcq.allocation' is malformed: {}", src.path, e.what());
      }
      j["allocation"] = {{"target_bytes", allocation->target_bytes},
                         {"linears_at_bits", quant::linears_at_bits(*allocation)},
                         {"embedding_bits", quant::embedding_bits(*allocation)}};
      if (*show_allocation) j["allocation"]["layers"] = quant::to_json(*allocation)["layers"];
    }
    LCQ_CHECK(allocation || (!*show_allocation && svg->empty()),
              "{}: --allocation and --allocation-svg need a file quantized with a size target (no 'lcq.allocation' "
              "key)", src.path);
    if (!svg->empty()) {
      AtomicFile f(*svg);
      f.write(quant::allocation_svg(*allocation, std::filesystem::path(src.path).filename().string()));
      f.commit();
    }
    if (*list)
      for (const auto& t : src.tensors)
        j["tensors"].push_back({{"name", t.name}, {"type", io::dtype_name(t.dtype)}, {"shape", t.shape}});
    if (opts->json) return print_json(j);

    fmt::print("{}  ({})\n", src.path, io::format_name(src.format));
    fmt::print("  architecture  {} ({})\n", arch_name(c.arch), c.family);
    fmt::print("  layers        {}\n  dim           {}\n  ffn dim       {}\n", c.n_layers, c.dim, c.hidden_dim);
    fmt::print("  heads         {} query, {} key/value, head size {}\n", c.n_heads, c.n_kv_heads, c.head_dim);
    fmt::print("  vocabulary    {}\n  context       {}\n", c.vocab_size, c.max_seq_len);
    if (c.arch == Arch::Llama)
      fmt::print("  rope          theta {:g}, scaling {}\n", c.rope_theta, c.rope_scaling.type);
    fmt::print("  tied head     {}\n", c.tie_embeddings ? "yes" : "no");
    if (mix)
      fmt::print("  rotated       residual stream, R = kron({} x {} orthogonal, Hadamard {}) x signs\n", rot_a, rot_a, rot_b);
    // In an LCQ file the tensors hold indices and codebook parameters, not weights.
    const bool lcq_file = j.contains("quantization");
    fmt::print("  {}{} ({} in tensors, {:.2f} bits per {})\n", lcq_file ? "stored values " : "parameters    ",
               human_count(double(params)), human_bytes(double(bytes)), j["bits_per_parameter"].get<double>(),
               lcq_file ? "value" : "parameter");
    for (auto& [type, e] : by_type)
      fmt::print("    {:<6} {:>4} tensors  {:>10} parameters\n", type, e.first, human_count(double(e.second)));
    if (lcq_file) {
      const auto& q = j["quantization"];
      auto get = [&](const char* k) { return q.contains(k) ? q[k].dump() : std::string("?"); };
      fmt::print("  quantization  {} (LCQ codebooks): {}, group {}, rank {}, double quantization {}/{}; {} bits per weight\n",
                 q.value("method", std::string("lcq")), allocation ? "bits per layer below" : get("bits") + " bits",
                 get("group_size"), get("rank"), get("dq_bits"),
                 get("dq_group"), q.contains("bits_per_weight") ? fmt::format("{:.3f}", q["bits_per_weight"].get<double>()) : "?");
    }
    if (allocation) {
      std::vector<std::string> parts;
      for (const auto& [bits, n] : quant::linears_at_bits(*allocation)) parts.push_back(fmt::format("{} at {} bits", n, bits));
      const int embedding = quant::embedding_bits(*allocation);
      fmt::print("  allocation    size target {} bytes: block linears {}{}\n", allocation->target_bytes,
                 fmt::join(parts, ", "), embedding ? fmt::format("; embedding and head {} bits", embedding) : "");
      if (*show_allocation) {
        fmt::print("    {:<22} {:>4}  sensitivity ({}) at each width\n", "layer", "bits",
                   quant::to_string(allocation->measure));
        for (const auto& l : allocation->layers) {
          std::vector<std::string> cells;
          for (size_t k = 0; k < l.widths.size(); ++k) cells.push_back(fmt::format("{}: {:.3e}", l.widths[k], l.error[k]));
          fmt::print("    {:<22} {:>4}  {}\n", l.name, allocation->bits.at(l.name), fmt::join(cells, "  "));
        }
      }
    }
    if (j.contains("tokenizer"))
      fmt::print("  tokenizer     {} tokens ({}), bos {}, eos {}\n", src.vocab.size(),
                 j["tokenizer"]["kind"].get<std::string>(), src.vocab.bos_id, src.vocab.eos_id);
    else
      fmt::print("  tokenizer     none found (pass --tokenizer to commands that need one)\n");
    if (*list)
      for (const auto& t : src.tensors)
        fmt::print("  {:<36} {:<6} [{}]\n", t.name, io::dtype_name(t.dtype), fmt::join(t.shape, ", "));
  });
}

}  // namespace lcq::cli
