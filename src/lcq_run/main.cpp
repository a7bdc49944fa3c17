// lcq-run: text generation on the lean runtime, without libtorch. The same kernels and decode
// path as `lcq generate`, in a binary whose resident memory is the model's and not the
// framework's (libtorch and what it links take ~150 MiB before main() runs). LLaMA-family
// models without activation quantization; prompts go through the decode path a token at a time.
#include "../cli/shared/generation.h"
#include "lcq/core/error.h"
#include "lcq/core/progress.h"
#include "lcq/io/model_source.h"
#include "lcq/run/generate.h"

#include <omp.h>

#include <cstdio>

namespace {

struct Args {
  std::string model, tokenizer, kernel = "auto";
  lcq::cli::GenerateArgs gen;
  int threads = 0;
  bool json = false, quiet = false;
};

void run(const Args& a) {
  if (a.threads > 0) omp_set_num_threads(a.threads);
  lcq::io::LoadOptions lo;
  lo.tokenizer_path = a.tokenizer;
  const lcq::io::ModelSource src = lcq::io::load_model_source(a.model, lo);
  LCQ_CHECK(!src.vocab.empty(), "{}: no tokenizer found in or beside the model; pass --tokenizer FILE", a.model);
  const auto tok = lcq::tokenizer::make_tokenizer(src.vocab);
  const std::vector<int> prompt = a.gen.prompt_tokens(*tok, a.model);
  const int64_t total = int64_t(prompt.size()) + a.gen.n;

  lcq::run::LoadOptions opts;
  opts.kernel = lcq::kernels::parse_kernel_choice(a.kernel);
  opts.positions = total;  // the RoPE tables and the cache hold what this generation needs
  lcq::run::Weights w = lcq::run::load_weights(src, opts);  // checks the config before the cache is sized by it
  lcq::run::KVCache cache(w.config, total);
  lcq::run::Decoder decoder(std::move(w), cache.view());

  const lcq::run::GenerateOptions go = a.gen.options(*tok);
  lcq::cli::GenerationPrinter out(*tok, a.gen, prompt, go, a.json, a.quiet);
  out.finish(lcq::run::generate(decoder, prompt, go, [&](int id) { out.on_token(id); }));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "lcq-run - generate text from a model on lcq's kernels, without libtorch: the same decode path\n"
      "and results as `lcq generate` in a small process (LLaMA-family models, GGUF / safetensors /\n"
      "llama2.c, LCQ-quantized or not; no activation quantization). Prompts run a token at a time.",
      "lcq-run"};
  app.set_version_flag("--version", "lcq-run 0.1.0");
  Args a;
  app.add_option("model", a.model, "Model: a GGUF file (e.g. from lcq quantize), a Hugging Face directory, a llama2.c file")
      ->required();
  a.gen.add_to(app);
  app.add_option("-t,--threads", a.threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
  app.add_option("--kernel", a.kernel, "Kernel of packed LCQ layers, as in `lcq generate --help`")
      ->check(CLI::IsMember(lcq::kernels::kernel_choice_names()))
      ->capture_default_str();
  app.add_option("--tokenizer", a.tokenizer, "Tokenizer file when the model carries none");
  app.add_flag("--json", a.json, "Print machine-readable JSON on stdout");
  app.add_flag("-q,--quiet", a.quiet, "No progress bar or speed line");
  app.footer("Example: lcq-run model.gguf -p \"The capital of France is\" -n 32");
  try {
    app.parse(argc, argv);
    lcq::Progress::set_globally_enabled(!a.quiet && !a.json);
    run(a);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "lcq-run: error: %s (see --help)\n", e.what());
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "lcq-run: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lcq-run: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
