// Zero-shot task files: the registry of built-in tasks and the reader of their JSONL files
// (MosaicML llm-foundry's format, docs/zeroshot.md). No libtorch: the fuzzer links it alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lcq::eval {

enum class TaskShape {
  MultipleChoice,  // {query, choices, gold}: requests (query, " " + choice)
  Partial,         // {context_options, continuation, gold}: requests (option, " " + continuation)
  Lambada,         // {context, continuation}: one request (context, " " + continuation)
};
const char* shape_name(TaskShape shape);

// A task: its file (relative to the data directory unless absolute), shape and how the
// file's query becomes lm-eval's prompt (strip `query_prefix`, which must be there, then
// append `query_suffix`).
struct TaskSpec {
  std::string name, file;
  TaskShape shape = TaskShape::MultipleChoice;
  std::string query_prefix, query_suffix;
};

// The built-in tasks: piqa, arc_easy, arc_challenge, winogrande, lambada_openai, boolq, copa,
// openbookqa, siqa, wsc273.
const std::vector<TaskSpec>& task_registry();

// A comma-separated list of registry names, `all`, or paths of JSONL files (a task named after
// the file, its shape detected from the first row's fields) -> specs with resolved paths.
std::vector<TaskSpec> resolve_tasks(const std::string& list, const std::string& data_dir);

// One example as requests: contexts[i] + continuations[i] for each request i.
struct Example {
  int64_t line = 0;  // 1-based line in the task file
  std::vector<std::string> contexts, continuations;
  int gold = -1;                    // index of the correct request (-1: Lambada)
  std::vector<double> norm_length;  // MultipleChoice: acc_norm divisor per choice (characters)
};

struct Task {
  TaskSpec spec;
  std::vector<Example> examples;
};

// Reads up to `limit` examples (0 = all). Bad rows throw lcq::Error("FILE:LINE: problem").
Task load_task(const TaskSpec& spec, int64_t limit = 0);

// The same two steps on a file's text (the fuzzer's entry; errors name `path` or spec.file):
// what resolve_tasks() makes of the JSONL file `path`, and load_task().
TaskSpec detect_task(const std::string& path, const std::string& text);
Task read_task(const TaskSpec& spec, const std::string& text, int64_t limit = 0);

}  // namespace lcq::eval
