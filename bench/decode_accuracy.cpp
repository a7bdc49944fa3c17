// What each decode kernel costs in accuracy on a real text: the perplexity of TOKENS tokens of
// TEXT when every token after the first PROMPT goes through the lean decode path (one token
// at a time, teacher forcing) with --kernel float, int8, lut and auto, against the exact
// perplexity of the same tokens (the float kernel on the whole window through Model::forward).
//
//   decode_accuracy MODEL TEXT [TOKENS=512] [PROMPT=16]
//
// Prints one Markdown row per kernel: the family auto picked for the first block's q and
// for the head, the perplexity and its relative change from exact.
#include "lcq/core/error.h"
#include "lcq/kernels/matrix.h"
#include "lcq/model/decoder.h"
#include "lcq/model/loader.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <sstream>

using namespace lcq;

namespace {

double nll(const float* logits, int64_t n, int next) {
  double mx = logits[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, double(logits[i]));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(double(logits[i]) - mx);
  return mx + std::log(s) - double(logits[next]);
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 3) {
    fmt::print(stderr, "usage: decode_accuracy MODEL TEXT [TOKENS=512] [PROMPT=16]\n");
    return 2;
  }
  const int64_t n = argc > 3 ? std::stoll(argv[3]) : 512, prompt = argc > 4 ? std::stoll(argv[4]) : 16;
  LCQ_CHECK(prompt >= 1 && prompt + 2 <= n, "PROMPT must be in [1, TOKENS - 2]");
  torch::NoGradGuard ng;
  std::ifstream f(argv[2], std::ios::binary);
  LCQ_CHECK(f, "{}: cannot open", argv[2]);
  std::stringstream text;
  text << f.rdbuf();
  auto load = [&](kernels::KernelChoice k) {
    model::RuntimeOptions rt;
    rt.kernel = k;
    return model::load_model(argv[1], {}, rt);
  };
  const model::LoadedModel exact = load(kernels::KernelChoice::kFloat);
  const auto tokens = exact.tok().encode(text.str().substr(0, size_t(n) * 40), true);
  LCQ_CHECK(int64_t(tokens.size()) >= n, "{}: fewer than {} tokens", argv[2], n);
  const torch::Tensor ids = torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.begin() + n)).view({1, n});
  // Exact: the whole window at once, scored from position PROMPT - 1 on like the decoder.
  const torch::Tensor logits = exact.model.forward(ids).reshape({n, -1}).contiguous();
  double exact_sum = 0;
  for (int64_t t = prompt - 1; t + 1 < n; ++t)
    exact_sum += nll(logits[t].data_ptr<float>(), logits.size(1), int(tokens[size_t(t + 1)]));
  const double scored = double(n - prompt), exact_ppl = std::exp(exact_sum / scored);
  fmt::print("{}: {} tokens of {}, {} through the decoder after a {}-token prompt; exact perplexity {:.4f}\n\n", argv[1],
             n, argv[2], n - prompt, prompt, exact_ppl);
  fmt::print("| --kernel | first q | head | perplexity | vs exact |\n|---|---|---|---:|---:|\n");
  for (kernels::KernelChoice k : {kernels::KernelChoice::kFloat, kernels::KernelChoice::kInt8,
                                  kernels::KernelChoice::kLut, kernels::KernelChoice::kAuto}) {
    const model::LoadedModel lm = load(k);
    model::KVCache cache = lm.model.make_cache(1, n);
    const torch::Tensor pl = lm.model.forward(ids.slice(1, 0, prompt - 1), &cache);
    model::Decoder dec(lm.model, cache);
    double sum = 0;
    for (int64_t t = prompt - 1; t + 1 < n; ++t) {
      const float* g = dec.step(int(tokens[size_t(t)]));
      sum += nll(g, logits.size(1), int(tokens[size_t(t + 1)]));
    }
    const double ppl = std::exp(sum / scored);
    const auto name = [](const model::Linear& l) { return l.packed ? l.packed->kernel_name() : "dense"; };
    fmt::print("| {} | {} | {} | {:.4f} | {:+.2f} % |\n", kernels::kernel_choice_names()[size_t(k)],
               name(lm.model.blocks[0].q), lm.model.tok_embd_packed ? lm.model.tok_embd_packed->kernel_name() : name(lm.model.output),
               ppl, 100 * (ppl / exact_ppl - 1));
  }
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "decode_accuracy: error: {}\n", e.what());
  return 1;
}
