// LCQ quantizer: the rank-one case against RTN, gradients against finite differences,
// double quantization, index packing, and stories260K end to end (file, errors). The command
// line (lcq quantize, lcq bench) is tests/test_quantize_cli.cpp.
#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/kernels/lut_codebook.h"
#include "lcq/kernels/packed_codebook.h"
#include "lcq/model/loader.h"
#include "lcq/quant/calibration.h"
#include "lcq/quant/lcq.h"
#include "lcq/quant/quantize.h"
#include "lcq/quant/uniform.h"
#include "stories_fixture.h"
#include "test_util.h"

#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>

using namespace lcq;

namespace {

using test::load_stories;
using test::stories_ppl;
using test::to_vec;
using test::stories_bin;
using test::stories_tok;
using test::tinystories;

// LCQ options at bits / group / rank, the rest default.
quant::LcqOptions lcq_options(int bits, int group, int rank) {
  quant::LcqOptions o;
  o.bits = bits;
  o.group = group;
  o.rank = rank;
  return o;
}

// A layer's trainable parameters: S~, B~, then V.
std::vector<torch::Tensor> trainable(quant::LcqLinear& l) {
  std::vector<torch::Tensor> p = l.scale_parameters();
  for (auto& v : l.codebook_parameters()) p.push_back(v);
  return p;
}

torch::Tensor real_weight() {  // a real layer with a ragged last group at group 48: 172 = 3*48 + 28
  return load_stories().model.blocks[1].up.weight.clone();
}

}  // namespace

TEST(Lcq, RankOneWithLinearVReproducesRtnBitForBit) {
  const torch::Tensor W = real_weight().t().contiguous();  // [64, 172]: ragged groups
  for (int bits : {2, 3, 4}) {
    for (int group : {32, 48, 172}) {
      quant::LcqOptions o;
      o.bits = bits;
      o.group = group;
      o.rank = 1;
      o.init = quant::LcqInit::kRtn;
      o.dq_bits = 0;
      quant::LcqLinear lcq(W, o, at::detail::createCPUGenerator(1));
      auto gw = quant::GroupedWeight::make(W, group);
      const auto rtn = to_vec(quant::fake_quantize(gw, quant::minmax_grid(gw, bits), bits));
      torch::NoGradGuard ng;
      EXPECT_EQ(to_vec(lcq.weight()), rtn) << bits << " bits, group " << group;
      // And the stored form: to_codebook (RTN's codes) and finalize (nearest entries).
      CodebookLayer layer = lcq.finalize();
      std::vector<float> deq(rtn.size());
      layer.dequantize(deq.data());
      EXPECT_EQ(deq, rtn) << bits << " bits, group " << group;
      CodebookLayer direct = quant::to_codebook(gw, quant::minmax_grid(gw, bits), bits);
      EXPECT_EQ(direct.indices, layer.indices);
    }
  }
}

TEST(Lcq, ExtraRanksStartAtTheRankOneQuantizer) {
  const torch::Tensor W = real_weight();
  quant::LcqOptions o = lcq_options(2, 32, 1);
  quant::LcqLinear r1(W, o, at::detail::createCPUGenerator(1));
  o.rank = 4;
  quant::LcqLinear r4(W, o, at::detail::createCPUGenerator(1));
  torch::NoGradGuard ng;
  EXPECT_TRUE(r1.weight().equal(r4.weight()));
}

// --init wmse: the clipping search weighs each column's error by its input energy. On the
// objective that search minimises (the weighted sum of |error|^2.4 over each group, the
// energies relative to their mean plus 1e-3), every group is at least as good as mse's choice,
// which is among the same candidates; without energies wmse is mse bit for bit.
TEST(Lcq, WeightedInitBeatsMseOnItsObjectiveAndIsMseWithoutEnergies) {
  const torch::Tensor W = real_weight().t().contiguous();  // [64, 172]: ragged groups at 48
  torch::NoGradGuard ng;
  auto rank_one = [&](const std::string& init, const torch::Tensor& energy) {
    quant::LcqOptions o = lcq_options(3, 48, 1);
    o.init = quant::parse_lcq_init(init);
    o.dq_bits = 0;
    return quant::LcqLinear(W, o, at::detail::createCPUGenerator(1), energy).weight();
  };
  EXPECT_TRUE(rank_one("wmse", torch::Tensor()).equal(rank_one("mse", torch::Tensor())));

  torch::Tensor energy = torch::rand({W.size(1)}, at::detail::createCPUGenerator(7)).pow(4) * 50;
  energy.index_put_({torch::arange(0, W.size(1), 17)}, 400.0);  // a few dominant columns
  const torch::Tensor weighted = rank_one("wmse", energy), plain = rank_one("mse", energy);
  EXPECT_FALSE(weighted.equal(plain));
  const torch::Tensor cw = energy / energy.mean() + 1e-3;
  auto objective = [&](const torch::Tensor& q) {  // per group of 48 columns: [64, groups]
    const torch::Tensor e = (q - W).abs().pow(2.4) * cw;
    std::vector<torch::Tensor> groups;
    for (int64_t c = 0; c < W.size(1); c += 48) groups.push_back(e.slice(1, c, std::min<int64_t>(c + 48, W.size(1))).sum(1));
    return torch::stack(groups, 1);
  };
  const torch::Tensor ow = objective(weighted), op = objective(plain);
  EXPECT_TRUE(ow.le(op * (1 + 1e-4) + 1e-9).all().item<bool>()) << (ow - op).max().item<double>();
  EXPECT_LT(ow.sum().item<double>(), 0.99 * op.sum().item<double>());
}

TEST(Lcq, GradientsMatchFiniteDifferencesAtFixedAssignment) {
  // L = sum(R * W_hat) with the assignment held fixed is linear in each single parameter,
  // so a central difference is exact up to float rounding.
  torch::manual_seed(0);
  const torch::Tensor W = torch::randn({6, 20});
  const quant::LcqOptions o = lcq_options(3, 8, 3);  // 20 = 8 + 8 + 4: a ragged group
  quant::LcqLinear lcq(W, o, at::detail::createCPUGenerator(3));
  std::vector<torch::Tensor> params = trainable(lcq);
  {
    torch::NoGradGuard ng;  // move away from the initial point so that every term is non-zero
    for (auto& p : params) p.add_(torch::randn_like(p) * 0.1);
  }
  const torch::Tensor q = lcq.assign(lcq.codebook());
  const torch::Tensor R = torch::randn({6, 20});
  auto loss = [&] { return (R * lcq.weight(q)).sum(); };
  for (auto& p : params)
    if (p.grad().defined()) p.grad().zero_();
  loss().backward();
  int checked = 0;
  for (auto& p : params) {
    auto flat = p.detach().view(-1);
    auto grad = p.grad().view(-1);
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const float h = 1e-2f, x0 = flat[i].item<float>();
      double up, down;
      {
        torch::NoGradGuard ng;
        flat[i] = x0 + h;
        up = loss().item<double>();
        flat[i] = x0 - h;
        down = loss().item<double>();
        flat[i] = x0;
      }
      const double fd = (up - down) / (2 * h);
      EXPECT_NEAR(grad[i].item<double>(), fd, 2e-3 * std::max(1.0, std::abs(fd))) << "parameter entry " << i;
      ++checked;
    }
  }
  EXPECT_GT(checked, 6 * 3 * 3);
}

// In bf16 training steps W_hat is produced in bf16 directly: exactly the f32 W_hat rounded
// (what autocast would cast it to), with the same gradients; without gradients it stays f32.
TEST(Lcq, Bf16StepWeightsAreTheRoundedF32WeightsWithTheSameGradients) {
  torch::manual_seed(2);
  const torch::Tensor W = torch::randn({6, 20});
  const quant::LcqOptions o = lcq_options(3, 8, 2);  // a ragged last group
  quant::LcqOptions ob = o;
  ob.bf16_steps = true;
  quant::LcqLinear f32(W, o, at::detail::createCPUGenerator(5)), bf16(W, ob, at::detail::createCPUGenerator(5));
  const torch::Tensor wf = f32.weight(), wb = bf16.weight();
  ASSERT_EQ(wb.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(wb.equal(wf.to(torch::kBFloat16)));
  const torch::Tensor R = torch::randn({6, 20});
  (wf.to(torch::kBFloat16).to(torch::kFloat32) * R).sum().backward();
  (wb.to(torch::kFloat32) * R).sum().backward();
  const auto pf = trainable(f32), pb = trainable(bf16);
  for (size_t i = 0; i < pf.size(); ++i) {
    ASSERT_TRUE(pb[i].grad().defined());
    EXPECT_TRUE(pb[i].grad().equal(pf[i].grad())) << "parameter " << i;
    EXPECT_GT(pb[i].grad().abs().sum().item<double>(), 0) << "parameter " << i;
  }
  torch::NoGradGuard ng;
  EXPECT_EQ(bf16.weight().scalar_type(), torch::kFloat32);
  EXPECT_TRUE(bf16.weight().equal(f32.weight()));
}

// --codebook-grad ste: the same forward value as the gather; on a rank-one (uniform) codebook
// its gradient is LSQ's, computed here independently in double precision: for a weight
// inside the grid's range dW_hat/dS = q - (w + B) / S and dW_hat/dB = 0; outside it (on an
// end entry) dW_hat/dS = q and dW_hat/dB = -1.
TEST(Lcq, SteGradientIsLsqsOnAUniformGridAndKeepsTheForwardValue) {
  torch::manual_seed(1);
  const torch::Tensor W = torch::randn({5, 24});
  quant::LcqOptions o = lcq_options(3, 8, 1);
  o.init = quant::LcqInit::kRtn;
  o.gradient = quant::CodebookGradient::kSte;
  quant::LcqLinear ste(W, o, at::detail::createCPUGenerator(0));
  {
    torch::NoGradGuard ng;  // a grid narrower than the weights: some fall outside its range
    ste.scale_parameters()[0].mul_(0.8);
  }
  quant::LcqOptions og = o;
  og.gradient = quant::CodebookGradient::kGather;
  quant::LcqLinear gather(W, og, at::detail::createCPUGenerator(0));
  {
    torch::NoGradGuard ng;
    gather.scale_parameters()[0].copy_(ste.scale_parameters()[0]);
  }
  EXPECT_TRUE(ste.weight().equal(gather.weight()));

  const torch::Tensor R = torch::randn({5, 24});
  (R * ste.weight()).sum().backward();
  const torch::Tensor C = ste.codebook().detach();  // [5, 3, 8] = S j - B
  const torch::Tensor s_tilde = ste.scale_parameters()[0], b_tilde = ste.scale_parameters()[1];
  const torch::Tensor s0 = (C.select(-1, 1) - C.select(-1, 0)) / s_tilde.detach()[0];  // initial scale
  int inside = 0, outside = 0;
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t k = 0; k < 3; ++k) {
      const double S = C[i][k][1].item<double>() - C[i][k][0].item<double>(), B = -C[i][k][0].item<double>();
      double dS = 0, dB = 0;
      for (int64_t c = 0; c < 8; ++c) {
        const double w = W[i][k * 8 + c].item<double>(), r = R[i][k * 8 + c].item<double>();
        const double t = (w + B) / S;
        const double q = std::min(7.0, std::max(0.0, std::nearbyint(t)));
        if (t >= 0 && t < 7) {
          dS += r * (q - t);
          ++inside;
        } else {
          dS += r * q;
          dB -= r;
          ++outside;
        }
      }
      // S = S~ s0 and B = B~ s0.
      const double sc = s0[i][k].item<double>();
      EXPECT_NEAR(s_tilde.grad()[0][i][k].item<double>(), dS * sc, 1e-4 * (1 + std::abs(dS * sc))) << i << " " << k;
      EXPECT_NEAR(b_tilde.grad()[i][k].item<double>(), dB * sc, 1e-4 * (1 + std::abs(dB * sc))) << i << " " << k;
    }
  }
  EXPECT_GT(inside, 60);
  EXPECT_GT(outside, 3);
  EXPECT_EQ(quant::parse_codebook_gradient("ste"), quant::CodebookGradient::kSte);
  EXPECT_EQ(quant::to_string(quant::parse_codebook_gradient("gather")), "gather");
  EXPECT_THROW(quant::parse_codebook_gradient("soft"), Error);
}

TEST(Lcq, DoubleQuantizationRoundTripsWithinHalfAStep) {
  torch::manual_seed(1);
  const int64_t n = 1000;
  auto x = to_vec(torch::randn({n}) * 0.01 + 0.02);
  for (int bits : {4, 8}) {
    for (int group : {64, 7}) {
      const int64_t nb = (n + group - 1) / group;
      std::vector<uint8_t> codes(n);
      std::vector<uint16_t> scale(nb), offset(nb);
      quant::double_quantize(x.data(), n, bits, group, codes.data(), scale.data(), offset.data());
      for (int64_t i = 0; i < n; ++i) {
        const float sc = f16_to_f32(scale[i / group]), off = f16_to_f32(offset[i / group]);
        ASSERT_LE(codes[i], (1 << bits) - 1);
        const float back = off + sc * float(codes[i]);
        // Half a step, plus the fp16 rounding of the offset (the block minimum).
        EXPECT_LE(std::abs(back - x[i]), 0.5f * sc + std::abs(off) * 1e-3f + 1e-7f) << bits << " bits, i " << i;
      }
    }
  }
}

TEST(Lcq, PackedIndicesRoundTripForRaggedShapes) {
  std::mt19937 rng(5);
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t cols : {1, 7, 13, 172, 577}) {
      CodebookLayer l;
      l.rows = 5;
      l.cols = cols;
      l.bits = bits;
      l.group = 48;
      l.indices.resize(size_t(l.rows * cols));
      for (auto& q : l.indices) q = uint8_t(rng() % (1u << bits));
      const auto packed = l.pack_indices();
      EXPECT_EQ(packed.size(), size_t(l.rows * ((cols * bits + 7) / 8)));
      CodebookLayer back = l;
      back.indices.clear();
      back.unpack_indices(packed.data(), packed.size(), "test");
      EXPECT_EQ(back.indices, l.indices) << bits << " bits, " << cols << " cols";
    }
  }
}

TEST(Lcq, BitsPerWeightCountsEveryStoredByte) {
  CodebookLayer l;
  l.rows = 576;
  l.cols = 576;
  l.bits = 2;
  l.group = 128;  // 5 groups per row, the last of 64
  l.rank = 2;
  l.dq_bits = 8;
  l.dq_group = 64;
  const double G = 576.0 * 5, NB = std::ceil(G / 64);
  const double expected = (2.0 * 576 * 576 + 3 * G * 8 + 3 * NB * 32 + 2 * 4 * 16) / (576.0 * 576);
  EXPECT_DOUBLE_EQ(l.bits_per_weight(), expected);
}

TEST(Calibration, WindowsAreSeededAndRejectShortTexts) {
  std::vector<int> tokens(1000);
  for (int i = 0; i < 1000; ++i) tokens[size_t(i)] = i;
  quant::CalibrationOptions o;
  o.nsamples = 16;
  o.seqlen = 100;
  o.seed = 7;
  auto a = quant::sample_calibration(tokens, o), b = quant::sample_calibration(tokens, o);
  EXPECT_TRUE(a.equal(b));
  // Every window is a contiguous run of the text.
  EXPECT_TRUE((a.slice(1, 1) - a.slice(1, 0, -1)).eq(1).all().item<bool>());
  o.seed = 8;
  EXPECT_FALSE(quant::sample_calibration(tokens, o).equal(a));
  o.seqlen = 1001;
  o.path = "calib.txt";
  try {
    quant::sample_calibration(tokens, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calib.txt"), std::string::npos) << e.what();
  }
}

// 100000 windows of a 1000-token text repeated each start position ~100 times, for minutes
// and gigabytes: refused, saying how many the text can give.
TEST(Calibration, RefusesMoreWindowsThanTheTextHasStartPositions) {
  std::vector<int> tokens(1000, 1);
  quant::CalibrationOptions o;
  o.path = "calib.txt";
  o.seqlen = 100;
  o.nsamples = 901;  // 1000 - 100 + 1 start positions
  EXPECT_EQ(quant::sample_calibration(tokens, o).size(0), 901);
  o.nsamples = 902;
  try {
    quant::sample_calibration(tokens, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calib.txt: 1000 tokens give only 901 distinct calibration windows of 100 tokens"),
              std::string::npos)
        << e.what();
  }
}

// The closed choices of the engine have one name table each, which the CLI's checks list.
TEST(ReconstructOptions, ClosedChoicesParseTheirNamesOnly) {
  EXPECT_EQ(quant::loss_names(), (std::vector<std::string>{"mse", "token-relative"}));
  EXPECT_EQ(quant::schedule_names(), (std::vector<std::string>{"cosine", "constant"}));
  EXPECT_EQ(quant::train_dtype_names(), (std::vector<std::string>{"fp32", "bf16", "auto"}));
  EXPECT_EQ(quant::parse_loss("token-relative"), quant::TrainingLoss::TokenRelative);
  EXPECT_EQ(quant::parse_schedule("constant"), quant::LrSchedule::Constant);
  EXPECT_EQ(quant::parse_train_dtype("bf16"), quant::TrainDtype::Bf16);
  try {
    quant::parse_schedule("linear");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "--schedule must be cosine or constant, got 'linear'");
  }
  EXPECT_THROW(quant::parse_loss("l1"), Error);
  EXPECT_THROW(quant::parse_train_dtype("fp16"), Error);
  // Every value's name parses back to it.
  for (const std::string& n : quant::loss_names()) EXPECT_EQ(quant::to_string(quant::parse_loss(n)), n);
  for (const std::string& n : quant::schedule_names()) EXPECT_EQ(quant::to_string(quant::parse_schedule(n)), n);
  for (const std::string& n : quant::train_dtype_names()) EXPECT_EQ(quant::to_string(quant::parse_train_dtype(n)), n);
}

// --- stories260K end to end ---------------------------------------------------------------

namespace {

struct Quantized {
  double ppl = 0;
  std::vector<int> eval_tokens;
};

}  // namespace

TEST(Stories260K, LcqFileLoadsAndBeatsRtnAtTheSameBitsAndGroup) {
  const std::string dir = test::scratch_dir();
  model::LoadedModel fp = load_stories();
  // Calibrate on the first half of the file, evaluate on the second.
  const torch::Tensor calib = test::stories_calibration(fp);
  const std::vector<int> eval_tokens = test::stories_eval_tokens(fp);

  quant::QuantizeOptions o = test::stories_options("rtn", 3, 32);
  model::LoadedModel rtn = load_stories();
  auto rq = quant::quantize_model(rtn.model, torch::Tensor(), o);
  const double ppl_rtn = stories_ppl(rtn.model, eval_tokens);

  o.method = quant::Method::kLcq;
  o.lcq.rank = 2;
  model::LoadedModel lcq = load_stories();
  auto lq = quant::quantize_model(lcq.model, calib, o);
  ASSERT_EQ(lq.blocks.size(), 5u);
  for (const auto& b : lq.blocks) EXPECT_LT(b.trained_loss, b.init_loss) << "block " << b.layer;
  const std::string path = dir + "/lcq.gguf";
  quant::write_quantized_model(path, lcq.model, lcq.tok().vocab(), lq, {});
  EXPECT_NEAR(lq.bits_per_weight, lq.layers.begin()->second.bits_per_weight(), 0.2);

  // The file holds no dense copy of the quantized layers and loads back to the same weights.
  io::ModelSource src = io::load_model_source(path);
  EXPECT_EQ(src.find("blk.0.attn_q.weight"), nullptr);
  EXPECT_TRUE(io::has_codebook_layer(src, "blk.0.attn_q"));
  model::RuntimeOptions dense_rt;
  dense_rt.packed = false;
  model::LoadedModel back = model::load_model(path, {}, dense_rt);
  for (size_t l = 0; l < back.model.blocks.size(); ++l) {
    auto a = back.model.blocks[l].linears(), b = lcq.model.blocks[l].linears();
    for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(a[i].second->weight.equal(b[i].second->weight)) << a[i].first;
  }
  const double ppl_lcq = stories_ppl(back.model, eval_tokens);
  // The packed runtime keeps the layers packed (no dense weight at all); with the exact float
  // kernel it agrees with the dequantized model up to f32 summation order.
  model::RuntimeOptions exact_rt;
  exact_rt.kernel = kernels::KernelChoice::kFloat;
  model::LoadedModel packed = model::load_model(path, {}, exact_rt);
  for (const auto& [name, lin] : packed.model.blocks[0].linears()) {
    EXPECT_FALSE(lin->weight.defined()) << name;
    ASSERT_NE(lin->packed, nullptr) << name;
  }
  EXPECT_NEAR(stories_ppl(packed.model, eval_tokens), ppl_lcq, 1e-4 * ppl_lcq);
  {
    torch::NoGradGuard ng;
    auto tokens = torch::tensor(std::vector<int64_t>(eval_tokens.begin(), eval_tokens.begin() + 64)).unsqueeze(0);
    EXPECT_LT((packed.model.forward(tokens) - back.model.forward(tokens)).abs().max().item<double>(), 1e-4);
    // One-token steps with a KV cache take the GEMV kernel.
    auto cp = packed.model.make_cache(1, 64), cd = back.model.make_cache(1, 64);
    packed.model.forward(tokens.slice(1, 0, 10), &cp);
    back.model.forward(tokens.slice(1, 0, 10), &cd);
    for (int64_t t = 10; t < 14; ++t) {
      auto a = packed.model.forward(tokens.slice(1, t, t + 1), &cp), b = back.model.forward(tokens.slice(1, t, t + 1), &cd);
      EXPECT_LT((a - b).abs().max().item<double>(), 1e-4) << "step " << t;
    }
  }
  const double ppl_fp = stories_ppl(fp.model, eval_tokens);
  std::printf("stories260K W3 g32: fp %.3f, rtn %.3f, lcq r2 %.3f\n", ppl_fp, ppl_rtn, ppl_lcq);
  EXPECT_TRUE(std::isfinite(ppl_lcq));
  EXPECT_LT(ppl_lcq, ppl_rtn);
  EXPECT_GT(ppl_lcq, ppl_fp * 0.99);
}

// Which kernel family runs each layer of a real model, per --kernel: int8 takes 4-bit groups
// of 64 (whole index blocks), lut takes 2-, 3- and 4-bit layers on CPUs that run it (AVX-512
// VBMI; AVX2 at 2 and 4 bits), and auto takes the fastest that applies. Prompts (16 tokens and more) multiply the exactly dequantized
// weights through BLAS whatever the kernel, so the perplexity of every choice is the float
// kernel's to float rounding. (Decoding through each family: tests/test_decoder.cpp.)
TEST(Stories260K, KernelChoicePicksTheFamilyAndPromptsStayExact) {
  const std::string dir = test::scratch_dir();
  std::vector<int> eval_tokens;
  for (const auto& [bits, group] : {std::pair{2, 32}, std::pair{3, 32}, std::pair{4, 64}}) {
    const quant::QuantizeOptions o = test::stories_options("rtn", bits, group);
    model::LoadedModel m = load_stories();
    auto q = quant::quantize_model(m.model, torch::Tensor(), o);
    const std::string path = dir + "/w" + std::to_string(bits) + ".gguf";
    quant::write_quantized_model(path, m.model, m.tok().vocab(), q, {});
    auto load = [&](kernels::KernelChoice k) {
      model::RuntimeOptions rt;
      rt.kernel = k;
      return model::load_model(path, {}, rt);
    };
    const model::LoadedModel fl = load(kernels::KernelChoice::kFloat);
    if (eval_tokens.empty()) eval_tokens = test::stories_eval_tokens(fl);
    const double ppl_f = stories_ppl(fl.model, eval_tokens);
    const bool lut = kernels::lut_simd_available(bits);
    const bool int8 = kernels::int8_simd_available(bits) && bits == 4;
    const std::map<kernels::KernelChoice, std::string> want = {
        {kernels::KernelChoice::kFloat, "float"},
        {kernels::KernelChoice::kInt8, int8 ? "int8" : "float"},
        {kernels::KernelChoice::kLut, lut ? "lut" : int8 ? "int8" : "float"},
        {kernels::KernelChoice::kAuto, lut ? "lut" : int8 ? "int8" : "float"}};
    for (const auto& [choice, family] : want) {
      const model::LoadedModel lm = load(choice);
      const model::Linear& l = lm.model.blocks[0].q;
      ASSERT_NE(l.packed, nullptr);
      EXPECT_EQ(std::string(l.packed->kernel_name()), family) << "W" << bits;
      EXPECT_EQ(l.weight_bytes(), l.packed->nbytes());
      EXPECT_TRUE(l.dense_weight().equal(fl.model.blocks[0].q.dense_weight()));
      EXPECT_NEAR(stories_ppl(lm.model, eval_tokens), ppl_f, 1e-5 * ppl_f) << family;
    }
  }
}

// The position-weighted objective trains as well: every block's output error drops and the
// model beats RTN (stories260K has no massive activation, so both losses should work).
TEST(Stories260K, TokenRelativeLossTrainsEveryBlockAndBeatsRtn) {
  model::LoadedModel fp = load_stories();
  const std::vector<int> eval_tokens = test::stories_eval_tokens(fp);
  quant::QuantizeOptions o = test::stories_options("lcq", 3, 32);
  o.engine.loss = quant::TrainingLoss::TokenRelative;
  model::LoadedModel lcq = load_stories();
  auto lq = quant::quantize_model(lcq.model, test::stories_calibration(fp), o);
  for (const auto& b : lq.blocks) EXPECT_LT(b.trained_loss, b.init_loss) << "block " << b.layer;
  EXPECT_LT(stories_ppl(lcq.model, eval_tokens), test::stories_rtn_ppl(3, 32, eval_tokens));
}

// Both gradient paths through the assignment (--codebook-grad) train every block and beat RTN
// at W2 and W3; they are different paths (different models). The figures behind the default
// are printed (docs/quantization.md, "Gradient").
TEST(Stories260K, GatherAndSteGradientsBothTrainAndBeatRtn) {
  model::LoadedModel fp = load_stories();
  const torch::Tensor calib = test::stories_calibration(fp);
  const std::vector<int> eval_tokens = test::stories_eval_tokens(fp);
  for (const int bits : {2, 3}) {
    const double ppl_rtn = test::stories_rtn_ppl(bits, 32, eval_tokens);
    quant::QuantizeOptions o = test::stories_options("lcq", bits, 32);
    o.lcq.rank = 2;
    std::map<std::string, double> ppl;
    for (const std::string& name : quant::codebook_gradient_names()) {
      o.lcq.gradient = quant::parse_codebook_gradient(name);
      model::LoadedModel lcq = load_stories();
      const auto lq = quant::quantize_model(lcq.model, calib, o);
      double loss = 0;
      for (const auto& b : lq.blocks) {
        EXPECT_LT(b.trained_loss, b.init_loss) << name << " block " << b.layer;
        loss += b.final_loss;
      }
      ppl[name] = stories_ppl(lcq.model, eval_tokens);
      std::printf("stories260K W%d g32 r2 --codebook-grad %s: ppl %.3f (rtn %.3f), sum of block losses %.4e\n", bits,
                  name.c_str(), ppl[name], ppl_rtn, loss);
      EXPECT_LT(ppl[name], ppl_rtn) << name;
    }
    EXPECT_NE(ppl["gather"], ppl["ste"]);
  }
}

// --init wmse measures each block's input energies on the calibration text: its start differs
// from mse's, and LCQ trained from it beats RTN.
TEST(Stories260K, WeightedInitUsesTheCalibrationInputsAndTrainsBeyondRtn) {
  model::LoadedModel fp = load_stories();
  const std::vector<int> eval_tokens = test::stories_eval_tokens(fp);
  const torch::Tensor calib = test::stories_calibration(fp);
  quant::QuantizeOptions o = test::stories_options("lcq", 3, 32, /*epochs=*/0);
  o.lcq.rank = 1;
  o.lcq.init = quant::LcqInit::kMse;
  model::LoadedModel mse = load_stories();
  const auto mq = quant::quantize_model(mse.model, calib, o);
  o.lcq.init = quant::LcqInit::kWmse;
  model::LoadedModel wmse = load_stories();
  const auto wq = quant::quantize_model(wmse.model, calib, o);
  int differ = 0;
  for (const auto& [name, layer] : wq.layers) differ += layer.indices != mq.layers.at(name).indices;
  EXPECT_GT(differ, int(wq.layers.size()) / 2);
  const double start_ppl = stories_ppl(wmse.model, eval_tokens);
  EXPECT_TRUE(std::isfinite(start_ppl));

  o.lcq.rank = 2;
  o.engine.epochs = 3;
  model::LoadedModel trained = load_stories();
  const auto tq = quant::quantize_model(trained.model, calib, o);
  for (const auto& b : tq.blocks) EXPECT_LT(b.trained_loss, b.init_loss) << "block " << b.layer;
  const double ppl = stories_ppl(trained.model, eval_tokens);
  std::printf("stories260K W3 g32: mse start %.3f, wmse start %.3f, lcq r2 from wmse %.3f, rtn %.3f\n",
              stories_ppl(mse.model, eval_tokens), start_ppl, ppl, test::stories_rtn_ppl(3, 32, eval_tokens));
  EXPECT_LT(ppl, test::stories_rtn_ppl(3, 32, eval_tokens));
}

TEST(Stories260K, SameSeedGivesTheSameModel) {
  model::LoadedModel fp = load_stories();
  const std::vector<int> tokens = fp.tok().encode(test::read_bytes(tinystories()).substr(0, 40000), true);
  quant::CalibrationOptions co;
  co.nsamples = 4;
  co.seqlen = 64;
  co.seed = 3;
  quant::QuantizeOptions o;
  o.lcq.bits = 2;
  o.lcq.group = 32;
  o.engine.epochs = 1;
  o.engine.progress = false;
  o.engine.seed = 3;
  model::LoadedModel a = load_stories(), b = load_stories();
  auto qa = quant::quantize_model(a.model, quant::sample_calibration(tokens, co), o);
  auto qb = quant::quantize_model(b.model, quant::sample_calibration(tokens, co), o);
  for (const auto& [name, layer] : qa.layers) {
    EXPECT_EQ(layer.indices, qb.layers.at(name).indices) << name;
    EXPECT_EQ(layer.s_codes, qb.layers.at(name).s_codes) << name;
    EXPECT_EQ(layer.v, qb.layers.at(name).v) << name;
  }
}

TEST(Stories260K, ReportedLossesUseTheFirstLossSamplesAndTrainingUsesAll) {
  const torch::Tensor calib = test::stories_calibration(load_stories(), 6, 64);
  quant::QuantizeOptions o = test::stories_options("lcq", 2, 32, 1);
  o.lcq.init = quant::LcqInit::kMse;  // a start that does not depend on the calibration samples
  o.engine.loss_samples = 0;  // all 6
  model::LoadedModel a = load_stories(), b = load_stories(), c = load_stories();
  auto all = quant::quantize_model(a.model, calib, o);
  o.engine.loss_samples = 2;
  auto two = quant::quantize_model(b.model, calib, o);
  // The same training: the stored layers are identical.
  for (const auto& [name, layer] : all.layers) {
    EXPECT_EQ(layer.indices, two.layers.at(name).indices) << name;
    EXPECT_EQ(layer.s_codes, two.layers.at(name).s_codes) << name;
  }
  // Block 0 sees the same inputs in both runs, so its losses on the first two samples equal a
  // run on just those two samples (no training: epochs 0 leaves init = trained).
  o.engine.loss_samples = 0;
  o.engine.epochs = 0;
  auto just_two = quant::quantize_model(c.model, calib.slice(0, 0, 2), o);
  EXPECT_NEAR(two.blocks[0].init_loss, just_two.blocks[0].init_loss, 1e-5 * just_two.blocks[0].init_loss);
  EXPECT_NE(all.blocks[0].init_loss, two.blocks[0].init_loss);
  EXPECT_NE(all.blocks[0].final_loss, two.blocks[0].final_loss);
}

TEST(TrainDtype, AutoIsFp32OrBf16AndExplicitChoicesStay) {
  const quant::TrainDtype a = quant::resolve_train_dtype(quant::TrainDtype::Auto);
  EXPECT_TRUE(a == quant::TrainDtype::Fp32 || a == quant::TrainDtype::Bf16) << quant::to_string(a);
  EXPECT_EQ(quant::resolve_train_dtype(quant::TrainDtype::Fp32), quant::TrainDtype::Fp32);
  EXPECT_EQ(quant::resolve_train_dtype(quant::TrainDtype::Bf16), quant::TrainDtype::Bf16);
}

// bf16 training products change the arithmetic of the steps only: the model still trains
// every block and ends close to the fp32 run, and autocast is off again afterwards
// (evaluation after quantization must not run in bf16).
TEST(Stories260K, Bf16TrainingStepsTrainLikeFp32) {
  const torch::Tensor calib = test::stories_calibration(load_stories(), 8, 64);
  quant::QuantizeOptions o = test::stories_options("lcq", 2, 32, 2);
  o.engine.train_dtype = quant::TrainDtype::Fp32;
  model::LoadedModel a = load_stories(), b = load_stories();
  auto f32 = quant::quantize_model(a.model, calib, o);
  o.engine.train_dtype = quant::TrainDtype::Bf16;
  auto bf16 = quant::quantize_model(b.model, calib, o);
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  bool any_differs = false;
  for (const auto& [name, layer] : f32.layers) any_differs |= layer.s_codes != bf16.layers.at(name).s_codes;
  EXPECT_TRUE(any_differs) << "bf16 products should change the training's arithmetic";
  ASSERT_EQ(f32.blocks.size(), bf16.blocks.size());
  for (size_t l = 0; l < f32.blocks.size(); ++l) {
    const auto &x = f32.blocks[l], &y = bf16.blocks[l];
    EXPECT_LT(y.trained_loss, y.init_loss) << "block " << l;
    // Block 0 starts from the same inputs, so the same init loss; later blocks see the
    // previous blocks' (slightly different) outputs.
    if (l == 0) EXPECT_NEAR(y.init_loss, x.init_loss, 1e-6 * x.init_loss);
    EXPECT_NEAR(y.trained_loss, x.trained_loss, 0.1 * x.trained_loss) << "block " << l;
  }
}

TEST(Stories260K, NanWeightsAreRefusedBeforeAnyWork) {
  const torch::Tensor calib = test::stories_calibration(load_stories(), 2, 32);
  // Not only the linears: a norm or the embedding would be copied into the output as NaN.
  const std::vector<std::pair<std::string, std::function<void(model::Model&)>>> cases = {
      {"blk.2.ffn_down.weight", [](model::Model& m) { m.blocks[2].down.weight[0][3] = NAN; }},
      {"blk.1.ffn_norm.weight", [](model::Model& m) { m.blocks[1].ffn_norm.weight[5] = INFINITY; }},
      {"token_embd.weight", [](model::Model& m) { m.tok_embd[7][1] = NAN; }},
      {"output_norm.weight", [](model::Model& m) { m.output_norm.weight[0] = -INFINITY; }},
  };
  for (const auto& [tensor, corrupt] : cases)
    for (const char* method : {"rtn", "lcq"}) {
      model::LoadedModel m = load_stories();
      {
        torch::NoGradGuard ng;
        corrupt(m.model);
      }
      quant::QuantizeOptions o = test::stories_options(method, 3, 32, 1);
      try {
        quant::quantize_model(m.model, std::string(method) == "rtn" ? torch::Tensor() : calib, o);
        ADD_FAILURE() << method << " " << tensor << ": expected an error";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tensor '" + tensor + "' contains NaN"), std::string::npos) << e.what();
      }
    }
}

// A learning rate that makes training diverge (1e30 here; the CLI refuses above 1) stops at
// the first non-finite loss with an error naming the block, instead of writing a NaN model.
TEST(Stories260K, DivergingTrainingStopsWithAnErrorNamingTheBlock) {
  const torch::Tensor calib = test::stories_calibration(load_stories(), 4, 32);
  for (const char* method : {"lcq", "flexround"}) {
    model::LoadedModel m = load_stories();
    quant::QuantizeOptions o = test::stories_options(method, 2, 32, 2);
    o.lr_scale = o.lr_codebook = 1e30;
    o.lr = 1e30;
    try {
      quant::quantize_model(m.model, calib, o);
      ADD_FAILURE() << method << ": expected an error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("block 0: ", 0), 0u) << msg;
      EXPECT_NE(msg.find("diverged; use a lower learning rate"), std::string::npos) << msg;
    }
  }
}
