// The input layout of fuzz_hf_model: a Hugging Face directory's files, in kHfFiles order,
// separated by kPartSeparator. Shared with the seed maker, which writes seeds in it.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

namespace lcq::fuzz {

inline constexpr std::string_view kPartSeparator = "\n--lcq-fuzz-next-file--\n";
inline const std::array<std::string, 5> kHfFiles = {"config.json", "model.safetensors", "tokenizer.json",
                                                     "tokenizer_config.json", "model.safetensors.index.json"};

inline std::vector<std::string_view> split_parts(std::string_view input) {
  std::vector<std::string_view> parts;
  for (;;) {
    const size_t at = input.find(kPartSeparator);
    parts.push_back(input.substr(0, at));
    if (at == std::string_view::npos) return parts;
    input.remove_prefix(at + kPartSeparator.size());
  }
}

inline std::string join_parts(const std::vector<std::string>& files) {
  std::string out;
  for (size_t i = 0; i < files.size(); ++i) out += (i ? std::string(kPartSeparator) : "") + files[i];
  return out;
}

}  // namespace lcq::fuzz
