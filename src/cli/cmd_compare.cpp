// lcq compare MODEL --methods ... --bits ...: the quantization methods side by side on one
// calibration set and one evaluation text.
//
// Each configuration runs as two child processes of this same binary, `lcq quantize` then
// `lcq perplexity` on its output, exactly the commands a user would type (they are printed
// with the table). Children keep memory measurements honest (each quantizer's peak is its
// own) and make the grid resumable: a configuration's result is a small JSON file written
// atomically once both steps succeeded, together with the command lines that produced it and
// content fingerprints of the files they read (model, texts, tokenizer, a start model); a
// rerun reuses every result whose commands and files are unchanged and runs the rest. The
// children die with this process, however it ends.
#include "common.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/eval/compare_report.h"
#include "lcq/model/act_quant.h"
#include "lcq/quant/quantize.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <sstream>

extern char** environ;

namespace lcq::cli {

namespace {

namespace fs = std::filesystem;

const std::vector<std::string> kMethods = {"rtn", "gptq", "awq", "omniquant", "flexround", "lrq", "lcq"};
// LCQ started from a rank-one method's result: "lcq/gptq" = lcq quantize --init gptq (the
// start is computed inside the same run); "lcq/flexround" = lcq quantize --init-from the
// grid's flexround model (a trained start needs its own calibration pass, so its row runs
// first and its file is read).
const std::vector<std::string> kLcqStarts = {"gptq", "awq", "flexround", "lrq", "omniquant"};
bool starts_from_file(const std::string& m) { return m == "lcq/flexround" || m == "lcq/lrq" || m == "lcq/omniquant"; }

bool known_method(const std::string& m) {
  if (std::find(kMethods.begin(), kMethods.end(), m) != kMethods.end()) return true;
  return m.rfind("lcq/", 0) == 0 && std::find(kLcqStarts.begin(), kLcqStarts.end(), m.substr(4)) != kLcqStarts.end();
}
bool is_lcq(const std::string& m) { return m == "lcq" || m.rfind("lcq/", 0) == 0; }
// Whether an --act-scheme needs ranges calibrated on the calibration set.
bool static_ranges(const std::string& scheme) {
  return model::parse_act_scheme(scheme) == model::ActQuant::Scheme::PerTensorStatic;
}

struct CompareArgs {
  std::string model, tokenizer, methods = "rtn,gptq,awq,omniquant,flexround,lrq,lcq", bits = "2,3,4",
                                    ranks = "2", calib, text, out, quantize_args;
  int group = 128, threads = 0, epochs = 0, act_bits = 0, kv_bits = 0;
  std::string act_scheme = "per-token-dynamic";
  double smoothquant = 0;
  int64_t nsamples = 128, seqlen = 0, limit = 0, eval_seqlen = 0;
  uint64_t seed = 0;
  bool json = false, quiet = false, keep_models = true;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::vector<int> parse_ints(const std::string& s, const char* option) {
  std::vector<int> out;
  for (const auto& item : split(s, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoi(item, &used));
      LCQ_CHECK(used == item.size(), "");
    } catch (const std::exception&) {
      fail("{} must be a comma-separated list of integers, got '{}'", option, s);
    }
  }
  LCQ_CHECK(!out.empty(), "{} is empty", option);
  return out;
}

std::string self_executable() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  LCQ_CHECK(!ec, "cannot find this program's path (/proc/self/exe): {}", ec.message());
  return p.string();
}

// Runs `exe args...` with stdout to `log` and stderr inherited (progress bars, errors).
// Returns the exit status; throws when the process cannot be started. The child receives
// SIGTERM when this process ends, however it ends (SIGKILL included): a grid interrupted by
// the user must not leave a quantization running and writing in the background. (fork and
// exec rather than posix_spawn: the death signal is set in the child, before exec.)
int run_child(const std::string& exe, const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> full = {exe};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  LCQ_CHECK(pid >= 0, "cannot start {}: {}", exe, std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls until exec. If the parent died before prctl, exit at once.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) _exit(127);
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) _exit(127);
    execve(exe.c_str(), argv.data(), environ);
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    LCQ_CHECK(errno == EINTR, "waiting for {}: {}", exe, std::strerror(errno));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

std::string shell_line(const std::vector<std::string>& args) {
  std::string s = "lcq";
  for (const auto& a : args)
    s += " " + (a.find_first_of(" \t'\"$") == std::string::npos ? a : "'" + a + "'");
  return s;
}

struct Config {
  std::string method;
  int bits = 0, group = 0, rank = 0;
  std::string key() const {
    std::string name = method;
    std::replace(name.begin(), name.end(), '/', '_');
    return method == "fp" ? "fp" : fmt::format("{}-w{}-g{}{}", name, bits, group, rank > 1 ? fmt::format("-r{}", rank) : "");
  }
};

class Runner {
 public:
  explicit Runner(const CompareArgs& a) : a_(a), exe_(self_executable()) {
    // What the cached results depend on besides the command lines: the bytes of the files
    // they read (an edited text or a replaced model of the same size is not the same input).
    const std::string hf_dir = io::hf_directory_of(a_.model);
    inputs_ = {{"model", content_fingerprint(hf_dir.empty() ? a_.model : hf_dir)},
               {"text", content_fingerprint(a_.text)}};
    if (!a_.calib.empty()) inputs_["calib"] = content_fingerprint(a_.calib);
    if (!a_.tokenizer.empty()) inputs_["tokenizer"] = content_fingerprint(a_.tokenizer);
    fs::create_directories(fs::path(a_.out) / "runs");
    if (a_.keep_models) fs::create_directories(fs::path(a_.out) / "models");
  }

  eval::CompareRow run(const Config& c, int index, int total) {
    const fs::path runs = fs::path(a_.out) / "runs";
    const std::string key = c.key();
    const std::string model_file = model_path(c);
    const std::string quantize_report = (runs / (key + ".quantize.json")).string();
    const std::string perplexity_report = (runs / (key + ".perplexity.json")).string();
    std::vector<std::string> quantize;
    if (c.method != "fp") quantize = quantize_args(c, model_file, quantize_report);
    const std::vector<std::string> perplexity =
        perplexity_args(c.method == "fp" ? a_.model : model_file, perplexity_report);
    nlohmann::json inputs = inputs_;
    if (starts_from_file(c.method)) {  // the start model is another row's output: its contents count
      const std::string start = model_path(Config{c.method.substr(4), c.bits, c.group, 1});
      inputs["init_from"] = fs::exists(start) ? content_fingerprint(start) : "";
    }
    const nlohmann::json commands = {{"quantize", quantize}, {"perplexity", perplexity}, {"inputs", inputs}};

    const fs::path result_path = runs / (key + ".json");
    eval::CompareRow row;
    if (fs::exists(result_path)) {
      nlohmann::json old;
      try {
        old = nlohmann::json::parse(read_file(result_path.string()));
      } catch (const std::exception&) {
        old = nullptr;  // unreadable: recompute
      }
      if (old.is_object() && old.value("commands", nlohmann::json()) == commands) {
        row = row_from(c, old);
        row.cached = true;
        say("[{}/{}] {}: cached, PPL {:.4g}", index, total, key, row.perplexity);
        return row;
      }
      say("[{}/{}] {}: settings changed since the cached result, rerunning", index, total, key);
    }

    nlohmann::json result = {{"commands", commands}};
    if (!quantize.empty()) {
      say("[{}/{}] {}: {}", index, total, key, shell_line(quantize));
      fs::remove(quantize_report);
      check_child(run_child(exe_, with_quiet(quantize), (runs / (key + ".quantize.log")).string()), key, "quantize");
      result["quantize"] = nlohmann::json::parse(read_file(quantize_report));
    }
    say("[{}/{}] {}: {}", index, total, key, shell_line(perplexity));
    fs::remove(perplexity_report);
    check_child(run_child(exe_, with_quiet(perplexity), (runs / (key + ".perplexity.log")).string()), key,
                "perplexity");
    result["perplexity"] = nlohmann::json::parse(read_file(perplexity_report));
    if (!a_.keep_models && !quantize.empty()) fs::remove(model_file);
    write_file_atomic(result_path.string(), result.dump(2) + "\n");
    row = row_from(c, result);
    say("[{}/{}] {}: PPL {:.4g}", index, total, key, row.perplexity);
    return row;
  }

 private:
  template <typename... Args>
  void say(fmt::format_string<Args...> f, Args&&... args) const {
    if (!a_.quiet) fmt::print(stderr, "{}\n", fmt::format(f, std::forward<Args>(args)...));
  }

  void check_child(int status, const std::string& key, const char* step) const {
    LCQ_CHECK(status == 0,
              "{}: lcq {} failed (exit status {}; its error is above, its output in {}/runs); the finished "
              "configurations are kept and a rerun resumes",
              key, step, status, a_.out);
  }

  std::string model_path(const Config& c) const {
    return (fs::path(a_.out) / (a_.keep_models ? "models" : "runs") / (c.key() + ".gguf")).string();
  }

  std::vector<std::string> common_args() const {
    std::vector<std::string> v;
    if (!a_.tokenizer.empty()) v.insert(v.end(), {"--tokenizer", a_.tokenizer});
    return v;
  }

  std::vector<std::string> quantize_args(const Config& c, const std::string& out, const std::string& report) const {
    const bool lcq = is_lcq(c.method);
    std::vector<std::string> v = {"quantize", a_.model, "-o", out, "--method", lcq ? "lcq" : c.method, "--bits",
                                  std::to_string(c.bits), "--group", std::to_string(c.group)};
    if (lcq) v.insert(v.end(), {"--rank", std::to_string(c.rank)});
    if (starts_from_file(c.method))
      v.insert(v.end(), {"--init-from", model_path(Config{c.method.substr(4), c.bits, c.group, 1})});
    else if (c.method.rfind("lcq/", 0) == 0)
      v.insert(v.end(), {"--init", c.method.substr(4)});
    // RTN takes no calibration, unless the activation scheme needs it (SmoothQuant, static ranges).
    const bool act_calib = a_.smoothquant > 0 || (a_.act_bits > 0 && static_ranges(a_.act_scheme));
    if (c.method != "rtn" || act_calib) {
      v.insert(v.end(), {"--calib", a_.calib, "--nsamples", std::to_string(a_.nsamples), "--seed", std::to_string(a_.seed)});
      if (a_.seqlen > 0) v.insert(v.end(), {"--seqlen", std::to_string(a_.seqlen)});
    }
    const bool trained = lcq || quant::is_trained_method(quant::parse_method(c.method));
    if (trained && a_.epochs > 0) v.insert(v.end(), {"--epochs", std::to_string(a_.epochs)});
    if (a_.act_bits > 0) v.insert(v.end(), {"--act-bits", std::to_string(a_.act_bits), "--act-scheme", a_.act_scheme});
    if (a_.kv_bits > 0) v.insert(v.end(), {"--kv-bits", std::to_string(a_.kv_bits)});
    if (a_.smoothquant > 0) v.insert(v.end(), {"--smoothquant", fmt::format("{}", a_.smoothquant)});
    for (const auto& extra : split(a_.quantize_args, ' ')) v.push_back(extra);
    auto c2 = common_args();
    v.insert(v.end(), c2.begin(), c2.end());
    v.insert(v.end(), {"--report", report});
    return with_threads(v);
  }

  std::vector<std::string> perplexity_args(const std::string& model, const std::string& report) const {
    std::vector<std::string> v = {"perplexity", model, "--text", a_.text, "--limit", std::to_string(a_.limit)};
    if (a_.eval_seqlen > 0) v.insert(v.end(), {"--seqlen", std::to_string(a_.eval_seqlen)});
    auto c2 = common_args();
    v.insert(v.end(), c2.begin(), c2.end());
    v.insert(v.end(), {"--report", report});
    return with_threads(v);
  }

  // The thread count is part of the cached command (a rerun with other threads recomputes,
  // so the table's times stay comparable); --quiet is not (it changes nothing measured).
  std::vector<std::string> with_threads(std::vector<std::string> v) const {
    if (a_.threads > 0) v.insert(v.end(), {"--threads", std::to_string(a_.threads)});
    return v;
  }
  std::vector<std::string> with_quiet(std::vector<std::string> v) const {
    if (a_.quiet) v.push_back("--quiet");
    return v;
  }

  eval::CompareRow row_from(const Config& c, const nlohmann::json& j) const {
    eval::CompareRow r;
    r.method = c.method;
    r.bits = c.bits, r.group = c.group, r.rank = c.rank;
    r.perplexity = j.at("perplexity").at("perplexity").get<double>();
    if (j.contains("quantize")) {
      const auto& q = j.at("quantize");
      r.bits_per_weight = q.at("bits_per_weight").get<double>();
      r.quantize_seconds = q.at("seconds").get<double>();
      r.peak_rss_bytes = q.at("peak_rss_bytes").get<int64_t>();
      if (a_.keep_models) r.file = q.at("output").get<std::string>();
    }
    return r;
  }

  const CompareArgs& a_;
  std::string exe_;
  nlohmann::json inputs_;
};

}  // namespace

void register_compare(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "compare", "Quantize a model with several methods and bit widths and compare their perplexity side by side");
  auto a = std::make_shared<CompareArgs>();
  cmd->add_option("model", a->model, "Model: a GGUF file, a Hugging Face directory, or a llama2.c .bin")->required();
  cmd->add_option("--tokenizer", a->tokenizer, "Tokenizer file when the model carries none");
  cmd->add_option("--methods", a->methods,
                  "Comma-separated methods: rtn,gptq,awq,omniquant,flexround,lrq,lcq; lcq/gptq, lcq/awq, lcq/flexround,\n"
                  "lcq/lrq and lcq/omniquant are LCQ started from that method's result (lcq quantize --init gptq|awq,\n"
                  "or --init-from the grid's model of the trained methods, whose row then runs first)");
  cmd->add_option("--bits", a->bits, "Comma-separated bit widths");
  cmd->add_option("--group", a->group, "Weights per group");
  cmd->add_option("--ranks", a->ranks, "Comma-separated LCQ codebook ranks (the other methods are rank one)");
  cmd->add_option("--calib", a->calib, "Calibration text, shared by every method (required unless only rtn)");
  cmd->add_option("--nsamples", a->nsamples, "Calibration windows")->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  cmd->add_option("--seqlen", a->seqlen, "Tokens per calibration window (default: lcq quantize's)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("--seed", a->seed, "Seed of the calibration windows and initialization");
  cmd->add_option("--epochs", a->epochs, "Epochs of every trained method (default: each method's own)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--act-bits", a->act_bits,
                  "Weight-activation scheme for every run (0 = weight-only), e.g. 8 for LRQ's W8A8/W4A8")
      ->check(CLI::Range(0, 16));
  cmd->add_option("--act-scheme", a->act_scheme, "per-token-dynamic or per-tensor-static")
      ->check(CLI::IsMember(model::act_scheme_names()));
  cmd->add_option("--kv-bits", a->kv_bits, "Also quantize the k/v projections' outputs (0 = off)")->check(CLI::Range(0, 16));
  cmd->add_option("--smoothquant", a->smoothquant, "SmoothQuant alpha before every quantization (0 = off)")
      ->check(finite_range(0, 1));
  cmd->add_option("--quantize-args", a->quantize_args,
                  "More lcq quantize arguments for every run, e.g. \"--loss token-relative\"");
  cmd->add_option("--text", a->text, "Evaluation text (perplexity, GPTQ protocol)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--limit", a->limit, "Score at most this many evaluation windows (0 = all)")
      ->check(non_negative());
  cmd->add_option("--eval-seqlen", a->eval_seqlen, "Evaluation window length (default: lcq perplexity's)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("-o,--out", a->out, "Directory of results, cache and models (default: compare-<model name>)");
  cmd->add_flag("!--no-keep-models", a->keep_models, "Delete each quantized model once it is evaluated");
  cmd->add_option("-t,--threads", a->threads, "Worker threads of each run (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_flag("--json", a->json, "Print the table as JSON on stdout");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress output");
  cmd->footer(
      "Writes OUT/compare.md, OUT/compare.json and OUT/compare.svg (perplexity against bits per weight).\n"
      "Every run is an ordinary lcq quantize + lcq perplexity (printed as it starts); a rerun skips the\n"
      "configurations whose results exist with the same commands, so an interrupted grid resumes.\n"
      "Example:\n"
      "  lcq compare model.gguf --methods rtn,gptq,awq,lcq --bits 2,3 --group 128 --ranks 2 \\\n"
      "      --calib ../shared/data/ptb/ptb.valid.txt --nsamples 32 --seqlen 512 \\\n"
      "      --text ../shared/data/wikitext2/wiki.test.joined.txt --limit 12");
  cmd->callback([a] {
    std::vector<std::string> methods = split(a->methods, ',');
    LCQ_CHECK(!methods.empty(), "--methods is empty");
    for (const auto& m : methods)
      LCQ_CHECK(known_method(m), "--methods: unknown method '{}' (known: {}, and lcq/gptq, lcq/awq, lcq/flexround, lcq/lrq, lcq/omniquant for LCQ started from them)", m,
                fmt::join(kMethods, ","));
    const std::vector<int> bits = parse_ints(a->bits, "--bits"), ranks = parse_ints(a->ranks, "--ranks");
    for (int b : bits) LCQ_CHECK(b >= 2 && b <= 8, "--bits: {} is not in 2..8", b);
    for (int r : ranks) LCQ_CHECK(r >= 1 && r <= 8, "--ranks: {} is not in 1..8", r);
    LCQ_CHECK(a->group >= 1, "--group must be >= 1, got {}", a->group);
    // Checked here, not by the first child to fail after other rows ran (0 = the default).
    LCQ_CHECK(a->seqlen == 0 || a->seqlen >= 2, "--seqlen must be >= 2, got {}", a->seqlen);
    LCQ_CHECK(a->eval_seqlen == 0 || a->eval_seqlen >= 2, "--eval-seqlen must be >= 2, got {}", a->eval_seqlen);
    const bool needs_calib = std::any_of(methods.begin(), methods.end(), [](auto& m) { return m != "rtn"; }) ||
                             a->smoothquant > 0 || (a->act_bits > 0 && static_ranges(a->act_scheme));
    LCQ_CHECK(!needs_calib || !a->calib.empty(), "--calib FILE is needed by every method but rtn");
    LCQ_CHECK(a->calib.empty() || fs::exists(a->calib), "{}: no such calibration file", a->calib);
    LCQ_CHECK(fs::exists(a->model), "{}: no such model", a->model);
    if (a->out.empty()) a->out = "compare-" + fs::path(a->model).stem().string();
    // compare names every run's files itself.
    for (const auto& extra : split(a->quantize_args, ' '))
      for (const std::string own : {"-o", "--output", "--report", "--export-fake"}) {
        const bool names_it = own == "-o" ? extra.rfind("-o", 0) == 0 : extra == own || extra.rfind(own + "=", 0) == 0;
        LCQ_CHECK(!names_it, "--quantize-args: {} is set by lcq compare for every run (under -o {})", own, a->out);
      }
    FilePlan files;
    add_model_input(files, a->model);
    files.input("--tokenizer", a->tokenizer);
    files.input("--calib", a->calib);
    files.input("--text", a->text);
    files.output_directory("-o", a->out, {"runs", "models", "compare.md", "compare.json", "compare.svg"});
    files.check();

    std::vector<Config> configs = {{"fp", 0, 0, 0}};
    auto add = [&](const Config& c) {
      for (const Config& have : configs)
        if (have.key() == c.key()) return;
      configs.push_back(c);
    };
    std::vector<std::string> order = methods;
    for (int b : bits)
      for (const auto& m : methods) {
        if (starts_from_file(m)) {  // its start's row first (added to the grid if not asked for)
          const std::string start = m.substr(4);
          LCQ_CHECK(a->keep_models, "--no-keep-models: {} reads the {} model of the grid; keep the models", m, start);
          add({start, b, a->group, 1});
          if (std::find(order.begin(), order.end(), start) == order.end())
            order.insert(std::find(order.begin(), order.end(), m), start);
        }
        if (is_lcq(m))
          for (int r : ranks) add({m, b, a->group, r});
        else
          add({m, b, a->group, 1});
      }
    Runner runner(*a);
    eval::CompareTable table;
    table.model = a->model;
    table.text = a->text;
    table.settings = {{"calib", a->calib},   {"nsamples", a->nsamples},       {"seqlen", a->seqlen},
                      {"seed", a->seed},     {"epochs", a->epochs},           {"limit", a->limit},
                      {"eval_seqlen", a->eval_seqlen}, {"quantize_args", a->quantize_args}, {"threads", a->threads}};
    if (a->act_bits > 0 || a->kv_bits > 0 || a->smoothquant > 0)
      table.settings["activations"] = {{"bits", a->act_bits}, {"scheme", a->act_scheme}, {"kv_bits", a->kv_bits},
                                       {"smoothquant", a->smoothquant}};
    const auto start = std::chrono::steady_clock::now();
    for (size_t i = 0; i < configs.size(); ++i)
      table.rows.push_back(runner.run(configs[i], int(i + 1), int(configs.size())));
    eval::sort_rows(table.rows, order);

    const fs::path out(a->out);
    write_file_atomic((out / "compare.md").string(), eval::render_markdown(table));
    write_file_atomic((out / "compare.json").string(), eval::to_json(table).dump(2) + "\n");
    write_file_atomic((out / "compare.svg").string(), eval::render_svg(table));
    if (a->json) return print_json(eval::to_json(table));
    fmt::print("{}\n", eval::render_markdown(table));
    fmt::print("wrote {0}/compare.md, {0}/compare.json, {0}/compare.svg ({1:.1f} min)\n", a->out,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60);
  });
}

}  // namespace lcq::cli
