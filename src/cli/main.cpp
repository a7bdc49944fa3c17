// lcq: low-bit post-training quantization of LLMs with learned low-rank codebooks.
#include "common.h"

#include "lcq/core/error.h"

#include <c10/util/Exception.h>

#include <cstdio>

#include <malloc.h>

int main(int argc, char** argv) {
#ifdef M_MMAP_MAX
  // Training and evaluation free and re-allocate the same large activation tensors at every
  // step. glibc maps blocks above its mmap threshold (at most 32 MiB; one step's attention
  // scores are larger) and unmaps them on free, so each step page-faulted them in again
  // (measured: 14 % of an LCQ training run in the kernel). Serve every block from the heap
  // and do not trim it, so freed blocks are reused.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  CLI::App app{
      "lcq - accurate low-bit quantization of LLMs (LCQ low-rank codebooks, LRQ, and the rank-one baselines).\n"
      "Models: GGUF files, Hugging Face directories (safetensors), llama2.c checkpoints.\n"
      "Run `lcq demo` for a tour, or `lcq COMMAND --help` for one command.",
      "lcq"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "lcq 0.1.0");
  lcq::cli::register_info(app);
  lcq::cli::register_generate(app);
  lcq::cli::register_perplexity(app);
  lcq::cli::register_eval(app);
  lcq::cli::register_quantize(app);
  lcq::cli::register_compare(app);
  lcq::cli::register_convert(app);
  lcq::cli::register_bench(app);
  lcq::cli::register_demo(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // Usage errors: one line like every other error, exit code 2 as is customary.
    std::fprintf(stderr, "lcq: error: %s (see --help)\n", e.what());
    return 2;
  } catch (const lcq::Error& e) {
    std::fprintf(stderr, "lcq: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "lcq: error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "lcq: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lcq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
