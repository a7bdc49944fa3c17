// The lcq commands against a careless or hostile user (issue 23), each case as the user met
// it: the real binary on stories260K. Inputs are never overwritten, output locations are
// checked before any work, diverged or NaN models are refused instead of written or scored,
// reads are bounded, stale temporaries are cleaned, and every floating-point option refuses
// NaN and infinity.
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <regex>
#include <sstream>
#include <set>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace lcq {
namespace {

namespace fs = std::filesystem;
using test::expect_refused;
using test::run_lcq;
using test::stories_bin;
using test::stories_tok;
using test::tinystories;


// stories260K as a GGUF file (with its tokenizer) in `dir`.
std::string stories_gguf(const std::string& dir) {
  const std::string out = dir + "/s.gguf";
  auto r = run_lcq("convert " + stories_bin() + " --tokenizer " + stories_tok() + " " + out + " --quiet");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return out;
}

// A copy of the first `chars` characters of the TinyStories validation text.
std::string text_copy(const std::string& path, size_t chars) {
  test::write_bytes(path, test::read_bytes(tinystories()).substr(0, chars));
  return path;
}

std::set<std::string> entries(const std::string& dir) {
  std::set<std::string> s;
  for (const auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

// Opens and closes the other end of a FIFO without blocking, so that a test thread waiting on
// it returns even when lcq failed before opening it.
void release_fifo(const std::string& path, int mode) {
  const int fd = open(path.c_str(), mode | O_NONBLOCK);
  if (fd >= 0) close(fd);
}

// stories260K.bin (llama2.c) offsets, in floats after the 28-byte header: dim 64, hidden 172,
// 5 layers, kv dim 32, vocabulary 512.
constexpr size_t kEmbedding = 0, kAttnNorm0 = 512 * 64;
constexpr size_t kOutputNorm = 512 * 64 + 5 * 64 + 5 * 64 * 64 + 2 * 5 * 64 * 32 + 5 * 64 * 64 + 5 * 64 + 3 * 5 * 172 * 64;

std::string stories_with(const std::string& path, size_t float_index, float value) {
  std::string bytes = test::read_bytes(stories_bin());
  std::memcpy(&bytes[28 + 4 * float_index], &value, 4);
  test::write_bytes(path, bytes);
  return path;
}

// ---- 1. inputs overwritten ----------------------------------------------------------------

TEST(InputsOverwritten, QuantizeRefusesAnOutputThatIsItsInputHoweverSpelled) {
  const std::string dir = test::scratch_dir();
  const std::string model = stories_gguf(dir);
  const std::string bytes = test::read_bytes(model);
  fs::create_symlink("s.gguf", dir + "/link.gguf");
  fs::create_hard_link(model, dir + "/hard.gguf");
  fs::create_directories(dir + "/sub");
  for (const std::string& out : {model, dir + "/./s.gguf", dir + "/sub/../s.gguf", dir + "/link.gguf",
                                 dir + "/hard.gguf"}) {
    auto r = run_lcq("quantize " + model + " -o " + out + " --method rtn --quiet");
    expect_refused(r, "-o " + out + " would overwrite the model " + model, out);
  }
  EXPECT_EQ(test::read_bytes(model), bytes);
  EXPECT_EQ(entries(dir), (std::set<std::string>{"s.gguf", "link.gguf", "hard.gguf", "sub"}));
  auto ok = run_lcq("quantize " + model + " -o " + dir + "/q.gguf --method rtn --quiet");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST(InputsOverwritten, ReportAndExportFakeNeverNameAnInputOrTheOutput) {
  const std::string dir = test::scratch_dir();
  const std::string model = stories_gguf(dir);
  const std::string hf = dir + "/hf";
  ASSERT_EQ(run_lcq("convert " + model + " " + hf + " --quiet").exit_code, 0);
  const std::string text = text_copy(dir + "/t.txt", 20000);
  const std::string q = dir + "/q.gguf";
  const std::string quant = "quantize " + model + " -o " + q + " --method rtn --quiet";
  const std::string calib = " --calib " + text + " --nsamples 2 --seqlen 32";
  struct Case {
    std::string args, message;
  } cases[] = {
      {quant + " --report " + model, "--report " + model + " would overwrite the model"},
      {quant + calib + " --report " + text, "would overwrite --calib " + text},
      {quant + " --report " + q, "--report " + q + " and -o " + q + " are the same file"},
      {quant + " --export-fake " + model, "--export-fake " + model + " would overwrite the model"},
      {quant + " --export-fake " + dir + "/./q.gguf", "are the same file"},
      {quant + " --export-fake " + q + "/", "are the same file"},  // a directory named as the output
      {quant + " --export-fake " + dir + "/e --report " + dir + "/e/config.json", "are the same file"},
      {"quantize " + hf + " -o " + q + " --method rtn --quiet --export-fake " + hf, "would overwrite the model " + hf},
      {"quantize " + hf + " -o " + q + " --method rtn --quiet --report " + hf + "/config.json", "would overwrite"},
      {"quantize " + hf + "/config.json -o " + q + " --method rtn --quiet --export-fake " + hf,
       "would overwrite the model"},
      {"perplexity " + model + " --text " + text + " --report " + text, "--report " + text + " would overwrite --text"},
      {"perplexity " + model + " --text " + text + " --report " + model, "would overwrite the model"},
      {"perplexity " + stories_bin() + " --tokenizer " + stories_tok() + " --text " + text + " --kl-reference " +
           model + " --protocol llamacpp --report " + model,
       "would overwrite --kl-reference"},
      {"convert " + model + " " + model, "would overwrite the model"},
      {"convert " + model + " " + dir + "/link-to-s.gguf", "would overwrite the model"},
      {"convert " + hf + " " + hf, "would overwrite the model " + hf},
      // The tokenizer a llama2.c checkpoint finds beside it is an input too.
      {"perplexity " + dir + "/l2c/m.bin --quiet --text " + text + " --report " + dir + "/l2c/tok512.bin",
       "would overwrite the model's tokenizer"},
      {"quantize " + dir + "/l2c/m.bin -o " + dir + "/l2c/tok512.bin.gguf --method rtn --quiet --report " + dir +
           "/l2c/tok512.bin",
       "would overwrite the model's tokenizer"},
      {"convert " + model + " " + hf + " --to hf", ""},  // a new export over an HF directory that is no input: fine
  };
  fs::create_symlink(model, dir + "/link-to-s.gguf");
  fs::create_directories(dir + "/l2c");
  fs::copy_file(stories_bin(), dir + "/l2c/m.bin");
  fs::copy_file(stories_tok(), dir + "/l2c/tok512.bin");
  const std::string model_bytes = test::read_bytes(model), text_bytes = test::read_bytes(text),
                    hf_config = test::read_bytes(hf + "/config.json");
  for (const auto& c : cases) {
    auto r = run_lcq(c.args);
    if (c.message.empty()) {
      EXPECT_EQ(r.exit_code, 0) << c.args << "\n" << r.err;
      continue;
    }
    expect_refused(r, c.message, c.args);
    EXPECT_EQ(test::read_bytes(model), model_bytes) << c.args;
    EXPECT_EQ(test::read_bytes(text), text_bytes) << c.args;
    EXPECT_EQ(test::read_bytes(hf + "/config.json"), hf_config) << c.args;
    EXPECT_EQ(test::read_bytes(dir + "/l2c/tok512.bin"), test::read_bytes(stories_tok())) << c.args;
    EXPECT_FALSE(fs::exists(q)) << c.args;
  }
}

// As root, renaming the report over /dev/null replaced the device with a regular file.
TEST(InputsOverwritten, AReportToADeviceOrAFifoIsWrittenThroughIt) {
  const std::string dir = test::scratch_dir();
  const std::string ppl = "perplexity " + stories_bin() + " --tokenizer " + stories_tok() + " --text " + tinystories() +
                          " --seqlen 64 --limit 1 --quiet --report ";
  // Through a symlink first: a regression replaces the link, not the machine's /dev/null.
  fs::create_symlink("/dev/null", dir + "/null");
  auto r = run_lcq(ppl + dir + "/null");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_symlink(dir + "/null"));
  ASSERT_TRUE(fs::is_character_file(dir + "/null"));
  r = run_lcq(ppl + "/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  // A FIFO: the reader gets the JSON document and the FIFO stays a FIFO.
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto got = std::async(std::launch::async, [&] { return test::read_bytes(fifo); });
  r = run_lcq(ppl + fifo);
  release_fifo(fifo, O_WRONLY);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(got.get().find("\"perplexity\""), std::string::npos);
  EXPECT_TRUE(fs::is_fifo(fifo));
  EXPECT_EQ(entries(dir), (std::set<std::string>{"null", "pipe"}));
}

// ---- 2. output locations, before any work -------------------------------------------------

// The calibration text is too short for one window: an error that comes after the model is
// loaded and tokenized. The output's error must come instead, so it was checked first.
TEST(OutputLocation, IsCheckedBeforeAnyWork) {
  const std::string dir = test::scratch_dir();
  test::write_bytes(dir + "/file.txt", "x");
  const std::string short_text = dir + "/short.txt";
  test::write_bytes(short_text, "Once upon a time.");
  fs::create_directories(dir + "/d.gguf");
  const std::string quant = "quantize " + stories_bin() + " --tokenizer " + stories_tok() +
                            " --method lcq --epochs 1 --calib " + short_text + " --seqlen 64 --quiet";
  struct Case {
    std::string args, message;
  } cases[] = {
      {quant + " -o " + dir + "/nodir/x.gguf", "-o " + dir + "/nodir/x.gguf: the directory " + dir + "/nodir does not exist"},
      {quant + " -o " + dir + "/file.txt/x.gguf", "is not a directory"},
      {quant + " -o " + dir + "/d.gguf", "-o " + dir + "/d.gguf: is a directory"},
      {quant + " -o /proc/lcq-robust-test.gguf", "/proc/lcq-robust-test.gguf"},
      {quant + " -o " + dir + "/q.gguf --report " + dir + "/nodir/r.json", "--report " + dir + "/nodir/r.json: the directory"},
      {quant + " -o " + dir + "/q.gguf --export-fake " + dir + "/file.txt/hf", "--export-fake " + dir + "/file.txt/hf"},
      {quant + " -o " + dir + "/q.gguf --export-fake /proc/lcq-robust-test", "cannot create files in /proc"},
      {quant + " -o " + dir + "/q.gguf --export-fake " + dir + "/nodir/f.gguf", "--export-fake " + dir + "/nodir/f.gguf"},
      {"perplexity " + stories_bin() + " --tokenizer " + stories_tok() + " --text " + short_text + " --report " + dir +
           "/nodir/r.json",
       "--report " + dir + "/nodir/r.json"},
      {"convert " + stories_bin() + " --tokenizer " + stories_tok() + " " + dir + "/nodir/c.gguf", "does not exist"},
      {"convert " + stories_bin() + " --tokenizer " + stories_tok() + " " + dir + "/file.txt/hf", "is not a directory"},
      {"compare " + stories_bin() + " --tokenizer " + stories_tok() + " --methods rtn --text " + short_text +
           " -o /proc/lcq-robust-test",
       "-o /proc/lcq-robust-test"},
  };
  for (const auto& c : cases) {
    auto r = run_lcq(c.args);
    expect_refused(r, c.message, c.args);
    EXPECT_EQ(r.err.find("short.txt:"), std::string::npos) << c.args << "\n" << r.err;
  }
  EXPECT_EQ(entries(dir), (std::set<std::string>{"file.txt", "short.txt", "d.gguf"}));
  EXPECT_TRUE(fs::is_empty(dir + "/d.gguf"));
}

// ---- 3. diverging training, NaN models ----------------------------------------------------

TEST(Divergence, NonFiniteOrAbsurdLearningRatesAreRefusedWhenParsed) {
  const std::string dir = test::scratch_dir();
  const std::string base = "quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + dir +
                           "/q.gguf --calib " + tinystories() + " --nsamples 2 --seqlen 32 --epochs 1 --quiet ";
  struct Case {
    std::string args, option;
    int code;
  } cases[] = {
      {"--lr-scale inf", "--lr-scale", 2},   {"--lr-codebook inf", "--lr-codebook", 2},
      {"--lr-scale nan", "--lr-scale", 2},   {"--method flexround --lr 1e30", "--lr", 2},
      {"--method omniquant --lr nan", "--lr", 2}, {"--lr-scale -1", "--lr-scale", 2},
      {"--lr-codebook 1e400", "--lr-codebook", 2}, {"--lr-scale 0", "--lr-scale", 1},
  };
  for (const auto& c : cases) expect_refused(run_lcq(base + c.args), c.option, c.args, c.code);
  EXPECT_TRUE(fs::is_empty(dir));
}

// A NaN anywhere (not only in the linears) used to be quantized into a NaN model, rtn and lcq
// alike: every method refuses it before any work, naming the tensor.
TEST(Divergence, NanInANormOrTheEmbeddingIsRefusedByEveryMethod) {
  const std::string dir = test::scratch_dir();
  struct Bad {
    size_t index;
    std::string tensor;
  } bads[] = {{kEmbedding + 100, "token_embd.weight"}, {kAttnNorm0 + 10, "blk.0.attn_norm.weight"},
              {kOutputNorm + 3, "output_norm.weight"}};
  for (const auto& b : bads) {
    const std::string model = stories_with(dir + "/nan.bin", b.index, NAN);
    for (const char* method : {"rtn", "gptq", "awq", "omniquant", "flexround", "lrq", "lcq"}) {
      auto r = run_lcq("quantize " + model + " --tokenizer " + stories_tok() + " -o " + dir + "/q.gguf --method " +
                       method + " --calib " + tinystories() + " --nsamples 2 --seqlen 32 --epochs 1 --quiet");
      expect_refused(r, "tensor '" + b.tensor + "' contains NaN or infinite values", std::string(method) + " " + b.tensor);
      EXPECT_FALSE(fs::exists(dir + "/q.gguf"));
    }
    const std::string inf_model = stories_with(dir + "/inf.bin", b.index, INFINITY);
    auto r = run_lcq("quantize " + inf_model + " --tokenizer " + stories_tok() + " -o " + dir + "/q.gguf --method rtn --quiet");
    expect_refused(r, b.tensor, "inf " + b.tensor);
  }
}

// `lcq perplexity` printed "perplexity nan" and exited 0; eval scored NaN log-likelihoods.
TEST(Divergence, PerplexityAndEvalOfANanModelFailInsteadOfPrintingNan) {
  const std::string dir = test::scratch_dir();
  const std::string model = stories_with(dir + "/nan.bin", kOutputNorm + 3, NAN);
  auto r = run_lcq("perplexity " + model + " --tokenizer " + stories_tok() + " --text " + tinystories() +
                   " --seqlen 64 --limit 2 --quiet --report " + dir + "/r.json");
  expect_refused(r, "non-finite log-likelihood", "perplexity");
  EXPECT_NE(r.err.find(model), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/r.json"));
  const std::string task = dir + "/mini.jsonl";
  test::write_bytes(task,
                    "{\"query\": \"Once upon a time there was a little\", \"choices\": [\"girl\", \"stone\"], \"gold\": 0}\n"
                    "{\"query\": \"The sun was\", \"choices\": [\"shining\", \"table\"], \"gold\": 0}\n");
  auto good = run_lcq("eval " + stories_bin() + " --tokenizer " + stories_tok() + " --tasks " + task + " --quiet");
  EXPECT_EQ(good.exit_code, 0) << good.err;
  auto bad = run_lcq("eval " + model + " --tokenizer " + stories_tok() + " --tasks " + task + " --quiet");
  expect_refused(bad, task + ":1: the log-likelihood is not finite", "eval");
}

// ---- 4. unbounded reads --------------------------------------------------------------------

TEST(UnboundedReads, DevZeroAsATextIsRefusedInsteadOfReadUntilTheMemoryRunsOut) {
  const std::string dir = test::scratch_dir();
  const std::string tok = " --tokenizer " + stories_tok() + " --quiet";
  struct Case {
    std::string args, message;
  } cases[] = {
      {"perplexity " + stories_bin() + tok + " --text /dev/zero", "/dev/zero: not a regular file (a character device)"},
      {"quantize " + stories_bin() + tok + " -o " + dir + "/q.gguf --calib /dev/zero", "/dev/zero: not a regular file"},
      {"eval " + stories_bin() + tok + " --tasks /dev/zero", "/dev/zero: not a regular file"},
      {"compare " + stories_bin() + tok + " --methods rtn --text /dev/zero -o " + dir + "/c", "/dev/zero"},
      {"compare " + stories_bin() + tok + " --calib /dev/zero --text " + tinystories() + " -o " + dir + "/c", "/dev/zero"},
  };
  for (const auto& c : cases) expect_refused(test::run_lcq_bounded(c.args), c.message, c.args);
  // Above the 1 GiB limit of whole-file reads (a sparse file: nothing is written or read).
  const std::string huge = dir + "/huge.txt";
  test::write_bytes(huge, "");
  fs::resize_file(huge, (uint64_t(1) << 30) + 1);
  expect_refused(test::run_lcq_bounded("perplexity " + stories_bin() + tok + " --text " + huge),
                 huge + ": larger than 1 GiB", "huge");
  // A pipe is a text like any other.
  const std::string fifo = dir + "/pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto writer = std::async(std::launch::async, [&] { test::write_bytes(fifo, test::read_bytes(tinystories()).substr(0, 20000)); });
  auto r = test::run_lcq_bounded("perplexity " + stories_bin() + tok + " --text " + fifo + " --seqlen 64 --limit 2 --json --quiet");
  release_fifo(fifo, O_RDONLY);
  writer.get();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"perplexity\""), std::string::npos);
}

// 100000 windows of a ~1000-token text ran for minutes at 5 GB.
TEST(UnboundedReads, MoreCalibrationWindowsThanTheTextHoldsAreRefused) {
  const std::string dir = test::scratch_dir();
  const std::string text = text_copy(dir + "/t.txt", 4000);
  auto r = test::run_lcq_bounded("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + dir +
                                 "/q.gguf --calib " + text + " --nsamples 100000 --seqlen 64 --epochs 1 --quiet");
  expect_refused(r, "--nsamples 100000", "nsamples");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("(\\d+) tokens give only (\\d+) distinct calibration windows"))) << r.err;
  EXPECT_EQ(std::stoi(m[2]), std::stoi(m[1]) - 64 + 1);
  EXPECT_NE(r.err.find("use --nsamples " + m[2].str() + " or fewer"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/q.gguf"));
  // As many windows as the text has start positions is fine.
  auto ok = run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + dir + "/q.gguf --calib " +
                    text + " --nsamples " + m[2].str() + " --seqlen 64 --method rtn --quiet");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

// ---- 6. leftovers --------------------------------------------------------------------------

TEST(Leftovers, StaleTemporariesOfTheOutputAreRemovedOnTheNextWrite) {
  const std::string dir = test::scratch_dir();
  const pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  const std::string mine = std::to_string(getpid());  // alive: may still be writing
  for (const std::string& name : {"q.gguf.tmp-" + std::to_string(dead), "q.gguf.tmp-" + mine,
                                  "r.gguf.tmp-" + std::to_string(dead)})
    test::write_bytes(dir + "/" + name, std::string(1000, 'x'));
  auto r = run_lcq("quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + dir +
                   "/q.gguf --method rtn --quiet");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(entries(dir), (std::set<std::string>{"q.gguf", "q.gguf.tmp-" + mine, "r.gguf.tmp-" + std::to_string(dead)}));
}

// CLI::Range lets NaN through (every comparison with NaN is false). Every floating-point
// option of every command is listed by --help as "FLOAT in [lo, hi]", the finite-range check;
// each refuses NaN and infinities.
TEST(Leftovers, EveryFloatingPointOptionRefusesNanAndInfinity) {
  std::vector<std::pair<std::string, std::string>> float_options;
  for (const char* command : {"info", "generate", "perplexity", "eval", "quantize", "compare", "convert", "bench", "demo"}) {
    auto help = run_lcq(std::string(command) + " --help");
    ASSERT_EQ(help.exit_code, 0) << command;
    std::istringstream lines(help.out);
    std::string line;
    while (std::getline(lines, line)) {
      std::smatch m;
      if (!std::regex_search(line, m, std::regex("^\\s+(?:-\\w,)?(--[a-z0-9-]+)\\s+(\\S+)"))) continue;
      if (line.find("FLOAT") == std::string::npos) continue;
      EXPECT_NE(line.find("FLOAT in ["), std::string::npos) << command << ": " << line;
      float_options.push_back({command, m[1]});
    }
  }
  std::set<std::string> names;
  for (const auto& [c, o] : float_options) names.insert(c + " " + o);
  for (const char* want : {"generate --temp", "generate --top-p", "quantize --smoothquant", "quantize --lr",
                           "quantize --lr-scale", "compare --smoothquant"})
    EXPECT_TRUE(names.count(want)) << want;
  const std::string model = stories_bin() + " --tokenizer " + stories_tok();
  const std::map<std::string, std::string> required = {{"quantize", " -o /tmp/lcq-never.gguf"},
                                                       {"compare", " --text " + tinystories()},
                                                       {"perplexity", " --text " + tinystories()}};
  for (const auto& [command, option] : float_options)
    for (const char* value : {"nan", "inf", "-inf", "1e999", "NaN"}) {
      const auto req = required.find(command);
      const std::string args =
          command + " " + model + (req == required.end() ? "" : req->second) + " " + option + " " + value;
      auto r = run_lcq(args);
      expect_refused(r, option, args, 2);
    }
  EXPECT_FALSE(fs::exists("/tmp/lcq-never.gguf"));
}

TEST(ClosedChoices, LossScheduleAndTrainDtypeAcceptTheirNamesOnly) {
  const std::string dir = test::scratch_dir();
  const std::string base = "quantize " + stories_bin() + " --tokenizer " + stories_tok() + " -o " + dir +
                           "/q.gguf --calib " + tinystories() + " --nsamples 2 --seqlen 32 --epochs 1 --quiet ";
  for (const char* bad : {"--loss l1", "--schedule linear", "--train-dtype fp16"})
    expect_refused(run_lcq(base + bad), std::string(bad).substr(0, std::string(bad).find(' ')), bad, 2);
  auto ok = run_lcq(base + "--loss token-relative --schedule constant --train-dtype fp32 --json");
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("\"loss\": \"token-relative\""), std::string::npos) << ok.out;
}

// Found by trying more hostile invocations by hand: each failed late (after other work), hung,
// or printed a useless message.
TEST(Hostile, MoreCasesFailCleanlyAndEarly) {
  const std::string dir = test::scratch_dir();
  const std::string fifo = dir + "/model.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string model = stories_bin() + " --tokenizer " + stories_tok() + " --quiet";
  const std::string cmp = "compare " + model + " --methods gptq --calib " + tinystories() + " --text " + tinystories() +
                          " -o " + dir + "/c ";
  struct Case {
    std::string args, message;
    int code;
  } cases[] = {
      {"info " + fifo, fifo + ": not a regular file or directory", 1},  // hung in the format detection
      {cmp + "--nsamples 0", "--nsamples", 2},                          // failed in a child after the fp row
      {cmp + "--epochs -1", "--epochs", 2},                             // ran every method's default epochs
      {cmp + "--eval-seqlen 1", "--eval-seqlen must be >= 2", 1},
      {cmp + "--threads -1", "--threads", 2},
      {cmp + "--limit -1", "--limit: Value -1 not in range 0 to 9223372036854775807", 2},  // was DBL_MAX, 300 digits
      {"convert " + model + " ''", "the output path is empty", 1},       // failed after reading every tensor
      {"quantize " + model + " -o ''", "-o: the output path is empty", 1},
      {"quantize " + model + " -o " + dir + "/q.gguf --calib " + tinystories() + " --loss-samples -1",
       "--loss-samples must be >= 0", 1},
      {"quantize " + model + " -o " + dir + "/q.gguf --calib " + tinystories() + " --seqlen 1", "--seqlen must be >= 2", 1},
  };
  for (const auto& c : cases) {
    auto r = test::run_lcq_bounded(c.args);
    expect_refused(r, c.message, c.args, c.code);
    EXPECT_LT(r.err.size(), 400u) << r.err;
  }
  EXPECT_EQ(entries(dir), std::set<std::string>{"model.fifo"});
}

}  // namespace
}  // namespace lcq
