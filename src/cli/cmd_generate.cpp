// lcq generate MODEL -p TEXT: continue a prompt, streaming tokens to stdout.
#include "common.h"

#include "lcq/core/error.h"
#include "lcq/model/generate.h"

#include <fmt/format.h>

#include <cstdio>

namespace lcq::cli {

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt (greedy by default)");
  auto opts = std::make_shared<ModelOptions>();
  struct Gen {
    std::string prompt;
    int n = 128;
    float temp = 0.0f, top_p = 1.0f;
    int top_k = 0;
    uint64_t seed = 0;
    bool ignore_eos = false;
  };
  auto g = std::make_shared<Gen>();
  opts->add_to(*cmd);
  cmd->add_option("-p,--prompt", g->prompt, "Prompt text (empty: start from BOS)");
  cmd->add_option("-n,--max-tokens", g->n, "Number of tokens to generate")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temp", g->temp, "Sampling temperature; 0 = greedy")->check(finite_range(0, 100));
  cmd->add_option("--top-k", g->top_k, "Sample among the k most likely tokens (0 = all)")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", g->top_p, "Nucleus sampling mass")->check(finite_range(0, 1));
  cmd->add_option("--seed", g->seed, "Random seed for sampling");
  cmd->add_flag("--ignore-eos", g->ignore_eos, "Keep generating after the end-of-sequence token");
  cmd->footer("Example: lcq generate model.gguf -p \"The capital of France is\" -n 32");
  cmd->callback([opts, g] {
    model::LoadedModel lm = opts->load();
    const auto& tok = lm.tok();
    std::vector<int> prompt = tok.encode(g->prompt, /*add_special=*/true);
    if (prompt.empty()) {
      LCQ_CHECK(tok.bos_id() >= 0, "{}: the prompt is empty and the model has no BOS token to start from", lm.path);
      prompt.push_back(tok.bos_id());
    }
    model::GenerateOptions go;
    go.max_new_tokens = g->n;
    go.sampler = {g->temp, g->top_k, g->top_p, g->seed};
    go.stop_token = g->ignore_eos ? -1 : tok.eos_id();
    std::string text;
    int prev = prompt.back();
    if (!opts->json) std::fputs(g->prompt.c_str(), stdout);
    auto res = model::generate(lm.model, prompt, go, [&](int id) {
      std::string piece = id == go.stop_token ? "" : tok.decode_token(prev, id);
      prev = id;
      text += piece;
      if (!opts->json) {
        std::fputs(piece.c_str(), stdout);
        std::fflush(stdout);
      }
    });
    const double prefill_tps = double(prompt.size()) / res.prefill_seconds;
    const double decode_tps = res.tokens.size() > 1 ? double(res.tokens.size() - 1) / res.decode_seconds : 0.0;
    if (opts->json) {
      print_json({{"prompt", g->prompt},
                  {"prompt_tokens", prompt},
                  {"text", text},
                  {"tokens", res.tokens},
                  {"prefill_tokens_per_second", prefill_tps},
                  {"decode_tokens_per_second", decode_tps}});
    } else {
      std::fputs("\n", stdout);
      if (!opts->quiet)
        fmt::print(stderr, "[{} prompt tokens at {:.1f} tok/s, {} generated at {:.1f} tok/s]\n", prompt.size(),
                   prefill_tps, res.tokens.size(), decode_tps);
    }
  });
}

}  // namespace lcq::cli
