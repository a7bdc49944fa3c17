// The files lcq reads and writes (issue 23): atomic writes that never replace a device and
// leave nothing behind on SIGHUP, stale temporaries cleaned, bounded reads, the checks that an
// output is writable and replaces no input, content fingerprints, and the model config checks
// every format shares.
#include "lcq/core/atomic_file.h"
#include "lcq/core/config.h"
#include "lcq/core/error.h"
#include "lcq/core/paths.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace lcq;
namespace fs = std::filesystem;

namespace {

// Runs fn() and returns the message of the lcq::Error it throws ("" when none).
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> v;
  for (const auto& e : fs::directory_iterator(dir)) v.push_back(e.path().filename().string());
  std::sort(v.begin(), v.end());
  return v;
}

// A pid that belonged to a process which has exited (and been reaped).
pid_t dead_pid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

// Reads a FIFO to its end on another thread (opening a FIFO blocks until both ends are open).
std::future<std::string> read_fifo_async(const std::string& path) {
  return std::async(std::launch::async, [path] { return test::read_bytes(path); });
}

}  // namespace

TEST(AtomicFile, WritesAFifoInPlaceInsteadOfRenamingAFileOverIt) {
  const std::string dir = test::scratch_dir();
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto got = read_fifo_async(fifo);
  write_file_atomic(fifo, "{\"a\": 1}\n");
  EXPECT_EQ(got.get(), "{\"a\": 1}\n");
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_EQ(entries(dir), std::vector<std::string>{"pipe"});  // no temporary left either
}

// `--report /dev/null` as root used to rename a regular file over the device. The symlink
// reproduces it harmlessly: before the fix the link itself was replaced by a regular file.
TEST(AtomicFile, WritesACharacterDeviceInPlace) {
  const std::string dir = test::scratch_dir();
  const std::string link = dir + "/null";
  fs::create_symlink("/dev/null", link);
  write_file_atomic(link, "report\n");
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  EXPECT_TRUE(writes_directly("/dev/null"));
  EXPECT_TRUE(writes_directly("/dev/stdout"));
  EXPECT_FALSE(writes_directly(dir + "/x.json"));
  write_file_atomic("/dev/null", "report\n");
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  EXPECT_EQ(entries(dir), std::vector<std::string>{"null"});
}

TEST(AtomicFile, ReplacesTheTargetOfASymlinkAndKeepsTheLink) {
  const std::string dir = test::scratch_dir();
  fs::create_directories(dir + "/real");
  test::write_bytes(dir + "/real/m.gguf", "old");
  fs::create_symlink("real/m.gguf", dir + "/link.gguf");
  write_file_atomic(dir + "/link.gguf", "new");
  EXPECT_TRUE(fs::is_symlink(dir + "/link.gguf"));
  EXPECT_EQ(test::read_bytes(dir + "/real/m.gguf"), "new");
  EXPECT_EQ(entries(dir + "/real"), std::vector<std::string>{"m.gguf"});
}

TEST(AtomicFile, ErrorsNameTheUsersPathNotTheTemporaryFile) {
  const std::string dir = test::scratch_dir();
  const std::string msg = error_of([&] { write_file_atomic(dir + "/missing/out.gguf", "x"); });
  EXPECT_NE(msg.find(dir + "/missing/out.gguf:"), std::string::npos) << msg;
  EXPECT_EQ(msg.find(".tmp-"), std::string::npos) << msg;
  const std::string is_dir = error_of([&] { write_file_atomic(dir, "x"); });
  EXPECT_NE(is_dir.find("is a directory"), std::string::npos) << is_dir;
  EXPECT_EQ(is_dir.find(".tmp-"), std::string::npos) << is_dir;
}

// A child writes and is hit by the signal mid-write: it must die of that signal and leave
// no "<path>.tmp-<pid>" behind. Before the fix SIGHUP (a closed terminal) left it.
void expect_signal_removes_temporary(int sig) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/out.gguf";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    AtomicFile f(out);
    f.write(std::string(1 << 16, 'x'));
    raise(sig);
    _exit(0);  // not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << status;
  EXPECT_TRUE(entries(dir).empty()) << entries(dir).front();
}

TEST(AtomicFile, SighupDuringAWriteRemovesTheTemporaryFile) { expect_signal_removes_temporary(SIGHUP); }
TEST(AtomicFile, SigquitSigintAndSigtermRemoveTheTemporaryFile) {
  for (int sig : {SIGQUIT, SIGINT, SIGTERM}) {
    SCOPED_TRACE(sig);
    expect_signal_removes_temporary(sig);
  }
}

// nohup sets SIGHUP to "ignore": the writer must keep it so, and finish the file.
TEST(AtomicFile, AnIgnoredSighupStaysIgnored) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/out.gguf";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGHUP, SIG_IGN);
    AtomicFile f(out);
    f.write("data");
    raise(SIGHUP);
    f.commit();
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(test::read_bytes(out), "data");
}

TEST(AtomicFile, StaleTemporariesOfDeadProcessesAreRemovedWhenThePathIsWrittenAgain) {
  const std::string dir = test::scratch_dir();
  const std::string out = dir + "/out.gguf";
  const std::string dead = std::to_string(dead_pid()), alive = std::to_string(getppid());
  for (const std::string& name : std::vector<std::string>{"out.gguf.tmp-" + dead, "out.gguf.tmp-" + alive, "out.gguf.tmp-" + dead + "x",
                                  "out.gguf.tmp-", "other.gguf.tmp-" + dead, "out.gguf"})
    test::write_bytes(dir + "/" + name, "x");
  write_file_atomic(out, "new");
  // Only the dead process's temporary of this very path is gone.
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"other.gguf.tmp-" + dead, "out.gguf", "out.gguf.tmp-",
                                                    "out.gguf.tmp-" + alive, "out.gguf.tmp-" + dead + "x"}));
  EXPECT_EQ(test::read_bytes(out), "new");
}

TEST(ReadFile, RefusesDevicesAndDirectoriesInsteadOfReadingForever) {
  const std::string zero = error_of([] { read_file("/dev/zero"); });
  EXPECT_NE(zero.find("/dev/zero: not a regular file (a character device)"), std::string::npos) << zero;
  const std::string dir = test::scratch_dir();
  EXPECT_NE(error_of([&] { read_file(dir); }).find("is a directory"), std::string::npos);
  EXPECT_NE(error_of([&] { read_file(dir + "/none"); }).find(dir + "/none: cannot open"), std::string::npos);
}

TEST(ReadFile, RefusesFilesAndPipesLargerThanTheLimitAndNamesIt) {
  const std::string dir = test::scratch_dir();
  test::write_bytes(dir + "/t.txt", std::string(3000, 'a'));
  EXPECT_EQ(read_file(dir + "/t.txt", 3000).size(), 3000u);
  const std::string big = error_of([&] { read_file(dir + "/t.txt", 2 << 10); });
  EXPECT_NE(big.find("larger than 2 KiB"), std::string::npos) << big;
  // The default limit, on a sparse file just above it (no disk space used, nothing read).
  {
    std::ofstream(dir + "/sparse.txt");
  }
  fs::resize_file(dir + "/sparse.txt", kMaxReadBytes + 1);
  const std::string huge = error_of([&] { read_file(dir + "/sparse.txt"); });
  EXPECT_NE(huge.find("larger than 1 GiB"), std::string::npos) << huge;
  // A pipe is read to its end, within the same bound.
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto writer = std::async(std::launch::async, [&] { test::write_bytes(fifo, std::string(5000, 'b')); });
  EXPECT_EQ(read_file(fifo).size(), 5000u);
  writer.get();
  signal(SIGPIPE, SIG_IGN);  // the reader stops early: the writer's broken pipe is expected
  auto writer2 = std::async(std::launch::async, [&] {
    std::ofstream out(fifo, std::ios::binary);
    out << std::string(5000, 'b');
  });
  EXPECT_NE(error_of([&] { read_file(fifo, 4096); }).find("larger than 4 KiB"), std::string::npos);
  writer2.get();
}

TEST(Paths, SameFileSeesThroughSymlinksHardLinksAndSpellings) {
  const std::string dir = test::scratch_dir();
  test::write_bytes(dir + "/m.gguf", "x");
  test::write_bytes(dir + "/other.gguf", "x");
  fs::create_symlink("m.gguf", dir + "/sym.gguf");
  fs::create_hard_link(dir + "/m.gguf", dir + "/hard.gguf");
  fs::create_directories(dir + "/sub");
  for (const std::string& p : {dir + "/sym.gguf", dir + "/hard.gguf", dir + "/./m.gguf", dir + "/sub/../m.gguf",
                               dir + "//m.gguf"})
    EXPECT_TRUE(same_file(dir + "/m.gguf", p)) << p;
  EXPECT_FALSE(same_file(dir + "/m.gguf", dir + "/other.gguf"));
  EXPECT_FALSE(same_file(dir + "/m.gguf", dir + "/new.gguf"));
  // Two paths that do not exist yet: the same once normalized.
  EXPECT_TRUE(same_file(dir + "/new.gguf", dir + "/sub/../new.gguf"));
  EXPECT_TRUE(same_file(dir + "/sym-dir/new.gguf", dir + "/sym-dir/./new.gguf"));
  EXPECT_FALSE(same_file(dir + "/new.gguf", dir + "/new2.gguf"));
  EXPECT_TRUE(same_file(dir + "/new.gguf/", dir + "/new.gguf"));  // a directory output spelled with a slash
  EXPECT_TRUE(is_within(dir + "/sub/a/b", dir + "/sub"));
  EXPECT_TRUE(is_within(dir + "/sub", dir + "/sub/"));
  EXPECT_FALSE(is_within(dir + "/subx", dir + "/sub"));
}

TEST(Paths, FilePlanRefusesAnOutputThatIsAnInputOrAnotherOutput) {
  const std::string dir = test::scratch_dir();
  test::write_bytes(dir + "/m.gguf", "model");
  test::write_bytes(dir + "/t.txt", "text");
  fs::create_directories(dir + "/hf");
  test::write_bytes(dir + "/hf/config.json", "{}");
  test::write_bytes(dir + "/hf/model.safetensors", "w");
  fs::create_symlink("m.gguf", dir + "/link.gguf");
  const std::vector<std::string> hf_files = {"model.safetensors", "config.json", "tokenizer.json"};
  auto plan_error = [&](const std::function<void(FilePlan&)>& add) {
    FilePlan p;
    p.input("the model", dir + "/m.gguf");
    p.input("--text", dir + "/t.txt");
    p.input("--hf", dir + "/hf");
    add(p);
    return error_of([&] { p.check(); });
  };
  EXPECT_EQ(plan_error([&](FilePlan& p) { p.output_file("-o", dir + "/q.gguf"); }), "");
  EXPECT_EQ(plan_error([&](FilePlan& p) { p.output_file("--report", dir + "/hf/report.json"); }), "");
  EXPECT_NE(plan_error([&](FilePlan& p) { p.output_file("-o", dir + "/link.gguf"); })
                .find("-o " + dir + "/link.gguf would overwrite the model " + dir + "/m.gguf"),
            std::string::npos);
  EXPECT_NE(plan_error([&](FilePlan& p) { p.output_file("--report", dir + "/./t.txt"); }).find("would overwrite --text"),
            std::string::npos);
  // An export onto the input directory itself.
  EXPECT_NE(plan_error([&](FilePlan& p) { p.output_directory("--export-fake", dir + "/hf/", hf_files); })
                .find("--export-fake " + dir + "/hf/ would overwrite --hf"),
            std::string::npos);
  EXPECT_EQ(plan_error([&](FilePlan& p) { p.output_directory("--export-fake", dir + "/hf2", hf_files); }), "");
  // Two outputs.
  EXPECT_NE(plan_error([&](FilePlan& p) {
              p.output_file("-o", dir + "/q.gguf");
              p.output_file("--report", dir + "/sub/../q.gguf");
            }).find("are the same file"),
            std::string::npos);
  EXPECT_NE(plan_error([&](FilePlan& p) {
              p.output_directory("--export-fake", dir + "/out", hf_files);
              p.output_file("--report", dir + "/out/config.json");
            }).find("are the same file"),
            std::string::npos);
  // A results directory: its subdirectories must not hold an input.
  fs::create_directories(dir + "/res/models");
  test::write_bytes(dir + "/res/models/in.gguf", "m");
  FilePlan results;
  results.input("the model", dir + "/res/models/in.gguf");
  results.output_directory("-o", dir + "/res", {"models", "runs", "compare.md"});
  EXPECT_NE(error_of([&] { results.check(); }).find("would overwrite the model"), std::string::npos);
  FilePlan beside;  // a model next to the results is fine
  beside.input("the model", dir + "/m.gguf");
  beside.output_directory("-o", dir, {"models", "runs", "compare.md"});
  EXPECT_EQ(error_of([&] { beside.check(); }), "");
  // /dev/null twice destroys nothing.
  FilePlan nulls;
  nulls.output_file("--report", "/dev/null");
  nulls.output_file("--log", "/dev/null");
  EXPECT_EQ(error_of([&] { nulls.check(); }), "");
}

TEST(Paths, OutputLocationsAreCheckedByCreatingAFileThere) {
  const std::string dir = test::scratch_dir();
  test::write_bytes(dir + "/file.txt", "x");
  EXPECT_EQ(error_of([&] { check_output_file(dir + "/new.gguf"); }), "");
  EXPECT_EQ(error_of([&] { check_output_file(dir + "/file.txt"); }), "");  // replaced atomically
  EXPECT_EQ(error_of([&] { check_output_file("/dev/null"); }), "");
  EXPECT_EQ(entries(dir), std::vector<std::string>{"file.txt"});  // the probe removed its file
  EXPECT_NE(error_of([&] { check_output_file(dir + "/nodir/x.gguf"); }).find("the directory " + dir + "/nodir does not exist"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_output_file(dir + "/file.txt/x.gguf"); }).find("is not a directory"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_output_file(dir); }).find("is a directory"), std::string::npos);
  EXPECT_NE(error_of([&] { check_output_file("/proc/lcq-test.gguf"); }).find("/proc/lcq-test.gguf"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_output_file("/dev/lcq-typo"); }).find("does not exist"), std::string::npos);
  EXPECT_FALSE(fs::exists("/dev/lcq-typo"));
  // Directories: an existing one, one to create (with its parents), and impossible ones.
  EXPECT_EQ(error_of([&] { check_output_directory(dir + "/a/b/c"); }), "");
  EXPECT_FALSE(fs::exists(dir + "/a"));
  EXPECT_NE(error_of([&] { check_output_directory(dir + "/file.txt"); }).find("is not a directory"), std::string::npos);
  EXPECT_NE(error_of([&] { check_output_directory(dir + "/file.txt/sub"); }).find("is not a directory"),
            std::string::npos);
  EXPECT_NE(error_of([&] { check_output_directory("/proc/lcq-test/hf"); }).find("cannot create files in /proc"),
            std::string::npos);
  FilePlan plan;
  plan.output_file("--report", dir + "/nodir/r.json");
  const std::string msg = error_of([&] { plan.check(); });
  EXPECT_EQ(msg.rfind("--report " + dir + "/nodir/r.json: the directory", 0), 0u) << msg;
}

TEST(Paths, ContentFingerprintFollowsTheBytesNotTheSize) {
  const std::string dir = test::scratch_dir();
  test::write_bytes(dir + "/a.txt", "hello world");
  const std::string fa = content_fingerprint(dir + "/a.txt");
  EXPECT_EQ(fa.size(), 16u);
  EXPECT_EQ(content_fingerprint(dir + "/a.txt"), fa);
  test::write_bytes(dir + "/a.txt", "hello worle");  // same size, one byte changed
  EXPECT_NE(content_fingerprint(dir + "/a.txt"), fa);
  // A directory: its files' names and bytes.
  fs::create_directories(dir + "/hf");
  test::write_bytes(dir + "/hf/config.json", "{}");
  test::write_bytes(dir + "/hf/model.safetensors", "abcd");
  const std::string fd = content_fingerprint(dir + "/hf");
  test::write_bytes(dir + "/hf/model.safetensors", "abce");
  EXPECT_NE(content_fingerprint(dir + "/hf"), fd);
  EXPECT_NE(error_of([&] { content_fingerprint(dir + "/none"); }).find("cannot open"), std::string::npos);
}

// One validation for every format: HF config.json used to accept what GGUF refused.
TEST(ModelConfig, RefusesNonPositiveOrNonFiniteEpsilonAndRopeSettings) {
  ModelConfig c;
  c.dim = 64, c.hidden_dim = 172, c.n_layers = 2, c.n_heads = 8, c.n_kv_heads = 4, c.head_dim = 8;
  c.vocab_size = 512, c.max_seq_len = 256;
  EXPECT_EQ(error_of([&] { c.validate("m"); }), "");
  struct Case {
    std::function<void(ModelConfig&)> edit;
    std::string message;
  } cases[] = {
      {[](ModelConfig& m) { m.norm_eps = -1; }, "m: invalid normalisation epsilon -1"},
      {[](ModelConfig& m) { m.norm_eps = NAN; }, "epsilon nan"},
      {[](ModelConfig& m) { m.norm_eps = 0; }, "epsilon 0"},
      {[](ModelConfig& m) { m.rope_theta = 0; }, "m: invalid RoPE base (rope_theta) 0"},
      {[](ModelConfig& m) { m.rope_theta = INFINITY; }, "rope_theta) inf"},
      {[](ModelConfig& m) { m.rope_theta = NAN; }, "rope_theta) nan"},
      {[](ModelConfig& m) { m.rope_scaling.type = "linear", m.rope_scaling.factor = 0; }, "rope scaling factor 0"},
      {[](ModelConfig& m) { m.rope_scaling.type = "llama3", m.rope_scaling.low_freq_factor = 4; }, "llama3"},
  };
  for (const auto& k : cases) {
    ModelConfig bad = c;
    k.edit(bad);
    const std::string msg = error_of([&] { bad.validate("m"); });
    EXPECT_NE(msg.find(k.message), std::string::npos) << msg;
  }
}
