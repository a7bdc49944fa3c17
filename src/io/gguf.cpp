// GGUF reader and writer. Layout (little-endian): "GGUF", u32 version, u64 tensor count,
// u64 KV count; KV pairs (string key, u32 type, value); tensor infos (string name, u32
// n_dims, u64 ne[n_dims] innermost first, u32 ggml type, u64 offset into the data section);
// padding to general.alignment; the data section. Strings are u64 length + bytes; arrays
// are u32 element type + u64 count + elements.
#include "lcq/io/gguf.h"

#include "lcq/core/atomic_file.h"
#include "lcq/core/error.h"
#include "lcq/core/printable.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace lcq::io {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxArrayNesting = 8;      // deeper nesting only serves to exhaust the stack
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::Bool: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

bool known_type(uint32_t t) { return t <= uint32_t(GgufType::F64); }

// Names of ggml tensor types lcq cannot read, so the error says what the file holds.
const char* unsupported_ggml_type_name(uint32_t t) {
  switch (t) {
    case 6: return "Q5_0";
    case 7: return "Q5_1";
    case 9: return "Q8_1";
    case 10: return "Q2_K";
    case 11: return "Q3_K";
    case 15: return "Q8_K";
    case 16: return "IQ2_XXS";
    case 17: return "IQ2_XS";
    case 18: return "IQ3_XXS";
    case 19: return "IQ1_S";
    case 20: return "IQ4_NL";
    case 21: return "IQ3_S";
    case 22: return "IQ2_S";
    case 23: return "IQ4_XS";
    case 29: return "IQ1_M";
    case 34: return "TQ1_0";
    case 35: return "TQ2_0";
    case 39: return "MXFP4";
    default: return nullptr;
  }
}

bool is_gguf_dtype(uint32_t t) {
  switch (t) {
    case 0: case 1: case 2: case 3: case 8: case 12: case 13: case 14:
    case 24: case 25: case 26: case 27: case 28: case 30:
      return true;
    default:
      return false;
  }
}

// Replaces invalid UTF-8 sequences with U+FFFD so nlohmann::json can dump the string.
std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xef\xbf\xbd";
      ++i;
    }
  }
  return out;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Shortest decimal that reads back as the same float, so 1e-5f shows as 1e-05.
double float_for_json(float f) {
  if (!std::isfinite(f)) return double(f);
  return std::strtod(fmt::format("{}", f).c_str(), nullptr);
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  return uint32_t(t) <= uint32_t(GgufType::F64) ? names[uint32_t(t)] : "unknown";
}

// ---- GgufValue -------------------------------------------------------------------------

bool GgufValue::is_integer() const {
  switch (type_) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64:
      return true;
    default:
      return false;
  }
}

int64_t GgufValue::as_i64(const std::string& what) const {
  switch (type_) {
    case GgufType::U8: return load<uint8_t>(data_);
    case GgufType::I8: return load<int8_t>(data_);
    case GgufType::U16: return load<uint16_t>(data_);
    case GgufType::I16: return load<int16_t>(data_);
    case GgufType::U32: return load<uint32_t>(data_);
    case GgufType::I32: return load<int32_t>(data_);
    case GgufType::I64: return load<int64_t>(data_);
    case GgufType::U64: {
      const uint64_t v = load<uint64_t>(data_);
      if (v > uint64_t(std::numeric_limits<int64_t>::max())) fail("{}: value {} is too large", what, v);
      return int64_t(v);
    }
    case GgufType::F32: case GgufType::F64: {
      const double d = as_f64(what);
      if (!(d >= -9.2e18 && d <= 9.2e18) || d != std::floor(d)) fail("{}: value {} is not an integer", what, d);
      return int64_t(d);
    }
    default:
      fail("{}: is a {}, expected a number", what, gguf_type_name(type_));
  }
}

uint64_t GgufValue::as_u64(const std::string& what) const {
  if (type_ == GgufType::U64) return load<uint64_t>(data_);
  const int64_t v = as_i64(what);
  if (v < 0) fail("{}: value {} is negative", what, v);
  return uint64_t(v);
}

double GgufValue::as_f64(const std::string& what) const {
  if (type_ == GgufType::F32) return load<float>(data_);
  if (type_ == GgufType::F64) return load<double>(data_);
  if (type_ == GgufType::U64) return double(load<uint64_t>(data_));
  if (is_integer()) return double(as_i64(what));
  fail("{}: is a {}, expected a number", what, gguf_type_name(type_));
}

bool GgufValue::as_bool(const std::string& what) const {
  if (type_ == GgufType::Bool) return load<uint8_t>(data_) != 0;
  if (is_integer()) {
    const uint64_t v = as_u64(what);
    if (v <= 1) return v == 1;
  }
  fail("{}: is a {}, expected a bool", what, gguf_type_name(type_));
}

std::string_view GgufValue::as_string(const std::string& what) const {
  if (type_ != GgufType::String) fail("{}: is a {}, expected a string", what, gguf_type_name(type_));
  return {reinterpret_cast<const char*>(data_), size_t(count_)};
}

GgufValue GgufValue::at(size_t i) const {
  if (type_ != GgufType::Array || i >= count_)
    fail("GGUF value: index {} out of range (size {})", i, type_ == GgufType::Array ? count_ : 0);
  if (items_) return (*items_)[i];
  GgufValue v;
  v.type_ = elem_;
  v.data_ = data_ + i * scalar_size(elem_);
  return v;
}

// ---- GgufFile: parsing -----------------------------------------------------------------

GgufFile::GgufFile(const std::string& path) : GgufFile(MappedFile::open(path)) {}

GgufFile::GgufFile(std::shared_ptr<const MappedFile> file) : file_(std::move(file)) { parse(); }

// Reads values at a ByteReader's position; every length is checked against the bytes left
// before anything is allocated for it.
class GgufParser {
 public:
  GgufParser(ByteReader& r, const std::string& path) : r(r), path(path) {}

  std::string_view read_string(const char* what) {
    const uint64_t len = r.read<uint64_t>(what);
    if (len > r.remaining())
      fail("{}: {} at offset {} has length {}, more than the {} bytes left in the file", path, what,
           r.offset() - 8, len, r.remaining());
    return {reinterpret_cast<const char*>(r.take(size_t(len), what)), size_t(len)};
  }

  GgufType read_type(const std::string& key) {
    const uint32_t t = r.read<uint32_t>("metadata value type");
    if (!known_type(t)) fail("{}: metadata key '{}' has unknown value type {}", path, printable(key), t);
    return GgufType(t);
  }

  GgufValue read_value(GgufType type, const std::string& key, int depth) {
    GgufValue v;
    v.type_ = type;
    if (type == GgufType::String) {
      std::string_view s = read_string("string value");
      v.data_ = reinterpret_cast<const uint8_t*>(s.data());
      v.count_ = s.size();
    } else if (type == GgufType::Array) {
      read_array(v, key, depth);
    } else {
      v.data_ = r.take(scalar_size(type), "metadata value");
    }
    return v;
  }

  ByteReader& r;
  const std::string& path;

 private:
  void read_array(GgufValue& v, const std::string& key, int depth) {
    const GgufType elem = read_type(key);
    const uint64_t count = r.read<uint64_t>("array length");
    // Every element takes at least this many bytes, so longer arrays cannot fit in the file.
    const size_t min_elem = elem == GgufType::String ? 8 : elem == GgufType::Array ? 12 : scalar_size(elem);
    if (count > r.remaining() / min_elem)
      fail("{}: metadata key '{}' has an array of {} {} values, more than the {} bytes left in the file "
           "can hold", path, printable(key), count, gguf_type_name(elem), r.remaining());
    v.elem_ = elem;
    v.count_ = count;
    if (min_elem == scalar_size(elem)) {  // fixed-size elements: view the payload
      v.data_ = r.take(size_t(count) * min_elem, "array");
      return;
    }
    if (elem == GgufType::Array && depth >= kMaxArrayNesting)
      fail("{}: metadata key '{}' nests arrays more than {} deep", path, printable(key), kMaxArrayNesting);
    auto items = std::make_shared<std::vector<GgufValue>>();
    items->reserve(size_t(count));
    for (uint64_t i = 0; i < count; ++i) items->push_back(read_value(elem, key, depth + 1));
    v.items_ = std::move(items);
  }
};

void GgufFile::parse() {
  const std::string& file = path();
  ByteReader r(file_->data(), file_->size(), file);
  GgufParser p(r, file);
  if (file_->size() < 4 || load<uint32_t>(file_->data()) != kMagic)
    fail("{}: not a GGUF file (no 'GGUF' magic at the start)", file);
  r.seek(4);
  version_ = r.read<uint32_t>("version");
  if (version_ == 1) fail("{}: GGUF version 1 is not supported (only versions 2 and 3)", file);
  if (version_ != 2 && version_ != 3) {
    if ((version_ & 0xffff) == 0 && (version_ >> 24) >= 1 && (version_ >> 24) <= 3)
      fail("{}: big-endian GGUF files are not supported", file);
    fail("{}: unsupported GGUF version {} (only versions 2 and 3)", file, version_);
  }
  const uint64_t n_tensors = r.read<uint64_t>("tensor count");
  const uint64_t n_kv = r.read<uint64_t>("metadata count");
  // Smallest encodings: a KV pair is an 8-byte key length + type + 1-byte value; a tensor
  // info is a name length + n_dims + type + offset.
  if (n_kv > r.remaining() / 13)
    fail("{}: metadata count {} is impossible for a file of {} bytes", file, n_kv, file_->size());
  if (n_tensors > r.remaining() / 24)
    fail("{}: tensor count {} is impossible for a file of {} bytes", file, n_tensors, file_->size());

  kv_.reserve(size_t(n_kv));
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key(p.read_string("metadata key"));
    const GgufType type = p.read_type(key);
    GgufValue value = p.read_value(type, key, 0);
    if (!kv_index_.emplace(key, kv_.size()).second)
      fail("{}: duplicate metadata key '{}'", file, printable(key));
    kv_.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = find("general.alignment")) {
    const uint64_t al = a->as_u64(where("general.alignment"));
    if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20))
      fail("{}: general.alignment {} is not a power of two up to 1 MiB", file, al);
    alignment_ = size_t(al);
  }

  struct Info {
    uint64_t offset;
    size_t index;
  };
  std::vector<Info> infos;
  infos.reserve(size_t(n_tensors));
  tensors_.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorView t;
    t.name = std::string(p.read_string("tensor name"));
    const std::string name = printable(t.name);
    const uint32_t n_dims = r.read<uint32_t>("tensor dimension count");
    if (n_dims > uint32_t(kMaxDims))
      fail("{}: tensor '{}' has {} dimensions (at most {})", file, name, n_dims, kMaxDims);
    int64_t numel = 1;
    t.shape.assign(n_dims, 0);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = r.read<uint64_t>("tensor dimension");
      if (ne > uint64_t(std::numeric_limits<int64_t>::max()) ||
          (ne > 0 && uint64_t(numel) > uint64_t(std::numeric_limits<int64_t>::max()) / ne))
        fail("{}: tensor '{}' has absurd dimensions (size {} in dimension {})", file, name, ne, d);
      numel *= int64_t(ne);
      t.shape[n_dims - 1 - d] = int64_t(ne);  // ggml lists the innermost dimension first
    }
    const uint32_t type = r.read<uint32_t>("tensor type");
    if (!is_gguf_dtype(type)) {
      if (const char* known = unsupported_ggml_type_name(type))
        fail("{}: tensor '{}' has type {} ({}), which lcq cannot read", file, name, known, type);
      fail("{}: tensor '{}' has unknown type {}", file, name, type);
    }
    t.dtype = DType(type);
    const uint64_t offset = r.read<uint64_t>("tensor offset");
    const int64_t row = n_dims > 0 ? t.shape.back() : 1;
    if (row % dtype_block_size(t.dtype) != 0)
      fail("{}: tensor '{}' has rows of {} values, not a multiple of the {} block size {}", file, name, row,
           dtype_name(t.dtype), dtype_block_size(t.dtype));
    t.nbytes = dtype_nbytes(t.dtype, numel, fmt::format("{}: tensor '{}'", file, name));
    if (!tensor_index_.emplace(t.name, tensors_.size()).second)
      fail("{}: duplicate tensor '{}'", file, name);
    infos.push_back({offset, tensors_.size()});
    tensors_.push_back(std::move(t));
  }

  const size_t end_of_infos = r.offset();
  data_offset_ = (end_of_infos + alignment_ - 1) / alignment_ * alignment_;
  const size_t size = file_->size();
  if (!tensors_.empty() && data_offset_ > size)
    fail("{}: truncated: the tensor data section would start at offset {}, past the end ({} bytes)", file,
         data_offset_, size);
  const size_t data_size = data_offset_ <= size ? size - data_offset_ : 0;
  for (const Info& info : infos) {
    TensorView& t = tensors_[info.index];
    if (info.offset % alignment_ != 0)
      fail("{}: tensor '{}' has offset {}, not a multiple of the alignment {}", file, printable(t.name),
           info.offset, alignment_);
    if (info.offset > data_size || t.nbytes > data_size - info.offset)
      fail("{}: tensor '{}' ({} bytes at data offset {}) extends past the end of the file ({} bytes): "
           "truncated or corrupt", file, printable(t.name), t.nbytes, info.offset, size);
    t.data = file_->data() + data_offset_ + info.offset;
  }
  // Overlapping tensors mean a wrong shape or offset (e.g. a dimension changed in place).
  std::sort(infos.begin(), infos.end(), [](const Info& a, const Info& b) { return a.offset < b.offset; });
  for (size_t i = 1; i < infos.size(); ++i) {
    const TensorView& prev = tensors_[infos[i - 1].index];
    if (infos[i - 1].offset + prev.nbytes > infos[i].offset)
      fail("{}: tensor '{}' overlaps tensor '{}' in the data section", file, printable(prev.name),
           printable(tensors_[infos[i].index].name));
  }
}

std::string GgufFile::where(const std::string& key) const {
  return fmt::format("{}: metadata key '{}'", path(), key);
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: missing metadata key '{}'", path(), key);
  return *v;
}

const TensorView* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

// ---- GgufFile: typed getters -----------------------------------------------------------

uint32_t GgufFile::get_u32(const std::string& key) const {
  const uint64_t v = get(key).as_u64(where(key));
  if (v > std::numeric_limits<uint32_t>::max()) fail("{}: value {} does not fit in 32 bits", where(key), v);
  return uint32_t(v);
}
uint32_t GgufFile::get_u32(const std::string& key, uint32_t def) const { return has(key) ? get_u32(key) : def; }
int64_t GgufFile::get_i64(const std::string& key) const { return get(key).as_i64(where(key)); }
int64_t GgufFile::get_i64(const std::string& key, int64_t def) const { return has(key) ? get_i64(key) : def; }
uint64_t GgufFile::get_u64(const std::string& key, uint64_t def) const {
  return has(key) ? get(key).as_u64(where(key)) : def;
}
float GgufFile::get_f32(const std::string& key) const { return float(get(key).as_f64(where(key))); }
float GgufFile::get_f32(const std::string& key, float def) const { return has(key) ? get_f32(key) : def; }
double GgufFile::get_f64(const std::string& key, double def) const {
  return has(key) ? get(key).as_f64(where(key)) : def;
}
bool GgufFile::get_bool(const std::string& key, bool def) const {
  return has(key) ? get(key).as_bool(where(key)) : def;
}
std::string GgufFile::get_string(const std::string& key) const {
  return std::string(get(key).as_string(where(key)));
}
std::string GgufFile::get_string(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

namespace {
const GgufValue* array_or_null(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  if (v && !v->is_array())
    fail("{}: metadata key '{}' is a {}, expected an array", f.path(), key, gguf_type_name(v->type()));
  return v;
}
}  // namespace

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  std::vector<std::string> out;
  const GgufValue* v = array_or_null(*this, key);
  if (!v) return out;
  if (v->elem_type() != GgufType::String)
    fail("{}: is an array of {}, expected strings", where(key), gguf_type_name(v->elem_type()));
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) out.emplace_back(v->at(i).as_string(where(key)));
  return out;
}

std::vector<float> GgufFile::get_f32_array(const std::string& key) const {
  std::vector<float> out;
  const GgufValue* v = array_or_null(*this, key);
  if (!v) return out;
  out.resize(v->size());
  if (v->elem_type() == GgufType::F32 && v->size() > 0) {
    std::memcpy(out.data(), v->at(0).data_, v->size() * 4);  // the common case, in one go
    return out;
  }
  for (size_t i = 0; i < v->size(); ++i) out[i] = float(v->at(i).as_f64(where(key)));
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(const std::string& key) const {
  std::vector<int32_t> out;
  const GgufValue* v = array_or_null(*this, key);
  if (!v) return out;
  out.resize(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const int64_t x = v->at(i).as_i64(where(key));
    if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
      fail("{}: element {} ({}) does not fit in 32 bits", where(key), i, x);
    out[i] = int32_t(x);
  }
  return out;
}

namespace {
nlohmann::json value_to_json(const GgufValue& v, size_t max_array_len, const std::string& what) {
  switch (v.type()) {
    case GgufType::Bool: return v.as_bool(what);
    case GgufType::String: return valid_utf8(v.as_string(what));
    case GgufType::F32: return float_for_json(float(v.as_f64(what)));
    case GgufType::F64: return v.as_f64(what);
    case GgufType::U8: case GgufType::U16: case GgufType::U32: case GgufType::U64:
      return v.as_u64(what);
    case GgufType::Array: {
      if (v.size() > max_array_len)
        return nlohmann::json{{"gguf_array", gguf_type_name(v.elem_type())}, {"length", v.size()}};
      nlohmann::json arr = nlohmann::json::array();
      for (size_t i = 0; i < v.size(); ++i) arr.push_back(value_to_json(v.at(i), max_array_len, what));
      return arr;
    }
    default: return v.as_i64(what);
  }
}
}  // namespace

nlohmann::json GgufFile::metadata_json(size_t max_array_len) const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [key, value] : kv_) j[valid_utf8(key)] = value_to_json(value, max_array_len, where(key));
  return j;
}

}  // namespace lcq::io
