// Zero-shot evaluation with lm-evaluation-harness semantics (METHODS.md section 4,
// docs/zeroshot.md): every example becomes log-likelihood requests (context, continuation);
// multiple choice picks the choice whose continuation is most likely (acc) or most likely per
// character (acc_norm); partial scoring (WinoGrande, WSC) scores one shared continuation after
// each option's context; LAMBADA reports greedy-match accuracy and perplexity of the last word.
#pragma once

#include "lcq/eval/zeroshot_tasks.h"
#include "lcq/model/model.h"
#include "lcq/tokenizer/tokenizer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace lcq::eval {

// --- log-likelihood requests -------------------------------------------------------------

// Score `continuation` given `context` (token ids). The context is never empty.
struct Request {
  std::vector<int> context, continuation;
  // Requests with the same group >= 0 (the choices of one example) may run their common
  // prefix once (ScoreOptions::share_prefix).
  int64_t group = -1;
};

struct RequestScore {
  double loglikelihood = 0;  // sum of log p(continuation token | everything before it), nats
  bool greedy = false;       // every continuation token is the argmax of its distribution
};

// Tokenizes a pair as lm-eval's `_encode_pair` does: trailing whitespace of the context moves
// to the front of the continuation, context and context + continuation are encoded separately
// (no special tokens), and the continuation is what the joint encoding has beyond the
// context's tokens. `bos` prepends BOS to the context; an empty context becomes BOS (else
// EOS), like lm-eval's prefix token. Throws lcq::Error when the continuation comes out empty.
Request encode_request(const tokenizer::Tokenizer& tok, std::string context, std::string continuation, bool bos);

struct ScoreOptions {
  // A group's common prefix runs once into a KV cache, then its requests' remaining tokens
  // run as one batch on copies of that cache.
  bool share_prefix = true;
  // Other requests: this many per forward pass, sorted by length (longest first) so that a
  // batch holds similar lengths, and right-padded: under the causal mask the padding after a
  // sequence never influences its positions.
  int64_t batch = 16;
  int64_t max_batch_tokens = 8192;  // ... and at most this many (padded) tokens per pass
  bool progress = true;
  std::string label = "requests";   // progress bar label
};

// Scores requests, results in the order given. Contexts longer than the model's context are
// cut from the left, as lm-eval does; a continuation that alone exceeds it is an error.
std::vector<RequestScore> score_requests(const model::Model& model, const std::vector<Request>& requests,
                                         const ScoreOptions& opts = {});

// The plain reference: one request per full forward pass, log_softmax of every position's
// logits in double precision. For tests and for checking score_requests().
RequestScore score_request_naive(const model::Model& model, const Request& request);

// --- evaluation ---------------------------------------------------------------------------

struct ZeroShotOptions {
  bool bos = false;  // prepend BOS to every context (lm-eval's add_bos_token)
  ScoreOptions score;
};

struct Metric {
  std::string name;  // acc | acc_norm | perplexity
  double value = 0, std_error = 0;  // std_error: NaN when it is undefined (n < 2)
};

struct TaskResult {
  std::string task, file;
  TaskShape shape = TaskShape::MultipleChoice;
  int64_t examples = 0, requests = 0, tokens = 0;  // tokens: scored sequence lengths summed
  std::vector<Metric> metrics;
  double seconds = 0;
};

// Index of the largest score[i] / divisor[i] (divisor empty: 1); the first one on ties, like
// numpy.argmax.
int argmax_normalized(const std::vector<double>& scores, const std::vector<double>& divisor = {});

// Mean of 0/1 outcomes and its standard error, lm-eval's `mean_stderr`: sqrt(p(1-p)/(n-1)).
Metric mean_metric(const std::string& name, const std::vector<double>& outcomes);

TaskResult evaluate_task(const model::Model& model, const tokenizer::Tokenizer& tok, const Task& task,
                         const ZeroShotOptions& opts = {});

}  // namespace lcq::eval
