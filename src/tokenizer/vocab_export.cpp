// vocab_to_tokenizer_json(): a standard Hugging Face tokenizer.json for a Vocab, written so
// that both Hugging Face tokenizers and load_vocab_file() give back the same encoding.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "internal.h"
#include "lcq/core/error.h"

namespace lcq::tokenizer {
namespace {

// Plain (key-sorted) json: ordered_json looks keys up linearly, too slow for 100k tokens.
using ojson = nlohmann::json;

ojson byte_level_component(bool use_regex) {
  return {
      {"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

ojson byte_level_pre_tokenizer(const std::string& pre) {
  if (pre == "default") return byte_level_component(true);
  if (pre == "smollm") {
    return {{"type", "Sequence"},
            {"pretokenizers", ojson::array({ojson{{"type", "Digits"}, {"individual_digits", true}},
                                            byte_level_component(true)})}};
  }
  const char* regex = pre == "llama3" ? detail::kLlama3Regex : detail::kQwen2Regex;
  ojson split = {
      {"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
  return {{"type", "Sequence"}, {"pretokenizers", ojson::array({split, byte_level_component(false)})}};
}

// Hugging Face's LlamaConverter idea: every piece that splits into two pieces gives merges,
// best-scored piece first, so HF's BPE makes the merges SentencePiece's scores imply.
std::vector<std::pair<std::string, std::string>> merges_from_scores(const Vocab& v) {
  std::unordered_map<std::string_view, int> mergeable;
  for (int id = 0; id < v.size(); ++id) {
    const int32_t t = detail::token_type(v, id);
    if (t == kNormal || t == kUnused) mergeable.emplace(v.tokens[size_t(id)], id);
  }
  struct Merge {
    float score;
    int id, left, right;
    size_t split;
  };
  std::vector<Merge> merges;
  for (const auto& [piece, id] : mergeable) {
    for (size_t k = size_t(detail::utf8_len(static_cast<unsigned char>(piece[0]))); k < piece.size();
         k += size_t(detail::utf8_len(static_cast<unsigned char>(piece[k])))) {
      auto l = mergeable.find(piece.substr(0, k));
      auto r = mergeable.find(piece.substr(k));
      if (l == mergeable.end() || r == mergeable.end()) continue;
      merges.push_back({v.scores.empty() ? 0.0f : v.scores[size_t(id)], id, l->second, r->second, k});
    }
  }
  std::sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.id != b.id) return a.id < b.id;
    if (a.left != b.left) return a.left < b.left;
    return a.right < b.right;
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (const auto& m : merges) {
    const std::string& piece = v.tokens[size_t(m.id)];
    out.emplace_back(piece.substr(0, m.split), piece.substr(m.split));
  }
  return out;
}

ojson template_processing(const Vocab& v) {
  auto special = [&](int id, int type_id) {
    return ojson{{"SpecialToken", {{"id", v.tokens[size_t(id)]}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* name, int type_id) {
    return ojson{{"Sequence", {{"id", name}, {"type_id", type_id}}}};
  };
  auto wrap = [&](ojson& out, const char* name, int type_id) {
    if (v.add_bos) out.push_back(special(v.bos_id, type_id));
    out.push_back(sequence(name, type_id));
    if (v.add_eos) out.push_back(special(v.eos_id, type_id));
  };
  ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
  wrap(single, "A", 0);
  wrap(pair, "A", 0);
  wrap(pair, "B", 1);
  for (int id : {v.add_bos ? v.bos_id : -1, v.add_eos ? v.eos_id : -1}) {
    if (id < 0) continue;
    const std::string& s = v.tokens[size_t(id)];
    specials[s] = {{"id", s}, {"ids", {id}}, {"tokens", {s}}};
  }
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

}  // namespace

std::string vocab_to_tokenizer_json(const Vocab& v) {
  if (v.empty()) fail("tokenizer: cannot export an empty vocabulary as tokenizer.json");
  const bool spm = v.kind == VocabKind::SentencePiece;
  if (!spm && detail::canonical_pretokenizer(v.pre).empty())
    fail("tokenizer: unknown pre-tokenizer '{}' (supported: {})", v.pre, detail::supported_pretokenizers());
  const std::string pre = spm ? "" : detail::canonical_pretokenizer(v.pre);

  ojson added = ojson::array();
  ojson vocab = ojson::object();
  std::unordered_map<std::string_view, int> seen;
  bool has_bytes = false;
  for (int id = 0; id < v.size(); ++id) {
    const std::string& tok = v.tokens[size_t(id)];
    const int32_t t = detail::token_type(v, id);
    auto [it, fresh] = seen.emplace(tok, id);
    if (!fresh)
      fail("tokenizer: token '{}' appears twice (ids {} and {}); tokenizer.json cannot represent that",
           detail::one_line(tok), it->second, id);
    vocab[tok] = id;
    has_bytes = has_bytes || t == kByte;
    if (t == kControl || t == kUserDefined) {
      added.push_back({{"id", id},
                       {"content", tok},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", t == kControl}});
    }
  }

  ojson merges = ojson::array();
  if (spm) {
    for (auto& [l, r] : merges_from_scores(v)) merges.push_back(l + " " + r);
  } else {
    for (const auto& m : v.merges) merges.push_back(m);
  }

  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  if (spm) {
    ojson norms = ojson::array();
    if (v.add_space_prefix) norms.push_back({{"type", "Prepend"}, {"prepend", detail::kSpaceMark}});
    norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", detail::kSpaceMark}});
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", norms}};
    j["pre_tokenizer"] = nullptr;
  } else {
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = byte_level_pre_tokenizer(pre);
  }
  j["post_processor"] = v.add_bos || v.add_eos ? template_processing(v) : ojson(nullptr);
  if (spm) {
    ojson decoders = ojson::array();
    decoders.push_back(
        {{"type", "Replace"}, {"pattern", {{"String", detail::kSpaceMark}}}, {"content", " "}});
    decoders.push_back({{"type", "ByteFallback"}});
    decoders.push_back({{"type", "Fuse"}});
    if (v.add_space_prefix)
      decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    j["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
  } else {
    j["decoder"] = byte_level_component(true);
  }
  ojson model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = v.unk_id >= 0 ? ojson(v.tokens[size_t(v.unk_id)]) : ojson(nullptr);
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = spm;
  model["byte_fallback"] = spm && has_bytes;
  model["ignore_merges"] = pre == "llama3";
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merges);
  j["model"] = std::move(model);
  return j.dump(1) + "\n";
}

}  // namespace lcq::tokenizer
