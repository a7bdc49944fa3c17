// GPT-2 style byte-level BPE (SmolLM, Llama 3, Qwen2, OPT): special tokens are matched
// literally, the rest is cut into chunks by the pre-tokenizer regexes (PCRE2, UTF + UCP),
// each chunk's bytes become GPT-2's printable characters, and adjacent pairs are merged
// by merge rank (lowest first, leftmost on ties) — the algorithm of Hugging Face's BPE.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <mutex>
#include <unordered_map>

#include "internal.h"
#include "lcq/core/error.h"
#include "merge_queue.h"

namespace lcq::tokenizer::detail {
namespace {

class Regex {
 public:
  explicit Regex(const std::string& pattern) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof message);
      fail("tokenizer: pre-tokenizer regex does not compile at offset {}: {}", offset,
           reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Matches and the gaps between them, in order (Hugging Face's Split "Isolated").
  template <typename Fn>
  void split(std::string_view text, Fn&& emit) const {
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos < text.size()) {
      const int rc = pcre2_match(code_, subject, text.size(), pos, 0, md.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) fail("tokenizer: pre-tokenizer regex failed (PCRE2 error {})", rc);
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      size_t begin = ov[0], end = ov[1];
      if (begin > pos) emit(text.substr(pos, begin - pos));
      if (end == begin) {  // never happens with the built-in patterns; do not loop forever
        end = std::min(text.size(), begin + size_t(utf8_len(static_cast<unsigned char>(text[begin]))));
      }
      emit(text.substr(begin, end - begin));
      pos = end;
    }
    if (pos < text.size()) emit(text.substr(pos));
  }

 private:
  pcre2_code* code_ = nullptr;
};

uint64_t pair_key(int left, int right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }

class ByteLevelTokenizer final : public Tokenizer {
 public:
  explicit ByteLevelTokenizer(const Vocab& v) : Tokenizer(v), specials_(vocab_) {
    const std::string pre = canonical_pretokenizer(vocab_.pre);
    if (pre.empty())
      fail("{}: unknown pre-tokenizer '{}' (supported: {})", origin(vocab_), vocab_.pre,
           supported_pretokenizers());
    for (const auto& pattern : pretokenizer_regexes(pre))
      regexes_.push_back(std::make_unique<Regex>(pattern));
    // Llama 3's tokenizer.json sets ignore_merges: a chunk that is a token is taken whole.
    ignore_merges_ = pre == "llama3";

    for (int id = 0; id < vocab_.size(); ++id) token_ids_.emplace(vocab_.tokens[size_t(id)], id);
    const auto& table = byte_to_unicode();
    for (int b = 0; b < 256; ++b) {
      auto it = token_ids_.find(table[size_t(b)]);
      byte_ids_[size_t(b)] = it == token_ids_.end() ? -1 : it->second;
    }
    if (vocab_.merges.empty()) fail("{}: byte-level BPE vocabulary has no merges", origin(vocab_));
    std::string joined;
    for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
      const std::string& m = vocab_.merges[rank];
      // "left right"; pieces never contain a plain space in byte-level BPE, but be tolerant.
      for (size_t sp = m.find(' '); sp != std::string::npos; sp = m.find(' ', sp + 1)) {
        auto l = token_ids_.find(std::string_view(m).substr(0, sp));
        auto r = token_ids_.find(std::string_view(m).substr(sp + 1));
        if (l == token_ids_.end() || r == token_ids_.end()) continue;
        joined.assign(m, 0, sp);
        joined.append(m, sp + 1, std::string::npos);
        auto merged = token_ids_.find(joined);
        if (merged == token_ids_.end()) continue;
        merges_.emplace(pair_key(l->second, r->second), std::make_pair(int(rank), merged->second));
        break;
      }
    }
    if (merges_.empty())
      fail("{}: none of the {} merges names two tokens of the vocabulary", origin(vocab_),
           vocab_.merges.size());
  }

  std::vector<int> encode(const std::string& text, bool add_special) const override {
    std::vector<int> out;
    if (add_special && vocab_.add_bos) out.push_back(vocab_.bos_id);
    for (const auto& frag : specials_.split(text)) {
      if (frag.id >= 0)
        out.push_back(frag.id);
      else
        pretokenize(frag.text, 0, out);
    }
    if (add_special && vocab_.add_eos) out.push_back(vocab_.eos_id);
    return out;
  }

  std::string decode_token(int /*prev*/, int id) const override {
    if (id < 0 || id >= vocab_.size())
      fail("tokenizer: token id {} is outside the vocabulary of {}", id, size());
    const int32_t t = token_type(vocab_, id);
    const std::string& piece = vocab_.tokens[size_t(id)];
    if (t == kControl) return "";
    if (t == kUserDefined) return piece;  // added tokens are stored as plain text
    std::string out;
    for (size_t i = 0; i < piece.size();) {
      const size_t start = i;
      const uint32_t cp = next_code_point(piece, i);
      const int b = unicode_to_byte(cp);
      if (b >= 0)
        out += char(b);
      else
        out.append(piece, start, i - start);
    }
    return out;
  }

 private:
  void pretokenize(std::string_view text, size_t level, std::vector<int>& out) const {
    if (level == regexes_.size()) {
      encode_chunk(text, out);
      return;
    }
    regexes_[level]->split(text, [&](std::string_view piece) { pretokenize(piece, level + 1, out); });
  }

  void encode_chunk(std::string_view chunk, std::vector<int>& out) const {
    if (chunk.empty()) return;
    constexpr size_t kMaxCachedChunk = 64, kMaxCacheEntries = 1 << 17;
    const bool cacheable = chunk.size() <= kMaxCachedChunk;
    std::string key;
    if (cacheable) {
      key.assign(chunk);
      std::lock_guard<std::mutex> lock(cache_mutex_);
      auto it = cache_.find(key);
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int> ids = bpe(chunk);
    out.insert(out.end(), ids.begin(), ids.end());
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      if (cache_.size() >= kMaxCacheEntries) cache_.clear();
      cache_.emplace(std::move(key), std::move(ids));
    }
  }

  std::vector<int> bpe(std::string_view chunk) const {
    std::vector<int> ids;
    if (ignore_merges_) {
      std::string mapped;
      for (char c : chunk) mapped += byte_to_unicode()[static_cast<unsigned char>(c)];
      auto it = token_ids_.find(mapped);
      if (it != token_ids_.end()) return {it->second};
    }
    std::vector<MergeSymbol> syms = make_symbols(std::vector<uint32_t>(chunk.size(), 1));
    for (size_t i = 0; i < chunk.size(); ++i) syms[i].id = byte_ids_[static_cast<unsigned char>(chunk[i])];
    merge_symbols(syms, [&](const MergeSymbol& l, const MergeSymbol& r, double* priority, int* id) {
      if (l.id < 0 || r.id < 0) return false;
      auto it = merges_.find(pair_key(l.id, r.id));
      if (it == merges_.end()) return false;
      *priority = -double(it->second.first);
      *id = it->second.second;
      return true;
    });
    for (int i = 0; i >= 0; i = syms[size_t(i)].next) {
      const int id = syms[size_t(i)].id;
      if (id >= 0)
        ids.push_back(id);
      else if (vocab_.unk_id >= 0)  // a byte the vocabulary cannot spell
        ids.push_back(vocab_.unk_id);
    }
    return ids;
  }

  SpecialMatcher specials_;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
  std::unordered_map<std::string_view, int> token_ids_;       // views into vocab_.tokens
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;  // (left, right) -> (rank, merged id)
  std::array<int, 256> byte_ids_{};
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level_tokenizer(const Vocab& vocab) {
  return std::make_unique<ByteLevelTokenizer>(vocab);
}

}  // namespace lcq::tokenizer::detail
