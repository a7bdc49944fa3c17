// Validates the naive reference implementation itself (tests/reference/naive_llama.*) on the
// real stories260K model, so that the runtime can later be tested against it.
#include "reference/naive_llama.h"

#include "lcq/core/error.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>

using lcq::reference::NaiveLlama;
using lcq::reference::NaiveTokenizer;

namespace {

std::string model_path() { return lcq::test::shared("models/stories260K/stories260K.bin"); }
std::string tokenizer_path() { return lcq::test::shared("models/stories260K/tok512.bin"); }

}  // namespace

TEST(Reference, LoadsStories260KHeader) {
  NaiveLlama m = NaiveLlama::load(model_path());
  EXPECT_EQ(m.config.dim, 64);
  EXPECT_EQ(m.config.hidden_dim, 172);
  EXPECT_EQ(m.config.n_layers, 5);
  EXPECT_EQ(m.config.n_heads, 8);
  EXPECT_EQ(m.config.n_kv_heads, 4);
  EXPECT_EQ(m.vocab_size, 512);
  EXPECT_EQ(m.seq_len, 512);
  EXPECT_TRUE(m.config.shared_classifier);
  EXPECT_TRUE(m.wcls.empty());
}

TEST(Reference, GreedyDecodeTellsTheKnownStory) {
  NaiveLlama m = NaiveLlama::load(model_path());
  NaiveTokenizer tok = NaiveTokenizer::load(tokenizer_path(), m.vocab_size);
  std::vector<int> ids = m.greedy(40);
  std::string text = tok.decode(ids);
  const std::string expected = "Once upon a time, there was a little girl named Lily.";
  EXPECT_EQ(text.substr(0, expected.size()), expected) << text;
}

namespace {

// BOS + SentencePiece(tok512.model) ids of the TinyStories validation text that starts "Once upon a
// time, in a big forest" (shared/data/tinystories/tinystories_val.txt), made with the Python
// sentencepiece package so that they do not depend on the project's tokenizer.
const std::vector<int> kStoryIds = {
    1,   403, 407, 261, 378, 432, 322, 261, 370, 272, 414, 276, 356, 432, 383, 397, 396, 261, 352, 415,
    271, 414, 429, 285, 414, 419, 395, 410, 461, 414, 444, 422, 426, 410, 461, 414, 444, 422, 401, 396,
    267, 280, 421, 288, 430, 426, 338, 280, 421, 288, 430, 266, 259, 276, 406, 432, 352, 414, 340, 419,
    432, 269, 270, 290, 421, 419, 426, 385, 328, 432, 410, 461, 414, 444, 422, 272, 277, 264, 261, 416,
    410, 417, 429, 422, 270, 290, 421, 426, 338, 381, 404, 330, 262, 411, 302, 261, 416, 422, 413, 415,
    299, 397, 354, 312, 329, 431, 414, 276, 426, 359, 413, 286, 262, 415, 271, 422, 269, 280, 414, 341,
    432, 269, 358, 391, 266, 267, 280, 421, 288, 430, 312, 426, 13,  13,  461, 414, 444, 422, 259, 325,
    266, 267, 280, 421, 288, 430, 265, 410, 417, 429, 422, 270, 290, 421, 432, 398, 312, 286, 399, 262,
    421, 417, 339, 285, 422, 426, 338, 259, 325, 266, 261, 428, 412, 271, 269, 261, 428, 412, 271, 432,
    398, 358, 410, 354, 427, 413, 272, 388, 299, 279, 327, 416, 426, 410, 461, 414, 444, 422, 286, 296};

}  // namespace

TEST(Reference, DecodesTheHardCodedIdsBackToTheText) {
  NaiveTokenizer tok = NaiveTokenizer::load(tokenizer_path(), 512);
  std::string text = tok.decode(std::vector<int>(kStoryIds.begin() + 1, kStoryIds.end()));
  const std::string start = "Once upon a time, in a big forest, there lived a rhinoceros named Roxy.";
  EXPECT_EQ(text.substr(0, start.size()), start);
  EXPECT_NE(text.find("climb it.\n\nRoxy tried"), std::string::npos) << text;  // <0x0A> byte pieces
  EXPECT_EQ(tok.decode_piece(5, 13), "\n");
  EXPECT_EQ(tok.decode_piece(NaiveLlama::kBos, 403), "Once");  // leading space dropped after BOS
  EXPECT_EQ(tok.decode_piece(403, 407), " upon");
}

TEST(Reference, RopeMatchesTheCheckpointsFrequencyTables) {
  // llama2.c stores cos/sin(pos * 10000^(-2i/head_size)); the reference recomputes them in double.
  NaiveLlama m = NaiveLlama::load(model_path());
  const int half = m.config.dim / m.config.n_heads / 2;
  ASSERT_EQ(m.freq_cis_real.size(), size_t(m.seq_len) * half);
  double worst = 0;
  for (int pos = 0; pos < m.seq_len; ++pos) {
    for (int i = 0; i < half; ++i) {
      const double angle = pos * std::pow(10000.0, -2.0 * i / (2.0 * half));
      worst = std::max(worst, std::abs(std::cos(angle) - m.freq_cis_real[size_t(pos) * half + i]));
      worst = std::max(worst, std::abs(std::sin(angle) - m.freq_cis_imag[size_t(pos) * half + i]));
    }
  }
  EXPECT_LT(worst, 1e-4);  // the file's tables were computed in fp32 at positions up to 511
}

TEST(Reference, PerplexityOfInDomainTextIsSane) {
  NaiveLlama m = NaiveLlama::load(model_path());
  const double ppl = m.perplexity_gptq(kStoryIds, 64, 3);
  EXPECT_TRUE(std::isfinite(ppl));
  EXPECT_GT(ppl, 1.5);
  EXPECT_LT(ppl, 12.0);  // stories260K reaches ~3.7 on TinyStories; uniform guessing gives 512

  // The same ids in reverse order are not a story: much less likely.
  std::vector<int> reversed(kStoryIds.rbegin(), kStoryIds.rend());
  EXPECT_GT(m.perplexity_gptq(reversed, 64, 3), 4 * ppl);
  // The model's own greedy output is far more likely than human text.
  std::vector<int> greedy = m.greedy(191);
  greedy.insert(greedy.begin(), NaiveLlama::kBos);
  EXPECT_LT(m.perplexity_gptq(greedy, 64, 3), ppl);
}

TEST(Reference, PerplexityWindowsAreIndependentAndTheRemainderIsDropped) {
  NaiveLlama m = NaiveLlama::load(model_path());
  const std::vector<int> first(kStoryIds.begin(), kStoryIds.begin() + 64);
  const std::vector<int> second(kStoryIds.begin() + 64, kStoryIds.begin() + 128);
  const double nll1 = m.mean_nll(first), nll2 = m.mean_nll(second);
  EXPECT_NEAR(m.perplexity_gptq(kStoryIds, 64, 1), std::exp(nll1), 1e-9);
  EXPECT_NEAR(m.perplexity_gptq(kStoryIds, 64, 2), std::exp((nll1 + nll2) / 2), 1e-9);
  // 200 ids in windows of 64: three windows, the last 8 ids are never seen.
  std::vector<int> altered_tail = kStoryIds;
  for (size_t i = 192; i < altered_tail.size(); ++i) altered_tail[i] = 0;
  EXPECT_DOUBLE_EQ(m.perplexity_gptq(kStoryIds, 64, 0), m.perplexity_gptq(altered_tail, 64, 0));
  // A window starts from an empty cache: changing the first window does not change the second.
  std::vector<int> altered_head = kStoryIds;
  altered_head[10] = 5;
  const double mixed = m.perplexity_gptq(altered_head, 64, 2);
  const double altered_nll1 = m.mean_nll({altered_head.begin(), altered_head.begin() + 64});
  EXPECT_NEAR(2 * std::log(mixed) - altered_nll1, nll2, 1e-9);
  EXPECT_GT(std::abs(mixed - m.perplexity_gptq(kStoryIds, 64, 2)), 1e-6);
}

TEST(Reference, KvCacheGivesTheSameLogitsAsAFreshRun) {
  NaiveLlama m = NaiveLlama::load(model_path());
  std::vector<double> last;
  for (int pos = 0; pos < 20; ++pos) last = m.forward_f64(kStoryIds[pos], pos);
  m.reset();
  std::vector<double> again;
  for (int pos = 0; pos < 20; ++pos) again = m.forward_f64(kStoryIds[pos], pos);
  EXPECT_EQ(last, again);
  std::vector<float> as_float = m.forward(kStoryIds[20], 20);
  ASSERT_EQ(as_float.size(), size_t(m.vocab_size));
  // Positions must come in order, and ids must be in the vocabulary.
  EXPECT_THROW(m.forward(kStoryIds[22], 22), lcq::Error);
  EXPECT_THROW(m.forward(512, 21), lcq::Error);
}

TEST(Reference, RejectsCorruptFilesWithOneClearError) {
  const std::string dir = lcq::test::scratch_dir();
  const std::string good = lcq::test::read_bytes(model_path());
  auto expect_error = [](auto load, const std::string& path, const std::string& words) {
    try {
      load(path);
      ADD_FAILURE() << "no error for " << path;
    } catch (const lcq::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(path), std::string::npos) << msg;
      EXPECT_NE(msg.find(words), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  };
  auto load_model = [](const std::string& p) { NaiveLlama::load(p); };
  auto load_tok = [](const std::string& p) { NaiveTokenizer::load(p, 512); };

  lcq::test::write_bytes(dir + "/truncated.bin", good.substr(0, good.size() - 4));
  expect_error(load_model, dir + "/truncated.bin", "does not match the header");
  lcq::test::write_bytes(dir + "/short.bin", good.substr(0, 10));
  expect_error(load_model, dir + "/short.bin", "truncated");
  std::string huge = good;
  const int32_t absurd = 1 << 30;
  std::memcpy(&huge[0], &absurd, 4);  // dim
  lcq::test::write_bytes(dir + "/huge.bin", huge);
  expect_error(load_model, dir + "/huge.bin", "implausible header");
  std::string bad_heads = good;
  const int32_t seven = 7;
  std::memcpy(&bad_heads[12], &seven, 4);  // n_heads that does not divide dim
  lcq::test::write_bytes(dir + "/heads.bin", bad_heads);
  expect_error(load_model, dir + "/heads.bin", "head counts");
  expect_error(load_model, dir + "/missing.bin", "cannot open");

  const std::string tok = lcq::test::read_bytes(tokenizer_path());
  lcq::test::write_bytes(dir + "/tok_truncated.bin", tok.substr(0, tok.size() - 3));
  expect_error(load_tok, dir + "/tok_truncated.bin", "truncated");
  std::string bad_len = tok;
  const int32_t long_piece = 1000;
  std::memcpy(&bad_len[8], &long_piece, 4);  // length of piece 0
  lcq::test::write_bytes(dir + "/tok_len.bin", bad_len);
  expect_error(load_tok, dir + "/tok_len.bin", "has length 1000");
}
