// Zero-shot task files (src/eval/zeroshot_tasks.cpp): a JSONL file given to `lcq eval --tasks
// FILE.jsonl` has its shape detected from the first row, then every row is read; the same text
// is also read as each built-in task (their query prefixes differ).
#include "fuzz_common.h"

#include "lcq/eval/zeroshot_tasks.h"

namespace {
const std::string kName = "/nonexistent-lcq-fuzz/task.jsonl";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lcq;
  const std::string text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_clean(kName, [&] {
    const eval::TaskSpec spec = eval::detect_task(kName, text);
    (void)eval::read_task(spec, text);
  });
  for (eval::TaskSpec spec : eval::task_registry()) {
    spec.file = kName;
    fuzz::expect_clean(kName, [&] {
      (void)eval::read_task(spec, text);
    });
  }
  return 0;
}
