// lcq generate MODEL -p TEXT: continue a prompt, streaming tokens to stdout.
#include "common.h"

#include "lcq/model/generate.h"

namespace lcq::cli {

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate text from a prompt (greedy by default)");
  auto opts = std::make_shared<ModelOptions>();
  auto g = std::make_shared<GenerateArgs>();
  opts->add_to(*cmd);
  g->add_to(*cmd);
  cmd->footer("Example: lcq generate model.gguf -p \"The capital of France is\" -n 32\n"
              "(lcq-run runs the same decode path in a process without libtorch.)");
  cmd->callback([opts, g] {
    model::LoadedModel lm = opts->load();
    const auto& tok = lm.tok();
    const std::vector<int> prompt = g->prompt_tokens(tok, lm.path);
    const model::GenerateOptions go = g->options(tok);
    GenerationPrinter out(tok, *g, prompt, go, opts->json, opts->quiet);
    out.finish(model::generate(lm.model, prompt, go, [&](int id) { out.on_token(id); }));
  });
}

}  // namespace lcq::cli
