#include "lcq/io/codebook_tensors.h"

#include "lcq/core/error.h"

#include <cstring>

namespace lcq::io {

namespace {

template <typename T>
const uint8_t* keep(std::deque<std::vector<uint8_t>>& storage, const std::vector<T>& v) {
  storage.emplace_back(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(storage.back().data(), v.data(), storage.back().size());
  return storage.back().data();
}

// Integer metadata: per-layer key first, then the model-wide one.
int64_t layer_param(const ModelSource& src, const std::string& name, const std::string& key) {
  for (const std::string& k : {"lcq.layer." + name + "." + key, "lcq." + key}) {
    if (src.metadata.contains(k)) {
      const auto& v = src.metadata.at(k);
      LCQ_CHECK(v.is_number_integer(), "{}: metadata '{}' is not an integer", src.path, k);
      return v.get<int64_t>();
    }
  }
  fail("{}: layer '{}' is LCQ-quantized but metadata 'lcq.{}' is missing", src.path, name, key);
}

const TensorView& tensor(const ModelSource& src, const std::string& name, DType dtype,
                         const std::vector<int64_t>& shape) {
  const TensorView& t = src.get(name);
  LCQ_CHECK(t.dtype == dtype, "{}: tensor '{}' has type {}, expected {}", src.path, name, dtype_name(t.dtype),
            dtype_name(dtype));
  LCQ_CHECK(t.shape == shape, "{}: tensor '{}' has shape [{}], expected [{}]", src.path, name, fmt::join(t.shape, ", "),
            fmt::join(shape, ", "));
  return t;
}

template <typename T>
std::vector<T> copy(const TensorView& t) {
  std::vector<T> out(size_t(t.numel()));
  std::memcpy(out.data(), t.data, out.size() * sizeof(T));
  return out;
}

}  // namespace

void add_codebook_tensors(const std::string& name, const CodebookLayer& l, std::vector<WriteTensor>& out,
                          std::deque<std::vector<uint8_t>>& storage) {
  const int64_t G = l.n_groups(), NB = l.n_dq_blocks(), r = l.rank;
  auto raw = [&](const std::string& suffix, DType t, std::vector<int64_t> shape, const uint8_t* data) {
    WriteTensor w;
    w.name = name + "." + suffix;
    w.shape = std::move(shape);
    w.dtype = t;
    w.raw = data;
    out.push_back(std::move(w));
  };
  raw("lcq_idx", DType::I8, {l.rows, l.packed_row_bytes()}, keep(storage, l.pack_indices()));
  raw("lcq_v", DType::F16, {r, l.levels()}, keep(storage, l.v));
  if (l.dq_bits > 0) {
    raw("lcq_s_codes", DType::I8, {r, G}, keep(storage, l.s_codes));
    raw("lcq_s_scale", DType::F16, {r, NB}, keep(storage, l.s_scale));
    raw("lcq_s_offset", DType::F16, {r, NB}, keep(storage, l.s_offset));
    raw("lcq_b_codes", DType::I8, {G}, keep(storage, l.b_codes));
    raw("lcq_b_scale", DType::F16, {NB}, keep(storage, l.b_scale));
    raw("lcq_b_offset", DType::F16, {NB}, keep(storage, l.b_offset));
  } else {
    raw("lcq_s", DType::F32, {r, G}, keep(storage, l.s_f32));
    raw("lcq_b", DType::F32, {G}, keep(storage, l.b_f32));
  }
}

nlohmann::json codebook_metadata(const CodebookLayer& l) {
  return {{"lcq.format_version", 1}, {"lcq.bits", l.bits},       {"lcq.group_size", l.group},
          {"lcq.rank", l.rank},      {"lcq.dq_bits", l.dq_bits}, {"lcq.dq_group", l.dq_group}};
}

bool has_codebook_layer(const ModelSource& src, const std::string& name) {
  return src.find(name + ".lcq_idx") != nullptr;
}

int codebook_tensor_count(const ModelSource& src, const std::string& name) {
  // Every tensor of the layer is named "<name>.lcq_*" (add_codebook_tensors): counted from
  // the file rather than from a second list of the parts.
  const std::string prefix = name + ".lcq_";
  int n = 0;
  for (const TensorView& t : src.tensors) n += t.name.compare(0, prefix.size(), prefix) == 0;
  return n;
}

CodebookLayer read_codebook_layer(const ModelSource& src, const std::string& name, int64_t rows, int64_t cols) {
  CodebookLayer l;
  l.rows = rows;
  l.cols = cols;
  l.bits = int(layer_param(src, name, "bits"));
  l.group = int(layer_param(src, name, "group_size"));
  l.rank = int(layer_param(src, name, "rank"));
  l.dq_bits = int(layer_param(src, name, "dq_bits"));
  l.dq_group = int(layer_param(src, name, "dq_group"));
  const std::string where = src.path + ": layer '" + name + "'";
  LCQ_CHECK(l.bits >= 1 && l.bits <= 8, "{}: invalid index bits {}", where, l.bits);
  LCQ_CHECK(l.group >= 1 && l.rank >= 1 && l.rank <= 64 && l.dq_bits >= 0 && l.dq_bits <= 8 && l.dq_group >= 1,
            "{}: invalid codebook parameters (group {}, rank {}, dq {} bits / {} groups)", where, l.group, l.rank,
            l.dq_bits, l.dq_group);
  const int64_t G = l.n_groups(), NB = l.n_dq_blocks(), r = l.rank;
  const TensorView& idx = tensor(src, name + ".lcq_idx", DType::I8, {rows, l.packed_row_bytes()});
  l.unpack_indices(static_cast<const uint8_t*>(idx.data), idx.nbytes, where);
  l.v = copy<uint16_t>(tensor(src, name + ".lcq_v", DType::F16, {r, l.levels()}));
  if (l.dq_bits > 0) {
    l.s_codes = copy<uint8_t>(tensor(src, name + ".lcq_s_codes", DType::I8, {r, G}));
    l.s_scale = copy<uint16_t>(tensor(src, name + ".lcq_s_scale", DType::F16, {r, NB}));
    l.s_offset = copy<uint16_t>(tensor(src, name + ".lcq_s_offset", DType::F16, {r, NB}));
    l.b_codes = copy<uint8_t>(tensor(src, name + ".lcq_b_codes", DType::I8, {G}));
    l.b_scale = copy<uint16_t>(tensor(src, name + ".lcq_b_scale", DType::F16, {NB}));
    l.b_offset = copy<uint16_t>(tensor(src, name + ".lcq_b_offset", DType::F16, {NB}));
  } else {
    l.s_f32 = copy<float>(tensor(src, name + ".lcq_s", DType::F32, {r, G}));
    l.b_f32 = copy<float>(tensor(src, name + ".lcq_b", DType::F32, {G}));
  }
  l.validate(where);
  return l;
}

}  // namespace lcq::io
