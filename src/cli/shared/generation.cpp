#include "generation.h"

#include "lcq/core/error.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <limits>

namespace lcq::cli {

CLI::Validator finite_range(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        const char* begin = s.c_str();
        char* end = nullptr;
        const double v = std::strtod(begin, &end);
        if (end == begin || *end != '\0') return fmt::format("'{}' is not a number", s);
        if (!std::isfinite(v)) return fmt::format("{} is not a finite number", s);
        if (v < lo || v > hi) return fmt::format("{} is not in [{}, {}]", s, lo, hi);
        return "";
      },
      fmt::format("FLOAT in [{}, {}]", lo, hi));
}

CLI::Validator non_negative() { return CLI::Range(int64_t(0), std::numeric_limits<int64_t>::max()); }

void GenerateArgs::add_to(CLI::App& cmd) {
  cmd.add_option("-p,--prompt", prompt, "Prompt text (empty: start from BOS)");
  cmd.add_option("-n,--max-tokens", n, "Number of tokens to generate")->check(CLI::Range(1, 1 << 20));
  cmd.add_option("--temp", temp, "Sampling temperature; 0 = greedy")->check(finite_range(0, 100));
  cmd.add_option("--top-k", top_k, "Sample among the k most likely tokens (0 = all)")->check(CLI::Range(0, 1 << 24));
  cmd.add_option("--top-p", top_p, "Nucleus sampling mass")->check(finite_range(0, 1));
  cmd.add_option("--seed", seed, "Random seed for sampling");
  cmd.add_flag("--ignore-eos", ignore_eos, "Keep generating after the end-of-sequence token");
}

std::vector<int> GenerateArgs::prompt_tokens(const tokenizer::Tokenizer& tok, const std::string& model) const {
  std::vector<int> ids = tok.encode(prompt, /*add_special=*/true);
  if (ids.empty()) {
    LCQ_CHECK(tok.bos_id() >= 0, "{}: the prompt is empty and the model has no BOS token to start from", model);
    ids.push_back(tok.bos_id());
  }
  return ids;
}

run::GenerateOptions GenerateArgs::options(const tokenizer::Tokenizer& tok) const {
  run::GenerateOptions go;
  go.max_new_tokens = n;
  go.sampler = {temp, top_k, top_p, seed};
  go.stop_token = ignore_eos ? -1 : tok.eos_id();
  return go;
}

GenerationPrinter::GenerationPrinter(const tokenizer::Tokenizer& tok, const GenerateArgs& args,
                                     const std::vector<int>& prompt, const run::GenerateOptions& go, bool json,
                                     bool quiet)
    : tok_(tok), args_(args), prompt_(prompt), stop_token_(go.stop_token), prev_(prompt.back()), json_(json),
      quiet_(quiet) {
  if (!json_) std::fputs(args_.prompt.c_str(), stdout);
}

void GenerationPrinter::on_token(int id) {
  const std::string piece = id == stop_token_ ? "" : tok_.decode_token(prev_, id);
  prev_ = id;
  text_ += piece;
  if (!json_) {
    std::fputs(piece.c_str(), stdout);
    std::fflush(stdout);
  }
}

void GenerationPrinter::finish(const run::GenerateResult& res) {
  const double prefill_tps = double(prompt_.size()) / res.prefill_seconds;
  const double decode_tps = res.tokens.size() > 1 ? double(res.tokens.size() - 1) / res.decode_seconds : 0.0;
  if (json_) {
    std::cout << nlohmann::json{{"prompt", args_.prompt},
                                {"prompt_tokens", prompt_},
                                {"text", text_},
                                {"tokens", res.tokens},
                                {"prefill_tokens_per_second", prefill_tps},
                                {"decode_tokens_per_second", decode_tps}}
                     .dump(2)
              << std::endl;
  } else {
    std::fputs("\n", stdout);
    if (!quiet_)
      fmt::print(stderr, "[{} prompt tokens at {:.1f} tok/s, {} generated at {:.1f} tok/s]\n", prompt_.size(),
                 prefill_tps, res.tokens.size(), decode_tps);
  }
}

}  // namespace lcq::cli
