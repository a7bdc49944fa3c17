#include "lcq/quant/calibration.h"

#include "lcq/core/error.h"

#include <random>

namespace lcq::quant {

torch::Tensor sample_calibration(const std::vector<int>& tokens, const CalibrationOptions& o) {
  LCQ_CHECK(o.nsamples >= 1, "--nsamples must be >= 1, got {}", o.nsamples);
  LCQ_CHECK(o.seqlen >= 2, "--seqlen must be >= 2, got {}", o.seqlen);
  const int64_t n = int64_t(tokens.size());
  LCQ_CHECK(n >= o.seqlen, "{}: {} tokens is shorter than one calibration sample of {} tokens", o.path, n, o.seqlen);
  // More windows than the text has start positions only repeats them, at the memory and time
  // cost of new ones (100000 windows of a 1000-token text took minutes and 5 GB).
  const int64_t distinct = n - o.seqlen + 1;
  LCQ_CHECK(o.nsamples <= distinct,
            "{}: {} tokens give only {} distinct calibration windows of {} tokens, fewer than --nsamples {}; use "
            "--nsamples {} or fewer, shorter windows (--seqlen) or a longer text",
            o.path, n, distinct, o.seqlen, o.nsamples, distinct);
  // std::mt19937_64 and explicit arithmetic (not uniform_int_distribution, whose output is
  // implementation-defined) so that a seed means the same windows everywhere.
  std::mt19937_64 rng(o.seed);
  auto out = torch::empty({o.nsamples, o.seqlen}, torch::kInt64);
  auto acc = out.accessor<int64_t, 2>();
  const uint64_t starts = uint64_t(n - o.seqlen + 1);
  for (int64_t s = 0; s < o.nsamples; ++s) {
    const int64_t start = int64_t(rng() % starts);
    for (int64_t t = 0; t < o.seqlen; ++t) acc[s][t] = tokens[size_t(start + t)];
  }
  return out;
}

}  // namespace lcq::quant
