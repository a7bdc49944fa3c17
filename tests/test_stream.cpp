// Streamed quantization (issue 23): `lcq quantize` reads the model a block at a time, keeps
// the finished blocks in OUT.lcq-resume/ while it runs, continues an interrupted run with
// --resume, keeps calibration activations on disk with --offload-activations, and refuses a
// run that would not fit in memory. Every output is compared byte for byte with a file made
// independently: the in-memory path (forced by --export-fake, which changes nothing in the
// quantized file) or an uninterrupted run.
#include "test_util.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace lcq {
namespace {

namespace fs = std::filesystem;
using test::read_bytes;
using test::run_lcq;
using test::stories_bin;
using test::stories_tok;

std::string model_args() { return stories_bin() + " --tokenizer " + stories_tok() + " --threads 2"; }

// Runs `lcq quantize ARGS -o OUT` and requires success.
void quantize(const std::string& args, const std::string& out) {
  const auto r = run_lcq("quantize " + model_args() + " -o " + out + " " + args + " --quiet");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".lcq-resume")) << "the checkpoint is removed after a successful run";
}

// The streamed run writes the bytes the in-memory path writes (the path every earlier
// version took), for each kind of method: trained codebooks, GPTQ, AWQ (which folds scales
// into the norms and carries activations between blocks), learned grids, RTN without
// calibration, and a quantized embedding and head.
TEST(Stream, SameBytesAsTheModelInMemory) {
  const std::string dir = test::scratch_dir();
  const std::string calib = " --calib " + test::tinystories() + " --nsamples 8 --seqlen 64";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"lcq", "--bits 2 --group 32 --rank 2 --epochs 1" + calib},
      {"lcq-embed", "--bits 2 --group 32 --rank 2 --epochs 1 --embed-bits 4 --dq-bits 8" + calib},
      {"gptq", "--method gptq --bits 3 --group 32" + calib},
      {"awq", "--method awq --bits 3 --group 32" + calib},
      {"flexround", "--method flexround --bits 3 --group 32 --epochs 1" + calib},
      {"lcq-init-gptq", "--bits 2 --group 32 --rank 2 --epochs 1 --init gptq" + calib},
      {"rtn", "--method rtn --bits 4 --group 32"},
  };
  for (const auto& [name, args] : cases) {
    SCOPED_TRACE(name);
    const std::string streamed = dir + "/" + name + "-streamed.gguf", memory = dir + "/" + name + "-memory.gguf";
    quantize(args, streamed);
    quantize(args + " --export-fake " + dir + "/" + name + "-fake.gguf", memory);
    EXPECT_TRUE(read_bytes(streamed) == read_bytes(memory)) << "the streamed output differs from the in-memory one";
  }
}

// Offloaded activations are the same numbers, kept in files: the same bytes; and nothing is
// left in the directory.
TEST(Stream, OffloadedActivationsGiveTheSameFile) {
  const std::string dir = test::scratch_dir(), acts = dir + "/acts";
  fs::create_directories(acts);
  const std::string args =
      "--bits 2 --group 32 --rank 2 --epochs 1 --calib " + test::tinystories() + " --nsamples 16 --seqlen 64";
  quantize(args, dir + "/memory.gguf");
  quantize(args + " --offload-activations " + acts, dir + "/offloaded.gguf");
  EXPECT_TRUE(read_bytes(dir + "/memory.gguf") == read_bytes(dir + "/offloaded.gguf"));
  EXPECT_TRUE(fs::is_empty(acts)) << "activation files are unlinked as soon as they are mapped";
  const auto r = run_lcq("quantize " + model_args() + " -o " + dir + "/x.gguf " + args + " --offload-activations " +
                         dir + "/missing --quiet");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--offload-activations"), std::string::npos) << r.err;
}

// Starts `lcq ARGS` in the background; returns its pid.
pid_t spawn_lcq(const std::string& args, const std::string& log) {
  const std::string cmd = "exec " + std::string(LCQ_BINARY_DIR) + "/src/lcq " + args + " >" + log + " 2>&1";
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

int finished_blocks(const std::string& ckpt) {
  int n = 0;
  while (fs::exists(ckpt + "/block-" + std::to_string(n) + ".gguf")) ++n;
  return fs::exists(ckpt + "/state.gguf") ? n : 0;
}

// The acceptance test of --resume: a run killed with SIGKILL after its first finished block
// (no handler runs), continued with --resume, writes the file an uninterrupted run writes.
TEST(Stream, ResumeAfterSigkillIsByteIdentical) {
  const std::string dir = test::scratch_dir();
  auto with_seed = [](int seed) {
    return "--bits 2 --group 32 --rank 2 --epochs 6 --calib " + test::tinystories() +
           " --nsamples 32 --seqlen 128 --seed " + std::to_string(seed);
  };
  const std::string args = with_seed(7);
  quantize(args, dir + "/whole.gguf");

  const std::string out = dir + "/resumed.gguf", ckpt = out + ".lcq-resume";
  const pid_t pid = spawn_lcq("quantize " + model_args() + " -o " + out + " " + args + " --quiet", dir + "/log");
  ASSERT_GT(pid, 0);
  int done = 0, status = 0;
  bool exited = false;
  for (int i = 0; i < 60000 && done == 0; ++i) {  // up to 10 minutes on a loaded machine
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    done = finished_blocks(ckpt);
    if (waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      break;
    }
  }
  ASSERT_FALSE(exited) << "the run ended before it could be killed: " << read_bytes(dir + "/log");
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  done = finished_blocks(ckpt);
  ASSERT_GE(done, 1);
  ASSERT_LT(done, 5) << "stories260K has 5 blocks: the run was killed midway";
  EXPECT_FALSE(fs::exists(out)) << "nothing is written to the output before the end";

  // Without --resume the finished blocks are not thrown away.
  auto r = run_lcq("quantize " + model_args() + " -o " + out + " " + args + " --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--resume"), std::string::npos) << r.err;
  // Another run's checkpoint (here: another seed) is refused.
  r = run_lcq("quantize " + model_args() + " -o " + out + " " + with_seed(8) + " --resume --quiet");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("another run"), std::string::npos) << r.err;
  EXPECT_GE(finished_blocks(ckpt), done) << "a refused resume leaves the checkpoint alone";

  quantize(args + " --resume", out);
  EXPECT_TRUE(read_bytes(out) == read_bytes(dir + "/whole.gguf")) << "the resumed file differs";
}

// --resume with nothing to resume starts from the first block (scripts may always pass it).
TEST(Stream, ResumeWithoutCheckpointStartsOver) {
  const std::string dir = test::scratch_dir();
  quantize("--method rtn --bits 4 --group 32", dir + "/a.gguf");
  quantize("--method rtn --bits 4 --group 32 --resume", dir + "/b.gguf");
  EXPECT_TRUE(read_bytes(dir + "/a.gguf") == read_bytes(dir + "/b.gguf"));
}

// Options that need the whole model in memory cannot be resumed or offloaded: refused as a
// usage error before any work.
TEST(Stream, ResumeNeedsTheStreamedPath) {
  const std::string dir = test::scratch_dir();
  const auto r = run_lcq("quantize " + model_args() + " -o " + dir + "/q.gguf --method rtn --resume --export-fake " +
                         dir + "/f.gguf --quiet");
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--export-fake"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/q.gguf"));
}

// The memory guard: a run estimated to need more than the limit is refused before any work,
// naming the option that makes it fit.
TEST(Stream, MemoryGuardRefusesAndNamesTheFix) {
  const std::string dir = test::scratch_dir();
  // 1,500 windows of 256 tokens: about 0.4 GB of activations against a 600 MB limit.
  const std::string big = "--method rtn --bits 4 --group 32 --calib " + test::tinystories() +
                          " --nsamples 1500 --seqlen 256 --max-memory 600M";
  auto r = run_lcq("quantize " + model_args() + " -o " + dir + "/q.gguf " + big + " --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("needs about"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--offload-activations"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/q.gguf"));
  EXPECT_FALSE(fs::exists(dir + "/q.gguf.lcq-resume"));

  // A limit no run fits: the message says so and names the limit.
  r = run_lcq("quantize " + model_args() + " -o " + dir + "/q.gguf --method rtn --max-memory 1M --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("--max-memory"), std::string::npos) << r.err;

  r = run_lcq("quantize " + model_args() + " -o " + dir + "/q.gguf --method rtn --max-memory lots --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("--max-memory must be a size"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lcq
