// Where the energy of each block's output sits: for one window of a text, prints per block
// the share of the squared output norm held by the largest position. A position holding most
// of it dominates a plain MSE block-reconstruction loss (see BENCHMARKS.md, LCQ on SmolLM2).
//
//   activation_norms MODEL TEXT [TOKENS=512]
#include "lcq/core/error.h"
#include "lcq/model/loader.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <fstream>
#include <sstream>

int main(int argc, char** argv) try {
  if (argc < 3) {
    fmt::print(stderr, "usage: activation_norms MODEL TEXT [TOKENS=512]\n");
    return 2;
  }
  const int64_t n = argc > 3 ? std::stoll(argv[3]) : 512;
  lcq::model::RuntimeOptions rt;
  rt.packed = false;
  const auto lm = lcq::model::load_model(argv[1], {}, rt);
  std::ifstream f(argv[2], std::ios::binary);
  LCQ_CHECK(f, "{}: cannot open", argv[2]);
  std::stringstream text;
  text << f.rdbuf();
  const auto tokens = lm.tok().encode(text.str().substr(0, size_t(n) * 40), true);
  LCQ_CHECK(int64_t(tokens.size()) >= n, "{}: fewer than {} tokens", argv[2], n);
  const auto ids = torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.begin() + n)).view({1, n});

  torch::NoGradGuard ng;
  const auto ctx = lm.model.context();
  auto x = lm.model.embed(ids);
  fmt::print("| block | largest position | its share of sum ||y_t||^2 | median / largest |\n|---:|---:|---:|---:|\n");
  for (size_t l = 0; l < lm.model.blocks.size(); ++l) {
    x = lcq::model::block_forward(ctx, lm.model.blocks[l], x, 0);
    const auto sq = x[0].pow(2).sum(-1);
    const double top = sq.max().item<double>();
    fmt::print("| {} | {} | {:.1f} % | {:.1e} |\n", l, sq.argmax().item<int64_t>(), 100 * top / sq.sum().item<double>(),
               sq.median().item<double>() / top);
  }
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "activation_norms: error: {}\n", e.what());
  return 1;
}
