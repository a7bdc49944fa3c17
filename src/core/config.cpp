#include "lcq/core/config.h"

#include "lcq/core/error.h"

#include <nlohmann/json.hpp>

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
