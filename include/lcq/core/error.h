// Errors. Every problem with user input becomes one lcq::Error whose message names the
// file (or option) and the problem; the CLI prints it as a single line and exits non-zero.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lcq {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace lcq

// LCQ_CHECK(cond, "{}: bad thing {}", path, x) throws lcq::Error when cond is false.
#define LCQ_CHECK(cond, ...)        \
  do {                              \
    if (!(cond)) ::lcq::fail(__VA_ARGS__); \
  } while (0)
