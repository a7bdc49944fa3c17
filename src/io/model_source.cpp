// Format detection and the ModelSource lookups shared by every loader.
#include "formats.h"
#include "lcq/core/error.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace lcq::io {

namespace fs = std::filesystem;

const char* format_name(Format f) {
  switch (f) {
    case Format::Llama2c: return "llama2c";
    case Format::GGUF: return "gguf";
    case Format::HF: return "hf";
  }
  return "unknown";
}

const TensorView* ModelSource::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorView& ModelSource::get(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail("{}: tensor '{}' not found", path, name);
  return *t;
}

std::string hf_directory_of(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return path;
  // A Hugging Face directory may also be named by one of its files.
  const fs::path p(path);
  if (p.filename() == "config.json" || p.extension() == ".safetensors" ||
      p.filename() == "model.safetensors.index.json")
    return p.has_parent_path() ? p.parent_path().string() : std::string(".");
  return "";
}

std::vector<std::string> hf_input_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path p = it->path();
    const std::string name = p.filename().string();
    static const char* const named[] = {"config.json",        "model.safetensors.index.json", "tokenizer.json",
                                        "tokenizer_config.json", "tokenizer.model", "generation_config.json",
                                        "special_tokens_map.json"};
    if (p.extension() == ".safetensors" || std::find(std::begin(named), std::end(named), name) != std::end(named))
      out.push_back(p.string());
  }
  return out;
}

ModelSource load_model_source(const std::string& path, const LoadOptions& opts) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) fail("{}: no such file or directory", path);
  // A FIFO would block the format detection below; a device never ends.
  if (!fs::is_directory(st) && !fs::is_regular_file(st)) fail("{}: not a regular file or directory", path);
  if (const std::string dir = hf_directory_of(path); !dir.empty()) return load_hf_model(dir, opts);

  return load_model_file(MappedFile::open(path), opts);
}

ModelSource load_model_file(std::shared_ptr<const MappedFile> file, const LoadOptions& opts) {
  if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) return load_gguf_model(std::move(file), opts);
  // llama2.c legacy checkpoints carry no magic; that loader validates the header instead.
  return load_llama2c_model(std::move(file), opts);
}

}  // namespace lcq::io
