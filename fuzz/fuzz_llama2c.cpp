// llama2.c checkpoints (src/io/llama2c.cpp), legacy and version 1: header validation, the
// layout and size check, then every tensor dequantized (q/k permuted back to rotate-half).
// The file's directory does not exist, so no tokenizer is picked up beside it.
#include "fuzz_common.h"

namespace {
const std::string kName = "/nonexistent-lcq-fuzz/stories.bin";
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  lcq::fuzz::single_thread();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lcq;
  // load_model_file() would send a file starting with "GGUF" to the GGUF target's parser.
  if (size >= 4 && data[0] == 'G' && data[1] == 'G' && data[2] == 'U' && data[3] == 'F') return -1;
  const auto file = fuzz::bytes_as_file(kName, data, size);
  fuzz::expect_clean(kName, [&] {
    const io::ModelSource src = io::load_model_file(file);
    fuzz::dequantize_tensors(src);
  });
  return 0;
}
