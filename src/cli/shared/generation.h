// What `lcq generate` and `lcq-run` share, without libtorch: the checks of numeric options and
// the generation options, their defaults and help, and how a generation is printed.
#pragma once

#include "lcq/run/generate.h"
#include "lcq/tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace lcq::cli {

// The check of every floating-point option of every command: a finite number in [lo, hi].
// (CLI::Range lets NaN through: NaN fails both of its comparisons.)
CLI::Validator finite_range(double lo, double hi);

// The check of a count option that may be 0 (CLI::NonNegativeNumber names DBL_MAX in its
// message, 300 digits).
CLI::Validator non_negative();

// -p, -n, --temp, --top-k, --top-p, --seed, --ignore-eos.
struct GenerateArgs {
  std::string prompt;
  int n = 128;
  float temp = 0.0f, top_p = 1.0f;
  int top_k = 0;
  uint64_t seed = 0;
  bool ignore_eos = false;

  void add_to(CLI::App& cmd);
  // The prompt's tokens (BOS alone for an empty prompt); `model` names the file in errors.
  std::vector<int> prompt_tokens(const tokenizer::Tokenizer& tok, const std::string& model) const;
  run::GenerateOptions options(const tokenizer::Tokenizer& tok) const;
};

// Streams a generation's text to stdout (unless json) and prints its summary: the JSON object,
// or the speed line on stderr (unless quiet).
class GenerationPrinter {
 public:
  GenerationPrinter(const tokenizer::Tokenizer& tok, const GenerateArgs& args, const std::vector<int>& prompt,
                    const run::GenerateOptions& go, bool json, bool quiet);
  void on_token(int id);
  void finish(const run::GenerateResult& res);

 private:
  const tokenizer::Tokenizer& tok_;
  const GenerateArgs& args_;
  const std::vector<int>& prompt_;
  int stop_token_, prev_;
  bool json_, quiet_;
  std::string text_;
};

}  // namespace lcq::cli
