#include "lcq/core/config.h"

#include "lcq/core/error.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace lcq {

std::string arch_name(Arch a) { return a == Arch::OPT ? "opt" : "llama"; }

void ModelConfig::validate(const std::string& where) const {
  LCQ_CHECK(dim > 0 && hidden_dim > 0 && n_layers > 0 && n_heads > 0 && vocab_size > 0,
            "{}: invalid model sizes (dim {}, hidden {}, layers {}, heads {}, vocab {})", where, dim,
            hidden_dim, n_layers, n_heads, vocab_size);
  LCQ_CHECK(n_kv_heads > 0 && n_heads % n_kv_heads == 0,
            "{}: {} attention heads are not a multiple of {} key/value heads", where, n_heads, n_kv_heads);
  LCQ_CHECK(head_dim > 0 && head_dim % 2 == 0, "{}: invalid head size {}", where, head_dim);
  LCQ_CHECK(dim <= (1 << 16) && hidden_dim <= (1 << 18) && n_layers <= 1024 && vocab_size <= (1 << 22),
            "{}: implausible model sizes (dim {}, hidden {}, layers {}, vocab {})", where, dim, hidden_dim,
            n_layers, vocab_size);
  LCQ_CHECK(max_seq_len > 0, "{}: invalid context length {}", where, max_seq_len);
  LCQ_CHECK(activation == "silu" || activation == "relu" || activation == "gelu",
            "{}: unsupported activation '{}'", where, activation);
  // One check for every format (GGUF, config.json, llama2.c): NaN fails every comparison.
  LCQ_CHECK(norm_eps > 0.0f && norm_eps < 1.0f, "{}: invalid normalisation epsilon {} (must be in (0, 1))", where,
            norm_eps);
  LCQ_CHECK(rope_theta > 0.0f && std::isfinite(rope_theta), "{}: invalid RoPE base (rope_theta) {} (must be positive)",
            where, rope_theta);
  const RopeScaling& rs = rope_scaling;
  LCQ_CHECK(rs.type == "none" || rs.type == "linear" || rs.type == "llama3", "{}: unsupported rope scaling type '{}'",
            where, rs.type);
  LCQ_CHECK(rs.factor > 0.0f && std::isfinite(rs.factor), "{}: invalid rope scaling factor {} (must be positive)", where,
            rs.factor);
  if (rs.type == "llama3")
    LCQ_CHECK(rs.low_freq_factor > 0.0f && rs.high_freq_factor > rs.low_freq_factor &&
                  std::isfinite(rs.high_freq_factor) && rs.original_max_position > 0,
              "{}: invalid llama3 rope scaling (low_freq_factor {}, high_freq_factor {}, original context {}): "
              "needs 0 < low < high and a positive context",
              where, rs.low_freq_factor, rs.high_freq_factor, rs.original_max_position);
}

void to_json(nlohmann::json& j, const ModelConfig& c) {
  j = nlohmann::json{{"arch", arch_name(c.arch)},
                     {"family", c.family},
                     {"dim", c.dim},
                     {"hidden_dim", c.hidden_dim},
                     {"n_layers", c.n_layers},
                     {"n_heads", c.n_heads},
                     {"n_kv_heads", c.n_kv_heads},
                     {"head_dim", c.head_dim},
                     {"vocab_size", c.vocab_size},
                     {"max_seq_len", c.max_seq_len},
                     {"norm_eps", c.norm_eps},
                     {"rope_theta", c.rope_theta},
                     {"rope_scaling", c.rope_scaling.type},
                     {"tie_embeddings", c.tie_embeddings},
                     {"activation", c.activation}};
}

}  // namespace lcq
