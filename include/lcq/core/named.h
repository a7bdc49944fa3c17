// A closed choice's one definition: a table of its values and their names. The accepted
// names (names_of), the parsing that refuses anything else naming the option and the valid
// names (parse_named), and a value's name (name_of) all come from the table.
#pragma once

#include "lcq/core/error.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

namespace lcq {

template <typename E>
struct Named {
  E value;
  const char* name;
};

template <typename E, size_t N>
std::vector<std::string> names_of(const Named<E> (&table)[N]) {
  std::vector<std::string> v;
  for (const auto& e : table) v.push_back(e.name);
  return v;
}

template <typename E, size_t N>
E parse_named(const Named<E> (&table)[N], const std::string& name, const char* option) {
  for (const auto& e : table)
    if (name == e.name) return e.value;
  fail("{} must be {}, got '{}'", option, fmt::join(names_of(table), " or "), name);
}

template <typename E, size_t N>
const char* name_of(const Named<E> (&table)[N], E value) {
  for (const auto& e : table)
    if (e.value == value) return e.name;
  fail("internal: a value without a name");
}

}  // namespace lcq
