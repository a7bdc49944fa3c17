#include "lcq/model/act_quant.h"

#include "lcq/core/error.h"
#include "lcq/core/named.h"

#include <fmt/format.h>

#include <cmath>

namespace lcq::model {

namespace {

using Scheme = ActQuant::Scheme;
const Named<Scheme> kSchemes[] = {{Scheme::PerTensorStatic, "per-tensor-static"},
                                  {Scheme::PerTokenDynamic, "per-token-dynamic"}};


}  // namespace

const std::vector<std::string>& act_scheme_names() {
  static const auto v = names_of(kSchemes);
  return v;
}
ActQuant::Scheme parse_act_scheme(const std::string& name, const std::string& what) {
  return parse_named(kSchemes, name, what.c_str());
}
std::string to_string(ActQuant::Scheme s) { return name_of(kSchemes, s); }

void validate(const ActQuantConfig& a, const std::string& what) {
  LCQ_CHECK(a.bits == 0 || (a.bits >= 2 && a.bits <= 16), "{}: activation bits must be 0 (off) or 2..16, got {}",
            what, a.bits);
  LCQ_CHECK(a.kv_bits == 0 || (a.kv_bits >= 2 && a.kv_bits <= 16), "{}: k/v bits must be 0 (off) or 2..16, got {}",
            what, a.kv_bits);
}

void set_activation_quant(Model& m, const ActQuantConfig& a) {
  validate(a, "activation quantization");
  for (size_t l = 0; l < m.blocks.size(); ++l) set_activation_quant(m.blocks[l], int(l), a);
}

void set_activation_quant(Block& b, int l, const ActQuantConfig& a) {
  validate(a, "activation quantization");
  for (auto& [name, lin] : b.linears()) {
    lin->input_quant.reset();
    lin->output_quant.reset();
    if (a.bits > 0) {
      auto q = std::make_shared<ActQuant>();
      q->bits = a.bits;
      if (a.scheme == Scheme::PerTensorStatic) {
        const std::string full = layer_name(l, name);
        auto it = a.static_absmax.find(full);
        LCQ_CHECK(it != a.static_absmax.end() && std::isfinite(it->second) && it->second > 0,
                  "per-tensor-static activations need a calibrated range for every linear; '{}' has none (quantize "
                  "with --act-bits {} --act-scheme per-tensor-static and --calib, or use per-token-dynamic)",
                  full, a.bits);
        q->scheme = ActQuant::Scheme::PerTensorStatic;
        q->static_scale = float(double(it->second) / double((1 << (a.bits - 1)) - 1));
      } else {
        q->scheme = ActQuant::Scheme::PerTokenDynamic;
      }
      lin->input_quant = std::move(q);
    }
    if (a.kv_bits > 0 && (name == "attn_k" || name == "attn_v")) {
      auto q = std::make_shared<ActQuant>();
      q->bits = a.kv_bits;
      q->scheme = ActQuant::Scheme::PerTokenDynamic;
      lin->output_quant = std::move(q);
    }
  }
}

ActQuantConfig activation_quant(const Model& m) {
  ActQuantConfig a;
  for (size_t l = 0; l < m.blocks.size(); ++l)
    for (const auto& [name, lin] : m.blocks[l].linears()) {
      if (lin->input_quant && lin->input_quant->bits > 0) {
        a.bits = lin->input_quant->bits;
        if (lin->input_quant->scheme == ActQuant::Scheme::PerTensorStatic) {
          a.scheme = Scheme::PerTensorStatic;
          a.static_absmax[layer_name(l, name)] =
              float(double(lin->input_quant->static_scale) * double((1 << (a.bits - 1)) - 1));
        }
      }
      if (lin->output_quant && lin->output_quant->bits > 0) a.kv_bits = lin->output_quant->bits;
    }
  return a;
}

nlohmann::json act_quant_metadata(const ActQuantConfig& a) {
  if (a.bits == 0 && a.kv_bits == 0) return nlohmann::json::object();
  nlohmann::json j = {{"lcq.act.bits", a.bits}, {"lcq.act.scheme", to_string(a.scheme)}, {"lcq.act.kv_bits", a.kv_bits}};
  if (a.scheme == Scheme::PerTensorStatic) j["lcq.act.static_absmax"] = nlohmann::json(a.static_absmax).dump();
  return j;
}

std::optional<ActQuantConfig> act_quant_from_metadata(const nlohmann::json& md, const std::string& path) {
  if (!md.is_object() || !md.contains("lcq.act.bits")) return std::nullopt;
  ActQuantConfig a;
  try {
    a.bits = md.at("lcq.act.bits").get<int>();
    a.scheme = parse_act_scheme(md.value("lcq.act.scheme", to_string(Scheme::PerTokenDynamic)),
                                path + ": lcq.act.scheme");
    a.kv_bits = md.value("lcq.act.kv_bits", 0);
    if (md.contains("lcq.act.static_absmax"))
      a.static_absmax =
          nlohmann::json::parse(md.at("lcq.act.static_absmax").get<std::string>()).get<std::map<std::string, float>>();
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed lcq.act.* metadata: {}", path, e.what());
  }
  validate(a, path);
  return a;
}

std::string describe(const ActQuantConfig& a) {
  if (a.bits == 0 && a.kv_bits == 0) return "weight-only";
  std::string s = a.bits > 0 ? fmt::format("A{} {}", a.bits, to_string(a.scheme)) : "A16";
  if (a.kv_bits > 0) s += fmt::format(" + KV{}", a.kv_bits);
  return s;
}

}  // namespace lcq::model
