// Zero-shot evaluation (src/eval/zeroshot*.cpp) on stories260K: log-likelihoods against a
// log_softmax of Model::forward computed here, batched scoring against one request at a time,
// lm-eval's metric definitions, every shipped task file, broken task files, and the CLI.
#include "lcq/core/error.h"
#include "lcq/eval/zeroshot.h"
#include "lcq/model/loader.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cmath>

namespace {

using lcq::eval::Request;
using lcq::model::LoadedModel;

using lcq::test::stories_bin;
using lcq::test::stories_tok;
std::string zeroshot_dir() { return lcq::test::shared("data/zeroshot"); }

const LoadedModel& stories() {
  static const LoadedModel lm = [] {
    lcq::io::LoadOptions lo;
    lo.tokenizer_path = stories_tok();
    return lcq::model::load_model(stories_bin(), lo);
  }();
  return lm;
}

lcq::eval::ZeroShotOptions quiet_options() {
  lcq::eval::ZeroShotOptions o;
  o.score.progress = false;
  return o;
}

// The requests of the first `n` examples of a registry task.
std::vector<Request> task_requests(const std::string& name, int64_t n) {
  const auto spec = lcq::eval::resolve_tasks(name, zeroshot_dir()).at(0);
  const auto task = lcq::eval::load_task(spec, n);
  std::vector<Request> out;
  static int64_t group = 0;  // unique across calls
  for (const auto& ex : task.examples) {
    for (size_t i = 0; i < ex.contexts.size(); ++i) {
      out.push_back(lcq::eval::encode_request(stories().tok(), ex.contexts[i], ex.continuations[i], false));
      out.back().group = group;
    }
    ++group;
  }
  return out;
}

// Sum of log p(continuation | prefix) from one forward pass over `tokens`, the continuation
// being its last `n` tokens: log_softmax in double, written out here, not the library's.
std::pair<double, bool> by_hand(const std::vector<int>& tokens, size_t n) {
  torch::NoGradGuard ng;
  std::vector<int64_t> input(tokens.begin(), tokens.end() - 1);
  auto logits = stories().model.forward(torch::tensor(input, torch::kLong).unsqueeze(0)).squeeze(0);
  auto logp = torch::log_softmax(logits.to(torch::kFloat64), -1);
  double sum = 0;
  bool greedy = true;
  for (size_t i = 0; i < n; ++i) {
    const int64_t pos = int64_t(input.size() - n + i), target = tokens[tokens.size() - n + i];
    sum += logp[pos][target].item<double>();
    greedy = greedy && logits[pos].argmax().item<int64_t>() == target;
  }
  return {sum, greedy};
}

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = lcq::test::scratch_dir() + "/" + name;
  lcq::test::write_bytes(path, text);
  return path;
}

}  // namespace

TEST(ZeroShot, EncodePairFollowsLmEval) {
  const auto& tok = stories().tok();
  const Request r = lcq::eval::encode_request(tok, "Once upon a time", " there was a girl", false);
  const std::vector<int> ctx = tok.encode("Once upon a time", false);
  const std::vector<int> whole = tok.encode("Once upon a time there was a girl", false);
  EXPECT_EQ(r.context, ctx);
  EXPECT_EQ(r.continuation, std::vector<int>(whole.begin() + int64_t(ctx.size()), whole.end()));
  // Trailing whitespace of the context belongs to the continuation.
  const Request moved = lcq::eval::encode_request(tok, "Once upon a time ", "there was a girl", false);
  EXPECT_EQ(moved.context, r.context);
  EXPECT_EQ(moved.continuation, r.continuation);
  // BOS on request; an empty context becomes BOS.
  const Request with_bos = lcq::eval::encode_request(tok, "Once upon a time", " there was a girl", true);
  ASSERT_EQ(with_bos.context.size(), ctx.size() + 1);
  EXPECT_EQ(with_bos.context.front(), tok.bos_id());
  EXPECT_EQ(with_bos.continuation, r.continuation);
  EXPECT_EQ(lcq::eval::encode_request(tok, "", "Once", false).context, std::vector<int>{tok.bos_id()});
}

TEST(ZeroShot, LoglikelihoodIsTheSumOfLogSoftmax) {
  const auto& tok = stories().tok();
  const Request r = lcq::eval::encode_request(tok, "Once upon a time, there was a little girl named",
                                              " Lily. She liked to play.", false);
  std::vector<int> tokens = r.context;
  tokens.insert(tokens.end(), r.continuation.begin(), r.continuation.end());
  const auto [want, want_greedy] = by_hand(tokens, r.continuation.size());
  ASSERT_TRUE(std::isfinite(want));
  ASSERT_LT(want, 0);
  lcq::eval::ScoreOptions so;
  so.progress = false;
  const auto got = lcq::eval::score_requests(stories().model, {r}, so).at(0);
  EXPECT_NEAR(got.loglikelihood, want, 1e-4);
  EXPECT_EQ(got.greedy, want_greedy);
  EXPECT_NEAR(lcq::eval::score_request_naive(stories().model, r).loglikelihood, want, 1e-4);
  // The continuation the model itself would write is a greedy match.
  const Request story = lcq::eval::encode_request(tok, "Once upon a time,", " there was a little girl", false);
  EXPECT_TRUE(lcq::eval::score_requests(stories().model, {story}, so).at(0).greedy);
}

TEST(ZeroShot, BatchedScoringEqualsOneRequestAtATime) {
  std::vector<Request> requests;
  for (const char* task : {"piqa", "arc_easy", "winogrande", "lambada_openai", "boolq"}) {
    auto more = task_requests(task, 4);
    requests.insert(requests.end(), more.begin(), more.end());
  }
  // Longer than stories260K's 512 positions: the context is cut from the left.
  std::string long_context;
  for (int i = 0; i < 120; ++i) long_context += "Lily and Ben went to the park. ";
  requests.push_back(lcq::eval::encode_request(stories().tok(), long_context, " They had fun.", false));
  ASSERT_GT(requests.back().context.size(), 512u);

  // In one group with a shorter request that begins like it: once cut, the long request's
  // tokens sit at other positions, and only what matches position by position may be shared.
  requests.push_back(lcq::eval::encode_request(stories().tok(), long_context.substr(0, 300), " They had fun.", false));
  requests[requests.size() - 2].group = requests.back().group = 1000;
  std::vector<lcq::eval::RequestScore> naive;
  for (const auto& r : requests) naive.push_back(lcq::eval::score_request_naive(stories().model, r));
  struct Batching {
    bool share;
    int64_t batch, tokens;
  } settings[] = {
      {true, 16, 1 << 20}, {false, 1, 1 << 20}, {false, 3, 1 << 20}, {false, 64, 1 << 20}, {false, 64, 600},
  };
  for (const auto& s : settings) {
    lcq::eval::ScoreOptions so;
    so.progress = false;
    so.share_prefix = s.share;
    so.batch = s.batch;
    so.max_batch_tokens = s.tokens;
    const auto got = lcq::eval::score_requests(stories().model, requests, so);
    ASSERT_EQ(got.size(), requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      EXPECT_NEAR(got[i].loglikelihood, naive[i].loglikelihood, 1e-4) << "request " << i << " batch " << s.batch;
      EXPECT_EQ(got[i].greedy, naive[i].greedy) << "request " << i << " batch " << s.batch;
    }
  }
  // The cut request scores like its last 513 tokens scored by hand.
  const Request& last = requests[requests.size() - 2];
  std::vector<int> tokens = last.context;
  tokens.insert(tokens.end(), last.continuation.begin(), last.continuation.end());
  tokens.erase(tokens.begin(), tokens.end() - 513);
  EXPECT_NEAR(naive[requests.size() - 2].loglikelihood, by_hand(tokens, last.continuation.size()).first, 1e-4);
}

TEST(ZeroShot, MetricsAreLmEvals) {
  using lcq::eval::argmax_normalized;
  EXPECT_EQ(argmax_normalized({-10, -12}), 0);
  EXPECT_EQ(argmax_normalized({-10, -12}, {5, 20}), 1);  // -2 per character against -0.6
  EXPECT_EQ(argmax_normalized({-3, -1, -1}), 1);         // ties: the first, as numpy.argmax
  const auto m = lcq::eval::mean_metric("acc", {1, 0, 1, 1});
  EXPECT_DOUBLE_EQ(m.value, 0.75);
  EXPECT_NEAR(m.std_error, std::sqrt(0.75 * 0.25 / 3), 1e-12);  // lm-eval's mean_stderr
  EXPECT_TRUE(std::isnan(lcq::eval::mean_metric("acc", {1}).std_error));
}

TEST(ZeroShot, AccAndAccNormDisagreeOnAShortUnlikelyChoice) {
  // Gold is the long natural continuation; the one-letter choice has the larger total
  // log-likelihood but far the lower per character, so acc misses and acc_norm hits.
  const std::string file =
      write_file("story.jsonl",
                 R"({"query": "Once upon a time, there was a little girl named Lily.", "choices": ["q", )"
                 R"("She liked to play with her toys in the park with her mom and her friends."], "gold": 1})"
                 "\n");
  const auto specs = lcq::eval::resolve_tasks(file, "");
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_EQ(specs[0].name, "story");
  EXPECT_EQ(specs[0].shape, lcq::eval::TaskShape::MultipleChoice);
  const auto task = lcq::eval::load_task(specs[0]);
  const auto& ex = task.examples.at(0);
  std::vector<double> lls;
  for (size_t i = 0; i < 2; ++i) {
    const Request r = lcq::eval::encode_request(stories().tok(), ex.contexts[i], ex.continuations[i], false);
    lls.push_back(lcq::eval::score_request_naive(stories().model, r).loglikelihood);
  }
  ASSERT_GT(lls[0], lls[1]) << "the constructed case no longer has the short choice ahead in total";
  ASSERT_LT(lls[0] / 1, lls[1] / ex.norm_length[1]) << "... nor behind per character";
  const auto r = lcq::eval::evaluate_task(stories().model, stories().tok(), task, quiet_options());
  ASSERT_EQ(r.metrics.size(), 2u);
  EXPECT_EQ(r.metrics[0].name, "acc");
  EXPECT_EQ(r.metrics[0].value, 0.0);
  EXPECT_EQ(r.metrics[1].name, "acc_norm");
  EXPECT_EQ(r.metrics[1].value, 1.0);
}

TEST(ZeroShot, EveryRegistryTaskRunsOnItsFirstRows) {
  const auto specs = lcq::eval::resolve_tasks("all", zeroshot_dir());
  ASSERT_EQ(specs.size(), lcq::eval::task_registry().size());
  for (const auto& spec : specs) {
    const auto task = lcq::eval::load_task(spec, 5);
    ASSERT_EQ(task.examples.size(), 5u) << spec.name;
    const auto r = lcq::eval::evaluate_task(stories().model, stories().tok(), task, quiet_options());
    EXPECT_EQ(r.examples, 5) << spec.name;
    EXPECT_GE(r.requests, 5) << spec.name;
    ASSERT_FALSE(r.metrics.empty()) << spec.name;
    for (const auto& m : r.metrics) {
      EXPECT_TRUE(std::isfinite(m.value)) << spec.name << " " << m.name;
      EXPECT_TRUE(std::isfinite(m.std_error)) << spec.name << " " << m.name;
      if (m.name == "perplexity") {
        EXPECT_GT(m.value, 1.0) << spec.name;
      } else {
        EXPECT_GE(m.value, 0.0) << spec.name << " " << m.name;
        EXPECT_LE(m.value, 1.0) << spec.name << " " << m.name;
      }
    }
  }
}

TEST(ZeroShot, PromptsAreLmEvals) {
  auto first = [](const std::string& name) {
    return lcq::eval::load_task(lcq::eval::resolve_tasks(name, zeroshot_dir()).at(0), 1).examples.at(0);
  };
  const auto piqa = first("piqa");
  EXPECT_EQ(piqa.contexts[0], "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:");
  EXPECT_EQ(piqa.continuations[0].substr(0, 14), " Provide the g");
  EXPECT_EQ(piqa.norm_length[0], double(piqa.continuations[0].size() - 1));
  const auto arc = first("arc_easy");
  EXPECT_EQ(arc.contexts[0].substr(0, 10), "Question: ");
  EXPECT_EQ(arc.contexts[0].substr(arc.contexts[0].size() - 9), "?\nAnswer:");
  EXPECT_EQ(arc.contexts.size(), 4u);
  const auto boolq = first("boolq");
  EXPECT_EQ(boolq.contexts[0].substr(0, 12), "All biomass ");
  EXPECT_EQ(boolq.continuations, (std::vector<std::string>{" no", " yes"}));
  const auto wino = first("winogrande");
  EXPECT_EQ(wino.contexts[1], "Sarah was a much better surgeon than Maria so Maria");
  EXPECT_EQ(wino.continuations[1], " always got the easier cases.");
  EXPECT_EQ(wino.gold, 1);
  const auto lambada = first("lambada_openai");
  EXPECT_EQ(lambada.continuations, std::vector<std::string>{" signs"});
}

TEST(ZeroShot, BadTaskFilesNameFileAndLine) {
  const std::string good = R"({"query": "Q", "choices": ["a", "b"], "gold": 0})"
                           "\n\n";  // a blank line is skipped but counted
  struct Case {
    std::string row, must_say;
  } cases[] = {
      {R"({"query": "Q", "choices": ["a", "b"], "gold": 0)", "not valid JSON"},
      // fuzz_zeroshot_tasks: a number beyond double's range made nlohmann's out_of_range error,
      // which escaped as an exception other than lcq::Error.
      {R"({"query": "Q", "choices": ["a", "b"], "gold": 2e308})", "not valid JSON: number overflow parsing '2e308'"},
      {R"({"query": "Q", "gold": 0})", "missing field \"choices\""},
      {R"({"choices": ["a"], "gold": 0})", "missing field \"query\""},
      {R"({"query": "Q", "choices": [], "gold": 0})", "\"choices\" is empty"},
      {R"({"query": "Q", "choices": ["a", ""], "gold": 0})", "choices[1] is an empty string"},
      {R"({"query": "Q", "choices": ["a", 3], "gold": 0})", "choices[1] must be a string"},
      {R"({"query": "Q", "choices": ["a", "b"], "gold": 2})", "gold 2 is out of range"},
      {R"({"query": "Q", "choices": ["a", "b"], "gold": -1})", "gold -1 is out of range"},
      {R"({"query": "Q", "choices": ["a", "b"], "gold": "0"})", "\"gold\" must be an integer"},
      {R"(["query"])", "expected a JSON object"},
  };
  for (const auto& c : cases) {
    const std::string file = write_file("task.jsonl", good + c.row + "\n" + good);
    lcq::eval::TaskSpec spec{"bad", file, lcq::eval::TaskShape::MultipleChoice, "", ""};
    try {
      lcq::eval::load_task(spec);
      ADD_FAILURE() << "no error for " << c.row;
    } catch (const lcq::Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind(file + ":3: ", 0), 0u) << msg;
      EXPECT_NE(msg.find(c.must_say), std::string::npos) << msg;
    }
  }
  // Other shapes, the registry's prompt check, and resolving.
  const std::string wino = write_file("w.jsonl", R"({"context_options": ["A", "B"], "continuation": "c", "gold": 5})");
  EXPECT_THROW(lcq::eval::load_task({"w", wino, lcq::eval::TaskShape::Partial, "", ""}), lcq::Error);
  const std::string lam = write_file("l.jsonl", R"({"context": "A", "continuation": ""})");
  try {
    lcq::eval::load_task({"l", lam, lcq::eval::TaskShape::Lambada, "", ""});
    ADD_FAILURE() << "no error for an empty continuation";
  } catch (const lcq::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(lam + ":1: ", 0), 0u) << e.what();
  }
  const std::string boolq = write_file("b.jsonl", R"({"query": "Q", "choices": ["no", "yes"], "gold": 0})");
  EXPECT_THROW(lcq::eval::load_task({"boolq", boolq, lcq::eval::TaskShape::MultipleChoice, "Passage: ", ""}),
               lcq::Error);
  const std::string odd = write_file("odd.jsonl", R"({"text": "x"})");
  EXPECT_THROW(lcq::eval::resolve_tasks(odd, ""), lcq::Error);
  EXPECT_THROW(lcq::eval::resolve_tasks("piqa,nosuchtask", zeroshot_dir()), lcq::Error);
  EXPECT_THROW(lcq::eval::resolve_tasks("piqa,", zeroshot_dir()), lcq::Error);
  EXPECT_THROW(lcq::eval::load_task({"e", write_file("e.jsonl", "\n"), lcq::eval::TaskShape::Lambada, "", ""}),
               lcq::Error);
}

TEST(Cli, EvalJsonIsMachineReadable) {
  const lcq::test::CommandResult r =
      lcq::test::run_lcq("eval " + stories_bin() + " --tokenizer " + stories_tok() +
                         " --tasks piqa,winogrande,lambada_openai --data-dir " + zeroshot_dir() +
                         " --limit 3 --json --threads 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.at("tasks").size(), 3u);
  for (const auto& t : j.at("tasks")) {
    EXPECT_EQ(t.at("examples"), 3);
    const double acc = t.at("metrics").at("acc");
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
  }
  EXPECT_EQ(j.at("bos"), true);  // --bos auto: the llama2.c tokenizer starts with BOS
  EXPECT_EQ(j.at("tasks")[0].at("task"), "piqa");
  EXPECT_TRUE(j.at("tasks")[0].at("metrics").contains("acc_norm"));
  EXPECT_TRUE(j.at("tasks")[2].at("metrics").contains("perplexity"));
}

TEST(Cli, EvalBadTaskFileIsOneLineNamingFileAndLine) {
  const std::string file = write_file("broken.jsonl", "{\"query\": \"Q\", \"choices\": [\"a\"], \"gold\": 0}\n{oops\n");
  const lcq::test::CommandResult r =
      lcq::test::run_lcq("eval " + stories_bin() + " --tokenizer " + stories_tok() + " --tasks " + file + " --quiet");
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err.rfind("lcq: error: " + file + ":2: not valid JSON", 0), 0u) << r.err;
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  const lcq::test::CommandResult missing = lcq::test::run_lcq(
      "eval " + stories_bin() + " --tokenizer " + stories_tok() + " --tasks piqa --data-dir /nonexistent --quiet");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("/nonexistent/piqa.jsonl"), std::string::npos) << missing.err;
}
