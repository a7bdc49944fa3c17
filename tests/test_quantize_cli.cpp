// lcq quantize and lcq bench on the command line, on stories260K: the written model runs in
// every command, the default recipe, impossible settings and corrupted models refused before
// any work, and the benchmark's JSON.
#include "lcq/io/model_source.h"
#include "lcq/kernels/lut_codebook.h"
#include "lcq/kernels/packed_codebook.h"
#include "lcq/model/loader.h"
#include "lcq/quant/quantize.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>

using namespace lcq;

namespace {

using test::stories_bin;
using test::stories_tok;
using test::tinystories;

}  // namespace

TEST(QuantizeCli, WritesAModelEveryCommandRunsAndAFakeQuantizedCopy) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/w3.gguf", fake = dir + "/w3-fake.gguf";
  auto r = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + out +
                         " --bits 3 --group 32 --rank 2 --epochs 1 --nsamples 4 --seqlen 64 --calib " + tinystories() +
                         " --export-fake " + fake + " --export-type f32 --json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("blocks").size(), 5u);
  EXPECT_EQ(j.at("blocks")[0].at("layers").size(), 7u);
  EXPECT_GT(j.at("bits_per_weight").get<double>(), 3.0);
  EXPECT_LT(j.at("bits_per_weight").get<double>(), 4.0);
  EXPECT_GT(j.at("peak_rss_bytes").get<int64_t>(), 0);

  auto info = test::run_lcq("info " + out + " --json");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  auto gen = test::run_lcq("generate " + out + " -n 8 --quiet");
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_FALSE(gen.out.empty());

  // The fake-quantized export is an ordinary model with exactly the dequantized weights.
  model::LoadedModel q = model::load_model(out), f = model::load_model(fake);
  io::ModelSource fs = io::load_model_source(fake);
  ASSERT_NE(fs.find("blk.0.attn_q.weight"), nullptr);
  for (size_t l = 0; l < q.model.blocks.size(); ++l) {
    auto a = q.model.blocks[l].linears(), b = f.model.blocks[l].linears();
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(a[i].second->dense_weight().equal(b[i].second->weight)) << a[i].first;  // q is packed
  }
}

// Quantizers run exact products whatever a model's runtime options say (the library test is
// Stories260K.QuantizersIgnoreThePromptDtype), so `quantize` offers no inference options.
TEST(QuantizeCli, OffersNoInferenceOptions) {
  for (const std::string flag : {"--prompt-dtype f32", "--kernel lut"}) {
    auto r = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " +
                           test::scratch_dir() + "/x.gguf --method rtn " + flag + " --quiet");
    EXPECT_NE(r.exit_code, 0) << flag;
    EXPECT_NE(r.err.find(flag.substr(0, flag.find(' '))), std::string::npos) << r.err;
  }
  auto help = test::run_lcq("quantize --help");
  EXPECT_EQ(help.out.find("--prompt-dtype"), std::string::npos);
  EXPECT_NE(help.out.find("--threads"), std::string::npos);
}

// `lcq quantize MODEL -o OUT --calib FILE` with no other option runs the default recipe
// (quant::default_recipe(), the configuration BENCHMARKS.md measured best on SmolLM2) and says
// so in the file's settings.
TEST(QuantizeCli, NoOptionsRunTheDefaultRecipe) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/default.gguf";
  auto r = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + out + " --calib " +
                         tinystories() + " --json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = nlohmann::json::parse(r.out).at("settings");
  EXPECT_EQ(s.at("method"), "lcq");
  EXPECT_EQ(s.at("bits"), 4);
  EXPECT_EQ(s.at("group"), 64);
  EXPECT_EQ(s.at("rank"), 2);
  EXPECT_EQ(s.at("init"), "gptq");
  EXPECT_EQ(s.at("gptq").at("grid"), "wmse");
  EXPECT_EQ(s.at("gptq").at("act_order"), true);
  EXPECT_EQ(s.at("embed_rounding"), "gptq");
  EXPECT_EQ(s.at("epochs"), 2);
  EXPECT_EQ(s.at("embed_bits"), 6);
  EXPECT_EQ(s.at("nsamples"), 128);
  EXPECT_EQ(s.at("seqlen"), 512);  // the recipe's windows, within stories260K's context of 512
  const quant::QuantizeOptions recipe = quant::default_recipe();
  EXPECT_EQ(s.at("bits"), recipe.lcq.bits);
  EXPECT_EQ(s.at("embed_bits"), recipe.embedding.bits);
  EXPECT_EQ(s.at("epochs"), recipe.engine.epochs);
  // The settings the file carries are the report's, and the embedding is stored quantized.
  const io::ModelSource src = io::load_model_source(out);
  EXPECT_EQ(nlohmann::json::parse(src.metadata.at("lcq.settings").get<std::string>()), s);
  const model::LoadedModel q = model::load_model(out);
  EXPECT_NE(q.model.tok_embd_packed, nullptr) << "the token embedding should be a 6-bit codebook";
}

TEST(QuantizeCli, ImpossibleSettingsFailBeforeAnyWorkAndWriteNothing) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/out.gguf";
  const std::string short_calib = dir + "/short.txt";
  test::write_bytes(short_calib, "Once upon a time.");
  const std::string base = "quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + out + " --quiet ";
  const std::string calib = " --calib " + tinystories() + " --nsamples 2 --seqlen 32 --epochs 1";
  struct Case {
    std::string args, must_mention;
  } cases[] = {
      {"--bits 0" + calib, "--bits"},
      {"--bits 9" + calib, "--bits"},
      {"--rank 0" + calib, "--rank"},
      {"--group 0" + calib, "--group"},
      {"--dq-bits 12" + calib, "--dq-bits"},
      {"--loss l1" + calib, "--loss"},
      {"--train-dtype fp16" + calib, "--train-dtype"},
      {"--calib " + short_calib + " --seqlen 64", short_calib},
      {"--method lcq", "--calib"},
      {"--seqlen 100000 --calib " + tinystories(), "--seqlen"},
  };
  for (const auto& c : cases) {
    test::expect_refused(test::run_lcq(base + c.args), c.must_mention, c.args, 0);
    EXPECT_FALSE(std::filesystem::exists(out)) << c.args;
  }
  // Nothing left behind in the output directory either (no temporary files).
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "short.txt") << e.path();
}

TEST(QuantizeCli, CorruptedModelCopiesGiveOneClearError) {
  const std::string dir = test::scratch_dir();
  const std::string bytes = test::read_bytes(stories_bin());
  const std::string nan_model = dir + "/nan.bin";
  std::string corrupted = bytes;
  const float nan = NAN;
  std::memcpy(&corrupted[28 + 512 * 64 * 4 + 64 * 4 * 5 + 100 * 4], &nan, 4);  // inside blk.0's wq
  test::write_bytes(nan_model, corrupted);
  auto r = test::run_lcq("quantize " + nan_model + " --tokenizer " + stories_tok() + " -o " + dir +
                         "/o.gguf --method rtn --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("NaN"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/o.gguf"));
}

TEST(BenchCli, ReportsKernelAndPackedModelSpeedAsJson) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/w2.gguf";
  auto q = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + out +
                         " --method rtn --bits 2 --group 32 --quiet");
  ASSERT_EQ(q.exit_code, 0) << q.err;
  auto r = test::run_lcq("bench " + out + " --threads 1 --bits 2 --reps 1 --sweep-mib 1 --prefill 8 --decode 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_GT(j.at("memory_read_gb_per_s").at("1").get<double>(), 0);
  std::set<std::string> shapes, kernels;
  for (const auto& row : j.at("gemv")) {
    shapes.insert(row.at("shape").get<std::string>());
    kernels.insert(row.at("kernel").get<std::string>());
    EXPECT_GT(row.at("gb_per_s").get<double>(), 0);
  }
  // 4096x4096 and stories260K's own shapes (64x64 q/o, 32x64 k/v, 172x64 and 64x172 MLP).
  EXPECT_EQ(shapes, (std::set<std::string>{"4096x4096", "64x64", "32x64", "172x64", "64x172"}));
  std::set<std::string> want{"lcq-b2-r2", "dense-f32", "dense-bf16"};
  if (lcq::kernels::int8_simd_available()) want.insert("lcq-b2-r2-int8");  // 4096x4096 g128: whole index blocks
  if (lcq::kernels::lut_simd_available(2)) want.insert("lcq-b2-r2-lut");
  EXPECT_EQ(kernels, want);
  const auto& m = j.at("model");
  EXPECT_EQ(m.at("packed_layers").get<int>(), 35);  // 5 blocks x 7 linears, none expanded
  EXPECT_GT(m.at("runs").at(0).at("decode_tokens_per_s").get<double>(), 0);

  // The model on the LUT kernel (its own layout where the CPU runs it): every layer still packed.
  auto lut = test::run_lcq("bench " + out + " --threads 1 --no-kernels --kernel lut --prefill 8 --decode 4 --json");
  ASSERT_EQ(lut.exit_code, 0) << lut.err;
  const auto jl = nlohmann::json::parse(lut.out);
  EXPECT_EQ(jl.at("model").at("packed_layers").get<int>(), 35);
  EXPECT_EQ(jl.at("model").at("packed_kernel").get<std::string>(), "lut");
  EXPECT_GT(jl.at("model").at("runs").at(0).at("decode_tokens_per_s").get<double>(), 0);

  auto bad = test::run_lcq("bench " + dir + "/missing.gguf --no-kernels");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("missing.gguf"), std::string::npos) << bad.err;

  // --simd-target: the kernels of a lesser CPU (here AVX2 where this one has it), or one error line.
  bool has_avx2 = false;
  for (const auto& t : lcq::kernels::available_simd_targets()) has_avx2 |= std::string(t.name) == "AVX2";
  if (has_avx2) {
    auto avx2 = test::run_lcq("bench " + out + " --simd-target AVX2 --threads 1 --no-kernels --prefill 8 --decode 4 --json");
    ASSERT_EQ(avx2.exit_code, 0) << avx2.err;
    EXPECT_EQ(nlohmann::json::parse(avx2.out).at("simd_target").get<std::string>(), "AVX2");
  }
  auto no_target = test::run_lcq("bench --simd-target NOSUCH --no-kernels");
  EXPECT_EQ(no_target.exit_code, 1);
  EXPECT_NE(no_target.err.find("--simd-target must be one this CPU runs"), std::string::npos) << no_target.err;
  EXPECT_EQ(std::count(no_target.err.begin(), no_target.err.end(), '\n'), 1) << no_target.err;
}
