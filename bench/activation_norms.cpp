// Where the energy of each block's output sits: for one window of a text, prints per block
// the share of the squared output norm held by the largest position. A position holding most
// of it dominates a plain MSE block-reconstruction loss (see BENCHMARKS.md, LCQ on SmolLM2).
//
//   activation_norms MODEL TEXT [TOKENS=512]
#include "text_window.h"

int main(int argc, char** argv) try {
  lcq::bench::TextWindow w;
  if (!lcq::bench::load_text_window("activation_norms", argc, argv, w)) return 2;
  const auto& lm = w.lm;
  const auto& ids = w.ids;

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
