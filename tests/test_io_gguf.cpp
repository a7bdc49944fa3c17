// GGUF: dequantization against the reference implementation (fixtures made by
// tools/make_gguf_fixtures.py), writer -> reader round trips, the model loader and writer,
// SmolLM2 (when LCQ_SMOLLM2_GGUF is set), and corrupt input of every kind.
#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/io/gguf.h"
#include "lcq/io/writers.h"
#include "../src/io/formats.h"
#include "gguf_test_helpers.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

using namespace lcq;
using namespace lcq::io;
using namespace lcq::test;

// ---- element types and dequantization ----------------------------------------------------

TEST(GgufTypes, SizesAndNames) {
  EXPECT_EQ(dtype_nbytes(DType::F32, 10, "x"), 40u);
  EXPECT_EQ(dtype_nbytes(DType::BF16, 10, "x"), 20u);
  EXPECT_EQ(dtype_nbytes(DType::Q8_0, 64, "x"), 68u);
  EXPECT_EQ(dtype_nbytes(DType::Q4_0, 64, "x"), 36u);
  EXPECT_EQ(dtype_nbytes(DType::Q4_1, 64, "x"), 40u);
  EXPECT_EQ(dtype_nbytes(DType::Q4_K, 512, "x"), 288u);
  EXPECT_EQ(dtype_nbytes(DType::Q5_K, 256, "x"), 176u);
  EXPECT_EQ(dtype_nbytes(DType::Q6_K, 256, "x"), 210u);
  EXPECT_EQ(dtype_block_size(DType::Q6_K), 256);
  EXPECT_EQ(dtype_block_size(DType::I32), 1);
  EXPECT_STREQ(dtype_name(DType::Q4_K), "Q4_K");
  EXPECT_TRUE(dtype_is_float_convertible(DType::Q5_K));
  EXPECT_FALSE(dtype_is_float_convertible(DType::I8));
  expect_error([] { dtype_nbytes(DType::Q8_0, 33, "where.gguf"); }, {"where.gguf", "block size 32"});
  expect_error([] { dtype_nbytes(DType::F32, -1, "where.gguf"); }, {"where.gguf"});
  expect_error([] { dtype_nbytes(DType::F64, int64_t(1) << 62, "w"); }, {"too large"});
}

TEST(GgufDequant, MatchesReferenceForEveryType) {
  const GgufFile f(fixture("quant_types.gguf"));
  const char* types[] = {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"};
  for (const char* type : types) {
    SCOPED_TRACE(type);
    const TensorView* q = f.find_tensor(std::string(type) + ".q");
    const TensorView* e = f.find_tensor(std::string(type) + ".expected");
    ASSERT_TRUE(q && e);
    EXPECT_STREQ(dtype_name(q->dtype), type);
    ASSERT_EQ(q->shape, e->shape);
    ASSERT_EQ(e->dtype, DType::F32);
    const std::vector<float> got = dequant(*q), want = dequant(*e);
    float max_abs = 0;
    for (float w : want) max_abs = std::max(max_abs, std::fabs(w));
    ASSERT_GT(max_abs, 0.0f);
    int exact = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      // The reference computes in the same order in f32, so results match bit for bit.
      ASSERT_NEAR(got[i], want[i], 1e-6f * max_abs) << "element " << i;
      exact += got[i] == want[i];
    }
    EXPECT_EQ(exact, int(got.size()));
  }
}

TEST(GgufDequant, HandMadeBlocks) {
  // Q4_0: d = 0.5, nibble pairs (i, 15 - i): x[i] = 0.5 (i - 8), x[i + 16] = 0.5 (7 - i).
  uint8_t q4[18];
  const uint16_t half = f32_to_f16(0.5f);
  std::memcpy(q4, &half, 2);
  for (int i = 0; i < 16; ++i) q4[2 + i] = uint8_t(i | ((15 - i) << 4));
  TensorView v{"q4", DType::Q4_0, {1, 32}, q4, sizeof(q4)};
  std::vector<float> x = dequant(v);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(x[i], 0.5f * float(i - 8));
    EXPECT_EQ(x[i + 16], 0.5f * float(7 - i));
  }
  // Q8_0: d = 2, q = -128..-97.
  uint8_t q8[34];
  const uint16_t two = f32_to_f16(2.0f);
  std::memcpy(q8, &two, 2);
  for (int i = 0; i < 32; ++i) q8[2 + i] = uint8_t(int8_t(-128 + i));
  x = dequant(TensorView{"q8", DType::Q8_0, {32}, q8, sizeof(q8)});
  for (int i = 0; i < 32; ++i) EXPECT_EQ(x[i], 2.0f * float(-128 + i));

  expect_error([&] { dequantize(TensorView{"q8", DType::Q8_0, {32}, q8, 33}, x.data(), "f.gguf"); },
               {"f.gguf", "'q8'", "33 bytes"});
  expect_error([&] { dequantize(TensorView{"idx", DType::I8, {32}, q8, 32}, x.data(), "f.gguf"); },
               {"f.gguf", "'idx'", "I8"});
}

// ---- writer -> reader -------------------------------------------------------------------

TEST(GgufRoundTrip, EveryMetadataAndTensorType) {
  const std::string path = scratch_dir() + "/all.gguf";
  const GgufFile fx(fixture("quant_types.gguf"));

  GgufWriter w;
  w.set_u8("t.u8", 200);
  w.set_i8("t.i8", -100);
  w.set_u16("t.u16", 60000);
  w.set_i16("t.i16", -30000);
  w.set_u32("t.u32", 4000000000u);
  w.set_i32("t.i32", -2000000000);
  w.set_u64("t.u64", 18000000000000000000ull);
  w.set_i64("t.i64", -9000000000000000000ll);
  w.set_f32("t.f32", 1e-5f);
  w.set_f64("t.f64", 0.1);
  w.set_bool("t.bool", true);
  w.set_string("t.string", "h\xc3\xa9llo");
  w.set_string("t.replaced", "old");
  w.set_string_array("t.strings", {"a", "", "\xe2\x96\x81x"});
  w.set_f32_array("t.floats", {1.5f, -2.25f});
  w.set_i32_array("t.ints", {7, -8, 9});
  w.set_i64_array("t.longs", {int64_t(1) << 40});
  w.set_json("t.nested", nlohmann::json::parse(R"([[1, 2], [], [3]])"));
  w.set_json("t.json_mixed_numbers", nlohmann::json::parse("[1, 2.5, -3]"));
  w.set_json("t.json_double", 0.1);
  w.set_string("t.replaced", "new");
  w.set_alignment(64);

  std::vector<float> f32 = {1, 2, 3, 4, 5, 6};
  std::vector<double> f64 = {0.5, -1.25};
  std::vector<int16_t> i16 = {-3, 4};
  std::vector<int32_t> i32 = {1 << 20, -7};
  std::vector<int64_t> i64 = {int64_t(1) << 50};
  std::vector<int8_t> i8 = {-1, 2, 3};
  w.add_tensor("f32", DType::F32, {2, 3}, f32.data());
  w.add_tensor("f64", DType::F64, {2}, f64.data());
  w.add_tensor("i8", DType::I8, {3}, i8.data());
  w.add_tensor("i16", DType::I16, {1, 2}, i16.data());
  w.add_tensor("i32", DType::I32, {2}, i32.data());
  w.add_tensor("i64", DType::I64, {1, 1, 1, 1}, i64.data());
  for (const char* type : {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K"}) {
    const TensorView* q = fx.find_tensor(std::string(type) + ".q");
    ASSERT_TRUE(q);
    w.add_tensor(type, q->dtype, q->shape, q->data);
  }
  expect_error([&] { w.add_tensor("f32", DType::F32, {1}, f32.data()); }, {"'f32'", "twice"});
  expect_error([&] { w.add_tensor("bad", DType::Q8_0, {2, 16}, f32.data()); }, {"'bad'", "block size"});
  expect_error([&] { w.add_tensor("u8", DType::U8, {2}, f32.data()); }, {"'u8'", "U8"});
  expect_error([&] { w.set_json("t.obj", nlohmann::json::object()); }, {"t.obj"});
  expect_error([&] { w.set_json("t.mixed", nlohmann::json::parse(R"([1, "a"])")); }, {"t.mixed", "mixes"});
  w.write(path);

  const GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.get_u32("t.u8"), 200u);
  EXPECT_EQ(f.get_i64("t.i8"), -100);
  EXPECT_EQ(f.get_u32("t.u16"), 60000u);
  EXPECT_EQ(f.get_i64("t.i16"), -30000);
  EXPECT_EQ(f.get_u32("t.u32"), 4000000000u);
  EXPECT_EQ(f.get_i64("t.i32"), -2000000000);
  EXPECT_EQ(f.get_u64("t.u64", 0), 18000000000000000000ull);
  EXPECT_EQ(f.get_i64("t.i64"), -9000000000000000000ll);
  EXPECT_EQ(f.get_f32("t.f32"), 1e-5f);
  EXPECT_EQ(f.get_f64("t.f64", 0), 0.1);
  EXPECT_TRUE(f.get_bool("t.bool", false));
  EXPECT_EQ(f.get_string("t.string"), "h\xc3\xa9llo");
  EXPECT_EQ(f.get_string("t.replaced"), "new");
  EXPECT_EQ(f.get_string_array("t.strings"), (std::vector<std::string>{"a", "", "\xe2\x96\x81x"}));
  EXPECT_EQ(f.get_f32_array("t.floats"), (std::vector<float>{1.5f, -2.25f}));
  EXPECT_EQ(f.get_i32_array("t.ints"), (std::vector<int32_t>{7, -8, 9}));
  EXPECT_EQ(f.get("t.longs").at(0).as_i64("x"), int64_t(1) << 40);
  EXPECT_EQ(f.get("t.u8").type(), GgufType::U8);
  EXPECT_EQ(f.get("t.json_mixed_numbers").elem_type(), GgufType::F32);
  EXPECT_EQ(f.get("t.json_double").type(), GgufType::F64);
  const GgufValue& nested = f.get("t.nested");
  ASSERT_EQ(nested.size(), 3u);
  EXPECT_EQ(nested.elem_type(), GgufType::Array);
  EXPECT_EQ(nested.at(0).at(1).as_i64("x"), 2);
  EXPECT_EQ(nested.at(1).size(), 0u);

  // Defaults, and wrong types or ranges.
  EXPECT_EQ(f.get_u32("missing", 7), 7u);
  EXPECT_EQ(f.get_string("missing", "d"), "d");
  EXPECT_TRUE(f.get_string_array("missing").empty());
  expect_error([&] { f.get_u32("missing"); }, {path, "missing metadata key 'missing'"});
  expect_error([&] { f.get_u32("t.string"); }, {path, "'t.string'", "string"});
  expect_error([&] { f.get_u32("t.i8"); }, {path, "negative"});
  expect_error([&] { f.get_u32("t.u64"); }, {path, "t.u64"});
  expect_error([&] { f.get_string("t.u8"); }, {path, "expected a string"});
  expect_error([&] { f.get_i32_array("t.strings"); }, {path, "t.strings"});
  expect_error([&] { f.get_string_array("t.ints"); }, {path, "expected strings"});

  const nlohmann::json j = f.metadata_json(2);
  EXPECT_EQ(j["t.f32"].get<double>(), 1e-5);  // shown as the float's shortest decimal
  EXPECT_EQ(j["t.u64"].get<uint64_t>(), 18000000000000000000ull);
  EXPECT_EQ(j["t.floats"], nlohmann::json::parse("[1.5, -2.25]"));
  EXPECT_EQ(j["t.strings"]["length"], 3);  // longer than 2: summarised
  EXPECT_EQ(j["t.nested"]["gguf_array"], "array");
  EXPECT_EQ(f.metadata_json()["t.nested"], nlohmann::json::parse("[[1, 2], [], [3]]"));

  ASSERT_EQ(f.tensors().size(), 14u);
  EXPECT_EQ(f.tensors()[0].name, "f32");
  EXPECT_EQ(dequant(*f.find_tensor("f32")), f32);
  EXPECT_EQ(f.find_tensor("f32")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.find_tensor("i64")->shape, (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(dequant(*f.find_tensor("f64")), (std::vector<float>{0.5f, -1.25f}));
  EXPECT_EQ(std::memcmp(f.find_tensor("i16")->data, i16.data(), 4), 0);
  EXPECT_EQ(std::memcmp(f.find_tensor("i32")->data, i32.data(), 8), 0);
  EXPECT_EQ(std::memcmp(f.find_tensor("i64")->data, i64.data(), 8), 0);
  EXPECT_EQ(std::memcmp(f.find_tensor("i8")->data, i8.data(), 3), 0);
  for (const TensorView& t : f.tensors()) {
    EXPECT_EQ(size_t(t.data - f.mapping()->data()) % 64, 0u) << t.name;
    const TensorView* q = fx.find_tensor(t.name + ".q");
    if (!q) continue;
    EXPECT_EQ(t.dtype, q->dtype);
    EXPECT_EQ(t.shape, q->shape);
    ASSERT_EQ(t.nbytes, q->nbytes);
    EXPECT_EQ(std::memcmp(t.data, q->data, t.nbytes), 0) << t.name;
  }
}

// ---- corrupt input (a small file made here, so these always run) ------------------------

namespace {

std::string small_gguf(const std::string& dir) {
  GgufWriter w;
  w.set_string("general.architecture", "fixture");
  w.set_string_array("tok.list", {"one", "two"});
  w.set_json("nest.ed", nlohmann::json::parse("[[1], [2, 3]]"));
  static const std::vector<float> a(64, 1.0f), b(32, 2.0f);
  w.add_tensor("ten.a", DType::F32, {4, 16}, a.data());
  w.add_tensor("ten.b", DType::F32, {32}, b.data());
  const std::string path = dir + "/small.gguf";
  w.write(path);
  return read_bytes(path);
}

}  // namespace

TEST(GgufCorrupt, EveryTruncation) {
  const std::string dir = scratch_dir();
  const std::string good = small_gguf(dir);
  for (size_t n = 0; n < good.size(); ++n) {
    const std::string path = write_new(dir, good.substr(0, n));
    expect_error([&] { GgufFile f(path); }, {path});
  }
  EXPECT_EQ(GgufFile(write_new(dir, good)).tensors().size(), 2u);
  std::string v2 = good;  // version 2 has the same little-endian layout
  poke<uint32_t>(v2, 4, 2);
  const GgufFile f2(write_new(dir, v2));
  EXPECT_EQ(f2.version(), 2u);
  EXPECT_EQ(f2.get_string_array("tok.list"), (std::vector<std::string>{"one", "two"}));
}

TEST(GgufCorrupt, BadFields) {
  const std::string dir = scratch_dir();
  const std::string good = small_gguf(dir);
  auto check = [&](const std::function<void(std::string&)>& edit, const std::vector<std::string>& parts) {
    std::string bytes = good;
    edit(bytes);
    const std::string path = write_new(dir, bytes);
    std::vector<std::string> all = parts;
    all.push_back(path);
    expect_error([&] { GgufFile f(path); }, all);
  };
  const size_t key_len_pos = 24;                    // the first key's length, after the header
  const size_t list_pos = after(good, "tok.list");  // u32 type, u32 elem type, u64 count
  const size_t nest_pos = after(good, "nest.ed");
  const size_t a_pos = after(good, "ten.a");        // u32 n_dims, u64 ne[2], u32 type, u64 offset
  const size_t b_pos = after(good, "ten.b");        // u32 n_dims, u64 ne[1], u32 type, u64 offset

  check([](std::string& b) { b[0] = 'X'; }, {"not a GGUF file"});
  check([](std::string& b) { poke<uint32_t>(b, 4, 1); }, {"version 1"});
  check([](std::string& b) { poke<uint32_t>(b, 4, 99); }, {"version 99"});
  check([](std::string& b) { poke<uint32_t>(b, 4, 0x03000000); }, {"big-endian"});
  check([](std::string& b) { poke<uint64_t>(b, 8, uint64_t(1) << 60); }, {"tensor count"});
  check([](std::string& b) { poke<uint64_t>(b, 16, uint64_t(1) << 40); }, {"metadata count"});
  check([&](std::string& b) { poke<uint64_t>(b, key_len_pos, uint64_t(1) << 62); }, {"length"});
  check([&](std::string& b) { poke<uint64_t>(b, key_len_pos, ~uint64_t(0)); }, {"length"});
  check([&](std::string& b) { poke<uint32_t>(b, list_pos, 13); }, {"'tok.list'", "unknown value type 13"});
  check([&](std::string& b) { poke<uint32_t>(b, list_pos + 4, 77); }, {"'tok.list'", "unknown value type 77"});
  check([&](std::string& b) { poke<uint64_t>(b, list_pos + 8, uint64_t(1) << 59); }, {"'tok.list'", "array"});
  check([&](std::string& b) { poke<uint64_t>(b, nest_pos + 8, ~uint64_t(0)); }, {"'nest.ed'", "array"});
  check([&](std::string& b) { poke<uint32_t>(b, a_pos, 7); }, {"'ten.a'", "7 dimensions"});
  check([&](std::string& b) { poke<uint64_t>(b, a_pos + 4, uint64_t(1) << 62); }, {"'ten.a'"});
  check([&](std::string& b) {
    poke<uint64_t>(b, a_pos + 4, uint64_t(1) << 40);
    poke<uint64_t>(b, a_pos + 12, uint64_t(1) << 40);
  }, {"'ten.a'", "absurd dimensions"});
  check([&](std::string& b) { poke<uint32_t>(b, a_pos + 20, 99); }, {"'ten.a'", "unknown type 99"});
  check([&](std::string& b) { poke<uint32_t>(b, a_pos + 20, 11); }, {"'ten.a'", "Q3_K"});
  check([&](std::string& b) { poke<uint32_t>(b, a_pos + 20, 8); }, {"'ten.a'", "block size 32"});
  check([&](std::string& b) { poke<uint64_t>(b, b_pos + 16, 1u << 20); }, {"'ten.b'", "past the end"});
  check([&](std::string& b) { poke<uint64_t>(b, b_pos + 16, ~uint64_t(0) - 31); }, {"'ten.b'", "past the end"});
  check([&](std::string& b) { poke<uint64_t>(b, b_pos + 16, peek<uint64_t>(b, b_pos + 16) + 4); },
        {"'ten.b'", "alignment"});
  check([&](std::string& b) { b[b_pos - 1] = 'a'; }, {"duplicate tensor 'ten.a'"});
  check([&](std::string& b) { poke<uint64_t>(b, a_pos + 12, 5); }, {"'ten.a' overlaps tensor 'ten.b'"});
  // Control bytes in names stay out of the (one-line) message.
  check([&](std::string& b) {
    b[after(b, "ten.a") - 1] = '\n';
    poke<uint32_t>(b, a_pos + 20, 99);
  }, {"ten.\\x0a", "unknown type 99"});

  // Arrays nested deeper than any real file; each level is only a header, so a deep chain
  // is cheap to make and must not exhaust the stack.
  for (int depth : {8, 40000}) {
    std::string bytes;
    auto put = [&](auto v) { bytes.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
    put(uint32_t(0x46554747)), put(uint32_t(3)), put(uint64_t(0)), put(uint64_t(1));
    put(uint64_t(4)), bytes += "deep", put(uint32_t(GgufType::Array));
    for (int i = 0; i < depth; ++i) put(uint32_t(GgufType::Array)), put(uint64_t(1));
    put(uint32_t(GgufType::I32)), put(uint64_t(0));
    const std::string path = write_new(dir, bytes);
    if (depth == 8) {
      const GgufFile f(path);
      EXPECT_EQ(f.get("deep").at(0).at(0).size(), 1u);
    } else {
      expect_error([&] { GgufFile f(path); }, {path, "'deep'", "nests arrays"});
    }
  }

  expect_error([&] { GgufFile f(dir + "/absent.gguf"); }, {dir + "/absent.gguf"});
}

// ---- models: write_gguf_model -> load_gguf_model ------------------------------------------

class GgufModel : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufModel, WriteThenLoad) {
  const std::string family = GetParam();
  const TinyModel m = tiny_model(family);
  for (DType dtype : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const std::string path = scratch_dir() + "/tiny.gguf";
    WriteOptions opts;
    opts.extra_metadata = {{"lcq.bits", 4}, {"lcq.method", "lcq"}, {"lcq.ranks", {1, 2}},
                           {"tokenizer.ggml.tokens", {{"gguf_array", "string"}, {"length", 3}}}};
    write_gguf_model(path, m.c, m.tensors(dtype), m.vocab, opts);

    const ModelSource src = load_gguf_model(path, {});
    EXPECT_EQ(src.format, Format::GGUF);
    EXPECT_EQ(src.path, path);
    expect_same_config(src.config, m.c);
    EXPECT_EQ(src.qk_interleaved, family == "llama");
    EXPECT_EQ(src.tensors.size(), m.specs.size());
    ASSERT_FALSE(src.keepalive.empty());
    for (const auto& [name, shape] : m.specs) {
      SCOPED_TRACE(name);
      const TensorView& t = src.get(name);
      EXPECT_EQ(t.shape, shape);
      std::vector<float> want = m.values.at(name);
      if (shape.size() > 1 && dtype != DType::F32)
        for (float& x : want) x = dtype == DType::F16 ? f16_to_f32(f32_to_f16(x)) : bf16_to_f32(f32_to_bf16(x));
      std::vector<float> got = dequant(t);
      if (family == "llama" && is_qk(name)) {
        const int heads = name.find(".attn_q.") != std::string::npos ? m.c.n_heads : m.c.n_kv_heads;
        const int64_t row_len = t.numel() / (int64_t(heads) * m.c.head_dim);
        std::vector<float> back(got.size());
        permute_qk_to_rotate_half(got.data(), back.data(), heads, m.c.head_dim, row_len);
        EXPECT_NE(got, want);  // stored interleaved ...
        got = back;            // ... and restored exactly
      }
      EXPECT_EQ(got, want);
    }
    const tokenizer::Vocab& v = src.vocab;
    EXPECT_EQ(v.kind, m.vocab.kind);
    EXPECT_EQ(v.tokens, m.vocab.tokens);
    EXPECT_EQ(v.scores, m.vocab.scores);
    EXPECT_EQ(v.types, m.vocab.types);
    EXPECT_EQ(v.merges, m.vocab.merges);
    if (v.kind == tokenizer::VocabKind::ByteLevelBPE) EXPECT_EQ(v.pre, m.vocab.pre);
    EXPECT_EQ(v.bos_id, m.vocab.bos_id);
    EXPECT_EQ(v.eos_id, m.vocab.eos_id);
    EXPECT_EQ(v.unk_id, m.vocab.unk_id);
    EXPECT_EQ(v.pad_id, m.vocab.pad_id);
    EXPECT_EQ(v.add_bos, m.vocab.add_bos);
    EXPECT_EQ(v.add_eos, m.vocab.add_eos);
    EXPECT_EQ(v.add_space_prefix, m.vocab.add_space_prefix);
    EXPECT_EQ(src.metadata["general.architecture"], family);
    EXPECT_EQ(src.metadata["lcq.bits"], 4);
    EXPECT_EQ(src.metadata["lcq.method"], "lcq");
    EXPECT_EQ(src.metadata["lcq.ranks"], nlohmann::json::parse("[1, 2]"));
    EXPECT_EQ(src.metadata["tokenizer.ggml.tokens"], nlohmann::json(m.vocab.tokens));  // ours, not the extra
  }
}

INSTANTIATE_TEST_SUITE_P(Families, GgufModel, ::testing::Values("llama", "qwen2", "opt"));

TEST(GgufModelPermute, SemanticsAndRoundTrip) {
  // One head of 4 rotate-half rows (a0 a1 | b0 b1) becomes pairs (a0 b0 a1 b1).
  const float rh[4] = {10, 11, 20, 21};
  float il[4], back[4];
  permute_qk_to_interleaved(rh, il, 1, 4, 1);
  EXPECT_EQ(std::vector<float>(il, il + 4), (std::vector<float>{10, 20, 11, 21}));
  permute_qk_to_rotate_half(il, back, 1, 4, 1);
  EXPECT_EQ(std::vector<float>(back, back + 4), (std::vector<float>{10, 11, 20, 21}));
  // Several heads and long rows: round trip, and whole rows move.
  std::vector<float> src(3 * 8 * 5), a(src.size()), b(src.size());
  for (size_t i = 0; i < src.size(); ++i) src[i] = float(i);
  permute_qk_to_interleaved(src.data(), a.data(), 3, 8, 5);
  permute_qk_to_rotate_half(a.data(), b.data(), 3, 8, 5);
  EXPECT_EQ(b, src);
  EXPECT_EQ(a[5 * 1], src[5 * 4]);          // head 0: interleaved row 1 = rotate-half row 4
  EXPECT_EQ(a[5 * (8 + 2) + 3], src[5 * (8 + 1) + 3]);  // head 1: row 2 <- row 1
}

TEST(GgufModelErrors, ClearMessages) {
  const std::string dir = scratch_dir();
  const TinyModel m = tiny_model("llama");
  auto write_without = [&](const std::string& skip) {
    std::vector<WriteTensor> ts;
    for (const WriteTensor& t : m.tensors(DType::F32))
      if (t.name != skip) ts.push_back(t);
    const std::string path = dir + "/without-" + skip + ".gguf";
    write_gguf_model(path, m.c, ts, m.vocab);
    return path;
  };
  std::string p = write_without("blk.1.ffn_up.weight");
  expect_error([&] { load_gguf_model(p, {}); }, {p, "missing tensor 'blk.1.ffn_up.weight'"});

  TinyModel bad = tiny_model("llama");
  for (auto& [name, shape] : bad.specs)
    if (name == "blk.0.ffn_down.weight") shape = {24, 16};
  p = dir + "/shape.gguf";
  write_gguf_model(p, bad.c, bad.tensors(DType::F32), bad.vocab);
  expect_error([&] { load_gguf_model(p, {}); },
               {p, "tensor 'blk.0.ffn_down.weight' has shape [24, 16], expected [16, 24]"});

  TinyModel opt = tiny_model("opt");
  for (auto& [name, shape] : opt.specs)
    if (name == "position_embd.weight") shape = {opt.c.max_seq_len, 16};  // without the 2 reserved rows
  p = dir + "/opt.gguf";
  write_gguf_model(p, opt.c, opt.tensors(DType::F32), opt.vocab);
  expect_error([&] { load_gguf_model(p, {}); }, {p, "'position_embd.weight' has shape [64, 16], expected [66, 16]"});

  GgufWriter w;
  w.set_string("general.architecture", "falcon");
  p = dir + "/x.gguf";
  w.write(p);
  expect_error([&] { load_gguf_model(p, {}); }, {p + ": unsupported architecture 'falcon'"});
  w.set_string("general.architecture", "llama");
  w.write(p = dir + "/nokeys.gguf");
  expect_error([&] { load_gguf_model(p, {}); }, {p, "llama.block_count"});

  // A file written fine, then one key changed: an unknown tokenizer and a bad token id.
  p = write_without("");
  GgufFile good(p);
  GgufWriter w2;
  w2.set_string("general.architecture", "llama");
  for (const auto& [key, value] : good.metadata())
    if (key.rfind("llama.", 0) == 0) w2.set_json(key, GgufFile(p).metadata_json()[key]);
  w2.set_u32("llama.context_length", 64);
  w2.set_string("tokenizer.ggml.model", "bert");
  w2.set_string_array("tokenizer.ggml.tokens", {"a"});
  for (const TensorView& t : good.tensors()) w2.add_tensor(t.name, t.dtype, t.shape, t.data);
  w2.write(p = dir + "/bert.gguf");
  expect_error([&] { load_gguf_model(p, {}); }, {p, "unsupported tokenizer model 'bert'"});
  w2.set_string("tokenizer.ggml.model", "llama");
  w2.set_u32("tokenizer.ggml.eos_token_id", 5);
  w2.write(p = dir + "/eos.gguf");
  expect_error([&] { load_gguf_model(p, {}); }, {p, "eos_token_id 5"});

  // Writer-side checks.
  ModelConfig c = m.c;
  c.n_heads = 3;
  expect_error([&] { write_gguf_model(dir + "/w.gguf", c, m.tensors(DType::F32), m.vocab); }, {dir + "/w.gguf"});
  auto ts = m.tensors(DType::Q8_0);
  expect_error([&] { write_gguf_model(dir + "/q.gguf", m.c, ts, m.vocab); }, {"F32, F16 or BF16"});
}

TEST(GgufModelTokenizer, Override) {
  const std::string tok = lcq::test::shared("models/stories260K/tok512.model");
  if (!std::filesystem::exists(tok)) GTEST_SKIP() << tok << " missing";
  const std::string dir = scratch_dir();
  const TinyModel big = tiny_model("qwen2", 512), small = tiny_model("qwen2", 32);
  write_gguf_model(dir + "/big.gguf", big.c, big.tensors(DType::F32), big.vocab);
  write_gguf_model(dir + "/small.gguf", small.c, small.tensors(DType::F32), small.vocab);
  LoadOptions opts;
  opts.tokenizer_path = tok;
  const ModelSource src = load_gguf_model(dir + "/big.gguf", opts);
  EXPECT_EQ(src.vocab.kind, tokenizer::VocabKind::SentencePiece);
  EXPECT_EQ(src.vocab.size(), 512);
  expect_error([&] { load_gguf_model(dir + "/small.gguf", opts); }, {dir + "/small.gguf", "512 tokens"});
}

// ---- SmolLM2-135M-Instruct (Q4_1 weights, Q8_0 embeddings), when LCQ_SMOLLM2_GGUF is set ----

namespace {

std::string smollm2_or_skip() {
  const std::string p = lcq::test::smollm2_gguf();
  return p;
}

#define SMOLLM2_OR_SKIP(var)                                         \
  const std::string var = smollm2_or_skip();                         \
  if (var.empty()) GTEST_SKIP() << "LCQ_SMOLLM2_GGUF is not set"

}  // namespace

TEST(GgufSmolLM2, FileAndMetadata) {
  SMOLLM2_OR_SKIP(path);
  const GgufFile f(path);
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_u32("llama.block_count"), 30u);
  EXPECT_EQ(f.get_string_array("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.get_i32_array("tokenizer.ggml.token_type").size(), 49152u);
  ASSERT_EQ(f.tensors().size(), 272u);
  std::map<DType, int> counts;
  for (const TensorView& t : f.tensors()) counts[t.dtype]++;
  EXPECT_EQ(counts[DType::Q4_1], 210);
  EXPECT_EQ(counts[DType::F32], 61);
  EXPECT_EQ(counts[DType::Q8_0], 1);
  EXPECT_EQ(f.find_tensor("token_embd.weight")->shape, (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(f.find_tensor("blk.0.attn_k.weight")->shape, (std::vector<int64_t>{192, 576}));

  const nlohmann::json j = f.metadata_json();
  EXPECT_EQ(j["tokenizer.ggml.tokens"]["length"], 49152);
  EXPECT_EQ(j["tokenizer.ggml.merges"]["gguf_array"], "string");
  EXPECT_EQ(j["llama.attention.layer_norm_rms_epsilon"].get<double>(), 1e-5);
  EXPECT_EQ(j["general.languages"], nlohmann::json::parse(R"(["en"])"));
  EXPECT_LT(j.dump().size(), 4000u);
}

TEST(GgufSmolLM2, ModelConfigAndVocab) {
  SMOLLM2_OR_SKIP(path);
  const ModelSource src = load_gguf_model(path, {});
  const ModelConfig& c = src.config;
  EXPECT_EQ(c.arch, Arch::Llama);
  EXPECT_EQ(c.n_layers, 30);
  EXPECT_EQ(c.dim, 576);
  EXPECT_EQ(c.hidden_dim, 1536);
  EXPECT_EQ(c.n_heads, 9);
  EXPECT_EQ(c.n_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_EQ(c.max_seq_len, 8192);
  EXPECT_EQ(c.rope_theta, 100000.0f);
  EXPECT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.rope_scaling.type, "none");
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.attn_qkv_bias);
  EXPECT_TRUE(src.qk_interleaved);
  EXPECT_EQ(src.tensors.size(), 272u);

  const tokenizer::Vocab& v = src.vocab;
  EXPECT_EQ(v.kind, tokenizer::VocabKind::ByteLevelBPE);
  EXPECT_EQ(v.size(), 49152);
  EXPECT_EQ(v.merges.size(), 48900u);
  EXPECT_EQ(v.pre, "smollm");
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_EQ(v.pad_id, 2);
  EXPECT_FALSE(v.add_bos);
  EXPECT_FALSE(v.add_space_prefix);
  EXPECT_EQ(v.tokens[1], "<|im_start|>");
  EXPECT_EQ(src.metadata["general.basename"], "smollm2");
}

TEST(GgufSmolLM2, RowsMatchReference) {
  SMOLLM2_OR_SKIP(path);
  const GgufFile f(path);
  const nlohmann::json ref = nlohmann::json::parse(read_bytes(fixture("smollm2_rows.json")));
  ASSERT_EQ(ref["file_size"].get<size_t>(), f.mapping()->size()) << "fixture made from another file";
  int checked = 0;
  for (const auto& r : ref["rows"]) {
    const std::string name = r["tensor"];
    SCOPED_TRACE(name + " row " + std::to_string(r["row"].get<int>()));
    const TensorView* t = f.find_tensor(name);
    ASSERT_TRUE(t);
    EXPECT_EQ(dtype_name(t->dtype), r["type"].get<std::string>());
    // One row as its own view: rows are whole blocks, back to back.
    const int64_t row_len = t->shape.back();
    const size_t row_bytes = dtype_nbytes(t->dtype, row_len, name);
    const int64_t row = r["row"];
    const TensorView rv{name, t->dtype, {row_len}, t->data + size_t(row) * row_bytes, row_bytes};
    const std::vector<float> got = dequant(rv);
    const auto& want = r["values"];
    ASSERT_EQ(want.size(), 64u);
    for (size_t i = 0; i < 64; ++i) EXPECT_EQ(got[i], want[i].get<float>()) << "element " << i;
    ++checked;
  }
  EXPECT_EQ(checked, 11);
}

TEST(GgufSmolLM2, DequantizeEverythingAndPermuteRoundTrip) {
  SMOLLM2_OR_SKIP(path);
  const ModelSource src = load_gguf_model(path, {});
  std::vector<float> buf;
  int64_t total = 0;
  for (const TensorView& t : src.tensors) {
    buf.resize(size_t(t.numel()));
    dequantize(t, buf.data(), path);
    total += t.numel();
    for (float x : buf) ASSERT_TRUE(std::isfinite(x)) << t.name;
  }
  EXPECT_GT(total, 134000000);

  const ModelConfig& c = src.config;
  for (const char* name : {"blk.0.attn_q.weight", "blk.7.attn_k.weight"}) {
    const TensorView& t = src.get(name);
    const int heads = std::string(name).find("attn_q") != std::string::npos ? c.n_heads : c.n_kv_heads;
    std::vector<float> w = dequant(t), rh(w.size()), back(w.size());
    permute_qk_to_rotate_half(w.data(), rh.data(), heads, c.head_dim, c.dim);
    permute_qk_to_interleaved(rh.data(), back.data(), heads, c.head_dim, c.dim);
    EXPECT_NE(rh, w);
    EXPECT_EQ(back, w);
  }
}

TEST(GgufSmolLM2, CorruptCopies) {
  SMOLLM2_OR_SKIP(path);
  const std::string dir = scratch_dir();
  const GgufFile f(path);
  const size_t size = f.mapping()->size(), data = f.data_offset();
  const std::string header(reinterpret_cast<const char*>(f.mapping()->data()), data);
  auto load = [](const std::string& p) { load_gguf_model(p, {}); };

  // Truncated copies: the first n bytes only.
  for (size_t n : {size_t(0), size_t(3), size_t(4), size_t(8), size_t(23), size_t(24), size_t(100),
                   size_t(5000), size_t(1) << 20, data - 1, data, data + 1000, size / 2, size - 1}) {
    SCOPED_TRACE(n);
    const std::string p = dir + "/cut-" + std::to_string(n) + ".gguf";
    {
      std::ofstream out(p, std::ios::binary);
      out.write(reinterpret_cast<const char*>(f.mapping()->data()), std::streamsize(n));
    }
    expect_error([&] { load(p); }, {p});
  }

  // Header edits on full-size copies; the data section is left sparse (zeros), which is
  // cheap and does not matter to the checks.
  auto check = [&](const std::function<void(std::string&)>& edit, const std::vector<std::string>& parts) {
    std::string h = header;
    edit(h);
    const std::string p = write_new(dir, h);
    std::filesystem::resize_file(p, size);
    std::vector<std::string> all = parts;
    all.push_back(p);
    expect_error([&] { load(p); }, all);
  };
  const size_t embd = after(header, "token_embd.weight");  // u32 n_dims, u64 ne[2], u32 type, u64 offset
  check([](std::string& h) { std::memcpy(&h[0], "GGML", 4); }, {"not a GGUF file"});
  check([](std::string& h) { poke<uint32_t>(h, 4, 1); }, {"version 1"});
  check([](std::string& h) { poke<uint32_t>(h, 4, 99); }, {"version 99"});
  check([](std::string& h) { poke<uint64_t>(h, 8, uint64_t(1) << 50); }, {"tensor count"});
  check([](std::string& h) { poke<uint64_t>(h, 24, uint64_t(1) << 55); }, {"length"});
  check([&](std::string& h) { poke<uint64_t>(h, after(h, "tokenizer.ggml.tokens") + 8, uint64_t(1) << 40); },
        {"'tokenizer.ggml.tokens'", "array"});
  check([&](std::string& h) { poke<uint64_t>(h, embd + 12, uint64_t(1) << 62); }, {"'token_embd.weight'"});
  check([&](std::string& h) { poke<uint64_t>(h, embd + 12, 49153); }, {"'token_embd.weight' overlaps"});
  check([&](std::string& h) { poke<uint32_t>(h, embd, 9); }, {"'token_embd.weight'", "9 dimensions"});
  check([&](std::string& h) { poke<uint32_t>(h, embd + 20, 99); }, {"tensor 'token_embd.weight' has unknown type 99"});
  check([&](std::string& h) { poke<uint64_t>(h, embd + 24, uint64_t(size)); }, {"'token_embd.weight'", "past the end"});
  // A consistent file that is not the model it claims: heads that do not divide the width.
  check([&](std::string& h) { poke<uint32_t>(h, after(h, "llama.attention.head_count") + 4, 7); },
        {"attention heads"});
  check([&](std::string& h) { std::memcpy(&h[after(h, "general.architecture") + 12], "falco", 5); },
        {"unsupported architecture 'falco'"});
}
