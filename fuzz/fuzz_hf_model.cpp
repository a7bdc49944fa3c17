// Hugging Face model directories (src/io/hf_model.cpp): config.json (llama, mistral, qwen2,
// opt; rope scaling), the expected tensors and their shapes against model.safetensors, the
// shard index, tokenizer.json and tokenizer_config.json (special token ids). The loader takes
// a directory, so the input is split into those files (kPartSeparator between them, an empty
// part: no such file), written into a scratch directory and loaded with load_model_source(),
// exactly as `lcq info DIR` loads it.
#include "fuzz_common.h"
#include "hf_parts.h"

#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;
std::string g_dir;

void write_part(const std::string& name, std::string_view bytes) {
  const fs::path p = fs::path(g_dir) / name;
  std::error_code ec;
  fs::remove(p, ec);
  if (bytes.empty()) return;
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) lcq::fuzz::finding("cannot write " + p.string());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  lcq::fuzz::single_thread();
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/lcq-fuzz-hf-XXXXXX";
  if (!mkdtemp(pattern.data())) lcq::fuzz::finding("mkdtemp failed");
  g_dir = pattern;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lcq;
  const std::vector<std::string_view> parts =
      fuzz::split_parts(std::string_view(reinterpret_cast<const char*>(data), size));
  for (size_t i = 0; i < fuzz::kHfFiles.size(); ++i)
    write_part(fuzz::kHfFiles[i], i < parts.size() ? parts[i] : std::string_view());
  fuzz::expect_clean(g_dir, [&] {
    const io::ModelSource src = io::load_model_source(g_dir);
    fuzz::dequantize_tensors(src);
    fuzz::run_tokenizer(src.vocab);
  });
  return 0;
}
