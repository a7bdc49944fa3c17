#include "lcq/core/error.h"
#include "lcq/io/model_source.h"
#include "formats.h"

#include <vector>

namespace lcq::io {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

void load_tensor_f32(const ModelSource& src, const TensorView& view, float* out) {
  const std::string where = src.path + ": tensor '" + view.name + "'";
  const bool is_q = ends_with(view.name, ".attn_q.weight") || ends_with(view.name, ".attn_q.bias");
  const bool is_k = ends_with(view.name, ".attn_k.weight") || ends_with(view.name, ".attn_k.bias");
  if (!src.qk_interleaved || !(is_q || is_k)) {
    dequantize(view, out, where);
    return;
  }
  const ModelConfig& c = src.config;
  const int heads = is_q ? c.n_heads : c.n_kv_heads;
  const int64_t rows = int64_t(heads) * c.head_dim;
  LCQ_CHECK(view.numel() % rows == 0 && view.shape.size() >= 1 && view.shape[0] == rows,
            "{}: shape does not match {} heads of size {}", where, heads, c.head_dim);
  std::vector<float> tmp(static_cast<size_t>(view.numel()));
  dequantize(view, tmp.data(), where);
  permute_qk_to_rotate_half(tmp.data(), out, heads, c.head_dim, view.numel() / rows);
}

}  // namespace lcq::io
