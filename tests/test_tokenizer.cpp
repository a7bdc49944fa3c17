// Tokenizer layer: vocabulary loaders (llama2.c tokenizer.bin, SentencePiece .model, HF
// tokenizer.json), our SentencePiece BPE against libsentencepiece on real text, byte-level
// BPE against Hugging Face goldens (a tiny trained vocabulary in CI, SmolLM2 when
// LCQ_SMOLLM2_GGUF is set), tokenizer.json export round trips, and corrupt inputs.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lcq/core/error.h"
#include "lcq/io/model_source.h"
#include "lcq/tokenizer/tokenizer.h"
#include "lcq/tokenizer/vocab.h"
#include "test_util.h"

namespace lcq::tokenizer {
namespace {

using lcq::test::read_bytes;
using lcq::test::scratch_dir;
using lcq::test::shared;
using lcq::test::write_bytes;
using nlohmann::json;

std::string fixture(const std::string& name) {
  return (std::filesystem::path(LCQ_SOURCE_DIR) / "tests" / "fixtures" / "tokenizer" / name).string();
}

std::string tok512_bin() { return shared("models/stories260K/tok512.bin"); }
std::string tok512_model() { return shared("models/stories260K/tok512.model"); }

std::vector<std::string> read_lines(const std::string& path, size_t max_lines) {
  std::vector<std::string> lines;
  std::istringstream in(read_bytes(path));
  for (std::string line; lines.size() < max_lines && std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  return lines;
}

std::vector<std::string> tinystories_lines(size_t n = 4000) {
  return read_lines(shared("data/tinystories/tinystories_val.txt"), n);
}
std::vector<std::string> wikitext_lines(size_t n = 4000) {
  return read_lines(shared("data/wikitext2/wiki.test.joined.txt"), n);
}

// What SentencePiece's default normalizer (remove_extra_whitespaces) does to spaces, which
// tok512.model has on and llama2.c's tokenizer.bin cannot express.
std::string squeeze_spaces(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += c;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::unique_ptr<sentencepiece::SentencePieceProcessor> reference_spm() {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  EXPECT_TRUE(sp->Load(tok512_model()).ok());
  return sp;
}

// Expects load_vocab_file(path) to throw one lcq::Error line naming the file and `what`.
void expect_load_error(const std::string& path, const std::string& what) {
  try {
    load_vocab_file(path);
    ADD_FAILURE() << path << ": no error, expected '" << what << "'";
  } catch (const lcq::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << "expected '" << what << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

// --- llama2.c tokenizer.bin and SentencePiece .model ---------------------------------------

TEST(Vocab, Tok512BinAndModelDescribeTheSameVocabulary) {
  const Vocab bin = load_vocab_file(tok512_bin());
  const Vocab model = load_vocab_file(tok512_model());
  ASSERT_EQ(bin.kind, VocabKind::SentencePiece);
  ASSERT_EQ(model.kind, VocabKind::SentencePiece);
  ASSERT_EQ(bin.size(), 512);
  EXPECT_EQ(bin.tokens, model.tokens);
  EXPECT_EQ(bin.scores, model.scores);
  EXPECT_EQ(bin.types, model.types);
  EXPECT_EQ(bin.tokens[1], "<s>");
  EXPECT_EQ(bin.types[0], kUnknown);
  EXPECT_EQ(bin.types[3], kByte);  // <0x00>
  EXPECT_EQ(std::make_tuple(bin.unk_id, bin.bos_id, bin.eos_id),
            std::make_tuple(model.unk_id, model.bos_id, model.eos_id));
  EXPECT_TRUE(bin.add_bos);
  EXPECT_FALSE(bin.add_eos);
  EXPECT_TRUE(bin.add_space_prefix && model.add_space_prefix);
  EXPECT_EQ(bin.source_path, tok512_bin());
}

TEST(SentencePiece, OwnAlgorithmMatchesLibSentencePieceOnRealText) {
  auto own = make_tokenizer(load_vocab_file(tok512_bin()));  // .bin: our algorithm
  auto sp = reference_spm();
  size_t compared = 0, tokens = 0;
  for (const auto& lines : {tinystories_lines(), wikitext_lines()}) {
    for (const std::string& raw : lines) {
      const std::string text = squeeze_spaces(raw);
      const std::vector<int> expected = sp->EncodeAsIds(text);
      ASSERT_EQ(own->encode(text, false), expected) << "line: " << text;
      ++compared;
      tokens += expected.size();
    }
  }
  EXPECT_GT(compared, 6000u);
  EXPECT_GT(tokens, 200000u);
}

TEST(SentencePiece, ModelFileEncodesExactlyLikeLibSentencePiece) {
  auto tok = make_tokenizer(load_vocab_file(tok512_model()));
  auto sp = reference_spm();
  int normalized_differently = 0;
  for (const std::string& line : wikitext_lines(1500)) {
    normalized_differently += squeeze_spaces(line) != line;
    ASSERT_EQ(tok->encode(line, false), sp->EncodeAsIds(line)) << line;
  }
  EXPECT_GT(normalized_differently, 100);  // the raw lines exercise SentencePiece's normalizer
}

TEST(SentencePiece, WholeWikiTextIsFastAndExact) {
  auto own = make_tokenizer(load_vocab_file(tok512_bin()));
  const std::string text = squeeze_spaces(read_bytes(shared("data/wikitext2/wiki.test.joined.txt")));
  ASSERT_GT(text.size(), 1000000u);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int> ids = own->encode(text, true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<int> expected = reference_spm()->EncodeAsIds(text);
  expected.insert(expected.begin(), 1);
  EXPECT_EQ(ids, expected);
  RecordProperty("wikitext2_tok512_encode_seconds", std::to_string(seconds));
  EXPECT_LT(seconds, 5.0);
}

TEST(SentencePiece, SpecialTokensBosAndDecoding) {
  auto tok = make_tokenizer(load_vocab_file(tok512_bin()));
  const Vocab& v = tok->vocab();
  const std::vector<int> ids = tok->encode("Once upon a time", true);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_NE(ids.back(), 2);
  EXPECT_TRUE(tok->encode("", false).empty());
  EXPECT_EQ(tok->encode("", true), std::vector<int>{1});

  // After BOS the encoder's prefix space disappears; elsewhere "▁" is a space.
  const int once = ids[1];
  ASSERT_EQ(v.tokens[size_t(once)].rfind("\xE2\x96\x81", 0), 0u) << v.tokens[size_t(once)];
  const std::string word = tok->decode_token(1, once);
  EXPECT_EQ(tok->decode_token(5, once), " " + word);
  EXPECT_NE(word[0], ' ');
  EXPECT_EQ(tok->decode_token(0, 1), "");           // control
  EXPECT_EQ(tok->decode_token(0, 3 + 0x0A), "\n");  // <0x0A>
  EXPECT_EQ(tok->decode(ids), "Once upon a time");
  EXPECT_THROW(tok->decode_token(0, 512), lcq::Error);

  // Characters outside the vocabulary fall back to bytes and come back intact.
  const std::string unicode = "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82";
  const std::vector<int> u = tok->encode(unicode, false);
  EXPECT_TRUE(std::any_of(u.begin(), u.end(), [&](int id) { return v.types[size_t(id)] == kByte; }));
  EXPECT_EQ(tok->decode(u), unicode);

  // Control tokens written in the text are single tokens, and the text after them gets
  // the space prefix again (llama.cpp / HF legacy behaviour).
  const std::vector<int> s = tok->encode("hi</s>hi", false);
  const std::vector<int> hi = tok->encode("hi", false);
  std::vector<int> expected = hi;
  expected.push_back(2);
  expected.insert(expected.end(), hi.begin(), hi.end());
  EXPECT_EQ(s, expected);
}

TEST(SentencePiece, DecodeInvertsEncodeOnRealText) {
  auto own = make_tokenizer(load_vocab_file(tok512_bin()));
  for (const auto& lines : {tinystories_lines(1500), wikitext_lines(1500)})
    for (const std::string& line : lines) ASSERT_EQ(own->decode(own->encode(line, true)), line);
}

TEST(SentencePiece, TokenizerJsonRoundTrip) {
  const Vocab original = load_vocab_file(tok512_bin());
  const std::string text = vocab_to_tokenizer_json(original);
  const json j = json::parse(text);
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["byte_fallback"], true);
  EXPECT_GT(j["model"]["merges"].size(), 100u);
  const std::string path = scratch_dir() + "/tokenizer.json";
  write_bytes(path, text);
  const Vocab back = load_vocab_file(path);
  EXPECT_EQ(back.kind, VocabKind::SentencePiece);
  EXPECT_EQ(back.tokens, original.tokens);
  EXPECT_EQ(back.types, original.types);
  EXPECT_EQ(std::make_tuple(back.bos_id, back.eos_id, back.unk_id, back.add_bos, back.add_space_prefix),
            std::make_tuple(1, 2, 0, true, true));
  auto a = make_tokenizer(original), b = make_tokenizer(back);
  for (const std::string& line : tinystories_lines(2000)) ASSERT_EQ(b->encode(line), a->encode(line)) << line;
  for (const std::string& line : wikitext_lines(1000)) ASSERT_EQ(b->encode(line), a->encode(line)) << line;
}

// --- byte-level BPE ---------------------------------------------------------------------

// The tiny trained tokenizer.json with its pre-tokenizer replaced by `pre`'s, as HF writes it.
std::string tiny_with_pre(const std::string& pre) {
  json j = json::parse(read_bytes(fixture("bytelevel_tiny.json")));
  auto byte_level = [](bool use_regex) {
    return json{
        {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
  };
  if (pre == "smollm") {
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
  } else if (pre == "llama3" || pre == "qwen2") {
    const char* re = pre == "llama3" ? R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
                                       R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"
                                     : R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
                                       R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}},
          byte_level(false)}}};
  }
  return j.dump();
}

bool has_control(const Tokenizer& tok, const std::vector<int>& ids) {
  return std::any_of(ids.begin(), ids.end(),
                     [&](int id) { return tok.vocab().types[size_t(id)] == kControl; });
}

TEST(ByteLevel, TinyVocabularyMatchesHuggingFaceForEveryPreTokenizer) {
  const json golden = json::parse(read_bytes(fixture("bytelevel_golden.json")));
  const std::string dir = scratch_dir();
  for (const std::string pre : {"default", "smollm", "llama3", "qwen2"}) {
    SCOPED_TRACE(pre);
    const std::string path = dir + "/" + pre + ".json";
    write_bytes(path, tiny_with_pre(pre));
    const Vocab v = load_vocab_file(path);
    ASSERT_EQ(v.kind, VocabKind::ByteLevelBPE);
    EXPECT_EQ(v.pre, pre);
    EXPECT_EQ(v.types[1], kControl);  // <|im_start|>
    auto tok = make_tokenizer(v);
    // Also the tokenizer.json we write must give the same ids.
    const std::string exported = dir + "/" + pre + ".exported.json";
    write_bytes(exported, vocab_to_tokenizer_json(v));
    auto tok2 = make_tokenizer(load_vocab_file(exported));
    EXPECT_EQ(tok2->vocab().pre, pre);
    size_t n = 0;
    for (const auto& c : golden.at(pre)) {
      const std::string text = c["text"];
      const std::vector<int> expected = c["ids"];
      const std::vector<int> ids = tok->encode(text, false);
      EXPECT_EQ(ids, expected) << "text: " << text;
      EXPECT_EQ(tok2->encode(text, false), expected) << "text: " << text;
      if (!has_control(*tok, ids)) EXPECT_EQ(tok->decode(ids), text);
      ++n;
    }
    EXPECT_GE(n, 20u);
  }
}

TEST(ByteLevel, PreTokenizersDifferWhereTheyShould) {
  const std::string dir = scratch_dir();
  auto load = [&](const std::string& pre) {
    write_bytes(dir + "/t.json", tiny_with_pre(pre));
    return make_tokenizer(load_vocab_file(dir + "/t.json"));
  };
  auto smollm = load("smollm"), llama3 = load("llama3"), def = load("default");
  EXPECT_EQ(smollm->encode("12345", false).size(), 5u);  // one token per digit
  EXPECT_EQ(def->decode(def->encode("a 2024 b", false)), "a 2024 b");
  Vocab bad = def->vocab();
  bad.pre = "no-such-pre";
  try {
    make_tokenizer(bad);
    ADD_FAILURE() << "unknown pre-tokenizer accepted";
  } catch (const lcq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("smollm"), std::string::npos) << e.what();
  }
  // GGUF names for the same pre-tokenizers are understood.
  Vocab alias = def->vocab();
  alias.pre = "llama-bpe";
  EXPECT_EQ(make_tokenizer(alias)->encode("x 12345\n\n y", false), llama3->encode("x 12345\n\n y", false));
}

TEST(ByteLevel, DecodeInvertsEncodeOnRealText) {
  const std::string path = scratch_dir() + "/t.json";
  write_bytes(path, tiny_with_pre("smollm"));
  auto tok = make_tokenizer(load_vocab_file(path));
  for (const auto& lines : {tinystories_lines(1000), wikitext_lines(1000)})
    for (const std::string& line : lines) ASSERT_EQ(tok->decode(tok->encode(line, true)), line);
  const std::string invalid_utf8 = "a\xFF\xC3 b\x80";
  EXPECT_EQ(tok->decode(tok->encode(invalid_utf8, false)), invalid_utf8);
}

// --- SmolLM2 (GGUF vocabulary) against Hugging Face --------------------------------------

class SmolLM2 : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string gguf = lcq::test::smollm2_gguf();
    if (gguf.empty()) GTEST_SKIP() << "LCQ_SMOLLM2_GGUF is not set";
    vocab_ = lcq::io::load_model_source(gguf).vocab;
    golden_ = json::parse(read_bytes(fixture("smollm2_golden.json")));
  }
  Vocab vocab_;
  json golden_;
};

TEST_F(SmolLM2, MatchesHuggingFaceGolden) {
  ASSERT_EQ(vocab_.kind, VocabKind::ByteLevelBPE);
  EXPECT_EQ(vocab_.pre, "smollm");
  auto tok = make_tokenizer(vocab_);
  for (const auto& c : golden_["cases"]) {
    const std::string text = c["text"];
    const std::vector<int> expected = c["ids"];
    const std::vector<int> ids = tok->encode(text, false);
    EXPECT_EQ(ids, expected) << "text: " << text;
    if (!has_control(*tok, ids)) EXPECT_EQ(tok->decode(ids), text);
  }
  EXPECT_EQ(tok->encode("<|im_start|>", false), std::vector<int>{1});
}

TEST_F(SmolLM2, WholeWikiTextTokenCountMatchesHuggingFace) {
  auto tok = make_tokenizer(vocab_);
  const std::string text = read_bytes(shared("data/wikitext2/wiki.test.joined.txt"));
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int> ids = tok->encode(text, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(ids.size(), golden_["wikitext2_test_tokens"].get<size_t>());
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_LT(seconds, 5.0);
}

TEST_F(SmolLM2, TokenizerJsonRoundTrip) {
  const std::string path = scratch_dir() + "/tokenizer.json";
  write_bytes(path, vocab_to_tokenizer_json(vocab_));
  const Vocab back = load_vocab_file(path);
  EXPECT_EQ(back.pre, "smollm");
  EXPECT_EQ(back.tokens, vocab_.tokens);
  EXPECT_EQ(back.merges, vocab_.merges);
  auto tok = make_tokenizer(back);
  for (const auto& c : golden_["cases"])
    EXPECT_EQ(tok->encode(c["text"].get<std::string>(), false), c["ids"].get<std::vector<int>>());
}

// --- corrupt and unsupported inputs -------------------------------------------------------

// Offset of token `index`'s record (score, length, bytes) in a tokenizer.bin.
size_t record_offset(const std::string& bytes, int index) {
  size_t pos = 4;
  for (int i = 0; i < index; ++i) {
    int32_t len;
    std::memcpy(&len, bytes.data() + pos + 4, 4);
    pos += 8 + size_t(len);
  }
  return pos;
}

TEST(Corrupt, TokenizerBin) {
  const std::string good = read_bytes(tok512_bin());
  const std::string dir = scratch_dir();
  const size_t rec17 = record_offset(good, 17);
  auto variant = [&](const std::string& name, const std::string& bytes) {
    const std::string path = dir + "/" + name + ".bin";
    write_bytes(path, bytes);
    return path;
  };
  auto patched_i32 = [&](size_t offset, int32_t value) {
    std::string b = good;
    std::memcpy(&b[offset], &value, 4);
    return b;
  };
  expect_load_error(variant("tiny", good.substr(0, 3)), "too small");
  expect_load_error(variant("mid_record", good.substr(0, rec17 + 5)), "truncated at token 17");
  expect_load_error(variant("mid_piece", good.substr(0, rec17 + 9)), "truncated at token 17");
  expect_load_error(variant("negative", patched_i32(rec17 + 4, -5)), "token 17 has a negative length");
  expect_load_error(variant("huge", patched_i32(rec17 + 4, 0x7FFFFFFF)), "token 17 has length 2147483647");
  expect_load_error(variant("bad_max", patched_i32(0, -1)), "max_token_length");
  std::string nan_score = good;
  const uint32_t nan_bits = 0x7FC00000;
  std::memcpy(&nan_score[rec17], &nan_bits, 4);
  expect_load_error(variant("nan", nan_score), "non-finite score");
  expect_load_error(variant("gguf", "GGUF" + good), "GGUF");
  expect_load_error(variant("empty", ""), "empty");
  // A short but well-formed prefix is accepted only if it still has the three specials.
  expect_load_error(variant("two_tokens", good.substr(0, record_offset(good, 2))), "only 2 tokens");
  expect_load_error(dir + "/missing.bin", "no such tokenizer file");
}

TEST(Corrupt, SentencePieceModel) {
  const std::string good = read_bytes(tok512_model());
  const std::string dir = scratch_dir();
  write_bytes(dir + "/half.model", good.substr(0, good.size() / 2));
  expect_load_error(dir + "/half.model", "not a SentencePiece model");
  std::string garbage(4096, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = char((i * 2654435761u) >> 13);
  write_bytes(dir + "/garbage.model", garbage);
  expect_load_error(dir + "/garbage.model", "SentencePiece");
  write_bytes(dir + "/llama2c.model", read_bytes(tok512_bin()));
  expect_load_error(dir + "/llama2c.model", "SentencePiece");
  // Valid protobuf, but a unigram model: field 2 (TrainerSpec) with model_type (3) = 1.
  write_bytes(dir + "/unigram.model", good + std::string("\x12\x02\x18\x01", 4));
  expect_load_error(dir + "/unigram.model", "model type 'unigram' is not supported");
}

TEST(Corrupt, TokenizerJson) {
  const std::string dir = scratch_dir();
  const json tiny = json::parse(read_bytes(fixture("bytelevel_tiny.json")));
  auto variant = [&](const std::string& name, const std::string& text) {
    const std::string path = dir + "/" + name + ".json";
    write_bytes(path, text);
    return path;
  };
  auto edited = [&](auto&& edit) {
    json j = tiny;
    edit(j);
    return j.dump();
  };
  expect_load_error(variant("syntax", R"({"model": {"type": "BPE", )"), "not valid JSON");
  expect_load_error(variant("array", "[1, 2]"), "not a tokenizer.json");
  expect_load_error(variant("unigram", edited([](json& j) { j["model"]["type"] = "Unigram"; })),
                    "model type 'Unigram' is not supported");
  expect_load_error(variant("vocab_array", edited([](json& j) { j["model"]["vocab"] = json::array(); })),
                    "model.vocab is not an object");
  expect_load_error(variant("bad_id", edited([](json& j) { j["model"]["vocab"]["!"] = -7; })), "invalid id");
  expect_load_error(variant("huge_id", edited([](json& j) { j["model"]["vocab"]["!"] = 1LL << 40; })),
                    "invalid id");
  expect_load_error(variant("dup_id", edited([](json& j) { j["model"]["vocab"]["zzzz"] = 5; })),
                    "token id 5 is used");
  expect_load_error(variant("merge_type", edited([](json& j) { j["model"]["merges"][3] = 42; })), "merge 3");
  expect_load_error(variant("split", edited([](json& j) {
                              j["pre_tokenizer"] = {{"type", "Sequence"},
                                                    {"pretokenizers",
                                                     {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}},
                                                      {{"type", "ByteLevel"}, {"use_regex", false}}}}};
                            })),
                    "unsupported pre-tokenizer Split regex");
  expect_load_error(variant("no_pre", edited([](json& j) { j["pre_tokenizer"] = nullptr; })),
                    "neither ByteLevel nor SentencePiece-style");
  expect_load_error(variant("vocab_type", edited([](json& j) { j["model"]["vocab"]["!"] = "x"; })),
                    "invalid id");
}

TEST(Corrupt, UnusableVocabulary) {
  const Vocab good = load_vocab_file(tok512_bin());
  auto expect_error = [&](Vocab v, const std::string& what) {
    try {
      make_tokenizer(v);
      ADD_FAILURE() << "no error, expected '" << what << "'";
    } catch (const lcq::Error& e) {
      EXPECT_NE(std::string(e.what()).find(tok512_bin()), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  Vocab v = good;
  v.bos_id = 512;
  expect_error(v, "bos id 512 is outside");
  v = good;
  v.scores.pop_back();
  expect_error(v, "511 scores for 512 tokens");
  v = good;
  v.kind = VocabKind::None;
  expect_error(v, "no kind");
  v = good;  // no byte fallback and no <unk>: some text could not be encoded
  for (size_t i = 3; i < 3 + 256; ++i) {
    v.types[i] = kNormal;
    v.tokens[i] = "#" + std::to_string(i);
  }
  v.unk_id = -1;
  expect_error(v, "neither all 256 <0xXX> byte tokens nor an <unk>");
  v.unk_id = 0;  // with <unk>, a run of unknown characters becomes one <unk>
  const int space = int(std::find(v.tokens.begin(), v.tokens.end(), "\xE2\x96\x81") - v.tokens.begin());
  ASSERT_LT(space, v.size());
  EXPECT_EQ(make_tokenizer(v)->encode("\xE6\x97\xA5\xE6\x9C\xAC", false), (std::vector<int>{space, 0}));
  expect_load_error(scratch_dir(), "not a regular file");
}

}  // namespace
}  // namespace lcq::tokenizer
