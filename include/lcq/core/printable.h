// Text from a file (a tensor name, a key, a type string) as it may appear in an error message:
// a corrupt or hostile file may put anything there, and messages stay one printable line.
#pragma once

#include <string>
#include <string_view>

namespace lcq {

// Printable ASCII as it is, every other byte as \xNN, cut to about 80 characters ("...").
std::string printable(std::string_view s);

}  // namespace lcq
