#include "lcq/run/generate.h"

#include "lcq/core/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

namespace lcq::run {

int Sampler::sample(const float* l, int64_t n) {
  LCQ_CHECK(n > 0, "sampler: no logits");
  if (opts_.temperature <= 0.0f) return int(std::max_element(l, l + n) - l);

  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = opts_.top_k > 0 ? std::min<int64_t>(opts_.top_k, n) : n;
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return l[a] > l[b]; });
  order.resize(size_t(k));

  // Softmax over the kept tokens at the given temperature, then the nucleus cut.
  std::vector<double> p(order.size());
  const double mx = l[order[0]];
  double sum = 0;
  for (size_t i = 0; i < order.size(); ++i) sum += p[i] = std::exp((l[order[i]] - mx) / opts_.temperature);
  size_t keep = order.size();
  if (opts_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      cum += p[i] / sum;
      if (cum >= opts_.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  std::discrete_distribution<int> dist(p.begin(), p.begin() + long(keep));
  return order[size_t(dist(rng_))];
}

GenerateResult generate(Decoder& decoder, const std::vector<int>& prompt, const GenerateOptions& opts,
                        const std::function<void(int)>& on_token) {
  LCQ_CHECK(!prompt.empty(), "generate: the prompt is empty (no tokens)");
  GenerateResult res;
  Sampler sampler(opts.sampler);
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  int next = sampler.sample(decoder.prefill(prompt.data(), int64_t(prompt.size())), decoder.vocab());
  auto t1 = clock::now();
  res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  for (int i = 0; i < opts.max_new_tokens; ++i) {
    res.tokens.push_back(next);
    if (on_token) on_token(next);
    if (next == opts.stop_token || i + 1 == opts.max_new_tokens) break;
    next = sampler.sample(decoder.step(next), decoder.vocab());
  }
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace lcq::run
