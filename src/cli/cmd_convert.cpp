// lcq convert MODEL OUT: move a model between formats (GGUF file or Hugging Face directory).
#include "common.h"

#include "lcq/core/error.h"
#include "lcq/core/progress.h"
#include "lcq/io/writers.h"

#include <fmt/format.h>

namespace lcq::cli {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert", "Convert a model to GGUF or a Hugging Face safetensors directory");
  auto opts = std::make_shared<ModelOptions>();
  struct Conv {
    std::string out, to, type = "f32";
  };
  auto o = std::make_shared<Conv>();
  opts->add_to(*cmd, ModelOptions::Use::kRead);
  cmd->add_option("out", o->out, "Output: a .gguf file or a directory (Hugging Face layout)")->required();
  cmd->add_option("--to", o->to, "Output format (default: gguf if OUT ends with .gguf, else hf)")
      ->check(CLI::IsMember({"gguf", "hf"}));
  cmd->add_option("--type", o->type, "Stored type of the weights")
      ->check(CLI::IsMember(io::float_type_names()))
      ->capture_default_str();
  cmd->footer(
      "Quantized source tensors (Q4_1, Q8_0, ...) are dequantized. Norms and biases stay f32.\n"
      "Example: lcq convert stories260K.bin stories260K.gguf --type f32");
  cmd->callback([opts, o] {
    LCQ_CHECK(!o->out.empty(), "the output path is empty");
    const std::string to = !o->to.empty() ? o->to : (ends_with(o->out, ".gguf") ? "gguf" : "hf");
    FilePlan files;
    opts->add_inputs(files);
    add_model_output(files, "the output", o->out, to == "gguf");
    files.check();
    io::ModelSource src = io::load_model_source(opts->path, opts->load_options());
    files.input("the model's tokenizer", src.vocab.source_path);  // e.g. a tokenizer.bin found beside it
    files.check();
    const io::DType type = io::parse_float_type(o->type, "--type");
    LCQ_CHECK(!src.vocab.empty(), "{}: no tokenizer to write with the model; pass --tokenizer FILE", opts->path);

    std::vector<std::vector<float>> buffers;
    std::vector<io::WriteTensor> tensors;
    buffers.reserve(src.tensors.size());
    Progress progress("reading", int64_t(src.tensors.size()), !opts->quiet && !opts->json);
    for (const auto& t : src.tensors) {
      buffers.emplace_back(static_cast<size_t>(t.numel()));
      io::load_tensor_f32(src, t, buffers.back().data());
      // 1-D tensors (norms, biases) stay f32: they are tiny and precision-sensitive.
      io::WriteTensor w;
      w.name = t.name;
      w.shape = t.shape;
      w.dtype = t.shape.size() >= 2 ? type : io::DType::F32;
      w.f32 = buffers.back().data();
      tensors.push_back(std::move(w));
      progress.add();
    }
    progress.finish();
    io::WriteOptions wo;
    wo.extra_metadata["general.source"] = opts->path;
    if (to == "gguf")
      io::write_gguf_model(o->out, src.config, tensors, src.vocab, wo);
    else
      io::write_hf_model(o->out, src.config, tensors, src.vocab, wo);
    if (opts->json) return print_json({{"input", opts->path}, {"output", o->out}, {"format", to}, {"type", o->type}});
    fmt::print("wrote {} ({}, {} tensors, {})\n", o->out, to, tensors.size(), o->type);
  });
}

}  // namespace lcq::cli
