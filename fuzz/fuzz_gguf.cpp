// GGUF models (src/io/gguf.cpp, gguf_model.cpp): the file as `lcq info` / `lcq perplexity`
// load it — header, metadata, tensor infos, config and tensor checks, the vocabulary — then
// every dense tensor dequantized and the tokenizer built and run.
#include "fuzz_common.h"

namespace {
const std::string kName = "/nonexistent-lcq-fuzz/model.gguf";
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  lcq::fuzz::single_thread();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lcq;
  const auto file = fuzz::bytes_as_file(kName, data, size);
  fuzz::expect_clean(kName, [&] {
    const io::ModelSource src = io::load_model_file(file);
    fuzz::dequantize_tensors(src);
    fuzz::run_tokenizer(src.vocab);
  });
  return 0;
}
