// Format detection and the ModelSource lookups shared by every loader.
#include "formats.h"
#include "lcq/core/error.h"

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

ModelSource load_model_source(const std::string& path, const LoadOptions& opts) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) fail("{}: no such file or directory", path);
  if (fs::is_directory(st)) return load_hf_model(path, opts);

  // A Hugging Face directory may also be named by one of its files.
  const fs::path p(path);
  if (p.filename() == "config.json" || p.extension() == ".safetensors" ||
      p.filename() == "model.safetensors.index.json") {
    const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
    return load_hf_model(dir.string(), opts);
  }

  return load_model_file(MappedFile::open(path), opts);
}

ModelSource load_model_file(std::shared_ptr<const MappedFile> file, const LoadOptions& opts) {
  if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) return load_gguf_model(std::move(file), opts);
  // llama2.c legacy checkpoints carry no magic; that loader validates the header instead.
  return load_llama2c_model(std::move(file), opts);
}

}  // namespace lcq::io
