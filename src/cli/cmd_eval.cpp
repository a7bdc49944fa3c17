// lcq eval MODEL --tasks piqa,arc_easy: zero-shot tasks with lm-evaluation-harness semantics.
#include "common.h"

#include "lcq/core/error.h"
#include "lcq/eval/zeroshot.h"
#include "lcq/model/act_quant.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>

namespace lcq::cli {

namespace {

// --data-dir, else $LCQ_ZEROSHOT_DIR, else ../shared/data/zeroshot (the project's layout,
// when run from a checkout).
std::string data_directory(const std::string& flag) {
  if (!flag.empty()) return flag;
  if (const char* env = std::getenv("LCQ_ZEROSHOT_DIR"); env && *env) return env;
  return "../shared/data/zeroshot";
}

std::string fixed(double v, int digits) { return std::isfinite(v) ? fmt::format("{:.{}f}", v, digits) : "n/a"; }

}  // namespace

void register_eval(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("eval", "Zero-shot tasks (PIQA, ARC, WinoGrande, LAMBADA, ...), lm-eval-harness semantics");
  auto opts = std::make_shared<ModelOptions>();
  struct Eval {
    std::string tasks, data_dir, bos = "auto";
    int64_t limit = 0;
    eval::ZeroShotOptions z;
  };
  auto o = std::make_shared<Eval>();
  opts->prompt_dtype = "f32";  // a measurement: exact unless asked otherwise
  opts->add_to(*cmd);
  std::string names;
  for (const auto& t : eval::task_registry()) names += (names.empty() ? "" : ",") + t.name;
  cmd->add_option("--tasks", o->tasks,
                  "Comma-separated tasks: " + names + ", all, or paths of .jsonl task files (docs/zeroshot.md)")
      ->required();
  cmd->add_option("--data-dir", o->data_dir,
                  "Directory of the task files (default: $LCQ_ZEROSHOT_DIR, else ../shared/data/zeroshot)");
  cmd->add_option("--limit", o->limit, "Only the first N examples of each task (0 = all)")
      ->check(non_negative());
  cmd->add_option("--bos", o->bos,
                  "Start every context with BOS: auto (default) does what the tokenizer does by default, as\n"
                  "lm-eval's HFLM (SmolLM2: no, Llama: yes); on/off force it (lm-eval's add_bos_token)")
      ->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_flag("!--no-prefix-sharing", o->z.score.share_prefix,
                "Score every request on its own instead of running each example's common prefix once");
  cmd->add_option("--batch", o->z.score.batch,
                  "Requests per forward pass when there is no prefix to share (sorted by length, right-padded)")
      ->check(CLI::Range(1, 4096));
  cmd->footer("Example: lcq eval model.gguf --tasks piqa,arc_easy --threads 2\n"
              "acc: the choice with the largest log-likelihood; acc_norm: largest per character of the choice.");
  cmd->callback([opts, o] {
    namespace fs = std::filesystem;
    const std::string dir = data_directory(o->data_dir);
    // Every task file is read before the model runs: a bad row fails in a second, not after
    // an hour of evaluating the tasks before it.
    std::vector<eval::Task> tasks;
    for (const auto& spec : eval::resolve_tasks(o->tasks, dir)) {
      LCQ_CHECK(fs::exists(spec.file),
                "{}: no such task file for task {} (set the directory with --data-dir or LCQ_ZEROSHOT_DIR)", spec.file,
                spec.name);
      tasks.push_back(eval::load_task(spec, o->limit));
    }
    model::LoadedModel lm = opts->load();
    o->z.bos = o->bos == "auto" ? lm.tok().vocab().add_bos : o->bos == "on";
    o->z.score.progress = !opts->quiet && !opts->json;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<eval::TaskResult> results;
    for (const auto& task : tasks) results.push_back(eval::evaluate_task(lm.model, lm.tok(), task, o->z));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string activations = model::describe(model::activation_quant(lm.model));

    if (opts->json) {
      nlohmann::json jt = nlohmann::json::array();
      for (const auto& r : results) {
        nlohmann::json m = nlohmann::json::object();
        for (const auto& metric : r.metrics) {
          m[metric.name] = metric.value;
          // JSON has no NaN: an undefined standard error (one example) is null.
          m[metric.name + "_stderr"] =
              std::isfinite(metric.std_error) ? nlohmann::json(metric.std_error) : nlohmann::json();
        }
        jt.push_back({{"task", r.task},
                      {"file", r.file},
                      {"shape", eval::shape_name(r.shape)},
                      {"examples", r.examples},
                      {"requests", r.requests},
                      {"tokens", r.tokens},
                      {"seconds", r.seconds},
                      {"metrics", m}});
      }
      return print_json({{"model", lm.path},
                         {"activations", activations},
                         {"tasks", jt},
                         {"limit", o->limit},
                         {"bos", o->z.bos},
                         {"batch", o->z.score.batch},
                         {"threads", opts->threads},
                         {"seconds", seconds},
                         {"peak_rss_bytes", peak_rss_bytes()}});
    }
    fmt::print("{}: zero-shot, lm-eval-harness semantics{}; activations: {}\n\n", lm.path,
               o->z.bos ? ", BOS before every context" : "", activations);
    fmt::print("| task | metric | value | stderr | n | seconds |\n|---|---|---:|---:|---:|---:|\n");
    for (const auto& r : results)
      for (size_t i = 0; i < r.metrics.size(); ++i) {
        const auto& m = r.metrics[i];
        const int digits = m.name == "perplexity" ? 2 : 4;
        fmt::print("| {} | {} | {} | {} | {} | {} |\n", i == 0 ? r.task : "", m.name, fixed(m.value, digits),
                   fixed(m.std_error, digits), i == 0 ? std::to_string(r.examples) : "",
                   i == 0 ? fmt::format("{:.1f}", r.seconds) : "");
      }
  });
}

}  // namespace lcq::cli
