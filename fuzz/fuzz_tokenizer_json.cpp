// Hugging Face tokenizer.json (src/tokenizer/vocab_json.cpp): BPE vocabularies, merges, added
// tokens, normalizers, pre-tokenizers and post-processors, then the ByteLevel or SentencePiece
// tokenizer built from them, encoding and decoding.
#include "fuzz_common.h"

namespace {
const std::string kName = "/nonexistent-lcq-fuzz/tokenizer.json";
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
