// SentencePiece-style BPE (llama 1/2, Mistral, TinyStories). When the vocabulary came from
// a SentencePiece .model that is still on disk, libsentencepiece encodes the raw text (it
// also applies the model's normalizer). Otherwise — llama2.c tokenizer.bin, GGUF "llama"
// vocabularies, byte-fallback tokenizer.json — the algorithm below is used: spaces become
// "▁", "▁" is prepended, the text is split into UTF-8 characters, and the adjacent pair
// whose concatenation is a piece with the highest score is merged until none is left;
// characters that are not pieces fall back to <0xXX> byte tokens (or <unk>).
#include <unordered_map>

#include "internal.h"
#include "lcq/core/error.h"
#include "merge_queue.h"
#include "lcq/core/mapped_file.h"
#include "spm_library.h"

namespace lcq::tokenizer::detail {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const Vocab& v) : Tokenizer(v), specials_(vocab_) {
    byte_ids_.fill(-1);
    byte_values_.assign(vocab_.tokens.size(), -1);
    for (int id = 0; id < vocab_.size(); ++id) {
      const std::string& piece = vocab_.tokens[size_t(id)];
      const int32_t t = token_type(vocab_, id);
      const int b = parse_byte_token(piece);
      if (b >= 0 && t != kControl && t != kUserDefined) {
        byte_values_[size_t(id)] = int16_t(b);
        if (byte_ids_[size_t(b)] < 0) byte_ids_[size_t(b)] = id;
        has_byte_tokens_ = true;
        continue;
      }
      // SentencePiece only merges into normal, user-defined and unused pieces.
      if (t == kNormal || t == kUserDefined || t == kUnused) pieces_.emplace(piece, id);
      if (t == kUnused) has_unused_ = true;
    }
    bool all_bytes = true;
    for (int id : byte_ids_) all_bytes = all_bytes && id >= 0;
    if (!all_bytes && vocab_.unk_id < 0)
      fail("{}: SentencePiece vocabulary has neither all 256 <0xXX> byte tokens nor an <unk> token",
           origin(vocab_));
    if (ends_with(vocab_.source_path, ".model")) try_load_processor();
  }

  std::vector<int> encode(const std::string& text, bool add_special) const override {
    std::vector<int> out;
    if (add_special && vocab_.add_bos) out.push_back(vocab_.bos_id);
    if (specials_.empty()) {
      encode_text(text, out);
    } else {
      // Each raw span gets the space prefix: at the start and after every special token,
      // as llama.cpp and Hugging Face's legacy llama tokenizer do.
      for (const auto& frag : specials_.split(text)) {
        if (frag.id >= 0)
          out.push_back(frag.id);
        else
          encode_text(frag.text, out);
      }
    }
    if (add_special && vocab_.add_eos) out.push_back(vocab_.eos_id);
    return out;
  }

  std::string decode_token(int prev, int id) const override {
    if (id < 0 || id >= vocab_.size())
      fail("tokenizer: token id {} is outside the vocabulary of {}", id, size());
    const int32_t t = token_type(vocab_, id);
    if (t == kControl) return "";
    if (byte_values_[size_t(id)] >= 0) return std::string(1, char(byte_values_[size_t(id)]));
    std::string s;
    const std::string& piece = vocab_.tokens[size_t(id)];
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
        s += ' ';
        i += kSpaceMark.size();
      } else {
        s += piece[i++];
      }
    }
    // llama2.c: the prefix space the encoder added is not part of the text.
    if (vocab_.add_space_prefix && prev == vocab_.bos_id && !s.empty() && s[0] == ' ') s.erase(0, 1);
    return s;
  }

 private:
  // libsentencepiece is used only if the .model still holds exactly this vocabulary.
  void try_load_processor() {
    std::unique_ptr<SpmModel> p;
    try {
      const auto file = MappedFile::open(vocab_.source_path);
      p = std::make_unique<SpmModel>(
          vocab_.source_path, std::string_view(reinterpret_cast<const char*>(file->data()), file->size()));
    } catch (const Error&) {
      return;  // the file changed since the vocabulary was read: use our own algorithm
    }
    if (p->size() != vocab_.size()) return;
    for (int id = 0; id < vocab_.size(); ++id)
      if (p->piece(id) != vocab_.tokens[size_t(id)]) return;
    processor_ = std::move(p);
  }

  void encode_text(std::string_view raw, std::vector<int>& out) const {
    if (raw.empty()) return;
    if (processor_) {
      processor_->encode(raw, out);
      return;
    }
    std::string text;
    text.reserve(raw.size() + raw.size() / 4 + 3);
    if (vocab_.add_space_prefix) text += kSpaceMark;
    for (char c : raw) {
      if (c == ' ')
        text += kSpaceMark;
      else
        text += c;
    }
    std::vector<uint32_t> lengths;
    lengths.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      const size_t n =
          std::min<size_t>(size_t(utf8_len(static_cast<unsigned char>(text[i]))), text.size() - i);
      lengths.push_back(uint32_t(n));
      i += n;
    }
    std::vector<MergeSymbol> syms = make_symbols(lengths);
    for (auto& s : syms) s.id = lookup(std::string_view(text).substr(s.begin, s.len));

    // Pieces of type "unused" may be formed while merging but are not emitted: they are
    // split back into the two pieces they were made of (SentencePiece's resegmentation).
    std::unordered_map<int, std::pair<std::string_view, std::string_view>> made_of;
    merge_symbols(syms, [&](const MergeSymbol& l, const MergeSymbol& r, double* priority, int* id) {
      const std::string_view joined(text.data() + l.begin, size_t(l.len) + r.len);
      const int found = lookup(joined);
      if (found < 0) return false;
      *priority = vocab_.scores.empty() ? 0.0 : double(vocab_.scores[size_t(found)]);
      *id = found;
      if (has_unused_ && token_type(vocab_, found) == kUnused)
        made_of[found] = {joined.substr(0, l.len), joined.substr(l.len)};
      return true;
    });

    bool last_was_unk = false;
    for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[size_t(i)].next) {
      const MergeSymbol& s = syms[size_t(i)];
      if (s.id >= 0) {
        emit_piece(s.id, made_of, out);
        last_was_unk = false;
        continue;
      }
      if (has_byte_tokens_) {
        for (uint32_t k = 0; k < s.len; ++k) {
          const int b = byte_ids_[static_cast<unsigned char>(text[s.begin + k])];
          out.push_back(b >= 0 ? b : vocab_.unk_id);
        }
      } else if (!last_was_unk) {  // runs of unknown characters become one <unk>
        out.push_back(vocab_.unk_id);
        last_was_unk = true;
      }
    }
  }

  void emit_piece(int id,
                  const std::unordered_map<int, std::pair<std::string_view, std::string_view>>& made_of,
                  std::vector<int>& out) const {
    if (token_type(vocab_, id) == kUnused) {
      auto it = made_of.find(id);
      if (it != made_of.end()) {
        const int l = lookup(it->second.first), r = lookup(it->second.second);
        if (l >= 0 && r >= 0 && l != id && r != id) {
          emit_piece(l, made_of, out);
          emit_piece(r, made_of, out);
          return;
        }
      }
    }
    out.push_back(id);
  }

  int lookup(std::string_view piece) const {
    auto it = pieces_.find(piece);
    return it == pieces_.end() ? -1 : it->second;
  }

  SpecialMatcher specials_;
  std::unordered_map<std::string_view, int> pieces_;  // views into vocab_.tokens
  std::array<int, 256> byte_ids_{};
  std::vector<int16_t> byte_values_;  // per token: the byte of a <0xXX> token, else -1
  bool has_byte_tokens_ = false;
  bool has_unused_ = false;
  std::unique_ptr<SpmModel> processor_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const Vocab& vocab) {
  return std::make_unique<SentencePieceTokenizer>(vocab);
}

}  // namespace lcq::tokenizer::detail
