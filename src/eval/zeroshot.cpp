// Zero-shot evaluation: log-likelihood requests and the metrics lm-evaluation-harness
// computes from them (docs/zeroshot.md). Tasks and their files: zeroshot_tasks.cpp.
#include "lcq/eval/zeroshot.h"

#include "lcq/core/error.h"
#include "lcq/core/progress.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>

namespace lcq::eval {

namespace {

// Positions the model can attend over in one sequence.
int64_t context_limit(const model::Model& m) {
  if (m.config.arch == Arch::OPT) return m.pos_embd.size(0) - 2;
  int64_t limit = m.config.max_seq_len;
  if (m.rope.cos.defined()) limit = std::min<int64_t>(limit, m.rope.cos.size(0));
  return limit;
}

// A request as the model sees it: input tokens (context + continuation without its last
// token, cut from the left to the context limit, as lm-eval's
// `(context + continuation)[-(max_length + 1):][:-1]`) and the tokens that the last
// `targets.size()` positions predict.
struct Prepared {
  std::vector<int64_t> input;
  std::vector<int64_t> targets;
};

Prepared prepare(const Request& r, int64_t limit) {
  LCQ_CHECK(!r.context.empty() && !r.continuation.empty(), "a request needs a context and a continuation");
  LCQ_CHECK(int64_t(r.continuation.size()) <= limit,
            "a continuation of {} tokens does not fit the model's context of {}", r.continuation.size(), limit);
  std::vector<int64_t> full(r.context.begin(), r.context.end());
  full.insert(full.end(), r.continuation.begin(), r.continuation.end());
  const size_t keep = std::min(full.size(), size_t(limit) + 1);
  Prepared p;
  p.input.assign(full.end() - int64_t(keep), full.end() - 1);
  p.targets.assign(r.continuation.begin(), r.continuation.end());
  return p;
}

// Python's str.isspace() for ASCII, which is what lm-eval's context.rstrip() strips.
bool is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= '\x1c' && c <= '\x1f'); }

// Log-likelihoods from the last hidden states x [B, T, dim]: `flat` lists the scored
// positions (b * T + t) request by request, in the order of `rows`, `targets` their tokens.
void score_positions(const model::Model& model, const torch::Tensor& x, const std::vector<int64_t>& flat,
                     const std::vector<int64_t>& targets, const std::vector<Prepared>& prep,
                     const std::vector<size_t>& rows, std::vector<RequestScore>& out) {
  // The output head (vocab x dim, the largest matrix of a small model) only on the scored
  // positions: the continuations, usually a fraction of the tokens.
  auto index = torch::tensor(flat, torch::kInt64).to(x.device());
  auto h = x.reshape({x.size(0) * x.size(1), x.size(2)}).index_select(0, index);
  auto logits = model.head(h.unsqueeze(0)).squeeze(0);  // [N, vocab] float32
  auto tgt = torch::tensor(targets, torch::kInt64).to(logits.device());
  // log p = logit[target] - logsumexp(logits): one pass over the logits, like perplexity.cpp.
  auto logp = (logits.gather(-1, tgt.unsqueeze(-1)).squeeze(-1).to(torch::kFloat64) -
               torch::logsumexp(logits, -1).to(torch::kFloat64))
                  .cpu();
  auto hit = (logits.argmax(-1) == tgt).cpu();
  const double* lp = logp.data_ptr<double>();
  const bool* ok = hit.data_ptr<bool>();
  size_t k = 0;
  for (size_t r : rows) {
    RequestScore s;
    s.greedy = true;
    for (size_t i = 0; i < prep[r].targets.size(); ++i, ++k) {
      s.loglikelihood += lp[k];
      s.greedy = s.greedy && ok[k];
    }
    out[r] = s;
  }
}

// Token ids [rows, T] from each row's input[from:], right-padded with token 0: under the
// causal mask a position only sees positions before it, so the padding after a row's last
// real token cannot change any scored position. Also the scored positions and their tokens.
torch::Tensor pack(const std::vector<Prepared>& prep, const std::vector<size_t>& rows, int64_t from,
                   std::vector<int64_t>& flat, std::vector<int64_t>& targets) {
  int64_t T = 0;
  for (size_t r : rows) T = std::max<int64_t>(T, int64_t(prep[r].input.size()) - from);
  auto ids = torch::zeros({int64_t(rows.size()), T}, torch::kInt64);
  for (int64_t b = 0; b < int64_t(rows.size()); ++b) {
    const Prepared& p = prep[rows[size_t(b)]];
    const int64_t L = int64_t(p.input.size()) - from, n = int64_t(p.targets.size());
    std::memcpy(ids[b].data_ptr<int64_t>(), p.input.data() + from, size_t(L) * sizeof(int64_t));
    for (int64_t i = 0; i < n; ++i) flat.push_back(b * T + L - n + i);
    targets.insert(targets.end(), p.targets.begin(), p.targets.end());
  }
  return ids;
}

// Requests of different lengths in one right-padded forward pass.
void score_batch(const model::Model& model, const std::vector<Prepared>& prep, const std::vector<size_t>& rows,
                 std::vector<RequestScore>& out) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> flat, targets;
  auto ids = pack(prep, rows, 0, flat, targets);
  auto x = model.embed(ids);
  const model::BlockContext ctx = model.context();
  for (const auto& block : model.blocks) x = model::block_forward(ctx, block, x, 0);
  score_positions(model, x, flat, targets, prep, rows, out);
}

// How many leading input tokens all `rows` share, short of their first scored position.
int64_t common_prefix(const std::vector<Prepared>& prep, const std::vector<size_t>& rows) {
  const std::vector<int64_t>& a = prep[rows[0]].input;
  int64_t P = int64_t(a.size());
  for (size_t r : rows) {
    const Prepared& p = prep[r];
    P = std::min<int64_t>(P, int64_t(p.input.size() - p.targets.size()));
    int64_t i = 0;
    while (i < P && p.input[size_t(i)] == a[size_t(i)]) ++i;
    P = i;
  }
  return P;
}

// Requests sharing their first P input tokens: the prefix runs once (batch 1) into a KV cache,
// which is copied to every row; the rest of each request runs as one right-padded batch.
void score_shared(const model::Model& model, const std::vector<Prepared>& prep, const std::vector<size_t>& rows,
                  int64_t P, std::vector<RequestScore>& out) {
  torch::NoGradGuard no_grad;
  const model::BlockContext ctx = model.context();
  const std::vector<int64_t>& first = prep[rows[0]].input;
  auto prefix = torch::tensor(std::vector<int64_t>(first.begin(), first.begin() + P), torch::kInt64).unsqueeze(0);
  model::KVCache one = model.make_cache(1, P);
  auto x = model.embed(prefix, 0);
  for (size_t l = 0; l < model.blocks.size(); ++l) x = model::block_forward(ctx, model.blocks[l], x, 0, &one, int(l));
  one.advance(P);

  std::vector<int64_t> flat, targets;
  auto ids = pack(prep, rows, P, flat, targets);
  const int64_t B = ids.size(0);
  model::KVCache many = model.make_cache(B, P + ids.size(1));
  // Appending zero positions to a cache returns views of everything it holds.
  auto none = torch::empty({1, model.config.n_kv_heads, 0, model.config.head_dim}, model.tensor_options());
  for (size_t l = 0; l < model.blocks.size(); ++l) {
    auto [k, v] = one.append(int(l), none, none);
    many.append(int(l), k.expand({B, -1, -1, -1}), v.expand({B, -1, -1, -1}));
  }
  many.advance(P);
  auto y = model.embed(ids, P);
  for (size_t l = 0; l < model.blocks.size(); ++l) y = model::block_forward(ctx, model.blocks[l], y, P, &many, int(l));
  score_positions(model, y, flat, targets, prep, rows, out);
}

double sample_stderr(const std::vector<double>& x) {
  const double n = double(x.size());
  if (x.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  const double mean = std::accumulate(x.begin(), x.end(), 0.0) / n;
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / (n - 1) / n);
}

}  // namespace

Request encode_request(const tokenizer::Tokenizer& tok, std::string context, std::string continuation, bool bos) {
  size_t end = context.size();
  while (end > 0 && is_space(context[end - 1])) --end;
  continuation = context.substr(end) + continuation;
  context.resize(end);
  Request r;
  r.context = tok.encode(context, /*add_special=*/false);
  std::vector<int> whole = tok.encode(context + continuation, /*add_special=*/false);
  // lm-eval takes the joint encoding beyond the context's token count, without checking that
  // the context's tokens are a prefix of it (a merge across the boundary shifts the split).
  if (whole.size() > r.context.size()) r.continuation.assign(whole.begin() + int64_t(r.context.size()), whole.end());
  LCQ_CHECK(!r.continuation.empty(), "the continuation \"{}\" encodes to no tokens after its context", continuation);
  if (bos) {
    LCQ_CHECK(tok.bos_id() >= 0, "the tokenizer has no BOS token to start the context with");
    r.context.insert(r.context.begin(), tok.bos_id());
  } else if (r.context.empty()) {
    // lm-eval's prefix token; when the continuation starts with it, that token is the context.
    const int prefix = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
    LCQ_CHECK(prefix >= 0, "the context is empty and the tokenizer has neither a BOS nor an EOS token");
    r.context.push_back(prefix);
    if (r.continuation.front() == prefix) r.continuation.erase(r.continuation.begin());
    LCQ_CHECK(!r.continuation.empty(), "the continuation \"{}\" is only the prefix token", continuation);
  }
  return r;
}

std::vector<RequestScore> score_requests(const model::Model& model, const std::vector<Request>& requests,
                                         const ScoreOptions& opts) {
  const int64_t limit = context_limit(model);
  std::vector<Prepared> prep;
  prep.reserve(requests.size());
  for (const auto& r : requests) prep.push_back(prepare(r, limit));
  std::vector<RequestScore> out(requests.size());
  Progress progress(opts.label, int64_t(requests.size()), opts.progress);

  std::vector<size_t> single;  // requests scored without a shared prefix
  std::map<int64_t, std::vector<size_t>> groups;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (opts.share_prefix && requests[i].group >= 0)
      groups[requests[i].group].push_back(i);
    else
      single.push_back(i);
  }
  for (const auto& [id, rows] : groups) {
    const int64_t P = rows.size() > 1 ? common_prefix(prep, rows) : 0;
    if (P == 0) {
      single.insert(single.end(), rows.begin(), rows.end());
      continue;
    }
    score_shared(model, prep, rows, P, out);
    progress.add(int64_t(rows.size()));
  }

  // Longest first (as lm-eval orders them): similar lengths share a batch, so little padding,
  // and a batch too large for memory shows up at once.
  std::stable_sort(single.begin(), single.end(),
                   [&](size_t a, size_t b) { return prep[a].input.size() > prep[b].input.size(); });
  const int64_t batch = std::max<int64_t>(1, opts.batch);
  for (size_t i = 0; i < single.size();) {
    // The first request of a batch is its longest: it fixes the padded length.
    const int64_t T = int64_t(prep[single[i]].input.size());
    std::vector<size_t> rows;
    while (i < single.size() && int64_t(rows.size()) < batch &&
           (rows.empty() || int64_t(rows.size() + 1) * T <= opts.max_batch_tokens))
      rows.push_back(single[i++]);
    score_batch(model, prep, rows, out);
    progress.add(int64_t(rows.size()));
  }
  progress.finish();
  return out;
}

RequestScore score_request_naive(const model::Model& model, const Request& request) {
  const Prepared p = prepare(request, context_limit(model));
  torch::NoGradGuard no_grad;
  const int64_t L = int64_t(p.input.size()), n = int64_t(p.targets.size());
  auto ids = torch::tensor(p.input, torch::kInt64).unsqueeze(0);
  auto logits = model.forward(ids).squeeze(0).cpu();  // [L, vocab]
  auto logp = torch::log_softmax(logits.to(torch::kFloat64), -1);
  RequestScore s;
  s.greedy = true;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t pos = L - n + i, target = p.targets[size_t(i)];
    s.loglikelihood += logp[pos][target].item<double>();
    s.greedy = s.greedy && logits[pos].argmax().item<int64_t>() == target;
  }
  return s;
}

int argmax_normalized(const std::vector<double>& scores, const std::vector<double>& divisor) {
  LCQ_CHECK(!scores.empty(), "argmax of no scores");
  LCQ_CHECK(divisor.empty() || divisor.size() == scores.size(), "{} scores but {} divisors", scores.size(),
            divisor.size());
  int best = 0;
  double best_value = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const double v = divisor.empty() ? scores[i] : scores[i] / divisor[i];
    if (i == 0 || v > best_value) {
      best = int(i);
      best_value = v;
    }
  }
  return best;
}

Metric mean_metric(const std::string& name, const std::vector<double>& outcomes) {
  LCQ_CHECK(!outcomes.empty(), "metric {} over no examples", name);
  Metric m;
  m.name = name;
  m.value = std::accumulate(outcomes.begin(), outcomes.end(), 0.0) / double(outcomes.size());
  m.std_error = sample_stderr(outcomes);
  return m;
}

TaskResult evaluate_task(const model::Model& model, const tokenizer::Tokenizer& tok, const Task& task,
                         const ZeroShotOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  TaskResult res;
  res.task = task.spec.name;
  res.file = task.spec.file;
  res.shape = task.spec.shape;
  res.examples = int64_t(task.examples.size());

  std::vector<Request> requests;
  std::vector<size_t> first;  // first request of each example
  for (const auto& ex : task.examples) {
    first.push_back(requests.size());
    for (size_t i = 0; i < ex.contexts.size(); ++i) {
      try {
        requests.push_back(encode_request(tok, ex.contexts[i], ex.continuations[i], opts.bos));
        requests.back().group = int64_t(first.size()) - 1;
      } catch (const Error& e) {
        fail("{}:{}: {}", task.spec.file, ex.line, e.what());
      }
    }
  }
  first.push_back(requests.size());
  res.requests = int64_t(requests.size());
  for (const auto& r : requests) res.tokens += int64_t(r.context.size() + r.continuation.size()) - 1;

  ScoreOptions so = opts.score;
  so.label = task.spec.name;
  const std::vector<RequestScore> scores = score_requests(model, requests, so);
  for (size_t e = 0; e < task.examples.size(); ++e)
    for (size_t r = first[e]; r < first[e + 1]; ++r)
      LCQ_CHECK(std::isfinite(scores[r].loglikelihood),
                "{}:{}: the log-likelihood is not finite: the model's logits contain NaN or infinite values (a "
                "corrupt or diverged model)",
                task.spec.file, task.examples[e].line);

  std::vector<double> acc, acc_norm, loglik;
  for (size_t e = 0; e < task.examples.size(); ++e) {
    const Example& ex = task.examples[e];
    std::vector<double> lls;
    for (size_t r = first[e]; r < first[e + 1]; ++r) lls.push_back(scores[r].loglikelihood);
    if (task.spec.shape == TaskShape::Lambada) {
      acc.push_back(scores[first[e]].greedy ? 1.0 : 0.0);
      loglik.push_back(lls[0]);
      continue;
    }
    acc.push_back(argmax_normalized(lls) == ex.gold ? 1.0 : 0.0);
    if (task.spec.shape == TaskShape::MultipleChoice)
      acc_norm.push_back(argmax_normalized(lls, ex.norm_length) == ex.gold ? 1.0 : 0.0);
  }
  res.metrics.push_back(mean_metric("acc", acc));
  if (!acc_norm.empty()) res.metrics.push_back(mean_metric("acc_norm", acc_norm));
  if (!loglik.empty()) {
    // lm-eval's `perplexity` aggregation: exp(-mean log-likelihood of the continuation).
    // Its standard error here is the delta method, ppl * stderr(mean); lm-eval bootstraps.
    const Metric ll = mean_metric("loglikelihood", loglik);
    Metric ppl;
    ppl.name = "perplexity";
    ppl.value = std::exp(-ll.value);
    ppl.std_error = ppl.value * ll.std_error;
    res.metrics.push_back(ppl);
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace lcq::eval
