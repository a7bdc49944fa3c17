#include "lcq/io/codebook_tensors.h"

#include "lcq/core/error.h"

#include <algorithm>
#include <cstring>

namespace lcq::io {

namespace {

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

namespace {

// One tensor of a layer as the file stores it: `source` is the layer's vector it comes from
// (null for the indices, which are packed first).
struct Part {
  const char* suffix;
  DType dtype;
  std::vector<int64_t> shape;
  const void* source;
  size_t source_bytes;
};

template <typename T>
Part part(const char* suffix, DType dtype, std::vector<int64_t> shape, const std::vector<T>& source) {
  return {suffix, dtype, std::move(shape), source.data(), source.size() * sizeof(T)};
}

// The tensors of layer l in file order.
std::vector<Part> parts_of(const CodebookLayer& l) {
  const int64_t G = l.n_groups(), NB = l.n_dq_blocks(), r = l.rank;
  std::vector<Part> out = {{"lcq_idx", DType::I8, {l.rows, l.packed_row_bytes()}, nullptr, 0},
                           part("lcq_v", DType::F16, {r, l.levels()}, l.v)};
  if (l.dq_bits > 0) {
    out.push_back(part("lcq_s_codes", DType::I8, {r, G}, l.s_codes));
    out.push_back(part("lcq_s_scale", DType::F16, {r, NB}, l.s_scale));
    out.push_back(part("lcq_s_offset", DType::F16, {r, NB}, l.s_offset));
    out.push_back(part("lcq_b_codes", DType::I8, {G}, l.b_codes));
    out.push_back(part("lcq_b_scale", DType::F16, {NB}, l.b_scale));
    out.push_back(part("lcq_b_offset", DType::F16, {NB}, l.b_offset));
  } else {
    out.push_back(part("lcq_s", DType::F32, {r, G}, l.s_f32));
    out.push_back(part("lcq_b", DType::F32, {G}, l.b_f32));
  }
  return out;
}

}  // namespace

void add_codebook_tensors(const std::string& name, const CodebookLayer& l, std::vector<WriteTensor>& out,
                          std::deque<std::vector<uint8_t>>& storage) {
  for (Part& p : parts_of(l)) {
    WriteTensor w;
    w.name = name + "." + p.suffix;
    w.shape = std::move(p.shape);
    w.dtype = p.dtype;
    if (p.source == nullptr) {
      w.raw = storage.emplace_back(l.pack_indices()).data();
    } else {
      storage.emplace_back(p.source_bytes);
      if (p.source_bytes > 0) std::memcpy(storage.back().data(), p.source, p.source_bytes);
      w.raw = storage.back().data();
    }
    out.push_back(std::move(w));
  }
}

uint64_t codebook_file_bytes(const std::string& name, const CodebookLayer& l, uint32_t alignment) {
  uint64_t n = 0;
  for (const Part& p : parts_of(l)) {
    int64_t numel = 1;
    for (int64_t d : p.shape) numel *= d;
    const uint64_t data = dtype_nbytes(p.dtype, numel, name);
    // Its entry in the tensor infos (name, dimensions, type, offset) and its padded data.
    n += 8 + name.size() + 1 + std::strlen(p.suffix) + 4 + 8 * p.shape.size() + 4 + 8;
    n += (data + alignment - 1) / alignment * alignment;
  }
  return n;
}

uint64_t codebook_key_bytes(const std::string& name, const std::string& key) {
  // The key string (length and bytes), the value's type and an 8-byte value at most.
  return 8 + std::string("lcq.layer.").size() + name.size() + 1 + key.size() + 4 + 8;
}

uint64_t codebook_all_keys_bytes(const std::string& name) {
  uint64_t n = 0;
  for (const char* key : {"bits", "group_size", "rank", "dq_bits", "dq_group"}) n += codebook_key_bytes(name, key);
  return n;
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
  const std::string where = src.path + ": layer '" + name + "'";
  l.bits = int(layer_param(src, name, "bits"));
  // A group wider than the row is one group per row: stored as the row's width, as
  // CodebookLayer::shaped() and the writers make it (so the layer packs and unpacks unchanged).
  const int64_t group = layer_param(src, name, "group_size");
  LCQ_CHECK(group >= 1, "{}: invalid codebook group size {}", where, group);
  l.group = int(std::min(group, std::max<int64_t>(cols, 1)));
  l.rank = int(layer_param(src, name, "rank"));
  l.dq_bits = int(layer_param(src, name, "dq_bits"));
  l.dq_group = int(layer_param(src, name, "dq_group"));
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
