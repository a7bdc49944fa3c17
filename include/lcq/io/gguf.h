// GGUF (llama.cpp's single-file model format), versions 2 and 3: a reader over a memory
// map that validates every length against the file before using it, and a writer.
// docs/model-formats.md ("GGUF") describes what the model loader and writer put in it.
#pragma once

#include "lcq/core/mapped_file.h"
#include "lcq/io/tensor.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lcq::io {

// GGUF metadata value types (gguf_type ids).
enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

class GgufParser;

// One metadata value. Scalars and numeric arrays point into the file's bytes; strings are
// views into it; string and nested arrays keep one GgufValue per element. Valid while the
// GgufFile (or its mapping) lives.
class GgufValue {
 public:
  GgufType type() const { return type_; }
  GgufType elem_type() const { return elem_; }  // arrays only
  bool is_array() const { return type_ == GgufType::Array; }
  bool is_string() const { return type_ == GgufType::String; }
  bool is_integer() const;  // U8..I64 (not bool)
  bool is_float() const { return type_ == GgufType::F32 || type_ == GgufType::F64; }

  // Scalars; numbers convert between each other when the value fits (integers must be
  // exact), else these throw lcq::Error mentioning `what` (e.g. "file: key 'x'").
  int64_t as_i64(const std::string& what) const;
  uint64_t as_u64(const std::string& what) const;
  double as_f64(const std::string& what) const;
  bool as_bool(const std::string& what) const;
  std::string_view as_string(const std::string& what) const;

  size_t size() const { return count_; }  // array length (0 for scalars)
  GgufValue at(size_t i) const;           // array element; throws if out of range

 private:
  friend class GgufFile;
  friend class GgufParser;
  GgufType type_ = GgufType::U8;
  GgufType elem_ = GgufType::U8;
  const uint8_t* data_ = nullptr;  // scalar bytes, string bytes, or numeric array payload
  uint64_t count_ = 0;             // array length, or string length
  std::shared_ptr<std::vector<GgufValue>> items_;  // string and nested arrays
};

class GgufFile {
 public:
  // Maps and parses `path`; throws lcq::Error naming the path on any inconsistency.
  explicit GgufFile(const std::string& path);
  explicit GgufFile(std::shared_ptr<const MappedFile> file);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }  // start of the tensor data section
  const std::shared_ptr<const MappedFile>& mapping() const { return file_; }

  // Metadata, in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(const std::string& key) const;
  bool has(const std::string& key) const { return find(key) != nullptr; }
  const GgufValue& get(const std::string& key) const;  // throws "path: missing metadata key 'key'"

  // Typed getters: the one-argument form throws when the key is missing, the other returns
  // `def`. A value of the wrong type or out of range throws.
  uint32_t get_u32(const std::string& key) const;
  uint32_t get_u32(const std::string& key, uint32_t def) const;
  int64_t get_i64(const std::string& key) const;
  int64_t get_i64(const std::string& key, int64_t def) const;
  uint64_t get_u64(const std::string& key, uint64_t def) const;
  float get_f32(const std::string& key) const;
  float get_f32(const std::string& key, float def) const;
  double get_f64(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  // Arrays (empty when the key is missing); elements convert like the scalar getters.
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<float> get_f32_array(const std::string& key) const;
  std::vector<int32_t> get_i32_array(const std::string& key) const;

  // All metadata as JSON (keys in file order are not preserved: json objects sort them).
  // Arrays longer than max_array_len become {"gguf_array": <elem type>, "length": n}.
  nlohmann::json metadata_json(size_t max_array_len = 256) const;

  // Tensors in file order, shapes in PyTorch order (reversed ggml ne[]).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;

 private:
  void parse();
  std::string where(const std::string& key) const;

  std::shared_ptr<const MappedFile> file_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds a GGUF v3 file. Setting a key again replaces its value (keeping its position).
class GgufWriter {
 public:
  void set_u8(const std::string& key, uint8_t v);
  void set_i8(const std::string& key, int8_t v);
  void set_u16(const std::string& key, uint16_t v);
  void set_i16(const std::string& key, int16_t v);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_u64(const std::string& key, uint64_t v);
  void set_i64(const std::string& key, int64_t v);
  void set_f32(const std::string& key, float v);
  void set_f64(const std::string& key, double v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void set_i64_array(const std::string& key, const std::vector<int64_t>& v);
  // JSON -> GGUF: string, bool, integer (I32 if it fits, else I64, else U64), float (F32 if
  // exact, else F64), arrays of one of these kinds (nested arrays allowed). Objects throw.
  void set_json(const std::string& key, const nlohmann::json& v);
  void set_alignment(uint32_t alignment);  // power of two; also stored as general.alignment

  // `data` (dtype_nbytes(dtype, numel) bytes) must stay valid until write() returns.
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data);
  // Or the bytes produced while the file is written: produce(put) calls put(bytes, n) until it
  // has given exactly dtype_nbytes(dtype, numel) bytes (checked).
  using Put = std::function<void(const void* bytes, size_t n)>;
  using Producer = std::function<void(const Put& put)>;
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, Producer produce);
  size_t tensor_count() const { return tensors_.size(); }

  void write(const std::string& path) const;  // atomically; throws lcq::Error naming path
  // The bytes write() would write: header, key-value pairs, tensor infos and aligned data.
  uint64_t file_bytes() const;

 private:
  std::string header() const;  // everything before the first tensor's data, unpadded
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
    Producer produce;
  };
  void set_raw(const std::string& key, GgufType type, std::string payload);
  size_t check_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape) const;

  std::vector<std::pair<std::string, std::string>> kv_;  // key -> type id + payload bytes
  std::map<std::string, size_t> kv_index_;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t> tensor_index_;
  uint32_t alignment_ = 32;
};

}  // namespace lcq::io
