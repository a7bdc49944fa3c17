// Pieces shared by the tokenizer sources: the two concrete tokenizers, the loaders of the
// individual file formats, and small UTF-8 / byte-mapping helpers.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lcq/tokenizer/tokenizer.h"
#include "lcq/tokenizer/vocab.h"

namespace lcq::tokenizer::detail {

// "▁" (U+2581), SentencePiece's visible space.
inline constexpr std::string_view kSpaceMark = "\xE2\x96\x81";

// Length of the UTF-8 sequence starting with byte c; invalid lead bytes count as 1 so that
// malformed text still advances byte by byte.
int utf8_len(unsigned char c);
void append_utf8(std::string& out, uint32_t cp);
// Decodes the code point at s[i] (advancing i); invalid bytes come back as 0xFFFFFFFF.
uint32_t next_code_point(std::string_view s, size_t& i);

// GPT-2's reversible byte <-> printable-character table: every byte becomes one code point
// so that BPE over "characters" is BPE over bytes.
const std::array<std::string, 256>& byte_to_unicode();
// Inverse: code point -> byte, or -1 for code points outside the table.
int unicode_to_byte(uint32_t cp);

// "<0x41>" -> 0x41; -1 when the piece is not a byte token.
int parse_byte_token(std::string_view piece);

// Token texts and regexes quoted in error messages: control characters escaped, long ones
// cut, so that a message stays one line.
std::string one_line(const std::string& s);

// What error messages call the vocabulary: the file it came from, else "tokenizer".
inline std::string origin(const Vocab& v) { return v.source_path.empty() ? "tokenizer" : v.source_path; }

inline int32_t token_type(const Vocab& v, int id) { return v.types.empty() ? kNormal : v.types[size_t(id)]; }

// Literal matcher for special / added tokens (control and user-defined types). Splits text
// into alternating raw-text spans and token ids, leftmost-longest like Hugging Face.
class SpecialMatcher {
 public:
  explicit SpecialMatcher(const Vocab& vocab);
  struct Fragment {
    std::string_view text;  // raw text when id < 0
    int id = -1;
  };
  std::vector<Fragment> split(std::string_view text) const;
  bool empty() const { return count_ == 0; }

 private:
  // Candidates per first byte, longest first.
  std::array<std::vector<std::pair<std::string, int>>, 256> by_first_;
  size_t count_ = 0;
};

// Pre-tokenizer regex sets for ByteLevel BPE, by canonical name.
// canonical_pretokenizer("llama-bpe") == "llama3"; "" when the name is unknown.
std::string canonical_pretokenizer(const std::string& name);
const char* supported_pretokenizers();  // for error messages
const std::vector<std::string>& pretokenizer_regexes(const std::string& canonical);
// The regexes as Hugging Face tokenizer.json knows them.
extern const char* const kGpt2Regex;
extern const char* const kLlama3Regex;
extern const char* const kQwen2Regex;

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const Vocab& vocab);
std::unique_ptr<Tokenizer> make_byte_level_tokenizer(const Vocab& vocab);

// Per-format loaders; `path` is used for error messages and as source_path.
Vocab load_llama2c_vocab(const std::string& path, std::string_view bytes);
Vocab load_sentencepiece_model(const std::string& path, std::string_view bytes);
Vocab load_hf_tokenizer_json(const std::string& path, std::string_view bytes);

// A few facts about a SentencePiece ModelProto that the processor API does not expose,
// read straight from the protobuf wire format.
struct SpmProtoFacts {
  int model_type = 1;                // TrainerSpec.model_type: 1 unigram (default), 2 BPE, 3 word, 4 char
  bool add_dummy_prefix = true;      // NormalizerSpec.add_dummy_prefix
  std::vector<int32_t> piece_types;  // SentencePiece.type per piece (1 normal by default)
};
// Returns false when the bytes are not well-formed protobuf.
bool scan_sentencepiece_proto(std::string_view bytes, SpmProtoFacts* facts);

}  // namespace lcq::tokenizer::detail
