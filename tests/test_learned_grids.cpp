// The learned rank-one methods on the reconstruction engine: OmniQuant's weight clipping,
// FlexRound and LRQ. Step 0 against RTN, exact storage of what was trained, the LRQ rank
// rule, and stories260K end to end for each method.
#include "lcq/core/error.h"
#include "lcq/model/loader.h"
#include "lcq/quant/flexround.h"
#include "lcq/quant/omniquant.h"
#include "lcq/quant/quantize.h"
#include "lcq/quant/uniform.h"
#include "stories_fixture.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

using namespace lcq;

namespace {

using test::load_stories;
using test::rtn_options;

// Moves every learned tensor by a random amount, as training would.
void perturb(std::vector<std::vector<torch::Tensor>> sets, double amount) {
  torch::NoGradGuard ng;
  for (auto& set : sets)
    for (auto& t : set) t.add_(torch::randn_like(t) * amount);
}

torch::Tensor dequantized(const CodebookLayer& l) {
  auto w = torch::empty({l.rows, l.cols}, torch::kFloat32);
  l.dequantize(w.data_ptr<float>());
  return w;
}

// Every group's codebook [groups, K], in the layer's own arithmetic.
torch::Tensor dequantized_codebooks(const CodebookLayer& l) {
  auto c = torch::empty({l.n_groups(), l.levels()}, torch::kFloat32);
  for (int64_t k = 0; k < l.n_groups(); ++k) l.codebook(k, c.data_ptr<float>() + k * l.levels());
  return c;
}

}  // namespace

// S2 = 0 and s1 = s0: the first step trains from exactly the RTN weights.
TEST(FlexRound, StepZeroIsRtnBitForBitForBothScalings) {
  torch::manual_seed(1);
  const torch::Tensor W = torch::randn({40, 70});  // ragged: 70 = 2 * 32 + 6
  for (int bits : {2, 3, 4}) {
    const quant::LcqOptions o = rtn_options(bits, 32, 8);
    const auto gw = quant::GroupedWeight::make(W, 32);
    const torch::Tensor rtn = quant::fake_quantize(gw, quant::minmax_grid(gw, bits), bits);
    for (int64_t rank : {0, 3}) {
      quant::FlexRoundLinear f(W, o, rank, at::detail::createCPUGenerator(2));
      EXPECT_TRUE(f.weight().equal(rtn)) << "bits " << bits << " rank " << rank;
    }
  }
}

// --init wmse reaches FlexRound and LRQ too: step 0 is the energy-weighted grid, which differs
// from mse's when the energies are uneven; without energies it is mse's.
TEST(FlexRound, WeightedStartIsTheWeightedGrid) {
  torch::manual_seed(3);
  const torch::Tensor W = torch::randn({24, 70});
  const torch::Tensor energy = torch::rand({70}).pow(4) * 10;  // a few columns dominate
  quant::LcqOptions o = rtn_options(3, 32, 8);
  const auto gw = quant::GroupedWeight::make(W, 32);
  o.init = quant::LcqInit::kWmse;
  const torch::Tensor weighted = quant::fake_quantize(gw, quant::start_grid(gw, o, energy), 3);
  const torch::Tensor plain = quant::fake_quantize(gw, quant::mse_grid(gw, 3), 3);
  ASSERT_FALSE(weighted.equal(plain)) << "the energies should move some group's clipping";
  for (int64_t rank : {0, 2}) {
    EXPECT_TRUE(quant::FlexRoundLinear(W, o, rank, at::detail::createCPUGenerator(2), energy).weight().equal(weighted))
        << "rank " << rank;
    EXPECT_TRUE(quant::FlexRoundLinear(W, o, rank, at::detail::createCPUGenerator(2)).weight().equal(plain))
        << "rank " << rank;
  }
}

TEST(FlexRound, StoredLayerIsExactlyTheTrainedWeight) {
  torch::manual_seed(3);
  const torch::Tensor W = torch::randn({24, 100});
  for (int64_t rank : {0, 4}) {
    quant::FlexRoundLinear f(W, rtn_options(3, 32, 0), rank, at::detail::createCPUGenerator(4));
    perturb(f.parameter_sets(), 0.05);
    const CodebookLayer l = f.finalize();
    torch::NoGradGuard ng;
    EXPECT_TRUE(torch::allclose(dequantized(l), f.weight(), 0, 1e-6)) << "rank " << rank;
    EXPECT_EQ(l.rank, 1);
    // The learned scales changed some codes away from plain rounding.
    const auto gw = quant::GroupedWeight::make(W, 32);
    const auto rtn_codes = gw.ungroup(quant::quantize_codes(gw, quant::minmax_grid(gw, 3), 3));
    EXPECT_FALSE(f.codes().equal(rtn_codes));
  }
}

TEST(FlexRound, LrqRankFollowsTheLayerUnlessGiven) {
  quant::FlexRoundOptions f;
  EXPECT_EQ(quant::lrq_rank(576, 576, f), 144);
  EXPECT_EQ(quant::lrq_rank(1536, 576, f), 144);
  EXPECT_EQ(quant::lrq_rank(4096, 4096, f), 1024);  // the official code's rank for LLaMA-7B
  EXPECT_EQ(quant::lrq_rank(3, 2, f), 1);
  f.lrq_rank = 32;
  EXPECT_EQ(quant::lrq_rank(576, 576, f), 32);
  f.lrq_rank = 1000;
  EXPECT_EQ(quant::lrq_rank(64, 128, f), 64);
  quant::FlexRoundLinear lrq(torch::randn({64, 128}), rtn_options(2, 32, 8), 16, at::detail::createCPUGenerator(0));
  EXPECT_EQ(lrq.learned_parameters(), 64 * 4 + 64 * 16 + 16 * 128 + 64 + 128);
}

TEST(OmniQuant, StartsSlightlyClippedAndStoresExactlyWhatItTrained) {
  torch::manual_seed(5);
  const torch::Tensor W = torch::randn({16, 90});
  quant::LwcLinear lwc(W, rtn_options(3, 32, 0));
  // gamma = beta = sigmoid(4): the range starts at 98.2 % of min-max.
  const auto gw = quant::GroupedWeight::make(W, 32);
  const double shrink = 1.0 / (1.0 + std::exp(-4.0));
  const torch::Tensor clipped = quant::fake_quantize(gw, quant::minmax_grid(gw, 3, shrink), 3);
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::allclose(lwc.weight(), clipped, 0, 1e-5));
  perturb(lwc.parameter_sets(), 1.0);
  EXPECT_TRUE(torch::allclose(dequantized(lwc.finalize()), lwc.weight(), 0, 1e-6));
}

// Every learned method on stories260K: each block's loss drops, the file is written and
// loads, and perplexity is finite and below RTN's.
TEST(Stories260K, LearnedGridMethodsTrainLoadAndBeatRtn) {
  const std::string dir = test::scratch_dir();
  model::LoadedModel fp = load_stories();
  const torch::Tensor calib = test::stories_calibration(fp);
  const std::vector<int> eval_tokens = test::stories_eval_tokens(fp);

  const double ppl_rtn = test::stories_rtn_ppl(3, 32, eval_tokens);
  quant::QuantizeOptions o = test::stories_options("rtn", 3, 32);

  for (const std::string method : {"omniquant", "flexround", "lrq"}) {
    o.method = quant::parse_method(method);
    model::LoadedModel m = load_stories();
    auto q = quant::quantize_model(m.model, calib, o);
    for (const auto& b : q.blocks) EXPECT_LT(b.trained_loss, b.init_loss) << method << " block " << b.layer;
    const std::string path = dir + "/" + method + ".gguf";
    quant::write_quantized_model(path, m.model, m.tok().vocab(), q, {});
    model::LoadedModel back = model::load_model(path);
    const double ppl = test::stories_ppl(back.model, eval_tokens);
    std::printf("stories260K W3 g32: rtn %.3f, %s %.3f (%.3f bits/weight)\n", ppl_rtn, method.c_str(), ppl,
                q.bits_per_weight);
    EXPECT_TRUE(std::isfinite(ppl)) << method;
    EXPECT_LT(ppl, ppl_rtn) << method;
    EXPECT_EQ(q.layers.begin()->second.rank, 1) << method;
  }
}

// LCQ --init-from a FlexRound file: with rank 1 and no training it is FlexRound's model again
// (its codes kept, block 0's loss FlexRound's); trained at rank 2 it improves on it.
TEST(Stories260K, LcqStartsFromAFlexRoundFileAndImprovesOnIt) {
  const std::string dir = test::scratch_dir();
  model::LoadedModel fp = load_stories();
  const torch::Tensor calib = test::stories_calibration(fp);
  const std::vector<int> tokens = test::stories_eval_tokens(fp);

  quant::QuantizeOptions o = test::stories_options("flexround", 3, 32);
  model::LoadedModel fr = load_stories();
  const quant::QuantizeResult fq = quant::quantize_model(fr.model, calib, o);
  const std::string start = dir + "/flexround.gguf";
  quant::write_quantized_model(start, fr.model, fr.tok().vocab(), fq, {});
  const double ppl_fr = test::stories_ppl(fr.model, tokens);

  o.method = quant::Method::kLcq;
  o.init_from = start;
  o.lcq.rank = 1;
  o.engine.epochs = 0;
  model::LoadedModel same = load_stories();
  const quant::QuantizeResult sq = quant::quantize_model(same.model, calib, o);
  ASSERT_EQ(sq.layers.size(), fq.layers.size());
  for (const auto& [name, l] : sq.layers) EXPECT_EQ(l.indices, fq.layers.at(name).indices) << name;
  EXPECT_NEAR(test::stories_ppl(same.model, tokens), ppl_fr, 0.01 * ppl_fr);
  EXPECT_NEAR(sq.blocks[0].init_loss, fq.blocks[0].final_loss, 0.01 * fq.blocks[0].final_loss);

  o.lcq.rank = 2;
  o.engine.epochs = 3;
  model::LoadedModel t = load_stories();
  const quant::QuantizeResult tq = quant::quantize_model(t.model, calib, o);
  EXPECT_LT(tq.blocks[0].final_loss, fq.blocks[0].final_loss);
  const double ppl = test::stories_ppl(t.model, tokens);
  std::printf("stories260K W3 g32: flexround %.3f, lcq r2 --init-from it %.3f\n", ppl_fr, ppl);
  EXPECT_LT(ppl, ppl_fr);

  // --init-codes nearest: the file gives the grid only, and LCQ quantizes the model's own
  // full-precision weights (not the file's rounded ones): untrained at rank 1, the codes are
  // the nearest entries of the ORIGINAL weights on the file's grid, which FlexRound's learned
  // rounding is not.
  o.lcq.rank = 1;
  o.engine.epochs = 0;
  o.lcq.start_codes = quant::StartCodes::kNearest;
  model::LoadedModel near = load_stories();
  const quant::QuantizeResult nq = quant::quantize_model(near.model, calib, o);
  ASSERT_EQ(nq.layers.size(), fq.layers.size());
  int64_t moved = 0, total = 0;
  for (size_t l = 0; l < fp.model.blocks.size(); ++l) {
    for (const auto& [short_name, lin] : fp.model.blocks[l].linears()) {
      const std::string name = "blk." + std::to_string(l) + "." + short_name;
      const CodebookLayer& got = nq.layers.at(name);
      const CodebookLayer& file = fq.layers.at(name);
      // The grid is the file's (S and B double-quantized once more).
      const torch::Tensor cg = dequantized_codebooks(got), cf = dequantized_codebooks(file);
      EXPECT_LT((cg - cf).abs().sum().item<double>(), 1e-2 * cf.abs().sum().item<double>()) << name;
      // The codes are the nearest entries of the model's original weights on that grid.
      CodebookLayer expect = got;
      const torch::Tensor W = lin->weight.to(torch::kFloat32).contiguous();
      quant::assign_nearest(expect, W.data_ptr<float>());
      EXPECT_EQ(got.indices, expect.indices) << name;
      for (size_t i = 0; i < got.indices.size(); ++i) moved += got.indices[i] != file.indices[i];
      total += int64_t(got.indices.size());
    }
  }
  EXPECT_GT(moved, total / 100) << "FlexRound's codes differ from the nearest rounding of the original weights";

  // A start of other bits, a start for another method, two starts at once: one error line
  // naming the problem, before any work, and no output file.
  const std::string base = "quantize " + test::stories_bin() + " --tokenizer " + test::stories_tok() + " -o " + dir +
                           "/x.gguf --group 32 --calib " + test::tinystories() + " --nsamples 4 --seqlen 64 --quiet";
  const std::string awq = dir + "/awq.gguf";
  const auto made = test::run_lcq("quantize " + test::stories_bin() + " --tokenizer " + test::stories_tok() + " -o " +
                                  awq + " --method awq --bits 3 --group 32 --calib " + test::tinystories() +
                                  " --nsamples 4 --seqlen 64 --quiet");
  ASSERT_EQ(made.exit_code, 0) << made.err;
  const struct {
    std::string args, message;
  } bad[] = {
      {" --method lcq --bits 2 --init-from " + start, "is rank 1, 3 bits, group 32; LCQ --bits 2 --group 32"},
      {" --method flexround --bits 3 --init-from " + start, "--init-from starts LCQ from a file: it needs --method lcq"},
      {" --method lcq --bits 3 --init gptq --init-from " + start, "--init-from and --init gptq both name"},
      {" --method lcq --bits 3 --init-from " + test::stories_bin(), "is not a quantized layer"},
      // nearest assigns the model's weights to the file's grid: both must be in one basis.
      {" --method lcq --bits 3 --init-codes nearest --smoothquant 0.5 --init-from " + start,
       "the norms of blk.0 differ from the model's"},
      {" --method lcq --bits 3 --init-codes nearest --init-from " + awq, "this AWQ file folded scales"},
  };
  for (const auto& b : bad) {
    const auto r = test::run_lcq(base + b.args);
    EXPECT_EQ(r.exit_code, 1) << b.args;
    EXPECT_NE(r.err.find(b.message), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf")) << b.args;
  }
}
