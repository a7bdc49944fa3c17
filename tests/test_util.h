// Helpers shared by the tests: where the real data lives, scratch directories, corruption.
#pragma once

#include <string>

namespace lcq::test {

std::string shared_dir();                 // ../shared (LCQ_SHARED_DIR)
std::string shared(const std::string& rel);  // shared_dir() + "/" + rel, skips the test if missing
std::string smollm2_gguf();                // $LCQ_SMOLLM2_GGUF or "" (tests GTEST_SKIP on "")
// The stories260K model, its tokenizer and the TinyStories validation text in ../shared.
std::string stories_bin();
std::string stories_tok();
std::string tinystories();
std::string scratch_dir();                // a fresh temporary directory for this test
std::string read_bytes(const std::string& path);
void write_bytes(const std::string& path, const std::string& bytes);

// Runs the lcq binary of this build with `args` (shell syntax) and collects its output.
struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};
CommandResult run_lcq(const std::string& args);
CommandResult run_lcq_run(const std::string& args);  // the lcq-run binary (no libtorch)
// The same under a 6 GiB address-space limit and a 5-minute timeout: for cases that used to
// read or allocate without bound, so that a regression fails the test instead of the machine.
CommandResult run_lcq_bounded(const std::string& args);
// Expects one error line "<program>: error: ..." mentioning `part` and exit status `code` (0:
// any failure, 1 for lcq::Error or 2 for a usage error); `what` names the case in failures.
void expect_refused(const CommandResult& r, const std::string& part, const std::string& what, int code = 1,
                    const std::string& program = "lcq");

}  // namespace lcq::test
