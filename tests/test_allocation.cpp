// Size targets (lcq/quant/allocation.h): the greedy choice, the exact byte arithmetic against
// the writer, and `lcq quantize --target-size/--target-bpw` on stories260K end to end: the
// file never exceeds the target, the allocation is what the file's layers hold, `lcq info`
// shows and plots it, and bad targets fail before any work.
#include "lcq/core/error.h"
#include "lcq/io/codebook_tensors.h"
#include "lcq/io/model_source.h"
#include "lcq/io/writers.h"
#include "lcq/quant/allocation.h"
#include "stories_fixture.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <random>
#include <set>

using namespace lcq;
using test::stories_bin;
using test::stories_tok;
using test::tinystories;

namespace {

quant::LayerCost cost(const std::string& name, std::vector<double> error, std::vector<uint64_t> bytes,
                      std::vector<int> widths = {2, 3, 4}) {
  return {name, std::move(widths), std::move(error), std::move(bytes)};
}

size_t index_of(const quant::LayerCost& l, int bits) {
  return size_t(std::find(l.widths.begin(), l.widths.end(), bits) - l.widths.begin());
}

uint64_t bytes_of(const std::vector<quant::LayerCost>& layers, const std::map<std::string, int>& bits) {
  uint64_t n = 0;
  for (const auto& l : layers) n += l.bytes.at(index_of(l, bits.at(l.name)));
  return n;
}

double error_of(const std::vector<quant::LayerCost>& layers, const std::map<std::string, int>& bits) {
  double e = 0;
  for (const auto& l : layers) e += l.error.at(index_of(l, bits.at(l.name)));
  return e;
}

// The dense shape [rows, cols] of block linear `name` ("blk.3.attn_k") of a model.
std::pair<int64_t, int64_t> linear_shape(const ModelConfig& c, const std::string& name) {
  const std::string kind = name.substr(name.find('.', 4) + 1);
  const int64_t q = int64_t(c.n_heads) * c.head_dim, kv = int64_t(c.n_kv_heads) * c.head_dim;
  if (kind == "attn_q") return {q, c.dim};
  if (kind == "attn_k" || kind == "attn_v") return {kv, c.dim};
  if (kind == "attn_output") return {c.dim, q};
  if (kind == "ffn_down") return {c.dim, c.hidden_dim};
  return {c.hidden_dim, c.dim};  // ffn_gate, ffn_up
}

}  // namespace

TEST(Allocation, SpendsTheBudgetWhereTheErrorDropsMostPerByte) {
  // "a" gains 90 for 100 bytes at 3 bits, "b" 10 for 100: with 100 bytes to spare, a goes up.
  const std::vector<quant::LayerCost> layers = {cost("a", {100, 10, 5}, {200, 300, 400}),
                                                cost("b", {20, 10, 9}, {200, 300, 400})};
  auto bits = quant::allocate_bits(layers, 500);
  EXPECT_EQ(bits.at("a"), 3);
  EXPECT_EQ(bits.at("b"), 2);
  bits = quant::allocate_bits(layers, 400);
  EXPECT_EQ(bits.at("a"), 2);
  EXPECT_EQ(bits.at("b"), 2);
  bits = quant::allocate_bits(layers, 10000);  // room for everything: the widest
  EXPECT_EQ(bits.at("a"), 4);
  EXPECT_EQ(bits.at("b"), 4);
  // A wider width that does not reduce the error is never bought.
  bits = quant::allocate_bits({cost("c", {5, 5, 6}, {10, 20, 30})}, 1000);
  EXPECT_EQ(bits.at("c"), 2);
  try {
    quant::allocate_bits(layers, 399);
    FAIL() << "a budget below the narrowest widths was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 more than the target leaves"), std::string::npos) << e.what();
  }
  // Layers with widths of their own (an embedding at 4, 6 or 8 bits beside 2-4-bit linears).
  const std::vector<quant::LayerCost> mixed = {cost("a", {100, 10, 5}, {200, 300, 400}),
                                               cost("e", {50, 1, 0.5}, {400, 600, 800}, {4, 6, 8})};
  // From 600 bytes: a to 3 bits (+100 bytes, -90), then e to 6 (+200, -49) before a to 4 (+100, -5).
  bits = quant::allocate_bits(mixed, 900);
  EXPECT_EQ(bits.at("a"), 3);
  EXPECT_EQ(bits.at("e"), 6);
}

TEST(Allocation, NeverExceedsTheBudgetAndMoreBytesNeverCostAccuracy) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const std::vector<int> widths = {2, 3, 4, 8};
  std::vector<quant::LayerCost> layers;
  uint64_t narrowest = 0, widest = 0;
  for (int i = 0; i < 40; ++i) {
    const uint64_t rows = 1 + uint64_t(u(rng) * 64);
    std::vector<uint64_t> bytes;
    for (int b : widths) bytes.push_back(rows * uint64_t(b) * 16 + 40);
    const double scale = std::pow(10.0, 4 * u(rng) - 2);
    layers.push_back(cost("l" + std::to_string(i), {scale, scale / 4, scale / 16, scale / 4096}, bytes, widths));
    narrowest += bytes.front();
    widest += bytes.back();
  }
  double previous = 1e300;
  for (uint64_t budget = narrowest; budget <= widest + 1000; budget += (widest - narrowest) / 37 + 1) {
    const auto bits = quant::allocate_bits(layers, budget);
    EXPECT_LE(bytes_of(layers, bits), budget);
    const double e = error_of(layers, bits);
    EXPECT_LE(e, previous * (1 + 1e-12)) << "budget " << budget;
    previous = e;
  }
}

TEST(Allocation, ByteArithmeticMatchesTheWrittenFile) {
  // A stories260K file quantized at mixed widths: the writer's size of its dense part plus each
  // layer's codebook_file_bytes is the file's size, up to the keys and header padding the
  // estimate allows for.
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/mixed.gguf";
  auto r = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + out +
                         " --method rtn --group 32 --target-size 0.2 --calib " + tinystories() +
                         " --nsamples 4 --seqlen 64 --json --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  const uint64_t file = std::filesystem::file_size(out);
  EXPECT_EQ(j.at("target").at("file_bytes").get<uint64_t>(), file);
  const uint64_t estimate = j.at("target").at("estimated_bytes").get<uint64_t>();
  EXPECT_GE(estimate, file);
  // The allowance: a bits and a group_size key per linear (35), five keys of the embedding
  // (its width is allocated too) and the header's padding.
  EXPECT_EQ(j.at("target").at("embedding_bits").get<int>() > 0, true);
  EXPECT_LE(estimate - file, 40u * 2 * io::codebook_key_bytes("blk.0.attn_output", "group_size") + 31);

  // Each layer's bytes as the file stores them.
  io::ModelSource src = io::load_model_source(out);
  for (const std::string name : {"blk.0.attn_q", "blk.4.ffn_down"}) {
    uint64_t stored = 0;
    for (const auto& t : src.tensors)
      if (t.name.rfind(name + ".lcq_", 0) == 0)
        stored += 8 + t.name.size() + 4 + 8 * t.shape.size() + 4 + 8 + (t.nbytes + 31) / 32 * 32;
    const auto [rows, cols] = linear_shape(src.config, name);
    const CodebookLayer l = io::read_codebook_layer(src, name, rows, cols);
    EXPECT_EQ(io::codebook_file_bytes(name, l), stored) << name;
  }
}

// With --init wmse the sensitivities are those of the weighted grids the run starts from:
// the same widths and bytes as with mse, other errors (the energies reach the trials).
TEST(Allocation, WeightedStartIsWhatTheSensitivitiesMeasure) {
  model::LoadedModel m = test::load_stories();
  const torch::Tensor calib = test::stories_calibration(m, 4, 64);
  quant::QuantizeOptions o = test::stories_options("lcq", 3, 32, 0);
  quant::AllocationOptions a;
  a.measure = quant::SensitivityMeasure::kBlock;
  a.progress = false;
  o.lcq.init = quant::LcqInit::kMse;
  const auto mse = quant::measure_layer_costs(m.model, calib, o, a);
  o.lcq.init = quant::LcqInit::kWmse;
  const auto wmse = quant::measure_layer_costs(m.model, calib, o, a);
  ASSERT_EQ(mse.size(), wmse.size());
  size_t differ = 0;
  for (size_t i = 0; i < mse.size(); ++i) {
    EXPECT_EQ(mse[i].name, wmse[i].name);
    EXPECT_EQ(mse[i].bytes, wmse[i].bytes) << mse[i].name;
    for (size_t w = 0; w < mse[i].error.size(); ++w) {
      EXPECT_TRUE(std::isfinite(wmse[i].error[w]) && wmse[i].error[w] >= 0) << wmse[i].name;
      differ += wmse[i].error[w] != mse[i].error[w];
    }
  }
  EXPECT_GT(differ, mse.size()) << "the weighted grids should change most layers' measured errors";
}

TEST(TargetCli, FilesNeverExceedTheirTargetAndHoldTheAllocation) {
  const std::string dir = test::scratch_dir();
  const std::string base = "quantize " + stories_bin() + " --tokenizer " + stories_tok() + " --calib " +
                           tinystories() + " --nsamples 4 --seqlen 64 --json --quiet --group 32 ";
  // From the narrowest (linears at 2 bits, embedding at 4: about 0.13 MiB) to more than
  // everything at its widest takes (0.196 MiB), RTN, GPTQ and LCQ (from a grid and from GPTQ),
  // every measure.
  const std::vector<std::string> targets = {"--target-size 0.135",
                                            "--target-size 0.15",
                                            "--target-size 160K",
                                            "--target-size 0.3",
                                            "--target-bpw 5",
                                            "--target-size 0.2 --target-measure block",
                                            "--target-size 0.17 --target-measure model",
                                            "--target-size 0.16 --method lcq --rank 2 --epochs 1",
                                            "--target-size 0.16 --method gptq --gptq-grid wmse",
                                            "--target-size 0.155 --method lcq --rank 2 --epochs 1 --init gptq "
                                            "--gptq-grid wmse --act-order"};
  std::set<std::string> mixes;
  for (size_t i = 0; i < targets.size(); ++i) {
    const std::string out = dir + "/t" + std::to_string(i) + ".gguf";
    const bool method = targets[i].find("--method") != std::string::npos;
    auto r = test::run_lcq(base + "-o " + out + " " + targets[i] + (method ? "" : " --method rtn"));
    ASSERT_EQ(r.exit_code, 0) << targets[i] << ": " << r.err;
    const auto j = nlohmann::json::parse(r.out);
    const uint64_t target = j.at("target").at("bytes").get<uint64_t>();
    const uint64_t file = std::filesystem::file_size(out);
    EXPECT_LE(file, target) << targets[i];
    if (targets[i] == "--target-size 0.3") {  // more than every layer at its widest takes
      EXPECT_EQ(j.at("target").at("linears_at_bits"), nlohmann::json({{"4", 35}}));
      EXPECT_EQ(j.at("target").at("embedding_bits"), 8);
    } else {
      EXPECT_GT(file, target * 9 / 10) << targets[i] << ": the budget was left unused";
    }
    mixes.insert(j.at("target").at("linears_at_bits").dump());

    // The file's layers have the widths the allocation chose, and lcq info shows the same.
    auto info = test::run_lcq("info " + out + " --allocation --json");
    ASSERT_EQ(info.exit_code, 0) << info.err;
    const auto ij = nlohmann::json::parse(info.out);
    EXPECT_EQ(ij.at("allocation").at("linears_at_bits"), j.at("target").at("linears_at_bits"));
    io::ModelSource src = io::load_model_source(out);
    const auto& layers = ij.at("allocation").at("layers");
    // The embedding's width is allocated too unless the measure is the block error.
    const bool embedding = targets[i].find("block") == std::string::npos;
    ASSERT_EQ(layers.size(), embedding ? 36u : 35u);
    for (const auto& l : layers) {
      const std::string name = l.at("name");
      const int bits = l.at("bits").get<int>();
      EXPECT_EQ(l.at("error").size(), 3u);
      if (name == quant::kEmbeddingEntry) {
        EXPECT_EQ(ij.at("allocation").at("embedding_bits").get<int>(), bits);
        EXPECT_EQ(io::read_codebook_layer(src, name, src.config.vocab_size, src.config.dim).bits, bits);
        continue;
      }
      const auto [rows, cols] = linear_shape(src.config, name);
      EXPECT_EQ(io::read_codebook_layer(src, name, rows, cols).bits, bits) << name;
    }
    if (!embedding)  // not allocated: the default recipe's width
      EXPECT_EQ(io::read_codebook_layer(src, quant::kEmbeddingEntry, src.config.vocab_size, src.config.dim).bits,
                quant::default_recipe().embedding.bits);
    auto ppl = test::run_lcq("perplexity " + out + " --text " + tinystories() + " --limit 2 --seqlen 64 --json");
    ASSERT_EQ(ppl.exit_code, 0) << ppl.err;
    EXPECT_TRUE(std::isfinite(nlohmann::json::parse(ppl.out).at("perplexity").get<double>()));
  }
  EXPECT_GE(mixes.size(), 4u) << "the targets should give different mixes";

  // The plot: one cell per layer.
  const std::string svg = dir + "/bits.svg";
  auto plot = test::run_lcq("info " + dir + "/t2.gguf --allocation-svg " + svg);
  ASSERT_EQ(plot.exit_code, 0) << plot.err;
  const std::string text = test::read_bytes(svg);
  size_t cells = 0;
  for (size_t p = text.find("<rect x="); p != std::string::npos; p = text.find("<rect x=", p + 1)) ++cells;
  EXPECT_EQ(cells, 35u);
  EXPECT_NE(text.find("blk.4.ffn_down"), std::string::npos);
}

TEST(TargetCli, BadTargetsFailBeforeAnyWorkWithOneLine) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/out.gguf";
  const std::string base = "quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + out + " --quiet ";
  const std::string calib = " --calib " + tinystories() + " --nsamples 2 --seqlen 32 --epochs 1";
  struct Case {
    std::string args, must_mention;
  } cases[] = {
      {"--target-size 0.1" + calib, "too small"},
      {"--target-size 0.1 --embed-bits 4" + calib, "too small"},
      {"--target-size lots" + calib, "--target-size"},
      {"--target-size 1 --target-bpw 3" + calib, "give one"},
      {"--target-size 1 --target-bits 4,3" + calib, "--target-bits"},
      {"--target-size 1 --target-bits 2,9" + calib, "--target-bits"},
      {"--target-size 1 --target-embed-bits 1,4" + calib, "--target-embed-bits"},
      {"--target-size 1 --target-samples 0" + calib, "--target-samples"},
      {"--target-size 1 --target-measure kl" + calib, "--target-measure"},
      {"--target-size 1 --method awq" + calib, "--method lcq, rtn or gptq"},
      {"--target-size 1 --method rtn", "--calib"},
      {"--target-size 1 --init awq" + calib, "--init awq"},
  };
  for (const auto& c : cases) {
    test::expect_refused(test::run_lcq(base + c.args), c.must_mention, c.args, 0);
    EXPECT_FALSE(std::filesystem::exists(out)) << c.args;
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

TEST(TargetCli, ACorruptedAllocationIsOneErrorNamingTheFile) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/t.gguf";
  auto r = test::run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + out +
                         " --method rtn --group 32 --target-size 0.14 --calib " + tinystories() +
                         " --nsamples 2 --seqlen 64 --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string bytes = test::read_bytes(out);
  // Same length, so the file stays a valid GGUF: a layer's width is no longer a candidate, or
  // a key is missing.
  for (const auto& [from, to] : {std::pair<std::string, std::string>{"\"bits\":2,\"bytes\"", "\"bits\":7,\"bytes\""},
                                 std::pair<std::string, std::string>{"\"measure\"", "\"meazure\""}}) {
    std::string copy = bytes;
    const size_t at = copy.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    copy.replace(at, from.size(), to);
    const std::string bad = dir + "/bad.gguf";
    test::write_bytes(bad, copy);
    auto info = test::run_lcq("info " + bad + " --allocation");
    test::expect_refused(info, bad + ": metadata 'lcq.allocation' is malformed", to, 0);
  }
  // A file without an allocation has nothing to show.
  auto plain = test::run_lcq("info " + stories_bin() + " --allocation");
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_NE(plain.err.find("size target"), std::string::npos) << plain.err;
}
