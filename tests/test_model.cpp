// The runtime against independent references: the naive double-precision llama2.c
// implementation in tests/reference (stories260K), golden logits from Hugging Face
// transformers (SmolLM2, skipped unless LCQ_SMOLLM2_GGUF is set), and itself across the
// formats `lcq convert` writes.
#include "lcq/core/error.h"
#include "lcq/eval/perplexity.h"
#include "lcq/model/generate.h"
#include "lcq/model/linear.h"
#include "lcq/model/loader.h"
#include "kernel_test_helpers.h"
#include "lcq/kernels/matrix.h"
#include "reference/naive_llama.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace {

using lcq::model::LoadedModel;

std::string stories_bin() { return lcq::test::shared("models/stories260K/stories260K.bin"); }
std::string stories_tok() { return lcq::test::shared("models/stories260K/tok512.bin"); }
std::string tinystories_val() { return lcq::test::shared("data/tinystories/tinystories_val.txt"); }

LoadedModel load_stories() {
  lcq::io::LoadOptions lo;
  lo.tokenizer_path = stories_tok();
  return lcq::model::load_model(stories_bin(), lo);
}

// Logits [T, vocab] of one sequence in a single full forward pass.
torch::Tensor full_logits(const lcq::model::Model& m, const std::vector<int>& ids) {
  torch::NoGradGuard ng;
  auto t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong).unsqueeze(0);
  return m.forward(t).squeeze(0).to(torch::kFloat);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

// --- stories260K against the naive reference -----------------------------------------------

TEST(Stories260K, GreedyDecodeFromBosTellsTheKnownStory) {
  LoadedModel lm = load_stories();
  lcq::model::GenerateOptions go;
  go.max_new_tokens = 40;
  auto res = lcq::model::generate(lm.model, {lm.tok().bos_id()}, go);
  std::string text;
  int prev = lm.tok().bos_id();
  for (int id : res.tokens) {
    text += lm.tok().decode_token(prev, id);
    prev = id;
  }
  const std::string expected = "Once upon a time, there was a little girl named Lily.";
  EXPECT_EQ(text.substr(0, expected.size()), expected) << text;

  auto ref = lcq::reference::NaiveLlama::load(stories_bin());
  EXPECT_EQ(res.tokens, ref.greedy(40));
}

// Generation asks for the last position's logits only (the head on one row): the same logits
// as the full forward's last row, up to the summation order of a one-row product.
TEST(Stories260K, LastPositionLogitsEqualTheFullForwardsLastRow) {
  LoadedModel lm = load_stories();
  const torch::Tensor ids = torch::arange(1, 40, torch::kInt64).unsqueeze(0);
  const torch::Tensor full = lm.model.forward(ids);
  const torch::Tensor last = lm.model.forward(ids, nullptr, /*last_only=*/true);
  ASSERT_EQ(last.sizes(), (std::vector<int64_t>{1, 1, full.size(2)}));
  EXPECT_TRUE(torch::allclose(last[0][0], full[0][-1], 1e-4, 1e-4));
}

TEST(Stories260K, LogitsMatchTheNaiveReferenceAtEveryPosition) {
  LoadedModel lm = load_stories();
  std::vector<int> ids = lm.tok().encode(slurp(tinystories_val()).substr(0, 1500), true);
  ids.resize(300);
  const torch::Tensor ours = full_logits(lm.model, ids);
  auto ref = lcq::reference::NaiveLlama::load(stories_bin());
  double worst = 0;
  for (size_t p = 0; p < ids.size(); ++p) {
    const std::vector<double> want = ref.forward_f64(ids[p], int(p));
    const torch::Tensor row_t = ours[int64_t(p)].contiguous();
    const float* row = row_t.data_ptr<float>();
    for (size_t v = 0; v < want.size(); ++v) worst = std::max(worst, std::abs(double(row[v]) - want[v]));
  }
  EXPECT_LT(worst, 2e-4) << "largest logit difference";
}

TEST(Stories260K, IncrementalDecodingWithTheCacheEqualsTheFullForward) {
  LoadedModel lm = load_stories();
  std::vector<int> ids = lm.tok().encode("Once upon a time, a cat sat on a mat and looked at the sky.", true);
  const torch::Tensor full = full_logits(lm.model, ids);
  torch::NoGradGuard ng;
  auto cache = lm.model.make_cache(1, int64_t(ids.size()));
  // A prefill of the first 5 tokens, then one token at a time. The two paths run matrix
  // products of different shapes, so BLAS may sum in a different order: the bound is float
  // rounding on logits of magnitude ~10 (a 1e-5 bound failed by 1.4e-8 on another CPU).
  std::vector<int64_t> first(ids.begin(), ids.begin() + 5);
  torch::Tensor step = lm.model.forward(torch::tensor(first, torch::kLong).unsqueeze(0), &cache).squeeze(0);
  EXPECT_LT((step - full.slice(0, 0, 5)).abs().max().item<float>(), 5e-5f);
  for (size_t p = 5; p < ids.size(); ++p) {
    torch::Tensor one = lm.model.forward(torch::tensor({int64_t(ids[p])}, torch::kLong).unsqueeze(0), &cache);
    EXPECT_LT((one.squeeze(0).squeeze(0) - full[int64_t(p)]).abs().max().item<float>(), 5e-5f) << "position " << p;
  }
}

// Prompts with RuntimeOptions::prompt_dtype bf16 run attention's score and value products in
// bf16 (model/model.cpp): the logits move by bf16's rounding of queries, keys, values and
// probabilities, no more; one position (decoding) stays f32 and exact.
TEST(Stories260K, Bf16PromptAttentionStaysCloseToF32) {
  LoadedModel lm = load_stories();
  std::vector<int> ids = lm.tok().encode(slurp(tinystories_val()).substr(0, 1500), true);
  ids.resize(300);
  const torch::Tensor f32 = full_logits(lm.model, ids);
  lm.model.options.prompt_dtype = torch::kBFloat16;
  const torch::Tensor bf16 = full_logits(lm.model, ids);
  const double worst = (bf16 - f32).abs().max().item<double>();
  std::printf("bf16 prompt attention: largest logit difference %.3g (|logit| up to %.3g)\n", worst,
              f32.abs().max().item<double>());
  EXPECT_GT(worst, 0.0);    // the bf16 products ran
  EXPECT_LT(worst, 0.6);    // measured 0.43 on logits up to 24 (the bf16 runtime's own bound is 0.5)
  const torch::Tensor target = torch::tensor(std::vector<int64_t>(ids.begin() + 1, ids.end()), torch::kLong);
  auto nll = [&](const torch::Tensor& logits) {
    return torch::nn::functional::cross_entropy(logits.slice(0, 0, int64_t(ids.size()) - 1), target).item<double>();
  };
  std::printf("mean NLL: f32 %.6f, bf16 prompt attention %.6f\n", nll(f32), nll(bf16));
  EXPECT_NEAR(nll(bf16), nll(f32), 3e-3 * nll(f32));  // measured 1.1e-3
  const torch::Tensor one = full_logits(lm.model, {ids[0]});
  lm.model.options.prompt_dtype = torch::kFloat32;
  EXPECT_TRUE(one.equal(full_logits(lm.model, {ids[0]})));
}

TEST(Stories260K, PerplexityAgreesWithTheNaiveReference) {
  // The GPTQ protocol on tinystories_val.txt at the model's context (512). The test scores
  // the first 8 windows (4096 tokens); LCQ_TEST_ALL_WINDOWS=1 scores the whole file (slow).
  LoadedModel lm = load_stories();
  const std::vector<int> ids = lm.tok().encode(slurp(tinystories_val()), true);
  const bool all = std::getenv("LCQ_TEST_ALL_WINDOWS") != nullptr;
  lcq::eval::PerplexityOptions po;
  po.seqlen = 512;
  po.max_windows = all ? 0 : 8;
  po.progress = false;
  po.batch = 4;
  const auto ours = lcq::eval::perplexity(lm.model, ids, po);
  EXPECT_EQ(ours.seqlen, 512);
  EXPECT_EQ(ours.windows, all ? int64_t(ids.size() / 512) : 8);
  auto ref = lcq::reference::NaiveLlama::load(stories_bin());
  const double want = ref.perplexity_gptq(ids, 512, int(po.max_windows));
  EXPECT_NEAR(ours.ppl / want, 1.0, 1e-4) << "ours " << ours.ppl << " reference " << want;
  // Every window scores seqlen - 1 tokens, so the per-window means average to the overall one.
  ASSERT_EQ(int64_t(ours.window_nll.size()), ours.windows);
  double sum = 0;
  for (double w : ours.window_nll) sum += w;
  EXPECT_NEAR(sum / double(ours.windows), ours.mean_nll, 1e-9);
  EXPECT_NE(ours.window_nll.front(), ours.window_nll.back());
  std::printf("stories260K tinystories_val: %lld windows, ppl %.6f (reference %.6f)\n",
              static_cast<long long>(ours.windows), ours.ppl, want);
}

TEST(Stories260K, PerplexityRejectsATextShorterThanOneWindow) {
  LoadedModel lm = load_stories();
  lcq::eval::PerplexityOptions po;
  po.seqlen = 512;
  po.progress = false;
  EXPECT_THROW(lcq::eval::perplexity(lm.model, lm.tok().encode("Too short.", true), po), lcq::Error);
}

TEST(Stories260K, Bf16RuntimeStaysCloseToFp32) {
  lcq::io::LoadOptions lo;
  lo.tokenizer_path = stories_tok();
  lcq::model::RuntimeOptions ro;
  ro.dtype = torch::kBFloat16;
  LoadedModel f32 = load_stories();
  LoadedModel b16 = lcq::model::load_model(stories_bin(), lo, ro);
  std::vector<int> ids = f32.tok().encode("Lily went to the park with her mom.", true);
  const torch::Tensor a = full_logits(f32.model, ids), b = full_logits(b16.model, ids);
  EXPECT_EQ(b16.model.tok_embd.scalar_type(), torch::kBFloat16);
  EXPECT_LT((a - b).abs().max().item<float>(), 0.5f);  // bf16 keeps ~3 significant digits
  EXPECT_TRUE(a.argmax(-1).equal(b.argmax(-1)));
}

// --- lcq convert --------------------------------------------------------------------------

TEST(Convert, GgufAndHfCopiesGiveTheSameLogitsAndTokens) {
  const std::string dir = lcq::test::scratch_dir();
  const std::string gguf = dir + "/stories.gguf", hf = dir + "/stories-hf";
  const std::string tok = " --tokenizer " + stories_tok();
  ASSERT_EQ(lcq::test::run_lcq("convert " + stories_bin() + tok + " " + gguf + " --quiet").exit_code, 0);
  ASSERT_EQ(lcq::test::run_lcq("convert " + stories_bin() + tok + " " + hf + " --quiet").exit_code, 0);

  LoadedModel bin = load_stories();
  const std::string text = "Once upon a time, Tom and Sue found a big red ball.\nThey played all day!";
  const std::vector<int> ids = bin.tok().encode(text, true);
  const torch::Tensor want = full_logits(bin.model, ids);
  for (const std::string& path : {gguf, hf}) {
    LoadedModel copy = lcq::model::load_model(path);  // the tokenizer travels with the model
    EXPECT_EQ(copy.tok().encode(text, true), ids) << path;
    EXPECT_LT((full_logits(copy.model, ids) - want).abs().max().item<float>(), 1e-5f) << path;
    nlohmann::json a = copy.model.config, b = bin.model.config;
    a.erase("family");  // "llama2c" is remembered only by the original
    b.erase("family");
    EXPECT_EQ(a, b) << path;
  }
  // And back: GGUF -> HF at f16 halves the weights and stays close.
  const std::string hf16 = dir + "/stories-hf16";
  ASSERT_EQ(lcq::test::run_lcq("convert " + gguf + " " + hf16 + " --type f16 --quiet").exit_code, 0);
  LoadedModel h = lcq::model::load_model(hf16);
  EXPECT_LT((full_logits(h.model, ids) - want).abs().max().item<float>(), 0.05f);
}

// --- bad input through the command line ---------------------------------------------------

TEST(Cli, BadInputGivesOneClearLineAndExitCodeOne) {
  const std::string dir = lcq::test::scratch_dir();
  const std::string real = lcq::test::read_bytes(stories_bin());
  const std::string truncated = dir + "/truncated.bin";
  lcq::test::write_bytes(truncated, real.substr(0, real.size() / 3));
  const std::string gguf_bad = dir + "/bad.gguf";
  lcq::test::write_bytes(gguf_bad, "GGUF\x03\0\0\0" + std::string(8, '\xff'));
  const std::string short_text = dir + "/short.txt";
  lcq::test::write_bytes(short_text, "Once upon a time.");
  const std::string tok = " --tokenizer " + stories_tok();

  struct Case {
    std::string args, must_name;
  } cases[] = {
      {"info " + truncated + tok, truncated},
      {"info " + gguf_bad, gguf_bad},
      {"info " + dir + "/missing.gguf", dir + "/missing.gguf"},
      {"generate " + stories_bin() + " --tokenizer " + short_text, short_text},
      {"perplexity " + stories_bin() + tok + " --text " + short_text, short_text},
      {"perplexity " + stories_bin() + tok + " --text " + dir + "/nothing.txt", dir + "/nothing.txt"},
  };
  for (const auto& c : cases) {
    const lcq::test::CommandResult r = lcq::test::run_lcq(c.args + " --quiet");
    EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << c.args << "\n" << r.err;
    ASSERT_FALSE(r.err.empty()) << c.args;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line expected: " << r.err;
    EXPECT_EQ(r.err.rfind("lcq: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.must_name), std::string::npos) << r.err;
  }
}

TEST(Cli, PerplexityJsonIsMachineReadable) {
  const std::string dir = lcq::test::scratch_dir();
  const std::string text = dir + "/text.txt";
  lcq::test::write_bytes(text, slurp(tinystories_val()).substr(0, 20000));
  const lcq::test::CommandResult r = lcq::test::run_lcq("perplexity " + stories_bin() + " --tokenizer " + stories_tok() + " --text " +
                                  text + " --json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("protocol"), "gptq");
  EXPECT_EQ(j.at("seqlen"), 512);
  EXPECT_GT(j.at("windows").get<int>(), 0);
  EXPECT_TRUE(std::isfinite(j.at("perplexity").get<double>()));
}

// --- SmolLM2-135M against transformers' golden logits --------------------------------------

TEST(SmolLM2Runtime, TokensAndLogitsMatchTransformers) {
  const std::string path = lcq::test::smollm2_gguf();
  if (path.empty()) GTEST_SKIP() << "set LCQ_SMOLLM2_GGUF to the SmolLM2-135M-Instruct Q4_1 GGUF";
  const auto golden = nlohmann::json::parse(slurp(std::string(LCQ_SOURCE_DIR) + "/tests/fixtures/smollm2/golden_logits.json"));
  LoadedModel lm = lcq::model::load_model(path);
  const auto logit_ids = golden.at("logit_ids").get<std::vector<int64_t>>();
  const torch::Tensor index = torch::tensor(logit_ids, torch::kLong);
  for (const auto& prompt : golden.at("prompts")) {
    const std::string name = prompt.at("name");
    const auto want_ids = prompt.at("ids").get<std::vector<int>>();
    ASSERT_EQ(lm.tok().encode(prompt.at("text"), prompt.at("add_special_tokens")), want_ids) << name;
    const torch::Tensor logits = full_logits(lm.model, want_ids);
    const auto want = prompt.at("logits").get<std::vector<std::vector<float>>>();
    const auto want_lse = prompt.at("logsumexp").get<std::vector<double>>();
    const auto want_argmax = prompt.at("argmax").get<std::vector<int64_t>>();
    for (size_t p = 0; p < want.size(); ++p) {
      const torch::Tensor picked = logits[int64_t(p)].index_select(0, index);
      const float diff = (picked - torch::tensor(want[p])).abs().max().item<float>();
      EXPECT_LT(diff, 2e-3f) << name << " position " << p;
      EXPECT_NEAR(logits[int64_t(p)].to(torch::kDouble).logsumexp(0).item<double>(), want_lse[p], 2e-3) << name;
      EXPECT_EQ(logits[int64_t(p)].argmax().item<int64_t>(), want_argmax[p]) << name << " position " << p;
    }
    // Greedy continuation: every step whose top-1 lead in the reference is clear must agree
    // (ties within float noise may legitimately flip, and everything after them differs).
    if (!prompt.contains("greedy")) continue;
    const auto& g = prompt.at("greedy");
    const auto want_greedy = g.at("ids").get<std::vector<int>>();
    const auto lead = g.at("top1_minus_top2").get<std::vector<double>>();
    lcq::model::GenerateOptions go;
    go.max_new_tokens = int(want_greedy.size());
    const auto got = lcq::model::generate(lm.model, want_ids, go).tokens;
    for (size_t i = 0; i < want_greedy.size() && lead[i] > 1e-2; ++i)
      ASSERT_EQ(got[i], want_greedy[i]) << name << " step " << i;
  }
}

// --- one token through a dense layer ---------------------------------------------------------

// Decoding sends one token through each dense layer, which takes the Highway GEMV instead of
// BLAS (src/model/linear.cpp); it must give torch's product, and leave training to autograd.
TEST(DenseLinear, OneTokenMatchesTorchLinearInF32AndBf16) {
  torch::manual_seed(7);
  for (auto dtype : {torch::kFloat32, torch::kBFloat16}) {
    lcq::model::Linear lin;
    lin.weight = torch::randn({37, 53}).to(dtype);  // odd shapes: the kernels' row and column tails
    lin.bias = torch::randn({37}).to(dtype);
    const torch::Tensor x = torch::randn({1, 1, 53}).to(dtype);
    torch::NoGradGuard ng;
    const torch::Tensor y = lin.forward(x);
    ASSERT_EQ(y.scalar_type(), dtype);
    ASSERT_EQ(y.sizes(), (std::vector<int64_t>{1, 1, 37}));
    const torch::Tensor ref = torch::nn::functional::linear(x.to(torch::kFloat64), lin.weight.to(torch::kFloat64),
                                                            lin.bias.to(torch::kFloat64));
    const double tol = dtype == torch::kFloat32 ? 1e-4 : 0.1;  // bf16: the output's rounding (|y| < 20)
    EXPECT_LT((y.to(torch::kFloat64) - ref).abs().max().item<double>(), tol) << dtype;
  }
  lcq::model::Linear trainable;
  trainable.weight = torch::randn({8, 16}).requires_grad_(true);
  const torch::Tensor y = trainable.forward(torch::randn({1, 16}));
  EXPECT_TRUE(y.requires_grad());  // the weight is being learned: autograd's path
}

// --- prompts through a packed layer ------------------------------------------------------------

// 16 tokens or more through a packed layer multiply its dequantized weights through BLAS, panel
// by panel (src/model/linear.cpp): in f32 the product of the exact weights, in bf16 torch's
// bf16 product of the rounded inputs and weights. Rows over several panels and a ragged last
// chunk; every kernel family auto can pick.
TEST(PackedLinear, PromptPanelsAreTheDequantizedWeightsProduct) {
  using namespace lcq::kernels;
  const lcq::CodebookLayer l = test::random_layer({1100, 2048, 3, 64, 2, 8}, 5);  // 512 rows per f32 panel
  torch::Tensor w = torch::empty({l.rows, l.cols}, torch::kFloat32);
  l.dequantize(w.data_ptr<float>());
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({1, 40, l.cols});
  torch::NoGradGuard ng;
  for (KernelChoice k : {KernelChoice::kFloat, KernelChoice::kAuto}) {
    lcq::model::Linear lin;
    lin.packed = make_codebook_matrix(l, choose_family(l, k));
    const torch::Tensor exact = torch::mm(x[0].to(torch::kFloat64), w.to(torch::kFloat64).t()).to(torch::kFloat32);
    const double scale = exact.abs().max().item<double>();
    lin.panel_dtype = torch::kFloat32;
    EXPECT_LT((lin.forward(x)[0] - exact).abs().max().item<double>(), 1e-5 * scale) << lin.packed->kernel_name();
    lin.panel_dtype = torch::kBFloat16;
    // torch's bf16 product of the rounded inputs and weights (oneDNN: a bf16 result, partial
    // sums rounded along the way) ...
    const torch::Tensor bf16 = torch::mm(x[0].to(torch::kBFloat16), w.to(torch::kBFloat16).t()).to(torch::kFloat32);
    const torch::Tensor y = lin.forward(x)[0];
    // (equal here; a oneDNN that blocks the sums by the panel's shape may round one of them
    // differently: one bf16 step of the result)
    EXPECT_LT(((y - bf16).abs() - bf16.abs() / 128.0).max().item<double>(), 1e-6 * scale) << lin.packed->kernel_name();
    // ... within 1 % of the largest output of the exact product (measured 0.26 %).
    EXPECT_LT((y - exact).abs().max().item<double>(), 1e-2 * scale) << lin.packed->kernel_name();
  }
}
