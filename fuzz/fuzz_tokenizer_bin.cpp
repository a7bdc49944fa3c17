// llama2.c tokenizer.bin (src/tokenizer/vocab_load.cpp), read as load_vocab_file() reads a
// file of that name, then the SentencePiece tokenizer built from it, encoding and decoding.
#include "fuzz_common.h"

namespace {
const std::string kName = "/nonexistent-lcq-fuzz/tokenizer.bin";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lcq;
  fuzz::expect_clean(kName, [&] {
    const tokenizer::Vocab vocab =
        tokenizer::load_vocab_bytes(kName, std::string_view(reinterpret_cast<const char*>(data), size));
    fuzz::run_tokenizer(vocab);
  });
  return 0;
}
