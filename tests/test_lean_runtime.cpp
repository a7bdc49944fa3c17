// The lean runtime without libtorch (lcq/run/): its RoPE tables, weights read straight from a
// file decoding exactly as the torch model's decode path does, and the lcq-run binary.
#include "lcq/core/error.h"
#include "lcq/io/model_source.h"
#include "lcq/model/decoder.h"
#include "lcq/model/loader.h"
#include "lcq/quant/quantize.h"
#include "lcq/run/decoder.h"
#include "stories_fixture.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace lcq {
namespace {

TEST(LeanRuntime, RopeTablesFollowTheClosedForm) {
  ModelConfig c;
  c.head_dim = 64;
  c.rope_theta = 10000.f;
  const run::RopeTables t = run::make_rope_tables(c, 512);
  ASSERT_EQ(t.cos.size(), size_t(512 * 64));
  double worst = 0;
  for (int p = 0; p < 512; ++p)
    for (int i = 0; i < 32; ++i) {
      const double a = p * std::pow(10000.0, -2.0 * i / 64);
      for (int half : {0, 32}) {  // rotate-half layout: both halves carry frequency i
        worst = std::max(worst, std::abs(t.cos[size_t(p * 64 + half + i)] - std::cos(a)));
        worst = std::max(worst, std::abs(t.sin[size_t(p * 64 + half + i)] - std::sin(a)));
      }
    }
  // f32 angles up to 511 rad carry ~3e-5 of rounding (half an ulp at 511 is 3e-5).
  EXPECT_LT(worst, 2e-4);

  // Linear scaling divides positions: position 2p at factor 2 is position p unscaled.
  ModelConfig lin = c;
  lin.rope_scaling.type = "linear";
  lin.rope_scaling.factor = 2.f;
  const run::RopeTables s = run::make_rope_tables(lin, 512);
  for (int p = 0; p < 256; ++p)
    EXPECT_EQ(std::memcmp(&s.cos[size_t(2 * p * 64)], &t.cos[size_t(p * 64)], 64 * sizeof(float)), 0) << p;
}

// Steps `tokens` through the lean runtime on weights read from `path` and through the torch
// model's decode path on the same file: the logits must be the same bits at every step.
void expect_same_decode(const std::string& path, const std::string& tokenizer, const std::vector<int>& tokens) {
  io::LoadOptions lo;
  lo.tokenizer_path = tokenizer;
  const io::ModelSource src = io::load_model_source(path, lo);
  const int64_t n = int64_t(tokens.size());
  run::KVCache lean_cache(src.config, n);
  run::Decoder lean(run::load_weights(src), lean_cache.view());

  const model::LoadedModel lm = model::load_model(path, lo);
  model::KVCache cache = lm.model.make_cache(1, n);
  model::Decoder ref(lm.model, cache);
  const int64_t vocab = lm.model.output.out_features();
  ASSERT_EQ(lean.vocab(), vocab);
  int differ = 0;
  for (int64_t t = 0; t < n; ++t) {
    const float* a = lean.step(tokens[size_t(t)]);
    const float* b = ref.step(tokens[size_t(t)]);
    differ += std::memcmp(a, b, size_t(vocab) * sizeof(float)) != 0;
  }
  EXPECT_EQ(differ, 0) << path << ": steps whose logits differ";
  EXPECT_EQ(lean_cache.length(), n);
}

// The dense f32 llama2.c file, and W3 g32 (the LUT family's table form where the CPU has it)
// and W6 (its level form) with a 4-bit embedding and tied head.
std::vector<std::string> stories_files(const std::string& dir) {
  std::vector<std::string> files = {test::stories_bin()};
  for (int bits : {3, 6}) {
    quant::QuantizeOptions o = test::stories_options("rtn", bits, 32);
    o.embedding.bits = 4;
    o.embedding.group = 32;
    model::LoadedModel m = test::load_stories();
    const quant::QuantizeResult q = quant::quantize_model(m.model, torch::Tensor(), o);
    files.push_back(dir + "/w" + std::to_string(bits) + ".gguf");
    quant::write_quantized_model(files.back(), m.model, m.tok().vocab(), q, {});
  }
  return files;
}

std::vector<int> stories_tokens(size_t n) {
  model::LoadedModel fp = test::load_stories();
  const std::vector<int> eval = test::stories_eval_tokens(fp);
  return {eval.begin(), eval.begin() + long(n)};
}

TEST(LeanRuntime, FileWeightsDecodeAsTheTorchModel) {
  const std::vector<int> tokens = stories_tokens(96);
  const std::vector<std::string> files = stories_files(test::scratch_dir());
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const std::string& f : files) expect_same_decode(f, test::stories_tok(), tokens);
  }
  omp_set_num_threads(saved);
}

// A prompt through prefill() (chunks of tokens per product; 150 tokens: two whole chunks and a
// ragged one) leaves the logits and the cache that stepping it a token at a time leaves: the
// next 40 steps match too. With the float family and dense weights (their GEMMs sum in
// other orders than their GEMVs) within 1e-5; with the LUT family (a GEMM is a GEMV per
// token) the same bits. (Not with the int8 family, which `auto` picks for 3 bits on AVX2: a 1e-6
// difference upstream can flip an input across a rounding or outlier threshold, which moves
// the logits by ~0.2, the family's own error.)
TEST(LeanRuntime, PrefillMatchesStepping) {
  const std::vector<int> tokens = stories_tokens(190);
  const int64_t prompt = 150, n = int64_t(tokens.size());
  const int saved = omp_get_max_threads();
  for (const std::string& f : stories_files(test::scratch_dir())) {
    io::LoadOptions lo;
    lo.tokenizer_path = test::stories_tok();
    const io::ModelSource src = io::load_model_source(f, lo);
    for (kernels::KernelChoice k : {kernels::KernelChoice::kFloat, kernels::KernelChoice::kAuto})
      for (int threads : {1, 2}) {
        omp_set_num_threads(threads);
        run::LoadOptions o;
        o.kernel = k;
        run::KVCache ca(src.config, n), cb(src.config, n);
        run::Decoder a(run::load_weights(src, o), ca.view()), b(run::load_weights(src, o), cb.view());
        const std::string family = a.weights().layers[0].q->kernel_name();
        if (family == "int8") continue;
        const bool exact = family == "lut";
        const int64_t vocab = a.vocab();
        auto compare = [&](const float* x, const float* y, const char* what) {
          const std::string where = f + ", " + family + ", " + std::to_string(threads) + " thread(s): " + what;
          if (exact) {
            EXPECT_EQ(std::memcmp(x, y, size_t(vocab) * sizeof(float)), 0) << where;
            return;
          }
          double diff = 0, scale = 0;
          for (int64_t v = 0; v < vocab; ++v)
            diff = std::max(diff, double(std::abs(x[v] - y[v]))), scale = std::max(scale, double(std::abs(y[v])));
          EXPECT_LT(diff, 1e-5 * scale) << where;
        };
        const float* pa = a.prefill(tokens.data(), prompt);
        const float* pb = nullptr;
        for (int64_t t = 0; t < prompt; ++t) pb = b.step(tokens[size_t(t)]);
        compare(pa, pb, "the prompt's last logits");
        EXPECT_EQ(ca.length(), prompt);
        for (int64_t t = prompt; t < n; ++t) {
          const float* sa = a.step(tokens[size_t(t)]);
          compare(sa, b.step(tokens[size_t(t)]), "a step after the prompt");
        }
      }
  }
  omp_set_num_threads(saved);
}

TEST(LeanRuntime, RefusesWhatItDoesNotRun) {
  model::LoadedModel m = test::load_stories();
  const quant::QuantizeResult q = quant::quantize_model(m.model, torch::Tensor(), test::stories_options("rtn", 4, 32));
  const std::string dir = test::scratch_dir(), path = dir + "/act.gguf";
  quant::write_quantized_model(path, m.model, m.tok().vocab(), q, {{"lcq.act.bits", 8}});
  const io::ModelSource src = io::load_model_source(path);
  try {
    run::load_weights(src);
    ADD_FAILURE() << "an activation-quantized model was loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("quantizes activations"), std::string::npos) << e.what();
  }
}

// The binary: no libtorch among its libraries; greedy generation gives lcq generate's tokens;
// bad files and options get one error line.
TEST(LcqRun, GeneratesWhatLcqGenerates) {
  const std::string args = test::stories_bin() + " --tokenizer " + test::stories_tok() + " -n 24 --json";
  const test::CommandResult lean = test::run_lcq_run(args), full = test::run_lcq("generate " + args);
  ASSERT_EQ(lean.exit_code, 0) << lean.err;
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const auto a = nlohmann::json::parse(lean.out), b = nlohmann::json::parse(full.out);
  EXPECT_EQ(a.at("tokens").size(), 24u);
  EXPECT_EQ(a.at("tokens"), b.at("tokens"));
  EXPECT_EQ(a.at("text"), b.at("text"));
  EXPECT_GT(a.at("decode_tokens_per_second").get<double>(), 0);
}

TEST(LcqRun, LinksNoLibtorch) {
  const std::string cmd = "readelf -d " + std::string(LCQ_BINARY_DIR) + "/src/lcq-run 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  for (size_t k; (k = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, k);
  if (pclose(p) != 0 || out.find("NEEDED") == std::string::npos) GTEST_SKIP() << "readelf is not available";
  EXPECT_EQ(out.find("libtorch"), std::string::npos) << out;
  EXPECT_EQ(out.find("libc10"), std::string::npos) << out;
  EXPECT_NE(out.find("libgomp"), std::string::npos) << out;  // the kernels' threads
}

TEST(LcqRun, BadInputIsOneErrorLine) {
  model::LoadedModel m = test::load_stories();
  const quant::QuantizeResult q = quant::quantize_model(m.model, torch::Tensor(), test::stories_options("rtn", 4, 32));
  const std::string dir = test::scratch_dir(), good = dir + "/q.gguf", cut = dir + "/cut.gguf";
  quant::write_quantized_model(good, m.model, m.tok().vocab(), q, {});
  const std::string bytes = test::read_bytes(good);
  test::write_bytes(cut, bytes.substr(0, bytes.size() * 2 / 3));  // a truncated file
  test::expect_refused(test::run_lcq_run(cut + " -n 4"), cut, "truncated file", 1, "lcq-run");
  test::expect_refused(test::run_lcq_run(dir + "/missing.gguf -n 4"), "missing.gguf", "missing file", 1, "lcq-run");
  test::expect_refused(test::run_lcq_run(good + " --kernel fast"), "--kernel", "unknown kernel", 2, "lcq-run");
  test::expect_refused(test::run_lcq_run(good + " --temp nan"), "--temp", "NaN temperature", 2, "lcq-run");
  EXPECT_EQ(test::read_bytes(good), bytes);  // the input is untouched
}

}  // namespace
}  // namespace lcq
