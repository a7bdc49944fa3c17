// Activation quantization of a model's block linears: the weight-activation schemes of LRQ
// (METHODS.md section 2), evaluated as fake quantization on the float runtime and the packed
// kernels alike.
//   per-tensor-static: symmetric signed grid, one scale per linear input from the largest
//     |x| seen on the calibration set (scale = absmax / (2^(b-1) - 1)); LRQ's W8A8.
//   per-token-dynamic: asymmetric min-max per token, computed on the fly; LRQ's W4A8, with
//     kv_bits also on the k and v projections' outputs ("KV8").
// The embedding, the final norm and the head stay in full precision, as in LRQ/SmoothQuant.
// A quantized file records its scheme and static scales (lcq.act.* keys, docs/lcq-format.md)
// and the loader applies them unless the user overrides them.
#pragma once

#include "lcq/model/model.h"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lcq::model {

// The schemes' names (--act-scheme, the lcq.act.scheme key): per-tensor-static,
// per-token-dynamic. parse_act_scheme() throws lcq::Error naming `what` for other names.
const std::vector<std::string>& act_scheme_names();
ActQuant::Scheme parse_act_scheme(const std::string& name, const std::string& what = "--act-scheme");
std::string to_string(ActQuant::Scheme s);

struct ActQuantConfig {
  int bits = 0;  // 0: activations stay in full precision
  ActQuant::Scheme scheme = ActQuant::Scheme::PerTokenDynamic;
  int kv_bits = 0;  // k/v projection outputs, per-token dynamic; 0: off
  // "blk.3.attn_q" -> the largest |input| on the calibration set (per-tensor-static). Kept as
  // a range, not a scale, so that one calibration serves any bit width.
  std::map<std::string, float> static_absmax;
};

// Checks bits (0 or 2..16) and kv_bits; throws lcq::Error naming `what`.
void validate(const ActQuantConfig& a, const std::string& what);

// Sets every block linear's input (and k/v output) quantizer from `a`, replacing what was
// there; bits 0 and kv_bits 0 clear them. per-tensor-static needs a positive finite scale for
// every block linear: the first one missing is named in the error.
void set_activation_quant(Model& m, const ActQuantConfig& a);
// The same for one block, block `layer` of its model.
void set_activation_quant(Block& block, int layer, const ActQuantConfig& a);
// The configuration a model currently runs with (static_absmax included).
ActQuantConfig activation_quant(const Model& m);

// The lcq.act.* metadata keys of a quantized file, and back (nullopt: the file has none).
nlohmann::json act_quant_metadata(const ActQuantConfig& a);
std::optional<ActQuantConfig> act_quant_from_metadata(const nlohmann::json& metadata, const std::string& path);

// A short description for the commands' output: "W-only", "A8 per-tensor-static + KV8", ...
std::string describe(const ActQuantConfig& a);

}  // namespace lcq::model
