// SentencePiece .model files are parsed by libsentencepiece (not ours, not fuzzed here), but
// lcq first scans the ModelProto's wire format itself for the model type, the dummy-prefix
// flag and the piece types (scan_sentencepiece_proto in src/tokenizer/vocab_load.cpp): that
// scanner is this target. It reports malformed input by returning false.
#include "../src/tokenizer/internal.h"

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lcq::tokenizer::detail::SpmProtoFacts facts;
  (void)lcq::tokenizer::detail::scan_sentencepiece_proto(
      std::string_view(reinterpret_cast<const char*>(data), size), &facts);
  return 0;
}
