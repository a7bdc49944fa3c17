#include "common.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/core/memory.h"
#include "lcq/core/progress.h"
#include "lcq/io/writers.h"
#include "lcq/model/act_quant.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>

namespace lcq::cli {

void ModelOptions::add_to(CLI::App& cmd, Use use) {
  cmd.add_option("model", path, "Model: a GGUF file, a Hugging Face directory, or a llama2.c .bin")->required();
  cmd.add_option("--tokenizer", tokenizer,
                 "Tokenizer file (tokenizer.bin, *.model or tokenizer.json) when the model carries none");
  if (use != Use::kRead) {
    cmd.add_option("-t,--threads", threads, "Worker threads (default: all cores)")->check(CLI::Range(0, 1024));
    cmd.add_option("--dtype", dtype, "Compute type of the runtime")
        ->check(CLI::IsMember(model::compute_dtype_names()))
        ->capture_default_str();
    cmd.add_option("--act-bits", act_bits,
                   "Quantize the inputs of every block linear to this many bits (0 = off; default: what the\n"
                   "file was quantized for, else off)")
        ->check(CLI::Range(0, 16));
    cmd.add_option("--act-scheme", act_scheme,
                   "per-token-dynamic (asymmetric min-max per token, LRQ's W4A8) or per-tensor-static (one\n"
                   "calibrated range per linear, stored by lcq quantize; LRQ's W8A8)")
        ->check(CLI::IsMember(model::act_scheme_names()));
    cmd.add_option("--kv-bits", kv_bits, "Also quantize the k and v projections' outputs per token (0 = off)")
        ->check(CLI::Range(0, 16));
  }
  if (use == Use::kRun) {
    cmd.add_option("--kernel", kernel,
                   "Kernel of packed LCQ layers when decoding (prompts of 16+ tokens multiply the exactly\n"
                   "dequantized weights through BLAS): auto (the fastest this CPU has for each layer: lut,\n"
                   "else int8, else float), float (the exact product of the dequantized weights), int8\n"
                   "(activations rounded to int8 per group; 2-4 bits), lut (look-up tables of int8-rounded\n"
                   "activation sums at 2-4 bits, 8-bit levels of V times int8 activations at 5-8 bits; on\n"
                   "AVX-512 VBMI/VNNI CPUs, and at all widths but 3 bits on AVX2). A kernel that does\n"
                   "not apply to a layer falls back to the next: lut, int8, float")
        ->check(CLI::IsMember(kernels::kernel_choice_names()))
        ->capture_default_str();
    cmd.add_option("--prompt-dtype", prompt_dtype,
                   "Arithmetic of prompts (16+ tokens): the packed layers' dequantized weights through BLAS\n"
                   "and attention's products. f32 (exact), bf16 (oneDNN's bf16 products: about 1.6x faster\n"
                   "on CPUs with AVX512-BF16 or AMX; inputs and results rounded to bf16, softmax in f32), auto\n"
                   "(bf16 where the CPU has it natively)")
        ->check(CLI::IsMember(model::prompt_dtype_names()))
        ->capture_default_str();
  }
  cmd.add_flag("--json", json, "Print machine-readable JSON on stdout");
  cmd.add_flag("-q,--quiet", quiet, "No progress bars");
  cmd.parse_complete_callback([this] { Progress::set_globally_enabled(!quiet && !json); });
}

model::RuntimeOptions ModelOptions::runtime() const {
  model::RuntimeOptions r;
  r.dtype = model::parse_compute_dtype(dtype);
  r.threads = threads;
  r.act_bits = act_bits;
  if (!act_scheme.empty()) r.act_scheme = model::parse_act_scheme(act_scheme);
  r.kv_bits = kv_bits;
  r.kernel = kernels::parse_kernel_choice(kernel);
  r.prompt_dtype = model::resolve_prompt_dtype(prompt_dtype);
  return r;
}

io::LoadOptions ModelOptions::load_options() const {
  io::LoadOptions o;
  o.tokenizer_path = tokenizer;
  return o;
}

model::LoadedModel ModelOptions::load() const { return model::load_model(path, load_options(), runtime()); }

void add_model_input(FilePlan& plan, const std::string& path) {
  plan.input("the model", path);
  const std::string dir = io::hf_directory_of(path);
  if (dir.empty()) return;
  if (dir != path) plan.input("the model's directory", dir);
  for (const auto& file : io::hf_input_files(dir)) plan.input("the model's file", file);
}

void ModelOptions::add_inputs(FilePlan& plan) const {
  add_model_input(plan, path);
  plan.input("--tokenizer", tokenizer);
}

void add_model_output(FilePlan& plan, const std::string& what, const std::string& path, bool gguf) {
  if (gguf)
    plan.output_file(what, path);
  else
    plan.output_directory(what, path, io::hf_model_files());
}

void print_json(const nlohmann::json& j) { std::cout << j.dump(2) << std::endl; }

std::string human_count(double n) {
  if (n >= 1e9) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f} M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.2f} K", n / 1e3);
  return fmt::format("{:.0f}", n);
}

void add_report_option(CLI::App& cmd, std::string& path) {
  cmd.add_option("--report", path, "Also write the --json summary to this file (atomically)");
}

void write_report(const std::string& path, const nlohmann::json& j) {
  if (!path.empty()) write_file_atomic(path, j.dump(2) + "\n");
}

std::string human_bytes(double n) {
  if (n >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", n / (1024.0 * 1024 * 1024));
  if (n >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", n / (1024.0 * 1024));
  if (n >= 1024.0) return fmt::format("{:.1f} KiB", n / 1024.0);
  return fmt::format("{:.0f} B", n);
}

// A "Key: N kB" line of a /proc file, in bytes (0 when absent).
static int64_t proc_kb(const char* file, const char* key) {
  std::ifstream in(file);
  std::string line;
  const std::string k = key;
  while (std::getline(in, line))
    if (line.compare(0, k.size(), k) == 0) return std::stoll(line.substr(k.size() + 1)) * 1024;
  return 0;
}

int64_t peak_rss_bytes() { return proc_kb("/proc/self/status", "VmHWM"); }
int64_t available_memory_bytes() { return proc_kb("/proc/meminfo", "MemAvailable"); }
int64_t current_rss_bytes() {
  // main() keeps freed memory in the heap (no trimming); hand it back first, so that the
  // reading is what is in use and not what an earlier phase freed.
  return_free_heap();
  return proc_kb("/proc/self/status", "VmRSS");
}

}  // namespace lcq::cli
