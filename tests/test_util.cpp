#include "test_util.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <sys/wait.h>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace lcq::test {

std::string shared_dir() { return LCQ_SHARED_DIR; }

std::string shared(const std::string& rel) { return shared_dir() + "/" + rel; }

std::string smollm2_gguf() {
  const char* p = std::getenv("LCQ_SMOLLM2_GGUF");
  if (p && fs::exists(p)) return p;
  return "";
}

std::string scratch_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "lcq-test";
  fs::path dir = fs::temp_directory_path() / ("lcq-test-" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

namespace {

CommandResult run_shell(const std::string& prefix, const std::string& args, const std::string& program = "lcq") {
  char tmpl[] = "/tmp/lcq-cli-XXXXXX";  // not scratch_dir(): that one belongs to the test
  const std::string dir = mkdtemp(tmpl);
  const std::string cmd = prefix + std::string(LCQ_BINARY_DIR) + "/src/" + program + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  const int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_bytes(dir + "/out");
  r.err = read_bytes(dir + "/err");
  fs::remove_all(dir);
  return r;
}

}  // namespace

CommandResult run_lcq(const std::string& args) { return run_shell("", args); }
CommandResult run_lcq_run(const std::string& args) { return run_shell("", args, "lcq-run"); }

CommandResult run_lcq_bounded(const std::string& args) {
#if defined(__SANITIZE_ADDRESS__)
  // AddressSanitizer reserves terabytes of address space for its shadow memory at start, which
  // an address-space limit forbids: under it the bound is its own resident-memory limit.
  return run_shell("ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}hard_rss_limit_mb=6144 timeout -s KILL 300 ", args);
#else
  return run_shell("ulimit -v " + std::to_string(6 << 20) + "; timeout -s KILL 300 ", args);
#endif
}

std::string stories_bin() { return shared("models/stories260K/stories260K.bin"); }
std::string stories_tok() { return shared("models/stories260K/tok512.bin"); }
std::string tinystories() { return shared("data/tinystories/tinystories_val.txt"); }

void expect_refused(const CommandResult& r, const std::string& part, const std::string& what, int code,
                    const std::string& program) {
  if (code == 0)
    EXPECT_TRUE(r.exit_code == 1 || r.exit_code == 2) << what << ": exit " << r.exit_code << "\n" << r.err;
  else
    EXPECT_EQ(r.exit_code, code) << what << "\n" << r.err;
  EXPECT_EQ(r.err.rfind(program + ": error: ", 0), 0u) << what << "\n" << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << what << "\n" << r.err;
  EXPECT_NE(r.err.find(part), std::string::npos) << what << "\n" << r.err;
}

}  // namespace lcq::test
