// lcq bench: how fast the packed LCQ kernels run on this machine, beside the memory read
// bandwidth and dense f32/bf16 GEMV measured in the same run, and (given a model) end-to-end
// prefill and decode speed with the model's resident memory. Prints Markdown tables (what
// BENCHMARKS.md holds) or --json.
//
// GEMV timings are "cold": each timed pass sweeps over enough copies of the matrix (by
// default twice the last-level cache and at least 192 MiB, --sweep-mib) that the weights
// stream from memory, as they do when a model decodes. Every figure is the median of --reps
// passes.
#include "common.h"

#include "lcq/core/error.h"
#include "lcq/core/progress.h"
#include "lcq/kernels/dense.h"
#include "lcq/kernels/lut_codebook.h"
#include "lcq/kernels/membw.h"
#include "lcq/kernels/packed_codebook.h"
#include "lcq/kernels/synthetic.h"
#include "lcq/model/generate.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <omp.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>

namespace lcq::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct BenchArgs {
  std::string model;
  std::vector<int> bits{2, 3, 4};
  int rank = 2;
  std::vector<int> threads{1, 2};
  int reps = 7;
  int prefill = 256, decode = 64;
  bool kernels = true;
  int sweep_mib = 0;  // MiB of matrix copies one timed GEMV pass sweeps over (0: from the cache size)
  bool dense_runtime = false;
  std::string dtype = "f32";
  std::string kernel = "auto", prompt_dtype = "auto";
  std::string simd_target;  // empty: the best this CPU runs
  bool json = false, quiet = false;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

// Median seconds of one call of `fn(copy)`, timing sweeps over `copies` copies.
template <class Fn>
double time_sweeps(size_t copies, int reps, Fn fn) {
  for (size_t k = 0; k < copies; ++k) fn(k);  // warm-up: page in, spin up threads
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = Clock::now();
    for (size_t k = 0; k < copies; ++k) fn(k);
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / double(copies));
  }
  return median(t);
}

struct Row {
  std::string shape, kernel;
  int threads;
  double seconds, bytes, weights, bandwidth;
  nlohmann::json json() const {
    return {{"shape", shape},
            {"kernel", kernel},
            {"threads", threads},
            {"microseconds", seconds * 1e6},
            {"gb_per_s", bytes / seconds / 1e9},
            {"gweights_per_s", weights / seconds / 1e9},
            {"fraction_of_bandwidth", bytes / seconds / 1e9 / bandwidth}};
  }
};

// Largest CPU cache in MiB as Linux reports it (0 when unknown). VMs can report a large
// shared L3 (300 MiB on one of ours), which a fixed sweep would sit in.
int largest_cache_mib() {
  int best = 0;
  for (int index = 0; index < 8; ++index) {
    std::ifstream f(fmt::format("/sys/devices/system/cpu/cpu0/cache/index{}/size", index));
    std::string size;
    if (!(f >> size) || size.empty()) continue;
    const char unit = size.back();
    const int value = std::atoi(size.c_str());
    best = std::max(best, unit == 'M' ? value : unit == 'G' ? value * 1024 : unit == 'K' ? value / 1024 : 0);
  }
  return best;
}

int sweep_mib(const BenchArgs& a) { return a.sweep_mib > 0 ? a.sweep_mib : std::max(192, 2 * largest_cache_mib()); }

size_t copies_for(size_t bytes, const BenchArgs& a) {
  return std::max<size_t>(2, (size_t(sweep_mib(a)) << 20) / std::max<size_t>(bytes, 1) + 1);
}

std::vector<Row> bench_shape(int64_t rows, int64_t cols, const BenchArgs& a, const std::map<int, double>& bw) {
  std::vector<Row> out;
  const std::string shape = fmt::format("{}x{}", rows, cols);
  std::vector<float> x(static_cast<size_t>(cols), 0.5f), y(static_cast<size_t>(rows));
  auto add = [&](const std::string& kernel, int t, double s, double bytes) {
    out.push_back({shape, kernel, t, s, bytes, double(rows) * double(cols), bw.at(t)});
  };
  for (int bits : a.bits) {
    const CodebookLayer layer = kernels::synthetic_codebook_layer(rows, cols, bits, a.rank);
    std::vector<kernels::PackedCodebookMatrix> ms;
    ms.push_back(kernels::PackedCodebookMatrix::pack(layer));
    const size_t n = copies_for(ms[0].nbytes(), a);
    while (ms.size() < n) ms.push_back(ms[0].clone());
    for (int t : a.threads) {
      omp_set_num_threads(t);
      const double s = time_sweeps(n, a.reps, [&](size_t k) { ms[k].gemv(x.data(), y.data()); });
      add(fmt::format("lcq-b{}-r{}", bits, a.rank), t, s, double(ms[0].nbytes()));
    }
    if (ms[0].int8_simd_runs()) {
      for (int t : a.threads) {  // the integer kernel (int8 activations), same matrices
        omp_set_num_threads(t);
        const double s =
            time_sweeps(n, a.reps, [&](size_t k) { ms[k].gemv(x.data(), y.data(), kernels::KernelPath::kInt8); });
        add(fmt::format("lcq-b{}-r{}-int8", bits, a.rank), t, s, double(ms[0].nbytes()));
      }
    }
    if (kernels::LutCodebookMatrix::applies(layer) && kernels::lut_simd_available(bits)) {
      ms.clear();  // the look-up-table kernel has its own layout (same bytes at these shapes)
      std::vector<kernels::LutCodebookMatrix> ls;
      ls.push_back(kernels::LutCodebookMatrix::pack(layer));
      const size_t nl = copies_for(ls[0].nbytes(), a);
      while (ls.size() < nl) ls.push_back(ls[0].clone());
      for (int t : a.threads) {
        omp_set_num_threads(t);
        const double s = time_sweeps(nl, a.reps, [&](size_t k) { ls[k].gemv(x.data(), y.data()); });
        add(fmt::format("lcq-b{}-r{}-lut", bits, a.rank), t, s, double(ls[0].nbytes()));
      }
    }
  }
  // Dense yardsticks: W as T (f32, or bf16 raw bits) through `gemv`.
  auto dense = [&](const char* kernel, auto fill, auto gemv) {
    using T = decltype(fill);
    const size_t bytes = size_t(rows * cols) * sizeof(T), n = copies_for(bytes, a);
    std::vector<std::vector<T>> ws(n, std::vector<T>(size_t(rows * cols), fill));
    for (int t : a.threads) {
      omp_set_num_threads(t);
      add(kernel, t, time_sweeps(n, a.reps, [&](size_t k) { gemv(ws[k].data(), rows, cols, x.data(), y.data()); }),
          double(bytes));
    }
  };
  dense("dense-f32", 0.25f, kernels::gemv_f32);
  dense("dense-bf16", uint16_t(0x3e80), kernels::gemv_bf16);  // bf16 0.25
  return out;
}

nlohmann::json run_bench(const BenchArgs& a) {
  nlohmann::json j;
  j["simd_target"] = kernels::current_simd_target();
  j["gemv_sweep_mib"] = sweep_mib(a);
  j["int8_simd_target"] = kernels::int8_simd_available() ? kernels::int8_simd_target() : "none";
  std::map<int, double> bw;
  for (int t : a.threads) bw[t] = kernels::measure_read_bandwidth_gbs(size_t(512) << 20, t, a.reps);
  j["memory_read_gb_per_s"] = nlohmann::json::object();
  for (auto [t, g] : bw) j["memory_read_gb_per_s"][std::to_string(t)] = g;

  // Shapes: 4096x4096 and the distinct linear shapes of the model.
  std::vector<std::pair<int64_t, int64_t>> shapes{{4096, 4096}};
  std::optional<model::LoadedModel> lm;
  int64_t model_rss = 0;
  if (!a.model.empty()) {
    model::RuntimeOptions rt;
    rt.dtype = model::parse_compute_dtype(a.dtype);
    rt.packed = !a.dense_runtime;
    rt.kernel = kernels::parse_kernel_choice(a.kernel);
    rt.prompt_dtype = model::resolve_prompt_dtype(a.prompt_dtype);
    const int64_t before = current_rss_bytes();
    lm = model::load_model(a.model, {}, rt);
    model_rss = current_rss_bytes() - before;
    std::set<std::pair<int64_t, int64_t>> seen;
    for (const auto& [name, lin] : lm->model.blocks[0].linears())
      if (lin->defined() && seen.insert({lin->out_features(), lin->in_features()}).second)
        shapes.push_back({lin->out_features(), lin->in_features()});
  }
  if (a.kernels) {
    j["gemv"] = nlohmann::json::array();
    Progress bar("gemv", int64_t(shapes.size()));
    for (const auto& [r, c] : shapes) {
      for (const Row& row : bench_shape(r, c, a, bw)) j["gemv"].push_back(row.json());
      bar.add();
    }
    bar.finish();
  }
  if (lm) {
    const model::Model& m = lm->model;
    size_t weight_bytes = 0;
    int packed_layers = 0;
    for (const auto& b : m.blocks)
      for (const auto& [name, lin] : b.linears()) {
        weight_bytes += lin->weight_bytes();
        packed_layers += lin->packed != nullptr;
      }
    nlohmann::json mj{{"path", a.model},
                      {"dtype", a.dtype},
                      {"packed_layers", packed_layers},
                      {"linear_weight_bytes", weight_bytes},
                      {"resident_bytes_of_loaded_model", model_rss},
                      {"packed_kernel", a.dense_runtime ? "none (dense)" : a.kernel},
                      {"prompt_dtype", a.dense_runtime ? a.dtype : m.options.prompt_dtype == torch::kBFloat16 ? "bf16" : "f32"},
                      {"prefill_tokens", a.prefill},
                      {"decode_tokens", a.decode},
                      {"runs", nlohmann::json::array()}};
    std::vector<int> prompt(size_t(a.prefill));
    for (int i = 0; i < a.prefill; ++i) prompt[size_t(i)] = 100 + (i * 7919) % std::max(1, m.config.vocab_size - 100);
    model::GenerateOptions go;
    go.max_new_tokens = a.decode;
    for (int t : a.threads) {
      model::set_threads(t);
      omp_set_num_threads(t);
      std::vector<double> pre, dec;
      model::generate(m, std::vector<int>(prompt.begin(), prompt.begin() + std::min(16, a.prefill)), go);  // warm-up
      for (int r = 0; r < std::max(1, a.reps / 2); ++r) {
        const auto res = model::generate(m, prompt, go);
        pre.push_back(double(a.prefill) / res.prefill_seconds);
        dec.push_back(double(res.tokens.size()) / res.decode_seconds);
      }
      mj["runs"].push_back({{"threads", t}, {"prefill_tokens_per_s", median(pre)}, {"decode_tokens_per_s", median(dec)}});
    }
    j["model"] = mj;
  }
  return j;
}

void print_markdown(const nlohmann::json& j) {
  fmt::print("SIMD target: {} (integer kernel: {})\n\n", j["simd_target"].get<std::string>(),
             j["int8_simd_target"].get<std::string>());
  fmt::print("| memory read | GB/s |\n|---|---:|\n");
  for (const auto& [t, g] : j["memory_read_gb_per_s"].items()) fmt::print("| {} thread(s) | {:.1f} |\n", t, g.get<double>());
  if (j.contains("gemv")) {
    fmt::print("\nGEMV: median of the passes, each sweeping {} MiB of matrix copies.\n",
               j["gemv_sweep_mib"].get<int>());
    fmt::print("\n| shape | kernel | threads | us/GEMV | GB/s | Gweights/s | % of read bandwidth |\n");
    fmt::print("|---|---|---:|---:|---:|---:|---:|\n");
    for (const auto& r : j["gemv"])
      fmt::print("| {} | {} | {} | {:.1f} | {:.1f} | {:.2f} | {:.0f} % |\n", r["shape"].get<std::string>(),
                 r["kernel"].get<std::string>(), r["threads"].get<int>(), r["microseconds"].get<double>(),
                 r["gb_per_s"].get<double>(), r["gweights_per_s"].get<double>(),
                 100 * r["fraction_of_bandwidth"].get<double>());
  }
  if (j.contains("model")) {
    const auto& m = j["model"];
    fmt::print("\nModel {} ({}, {} packed LCQ layers, kernel {}): linear weights {}, resident memory of the loaded "
               "model {}\n\n",
               m["path"].get<std::string>(), m["dtype"].get<std::string>(), m["packed_layers"].get<int>(),
               m["packed_kernel"].get<std::string>(),
               human_bytes(m["linear_weight_bytes"].get<double>()),
               human_bytes(m["resident_bytes_of_loaded_model"].get<double>()));
    fmt::print("| threads | prefill tok/s ({} tokens) | decode tok/s ({} tokens) |\n|---:|---:|---:|\n",
               m["prefill_tokens"].get<int>(), m["decode_tokens"].get<int>());
    for (const auto& r : m["runs"])
      fmt::print("| {} | {:.1f} | {:.1f} |\n", r["threads"].get<int>(), r["prefill_tokens_per_s"].get<double>(),
                 r["decode_tokens_per_s"].get<double>());
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "Kernel and model speed on this machine (Markdown tables or --json)");
  cmd->add_option("model", a->model, "Optional model: adds its layer shapes and end-to-end prefill/decode speed");
  cmd->add_option("--bits", a->bits, "Index widths of the packed GEMV rows")->delimiter(',')->check(CLI::Range(1, 8));
  cmd->add_option("--rank", a->rank, "Codebook rank of the packed GEMV rows")->check(CLI::Range(1, 64));
  cmd->add_option("-t,--threads", a->threads, "Thread counts to measure, e.g. 1,2")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--reps", a->reps, "Timed repetitions per figure (the median is reported)")->check(CLI::Range(1, 1000));
  cmd->add_option("--sweep-mib", a->sweep_mib,
                  "MiB of matrix copies per timed GEMV pass (default: twice the largest CPU cache, at least 192)")
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--prefill", a->prefill, "Prompt tokens for the prefill timing")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--decode", a->decode, "Generated tokens for the decode timing")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--dtype", a->dtype, "Runtime compute type for the model")
      ->check(CLI::IsMember(model::compute_dtype_names()))
      ->capture_default_str();
  cmd->add_flag("--dense", a->dense_runtime, "Dequantize LCQ layers on load instead of running them packed");
  cmd->add_option("--kernel", a->kernel, "Kernel of the model's packed layers (see lcq generate --help)")
      ->check(CLI::IsMember(kernels::kernel_choice_names()))
      ->capture_default_str();
  cmd->add_option("--prompt-dtype", a->prompt_dtype, "Arithmetic of the model's prompt products (see lcq generate --help)")
      ->check(CLI::IsMember(model::prompt_dtype_names()))
      ->capture_default_str();
  cmd->add_flag("!--no-kernels", a->kernels, "Skip the GEMV tables (model timing only)");
  cmd->add_flag("--json", a->json, "Print machine-readable JSON on stdout");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress bars");
  cmd->add_option("--simd-target", a->simd_target,
                  "Run as on a CPU with only this SIMD target (e.g. AVX2 on an AVX-512 machine), to measure the\n"
                  "kernels other CPUs would run; a name this CPU cannot run is refused with the list of those it can");
  cmd->footer(
      "Examples:\n"
      "  lcq bench                                 # kernels on 4096x4096, 1 and 2 threads\n"
      "  lcq bench model-w2.gguf                   # + the model's layer shapes, prefill/decode tok/s\n"
      "  lcq bench model.gguf --dtype bf16 --no-kernels   # the dense bf16 runtime, for comparison");
  cmd->callback([a] {
    Progress::set_globally_enabled(!a->quiet && !a->json);
    if (!a->simd_target.empty()) {  // before any layer is packed: layouts follow the target's kernels
      std::vector<std::string> names;
      int64_t id = 0;
      for (const kernels::SimdTarget& t : kernels::available_simd_targets()) {
        names.push_back(t.name);
        if (a->simd_target == t.name) id = t.id;
      }
      LCQ_CHECK(id != 0, "--simd-target must be one this CPU runs ({}), got '{}'", fmt::join(names, ", "), a->simd_target);
      kernels::force_simd_target(id);
    }
    const nlohmann::json j = run_bench(*a);
    if (a->json)
      print_json(j);
    else
      print_markdown(j);
  });
}

}  // namespace lcq::cli
