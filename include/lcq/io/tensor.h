// Format-neutral view of a stored tensor: its element type, shape and where its bytes are.
// Loaders return views into memory-mapped files; nothing is copied until dequantize().
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lcq::io {

// Storage types the loaders understand. The GGUF codes are ggml's type ids.
enum class DType : int {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q8_0 = 8,
  Q4_K = 12, Q5_K = 13, Q6_K = 14,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
  U8 = 1000,  // safetensors only
};

const char* dtype_name(DType t);
// The float types weights can be written in, by their option names (lcq convert --type, lcq
// quantize --export-type): f32, f16, bf16. parse_float_type() throws lcq::Error naming
// `option` for any other name.
const std::vector<std::string>& float_type_names();
DType parse_float_type(const std::string& name, const char* option);
// Bytes for numel elements (quantized types need numel % block_size == 0, else throws).
size_t dtype_nbytes(DType t, int64_t numel, const std::string& where);
int64_t dtype_block_size(DType t);
bool dtype_is_float_convertible(DType t);  // can be dequantized to f32

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // PyTorch order: outermost first, e.g. [out, in]
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
};

// Converts any float or quantized type to f32 (n = view.numel() values into out).
// Throws lcq::Error naming `where` for types that are not convertible.
void dequantize(const TensorView& view, float* out, const std::string& where);

}  // namespace lcq::io
