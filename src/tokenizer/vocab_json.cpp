// Hugging Face tokenizer.json <-> Vocab. Two shapes of BPE model are understood:
//  * ByteLevel (GPT-2, SmolLM, Llama 3, Qwen2): vocab + ranked merges, a ByteLevel
//    pre-tokenizer, possibly behind a Split regex or Digits(individual_digits).
//  * SentencePiece-style (llama 1/2, Mistral): byte_fallback BPE with a "▁" normalizer or a
//    Metaspace pre-tokenizer; merge ranks become scores so that SentencePiece's algorithm
//    (merge the best-scored adjacent pair) makes the same merges.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "internal.h"
#include "lcq/core/error.h"

namespace lcq::tokenizer {
namespace detail {
namespace {

using nlohmann::json;

std::string type_of(const json& node) {
  if (!node.is_object()) return "";
  auto it = node.find("type");
  return it != node.end() && it->is_string() ? it->get<std::string>() : "";
}

bool get_bool(const json& node, const char* key, bool fallback) {
  auto it = node.find(key);
  return it != node.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// A component and, for "Sequence", its members (the key differs per component kind).
std::vector<json> flatten(const json& node, const char* members) {
  if (node.is_null()) return {};
  if (type_of(node) == "Sequence" && node.contains(members)) return node[members].get<std::vector<json>>();
  return {node};
}

std::string pattern_of(const json& node) {
  const json& p = node.at("pattern");
  if (p.is_object() && p.contains("Regex")) return p["Regex"].get<std::string>();
  if (p.is_object() && p.contains("String")) return p["String"].get<std::string>();
  return p.is_string() ? p.get<std::string>() : "";
}

std::string merge_string(const json& m, const std::string& path, size_t rank) {
  if (m.is_string()) return m.get<std::string>();
  if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
    return m[0].get<std::string>() + " " + m[1].get<std::string>();
  fail("{}: merge {} is neither \"left right\" nor [left, right]", path, rank);
}

// ByteLevel pre-tokenizer name from the pre-tokenizer components.
std::string infer_byte_level_pre(const std::string& path, const std::vector<json>& parts) {
  const json* byte_level = nullptr;
  std::vector<const json*> others;
  for (const auto& p : parts)
    if (type_of(p) == "ByteLevel")
      byte_level = &p;
    else
      others.push_back(&p);
  if (get_bool(*byte_level, "add_prefix_space", false))
    fail("{}: ByteLevel add_prefix_space=true is not supported", path);
  const bool use_regex = get_bool(*byte_level, "use_regex", true);
  if (others.empty() && use_regex) return "default";
  if (others.size() == 1 && type_of(*others[0]) == "Digits" && use_regex) {
    if (!get_bool(*others[0], "individual_digits", false))
      fail("{}: Digits pre-tokenizer without individual_digits is not supported", path);
    return "smollm";
  }
  if (others.size() == 1 && type_of(*others[0]) == "Split" && !use_regex) {
    const std::string re = pattern_of(*others[0]);
    if (re == kLlama3Regex) return "llama3";
    if (re == kQwen2Regex) return "qwen2";
    if (re == kGpt2Regex) return "default";
    fail("{}: unsupported pre-tokenizer Split regex '{}' (supported: the GPT-2, Llama 3 and Qwen2 patterns)",
         path, one_line(re));
  }
  std::string names;
  for (const auto& p : parts) names += (names.empty() ? "" : ", ") + type_of(p);
  fail(
      "{}: unsupported pre-tokenizer sequence [{}] (supported: ByteLevel, Digits+ByteLevel, Split+ByteLevel)",
      path, names);
}

int id_of(const std::unordered_map<std::string, int>& ids, const std::string& s) {
  auto it = ids.find(s);
  return it == ids.end() ? -1 : it->second;
}

Vocab parse_tokenizer_json(const std::string& path, const json& j) {
  if (!j.is_object()) fail("{}: not a tokenizer.json (the top level is not an object)", path);
  if (!j.contains("model") || !j["model"].is_object())
    fail("{}: not a tokenizer.json (no \"model\" object)", path);
  const json& model = j["model"];
  std::string mtype = type_of(model);
  if (mtype.empty() && model.contains("merges")) mtype = "BPE";
  if (mtype != "BPE") fail("{}: model type '{}' is not supported (only BPE)", path, mtype);
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}: model.vocab is not an object", path);
  const json& vocab_obj = model["vocab"];
  const json empty_array = json::array();
  const json& added =
      j.contains("added_tokens") && j["added_tokens"].is_array() ? j["added_tokens"] : empty_array;

  // Ids may be sparse; bound them by the number of entries before allocating.
  const int64_t limit = 4 * int64_t(vocab_obj.size() + added.size()) + 1024;
  int64_t max_id = -1;
  auto check_id = [&](const json& id, const std::string& tok) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= limit)
      fail("{}: token '{}' has an invalid id {}", path, one_line(tok), one_line(id.dump()));
    max_id = std::max(max_id, id.get<int64_t>());
  };
  for (auto it = vocab_obj.begin(); it != vocab_obj.end(); ++it) check_id(it.value(), it.key());
  for (const auto& a : added) {
    if (!a.is_object() || !a.contains("id") || !a.contains("content") || !a["content"].is_string())
      fail("{}: an added_tokens entry lacks id or content", path);
    check_id(a["id"], a["content"].get<std::string>());
  }
  if (max_id < 0) fail("{}: the vocabulary is empty", path);

  Vocab v;
  v.source_path = path;
  const size_t n = size_t(max_id + 1);
  v.tokens.assign(n, "");
  v.types.assign(n, kNormal);
  std::vector<bool> filled(n, false);
  for (auto it = vocab_obj.begin(); it != vocab_obj.end(); ++it) {
    const size_t id = it.value().get<size_t>();
    if (filled[id])
      fail("{}: token id {} is used by both '{}' and '{}'", path, id, one_line(v.tokens[id]),
           one_line(it.key()));
    v.tokens[id] = it.key();
    filled[id] = true;
  }
  for (const auto& a : added) {
    const size_t id = a["id"].get<size_t>();
    v.tokens[id] = a["content"].get<std::string>();
    v.types[id] = get_bool(a, "special", false) ? kControl : kUserDefined;
    filled[id] = true;
  }
  for (size_t id = 0; id < n; ++id) {
    if (filled[id]) continue;
    v.tokens[id] = "[PAD" + std::to_string(id) + "]";  // what llama.cpp's converter writes for holes
    v.types[id] = kUnused;
  }
  std::unordered_map<std::string, int> ids;
  for (size_t id = 0; id < n; ++id) ids.emplace(v.tokens[id], int(id));

  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    v.unk_id = id_of(ids, model["unk_token"].get<std::string>());
    // An added special token that doubles as unk (GPT-2's <|endoftext|>) stays a control token.
    if (v.unk_id >= 0 && v.types[size_t(v.unk_id)] == kNormal) v.types[size_t(v.unk_id)] = kUnknown;
  }
  std::vector<std::string> merges;
  if (model.contains("merges") && model["merges"].is_array()) {
    merges.reserve(model["merges"].size());
    for (size_t r = 0; r < model["merges"].size(); ++r)
      merges.push_back(merge_string(model["merges"][r], path, r));
  }

  const std::vector<json> pre = flatten(j.value("pre_tokenizer", json()), "pretokenizers");
  const std::vector<json> norm = flatten(j.value("normalizer", json()), "normalizers");
  const bool byte_level =
      std::any_of(pre.begin(), pre.end(), [](const json& p) { return type_of(p) == "ByteLevel"; });
  if (byte_level) {
    v.kind = VocabKind::ByteLevelBPE;
    v.pre = infer_byte_level_pre(path, pre);
    for (const auto& nm : norm)  // Qwen2 declares NFC, which leaves ordinary text unchanged
      if (type_of(nm) != "NFC")
        fail("{}: normalizer '{}' is not supported with ByteLevel", path, type_of(nm));
    if (merges.empty()) fail("{}: a ByteLevel BPE model without merges", path);
    v.merges = std::move(merges);
  } else {
    bool space_mark = false, prefix = false;
    for (const auto& nm : norm) {
      const std::string t = type_of(nm);
      if (t == "Prepend" && nm.value("prepend", "") == kSpaceMark)
        prefix = true;
      else if (t == "Replace" && pattern_of(nm) == " " && nm.value("content", "") == kSpaceMark)
        space_mark = true;
      else
        fail("{}: normalizer '{}' is not supported", path, t);
    }
    for (const auto& p : pre) {
      if (type_of(p) != "Metaspace")
        fail("{}: pre-tokenizer '{}' is not supported without ByteLevel", path, type_of(p));
      space_mark = true;
      const std::string scheme = p.value("prepend_scheme", "");
      prefix = prefix || get_bool(p, "add_prefix_space", false) || scheme == "first" || scheme == "always";
    }
    if (!space_mark)
      fail(
          "{}: unsupported tokenizer: neither ByteLevel nor SentencePiece-style (Metaspace or \"▁\" "
          "normalizer) BPE",
          path);
    v.kind = VocabKind::SentencePiece;
    v.add_space_prefix = prefix;
    // Earlier merges must win: score = -rank of the first merge that makes the piece.
    v.scores.assign(n, 0.0f);
    std::vector<bool> scored(n, false);
    for (size_t r = 0; r < merges.size(); ++r) {
      const std::string& m = merges[r];
      const size_t sp = m.find(' ');
      if (sp == std::string::npos) continue;
      const int id = id_of(ids, m.substr(0, sp) + m.substr(sp + 1));
      if (id < 0 || scored[size_t(id)]) continue;
      v.scores[size_t(id)] = -float(r);
      scored[size_t(id)] = true;
    }
    if (get_bool(model, "byte_fallback", false))
      for (size_t id = 0; id < n; ++id)
        if (v.types[id] == kNormal && parse_byte_token(v.tokens[id]) >= 0) v.types[id] = kByte;
  }

  // BOS/EOS: the post-processor template says what is added; otherwise well-known names.
  for (const auto& proc : flatten(j.value("post_processor", json()), "processors")) {
    if (type_of(proc) != "TemplateProcessing" || !proc.contains("single") || !proc["single"].is_array())
      continue;
    const json& single = proc["single"];
    auto special_id = [&](const json& item) {
      return item.is_object() && item.contains("SpecialToken")
                 ? id_of(ids, item["SpecialToken"].value("id", ""))
                 : -1;
    };
    if (!single.empty() && special_id(single.front()) >= 0) {
      v.bos_id = special_id(single.front());
      v.add_bos = true;
    }
    if (single.size() > 1 && special_id(single.back()) >= 0) {
      v.eos_id = special_id(single.back());
      v.add_eos = true;
    }
  }
  auto first_of = [&](std::initializer_list<const char*> names) {
    for (const char* name : names)
      if (int id = id_of(ids, name); id >= 0) return id;
    return -1;
  };
  if (v.bos_id < 0) v.bos_id = first_of({"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"});
  if (v.eos_id < 0) v.eos_id = first_of({"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"});
  if (v.pad_id < 0) v.pad_id = first_of({"<pad>", "<|padding|>", "[PAD]"});
  return v;
}

}  // namespace

Vocab load_hf_tokenizer_json(const std::string& path, std::string_view bytes) {
  json j;
  try {
    j = json::parse(bytes.begin(), bytes.end());
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  try {
    return parse_tokenizer_json(path, j);
  } catch (const json::exception& e) {
    fail("{}: malformed tokenizer.json: {}", path, e.what());
  }
}

}  // namespace detail
}  // namespace lcq::tokenizer
