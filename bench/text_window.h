// Shared by the activation-statistics tools: a model (dense runtime) and the first TOKENS
// tokens of a text file, from the command line MODEL TEXT [TOKENS=512].
#pragma once

#include "lcq/core/error.h"
#include "lcq/model/loader.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <fstream>
#include <sstream>
#include <string>

namespace lcq::bench {

struct TextWindow {
  model::LoadedModel lm;
  torch::Tensor ids;  // [1, TOKENS]
};

// Returns false (after printing the usage line) when the arguments are missing.
inline bool load_text_window(const char* tool, int argc, char** argv, TextWindow& out) {
  if (argc < 3) {
    fmt::print(stderr, "usage: {} MODEL TEXT [TOKENS=512]\n", tool);
    return false;
  }
  const int64_t n = argc > 3 ? std::stoll(argv[3]) : 512;
  model::RuntimeOptions rt;
  rt.packed = false;
  out.lm = model::load_model(argv[1], {}, rt);
  std::ifstream f(argv[2], std::ios::binary);
  LCQ_CHECK(f, "{}: cannot open", argv[2]);
  std::stringstream text;
  text << f.rdbuf();
  const auto tokens = out.lm.tok().encode(text.str().substr(0, size_t(n) * 40), true);
  LCQ_CHECK(int64_t(tokens.size()) >= n, "{}: fewer than {} tokens", argv[2], n);
  out.ids = torch::tensor(std::vector<int64_t>(tokens.begin(), tokens.begin() + n)).view({1, n});
  return true;
}

}  // namespace lcq::bench
