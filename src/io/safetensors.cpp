#include "lcq/io/safetensors.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/core/mapped_file.h"
#include "lcq/core/printable.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors files are little-endian; this reader assumes a little-endian host"
#endif

namespace lcq::io {

namespace {

// The reference implementation refuses headers above 100 MB; so do we, before parsing.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct StDType {
  const char* name;
  DType dtype;
  size_t elem_bytes;
};

constexpr StDType kDTypes[] = {
    {"F64", DType::F64, 8},   {"F32", DType::F32, 4}, {"F16", DType::F16, 2},
    {"BF16", DType::BF16, 2}, {"I64", DType::I64, 8}, {"I32", DType::I32, 4},
    {"I16", DType::I16, 2},   {"I8", DType::I8, 1},   {"U8", DType::U8, 1},
};

const StDType* find_dtype(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

const StDType* find_dtype(DType t) {
  for (const auto& d : kDTypes)
    if (t == d.dtype) return &d;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// numel * elem_bytes, or throws when the shape is negative or overflows.
uint64_t checked_nbytes(const std::vector<int64_t>& shape, size_t elem_bytes, const std::string& where) {
  uint64_t n = elem_bytes;
  for (int64_t d : shape) {
    LCQ_CHECK(d >= 0, "{}: negative dimension in shape {}", where, shape_str(shape));
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / 4 / uint64_t(d))
      fail("{}: shape {} is too large", where, shape_str(shape));
    n *= uint64_t(d);
  }
  return n;
}

TensorView parse_entry(const std::string& path, const std::string& name, const nlohmann::json& e,
                       size_t buffer_size, uint64_t& begin_out) {
  // Names and strings from the header may hold anything (newlines too): printable() keeps
  // every message one line.
  const std::string where = path + ": tensor '" + printable(name) + "'";
  LCQ_CHECK(e.is_object(), "{}: header entry is not an object", where);
  auto dt = e.find("dtype");
  auto sh = e.find("shape");
  auto off = e.find("data_offsets");
  LCQ_CHECK(dt != e.end() && dt->is_string(), "{}: missing or non-string 'dtype'", where);
  LCQ_CHECK(sh != e.end() && sh->is_array(), "{}: missing or non-array 'shape'", where);
  LCQ_CHECK(off != e.end() && off->is_array() && off->size() == 2, "{}: 'data_offsets' must be [begin, end]",
            where);
  const StDType* st = find_dtype(dt->get<std::string>());
  LCQ_CHECK(st, "{}: unsupported dtype '{}'", where, printable(dt->get<std::string>()));

  TensorView v;
  v.name = name;
  v.dtype = st->dtype;
  LCQ_CHECK(sh->size() <= 8, "{}: {} dimensions is implausible", where, sh->size());
  for (const auto& d : *sh) {
    LCQ_CHECK(d.is_number_unsigned() && d.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()),
              "{}: shape entries must be non-negative integers", where);
    v.shape.push_back(d.get<int64_t>());
  }
  for (const auto& o : *off)
    LCQ_CHECK(o.is_number_unsigned(), "{}: data_offsets must be non-negative integers", where);
  const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  LCQ_CHECK(begin <= end && end <= buffer_size,
            "{}: data_offsets [{}, {}] lie outside the data buffer ({} bytes)", where, begin, end,
            buffer_size);
  const uint64_t need = checked_nbytes(v.shape, st->elem_bytes, where);
  LCQ_CHECK(end - begin == need, "{}: data_offsets span {} bytes but shape {} of {} needs {}", where,
            end - begin, shape_str(v.shape), st->name, need);
  v.nbytes = size_t(need);
  begin_out = begin;
  return v;
}

}  // namespace

const char* safetensors_dtype_name(DType t) {
  const StDType* st = find_dtype(t);
  if (!st) fail("safetensors cannot store tensors of type {}", dtype_name(t));
  return st->name;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

SafetensorsFile read_safetensors(const std::string& path) { return read_safetensors(MappedFile::open(path)); }

SafetensorsFile read_safetensors(std::shared_ptr<const MappedFile> map) {
  const std::string path = map->path();
  const uint8_t* data = map->data();
  const size_t size = map->size();
  LCQ_CHECK(size >= 8, "{}: truncated: {} bytes, but a safetensors file starts with an 8-byte header length",
            path, size);
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);
  LCQ_CHECK(header_len <= size - 8,
            "{}: header length {} exceeds the file size ({} bytes): truncated or not a safetensors file",
            path, header_len, size);
  LCQ_CHECK(header_len <= kMaxHeaderBytes, "{}: header length {} is implausibly large", path, header_len);

  const char* hbegin = reinterpret_cast<const char*>(data + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(hbegin, hbegin + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON header: {}", path, e.what());
  }
  LCQ_CHECK(header.is_object(), "{}: the JSON header is not an object", path);

  SafetensorsFile out;
  out.path = path;
  const uint8_t* buffer = data + 8 + header_len;
  const size_t buffer_size = size - 8 - size_t(header_len);
  std::vector<std::pair<uint64_t, TensorView>> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      LCQ_CHECK(it->is_object(), "{}: __metadata__ is not an object", path);
      for (auto m = it->begin(); m != it->end(); ++m) {
        LCQ_CHECK(m->is_string(), "{}: __metadata__ value '{}' is not a string", path, printable(m.key()));
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    uint64_t begin = 0;
    TensorView v = parse_entry(path, it.key(), *it, buffer_size, begin);
    v.data = buffer + begin;
    entries.emplace_back(begin, std::move(v));
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  uint64_t prev_end = 0;
  std::string prev_name;
  for (auto& [begin, v] : entries) {
    // Empty tensors occupy no bytes and may share an offset with their neighbour.
    LCQ_CHECK(v.nbytes == 0 || begin >= prev_end, "{}: tensors '{}' and '{}' overlap in the data buffer",
              path, printable(prev_name), printable(v.name));
    if (v.nbytes) {
      prev_end = begin + v.nbytes;
      prev_name = v.name;
    }
    out.tensors.push_back(std::move(v));
  }
  out.keepalive = map;
  return out;
}

void write_safetensors(const std::string& path, const std::vector<WriteTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const StDType*> types(tensors.size());
  std::vector<uint64_t> sizes(tensors.size());
  std::set<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const WriteTensor& t = tensors[i];
    const std::string where = path + ": tensor '" + t.name + "'";
    LCQ_CHECK(!t.name.empty() && t.name != "__metadata__", "{}: invalid tensor name '{}'", path, t.name);
    LCQ_CHECK(names.insert(t.name).second, "{}: duplicate tensor name", where);
    types[i] = find_dtype(t.dtype);
    LCQ_CHECK(types[i], "{}: safetensors cannot store type {}", where, dtype_name(t.dtype));
    LCQ_CHECK(!t.is_f32() || t.dtype == DType::F32 || t.dtype == DType::F16 || t.dtype == DType::BF16,
              "{}: f32 values can be stored as F32, F16 or BF16, not {}", where, dtype_name(t.dtype));
    sizes[i] = checked_nbytes(t.shape, types[i]->elem_bytes, where);
    const int sources = (t.f32 != nullptr) + (t.raw != nullptr) + bool(t.fill_f32) + bool(t.fill_raw);
    LCQ_CHECK(sizes[i] == 0 || sources == 1, "{}: exactly one of f32 or raw data must be given", where);
  }

  // Widest elements first keeps every tensor aligned to its element size without padding
  // (the format allows no holes in the data buffer).
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return types[a]->elem_bytes > types[b]->elem_bytes; });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    header[tensors[i].name] = {{"dtype", types[i]->name},
                               {"shape", tensors[i].shape},
                               {"data_offsets", {offset, offset + sizes[i]}}};
    offset += sizes[i];
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t header_len = text.size();

  AtomicFile f(path);
  f.write(&header_len, 8);
  f.write(text);
  std::vector<float> values;
  std::vector<uint8_t> bytes;
  for (size_t i : order) {
    const WriteTensor& t = tensors[i];
    if (sizes[i] == 0) continue;
    if (t.raw || (t.f32 && t.dtype == DType::F32)) {
      f.write(t.raw ? static_cast<const void*>(t.raw) : static_cast<const void*>(t.f32), size_t(sizes[i]));
      continue;
    }
    // Converted (f32 to F16/BF16) or produced: a piece of rows at a time.
    const int64_t rows = t.rows(), per_row = t.numel() / rows, step = rows_per_piece(t);
    const size_t row_bytes = size_t(sizes[i]) / size_t(rows);
    for (int64_t r0 = 0; r0 < rows; r0 += step) {
      const int64_t r1 = std::min(rows, r0 + step), n = (r1 - r0) * per_row;
      if (!t.is_f32()) {
        bytes.resize(size_t(r1 - r0) * row_bytes);
        t.read_raw(r0, r1, row_bytes, bytes.data());
        f.write(bytes.data(), bytes.size());
        continue;
      }
      values.resize(size_t(n));
      t.read_f32(r0, r1, values.data());
      if (t.dtype == DType::F32) {
        f.write(values.data(), size_t(n) * sizeof(float));
        continue;
      }
      bytes.resize(size_t(n) * 2);
      for (int64_t j = 0; j < n; ++j) {
        const uint16_t h = t.dtype == DType::F16 ? f32_to_f16(values[size_t(j)]) : f32_to_bf16(values[size_t(j)]);
        std::memcpy(bytes.data() + 2 * j, &h, 2);
      }
      f.write(bytes.data(), bytes.size());
    }
  }
  f.commit();
}

}  // namespace lcq::io
