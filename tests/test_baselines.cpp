// GPTQ and AWQ: GPTQ against RTN (exactly equal with H = identity; lower output error per
// layer on real inputs), AWQ's scale folding against the unfolded model, exact storage of
// what each method produced, and stories260K end to end (file, perplexity, CLI).
#include "lcq/core/error.h"
#include "lcq/model/loader.h"
#include "lcq/quant/awq.h"
#include "lcq/quant/embedding.h"
#include "lcq/quant/gptq.h"
#include "lcq/quant/lcq.h"
#include "lcq/quant/quantize.h"
#include "../src/quant/layer_inputs.h"  // detail::collect_input_stats, input_energies
#include "stories_fixture.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <map>

using namespace lcq;

namespace {

using test::load_stories;
using test::stories_calibration;
using test::stories_eval_tokens;
using test::stories_ppl;
using test::to_vec;
using test::stories_bin;
using test::stories_tok;
using test::tinystories;

std::vector<float> dequantized(const CodebookLayer& l) {
  std::vector<float> w(size_t(l.rows * l.cols));
  l.dequantize(w.data());
  return w;
}

CodebookLayer rtn(const torch::Tensor& W, int bits, int group, int dq_bits) {
  return quant::LcqLinear(W, test::rtn_options(bits, group, dq_bits), at::detail::createCPUGenerator(0)).finalize();
}

}  // namespace

// --- GPTQ on synthetic Hessians ---------------------------------------------------------

TEST(Gptq, IdentityHessianIsRtnExactly) {
  // With H = I the Cholesky factor of H^-1 is diagonal: no error feedback, every column is
  // rounded to its nearest grid entry, which is RTN on the same (double-quantized) grid.
  const torch::Tensor W = load_stories().model.blocks[1].up.weight.t().contiguous();  // [64, 172]
  for (int bits : {2, 3, 4}) {
    for (int group : {32, 48, 172}) {  // 48: ragged last group (172 = 3 * 48 + 28)
      for (int dq : {0, 8}) {
        for (const std::string groups : {"static", "lazy"}) {
          if (groups == "lazy" && dq != 0) continue;
          for (bool act_order : {false, true}) {
            if (groups == "lazy" && act_order) continue;
            quant::LcqOptions o;
            o.bits = bits;
            o.group = group;
            o.dq_bits = dq;
            quant::GptqOptions g;
            g.groups = quant::parse_gptq_groups(groups);
            g.act_order = act_order;
            g.block = 16;
            const CodebookLayer q = quant::gptq_quantize(W, torch::eye(172), o, g);
            const CodebookLayer r = rtn(W, bits, group, dq);
            const std::string what = fmt::format("{} bits, group {}, dq {}, {} groups, act-order {}", bits, group, dq,
                                                 groups, act_order);
            EXPECT_EQ(q.indices, r.indices) << what;
            EXPECT_EQ(dequantized(q), dequantized(r)) << what;
          }
        }
      }
    }
  }
}

TEST(Gptq, ItsGridCanBeTheEnergyWeightedClippingSearch) {
  // A diagonal H gives no error feedback either, so GPTQ is nearest rounding on its static
  // grid: with --gptq-grid wmse that grid must be LCQ's wmse start weighted by diag(H) (and
  // with mse the unweighted search), double quantization included.
  const torch::Tensor W = load_stories().model.blocks[1].up.weight.t().contiguous();  // [64, 172]
  torch::manual_seed(4);
  const torch::Tensor energy = torch::rand({172}).pow(4) * 50 + 0.01;  // a few columns dominate
  for (const quant::LcqInit grid : {quant::LcqInit::kMse, quant::LcqInit::kWmse}) {
    for (int dq : {0, 8}) {
      quant::LcqOptions o;
      o.bits = 3;
      o.group = 48;
      o.dq_bits = dq;
      quant::GptqOptions g;
      g.grid = grid;
      g.act_order = true;
      const CodebookLayer q = quant::gptq_quantize(W, torch::diag(energy * 3), o, g);
      quant::LcqOptions start = o;
      start.rank = 1;
      start.init = grid;
      const CodebookLayer ref = quant::LcqLinear(W, start, at::detail::createCPUGenerator(0), energy).finalize();
      const std::string what = fmt::format("{} grid, dq {}", quant::to_string(grid), dq);
      EXPECT_EQ(q.indices, ref.indices) << what;
      EXPECT_EQ(dequantized(q), dequantized(ref)) << what;
    }
  }
  // ... and the weighting matters: the two grids differ on these energies.
  quant::LcqOptions o;
  o.bits = 3;
  o.group = 48;
  quant::GptqOptions mse, wmse;
  mse.grid = quant::LcqInit::kMse;
  wmse.grid = quant::LcqInit::kWmse;
  EXPECT_NE(dequantized(quant::gptq_quantize(W, torch::diag(energy), o, mse)),
            dequantized(quant::gptq_quantize(W, torch::diag(energy), o, wmse)));
  quant::GptqOptions lazy = wmse;
  lazy.groups = quant::GptqGroups::kLazy;
  o.dq_bits = 0;
  EXPECT_THROW(quant::validate(lazy, o), Error);
  EXPECT_EQ(quant::parse_gptq_grid("wmse"), quant::LcqInit::kWmse);
  EXPECT_THROW(quant::parse_gptq_grid("gptq"), Error);
}

TEST(Gptq, RoundsTheHeadOnItsInputsAgainstTheSameGrid) {
  // --embed-rounding gptq: the tied embedding/head keeps the grid nearest rounding has (the
  // same stored codebooks), only the indices change, and the head's output error on inputs
  // of that gram is lower. Without a gram, or for an untied embedding, it is nearest rounding.
  const torch::Tensor W = load_stories().model.tok_embd.contiguous();  // [512, 64]
  torch::manual_seed(5);
  const torch::Tensor X = torch::randn({2048, 64}).mm(torch::randn({64, 64}) * 0.4 + torch::eye(64));
  const torch::Tensor gram = X.t().mm(X).to(torch::kFloat64) / 2048.0;
  auto out_err = [&](const CodebookLayer& l) {
    const auto d = torch::tensor(dequantized(l)).view({512, 64}) - W;
    return X.mm(d.t()).pow(2).sum().item<double>();
  };
  for (int bits : {3, 4}) {
    quant::EmbeddingOptions o;
    o.bits = bits;
    o.group = 32;
    const CodebookLayer nearest = quant::quantize_embedding(W, o, gram);
    o.rounding = quant::EmbeddingRounding::kGptq;
    const CodebookLayer gptq = quant::quantize_embedding(W, o, gram);
    EXPECT_EQ(gptq.s_codes, nearest.s_codes) << bits;
    EXPECT_EQ(gptq.s_scale, nearest.s_scale) << bits;
    EXPECT_EQ(gptq.b_codes, nearest.b_codes) << bits;
    EXPECT_EQ(gptq.b_scale, nearest.b_scale) << bits;
    EXPECT_EQ(gptq.v, nearest.v) << bits;
    EXPECT_NE(gptq.indices, nearest.indices) << bits;
    EXPECT_LT(out_err(gptq), 0.9 * out_err(nearest)) << bits;
    EXPECT_EQ(quant::quantize_embedding(W, o, torch::Tensor()).indices,
              quant::quantize_embedding(W, quant::options_for(o, "token_embd", true), torch::Tensor()).indices);
  }
  quant::EmbeddingOptions o;
  o.rounding = quant::EmbeddingRounding::kGptq;
  EXPECT_EQ(quant::options_for(o, "token_embd", false).rounding, quant::EmbeddingRounding::kNearest);
  EXPECT_EQ(quant::options_for(o, "token_embd", true).rounding, quant::EmbeddingRounding::kGptq);
  EXPECT_EQ(quant::options_for(o, "output", false).rounding, quant::EmbeddingRounding::kGptq);
}

TEST(Gptq, LazyBatchSizeOnlyChangesFloatRounding) {
  torch::manual_seed(0);
  const torch::Tensor X = torch::randn({512, 96}).mm(torch::randn({96, 96}) * 0.3 + torch::eye(96));
  const torch::Tensor W = torch::randn({40, 96});
  const torch::Tensor H = 2 * X.t().mm(X) / 512;
  quant::LcqOptions o;
  o.bits = 3;
  o.group = 32;
  for (const std::string groups : {"static", "lazy"}) {
    o.dq_bits = groups == "lazy" ? 0 : 8;
    quant::GptqOptions g;
    g.groups = quant::parse_gptq_groups(groups);
    g.block = 96;
    const CodebookLayer a = quant::gptq_quantize(W, H, o, g);
    g.block = 7;  // batches that do not line up with the groups
    const CodebookLayer b = quant::gptq_quantize(W, H, o, g);
    int64_t same = 0;
    for (size_t i = 0; i < a.indices.size(); ++i) same += a.indices[i] == b.indices[i];
    EXPECT_GE(double(same), 0.995 * double(a.indices.size())) << groups;
  }
}

TEST(Gptq, ErrorFeedbackLowersTheOutputErrorOnCorrelatedInputs) {
  torch::manual_seed(1);
  const torch::Tensor X = torch::randn({1024, 64}).mm(torch::randn({64, 64}) * 0.5 + torch::eye(64));
  const torch::Tensor W = torch::randn({32, 64});
  const torch::Tensor H = X.t().mm(X);
  auto out_err = [&](const CodebookLayer& l) {
    const auto d = torch::tensor(dequantized(l)).view({32, 64}) - W;
    return X.mm(d.t()).pow(2).sum().item<double>();
  };
  quant::LcqOptions o;
  o.bits = 2;
  o.group = 16;
  for (bool act_order : {false, true}) {
    quant::GptqOptions g;
    g.act_order = act_order;
    const double e_gptq = out_err(quant::gptq_quantize(W, H, o, g)), e_rtn = out_err(rtn(W, 2, 16, 8));
    EXPECT_LT(e_gptq, 0.8 * e_rtn) << "act-order " << act_order;
  }
}

TEST(Gptq, DeadColumnsBecomeZeroAndImpossibleSettingsAreRefused) {
  torch::manual_seed(2);
  torch::Tensor X = torch::randn({256, 16});
  X.select(1, 5).zero_();
  const torch::Tensor W = torch::randn({8, 16});
  quant::LcqOptions o;
  o.bits = 4;
  o.group = 8;
  o.dq_bits = 0;
  const CodebookLayer q = quant::gptq_quantize(W, X.t().mm(X), o, {});
  const auto w = dequantized(q);
  for (int r = 0; r < 8; ++r) EXPECT_NEAR(w[size_t(r * 16 + 5)], 0.f, 1e-6f) << "row " << r;

  auto refused = [&](quant::GptqOptions g, int dq, const std::string& must_mention) {
    o.dq_bits = dq;
    try {
      quant::validate(g, o);
      ADD_FAILURE() << "expected an error mentioning " << must_mention;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(must_mention), std::string::npos) << e.what();
    }
  };
  quant::GptqOptions lazy;
  lazy.groups = quant::GptqGroups::kLazy;
  refused(lazy, 8, "--dq-bits 0");
  lazy.act_order = true;
  refused(lazy, 0, "--act-order");
  quant::GptqOptions bad;
  bad.damp = -1;
  refused(bad, 8, "--gptq-damp");
  try {
    quant::parse_gptq_groups("dynamic");
    ADD_FAILURE() << "expected --gptq-groups dynamic to be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gptq-groups must be static or lazy"), std::string::npos) << e.what();
  }
}

// --- AWQ scale folding --------------------------------------------------------------------

namespace {

// The largest logit difference relative to the largest logit, after folding random positive
// scales at every site that applies in every block.
double fold_changes_logits(model::Model& m, int* folded_sites) {
  torch::NoGradGuard ng;
  const torch::Tensor tokens = torch::randint(0, m.config.vocab_size, {2, 48}, torch::kInt64);
  const torch::Tensor before = m.forward(tokens);
  torch::manual_seed(3);
  *folded_sites = 0;
  for (auto& b : m.blocks) {
    for (auto site : {quant::AwqSite::kAttnInput, quant::AwqSite::kAttnOutput, quant::AwqSite::kMlpInput,
                      quant::AwqSite::kMlpOutput}) {
      if (!quant::awq_site_applies(b, m.config, site)) continue;
      const auto names = quant::awq_site_layers(b, site);
      int64_t n = 0;
      for (const auto& [name, lin] : b.linears())
        if (name == names[0]) n = lin->in_features();
      quant::fold_awq_scales(b, site, torch::exp(torch::randn({n}) * 0.7));
      ++*folded_sites;
    }
  }
  const torch::Tensor after = m.forward(tokens);
  return (after - before).abs().max().item<double>() / before.abs().max().item<double>();
}

}  // namespace

TEST(Awq, FoldedScalesLeaveTheFullPrecisionModelUnchanged) {
  model::LoadedModel m = load_stories();
  const model::Block original = m.model.blocks[0];
  int sites = 0;
  EXPECT_LT(fold_changes_logits(m.model, &sites), 1e-5);
  // stories260K has grouped-query attention (8 heads, 4 kv heads): v -> o is skipped.
  EXPECT_EQ(sites, 5 * 3);
  EXPECT_FALSE(m.model.blocks[0].attn_norm.weight.equal(original.attn_norm.weight));
  // Folding replaced tensors and never wrote into the shared ones.
  EXPECT_TRUE(original.attn_norm.weight.equal(load_stories().model.blocks[0].attn_norm.weight));
}

TEST(Awq, FoldingThroughVIntoOWhenEveryHeadHasItsOwnValues) {
  // Give every query head its own copy of its kv head: the same function without GQA, where
  // v's outputs are o's inputs one to one and the attention output site applies.
  model::LoadedModel m = load_stories();
  torch::NoGradGuard ng;
  const torch::Tensor tokens = torch::randint(0, m.model.config.vocab_size, {1, 32}, torch::kInt64);
  const torch::Tensor gqa = m.model.forward(tokens);
  const int rep = m.model.config.n_heads / m.model.config.n_kv_heads, hd = m.model.config.head_dim;
  for (auto& b : m.model.blocks) {
    for (model::Linear* l : {&b.k, &b.v})
      l->weight = l->weight.view({-1, hd, l->weight.size(1)}).repeat_interleave(rep, 0).reshape({-1, l->weight.size(1)});
  }
  m.model.config.n_kv_heads = m.model.config.n_heads;
  ASSERT_LT((m.model.forward(tokens) - gqa).abs().max().item<double>() / gqa.abs().max().item<double>(), 1e-5);
  int sites = 0;
  EXPECT_LT(fold_changes_logits(m.model, &sites), 1e-5);
  EXPECT_EQ(sites, 5 * 4);
}

// --- stories260K end to end -----------------------------------------------------------------

// The input statistics GPTQ, AWQ and the wmse start read, against the inputs a tap sees: the
// gram is X^T X, its diagonal the square sums (also when no gram is kept), the energies the
// mean squares, shared by the layers that read one tensor.
TEST(InputStats, MatchTheInputsOfEachLinear) {
  model::LoadedModel m = load_stories();
  const torch::Tensor x = m.model.embed(stories_calibration(m, 10, 32));  // 10 samples: two chunks of 8 and 2
  const model::BlockContext ctx = m.model.context();
  const model::Block& block = m.model.blocks[1];
  std::map<const model::Linear*, std::vector<torch::Tensor>> seen;
  {
    torch::NoGradGuard ng;
    model::LinearInputTap tap([&](const model::Linear& l, const torch::Tensor& in) { seen[&l].push_back(in); });
    model::block_forward(ctx, block, x, 0);
  }
  const std::vector<std::string> sites = {"attn_q", "attn_output", "ffn_gate", "ffn_down"};
  std::map<std::string, quant::detail::InputStats> with_gram, without_gram;
  quant::detail::collect_input_stats(ctx, block, x, sites, with_gram);
  quant::detail::StatsOptions vectors_only;
  vectors_only.gram = false;
  vectors_only.need_output = false;
  quant::detail::collect_input_stats(ctx, block, x, sites, without_gram, vectors_only);
  const auto energies = quant::detail::input_energies(ctx, block, x);
  for (const auto& [name, lin] : block.linears()) {
    const std::string site = quant::detail::input_site(block, name);
    const torch::Tensor X = torch::cat(seen.at(lin), 0).reshape({-1, lin->in_features()});
    const auto& g = with_gram.at(site);
    const auto& v = without_gram.at(site);
    EXPECT_EQ(g.tokens, X.size(0)) << name;
    EXPECT_EQ(v.tokens, X.size(0)) << name;
    EXPECT_TRUE(torch::allclose(g.gram, X.t().mm(X), 1e-4, 1e-3)) << name;
    EXPECT_FALSE(g.sq_sum.defined()) << name;  // the gram's diagonal holds it
    EXPECT_FALSE(v.gram.defined()) << name;
    EXPECT_TRUE(torch::allclose(v.sq_sum, X.square().sum(0), 1e-4, 1e-3)) << name;
    EXPECT_TRUE(torch::allclose(v.abs_sum, X.abs().sum(0), 1e-4, 1e-3)) << name;
    EXPECT_TRUE(torch::allclose(energies.at(name), X.square().mean(0), 1e-4, 1e-6)) << name;
  }
}

namespace {

// ||X (W_hat - W)^T||^2 of every linear of every block of `q`, with X the inputs each layer
// sees when the quantized model runs the calibration set, against the full-precision `fp`
// weights; also RTN's on the same inputs.
struct LayerErrors {
  std::string name;
  double method = 0, rtn = 0;
};

std::vector<LayerErrors> layer_errors(const model::Model& q, const model::Model& fp, const torch::Tensor& calib,
                                      int bits, int group, int dq) {
  torch::NoGradGuard ng;
  std::vector<LayerErrors> out;
  torch::Tensor x = q.embed(calib);
  const model::BlockContext ctx = q.context();
  for (size_t l = 0; l < q.blocks.size(); ++l) {
    std::map<const model::Linear*, std::vector<torch::Tensor>> inputs;
    torch::Tensor y;
    {
      model::LinearInputTap tap([&](const model::Linear& lin, const torch::Tensor& in) { inputs[&lin].push_back(in); });
      y = model::block_forward(ctx, q.blocks[l], x, 0);
    }
    auto ql = q.blocks[l].linears(), fl = fp.blocks[l].linears();
    for (size_t i = 0; i < ql.size(); ++i) {
      const torch::Tensor X = torch::cat(inputs.at(ql[i].second), 0).reshape({-1, ql[i].second->in_features()});
      const torch::Tensor W = fl[i].second->weight;
      const CodebookLayer r = rtn(W, bits, group, dq);
      const torch::Tensor Wr = torch::tensor(dequantized(r)).view(W.sizes());
      out.push_back({"blk." + std::to_string(l) + "." + ql[i].first,
                     X.mm((ql[i].second->weight - W).t()).pow(2).sum().item<double>(),
                     X.mm((Wr - W).t()).pow(2).sum().item<double>()});
    }
    x = y;
  }
  return out;
}

// The file loads back (dense) to exactly the in-memory weights, norms and biases; through
// the packed loader `lcq perplexity` uses, its perplexity is finite. Returns that perplexity.
double check_file(const std::string& path, const model::LoadedModel& q, const quant::QuantizeResult& r,
                  const std::vector<int>& tokens) {
  quant::write_quantized_model(path, q.model, q.tok().vocab(), r, {{"lcq.method", "test"}});
  model::RuntimeOptions dense;
  dense.packed = false;
  model::LoadedModel back = model::load_model(path, {}, dense);
  for (size_t l = 0; l < back.model.blocks.size(); ++l) {
    const model::Block &a = back.model.blocks[l], &b = q.model.blocks[l];
    EXPECT_TRUE(a.attn_norm.weight.equal(b.attn_norm.weight)) << "blk." << l << ".attn_norm";
    EXPECT_TRUE(a.ffn_norm.weight.equal(b.ffn_norm.weight)) << "blk." << l << ".ffn_norm";
    auto al = a.linears(), bl = b.linears();
    for (size_t i = 0; i < al.size(); ++i) {
      EXPECT_TRUE(al[i].second->weight.equal(bl[i].second->weight)) << "blk." << l << "." << al[i].first;
      // ... and those are exactly the codebook layers the method returned.
      const CodebookLayer& cl = r.layers.at("blk." + std::to_string(l) + "." + al[i].first);
      EXPECT_EQ(to_vec(bl[i].second->weight), dequantized(cl)) << al[i].first;
    }
  }
  model::LoadedModel packed = model::load_model(path);
  const double ppl = stories_ppl(packed.model, tokens);
  EXPECT_TRUE(std::isfinite(ppl));
  return ppl;
}

}  // namespace

// The runtime's prompt arithmetic (RuntimeOptions::prompt_dtype, bf16 by default on CPUs with
// AVX512-BF16) is for running models: every quantizer's calibration forwards are exact
// (detail::exact_context), so a model loaded for bf16 prompts quantizes to the same bits.
TEST(Stories260K, QuantizersIgnoreThePromptDtype) {
  model::LoadedModel fp = load_stories();
  const torch::Tensor calib = stories_calibration(fp, 4, 64);
  quant::QuantizeOptions o = test::stories_options("rtn", 3, 32);
  o.method = quant::Method::kGptq;
  std::vector<model::LoadedModel> models;
  for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    models.push_back(load_stories());
    models.back().model.options.prompt_dtype = dtype;
    quant::quantize_model(models.back().model, calib, o);
  }
  for (size_t l = 0; l < models[0].model.blocks.size(); ++l) {
    auto a = models[0].model.blocks[l].linears(), b = models[1].model.blocks[l].linears();
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(a[i].second->dense_weight().equal(b[i].second->dense_weight())) << l << " " << a[i].first;
  }
}

TEST(Stories260K, GptqBeatsRtnOnEveryLayerAndIsStoredExactly) {
  const std::string dir = test::scratch_dir();
  model::LoadedModel fp = load_stories();
  const torch::Tensor calib = stories_calibration(fp);
  const std::vector<int> tokens = stories_eval_tokens(fp);
  struct Setting {
    std::string name;
    quant::GptqOptions g;
    int dq;
  };
  std::vector<Setting> settings(4);
  settings[0] = {"static", {}, 8};
  settings[1] = {"act-order", {}, 8};
  settings[1].g.act_order = true;
  settings[2] = {"lazy", {}, 0};
  settings[2].g.groups = quant::GptqGroups::kLazy;
  settings[3] = {"not sequential", {}, 8};
  settings[3].g.true_sequential = false;

  const double ppl_fp = stories_ppl(fp.model, tokens);
  for (const int bits : {3, 4}) {
    const double ppl_rtn = test::stories_rtn_ppl(bits, 32, tokens);
    quant::QuantizeOptions o = test::stories_options("rtn", bits, 32);

    o.method = quant::Method::kGptq;
    for (const auto& s : settings) {
      o.gptq = s.g;
      o.lcq.dq_bits = s.dq;
      model::LoadedModel q = load_stories();
      const quant::QuantizeResult res = quant::quantize_model(q.model, calib, o);
      ASSERT_EQ(res.layers.size(), 35u);
      EXPECT_NEAR(res.bits_per_weight, res.layers.begin()->second.bits_per_weight(), 0.2);
      const double ppl = check_file(dir + "/gptq.gguf", q, res, tokens);
      int layers = 0;
      for (const auto& e : layer_errors(q.model, fp.model, calib, bits, 32, s.dq)) {
        const bool qkv = e.name.find("attn_") != std::string::npos && e.name.find("attn_output") == std::string::npos;
        if (s.name != "not sequential" || qkv) {
          // Not sequential: the H of o and the MLP came from the full-precision block, not from
          // the inputs they see now.
          EXPECT_LE(e.method, e.rtn) << s.name << ": " << e.name;
          ++layers;
        }
      }
      EXPECT_GE(layers, 15);
      std::printf("stories260K W%d g32 gptq %s: ppl %.3f (rtn %.3f, fp %.3f)\n", bits, s.name.c_str(), ppl, ppl_rtn,
                  ppl_fp);
      EXPECT_LT(ppl, ppl_rtn) << "W" << bits << " " << s.name;
    }
  }
}

TEST(Stories260K, AwqFoldsIntoTheFileAndIsStoredExactly) {
  const std::string dir = test::scratch_dir();
  model::LoadedModel fp = load_stories();
  const torch::Tensor calib = stories_calibration(fp);
  const std::vector<int> tokens = stories_eval_tokens(fp);
  quant::QuantizeOptions o;
  o.method = quant::Method::kAwq;
  o.lcq.bits = 3;
  o.lcq.group = 32;
  o.engine.progress = false;
  for (const std::string inputs : {"fp", "quantized"}) {
    o.awq.inputs = quant::parse_awq_inputs(inputs);
    model::LoadedModel q = load_stories();
    const quant::QuantizeResult res = quant::quantize_model(q.model, calib, o);
    ASSERT_EQ(res.layers.size(), 35u);
    // The scales were folded into the norms (alpha 0 everywhere is possible, but not on all
    // ten norm-fed sites of a real model).
    int changed = 0;
    for (size_t l = 0; l < q.model.blocks.size(); ++l)
      changed += !q.model.blocks[l].attn_norm.weight.equal(fp.model.blocks[l].attn_norm.weight) +
                 !q.model.blocks[l].ffn_norm.weight.equal(fp.model.blocks[l].ffn_norm.weight);
    EXPECT_GT(changed, 0);
    const double ppl = check_file(dir + "/awq.gguf", q, res, tokens);
    double init = 0, fin = 0;
    for (const auto& b : res.blocks) init += b.init_loss, fin += b.final_loss;
    std::printf("stories260K W3 g32 awq (%s inputs): ppl %.3f; block losses rtn %.4e -> awq %.4e\n", inputs.c_str(),
                ppl, init, fin);
  }
}

// LCQ --init gptq|awq: untrained at rank one it is the start method's model (the same codes,
// the same folded norms, the same perplexity; S and B differ only by being double-quantized
// a second time); trained at rank 2 it lowers the start's block loss and perplexity.
TEST(Stories260K, LcqStartsExactlyFromGptqAndAwqAndImprovesOnThem) {
  model::LoadedModel fp = load_stories();
  const torch::Tensor calib = stories_calibration(fp);
  const std::vector<int> tokens = stories_eval_tokens(fp);
  for (const std::string start : {"gptq", "awq"}) {
    quant::QuantizeOptions base;
    base.lcq.bits = 3;
    base.lcq.group = 32;
    base.engine.progress = false;
    base.method = quant::parse_method(start);
    model::LoadedModel ref = load_stories();
    const quant::QuantizeResult rr = quant::quantize_model(ref.model, calib, base);
    const double ppl_ref = stories_ppl(ref.model, tokens);

    quant::QuantizeOptions o = base;
    o.method = quant::Method::kLcq;
    o.lcq.init = quant::parse_lcq_init(start);
    o.lcq.rank = 1;
    o.engine.epochs = 0;
    model::LoadedModel q = load_stories();
    const quant::QuantizeResult qr = quant::quantize_model(q.model, calib, o);
    ASSERT_EQ(qr.layers.size(), rr.layers.size());
    int64_t same = 0, total = 0;
    for (const auto& [name, l] : qr.layers) {
      const CodebookLayer& r = rr.layers.at(name);
      ASSERT_EQ(l.indices.size(), r.indices.size()) << name;
      for (size_t i = 0; i < l.indices.size(); ++i) same += l.indices[i] == r.indices[i];
      total += int64_t(l.indices.size());
      const auto a = dequantized(l), b = dequantized(r);
      double diff = 0, norm = 0;
      for (size_t i = 0; i < a.size(); ++i) diff += std::abs(a[i] - b[i]), norm += std::abs(b[i]);
      EXPECT_LT(diff / norm, 1e-2) << start << " " << name;
    }
    EXPECT_EQ(same, total) << start;
    for (size_t l = 0; l < fp.model.blocks.size(); ++l) {
      EXPECT_TRUE(q.model.blocks[l].attn_norm.weight.equal(ref.model.blocks[l].attn_norm.weight)) << start << l;
      EXPECT_TRUE(q.model.blocks[l].ffn_norm.weight.equal(ref.model.blocks[l].ffn_norm.weight)) << start << l;
    }
    EXPECT_NEAR(stories_ppl(q.model, tokens), ppl_ref, 0.01 * ppl_ref) << start;
    // Block 0 sees the same inputs in both runs: LCQ's step 0 is the start's final loss.
    EXPECT_NEAR(qr.blocks[0].init_loss, rr.blocks[0].final_loss, 0.01 * rr.blocks[0].final_loss) << start;

    o.lcq.rank = 2;
    o.engine.epochs = 3;
    model::LoadedModel t = load_stories();
    const quant::QuantizeResult tr = quant::quantize_model(t.model, calib, o);
    EXPECT_LT(tr.blocks[0].final_loss, rr.blocks[0].final_loss) << start;
    const double ppl = stories_ppl(t.model, tokens);
    std::printf("stories260K W3 g32: %s %.3f, lcq r2 --init %s %.3f\n", start.c_str(), ppl_ref, start.c_str(), ppl);
    EXPECT_LT(ppl, ppl_ref) << start;
  }
}

TEST(QuantizeCli, InitFromAMethodIsForLcqOnly) {
  const std::string dir = test::scratch_dir();
  auto r = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + dir +
                         "/x.gguf --method flexround --init gptq --calib " + tinystories() + " --nsamples 4 --seqlen 64");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--init gptq starts LCQ"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
}

TEST(QuantizeCli, GptqAndAwqRunFromTheCommandLineAndExplainMissingCalibration) {
  const std::string dir = test::scratch_dir();
  const std::string base = "quantize " + stories_bin() + " --tokenizer " + stories_tok() + " --bits 3 --group 32 --quiet";
  const std::string calib = " --calib " + tinystories() + " --nsamples 4 --seqlen 64";
  for (const std::string method : {"gptq", "awq"}) {
    const std::string out = dir + "/" + method + ".gguf";
    auto r = test::run_lcq(base + " -o " + out + " --method " + method + calib + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j.at("settings").at("method"), method);
    EXPECT_EQ(j.at("settings").at("rank"), 1);
    EXPECT_TRUE(j.at("settings").contains(method));
    EXPECT_EQ(j.at("blocks").size(), 5u);
    auto ppl = test::run_lcq("perplexity " + out + " --text " + tinystories() + " --seqlen 128 --limit 2 --json --quiet");
    ASSERT_EQ(ppl.exit_code, 0) << ppl.err;
    EXPECT_TRUE(std::isfinite(nlohmann::json::parse(ppl.out).at("perplexity").get<double>()));
    auto info = test::run_lcq("info " + out + " --json");
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_EQ(nlohmann::json::parse(info.out).at("quantization").at("method"), method);

    auto missing = test::run_lcq(base + " -o " + dir + "/x.gguf --method " + method);
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_NE(missing.err.find("--calib"), std::string::npos) << missing.err;
  }
  auto lazy = test::run_lcq(base + " -o " + dir + "/x.gguf --method gptq --gptq-groups lazy" + calib);
  EXPECT_EQ(lazy.exit_code, 1);
  EXPECT_NE(lazy.err.find("--dq-bits 0"), std::string::npos) << lazy.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
}
