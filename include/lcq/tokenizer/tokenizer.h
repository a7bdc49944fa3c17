// Text <-> token ids. Two algorithms cover the supported models: SentencePiece-style BPE by
// piece scores with byte fallback (llama 1/2, Mistral, TinyStories) and GPT-2 byte-level BPE
// by merge ranks after a regex pre-tokenizer (llama 3, Qwen2, SmolLM, OPT).
#pragma once

#include "lcq/tokenizer/vocab.h"

#include <memory>
#include <string>
#include <vector>

namespace lcq::tokenizer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // add_special: prepend BOS / append EOS as the vocabulary says (add_bos / add_eos).
  // Special tokens written in the text (e.g. "<|im_start|>") are matched as single tokens.
  virtual std::vector<int> encode(const std::string& text, bool add_special = true) const = 0;
  // The text of one token in context (SentencePiece drops the leading space after BOS).
  virtual std::string decode_token(int prev, int id) const = 0;
  std::string decode(const std::vector<int>& ids) const;

  const Vocab& vocab() const { return vocab_; }
  int bos_id() const { return vocab_.bos_id; }
  int eos_id() const { return vocab_.eos_id; }
  int size() const { return vocab_.size(); }

 protected:
  explicit Tokenizer(Vocab v) : vocab_(std::move(v)) {}
  Vocab vocab_;
};

// Builds the right tokenizer for the vocabulary; throws lcq::Error if it is unusable.
std::unique_ptr<Tokenizer> make_tokenizer(const Vocab& vocab);

}  // namespace lcq::tokenizer
