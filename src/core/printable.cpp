#include "lcq/core/printable.h"

#include <fmt/format.h>

namespace lcq {

std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && out.size() < 80; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) out += char(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  if (out.size() >= 80) out += "...";
  return out;
}

}  // namespace lcq
