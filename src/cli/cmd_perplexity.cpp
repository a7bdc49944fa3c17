// lcq perplexity MODEL --text FILE: perplexity under the GPTQ or llama.cpp protocol.
#include "common.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/eval/perplexity.h"
#include "lcq/model/act_quant.h"

#include <fmt/format.h>

namespace lcq::cli {

void register_perplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand("perplexity", "Perplexity on a text file (GPTQ protocol by default)");
  auto opts = std::make_shared<ModelOptions>();
  struct Ppl {
    std::string text, reference, report;
    eval::PerplexityOptions p;
  };
  auto o = std::make_shared<Ppl>();
  opts->prompt_dtype = "f32";  // a measurement: exact unless asked otherwise
  opts->add_to(*cmd);
  cmd->add_option("--text", o->text, "Text file, tokenized as a whole")->required()->check(CLI::ExistingFile);
  cmd->add_option("--protocol", o->p.protocol,
                  "gptq: non-overlapping windows, all but the first token scored (what papers report);\n"
                  "llamacpp: 512-token windows starting with BOS, second half scored")
      ->check(CLI::IsMember({"gptq", "llamacpp"}));
  cmd->add_option("--seqlen", o->p.seqlen, "Window length (default 2048 gptq / 512 llamacpp, capped by the context)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 20));
  cmd->add_option("--batch", o->p.batch, "Windows per forward pass")->check(CLI::Range(1, 4096));
  cmd->add_option("--limit", o->p.max_windows, "Score at most this many windows (0 = all)")->check(non_negative());
  cmd->add_option("--kl-reference", o->reference, "llamacpp protocol: also report the KL divergence from this model");
  add_report_option(*cmd, o->report);
  cmd->footer("Example: lcq perplexity model.gguf --text wiki.test.raw --seqlen 2048");
  cmd->callback([opts, o] {
    FilePlan files;
    opts->add_inputs(files);
    files.input("--text", o->text);
    files.input("--kl-reference", o->reference);
    files.output_file("--report", o->report);
    files.check();
    model::LoadedModel lm = opts->load();
    files.input("the model's tokenizer", lm.tok().vocab().source_path);  // e.g. a tokenizer.bin found beside it
    files.check();
    std::string text = read_file(o->text);
    LCQ_CHECK(!text.empty(), "{}: the text file is empty", o->text);
    std::vector<int> tokens = lm.tok().encode(text, /*add_special=*/true);
    o->p.bos_id = lm.tok().bos_id();
    o->p.progress = !opts->quiet && !opts->json;
    model::LoadedModel ref;
    if (!o->reference.empty()) {
      LCQ_CHECK(o->p.protocol == "llamacpp", "--kl-reference needs --protocol llamacpp");
      model::RuntimeOptions ref_rt = opts->runtime();
      ref_rt.act_bits = 0;  // the reference runs as the file says, without requested activation quantization
      ref_rt.kv_bits = 0;
      ref = model::load_model(o->reference, {}, ref_rt);
      LCQ_CHECK(ref.model.config.vocab_size == lm.model.config.vocab_size,
                "{}: vocabulary ({}) differs from the model's ({})", o->reference, ref.model.config.vocab_size,
                lm.model.config.vocab_size);
      o->p.kl_reference = &ref.model;
    }
    eval::PerplexityResult r;
    try {
      r = eval::perplexity(lm.model, tokens, o->p);
    } catch (const Error& e) {
      fail("{} on {}: {}", lm.path, o->text, e.what());
    }
    nlohmann::json j = {{"model", lm.path},
                        {"text", o->text},
                        {"protocol", r.protocol},
                        {"perplexity", r.ppl},
                        {"mean_nll", r.mean_nll},
                        {"seqlen", r.seqlen},
                        {"windows", r.windows},
                        {"scored_tokens", r.scored_tokens},
                        {"text_tokens", r.total_tokens},
                        {"seconds", r.seconds},
                        {"tokens_per_second", r.tokens_per_second},
                        {"threads", opts->threads},
                        {"activations", model::describe(model::activation_quant(lm.model))},
                        {"peak_rss_bytes", peak_rss_bytes()},
                        {"window_nll", r.window_nll}};
    if (r.kl_mean) {
      j["kl_divergence"] = *r.kl_mean;
      j["top1_agreement"] = *r.top1_agreement;
    }
    write_report(o->report, j);
    if (opts->json) return print_json(j);
    fmt::print("perplexity {:.4f}  ({} protocol, {} windows of {}, {} tokens scored, {:.1f} tok/s, {:.1f} s, {})\n",
               r.ppl, r.protocol, r.windows, r.seqlen, r.scored_tokens, r.tokens_per_second, r.seconds,
               model::describe(model::activation_quant(lm.model)));
    if (r.kl_mean) fmt::print("KL divergence {:.6f} nats, top-1 agreement {:.2f} %\n", *r.kl_mean, 100 * *r.top1_agreement);
  });
}

}  // namespace lcq::cli
