// Shared tokenizer machinery: UTF-8 and byte-mapping helpers, special-token matching,
// pre-tokenizer names, Tokenizer::decode and the factory.
#include <algorithm>

#include "internal.h"
#include "lcq/core/error.h"

namespace lcq::tokenizer {

namespace detail {

int utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const int n = utf8_len(c);
  if (n == 1 || i + size_t(n) > s.size()) {
    ++i;
    return c < 0x80 ? c : 0xFFFFFFFFu;
  }
  uint32_t cp = c & (0xFF >> (n + 1));
  for (int k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + size_t(k)]);
    if ((cc & 0xC0) != 0x80) {
      ++i;
      return 0xFFFFFFFFu;
    }
    cp = (cp << 6) | (cc & 0x3F);
  }
  i += size_t(n);
  return cp;
}

namespace {
// Bytes that GPT-2 keeps as themselves: printable Latin-1 except the space and soft hyphen.
bool byte_is_printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

struct ByteTables {
  std::array<std::string, 256> to_unicode;
  std::array<int, 512> to_byte;  // all mapped code points are < 512
  ByteTables() {
    to_byte.fill(-1);
    int next_free = 256;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = byte_is_printable(b) ? uint32_t(b) : uint32_t(next_free++);
      append_utf8(to_unicode[size_t(b)], cp);
      to_byte[cp] = b;
    }
  }
};
const ByteTables& byte_tables() {
  static const ByteTables tables;
  return tables;
}
}  // namespace

const std::array<std::string, 256>& byte_to_unicode() { return byte_tables().to_unicode; }

int unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_tables().to_byte[cp] : -1; }

std::string one_line(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (out.size() >= 80) return out + "...";
    if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\x{:02x}", int(c));
    else
      out += c;
  }
  return out;
}

int parse_byte_token(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

SpecialMatcher::SpecialMatcher(const Vocab& vocab) {
  for (int id = 0; id < vocab.size(); ++id) {
    const int32_t t = token_type(vocab, id);
    const std::string& s = vocab.tokens[size_t(id)];
    if ((t != kControl && t != kUserDefined) || s.empty()) continue;
    by_first_[static_cast<unsigned char>(s[0])].emplace_back(s, id);
    ++count_;
  }
  for (auto& list : by_first_) {
    std::stable_sort(list.begin(), list.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
}

std::vector<SpecialMatcher::Fragment> SpecialMatcher::split(std::string_view text) const {
  std::vector<Fragment> out;
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const auto& candidates = by_first_[static_cast<unsigned char>(text[i])];
    int matched_id = -1;
    size_t matched_len = 0;
    for (const auto& [s, id] : candidates) {
      if (text.compare(i, s.size(), s) == 0) {
        matched_id = id;
        matched_len = s.size();
        break;  // longest first
      }
    }
    if (matched_id < 0) {
      ++i;
      continue;
    }
    if (i > start) out.push_back({text.substr(start, i - start), -1});
    out.push_back({{}, matched_id});
    i += matched_len;
    start = i;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

// Pre-tokenizer regexes. These are the patterns Hugging Face tokenizers publish for each
// family (GPT-2's ByteLevel, Llama 3's and Qwen2's Split); "smollm" is Hugging Face's
// Digits(individual_digits) followed by ByteLevel, i.e. every digit alone, then GPT-2.
const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Regex = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
                                 R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
                                R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string canonical_pretokenizer(const std::string& name) {
  static const std::pair<const char*, const char*> aliases[] = {
      {"default", "default"},  {"gpt2", "default"},    {"gpt-2", "default"},          {"llama3", "llama3"},
      {"llama-bpe", "llama3"}, {"llama-v3", "llama3"}, {"smaug-bpe", "llama3"},       {"dbrx", "llama3"},
      {"falcon3", "llama3"},   {"qwen2", "qwen2"},     {"deepseek-r1-qwen", "qwen2"}, {"smollm", "smollm"},
      {"starcoder", "smollm"}, {"refact", "smollm"},
  };
  for (const auto& [alias, canonical] : aliases)
    if (name == alias) return canonical;
  return "";
}

const char* supported_pretokenizers() {
  return "default/gpt2, llama3 (llama-bpe, llama-v3, smaug-bpe, dbrx, falcon3), qwen2 (deepseek-r1-qwen), "
         "smollm (starcoder, refact)";
}

const std::vector<std::string>& pretokenizer_regexes(const std::string& canonical) {
  static const std::vector<std::string> gpt2 = {kGpt2Regex};
  static const std::vector<std::string> llama3 = {kLlama3Regex};
  static const std::vector<std::string> qwen2 = {kQwen2Regex};
  static const std::vector<std::string> smollm = {R"(\p{N})", kGpt2Regex};
  if (canonical == "llama3") return llama3;
  if (canonical == "qwen2") return qwen2;
  if (canonical == "smollm") return smollm;
  return gpt2;
}

}  // namespace detail

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string out;
  // The first token is decoded as if it followed BOS, so a SentencePiece text loses the
  // space prefix the encoder added, as SentencePiece's own decoder does.
  int prev = vocab_.bos_id;
  for (int id : ids) {
    out += decode_token(prev, id);
    prev = id;
  }
  return out;
}

std::unique_ptr<Tokenizer> make_tokenizer(const Vocab& vocab) {
  if (vocab.tokens.empty()) fail("{}: the vocabulary is empty", detail::origin(vocab));
  const std::string who = detail::origin(vocab);
  const size_t n = vocab.tokens.size();
  if (!vocab.types.empty() && vocab.types.size() != n)
    fail("{}: {} token types for {} tokens", who, vocab.types.size(), n);
  if (!vocab.scores.empty() && vocab.scores.size() != n)
    fail("{}: {} scores for {} tokens", who, vocab.scores.size(), n);
  for (const auto& [name, id] : {std::pair{"bos", vocab.bos_id}, std::pair{"eos", vocab.eos_id},
                                 std::pair{"unk", vocab.unk_id}, std::pair{"pad", vocab.pad_id}}) {
    if (id < -1 || id >= vocab.size()) fail("{}: {} id {} is outside the vocabulary of {}", who, name, id, n);
  }
  if (vocab.add_bos && vocab.bos_id < 0) fail("{}: add_bos is set but there is no BOS token", who);
  if (vocab.add_eos && vocab.eos_id < 0) fail("{}: add_eos is set but there is no EOS token", who);
  switch (vocab.kind) {
    case VocabKind::SentencePiece:
      return detail::make_sentencepiece_tokenizer(vocab);
    case VocabKind::ByteLevelBPE:
      return detail::make_byte_level_tokenizer(vocab);
    case VocabKind::None:
      break;
  }
  fail("{}: the vocabulary has no kind", who);
}

}  // namespace lcq::tokenizer
