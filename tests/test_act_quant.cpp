// Weight-activation schemes: the activation quantizers against their definitions, the file
// metadata, SmoothQuant's fold (the model's function is unchanged), the cost of A8 and A4 on
// stories260K, and lcq quantize / perplexity driving it all from the command line.
#include "lcq/core/error.h"
#include "lcq/model/act_quant.h"
#include "lcq/model/loader.h"
#include "lcq/quant/act_calibration.h"
#include "stories_fixture.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

using namespace lcq;

namespace {

using test::load_stories;
using test::stories_calibration;
using test::stories_ppl;
using test::stories_bin;
using test::stories_tok;
using test::tinystories;

TEST(ActQuant, PerTokenDynamicIsWithinHalfAStepOfEachTokensGrid) {
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({3, 5, 64}) * torch::rand({3, 5, 1}) * 10;
  model::ActQuant q;
  q.bits = 8;
  q.scheme = model::ActQuant::Scheme::PerTokenDynamic;
  const torch::Tensor y = q.apply(x);
  const torch::Tensor lo = std::get<0>(x.min(-1, true)).clamp_max(0), hi = std::get<0>(x.max(-1, true)).clamp_min(0);
  const torch::Tensor step = (hi - lo) / 255;
  EXPECT_TRUE(((y - x).abs() <= step / 2 + 1e-6).all().item<bool>());
  // At most 256 distinct values per token.
  for (int64_t t = 0; t < 5; ++t) EXPECT_LE(std::get<0>(at::_unique(y[0][t])).numel(), 256);
}

TEST(ActQuant, PerTensorStaticClampsToItsCalibratedRange) {
  model::ActQuant q;
  q.bits = 8;
  q.scheme = model::ActQuant::Scheme::PerTensorStatic;
  q.static_scale = 1.0f / 127;  // range [-1, 1]
  const torch::Tensor x = torch::tensor({-3.0f, -1.0f, -0.5f, 0.0f, 0.3f, 1.0f, 2.0f});
  const torch::Tensor y = q.apply(x);
  EXPECT_NEAR(y[0].item<float>(), -128.0f / 127, 1e-6);  // the symmetric grid's extra negative code
  EXPECT_NEAR(y[6].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(y[4].item<float>(), std::round(0.3f * 127) / 127, 1e-6);
}

TEST(ActQuant, MetadataRoundTripsAndStaticNeedsEveryRange) {
  model::LoadedModel m = load_stories();
  model::ActQuantConfig a;
  a.bits = 8;
  a.scheme = model::ActQuant::Scheme::PerTensorStatic;
  a.kv_bits = 8;
  for (size_t l = 0; l < m.model.blocks.size(); ++l)
    for (const auto& [name, lin] : m.model.blocks[l].linears())
      a.static_absmax["blk." + std::to_string(l) + "." + name] = 1.5f + float(l);
  model::set_activation_quant(m.model, a);
  const model::ActQuantConfig back = model::activation_quant(m.model);
  EXPECT_EQ(back.bits, 8);
  EXPECT_EQ(back.kv_bits, 8);
  EXPECT_EQ(back.scheme, model::ActQuant::Scheme::PerTensorStatic);
  for (const auto& [k, v] : a.static_absmax) EXPECT_NEAR(back.static_absmax.at(k), v, 1e-5) << k;
  const auto md = model::act_quant_metadata(a);
  const auto parsed = model::act_quant_from_metadata(md, "x.gguf");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->static_absmax, a.static_absmax);
  EXPECT_FALSE(model::act_quant_from_metadata(nlohmann::json::object(), "x.gguf").has_value());
  // A file naming an unknown scheme is refused, naming the file and the key.
  nlohmann::json unknown = md;
  unknown["lcq.act.scheme"] = "per-channel";
  try {
    model::act_quant_from_metadata(unknown, "x.gguf");
    FAIL() << "an unknown scheme was accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "x.gguf: lcq.act.scheme must be per-tensor-static or per-token-dynamic, got 'per-channel'");
  }

  a.static_absmax.erase("blk.2.ffn_up");
  try {
    model::set_activation_quant(m.model, a);
    FAIL() << "a missing range was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'blk.2.ffn_up' has none"), std::string::npos) << e.what();
  }
  nlohmann::json bad = md;
  bad["lcq.act.static_absmax"] = "{not json";
  EXPECT_THROW(model::act_quant_from_metadata(bad, "x.gguf"), Error);
}

TEST(Stories260K, SmoothQuantFoldsWithoutChangingTheModel) {
  model::LoadedModel fp = load_stories(), sq = load_stories();
  const torch::Tensor calib = stories_calibration(fp);
  EXPECT_EQ(quant::smooth_quant(sq.model, calib, 0.8, false), 2 * int(sq.model.blocks.size()));
  EXPECT_FALSE(sq.model.blocks[0].attn_norm.weight.equal(fp.model.blocks[0].attn_norm.weight));
  torch::NoGradGuard ng;
  const torch::Tensor tokens = calib.slice(0, 0, 2);
  const torch::Tensor a = fp.model.forward(tokens), b = sq.model.forward(tokens);
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-3 * a.abs().max().item<double>());
  // The point of it: the largest input channel of q is tamed relative to the median channel.
  const auto before = quant::calibrate_input_absmax(fp.model, calib, false);
  const auto after = quant::calibrate_input_absmax(sq.model, calib, false);
  EXPECT_LT(after.at("blk.0.attn_q") / after.at("blk.0.attn_output"),
            before.at("blk.0.attn_q") / before.at("blk.0.attn_output") * 1.5);
}

TEST(Stories260K, EightBitActivationsCostLittleAndFourBitsMuchMore) {
  model::LoadedModel m = load_stories();
  const double fp = stories_ppl(m);
  model::ActQuantConfig a;
  a.bits = 8;
  model::set_activation_quant(m.model, a);
  const double a8 = stories_ppl(m);
  a.kv_bits = 8;
  model::set_activation_quant(m.model, a);
  const double a8kv8 = stories_ppl(m);
  a.bits = 4;
  a.kv_bits = 0;
  model::set_activation_quant(m.model, a);
  const double a4 = stories_ppl(m);
  a.bits = 8;
  a.scheme = model::ActQuant::Scheme::PerTensorStatic;
  a.static_absmax = quant::calibrate_input_absmax(m.model, stories_calibration(m), false);
  model::set_activation_quant(m.model, a);
  const double a8_static = stories_ppl(m);
  std::printf("stories260K ppl: fp %.4f, A8 dynamic %.4f (+KV8 %.4f), A4 dynamic %.4f, A8 static %.4f\n", fp, a8,
              a8kv8, a4, a8_static);
  EXPECT_NE(a8, fp);
  EXPECT_LT(std::abs(a8 / fp - 1), 0.02);
  EXPECT_LT(std::abs(a8kv8 / fp - 1), 0.03);
  EXPECT_LT(std::abs(a8_static / fp - 1), 0.10);
  EXPECT_GT(a4, a8 * 1.05);
}

TEST(QuantizeCli, WeightActivationSchemesAreStoredAndHonouredByPerplexity) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/w4a8.gguf";
  const std::string calib = " --calib " + tinystories() + " --nsamples 8 --seqlen 64";
  auto q = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + out +
                         " --method lrq --bits 4 --group 32 --epochs 1 --act-bits 8 --act-scheme per-tensor-static "
                         "--smoothquant 0.8 --quiet --json" + calib);
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(nlohmann::json::parse(q.out).at("settings").at("activations").at("scheme"), "per-tensor-static");
  const std::string ppl = "perplexity " + out + " --text " + tinystories() + " --seqlen 128 --limit 2 --json --quiet";
  auto w4a8 = test::run_lcq(ppl);
  ASSERT_EQ(w4a8.exit_code, 0) << w4a8.err;
  const auto j = nlohmann::json::parse(w4a8.out);
  EXPECT_EQ(j.at("activations"), "A8 per-tensor-static");
  auto w4 = test::run_lcq(ppl + " --act-bits 0");
  ASSERT_EQ(w4.exit_code, 0) << w4.err;
  const auto j4 = nlohmann::json::parse(w4.out);
  EXPECT_EQ(j4.at("activations"), "weight-only");
  EXPECT_NE(j.at("perplexity").get<double>(), j4.at("perplexity").get<double>());
  EXPECT_NEAR(j.at("perplexity").get<double>(), j4.at("perplexity").get<double>(),
              0.1 * j4.at("perplexity").get<double>());

  // The zero-shot evaluation honours (and reports) the file's scheme and an override alike.
  const std::string eval = "eval " + out + " --tasks copa --limit 4 --data-dir " + test::shared("data/zeroshot") +
                           " --json --threads 1";
  auto z = test::run_lcq(eval);
  ASSERT_EQ(z.exit_code, 0) << z.err;
  EXPECT_EQ(nlohmann::json::parse(z.out).at("activations"), "A8 per-tensor-static");
  auto z4 = test::run_lcq(eval + " --act-bits 0");
  ASSERT_EQ(z4.exit_code, 0) << z4.err;
  EXPECT_EQ(nlohmann::json::parse(z4.out).at("activations"), "weight-only");

  // An ordinary model has no calibrated ranges: static is refused, dynamic runs.
  auto refused = test::run_lcq("perplexity " + stories_bin() + " --tokenizer " + stories_tok() + " --text " +
                               tinystories() + " --limit 1 --act-bits 8 --act-scheme per-tensor-static");
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("stories260K.bin: per-tensor-static"), std::string::npos) << refused.err;
  auto dynamic = test::run_lcq("perplexity " + stories_bin() + " --tokenizer " + stories_tok() + " --text " +
                               tinystories() + " --seqlen 128 --limit 1 --act-bits 8 --kv-bits 8 --json --quiet");
  ASSERT_EQ(dynamic.exit_code, 0) << dynamic.err;
  EXPECT_EQ(nlohmann::json::parse(dynamic.out).at("activations"), "A8 per-token-dynamic + KV8");

  auto no_calib = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + dir +
                                "/x.gguf --method rtn --act-bits 8 --act-scheme per-tensor-static");
  EXPECT_EQ(no_calib.exit_code, 1);
  EXPECT_NE(no_calib.err.find("needs --calib"), std::string::npos) << no_calib.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
}

}  // namespace
