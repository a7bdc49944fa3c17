// A deliberately naive reference implementation of the llama2.c transformer, used only by tests.
// It shares no code with the runtime under test (only lcq/core/error.h for its exceptions):
// its own checkpoint and tokenizer readers, and a one-token-at-a-time forward pass that keeps
// every activation in double precision. Slow and simple on purpose: it is the yardstick.
#pragma once

#include <string>
#include <vector>

namespace lcq::reference {

// The llama2.c legacy ("v0") checkpoint header: 7 int32 in this order.
struct NaiveConfig {
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;  // the absolute value; the sign in the file says "shared classifier"
  int seq_len = 0;
  bool shared_classifier = true;
};

struct NaiveLlama {
  static constexpr int kBos = 1;

  NaiveConfig config;
  int vocab_size = 0;
  int seq_len = 0;

  // Weights exactly as stored: matrices are row-major [out][in].
  std::vector<float> token_embedding;     // [vocab][dim]
  std::vector<float> rms_att, rms_ffn;    // [layer][dim]
  std::vector<float> wq, wo;              // [layer][dim][dim]
  std::vector<float> wk, wv;              // [layer][kv_dim][dim]
  std::vector<float> w1, w3;              // [layer][hidden][dim]
  std::vector<float> w2;                  // [layer][dim][hidden]
  std::vector<float> rms_final;           // [dim]
  std::vector<float> freq_cis_real;       // [seq_len][head_size/2], stored but unused (RoPE is
  std::vector<float> freq_cis_imag;       // recomputed in double); tests compare against them
  std::vector<float> wcls;                // [vocab][dim]; empty when tied to token_embedding

  static NaiveLlama load(const std::string& path);

  // Feeds `token` at position `pos` and returns the logits of the next token. Positions must
  // be fed in order 0, 1, 2, ... after load() or reset(); pos must be < seq_len.
  std::vector<double> forward_f64(int token, int pos);
  std::vector<float> forward(int token, int pos);
  void reset();  // empties the KV cache

  // Greedy decoding from BOS at position 0: returns n_steps generated ids (BOS not included).
  std::vector<int> greedy(int n_steps);

  // Sum of -log p(tokens[t+1] | tokens[0..t]) for t = 0 .. n-2, one fresh cache (resets first).
  double sum_nll(const std::vector<int>& tokens);
  // sum_nll / (n - 1).
  double mean_nll(const std::vector<int>& tokens);
  // The GPTQ-style evaluation: non-overlapping windows of `seqlen` tokens, the remainder
  // dropped, at most `max_windows` windows (<= 0: all), cache reset per window, every token
  // but each window's first scored; returns exp(mean NLL over all scored tokens).
  double perplexity_gptq(const std::vector<int>& tokens, int seqlen, int max_windows);

 private:
  int kv_dim() const { return config.dim / config.n_heads * config.n_kv_heads; }
  std::vector<double> key_cache_, value_cache_;  // [layer][seq_len][kv_dim]
  int filled_ = 0;                               // positions already in the cache
};

// The llama2.c tokenizer.bin, for decoding only.
struct NaiveTokenizer {
  std::vector<std::string> pieces;
  std::vector<float> scores;

  static NaiveTokenizer load(const std::string& path, int vocab_size);
  // One piece as bytes, given the previous token: "<0xXX>" becomes that byte, and the leading
  // space of the first piece after BOS is dropped (as llama2.c's decode does).
  std::string decode_piece(int prev_token, int token) const;
  // Decodes ids that follow a BOS.
  std::string decode(const std::vector<int>& tokens) const;
};

}  // namespace lcq::reference
