#include "lcq/eval/perplexity.h"

#include "lcq/core/error.h"
#include "lcq/core/progress.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>

namespace lcq::eval {

namespace {

int64_t context_limit(const model::Model& m) {
  return m.config.arch == Arch::OPT ? m.pos_embd.size(0) - 2 : m.config.max_seq_len;
}

}  // namespace

PerplexityResult perplexity(const model::Model& model, const std::vector<int>& tokens, const PerplexityOptions& opts) {
  LCQ_CHECK(opts.protocol == "gptq" || opts.protocol == "llamacpp",
            "unknown perplexity protocol '{}' (expected gptq or llamacpp)", opts.protocol);
  const bool llamacpp = opts.protocol == "llamacpp";
  int64_t seqlen = opts.seqlen > 0 ? opts.seqlen : (llamacpp ? 512 : 2048);
  seqlen = std::min(seqlen, context_limit(model));
  LCQ_CHECK(seqlen >= 2, "perplexity: window length {} is too short", seqlen);
  int64_t windows = int64_t(tokens.size()) / seqlen;
  LCQ_CHECK(windows >= 1, "perplexity: the text has {} tokens, fewer than one window of {}", tokens.size(), seqlen);
  if (opts.max_windows > 0) windows = std::min(windows, opts.max_windows);
  LCQ_CHECK(!llamacpp || opts.bos_id >= 0, "perplexity: the llamacpp protocol needs a BOS token");
  // gptq: predict tokens 1..seqlen-1 of each window; llamacpp: predict the second half.
  const int64_t first = llamacpp ? seqlen / 2 : 0;

  torch::NoGradGuard no_grad;
  PerplexityResult r;
  r.protocol = opts.protocol;
  r.seqlen = seqlen;
  r.windows = windows;
  r.total_tokens = int64_t(tokens.size());
  double nll_sum = 0, kl_sum = 0;
  int64_t agree = 0;
  const int64_t batch = std::max<int64_t>(1, opts.batch);
  Progress progress("perplexity", windows, opts.progress);
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t w0 = 0; w0 < windows; w0 += batch) {
    const int64_t nb = std::min(batch, windows - w0);
    auto ids = torch::empty({nb, seqlen}, torch::kInt64);
    auto acc = ids.accessor<int64_t, 2>();
    for (int64_t b = 0; b < nb; ++b)
      for (int64_t t = 0; t < seqlen; ++t) acc[b][t] = tokens[size_t((w0 + b) * seqlen + t)];
    if (llamacpp)
      for (int64_t b = 0; b < nb; ++b) acc[b][0] = opts.bos_id;
    using torch::indexing::Slice;
    auto logits = model.forward(ids).index({Slice(), Slice(first, seqlen - 1)});  // [nb, n, V]
    auto targets = ids.index({Slice(), Slice(first + 1, seqlen)}).to(logits.device());
    // -log p = logsumexp(logits) - logit[target]: one fused pass over the [n, vocab] logits
    // (ATen's logsumexp subtracts the row maximum, so f32 is accurate to ~1e-7 relative);
    // the per-token differences are summed in f64.
    auto lse = torch::logsumexp(logits, -1);
    auto picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    auto nll = lse.to(torch::kFloat64) - picked.to(torch::kFloat64);  // [nb, n]
    const auto per_window = nll.mean(-1).contiguous();
    // NaN or infinite logits (a corrupt or diverged model) give no perplexity: stop at the first.
    for (int64_t b = 0; b < nb; ++b)
      LCQ_CHECK(std::isfinite(per_window.data_ptr<double>()[b]),
                "window {} has a non-finite log-likelihood: the model's logits contain NaN or infinite values (a "
                "corrupt or diverged model)",
                w0 + b + 1);
    r.window_nll.insert(r.window_nll.end(), per_window.data_ptr<double>(), per_window.data_ptr<double>() + nb);
    nll_sum += nll.sum().item<double>();
    r.scored_tokens += nll.numel();
    if (opts.kl_reference) {
      auto logp = torch::log_softmax(logits.to(torch::kFloat64), -1);
      auto ref = opts.kl_reference->forward(ids).index({Slice(), Slice(first, seqlen - 1)});
      auto ref_logp = torch::log_softmax(ref.to(torch::kFloat64), -1);
      kl_sum += (ref_logp.exp() * (ref_logp - logp)).sum().item<double>();
      LCQ_CHECK(std::isfinite(kl_sum), "the KL reference's logits contain NaN or infinite values");
      agree += (ref_logp.argmax(-1) == logp.argmax(-1)).sum().item<int64_t>();
    }
    progress.add(nb, fmt::format("ppl {:.4f}", std::exp(nll_sum / double(r.scored_tokens))));
  }
  progress.finish();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second = double(windows * seqlen) / r.seconds;
  r.mean_nll = nll_sum / double(r.scored_tokens);
  r.ppl = std::exp(r.mean_nll);
  if (opts.kl_reference) {
    r.kl_mean = kl_sum / double(r.scored_tokens);
    r.top1_agreement = double(agree) / double(r.scored_tokens);
  }
  return r;
}

}  // namespace lcq::eval
