// GgufWriter: metadata values are serialised as they are set (type id + payload), tensors
// are referenced (or produced on demand) until write() streams header, KV pairs, tensor
// infos and aligned data through an AtomicFile.
#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/io/gguf.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace lcq::io {

namespace {

constexpr uint32_t kMagic = 0x46554747;
constexpr uint32_t kVersion = 3;

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_type(std::string& out, GgufType t) { put<uint32_t>(out, uint32_t(t)); }

template <typename T>
std::string array_payload(GgufType elem, const std::vector<T>& v) {
  std::string out;
  put_type(out, elem);
  put<uint64_t>(out, v.size());
  for (const T& x : v) put<T>(out, x);
  return out;
}

// ---- JSON -> GGUF ----------------------------------------------------------------------

bool float_exact(double d) { return std::isnan(d) || double(float(d)) == d; }

// The GGUF type a JSON scalar is stored as (arrays: GgufType::Array).
GgufType scalar_kind(const nlohmann::json& v, const std::string& key) {
  using T = nlohmann::json::value_t;
  switch (v.type()) {
    case T::string: return GgufType::String;
    case T::boolean: return GgufType::Bool;
    case T::number_integer: {
      const int64_t x = v.get<int64_t>();
      return x >= std::numeric_limits<int32_t>::min() && x <= std::numeric_limits<int32_t>::max()
                 ? GgufType::I32 : GgufType::I64;
    }
    case T::number_unsigned: {
      const uint64_t x = v.get<uint64_t>();
      return x <= uint64_t(std::numeric_limits<int32_t>::max()) ? GgufType::I32
             : x <= uint64_t(std::numeric_limits<int64_t>::max()) ? GgufType::I64 : GgufType::U64;
    }
    case T::number_float: return float_exact(v.get<double>()) ? GgufType::F32 : GgufType::F64;
    case T::array: return GgufType::Array;
    default: fail("GGUF metadata '{}': a {} cannot be stored (only strings, numbers, bools, arrays)", key,
                  v.type_name());
  }
}

bool is_int_kind(GgufType t) { return t == GgufType::I32 || t == GgufType::I64 || t == GgufType::U64; }
bool is_float_kind(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

// One element type that holds every element of a JSON array without loss.
GgufType array_elem_kind(const nlohmann::json& arr, const std::string& key) {
  if (arr.empty()) return GgufType::I32;
  GgufType kind = scalar_kind(arr[0], key);
  for (const auto& e : arr) {
    const GgufType k = scalar_kind(e, key);
    if (k == kind) continue;
    if (is_int_kind(k) && is_int_kind(kind)) {
      if (k == GgufType::U64 || kind == GgufType::U64) {
        // Mixing values above INT64_MAX with negatives has no common type.
        for (const auto& x : arr)
          if (x.is_number_integer() && !x.is_number_unsigned() && x.get<int64_t>() < 0)
            fail("GGUF metadata '{}': array mixes negative and huge integers", key);
        kind = GgufType::U64;
      } else {
        kind = GgufType::I64;
      }
    } else if ((is_int_kind(k) || is_float_kind(k)) && (is_int_kind(kind) || is_float_kind(kind))) {
      kind = GgufType::F32;  // refined below
    } else {
      fail("GGUF metadata '{}': array mixes {} and {} elements", key, gguf_type_name(kind), gguf_type_name(k));
    }
  }
  if (is_float_kind(kind)) {
    for (const auto& x : arr)
      if (!float_exact(x.get<double>())) return GgufType::F64;
    return GgufType::F32;
  }
  return kind;
}

void put_json_value(std::string& out, const nlohmann::json& v, GgufType type, const std::string& key,
                    int depth) {
  switch (type) {
    case GgufType::String: put_string(out, v.get<std::string>()); break;
    case GgufType::Bool: put<uint8_t>(out, v.get<bool>() ? 1 : 0); break;
    case GgufType::I32: put<int32_t>(out, int32_t(v.get<int64_t>())); break;
    case GgufType::I64: put<int64_t>(out, v.get<int64_t>()); break;
    case GgufType::U64: put<uint64_t>(out, v.get<uint64_t>()); break;
    case GgufType::F32: put<float>(out, float(v.get<double>())); break;
    case GgufType::F64: put<double>(out, v.get<double>()); break;
    case GgufType::Array: {
      if (depth >= 8) fail("GGUF metadata '{}': arrays nested too deeply", key);
      const GgufType elem = array_elem_kind(v, key);
      put_type(out, elem);
      put<uint64_t>(out, v.size());
      // Elements carry no type ids; an inner array starts with its own element type.
      for (const auto& e : v) put_json_value(out, e, elem, key, depth + 1);
      break;
    }
    default: fail("GGUF metadata '{}': unexpected type", key);
  }
}

}  // namespace

void GgufWriter::set_raw(const std::string& key, GgufType type, std::string payload) {
  LCQ_CHECK(!key.empty(), "GGUF metadata: empty key");
  std::string bytes;
  put_type(bytes, type);
  bytes += payload;
  auto it = kv_index_.find(key);
  if (it != kv_index_.end()) {
    kv_[it->second].second = std::move(bytes);
  } else {
    kv_index_.emplace(key, kv_.size());
    kv_.emplace_back(key, std::move(bytes));
  }
}

#define LCQ_GGUF_SETTER(fn, T, type_id)                      \
  void GgufWriter::fn(const std::string& key, T v) {         \
    std::string p;                                           \
    put<T>(p, v);                                            \
    set_raw(key, type_id, std::move(p));                     \
  }
LCQ_GGUF_SETTER(set_u8, uint8_t, GgufType::U8)
LCQ_GGUF_SETTER(set_i8, int8_t, GgufType::I8)
LCQ_GGUF_SETTER(set_u16, uint16_t, GgufType::U16)
LCQ_GGUF_SETTER(set_i16, int16_t, GgufType::I16)
LCQ_GGUF_SETTER(set_u32, uint32_t, GgufType::U32)
LCQ_GGUF_SETTER(set_i32, int32_t, GgufType::I32)
LCQ_GGUF_SETTER(set_u64, uint64_t, GgufType::U64)
LCQ_GGUF_SETTER(set_i64, int64_t, GgufType::I64)
LCQ_GGUF_SETTER(set_f32, float, GgufType::F32)
LCQ_GGUF_SETTER(set_f64, double, GgufType::F64)
#undef LCQ_GGUF_SETTER

void GgufWriter::set_bool(const std::string& key, bool v) {
  set_raw(key, GgufType::Bool, std::string(1, v ? '\1' : '\0'));
}

void GgufWriter::set_string(const std::string& key, const std::string& v) {
  std::string p;
  put_string(p, v);
  set_raw(key, GgufType::String, std::move(p));
}

void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  std::string p;
  put_type(p, GgufType::String);
  put<uint64_t>(p, v.size());
  for (const std::string& s : v) put_string(p, s);
  set_raw(key, GgufType::Array, std::move(p));
}

void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
  set_raw(key, GgufType::Array, array_payload(GgufType::F32, v));
}
void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  set_raw(key, GgufType::Array, array_payload(GgufType::I32, v));
}
void GgufWriter::set_i64_array(const std::string& key, const std::vector<int64_t>& v) {
  set_raw(key, GgufType::Array, array_payload(GgufType::I64, v));
}

void GgufWriter::set_json(const std::string& key, const nlohmann::json& v) {
  const GgufType type = scalar_kind(v, key);
  std::string p;
  put_json_value(p, v, type, key, 0);
  set_raw(key, type, std::move(p));
}

void GgufWriter::set_alignment(uint32_t alignment) {
  LCQ_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0 && alignment <= (1u << 20),
            "GGUF alignment {} is not a power of two up to 1 MiB", alignment);
  alignment_ = alignment;
  set_u32("general.alignment", alignment);
}

size_t GgufWriter::check_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const {
  const std::string where = fmt::format("GGUF tensor '{}'", name);
  LCQ_CHECK(!name.empty(), "GGUF tensor with an empty name");
  LCQ_CHECK(dtype != DType::U8 && std::string(dtype_name(dtype)) != "unknown", "{}: type {} cannot be stored in GGUF",
            where, dtype_name(dtype));
  LCQ_CHECK(shape.size() <= 4, "{}: {} dimensions (GGUF allows at most 4)", where, shape.size());
  int64_t numel = 1;
  for (int64_t d : shape) {
    LCQ_CHECK(d >= 0 && (d == 0 || numel <= std::numeric_limits<int64_t>::max() / d), "{}: invalid shape", where);
    numel *= d;
  }
  const int64_t row = shape.empty() ? 1 : shape.back();
  LCQ_CHECK(row % dtype_block_size(dtype) == 0, "{}: rows of {} values are not a multiple of the {} block size {}",
            where, row, dtype_name(dtype), dtype_block_size(dtype));
  LCQ_CHECK(!tensor_index_.count(name), "{}: added twice", where);
  return dtype_nbytes(dtype, numel, where);
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            const void* data) {
  const size_t nbytes = check_tensor(name, dtype, shape);
  LCQ_CHECK(data != nullptr || nbytes == 0, "GGUF tensor '{}': no data", name);
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back({name, dtype, shape, data, nbytes, nullptr});
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                            Producer produce) {
  const size_t nbytes = check_tensor(name, dtype, shape);
  LCQ_CHECK(produce != nullptr || nbytes == 0, "GGUF tensor '{}': no data", name);
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back({name, dtype, shape, nullptr, nbytes, std::move(produce)});
}

std::string GgufWriter::header() const {
  std::string head;
  put<uint32_t>(head, kMagic);
  put<uint32_t>(head, kVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size());
  for (const auto& [key, bytes] : kv_) {
    put_string(head, key);
    head += bytes;
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, uint64_t(*it));
    put<uint32_t>(head, uint32_t(t.dtype));
    put<uint64_t>(head, offset);
    offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  return head;
}

uint64_t GgufWriter::file_bytes() const {
  auto aligned = [&](uint64_t n) { return (n + alignment_ - 1) / alignment_ * alignment_; };
  uint64_t n = aligned(header().size());
  for (const Tensor& t : tensors_) n += aligned(t.nbytes);
  return n;
}

void GgufWriter::write(const std::string& path) const {
  AtomicFile f(path);
  const std::string head = header();
  f.write(head);
  f.pad_to(alignment_);
  for (const Tensor& t : tensors_) {
    if (t.produce && t.nbytes > 0) {
      const size_t start = f.bytes_written();
      t.produce([&](const void* bytes, size_t n) {
        LCQ_CHECK(f.bytes_written() - start + n <= t.nbytes, "GGUF tensor '{}': more than its {} bytes produced",
                  t.name, t.nbytes);
        f.write(bytes, n);
      });
      LCQ_CHECK(f.bytes_written() - start == t.nbytes, "GGUF tensor '{}': {} of its {} bytes produced", t.name,
                f.bytes_written() - start, t.nbytes);
    } else if (t.nbytes > 0) {
      f.write(t.data, t.nbytes);
    }
    f.pad_to(alignment_);
  }
  f.commit();
}

}  // namespace lcq::io
