// Tests for the llama2.c loader, format detection, safetensors and Hugging Face directories.
// The real model is stories260K (llama2.c legacy format); corrupted copies of it and of
// files written here prove that bad input becomes one clear lcq::Error naming the file.
#include "lcq/core/half.h"
#include "test_io_hf_helpers.h"

#include <algorithm>
#include <filesystem>

namespace fs = std::filesystem;
using namespace lcq;
using namespace lcq::io;
using namespace lcq::test;

namespace {
// ---------------------------------------------------------------------------------------
// llama2.c

TEST(Llama2c, LoadsStories260K) {
  const ModelSource src = load_model_source(stories_bin());
  EXPECT_EQ(src.format, Format::Llama2c);
  EXPECT_STREQ(format_name(src.format), "llama2c");
  const ModelConfig& c = src.config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_EQ(c.family, "llama2c");
  EXPECT_TRUE(src.qk_interleaved);
  EXPECT_EQ(src.tensors.size(), size_t(1 + 5 * 9 + 1));
  EXPECT_EQ(src.find("output.weight"), nullptr);

  EXPECT_EQ(src.get("token_embd.weight").shape, (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(src.get("blk.4.attn_q.weight").shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(src.get("blk.0.attn_k.weight").shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(src.get("blk.2.ffn_down.weight").shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(src.get("blk.2.ffn_gate.weight").shape, (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(src.get("output_norm.weight").shape, (std::vector<int64_t>{64}));
  expect_error([&] { src.get("blk.9.attn_q.weight"); }, {stories_bin(), "blk.9.attn_q.weight", "not found"});

  // Offsets computed from the legacy layout: embedding, then each kind stacked over layers.
  const std::string raw = read_bytes(stories_bin());
  const size_t embd = 512 * 64, norm = 5 * 64, wq = 5 * 64 * 64, wk = 5 * 32 * 64, ffn = 5 * 172 * 64;
  const size_t hdr = 28;
  EXPECT_EQ(view_floats(src.get("token_embd.weight")), floats_at(raw, hdr, embd));
  EXPECT_EQ(view_floats(src.get("blk.3.attn_k.weight")),
            floats_at(raw, hdr + 4 * (embd + norm + wq + 3 * 2048), 2048));
  const size_t w2_start = embd + norm + wq + 2 * wk + wq + norm + ffn;
  EXPECT_EQ(view_floats(src.get("blk.1.ffn_down.weight")),
            floats_at(raw, hdr + 4 * (w2_start + 64 * 172), 64 * 172));
  const size_t final_norm = embd + 2 * norm + 2 * wq + 2 * wk + 3 * ffn;
  EXPECT_EQ(view_floats(src.get("output_norm.weight")), floats_at(raw, hdr + 4 * final_norm, 64));
  EXPECT_EQ(hdr + 4 * (final_norm + 64 + 2 * 512 * 4), raw.size());
}

TEST(Llama2c, FindsTokenizerBeside) {
  const ModelSource src = load_model_source(stories_bin());
  ASSERT_FALSE(src.vocab.empty()) << "tok512.bin beside the model should have been found";
  EXPECT_EQ(src.vocab.size(), 512);
  EXPECT_EQ(src.vocab.bos_id, 1);
  EXPECT_EQ(src.vocab.eos_id, 2);
  EXPECT_TRUE(src.vocab.add_bos);

  const std::string dir = scratch_dir();
  write_bytes(dir + "/model.bin", read_bytes(stories_bin()));
  EXPECT_TRUE(load_model_source(dir + "/model.bin").vocab.empty());
  LoadOptions opts;
  opts.tokenizer_path = test::shared("models/stories260K/tok512.model");
  const ModelSource with = load_model_source(dir + "/model.bin", opts);
  EXPECT_EQ(with.vocab.size(), 512);
  EXPECT_EQ(with.vocab.bos_id, 1);
}

TEST(Llama2c, TruncatedCopiesFail) {
  const std::string raw = read_bytes(stories_bin());
  const std::string path = scratch_dir() + "/stories260K.bin";
  for (size_t cut : {size_t(0), size_t(3), size_t(27), size_t(28), size_t(1000), raw.size() / 2,
                     raw.size() - 4, raw.size() - 1}) {
    write_bytes(path, raw.substr(0, cut));
    SCOPED_TRACE(cut);
    expect_error([&] { load_model_source(path); }, {path, "truncated"});
  }
  write_bytes(path, raw.substr(0, raw.size() - 4));
  expect_error([&] { load_model_source(path); }, {"header implies " + std::to_string(raw.size()) +
                                                  " bytes, file has " + std::to_string(raw.size() - 4)});
  write_bytes(path, raw + "junk");
  expect_error([&] { load_model_source(path); }, {path, "4 trailing bytes"});
}

TEST(Llama2c, BadHeadersFail) {
  const std::string raw = read_bytes(stories_bin());
  const std::string path = scratch_dir() + "/bad.bin";
  // field index in the 7-int header, value
  const std::vector<std::pair<int, int32_t>> cases = {
      {0, -64}, {0, 1 << 30}, {1, 0}, {2, -1}, {2, 100000}, {3, 7}, {4, 3}, {5, 0}, {5, 1 << 30}, {6, -512}};
  for (const auto& [field, value] : cases) {
    std::string bad = raw;
    std::memcpy(&bad[size_t(field) * 4], &value, 4);
    write_bytes(path, bad);
    SCOPED_TRACE(std::to_string(field) + "=" + std::to_string(value));
    expect_error([&] { load_model_source(path); }, {path});
  }
  expect_error([&] { load_model_source(path + ".missing"); },
               {path + ".missing", "no such file or directory"});
}

TEST(Llama2c, Version1LoadsIdenticalTensors) {
  const ModelSource legacy = load_model_source(stories_bin());
  const std::string dir = scratch_dir();
  const std::string path = dir + "/v1.bin";
  write_bytes(path, to_version1(legacy, 1, true));
  const ModelSource v1 = load_model_source(path);
  EXPECT_EQ(v1.format, Format::Llama2c);
  EXPECT_TRUE(v1.config.tie_embeddings);
  EXPECT_TRUE(v1.qk_interleaved);
  ASSERT_EQ(v1.tensors.size(), legacy.tensors.size());
  for (const TensorView& t : legacy.tensors) {
    const TensorView& u = v1.get(t.name);
    EXPECT_EQ(u.shape, t.shape) << t.name;
    EXPECT_EQ(view_bytes(u), view_bytes(t)) << t.name;
  }

  // Untied classifier: flag 0 and wcls appended.
  std::string untied = to_version1(legacy, 1, false);
  std::string wcls = view_bytes(legacy.get("token_embd.weight"));
  std::reverse(wcls.begin(), wcls.end());  // any different bytes will do
  write_bytes(path, untied + wcls);
  const ModelSource u = load_model_source(path);
  EXPECT_FALSE(u.config.tie_embeddings);
  EXPECT_EQ(view_bytes(u.get("output.weight")), wcls);

  write_bytes(path, untied);  // the classifier is missing
  expect_error([&] { load_model_source(path); }, {path, "truncated"});
  write_bytes(path, to_version1(legacy, 2, true));
  expect_error([&] { load_model_source(path); },
               {path, "unsupported llama2.c version 2 (only fp32 version 1)"});
}

TEST(Llama2c, LegacyUntiedClassifier) {
  const std::string raw = read_bytes(stories_bin());
  const ModelSource legacy = load_model_source(stories_bin());
  std::string bad = raw;
  const int32_t neg = -512;
  std::memcpy(&bad[20], &neg, 4);
  const std::string path = scratch_dir() + "/untied.bin";
  write_bytes(path, bad);
  expect_error([&] { load_model_source(path); }, {path, "truncated"});
  std::string wcls(size_t(512 * 64 * 4), '\0');
  for (size_t i = 0; i < wcls.size(); ++i) wcls[i] = char(i * 7);
  write_bytes(path, bad + wcls);
  const ModelSource src = load_model_source(path);
  EXPECT_FALSE(src.config.tie_embeddings);
  EXPECT_EQ(src.config.vocab_size, 512);
  EXPECT_EQ(view_bytes(src.get("output.weight")), wcls);
  EXPECT_EQ(view_bytes(src.get("blk.4.ffn_up.weight")), view_bytes(legacy.get("blk.4.ffn_up.weight")));
}

TEST(FormatDetection, GgufMagicGoesToGgufLoader) {
  const std::string path = scratch_dir() + "/x.gguf";
  write_bytes(path, std::string("GGUF") + std::string(12, '\xff'));
  try {
    load_model_source(path);
    ADD_FAILURE() << "a 16-byte GGUF file loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("llama2.c"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------
// safetensors

TEST(Safetensors, RoundTrip) {
  const std::string path = scratch_dir() + "/t.safetensors";
  const std::vector<float> a = random_floats(15, 1), h = random_floats(7, 2), b = random_floats(6, 3);
  const std::vector<int8_t> codes = {1, -2, 3, -4, 5};
  const std::vector<int64_t> big = {int64_t(1) << 40, -3};
  const float one = 1.5f;
  auto raw = [](const void* p) { return static_cast<const uint8_t*>(p); };
  const std::vector<WriteTensor> ts = {{"a", {3, 5}, DType::F32, a.data(), nullptr},
                                       {"half", {7}, DType::F16, h.data(), nullptr},
                                       {"brain", {2, 3}, DType::BF16, b.data(), nullptr},
                                       {"codes", {5}, DType::I8, nullptr, raw(codes.data())},
                                       {"big", {2}, DType::I64, nullptr, raw(big.data())},
                                       {"empty", {0, 4}, DType::F32, nullptr, nullptr},
                                       {"scalar", {}, DType::F32, &one, nullptr}};
  write_safetensors(path, ts, {{"format", "pt"}, {"note", "hello"}});

  const std::string bytes = read_bytes(path);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(bytes[8], '{');

  const SafetensorsFile f = read_safetensors(path);
  EXPECT_EQ(f.metadata, (std::map<std::string, std::string>{{"format", "pt"}, {"note", "hello"}}));
  ASSERT_EQ(f.tensors.size(), ts.size());
  EXPECT_EQ(f.tensors[0].name, "big");  // widest elements first keeps everything aligned
  for (const WriteTensor& t : ts) {
    const TensorView* v = f.find(t.name);
    ASSERT_NE(v, nullptr) << t.name;
    EXPECT_EQ(v->dtype, t.dtype) << t.name;
    EXPECT_EQ(v->shape, t.shape) << t.name;
    const size_t elem = dtype_nbytes(t.dtype, 1, t.name);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(v->data) % elem, 0u) << t.name;
  }
  EXPECT_EQ(view_floats(*f.find("a")), a);
  std::vector<float> got = view_floats(*f.find("half"));
  for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(got[i], f16_to_f32(f32_to_f16(h[i])));
  got = view_floats(*f.find("brain"));
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(got[i], bf16_to_f32(f32_to_bf16(b[i])));
  EXPECT_EQ(std::memcmp(f.find("codes")->data, codes.data(), 5), 0);
  EXPECT_EQ(std::memcmp(f.find("big")->data, big.data(), 16), 0);
  EXPECT_EQ(f.find("empty")->nbytes, 0u);
  EXPECT_EQ(view_floats(*f.find("scalar")), std::vector<float>{1.5f});
}

TEST(Safetensors, WriterRejectsBadInput) {
  const std::string path = scratch_dir() + "/w.safetensors";
  const std::vector<float> a(4, 1.0f);
  expect_error(
      [&] {
        write_safetensors(path, {{"x", {4}, DType::F32, a.data()}, {"x", {4}, DType::F32, a.data()}});
      },
      {path, "duplicate"});
  expect_error([&] { write_safetensors(path, {{"x", {4}, DType::I8, a.data()}}); }, {path, "'x'"});
  expect_error([&] { write_safetensors(path, {{"x", {4}, DType::Q4_0, nullptr, nullptr}}); }, {path, "'x'"});
  expect_error([&] { write_safetensors(path, {{"x", {4}, DType::F32, nullptr, nullptr}}); }, {path, "'x'"});
  EXPECT_FALSE(fs::exists(path));
}

TEST(Safetensors, CorruptFilesFail) {
  const std::string dir = scratch_dir(), path = dir + "/c.safetensors";
  const std::vector<float> a = random_floats(6, 4);
  write_safetensors(path, {{"a", {2, 3}, DType::F32, a.data()}});
  const std::string good = read_bytes(path);
  ASSERT_NO_THROW(read_safetensors(path));

  auto check = [&](const std::string& bytes, const std::string& what) {
    SCOPED_TRACE(what);
    write_bytes(path, bytes);
    expect_error([&] { read_safetensors(path); }, {path, what});
  };
  std::string bad = good;
  const uint64_t too_long = good.size(), huge = uint64_t(1) << 62;
  std::memcpy(&bad[0], &too_long, 8);
  check(bad, "exceeds the file size");
  std::memcpy(&bad[0], &huge, 8);
  check(bad, "exceeds the file size");
  check(good.substr(0, 5), "truncated");
  check(good.substr(0, good.size() - 4), "outside the data buffer");
  bad = good;
  bad[8] = 'x';
  check(bad, "invalid JSON");
  const std::string data(24, '\0');
  check(make_safetensors(R"({"a": )", data), "invalid JSON");
  check(make_safetensors("[1, 2]", data), "not an object");
  check(make_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data.substr(0, 4)),
        "outside the data buffer");
  check(make_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data), "outside");
  check(make_safetensors(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", data),
        "unsupported dtype 'F8_E4M3'");
  check(make_safetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data), "needs 12");
  check(make_safetensors(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "non-negative");
  check(make_safetensors(R"({"a":{"dtype":"F32","shape":[2]}})", data), "data_offsets");
  check(make_safetensors(R"({"a":{"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,8]}})",
                         data),
        "too large");
  const std::string two = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  check(make_safetensors(two, data), "overlap");
  check(make_safetensors(R"({"__metadata__":{"k":1}})", data), "__metadata__");
}

// ---------------------------------------------------------------------------------------
// Hugging Face directories

TEST(HuggingFace, Stories260KRoundTrip) {
  const ModelSource src = load_model_source(stories_bin());
  CanonicalTensors want;
  const std::string dir = write_stories_hf(scratch_dir() + "/hf", want);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  const auto cfg = nlohmann::json::parse(read_bytes(dir + "/config.json"));
  EXPECT_EQ(cfg["model_type"], "llama");
  EXPECT_EQ(cfg["rms_norm_eps"].get<double>(), 1e-5);
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  const SafetensorsFile st = read_safetensors(dir + "/model.safetensors");
  EXPECT_EQ(st.find("lm_head.weight"), nullptr);
  EXPECT_NE(st.find("model.layers.4.mlp.down_proj.weight"), nullptr);

  const ModelSource hf = load_model_source(dir);
  EXPECT_EQ(hf.format, Format::HF);
  EXPECT_FALSE(hf.qk_interleaved);
  EXPECT_EQ(hf.config.family, "llama");
  expect_same_config(hf.config, src.config);
  expect_tensors(hf, want);
  // Rotate-half puts interleaved row 2i of each head at row i: check head 0 of layer 0.
  const std::vector<float> q_inter = view_floats(src.get("blk.0.attn_q.weight"));
  const std::vector<float> q_hf = view_floats(hf.get("blk.0.attn_q.weight"));
  EXPECT_TRUE(std::equal(q_hf.begin() + 64, q_hf.begin() + 128, q_inter.begin() + 128));

  EXPECT_EQ(hf.vocab.size(), 512);
  EXPECT_EQ(hf.vocab.tokens, src.vocab.tokens);
  EXPECT_EQ(hf.vocab.bos_id, 1);
  EXPECT_EQ(hf.vocab.eos_id, 2);
  EXPECT_TRUE(hf.vocab.add_bos);
  EXPECT_FALSE(hf.vocab.add_eos);
  EXPECT_EQ(load_model_source(dir + "/config.json").tensors.size(), hf.tensors.size());
}

TEST(HuggingFace, HalfPrecisionExport) {
  const ModelSource src = load_model_source(stories_bin());
  CanonicalTensors f32 = canonical_f32(src, DType::F32);
  std::vector<WriteTensor> half = f32.tensors;
  for (auto& t : half) t.dtype = t.name == "token_embd.weight" ? DType::BF16 : DType::F16;
  const std::string dir = scratch_dir();
  write_hf_model(dir, src.config, half, tokenizer::Vocab{});
  EXPECT_FALSE(fs::exists(dir + "/tokenizer.json"));
  const ModelSource hf = load_hf_model(dir, {});
  EXPECT_TRUE(hf.vocab.empty());
  EXPECT_EQ(nlohmann::json::parse(read_bytes(dir + "/config.json"))["torch_dtype"], "bfloat16");
  const TensorView& w = hf.get("blk.2.ffn_up.weight");
  EXPECT_EQ(w.dtype, DType::F16);
  const std::vector<float> got = view_floats(w), &ref = f32.values["blk.2.ffn_up.weight"];
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], f16_to_f32(f32_to_f16(ref[i]))) << i;
  EXPECT_EQ(hf.get("token_embd.weight").dtype, DType::BF16);

  std::vector<WriteTensor> q8 = f32.tensors;
  q8[0].dtype = DType::Q8_0;
  expect_error([&] { write_hf_model(dir + "/q8", src.config, q8, src.vocab); },
               {dir + "/q8", "F32, F16 and BF16"});
  q8.pop_back();
  q8[0].dtype = DType::F32;
  expect_error([&] { write_hf_model(dir + "/missing", src.config, q8, src.vocab); }, {"is missing"});
  EXPECT_FALSE(fs::exists(dir + "/missing/config.json"));
}

TEST(HuggingFace, ShardedIndex) {
  CanonicalTensors want;
  const std::string dir = write_stories_hf(scratch_dir(), want);
  {
    const SafetensorsFile f = read_safetensors(dir + "/model.safetensors");
    std::vector<WriteTensor> first, second;
    nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
    for (const TensorView& v : f.tensors) {
      const bool early =
          v.name.find("layers.0.") != std::string::npos || v.name.find("embed") != std::string::npos;
      (early ? first : second).push_back({v.name, v.shape, v.dtype, nullptr, v.data});
      index["weight_map"][v.name] =
          early ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    }
    write_safetensors(dir + "/model-00001-of-00002.safetensors", first);
    write_safetensors(dir + "/model-00002-of-00002.safetensors", second);
    write_bytes(dir + "/model.safetensors.index.json", index.dump());
  }
  fs::remove(dir + "/model.safetensors");
  const ModelSource hf = load_model_source(dir);
  expect_tensors(hf, want);
  EXPECT_EQ(hf.keepalive.size(), 2u);

  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string good_index = read_bytes(index_path);
  auto index = nlohmann::json::parse(good_index);
  index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
  write_bytes(index_path, index.dump());
  expect_error([&] { load_model_source(dir); }, {"model-00001-of-00002.safetensors", "model.norm.weight"});
  index["weight_map"]["model.norm.weight"] = "../model-00002-of-00002.safetensors";
  write_bytes(index_path, index.dump());
  expect_error([&] { load_model_source(dir); }, {index_path, "plain file name"});
  index["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
  write_bytes(index_path, index.dump());
  expect_error([&] { load_model_source(dir); }, {index_path, "does not exist"});
  write_bytes(index_path, "{\"weight_map\": ");
  expect_error([&] { load_model_source(dir); }, {index_path, "invalid JSON"});
}

TEST(HuggingFace, BadDirectoriesFail) {
  CanonicalTensors want;
  const std::string base = scratch_dir();
  const std::string dir = write_stories_hf(base + "/good", want);
  const std::string cfg_path = dir + "/config.json";
  const std::string good_cfg = read_bytes(cfg_path), good_weights = read_bytes(dir + "/model.safetensors");
  auto restore = [&] {
    write_bytes(cfg_path, good_cfg);
    write_bytes(dir + "/model.safetensors", good_weights);
  };

  // Harmless extras are skipped; unknown names are not.
  const std::vector<float> inv(4, 0.5f);
  edit_weights(dir, [&](auto& ts) {
    ts.push_back({"model.layers.0.self_attn.rotary_emb.inv_freq", {4}, DType::F32, inv.data()});
  });
  EXPECT_NO_THROW(load_model_source(dir));
  edit_weights(dir, [&](auto& ts) {
    ts.push_back({"model.layers.0.self_attn.foo.weight", {4}, DType::F32, inv.data()});
  });
  expect_error([&] { load_model_source(dir); }, {"unknown tensor 'model.layers.0.self_attn.foo.weight'"});
  restore();
  edit_weights(dir, [&](auto& ts) {
    ts.push_back({"model.layers.7.mlp.up_proj.weight", {4}, DType::F32, inv.data()});
  });
  expect_error([&] { load_model_source(dir); }, {"model.layers.7.mlp.up_proj.weight", "does not fit"});
  restore();
  edit_weights(dir, [&](auto& ts) {
    ts.erase(std::remove_if(ts.begin(), ts.end(),
                            [](auto& t) { return t.name == "model.layers.3.mlp.gate_proj.weight"; }),
             ts.end());
  });
  expect_error([&] { load_model_source(dir); }, {dir, "'model.layers.3.mlp.gate_proj.weight' is missing"});
  restore();

  auto config_error = [&](const std::function<void(nlohmann::json&)>& edit, const std::string& what) {
    SCOPED_TRACE(what);
    edit_config(dir, edit);
    expect_error([&] { load_model_source(dir); }, {what});
    restore();
  };
  config_error([](auto& c) { c["model_type"] = "gpt2"; }, "unsupported model_type 'gpt2'");
  config_error([](auto& c) { c.erase("hidden_size"); }, "missing 'hidden_size'");
  config_error([](auto& c) { c["hidden_size"] = "64"; }, "'hidden_size' must be an integer");
  config_error([](auto& c) { c["intermediate_size"] = 100; },
               "has shape [172, 64], config.json implies [100, 64]");
  config_error([](auto& c) { c["num_key_value_heads"] = 3; }, "not a multiple");
  config_error(
      [](auto& c) {
        c["rope_scaling"] = {{"type", "yarn"}, {"factor", 2.0}};
      },
      "unsupported rope_scaling");
  config_error([](auto& c) { c["tie_word_embeddings"] = false; }, "lm_head.weight is missing");
  config_error([](auto& c) { c["hidden_act"] = "gelu"; }, "unsupported hidden_act");
  // Accepted before, refused by GGUF: one validation (ModelConfig::validate) for every format.
  config_error([](auto& c) { c["rms_norm_eps"] = -1; }, "invalid normalisation epsilon -1");
  config_error([](auto& c) { c["rms_norm_eps"] = 0; }, "invalid normalisation epsilon 0");
  config_error([](auto& c) { c["rope_theta"] = 0; }, "invalid RoPE base (rope_theta) 0");
  config_error([](auto& c) { c["rope_theta"] = -10000; }, "invalid RoPE base");
  config_error([](auto& c) { c["rope_scaling"] = {{"type", "linear"}, {"factor", 0.0}}; }, "invalid rope scaling factor 0");
  config_error(
      [](auto& c) {
        c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0}, {"high_freq_factor", 4.0}};
      },
      "invalid llama3 rope scaling");
  write_bytes(cfg_path, "{\"model_type\": \"llama\",");
  expect_error([&] { load_model_source(dir); }, {cfg_path, "invalid JSON"});
  restore();

  // Llama 3 RoPE scaling is read from config.json.
  edit_config(dir, [](auto& c) {
    c["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 256}};
    c["eos_token_id"] = {2, 5};
  });
  const ModelSource scaled = load_model_source(dir);
  EXPECT_EQ(scaled.config.rope_scaling.type, "llama3");
  EXPECT_EQ(scaled.config.rope_scaling.factor, 8.0f);
  EXPECT_EQ(scaled.config.rope_scaling.original_max_position, 256);
  EXPECT_EQ(scaled.vocab.eos_id, 2);
  restore();

  fs::remove(dir + "/model.safetensors");
  expect_error([&] { load_model_source(dir); }, {dir, "no model.safetensors"});
  fs::remove(cfg_path);
  expect_error([&] { load_model_source(dir); }, {dir, "no config.json"});
}

TEST(HuggingFace, Qwen2WithHeadDimAndRopeScaling) {
  ModelConfig c;
  c.family = "qwen2";
  c.dim = 16, c.hidden_dim = 24, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 8;
  c.vocab_size = 40, c.max_seq_len = 64, c.norm_eps = 1e-6f, c.rope_theta = 1e6f;
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 2.0f;
  c.attn_qkv_bias = true;
  const CanonicalTensors want = random_llama(c);
  const std::string dir = scratch_dir();
  write_hf_model(dir, c, want.tensors, tokenizer::Vocab{});
  EXPECT_EQ(nlohmann::json::parse(read_bytes(dir + "/config.json"))["model_type"], "qwen2");
  const ModelSource hf = load_model_source(dir);
  EXPECT_EQ(hf.config.family, "qwen2");
  expect_same_config(hf.config, c);
  expect_tensors(hf, want);
  EXPECT_NE(read_safetensors(dir + "/model.safetensors").find("lm_head.weight"), nullptr);
}

TEST(HuggingFace, OptLoadsAndRoundTrips) {
  const std::string base = scratch_dir();
  std::map<std::string, std::vector<float>> vals;
  write_tiny_opt(base + "/a", "model.", vals);
  write_tiny_opt(base + "/b", "", vals);
  const ModelSource a = load_model_source(base + "/a"), b = load_model_source(base + "/b");
  for (const ModelSource* s : {&a, &b}) {
    const ModelConfig& c = s->config;
    EXPECT_EQ(c.arch, Arch::OPT);
    EXPECT_EQ(c.activation, "relu");
    EXPECT_TRUE(c.tie_embeddings);
    EXPECT_TRUE(c.attn_qkv_bias && c.attn_out_bias && c.mlp_bias);
    EXPECT_EQ(c.norm_eps, 1e-5f);
    EXPECT_EQ(s->tensors.size(), size_t(4 + 2 * 16));
    EXPECT_EQ(s->get("position_embd.weight").shape, (std::vector<int64_t>{22, 16}));  // HF offset of 2 kept
    EXPECT_EQ(view_floats(s->get("blk.1.ffn_up.bias")), vals["decoder.layers.1.fc1.bias"]);
    EXPECT_EQ(view_floats(s->get("blk.0.ffn_norm.weight")), vals["decoder.layers.0.final_layer_norm.weight"]);
    EXPECT_EQ(view_floats(s->get("output_norm.bias")), vals["decoder.final_layer_norm.bias"]);
    EXPECT_EQ(view_floats(s->get("blk.1.attn_output.weight")),
              vals["decoder.layers.1.self_attn.out_proj.weight"]);
  }

  const CanonicalTensors canon = canonical_f32(a, DType::F32);
  write_hf_model(base + "/c", a.config, canon.tensors, tokenizer::Vocab{});
  EXPECT_EQ(nlohmann::json::parse(read_bytes(base + "/c/config.json"))["model_type"], "opt");
  const ModelSource c = load_model_source(base + "/c");
  expect_same_config(c.config, a.config);
  expect_tensors(c, canon);

  edit_config(base + "/a", [](auto& j) { j["word_embed_proj_dim"] = 8; });
  expect_error([&] { load_model_source(base + "/a"); }, {"unsupported: OPT with project_in/out"});
  edit_config(base + "/b", [](auto& j) { j["activation_function"] = "gelu"; });
  expect_error([&] { load_model_source(base + "/b"); }, {"activation_function 'gelu'"});
}

}  // namespace
