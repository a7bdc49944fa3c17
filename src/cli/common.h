// Shared pieces of the command-line tool: options every model command takes, loading, and
// output helpers. Each command lives in its own cmd_*.cpp and registers itself in main.cpp.
#pragma once

#include "lcq/core/paths.h"
#include "lcq/model/loader.h"
#include "shared/generation.h"  // finite_range, non_negative

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace lcq::cli {

struct ModelOptions {
  std::string path;
  std::string tokenizer;
  int threads = 0;
  std::string dtype = "f32";
  bool json = false;
  bool quiet = false;
  // Activation quantization (lcq/model/act_quant.h): -1 / "" = as the file says.
  int act_bits = -1;
  std::string act_scheme;
  int kv_bits = -1;
  std::string kernel = "auto";  // kernels::kernel_choice_names()
  // Type of packed layers' prompt products: auto (bf16 where the CPU has native bf16), f32,
  // bf16. Commands that measure (perplexity, eval) default to f32 before add_to().
  std::string prompt_dtype = "auto";

  // What a command does with its model, which decides the options it offers: kRead (info,
  // convert: MODEL, --tokenizer, --json, --quiet), kQuantize (also --threads, --dtype,
  // --act-bits, --act-scheme, --kv-bits), kRun (also --kernel and --prompt-dtype, which only
  // inference reads: quantizers run exact products, lcq/quant/layer_inputs.h).
  enum class Use { kRead, kQuantize, kRun };
  void add_to(CLI::App& cmd, Use use = Use::kRun);
  model::LoadedModel load() const;
  // The model (a Hugging Face directory also when named by one of its files) and --tokenizer
  // as inputs of a command's FilePlan.
  void add_inputs(FilePlan& plan) const;
  model::RuntimeOptions runtime() const;
  io::LoadOptions load_options() const;
};


// An option whose value is one of a closed choice's names, parsed straight into the enum
// `target` by the choice's one table (`names`, `parse`); --help shows the names and the
// default, `target`'s value now (named by the enum's to_string).
template <typename E>
CLI::Option* add_choice(CLI::App& cmd, const std::string& flag, E& target, const std::vector<std::string>& names,
                        E (*parse)(const std::string&), const std::string& help) {
  CLI::Option* opt =
      cmd.add_option_function<std::string>(flag, [&target, parse](const std::string& s) { target = parse(s); }, help);
  opt->check(CLI::IsMember(names));
  opt->default_str(to_string(target));
  return opt;
}

// A model a command reads (a Hugging Face directory also when named by one of its files).
void add_model_input(FilePlan& plan, const std::string& path);
// A model a command writes: a .gguf file, else a Hugging Face directory.
void add_model_output(FilePlan& plan, const std::string& what, const std::string& path, bool gguf);

// Prints JSON to stdout (one document) — what --json promises.
void print_json(const nlohmann::json& j);
// --report FILE: the same JSON document written to a file (atomically), whatever --json
// says, so that a driver such as `lcq compare` can keep a child's progress bars on stderr.
void add_report_option(CLI::App& cmd, std::string& path);
void write_report(const std::string& path, const nlohmann::json& j);
// "1.23 M" style numbers for humans.
std::string human_count(double n);
std::string human_bytes(double n);
// Peak resident memory of this process so far, in bytes (VmHWM).
int64_t peak_rss_bytes();
int64_t current_rss_bytes();
// MemAvailable of /proc/meminfo, in bytes (0 when unknown).
int64_t available_memory_bytes();

using Registrar = std::function<void(CLI::App&)>;
void register_info(CLI::App& app);
void register_generate(CLI::App& app);
void register_perplexity(CLI::App& app);
void register_convert(CLI::App& app);
void register_demo(CLI::App& app);
void register_quantize(CLI::App& app);
void register_bench(CLI::App& app);
void register_eval(CLI::App& app);
void register_compare(CLI::App& app);

}  // namespace lcq::cli
