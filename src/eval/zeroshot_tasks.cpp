// Zero-shot tasks: the registry of built-in tasks and the reader of their JSONL files
// (MosaicML llm-foundry's format, docs/zeroshot.md). Every problem in a file is reported as
// "FILE:LINE: problem".
#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/eval/zeroshot_tasks.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>
#include <set>

namespace lcq::eval {

const char* shape_name(TaskShape shape) {
  switch (shape) {
    case TaskShape::MultipleChoice: return "multiple_choice";
    case TaskShape::Partial: return "partial";
    case TaskShape::Lambada: return "lambada";
  }
  return "?";
}

const std::vector<TaskSpec>& task_registry() {
  // The prefix/suffix edits turn the llm-foundry query into the prompt of lm-eval's own task
  // (its yaml's doc_to_text), so that our numbers are comparable with lm-eval's:
  //   piqa   file "Question: {goal}\n"                 lm-eval "Question: {goal}\nAnswer:"
  //   arc    file "Question: {question}"               lm-eval "Question: {question}\nAnswer:"
  //   boolq  file "Passage: {passage}\nQuestion: {q}?" lm-eval "{passage}\nQuestion: {q}?\nAnswer:"
  // copa, openbookqa, winogrande, wsc273 and lambada_openai files already hold lm-eval's
  // strings. siqa is llm-foundry's own two-choice "A"/"B" prompt, used as it is.
  static const std::vector<TaskSpec> tasks = {
      {"piqa", "piqa.jsonl", TaskShape::MultipleChoice, "", "Answer:"},
      {"arc_easy", "arc_easy.jsonl", TaskShape::MultipleChoice, "", "\nAnswer:"},
      {"arc_challenge", "arc_challenge.jsonl", TaskShape::MultipleChoice, "", "\nAnswer:"},
      {"winogrande", "winogrande.jsonl", TaskShape::Partial, "", ""},
      {"lambada_openai", "lambada_openai.jsonl", TaskShape::Lambada, "", ""},
      {"boolq", "boolq.jsonl", TaskShape::MultipleChoice, "Passage: ", "\nAnswer:"},
      {"copa", "copa.jsonl", TaskShape::MultipleChoice, "", ""},
      {"openbookqa", "openbook_qa.jsonl", TaskShape::MultipleChoice, "", ""},
      {"siqa", "siqa.jsonl", TaskShape::MultipleChoice, "", ""},
      {"wsc273", "winograd_wsc.jsonl", TaskShape::Partial, "", ""},
  };
  return tasks;
}

namespace {

// One parsed row with the position it came from, so every complaint can name FILE:LINE.
struct Row {
  const std::string& file;
  int64_t line;
  const nlohmann::json& j;

  template <typename... Args>
  [[noreturn]] void fail_here(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}:{}: {}", file, line, fmt::format(format, std::forward<Args>(args)...));
  }
  const nlohmann::json& field(const char* key) const {
    auto it = j.find(key);
    if (it == j.end()) fail_here("missing field \"{}\"", key);
    return *it;
  }
  std::string string(const char* key) const {
    const auto& v = field(key);
    if (!v.is_string()) fail_here("field \"{}\" must be a string", key);
    return v.get<std::string>();
  }
  std::vector<std::string> strings(const char* key) const {
    const auto& v = field(key);
    if (!v.is_array()) fail_here("field \"{}\" must be an array of strings", key);
    if (v.empty()) fail_here("field \"{}\" is empty", key);
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) fail_here("{}[{}] must be a string", key, i);
      out.push_back(v[i].get<std::string>());
      if (out.back().empty()) fail_here("{}[{}] is an empty string", key, i);
    }
    return out;
  }
  int gold(size_t n_options) const {
    const auto& v = field("gold");
    if (!v.is_number_integer()) fail_here("field \"gold\" must be an integer");
    const int64_t g = v.get<int64_t>();
    if (g < 0 || g >= int64_t(n_options)) fail_here("gold {} is out of range for {} options", g, n_options);
    return int(g);
  }
};

// Characters (Unicode code points) of UTF-8 text: lm-eval divides by Python's len(choice).
double code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return double(n);
}

Example make_example(const TaskSpec& spec, const Row& row) {
  Example ex;
  ex.line = row.line;
  switch (spec.shape) {
    case TaskShape::MultipleChoice: {
      std::string query = row.string("query");
      if (query.compare(0, spec.query_prefix.size(), spec.query_prefix) != 0)
        row.fail_here("query does not start with \"{}\" as task {} expects", spec.query_prefix, spec.name);
      query = query.substr(spec.query_prefix.size()) + spec.query_suffix;
      const auto choices = row.strings("choices");
      ex.gold = row.gold(choices.size());
      for (const auto& c : choices) {
        ex.contexts.push_back(query);
        ex.continuations.push_back(" " + c);
        ex.norm_length.push_back(code_points(c));
      }
      break;
    }
    case TaskShape::Partial: {
      const auto options = row.strings("context_options");
      const std::string continuation = row.string("continuation");
      if (continuation.empty()) row.fail_here("field \"continuation\" is empty");
      ex.gold = row.gold(options.size());
      for (const auto& o : options) {
        ex.contexts.push_back(o);
        ex.continuations.push_back(" " + continuation);
      }
      break;
    }
    case TaskShape::Lambada: {
      ex.contexts.push_back(row.string("context"));
      const std::string continuation = row.string("continuation");
      if (continuation.empty()) row.fail_here("field \"continuation\" is empty");
      ex.continuations.push_back(" " + continuation);
      break;
    }
  }
  return ex;
}

// Calls fn(line_number, json) for every non-blank line of `text` (the contents of `file`)
// until fn returns false.
template <typename Fn>
void for_each_row(const std::string& file, const std::string& contents, Fn fn) {
  std::istringstream in(contents);
  std::string text;
  for (int64_t line = 1; std::getline(in, text); ++line) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      // Syntax errors and numbers beyond double's range (out_of_range.406); nlohmann's message
      // reads "[json.exception.parse_error.101] parse error at ...".
      std::string why = e.what();
      if (auto p = why.find("] "); p != std::string::npos) why = why.substr(p + 2);
      fail("{}:{}: not valid JSON: {}", file, line, why);
    }
    if (!j.is_object()) fail("{}:{}: expected a JSON object", file, line);
    if (!fn(line, j)) return;
  }
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

}  // namespace

TaskSpec detect_task(const std::string& path, const std::string& text) {
  namespace fs = std::filesystem;
  TaskSpec spec;
  spec.name = fs::path(path).stem().string();
  spec.file = path;
  bool found = false;
  for_each_row(path, text, [&](int64_t line, const nlohmann::json& j) {
    if (j.contains("choices")) {
      spec.shape = TaskShape::MultipleChoice;
    } else if (j.contains("context_options")) {
      spec.shape = TaskShape::Partial;
    } else if (j.contains("context") && j.contains("continuation")) {
      spec.shape = TaskShape::Lambada;
    } else {
      fail("{}:{}: cannot tell the task's shape: expected the fields query/choices/gold, "
           "context_options/continuation/gold or context/continuation",
           path, line);
    }
    found = true;
    return false;
  });
  LCQ_CHECK(found, "{}: the task file has no examples", path);
  return spec;
}

std::vector<TaskSpec> resolve_tasks(const std::string& list, const std::string& data_dir) {
  namespace fs = std::filesystem;
  std::vector<TaskSpec> out;
  std::set<std::string> seen;
  auto add = [&](TaskSpec spec) {
    if (seen.insert(spec.name).second) out.push_back(std::move(spec));
  };
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = trim(list.substr(start, comma - start));
    start = comma + 1;
    LCQ_CHECK(!item.empty(), "--tasks '{}': empty task name", list);
    const bool is_path = item.find('/') != std::string::npos ||
                         (item.size() > 6 && item.compare(item.size() - 6, 6, ".jsonl") == 0);
    if (is_path) {
      add(detect_task(item, read_file(item)));  // read whole: bounded, devices refused
      continue;
    }
    bool known = false;
    for (const auto& t : task_registry()) {
      if (item != "all" && item != t.name) continue;
      TaskSpec spec = t;
      if (!data_dir.empty() && !fs::path(spec.file).is_absolute())
        spec.file = (fs::path(data_dir) / spec.file).string();
      add(std::move(spec));
      known = true;
    }
    if (!known) {
      std::string names;
      for (const auto& t : task_registry()) names += (names.empty() ? "" : ", ") + t.name;
      fail("unknown task '{}' (known: {}, all, or the path of a .jsonl file)", item, names);
    }
  }
  return out;
}

Task load_task(const TaskSpec& spec, int64_t limit) {
  // Read whole (bounded, and refusing devices such as /dev/zero, whose one endless line would
  // fill the memory).
  return read_task(spec, read_file(spec.file), limit);
}

Task read_task(const TaskSpec& spec, const std::string& text, int64_t limit) {
  Task task;
  task.spec = spec;
  for_each_row(spec.file, text, [&](int64_t line, const nlohmann::json& j) {
    task.examples.push_back(make_example(spec, Row{spec.file, line, j}));
    return limit <= 0 || int64_t(task.examples.size()) < limit;
  });
  LCQ_CHECK(!task.examples.empty(), "{}: the task file has no examples", spec.file);
  return task;
}

}  // namespace lcq::eval
