// How much rounding the inputs of every linear to int8 costs, for the integer kernel's
// choice of scale granularity: for one window of a text, the relative L2 error
// ||x - x'|| / ||x|| of each linear input when x is rounded to int8 with one max-abs scale
// per G consecutive columns (G = 128: one scale per weight group; G = 32: llama.cpp's Q8_0
// granularity), averaged over linears, for position 0 and for the other positions.
//
//   int8_activation_error MODEL TEXT [TOKENS=512]
#include "lcq/model/linear.h"
#include "text_window.h"

#include <map>

namespace {

// Relative error per row of x [T, C] rounded to int8 per G columns.
torch::Tensor relative_error(const torch::Tensor& x, int64_t G) {
  const int64_t T = x.size(0), C = x.size(1), pad = (G - C % G) % G;
  auto xp = torch::nn::functional::pad(x, torch::nn::functional::PadFuncOptions({0, pad})).view({T, -1, G});
  auto scale = xp.abs().amax(-1, true) / 127;
  auto q = torch::where(scale > 0, torch::round(xp / scale).clamp(-127, 127) * scale, torch::zeros_like(xp));
  return (q - xp).view({T, -1}).norm(2, -1) / x.norm(2, -1).clamp_min(1e-30);
}

}  // namespace

int main(int argc, char** argv) try {
  lcq::bench::TextWindow w;
  if (!lcq::bench::load_text_window("int8_activation_error", argc, argv, w)) return 2;
  const auto& lm = w.lm;
  const auto& ids = w.ids;

  // Per linear name (q, k, ...): sums of the errors and counts, at position 0 and after.
  struct Sums {
    double g128_first = 0, g32_first = 0, g128_rest = 0, g32_rest = 0, max_g128_rest = 0;
    int layers = 0;
  };
  std::map<const lcq::model::Linear*, std::string> names;
  for (size_t l = 0; l < lm.model.blocks.size(); ++l)
    for (const auto& [name, lin] : lm.model.blocks[l].linears()) names[lin] = name;
  std::map<std::string, Sums> sums;
  lcq::model::LinearInputTap tap([&](const lcq::model::Linear& lin, const torch::Tensor& x) {
    auto it = names.find(&lin);
    if (it == names.end()) return;
    const auto x2 = x.reshape({-1, x.size(-1)}).to(torch::kFloat32);
    const auto e128 = relative_error(x2, 128), e32 = relative_error(x2, 32);
    Sums& s = sums[it->second];
    s.g128_first += e128[0].item<double>();
    s.g32_first += e32[0].item<double>();
    s.g128_rest += e128.slice(0, 1).mean().item<double>();
    s.g32_rest += e32.slice(0, 1).mean().item<double>();
    s.max_g128_rest = std::max(s.max_g128_rest, e128.slice(0, 1).max().item<double>());
    s.layers += 1;
  });
  torch::NoGradGuard ng;
  lm.model.forward(ids);
  fmt::print("| linear input | position 0, G=128 | position 0, G=32 | positions 1.., G=128 | positions 1.., G=32 | "
             "worst position 1.., G=128 |\n|---|---:|---:|---:|---:|---:|\n");
  for (const auto& [name, s] : sums)
    fmt::print("| {} | {:.2f} % | {:.2f} % | {:.2f} % | {:.2f} % | {:.2f} % |\n", name, 100 * s.g128_first / s.layers,
               100 * s.g32_first / s.layers, 100 * s.g128_rest / s.layers, 100 * s.g32_rest / s.layers,
               100 * s.max_g128_rest);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "int8_activation_error: error: {}\n", e.what());
  return 1;
}
