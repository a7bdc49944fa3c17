// lcq quantize MODEL -o OUT.gguf: LCQ, LRQ/FlexRound, OmniQuant, GPTQ, AWQ or RTN quantization of every linear layer.
#include "common.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/core/paths.h"
#include "lcq/model/act_quant.h"
#include "lcq/quant/act_calibration.h"
#include "lcq/quant/allocation.h"
#include "lcq/quant/calibration.h"
#include "lcq/quant/quantize.h"
#include "lcq/quant/rotation.h"
#include "lcq/quant/streamed.h"

#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fmt/format.h>
#include <cctype>

namespace lcq::cli {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct QuantizeArgs {
  std::string out, calib, export_fake, export_type = "f16", report;
  quant::CalibrationOptions c;
  quant::QuantizeOptions q = quant::default_recipe();  // what runs when no option says otherwise
  bool seqlen_given = false, epochs_given = false, embed_bits_given = false, init_given = false;
  double smoothquant = 0;  // alpha; 0 = off
  bool resume = false;
  std::string offload, max_memory;
  std::string target_size, target_bits = "2,3,4", target_embed_bits = "4,6,8";
  std::string target_measure = quant::to_string(quant::AllocationOptions().measure);
  double target_bpw = 0;
  int64_t target_samples = 4;
};

// A size with an optional K, M, G or T suffix (powers of 1024), which may end in B, or B alone
// (bytes); without one, in units of 1024^unit_power bytes. `option` names it in errors.
double parse_size(const std::string& s, const std::string& option, int unit_power, const std::string& examples) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = s.substr(used);
  const bool bytes = unit == "B" || unit == "b";
  if (unit.size() == 2 && (unit[1] == 'B' || unit[1] == 'b')) unit.pop_back();
  const std::string units = "KMGT";
  const size_t power = bytes          ? 0
                       : unit.empty() ? size_t(unit_power)
                       : unit.size() == 1 ? units.find(char(std::toupper(unit[0]))) + 1
                                          : 0;
  LCQ_CHECK(used > 0 && std::isfinite(v) && v > 0 && (bytes || unit.empty() || power > 0),
            "{} must be a size such as {}, got '{}'", option, examples, s);
  return v * std::pow(1024.0, double(power));
}

}  // namespace

void register_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize", "Quantize a model's linear layers: LCQ (learned low-rank codebooks), LRQ, FlexRound, OmniQuant, GPTQ, AWQ or RTN");
  auto opts = std::make_shared<ModelOptions>();
  auto a = std::make_shared<QuantizeArgs>();
  opts->add_to(*cmd, ModelOptions::Use::kQuantize);
  cmd->add_option("-o,--output", a->out, "Output GGUF file (written atomically)")->required();
  add_choice(*cmd, "--method", a->q.method, quant::method_names(), quant::parse_method,
             "lcq: learned low-rank codebooks on block reconstruction; rtn: round to nearest; gptq: rounding\n"
             "with Hessian-based error feedback; awq: activation-aware scales folded into the previous\n"
             "operation, clipping, then RTN; omniquant: learned weight clipping; flexround: learned rounding\n"
             "by element-wise division; lrq: flexround with low-rank scales. All but lcq store rank-1 grids");
  cmd->add_option("--bits", a->q.lcq.bits, "Index bits per weight (codebook of 2^bits entries)")->capture_default_str();
  cmd->add_option("--group", a->q.lcq.group, "Weights per group (consecutive input columns; the last may be shorter)")
      ->capture_default_str();
  cmd->add_option("--rank", a->q.lcq.rank, "Codebook rank r (1 = a uniform grid)")->capture_default_str();
  add_choice(*cmd, "--init", a->q.lcq.init, quant::lcq_init_names(), quant::parse_lcq_init,
             "The rank-one start: rtn (min-max), mse (clipping search), wmse (the clipping search with each\n"
             "input column's error weighted by its mean square on the calibration text, as llama.cpp's imatrix\n"
             "does; lcq, flexround and lrq; mse without --calib), or, for lcq, the result of gptq or awq on each\n"
             "block (their --gptq-*/--awq-* options apply); training starts from it. Default: gptq for lcq\n"
             "(on the wmse grid, in act-order), wmse for the others")
      ->each([a](const std::string&) { a->init_given = true; });
  cmd->add_option("--init-from", a->q.init_from,
                  "lcq: start from the rank-one layers of this quantized model of the same model, bits and group\n"
                  "(e.g. the output of --method flexround); its codes are kept unless --init-codes nearest")
      ->check(CLI::ExistingFile);
  add_choice(*cmd, "--init-codes", a->q.lcq.start_codes, quant::start_codes_names(), quant::parse_start_codes,
             "lcq with --init gptq|awq or --init-from: keep (train the codebook on the start's codes, stored as they are)\n"
             "or nearest (re-assign every weight to its nearest entry, as plain LCQ)");
  add_choice(*cmd, "--codebook-grad", a->q.lcq.gradient, quant::codebook_gradient_names(),
             quant::parse_codebook_gradient,
             "lcq: gradient through the nearest-entry assignment: gather (each entry gets the gradients of the\n"
             "weights assigned to it) or ste (plus a straight-through term for the rounding, as LSQ's)");
  cmd->add_option("--epochs", a->q.engine.epochs,
                  "Passes over the calibration set per block (default: lcq 2, measured to generalize better than\n"
                  "the paper's 10; omniquant 20 (40 below 3 bits), flexround and lrq 20, their papers')")
      ->each([a](const std::string&) { a->epochs_given = true; });
  cmd->add_option("--batch-size", a->q.engine.batch_size, "Calibration samples per Adam step");
  cmd->add_option("--loss-samples", a->q.engine.loss_samples,
                  "Calibration samples (the first ones) on which each block's reported losses are measured; "
                  "0 = all (training always uses all)");
  add_choice(*cmd, "--train-dtype", a->q.engine.train_dtype, quant::train_dtype_names(), quant::parse_train_dtype,
             "Precision of the block training steps' matrix products: fp32, bf16 (about 3x faster on CPUs\n"
             "with AVX512-BF16 or AMX; the quantizer, Adam, targets and reported losses stay fp32), or auto\n"
             "(bf16 where the CPU has those instructions, else fp32)");
  // Learning rates above 1 only make Adam diverge: such a run is refused here, not trained into NaN.
  cmd->add_option("--lr-scale", a->q.lr_scale, "Adam learning rate of the reparameterized S and B")
      ->check(finite_range(0, 1));
  cmd->add_option("--lr-codebook", a->q.lr_codebook, "Adam learning rate of V")->check(finite_range(0, 1));
  cmd->add_option("--lr", a->q.lr, "omniquant, flexround, lrq: Adam learning rate (default 1e-2 for omniquant, 3e-3 else)")
      ->check(finite_range(0, 1));
  cmd->add_option("--lrq-rank", a->q.flexround.lrq_rank, "lrq: rank of the low-rank scales (0 = --lrq-rank-frac)");
  cmd->add_option("--lrq-rank-frac", a->q.flexround.lrq_rank_frac,
                  "lrq: rank as a fraction of min(rows, cols) of each layer (default 0.25, as the official 1024 of 4096)")
      ->check(finite_range(0, 1));
  add_choice(*cmd, "--schedule", a->q.engine.schedule, quant::schedule_names(), quant::parse_schedule,
             "Learning-rate schedule: cosine (to 0) or constant");
  add_choice(*cmd, "--loss", a->q.engine.loss, quant::loss_names(), quant::parse_loss,
             "Block training loss: mse (output MSE, the papers') or token-relative (each position's error\n"
             "relative to its own norm; for models whose first position carries a massive activation)");
  cmd->add_option("--embed-bits", a->q.embedding.bits,
                  "Bits of the token embedding and output head, quantized as rank-one codebooks whose grids\n"
                  "minimise the error weighted by the head's input energy on the calibration text (0 = keep\n"
                  "them fp16). With a size target and no --embed-bits, the width is allocated (--target-embed-bits)")
      ->capture_default_str()
      ->each([a](const std::string&) { a->embed_bits_given = true; });
  cmd->add_option("--embed-group", a->q.embedding.group, "Weights per group of the embedding and head")
      ->capture_default_str();
  add_choice(*cmd, "--embed-rounding", a->q.embedding.rounding, quant::embedding_rounding_names(),
             quant::parse_embedding_rounding,
             "How the head's (and tied embedding's) weights take their grid's entries: nearest, or gptq\n"
             "(error feedback on the head's calibration inputs: the head's output error, not each weight's,\n"
             "is minimised)");
  cmd->add_option("--dq-bits", a->q.lcq.dq_bits, "Double quantization of S and B (0 = keep them f32)");
  cmd->add_option("--dq-group", a->q.lcq.dq_group, "Groups per double-quantization block");
  cmd->add_option("--gptq-damp", a->q.gptq.damp, "gptq: dampening added to H's diagonal, as a fraction of its mean")
      ->check(finite_range(0, 100));
  cmd->add_option("--gptq-block", a->q.gptq.block, "gptq: columns per lazy batch update (speed only)");
  cmd->add_flag("--act-order,!--no-act-order", a->q.gptq.act_order,
                "gptq: quantize columns in order of decreasing activation energy (default on; the reference\n"
                "GPTQ is --gptq-grid rtn --no-act-order)");
  add_choice(*cmd, "--gptq-groups", a->q.gptq.groups, quant::gptq_groups_names(), quant::parse_gptq_groups,
             "gptq: static = each group's grid from the original weights, before the sweep (works with "
             "--dq-bits and --act-order); lazy = from the updated weights when the sweep reaches the group "
             "(the reference's default; needs --dq-bits 0)");
  add_choice(*cmd, "--gptq-grid", a->q.gptq.grid, quant::gptq_grid_names(), quant::parse_gptq_grid,
             "gptq: the static groups' grid: rtn (min-max, the reference's), mse (the per-group clipping\n"
             "search) or wmse (that search with each column's error weighted by its input energy, diag(H))");
  cmd->add_flag("--true-sequential,!--no-true-sequential", a->q.gptq.true_sequential,
                "gptq: within a block quantize q,k,v -> o -> gate,up -> down, each from the inputs the quantized "
                "earlier layers produce (default on); off: all from the full-precision block");
  cmd->add_option("--awq-grid", a->q.awq.grid, "awq: scale exponents alpha = k / N, k < N, searched per site");
  cmd->add_option("--awq-clip-grid", a->q.awq.clip_grid, "awq: clipping ranges max|w| * (1 - k / N)...");
  cmd->add_option("--awq-max-shrink", a->q.awq.max_shrink, "awq: ... for k < N * this (0 = no clipping)")
      ->check(finite_range(0, 1));
  cmd->add_flag("!--no-awq-clip", a->q.awq.clip, "awq: skip the clipping search");
  cmd->add_flag("--awq-clip-qk", a->q.awq.clip_qk, "awq: also clip q and k (the reference does not)");
  add_choice(*cmd, "--awq-inputs", a->q.awq.inputs, quant::awq_inputs_names(), quant::parse_awq_inputs,
             "awq: activation statistics from the full-precision model (fp, the reference) or after the "
             "already-quantized blocks (quantized)");
  cmd->add_option("--awq-search-samples", a->q.awq.search_samples,
                  "awq: calibration samples for the attention and MLP output errors of the scale search (0 = all)");
  cmd->add_option("--calib", a->calib, "Calibration text file (required for lcq, gptq and awq)");
  cmd->add_option("--nsamples", a->c.nsamples, "Calibration windows")->capture_default_str();
  cmd->add_option("--seqlen", a->c.seqlen, "Tokens per calibration window (capped by the model's context)")
      ->capture_default_str()
      ->each([a](const std::string&) { a->seqlen_given = true; });
  cmd->add_option("--seed", a->c.seed, "Seed for calibration windows and initialization");
  cmd->add_option("--export-fake", a->export_fake,
                  "Also write the dequantized weights as an ordinary model (.gguf file or HF directory)");
  cmd->add_option("--export-type", a->export_type, "Type of --export-fake weights")
      ->check(CLI::IsMember(io::float_type_names()))
      ->capture_default_str();
  cmd->add_option("--smoothquant", a->smoothquant,
                  "Before quantizing, migrate activation outliers into the weights with SmoothQuant at this alpha\n"
                  "(LRQ uses 0.8 for W8A8/W4A8; 0 = off). Needs --calib")
      ->check(finite_range(0, 1));
  cmd->add_flag("--rotate", a->q.rotate,
                "Before quantizing, rotate the residual stream (LLaMA-family models): the norms' weights are folded\n"
                "into the linears, which are multiplied by a random orthogonal matrix (Hadamard x random, --seed) on\n"
                "the stream's side; the same function, with the inputs' outlier channels spread over every group.\n"
                "The file keeps the rotation's factors (a few KB); both runtimes apply it. Holds the model in memory");
  cmd->add_flag("--resume", a->resume,
                "Continue an interrupted run of this command (Ctrl-C, kill, power loss) after its last finished block;\n"
                "the finished blocks are kept in OUT.lcq-resume/ while a run lasts. The output is the same bytes\n"
                "an uninterrupted run writes");
  cmd->add_option("--offload-activations", a->offload,
                  "Keep the calibration activations in files in this directory (mapped, paged by the kernel)\n"
                  "instead of memory: for calibration sets larger than the memory")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--max-memory", a->max_memory,
                  "Memory the run may use (e.g. 6G; default: MemAvailable of /proc/meminfo): a run estimated to\n"
                  "need more is refused before any work, naming the option that would make it fit");
  cmd->add_option("--target-size", a->target_size,
                  "A size target instead of one bit width: the output file's size limit in MiB (or with a K, M or G\n"
                  "suffix). Each block linear gets the width of --target-bits that buys the most accuracy per byte,\n"
                  "from each layer's measured sensitivity on the calibration text; the file never exceeds the\n"
                  "target (lcq, rtn and gptq; see `lcq info --allocation`)");
  cmd->add_option("--target-bpw", a->target_bpw,
                  "The same as a size: the file's bits over the model's parameter count (embedding, head and norms\n"
                  "included), e.g. 3.0")
      ->check(finite_range(0, 64));
  cmd->add_option("--target-bits", a->target_bits, "Bit widths a size target chooses from, ascending (default 2,3,4)");
  cmd->add_option("--target-embed-bits", a->target_embed_bits,
                  "Bit widths a size target chooses from for the token embedding and head (default 4,6,8),\n"
                  "unless --embed-bits fixes them");
  cmd->add_option("--target-measure", a->target_measure,
                  "How a size target measures each layer's sensitivity, one layer quantized at a time: model (KL\n"
                  "divergence of the next-token distributions from the full-precision model's; one model forward\n"
                  "per layer and width), scaled (the layer's block output error times its block's KL per unit of\n"
                  "block error, one model forward per block; default) or block (the block output error alone)")
      ->check(CLI::IsMember(quant::sensitivity_measure_names()));
  cmd->add_option("--target-samples", a->target_samples,
                  "Calibration samples (the first ones) each layer's sensitivity is measured on (default 4)");
  add_report_option(*cmd, a->report);
  cmd->footer(
      "With no other option, `lcq quantize model.gguf -o model-lcq.gguf --calib FILE` runs the recipe that\n"
      "measured best on SmolLM2 (BENCHMARKS.md): LCQ rank 2, 4 bits in groups of 64, started from GPTQ on\n"
      "the activation-weighted grid, 2 epochs on 128 x 512 calibration tokens, the embedding and head at\n"
      "6 bits rounded by GPTQ on the head's inputs.\n"
      "At most the bytes of llama.cpp's IQ4_NL --imatrix file of SmolLM2-135M, widths chosen per layer among\n"
      "3/4/5 bits and for the embedding (on SmolLM2: lower perplexity than that file, BENCHMARKS.md):\n"
      "  lcq quantize model.gguf -o model-lcq.gguf --target-size 91726688B --target-bits 3,4,5 \\\n"
      "      --calib ../shared/data/ptb/ptb.valid.txt\n"
      "One width for every layer, 2 bits in groups of 128, the paper's 10 epochs:\n"
      "  lcq quantize model.gguf -o model-lcq-w2.gguf --bits 2 --group 128 --epochs 10 \\\n"
      "      --calib ../shared/data/ptb/ptb.valid.txt\n"
      "A size target of 3 bits per parameter overall (mixed 2/3/4 bits, 4-bit embedding):\n"
      "  lcq quantize model.gguf -o model-lcq-3bpw.gguf --target-bpw 3 --embed-bits 4 \\\n"
      "      --calib ../shared/data/ptb/ptb.valid.txt\n"
      "The baselines take the same calibration options, e.g.\n"
      "  lcq quantize model.gguf -o model-gptq-w3.gguf --method gptq --bits 3 --group 128 \\\n"
      "      --calib ../shared/data/ptb/ptb.valid.txt\n"
      "  lcq quantize model.gguf -o model-awq-w3.gguf --method awq --bits 3 --group 128 \\\n"
      "      --calib ../shared/data/ptb/ptb.valid.txt\n"
      "The output runs in every command: lcq perplexity model-lcq.gguf --text FILE");
  cmd->callback([opts, a] {
    // Everything that can be checked without the model is checked before any work.
    a->q.engine.seed = a->c.seed;
    a->q.embedding.dq_bits = a->q.lcq.dq_bits;  // the embedding's group parameters are stored like the layers'
    a->q.embedding.dq_group = a->q.lcq.dq_group;
    if (!a->epochs_given) a->q.engine.epochs = quant::default_epochs(a->q.method, a->q.lcq.bits);
    if (!a->init_given)  // a file start (--init-from) is the start; its grid plays the wmse start's part
      a->q.lcq.init = a->q.init_from.empty() ? quant::default_init(a->q.method) : quant::LcqInit::kWmse;
    a->q.engine.progress = !opts->quiet && !opts->json;
    quant::validate(a->q);
    LCQ_CHECK(!a->out.empty(), "-o: the output path is empty");
    LCQ_CHECK(ends_with(a->out, ".gguf"), "{}: the output must be a .gguf file", a->out);
    LCQ_CHECK(!a->seqlen_given || a->c.seqlen >= 2, "--seqlen must be >= 2, got {}", a->c.seqlen);
    LCQ_CHECK(a->q.method == quant::Method::kRtn || !a->calib.empty(), "--method {} needs --calib FILE", quant::to_string(a->q.method));
    LCQ_CHECK(a->c.nsamples >= 1, "--nsamples must be >= 1, got {}", a->c.nsamples);
    // Weight-activation schemes: the block training runs with the activation quantization the
    // output will be evaluated with; static ranges come from the full-precision activations.
    model::ActQuantConfig act;
    act.bits = std::max(opts->act_bits, 0);
    act.kv_bits = std::max(opts->kv_bits, 0);
    if (!opts->act_scheme.empty()) act.scheme = model::parse_act_scheme(opts->act_scheme);
    model::validate(act, "--act-bits/--act-scheme/--kv-bits");
    const bool static_act = act.bits > 0 && act.scheme == model::ActQuant::Scheme::PerTensorStatic;
    LCQ_CHECK(!static_act || !a->calib.empty(), "--act-scheme per-tensor-static needs --calib FILE to calibrate ranges");
    LCQ_CHECK(a->smoothquant == 0 || !a->calib.empty(), "--smoothquant needs --calib FILE");

    const bool targeted = !a->target_size.empty() || a->target_bpw > 0;
    LCQ_CHECK(a->target_size.empty() || a->target_bpw == 0, "--target-size and --target-bpw both set the size: give one");
    std::vector<int> target_bits, target_embed_bits;
    quant::SensitivityMeasure measure = quant::AllocationOptions().measure;
    if (targeted) {
      target_bits = quant::parse_bit_candidates(a->target_bits);
      measure = quant::parse_sensitivity_measure(a->target_measure);
      if (!a->embed_bits_given && measure != quant::SensitivityMeasure::kBlock)
        target_embed_bits = quant::parse_bit_candidates(a->target_embed_bits, "--target-embed-bits");
      for (int b : target_embed_bits)
        LCQ_CHECK(b >= 2, "--target-embed-bits: the embedding takes 2 to 8 bits, got {}", b);
      quant::check_size_target_applies(a->q);
      LCQ_CHECK(!a->calib.empty(), "a size target needs --calib FILE: each layer's sensitivity is measured on it");
      LCQ_CHECK(act.bits == 0 && act.kv_bits == 0 && a->smoothquant == 0,
                "a size target is for weight-only quantization (no --act-bits, --kv-bits or --smoothquant)");
      LCQ_CHECK(a->target_samples >= 1, "--target-samples must be >= 1, got {}", a->target_samples);
    }

    FilePlan files;
    opts->add_inputs(files);
    files.input("--calib", a->calib);
    files.input("--init-from", a->q.init_from);
    files.output_file("-o", a->out);
    add_model_output(files, "--export-fake", a->export_fake, ends_with(a->export_fake, ".gguf"));
    files.output_file("--report", a->report);
    // A size target measures every layer before quantizing any: the model is held in memory.
    const std::string obstacle =
        targeted ? (a->target_size.empty() ? "--target-bpw" : "--target-size")
                 : quant::streaming_obstacle(a->q, act, !a->export_fake.empty(), a->smoothquant > 0);
    const bool streamed = obstacle.empty();
    if (!streamed && (a->resume || !a->offload.empty()))
      throw CLI::ValidationError(fmt::format(
          "{}: quantizes a block at a time, which {} does not allow (it needs the whole model in memory)",
          a->resume ? "--resume" : "--offload-activations", obstacle));
    const std::string checkpoint = a->out + ".lcq-resume";
    if (streamed) files.output_directory("the checkpoint of -o", checkpoint, {"run.json", "state.gguf"});
    files.check();
    const double max_memory = a->max_memory.empty()
                                  ? double(available_memory_bytes())
                                  : parse_size(a->max_memory, "--max-memory", 0, "4G, 512M or 1000000 (bytes)");
    std::string calib_text;
    if (!a->calib.empty()) {
      calib_text = read_file(a->calib);
      LCQ_CHECK(!calib_text.empty(), "{}: the calibration file is empty", a->calib);
    }

    model::RuntimeOptions rt = opts->runtime();
    rt.packed = false;  // quantizers read and replace dense weights (an LCQ input is dequantized)
    rt.act_bits = 0;    // set below, from this command's options
    rt.kv_bits = 0;
    // The input is mapped; a streamed run reads one block at a time, else the model is built
    // in memory.
    io::ModelSource src = io::load_model_source(opts->path, opts->load_options());
    const std::string model_path = opts->path;
    const std::unique_ptr<tokenizer::Tokenizer> tok = model::make_model_tokenizer(src);
    LCQ_CHECK(tok != nullptr, "{}: no tokenizer found in or beside the model; pass --tokenizer FILE", model_path);
    files.input("the model's tokenizer", tok->vocab().source_path);  // e.g. a tokenizer.bin found beside it
    files.check();
    const ModelConfig config = src.config;
    if (!calib_text.empty()) {
      if (!a->seqlen_given) a->c.seqlen = std::min<int64_t>(a->c.seqlen, config.max_seq_len);
      LCQ_CHECK(a->c.seqlen <= config.max_seq_len, "--seqlen {} exceeds the model's context of {}", a->c.seqlen,
                config.max_seq_len);
    }

    uint64_t target_bytes = 0;
    if (targeted) {
      double params = 0;
      for (const io::TensorView& t : src.tensors) params += double(t.numel());
      target_bytes = uint64_t(a->target_size.empty() ? std::floor(a->target_bpw * params / 8)
                                                     : parse_size(a->target_size, "--target-size", 2,
                                                                  "90 (MiB), 85.5M, 1G or 92000000B"));
    }

    const bool rank_one = a->q.method != quant::Method::kLcq;
    const bool trained = quant::is_trained_method(a->q.method);
    nlohmann::json settings = {{"method", quant::to_string(a->q.method)}, {"bits", a->q.lcq.bits},   {"group", a->q.lcq.group},
                               {"rank", rank_one ? 1 : a->q.lcq.rank},
                               {"init", trained ? quant::to_string(a->q.lcq.init) : "rtn"},
                               {"epochs", trained ? a->q.engine.epochs : 0}, {"loss", quant::to_string(a->q.engine.loss)},
                               {"train_dtype", quant::to_string(quant::resolve_train_dtype(a->q.engine.train_dtype))},
                               {"dq_bits", a->q.lcq.dq_bits}, {"dq_group", a->q.lcq.dq_group},
                               {"embed_bits", a->q.embedding.bits}, {"embed_group", a->q.embedding.group},
                               {"embed_rounding", quant::to_string(a->q.embedding.rounding)},
                               {"calib", a->calib},     {"nsamples", !calib_text.empty() ? a->c.nsamples : 0},
                               {"seqlen", !calib_text.empty() ? a->c.seqlen : 0}, {"seed", a->c.seed},
                               {"rotate", a->q.rotate}};
    if (targeted)
      settings["target"] = {{"bytes", target_bytes},
                            {"bits", target_bits},
                            {"embed_bits", target_embed_bits},
                            {"measure", a->target_measure},
                            {"samples", a->target_samples}};
    if (a->q.method == quant::Method::kLcq && (!quant::is_grid_init(a->q.lcq.init) || !a->q.init_from.empty()))
      settings["init_codes"] = quant::to_string(a->q.lcq.start_codes);
    if (a->q.method == quant::Method::kLcq) settings["codebook_grad"] = quant::to_string(a->q.lcq.gradient);
    if (!a->q.init_from.empty()) settings["init"] = "file:" + std::filesystem::path(a->q.init_from).filename().string();
    if (trained && rank_one)  // omniquant, flexround, lrq: their Adam learning rate
      settings["lr"] = a->q.lr > 0 ? a->q.lr : quant::default_lr(a->q.method);
    if (a->q.method == quant::Method::kLrq)
      settings["lrq"] = {{"rank", a->q.flexround.lrq_rank}, {"rank_frac", a->q.flexround.lrq_rank_frac}};
    if (act.bits > 0 || act.kv_bits > 0 || a->smoothquant > 0)
      settings["activations"] = {{"bits", act.bits}, {"scheme", model::to_string(act.scheme)}, {"kv_bits", act.kv_bits},
                                 {"smoothquant", a->smoothquant}};
    if (a->q.method == quant::Method::kGptq ||
        (a->q.method == quant::Method::kLcq && a->q.lcq.init == quant::LcqInit::kGptq))
      settings["gptq"] = {{"damp", a->q.gptq.damp},
                          {"block", a->q.gptq.block},
                          {"act_order", a->q.gptq.act_order},
                          {"groups", quant::to_string(a->q.gptq.groups)},
                          {"grid", quant::to_string(a->q.gptq.grid)},
                          {"true_sequential", a->q.gptq.true_sequential}};
    if (a->q.method == quant::Method::kAwq)
      settings["awq"] = {{"grid", a->q.awq.grid},           {"clip", a->q.awq.clip},
                         {"clip_grid", a->q.awq.clip_grid}, {"max_shrink", a->q.awq.max_shrink},
                         {"clip_qk", a->q.awq.clip_qk},     {"inputs", quant::to_string(a->q.awq.inputs)},
                         {"search_samples", a->q.awq.search_samples}};
    nlohmann::json meta = {{"general.source", model_path}, {"lcq.method", quant::to_string(a->q.method)}, {"lcq.settings", settings.dump()}};
    meta.update(model::act_quant_metadata(act));

    torch::Tensor calib;
    if (!calib_text.empty()) {
      a->c.path = a->calib;
      calib = quant::sample_calibration(tok->encode(calib_text, true), a->c);
    }
    // The memory guard, before any work (after the checks of the calibration settings, whose
    // messages are more precise).
    {
      quant::QuantizeOptions prepared = a->q;
      quant::prepare(prepared, !calib_text.empty());
      quant::MemoryEstimate need = quant::estimate_memory(config, calib_text.empty() ? 0 : a->c.nsamples, a->c.seqlen,
                                                          prepared, !a->offload.empty());
      if (!streamed) {  // the whole model in f32 (twice with --export-fake)
        double params = 0;
        for (const io::TensorView& t : src.tensors) params += double(t.numel());
        need.other += params * 4 * (a->export_fake.empty() ? 1 : 2);
      }
      if (max_memory > 0)
        try {
          quant::check_memory(need, max_memory,
                              a->max_memory.empty() ? "MemAvailable; --max-memory sets another limit" : "--max-memory",
                              !a->offload.empty());
        } catch (const Error& e) {
          fail("{}: {}{}", model_path, e.what(),
               streamed ? "" : fmt::format(" (the model is held in memory because of {})", obstacle));
        }
    }

    quant::QuantizeResult r;
    quant::Allocation allocation;
    if (streamed) {
      quant::StreamOptions so;
      so.checkpoint_dir = checkpoint;
      so.resume = a->resume;
      so.offload_dir = a->offload;
      so.act = act;
      // What makes the result: the settings, the inputs' bytes, and the thread count (the
      // order of floating-point sums in libtorch's parallel loops depends on it).
      model::set_threads(rt.threads);
      so.fingerprint = nlohmann::json{{"settings", settings},
                                      {"act", model::act_quant_metadata(act)},
                                      {"threads", torch::get_num_threads()},
                                      {"dtype", opts->dtype},
                                      {"model", content_fingerprint(model_path)},
                                      {"tokenizer", tok->vocab().source_path.empty()
                                                        ? std::string()
                                                        : content_fingerprint(tok->vocab().source_path)},
                                      {"calib", a->calib.empty() ? std::string() : content_fingerprint(a->calib)}}
                           .dump();
      const tokenizer::Vocab vocab = src.vocab;
      try {
        const model::BlockLoader loader(std::move(src), rt);
        r = quant::quantize_streamed(loader, calib, a->q, so, a->out, vocab, meta);
      } catch (const Error& e) {
        fail("{}: {}", model_path, e.what());
      }
    } else {
      model::Model m = model::build_model(src, rt);
      try {
        if (a->q.rotate) quant::rotate_residual(m, a->q.engine.seed);
        if (a->smoothquant > 0) quant::smooth_quant(m, calib, a->smoothquant, a->q.engine.progress);
        if (static_act) act.static_absmax = quant::calibrate_input_absmax(m, calib, a->q.engine.progress);
        if (act.bits > 0 || act.kv_bits > 0) model::set_activation_quant(m, act);
        if (targeted) {
          quant::AllocationOptions ao;
          ao.target_bytes = target_bytes;
          ao.candidates = target_bits;
          ao.embedding_candidates = target_embed_bits;
          ao.samples = a->target_samples;
          ao.measure = measure;
          ao.progress = a->q.engine.progress;
          allocation = quant::plan_allocation(m, calib, a->q, src.vocab, meta, ao);
          quant::apply(allocation, a->q);
          meta["lcq.allocation"] = quant::to_json(allocation).dump();
        }
        r = quant::quantize_model(m, calib, a->q);
      } catch (const Error& e) {
        fail("{}: {}", model_path, e.what());
      }
      meta.update(model::act_quant_metadata(act));  // static ranges
      quant::write_quantized_model(a->out, m, src.vocab, r, meta);
      if (!a->export_fake.empty()) {
        quant::write_dense_model(a->export_fake, m, src.vocab, io::parse_float_type(a->export_type, "--export-type"),
                                 {{"general.source", a->out}});
      }
    }

    nlohmann::json j = quant::to_json(r);
    j["model"] = model_path;
    j["output"] = a->out;
    j["settings"] = settings;
    j["peak_rss_bytes"] = peak_rss_bytes();
    std::string target_line;
    if (targeted) {
      const uint64_t written = std::filesystem::file_size(a->out);
      std::vector<std::string> parts;
      for (const auto& [bits, n] : quant::linears_at_bits(allocation))
        parts.push_back(fmt::format("{} at {} bits", n, bits));
      if (quant::embedding_bits(allocation) > 0)
        parts.push_back(fmt::format("embedding at {} bits", quant::embedding_bits(allocation)));
      j["target"] = {{"bytes", target_bytes},
                     {"file_bytes", written},
                     {"estimated_bytes", allocation.other_bytes + allocation.layer_bytes},
                     {"linears_at_bits", quant::linears_at_bits(allocation)},
                     {"embedding_bits", quant::embedding_bits(allocation)}};
      target_line = fmt::format("size target {} bytes: file {} bytes ({:.2f} % of it); {}\n", target_bytes,
                                written, 100.0 * double(written) / double(target_bytes), fmt::join(parts, ", "));
      // The budget arithmetic is an upper bound of the file's size: a file above it is a bug.
      LCQ_CHECK(written <= target_bytes, "{}: internal: {} bytes exceed the size target of {}", a->out, written,
                target_bytes);
    }
    if (!a->export_fake.empty()) j["export_fake"] = a->export_fake;
    write_report(a->report, j);
    if (opts->json) return print_json(j);
    for (const auto& b : r.blocks) {
      fmt::print("block {:>3}  loss {:.4e} -> {:.4e} (trained {:.4e})  {:.1f} s\n", b.layer, b.init_loss, b.final_loss,
                 b.trained_loss, b.seconds);
      for (const auto& l : b.layers)
        fmt::print("    {:<22} rel. error {:.4e} -> {:.4e}  {:.3f} bits/weight\n", l.name, l.init_error, l.final_error,
                   l.bits_per_weight);
    }
    fmt::print("{}", target_line);
    fmt::print("wrote {}: {} layers, {} weights at {:.4f} bits/weight; {:.1f} s, peak memory {}\n", a->out,
               r.layer_count, human_count(double(r.quantized_weights)), r.bits_per_weight, r.seconds,
               human_bytes(double(peak_rss_bytes())));
  });
}

}  // namespace lcq::cli
