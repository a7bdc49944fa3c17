// Rotating the residual stream (lcq/quant/rotation.h): the rotation is orthogonal and seeded,
// the rotated model computes the same function through every path (torch forward, the lean
// decoder, a file written and read back, lcq-run's loader), and `lcq quantize --rotate` keeps
// the rotation in its file and refuses what it cannot rotate.
#include "lcq/core/error.h"
#include "lcq/io/model_source.h"
#include "lcq/model/decoder.h"
#include "lcq/model/loader.h"
#include "lcq/quant/quantize.h"
#include "lcq/quant/rotation.h"
#include "lcq/run/decoder.h"
#include "stories_fixture.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace lcq {
namespace {

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

TEST(Rotation, IsOrthogonalAndSeeded) {
  for (int64_t n : {1, 7, 64, 96, 576}) {
    const model::ResidualRotation r = quant::make_rotation(n, 3);
    ASSERT_EQ(r.matrix.sizes(), (std::vector<int64_t>{n, n}));
    const torch::Tensor m = r.matrix.to(torch::kFloat64);
    // f32 entries: orthogonal to f32 rounding.
    EXPECT_LT(max_abs(torch::matmul(m, m.t()) - torch::eye(n, m.options())), 1e-6) << n;
    EXPECT_TRUE(torch::equal(r.matrix, quant::make_rotation(n, 3).matrix)) << n;
    if (n > 1) EXPECT_FALSE(torch::equal(r.matrix, quant::make_rotation(n, 4).matrix)) << n;
    // What a file stores: the a x a mix (a = n over its largest power-of-two factor) and n signs.
    EXPECT_EQ(r.mix.size(0), n == 96 ? 3 : n == 576 ? 9 : n == 64 ? 1 : n);
    EXPECT_EQ(r.signs.abs().sum().item<double>(), double(n));
  }
  // A power of two is a Hadamard matrix with random column signs: every entry +-1/sqrt(n).
  const torch::Tensor h = quant::make_rotation(64, 1).matrix;
  EXPECT_LT(max_abs(h.abs() - 1.0 / 8), 1e-7);
  // Factors that make no rotation are refused.
  const float bad_mix[4] = {1, 1, 0, 1}, signs[4] = {1, -1, 1, 1}, odd[4] = {1, 0.5f, 1, 1}, eye[4] = {1, 0, 0, 1};
  EXPECT_THROW(run::expand_rotation(bad_mix, 2, signs, 4), Error);
  EXPECT_THROW(run::expand_rotation(eye, 2, odd, 4), Error);
  EXPECT_THROW(run::expand_rotation(eye, 2, signs, 6), Error);  // 6 / 2 is not a power of two
  EXPECT_NO_THROW(run::expand_rotation(eye, 2, signs, 4));
}

std::vector<int64_t> eval_ids(const model::LoadedModel& m, size_t n) {
  const std::vector<int> eval = test::stories_eval_tokens(m);
  return {eval.begin(), eval.begin() + long(n)};
}

torch::Tensor logits_of(const model::Model& m, const std::vector<int64_t>& ids) {
  return m.forward(torch::tensor(ids).view({1, -1}));
}

// The rotated model's logits are the original's to f32 rounding, through Model::forward and
// the lean decoder (which applies R and R^T itself), while every linear's weights changed.
TEST(Rotation, RotatedModelComputesTheSameFunction) {
  model::LoadedModel fp = test::load_stories();
  const std::vector<int64_t> ids = eval_ids(fp, 96);
  const torch::Tensor before = logits_of(fp.model, ids);
  model::LoadedModel rot = test::load_stories();
  quant::rotate_residual(rot.model, 7);
  ASSERT_TRUE(rot.model.rotation.defined());
  const auto a = fp.model.blocks[0].linears(), b = rot.model.blocks[0].linears();
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_GT(max_abs(b[i].second->weight - a[i].second->weight), 1e-3) << a[i].first << " was not rewritten";
  EXPECT_TRUE(torch::equal(rot.model.blocks[3].ffn_norm.weight, torch::ones_like(rot.model.blocks[3].ffn_norm.weight)));

  const torch::Tensor after = logits_of(rot.model, ids);
  const double scale = max_abs(before);
  EXPECT_LT(max_abs(after - before), 1e-4 * scale);

  // The lean decoder on the rotated model, a token at a time.
  model::KVCache cache = rot.model.make_cache(1, int64_t(ids.size()));
  model::Decoder lean(rot.model, cache);
  double worst = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    const float* y = lean.step(int(ids[t]));
    const torch::Tensor ref = before[0][long(t)];
    worst = std::max(worst, max_abs(torch::from_blob(const_cast<float*>(y), {ref.size(0)}) - ref));
  }
  EXPECT_LT(worst, 1e-4 * scale);

  EXPECT_THROW(quant::rotate_residual(rot.model, 7), Error);  // rotated already
}

// A rotated model quantized at 8 bits: the file keeps R (f32, bit for bit), the torch loader
// and lcq-run's loader both apply it, and the model stays close to the float one.
TEST(Rotation, QuantizedFileKeepsTheRotation) {
  const std::string dir = test::scratch_dir(), path = dir + "/rot-w8.gguf";
  model::LoadedModel m = test::load_stories();
  const std::vector<int> eval = test::stories_eval_tokens(m);
  const double fp_ppl = test::stories_ppl(m);
  quant::rotate_residual(m.model, 11);
  const torch::Tensor r = m.model.rotation.matrix.clone();
  const quant::QuantizeResult q = quant::quantize_model(m.model, torch::Tensor(), test::stories_options("rtn", 8, 32));
  quant::write_quantized_model(path, m.model, m.tok().vocab(), q, {});

  io::LoadOptions lo;
  lo.tokenizer_path = test::stories_tok();
  const model::LoadedModel back = model::load_model(path, lo);
  ASSERT_TRUE(back.model.rotation.defined());
  EXPECT_TRUE(torch::equal(back.model.rotation.matrix, r));
  const double ppl = test::stories_ppl(back.model, eval);
  EXPECT_LT(std::abs(ppl / fp_ppl - 1), 0.01) << ppl << " against " << fp_ppl;

  const io::ModelSource src = io::load_model_source(path, lo);
  const run::Weights w = run::load_weights(src);
  ASSERT_TRUE(w.rotate_in && w.rotate_out);
  // Without R in the loader, the file's logits would be those of a different function.
  model::LoadedModel unrotated = model::load_model(path, lo);
  unrotated.model.rotation = model::ResidualRotation();
  EXPECT_GT(test::stories_ppl(unrotated.model, eval), 1.5 * fp_ppl);
}

TEST(RotationCli, QuantizeRotatesAndRecordsIt) {
  const std::string dir = test::scratch_dir(), out = dir + "/rot.gguf";
  auto r = test::run_lcq("quantize " + test::stories_bin() + " --tokenizer " + test::stories_tok() + " -o " + out +
                         " --method rtn --bits 4 --group 32 --rotate --json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("settings").at("rotate"), true);
  io::LoadOptions lo;
  lo.tokenizer_path = test::stories_tok();
  const io::ModelSource src = io::load_model_source(out, lo);
  ASSERT_NE(src.find("residual_rotation.mix"), nullptr);
  EXPECT_EQ(src.find("residual_rotation.mix")->shape, (std::vector<int64_t>{1, 1}));  // stories260K: 64 wide
  EXPECT_EQ(src.find("residual_rotation.signs")->shape, (std::vector<int64_t>{64}));
  auto info = test::run_lcq("info " + out + " --tokenizer " + test::stories_tok() + " --json");
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_EQ(nlohmann::json::parse(info.out).at("residual_rotation"), (nlohmann::json{{"mix", 1}, {"hadamard", 64}}));
  // lcq-run (its own loader applies the rotation) generates lcq generate's tokens.
  const std::string args = out + " --tokenizer " + test::stories_tok() + " -n 16 --json";
  const test::CommandResult lean = test::run_lcq_run(args), full = test::run_lcq("generate " + args);
  ASSERT_EQ(lean.exit_code, 0) << lean.err;
  ASSERT_EQ(full.exit_code, 0) << full.err;
  EXPECT_EQ(nlohmann::json::parse(lean.out).at("tokens"), nlohmann::json::parse(full.out).at("tokens"));
}

// With a size target the rotation's bytes are counted: the file stays within the target.
TEST(RotationCli, SizeTargetCountsTheRotation) {
  const std::string dir = test::scratch_dir(), out = dir + "/rot-target.gguf";
  auto r = test::run_lcq("quantize " + test::stories_bin() + " --tokenizer " + test::stories_tok() + " -o " + out +
                         " --method rtn --group 32 --rotate --target-bpw 6 --target-bits 2,3,4 --embed-bits 4 --calib " +
                         test::tinystories() + " --nsamples 4 --seqlen 64 --json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto t = nlohmann::json::parse(r.out).at("target");
  EXPECT_LE(t.at("file_bytes").get<uint64_t>(), t.at("bytes").get<uint64_t>());
  EXPECT_GE(t.at("estimated_bytes").get<uint64_t>(), t.at("file_bytes").get<uint64_t>());
}

// A file whose rotation factors make no rotation is refused with one line naming file and tensor.
TEST(RotationCli, RefusesABadRotation) {
  const std::string dir = test::scratch_dir(), path = dir + "/bad.gguf";
  model::LoadedModel m = test::load_stories();
  quant::rotate_residual(m.model, 1);
  m.model.rotation.signs[5] = 0.5f;  // not a sign: the factors make no rotation
  quant::write_dense_model(path, m.model, m.tok().vocab(), io::DType::F32, nlohmann::json::object());
  test::expect_refused(test::run_lcq("perplexity " + path + " --tokenizer " + test::stories_tok() + " --text " +
                                     test::tinystories() + " --limit 1 --quiet"),
                       "residual_rotation.signs", "a rotation that is not one");
  test::expect_refused(test::run_lcq_run(path + " --tokenizer " + test::stories_tok() + " -n 2 --quiet"),
                       "residual_rotation.signs", "a rotation that is not one (lcq-run)", 1, "lcq-run");
}

}  // namespace
}  // namespace lcq
