// A tokenizer's vocabulary as data, in the shape GGUF stores it ("tokenizer.ggml.*").
// Every tokenizer source (llama2.c tokenizer.bin, SentencePiece .model, HF tokenizer.json,
// GGUF metadata) is read into a Vocab; every tokenizer is built from one; and the writers
// store one. Plain data: no libtorch, no SentencePiece.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace lcq::tokenizer {

enum class VocabKind {
  None,
  SentencePiece,  // llama-style: pieces with scores, "▁" for spaces, <0xXX> byte fallback
  ByteLevelBPE,   // GPT-2 style: byte-to-unicode pieces, ranked merges, regex pre-tokenizer
};

// GGUF token types.
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct Vocab {
  VocabKind kind = VocabKind::None;
  std::vector<std::string> tokens;
  std::vector<float> scores;          // SentencePiece merge priorities (may be empty for BPE)
  std::vector<int32_t> types;         // TokenType per token (may be empty: all normal)
  std::vector<std::string> merges;    // ByteLevelBPE: "left right", by rank
  std::string pre = "default";        // ByteLevelBPE pre-tokenizer: default(gpt2) | llama3 | smollm | qwen2 | ...
  int bos_id = -1, eos_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false;
  bool add_space_prefix = true;       // SentencePiece: prepend "▁" to the text
  std::string source_path;            // file it came from (a .model lets SentencePiece encode exactly)

  bool empty() const { return kind == VocabKind::None || tokens.empty(); }
  int size() const { return int(tokens.size()); }
};

// Reads tokenizer.bin (llama2.c), *.model (SentencePiece) or tokenizer.json (HF) by content.
// Throws lcq::Error naming the file on any problem.
Vocab load_vocab_file(const std::string& path);
// The same from the file's bytes; `path` names the file in errors, and its extension picks
// the format as load_vocab_file() does.
Vocab load_vocab_bytes(const std::string& path, std::string_view bytes);

}  // namespace lcq::tokenizer

namespace lcq::tokenizer {
// The vocabulary as a Hugging Face tokenizer.json (BPE model; ByteLevel for ByteLevelBPE,
// byte-fallback + "▁" normalizer for SentencePiece with merges derived from the scores),
// such that load_vocab_file() of the result gives back an equivalent tokenizer.
std::string vocab_to_tokenizer_json(const Vocab& vocab);
}  // namespace lcq::tokenizer
