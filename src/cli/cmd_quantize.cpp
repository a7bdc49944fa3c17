// lcq quantize MODEL -o OUT.gguf: LCQ (or RTN) quantization of every linear layer.
#include "common.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/quant/calibration.h"
#include "lcq/quant/quantize.h"

#include <fmt/format.h>

namespace lcq::cli {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct QuantizeArgs {
  std::string out, calib, export_fake, export_type = "f16";
  quant::CalibrationOptions c;
  quant::QuantizeOptions q;
  bool seqlen_given = false;
};

}  // namespace

void register_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Quantize a model's linear layers with LCQ (learned low-rank codebooks) or RTN");
  auto opts = std::make_shared<ModelOptions>();
  auto a = std::make_shared<QuantizeArgs>();
  opts->add_to(*cmd);
  cmd->add_option("-o,--output", a->out, "Output GGUF file (written atomically)")->required();
  cmd->add_option("--method", a->q.method, "lcq: learned codebooks on block reconstruction; rtn: round to nearest")
      ->check(CLI::IsMember({"lcq", "rtn"}));
  cmd->add_option("--bits", a->q.lcq.bits, "Index bits per weight (codebook of 2^bits entries)");
  cmd->add_option("--group", a->q.lcq.group, "Weights per group (consecutive input columns; the last may be shorter)");
  cmd->add_option("--rank", a->q.lcq.rank, "Codebook rank r (1 = a uniform grid)");
  cmd->add_option("--init", a->q.lcq.init, "Rank-one start: rtn (min-max) or mse (clipping search)");
  cmd->add_option("--epochs", a->q.engine.epochs, "Passes over the calibration set per block");
  cmd->add_option("--batch-size", a->q.engine.batch_size, "Calibration samples per Adam step");
  cmd->add_option("--lr-scale", a->q.lr_scale, "Adam learning rate of the reparameterized S and B");
  cmd->add_option("--lr-codebook", a->q.lr_codebook, "Adam learning rate of V");
  cmd->add_option("--schedule", a->q.engine.schedule, "Learning-rate schedule: cosine (to 0) or constant");
  cmd->add_option("--dq-bits", a->q.lcq.dq_bits, "Double quantization of S and B (0 = keep them f32)");
  cmd->add_option("--dq-group", a->q.lcq.dq_group, "Groups per double-quantization block");
  cmd->add_option("--calib", a->calib, "Calibration text file (required for lcq)");
  cmd->add_option("--nsamples", a->c.nsamples, "Calibration windows");
  cmd->add_option("--seqlen", a->c.seqlen, "Tokens per calibration window (default: 2048, capped by the context)")
      ->each([a](const std::string&) { a->seqlen_given = true; });
  cmd->add_option("--seed", a->c.seed, "Seed for calibration windows and initialization");
  cmd->add_option("--export-fake", a->export_fake,
                  "Also write the dequantized weights as an ordinary model (.gguf file or HF directory)");
  cmd->add_option("--export-type", a->export_type, "Type of --export-fake weights")->check(CLI::IsMember({"f16", "f32", "bf16"}));
  cmd->footer(
      "Example (2-bit, group 128, rank 2, 10 epochs on 128 x 512 tokens):\n"
      "  lcq quantize model.gguf -o model-lcq-w2.gguf --bits 2 --group 128 --rank 2 \\\n"
      "      --calib ../shared/data/ptb/ptb.valid.txt --nsamples 128 --seqlen 512\n"
      "The output runs in every command: lcq perplexity model-lcq-w2.gguf --text FILE");
  cmd->callback([opts, a] {
    // Everything that can be checked without the model is checked before any work.
    a->q.engine.seed = a->c.seed;
    a->q.engine.progress = !opts->quiet && !opts->json;
    quant::validate(a->q);
    LCQ_CHECK(ends_with(a->out, ".gguf"), "{}: the output must be a .gguf file", a->out);
    LCQ_CHECK(a->q.method == "rtn" || !a->calib.empty(), "--method {} needs --calib FILE", a->q.method);
    LCQ_CHECK(a->c.nsamples >= 1, "--nsamples must be >= 1, got {}", a->c.nsamples);
    std::string calib_text;
    if (!a->calib.empty()) {
      calib_text = read_file(a->calib);
      LCQ_CHECK(!calib_text.empty(), "{}: the calibration file is empty", a->calib);
    }

    model::RuntimeOptions rt = opts->runtime();
    rt.packed = false;  // quantizers read and replace dense weights (an LCQ input is dequantized)
    model::LoadedModel lm = model::load_model(opts->path, opts->load_options(), rt);
    torch::Tensor calib;
    if (!calib_text.empty()) {
      if (!a->seqlen_given) a->c.seqlen = std::min<int64_t>(2048, lm.model.config.max_seq_len);
      LCQ_CHECK(a->c.seqlen <= lm.model.config.max_seq_len, "--seqlen {} exceeds the model's context of {}",
                a->c.seqlen, lm.model.config.max_seq_len);
      a->c.path = a->calib;
      calib = quant::sample_calibration(lm.tok().encode(calib_text, true), a->c);
    }
    quant::QuantizeResult r;
    try {
      r = quant::quantize_model(lm.model, calib, a->q);
    } catch (const Error& e) {
      fail("{}: {}", lm.path, e.what());
    }

    nlohmann::json settings = {{"method", a->q.method}, {"bits", a->q.lcq.bits},   {"group", a->q.lcq.group},
                               {"rank", a->q.method == "rtn" ? 1 : a->q.lcq.rank},
                               {"init", a->q.lcq.init}, {"epochs", a->q.engine.epochs},
                               {"dq_bits", a->q.lcq.dq_bits}, {"dq_group", a->q.lcq.dq_group},
                               {"calib", a->calib},     {"nsamples", calib.defined() ? a->c.nsamples : 0},
                               {"seqlen", calib.defined() ? a->c.seqlen : 0}, {"seed", a->c.seed}};
    nlohmann::json meta = {{"general.source", lm.path}, {"lcq.method", a->q.method}, {"lcq.settings", settings.dump()}};
    quant::write_quantized_model(a->out, lm.model, lm.tok().vocab(), r, meta);
    if (!a->export_fake.empty()) {
      const io::DType t = a->export_type == "f32" ? io::DType::F32 : a->export_type == "bf16" ? io::DType::BF16 : io::DType::F16;
      quant::write_dense_model(a->export_fake, lm.model, lm.tok().vocab(), t, {{"general.source", a->out}});
    }

    nlohmann::json j = quant::to_json(r);
    j["model"] = lm.path;
    j["output"] = a->out;
    j["settings"] = settings;
    j["peak_rss_bytes"] = peak_rss_bytes();
    if (!a->export_fake.empty()) j["export_fake"] = a->export_fake;
    if (opts->json) return print_json(j);
    for (const auto& b : r.blocks) {
      fmt::print("block {:>3}  loss {:.4e} -> {:.4e} (trained {:.4e})  {:.1f} s\n", b.layer, b.init_loss, b.final_loss,
                 b.trained_loss, b.seconds);
      for (const auto& l : b.layers)
        fmt::print("    {:<22} rel. error {:.4e} -> {:.4e}  {:.3f} bits/weight\n", l.name, l.init_error, l.final_error,
                   l.bits_per_weight);
    }
    fmt::print("wrote {}: {} layers, {} weights at {:.4f} bits/weight; {:.1f} s, peak memory {}\n", a->out,
               r.layers.size(), human_count(double(r.quantized_weights)), r.bits_per_weight, r.seconds,
               human_bytes(double(peak_rss_bytes())));
  });
}

}  // namespace lcq::cli
