// Typed reads of Hugging Face JSON files (config.json, tokenizer_config.json, shard indices)
// whose errors name the file and the key. Internal to the io layer.
#pragma once

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"

#include <nlohmann/json.hpp>

#include <limits>
#include <optional>
#include <string>

namespace lcq::io::hf {

inline nlohmann::json read_json(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
}

// A present, non-null value for key, or nullptr.
inline const nlohmann::json* json_value(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

inline int json_int(const nlohmann::json& j, const char* key, const std::string& where,
                    std::optional<int> def = std::nullopt) {
  const nlohmann::json* v = json_value(j, key);
  if (!v) {
    if (def) return *def;
    fail("{}: missing '{}'", where, key);
  }
  LCQ_CHECK(v->is_number_integer() && v->get<int64_t>() >= std::numeric_limits<int>::min() &&
                v->get<int64_t>() <= std::numeric_limits<int>::max(),
            "{}: '{}' must be an integer, got {}", where, key, v->dump());
  return v->get<int>();
}

inline float json_float(const nlohmann::json& j, const char* key, const std::string& where,
                        std::optional<float> def = std::nullopt) {
  const nlohmann::json* v = json_value(j, key);
  if (!v) {
    if (def) return *def;
    fail("{}: missing '{}'", where, key);
  }
  LCQ_CHECK(v->is_number(), "{}: '{}' must be a number, got {}", where, key, v->dump());
  return float(v->get<double>());
}

inline bool json_bool(const nlohmann::json& j, const char* key, const std::string& where, bool def) {
  const nlohmann::json* v = json_value(j, key);
  if (!v) return def;
  LCQ_CHECK(v->is_boolean(), "{}: '{}' must be true or false, got {}", where, key, v->dump());
  return v->get<bool>();
}

inline std::string json_string(const nlohmann::json& j, const char* key, const std::string& where,
                               const std::string& def) {
  const nlohmann::json* v = json_value(j, key);
  if (!v) return def;
  LCQ_CHECK(v->is_string(), "{}: '{}' must be a string, got {}", where, key, v->dump());
  return v->get<std::string>();
}

}  // namespace lcq::io::hf
