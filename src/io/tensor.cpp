// Element types, sizes and dequantization to f32. The quantized layouts are ggml's block
// formats (docs/model-formats.md, "GGUF"): each block stores one or two f16 scales followed
// by packed integer codes; the k-quants group 256 values into a super-block whose 6- or
// 8-bit sub-block scales are themselves scaled by f16 factors.
#include "lcq/io/tensor.h"

#include "lcq/core/error.h"
#include "lcq/core/half.h"
#include "lcq/core/named.h"

#include <cstring>
#include <limits>

namespace lcq::io {

namespace {

struct TypeTraits {
  const char* name;
  int64_t block_size;   // elements per block
  size_t block_bytes;   // bytes per block
  bool float_convertible;
};

TypeTraits traits(DType t) {
  switch (t) {
    case DType::F32: return {"F32", 1, 4, true};
    case DType::F16: return {"F16", 1, 2, true};
    case DType::BF16: return {"BF16", 1, 2, true};
    case DType::F64: return {"F64", 1, 8, true};
    case DType::Q4_0: return {"Q4_0", 32, 18, true};
    case DType::Q4_1: return {"Q4_1", 32, 20, true};
    case DType::Q8_0: return {"Q8_0", 32, 34, true};
    case DType::Q4_K: return {"Q4_K", 256, 144, true};
    case DType::Q5_K: return {"Q5_K", 256, 176, true};
    case DType::Q6_K: return {"Q6_K", 256, 210, true};
    case DType::I8: return {"I8", 1, 1, false};
    case DType::I16: return {"I16", 1, 2, false};
    case DType::I32: return {"I32", 1, 4, false};
    case DType::I64: return {"I64", 1, 8, false};
    case DType::U8: return {"U8", 1, 1, false};
  }
  return {nullptr, 0, 0, false};
}

TypeTraits checked_traits(DType t, const std::string& where) {
  TypeTraits tr = traits(t);
  if (!tr.name) fail("{}: unknown tensor type {}", where, int(t));
  return tr;
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline float load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

// Q8_0: f16 scale d, 32 signed bytes; x = d * q.
void dequant_q8_0(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, out += 32) {
    const float d = load_f16(src);
    const int8_t* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int i = 0; i < 32; ++i) out[i] = float(q[i]) * d;
  }
}

// Q4_0: f16 scale d, 16 bytes of nibbles; low nibbles are values 0..15, high nibbles 16..31;
// x = d * (q - 8).
void dequant_q4_0(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 18, out += 32) {
    const float d = load_f16(src);
    const uint8_t* q = src + 2;
    for (int i = 0; i < 16; ++i) {
      out[i] = d * float(int(q[i] & 0x0f) - 8);
      out[i + 16] = d * float(int(q[i] >> 4) - 8);
    }
  }
}

// Q4_1: f16 scale d and offset m, then nibbles as in Q4_0; x = d * q + m.
void dequant_q4_1(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 20, out += 32) {
    const float d = load_f16(src);
    const float m = load_f16(src + 2);
    const uint8_t* q = src + 4;
    for (int i = 0; i < 16; ++i) {
      out[i] = d * float(q[i] & 0x0f) + m;
      out[i + 16] = d * float(q[i] >> 4) + m;
    }
  }
}

// The 12 scale bytes of Q4_K/Q5_K hold eight 6-bit scales and eight 6-bit mins: sub-blocks
// 0-3 use the low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 take their
// low 4 bits from bytes 8-11 and their top 2 bits from the spare high bits of bytes 0-7.
void unpack_k_scales(const uint8_t* s, uint8_t scale[8], uint8_t min[8]) {
  for (int j = 0; j < 4; ++j) {
    scale[j] = s[j] & 63;
    min[j] = s[j + 4] & 63;
    scale[j + 4] = uint8_t((s[j + 8] & 0x0f) | ((s[j] >> 6) << 4));
    min[j + 4] = uint8_t((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
  }
}

// Q4_K super-block (256 values): f16 d, f16 dmin, 12 scale bytes, 128 bytes of nibbles.
// Each 32-byte run of nibbles covers 64 values: low nibbles sub-block 2k, high 2k+1;
// x = d * scale[s] * q - dmin * min[s].
void dequant_q4_k(const uint8_t* src, float* out, int64_t n_blocks) {
  uint8_t sc[8], mn[8];
  for (int64_t b = 0; b < n_blocks; ++b, src += 144, out += 256) {
    const float d = load_f16(src);
    const float dmin = load_f16(src + 2);
    unpack_k_scales(src + 4, sc, mn);
    const uint8_t* q = src + 16;
    float* y = out;
    for (int k = 0; k < 4; ++k, q += 32, y += 64) {
      const float d1 = d * float(sc[2 * k]), m1 = dmin * float(mn[2 * k]);
      const float d2 = d * float(sc[2 * k + 1]), m2 = dmin * float(mn[2 * k + 1]);
      for (int i = 0; i < 32; ++i) {
        y[i] = d1 * float(q[i] & 0x0f) - m1;
        y[i + 32] = d2 * float(q[i] >> 4) - m2;
      }
    }
  }
}

// Q5_K super-block: f16 d, f16 dmin, 12 scale bytes, 32 bytes of high bits, 128 bytes of
// nibbles. Like Q4_K, plus a fifth bit: bit s of qh[i] belongs to value i of sub-block s.
void dequant_q5_k(const uint8_t* src, float* out, int64_t n_blocks) {
  uint8_t sc[8], mn[8];
  for (int64_t b = 0; b < n_blocks; ++b, src += 176, out += 256) {
    const float d = load_f16(src);
    const float dmin = load_f16(src + 2);
    unpack_k_scales(src + 4, sc, mn);
    const uint8_t* qh = src + 16;
    const uint8_t* q = src + 48;
    float* y = out;
    for (int k = 0; k < 4; ++k, q += 32, y += 64) {
      const float d1 = d * float(sc[2 * k]), m1 = dmin * float(mn[2 * k]);
      const float d2 = d * float(sc[2 * k + 1]), m2 = dmin * float(mn[2 * k + 1]);
      const int lo_bit = 2 * k, hi_bit = 2 * k + 1;
      for (int i = 0; i < 32; ++i) {
        const int q1 = (q[i] & 0x0f) | (((qh[i] >> lo_bit) & 1) << 4);
        const int q2 = (q[i] >> 4) | (((qh[i] >> hi_bit) & 1) << 4);
        y[i] = d1 * float(q1) - m1;
        y[i + 32] = d2 * float(q2) - m2;
      }
    }
  }
}

// Q6_K super-block: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 signed 8-bit
// sub-block scales (16 values each), f16 d. Each half (128 values) uses 64 low bytes and 32
// high bytes: value i + 32*j takes nibble (j&1 ? high : low) of ql[i + 32*(j>>1)] and bits
// 2j..2j+1 of qh[i]; x = d * scale * (q - 32).
void dequant_q6_k(const uint8_t* src, float* out, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 210, out += 256) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* scales = reinterpret_cast<const int8_t*>(src + 192);
    const float d = load_f16(src + 208);
    float* y = out;
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, scales += 8, y += 128) {
      for (int i = 0; i < 32; ++i) {
        const int s = i / 16;
        const int q1 = ((ql[i] & 0x0f) | (((qh[i] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[i + 32] & 0x0f) | (((qh[i] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[i] >> 4) | (((qh[i] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[i + 32] >> 4) | (((qh[i] >> 6) & 3) << 4)) - 32;
        y[i] = (d * float(scales[s])) * float(q1);
        y[i + 32] = (d * float(scales[s + 2])) * float(q2);
        y[i + 64] = (d * float(scales[s + 4])) * float(q3);
        y[i + 96] = (d * float(scales[s + 6])) * float(q4);
      }
    }
  }
}

}  // namespace

namespace {
const Named<DType> kFloatTypes[] = {{DType::F32, "f32"}, {DType::F16, "f16"}, {DType::BF16, "bf16"}};
}  // namespace

const std::vector<std::string>& float_type_names() {
  static const auto v = names_of(kFloatTypes);
  return v;
}
DType parse_float_type(const std::string& name, const char* option) { return parse_named(kFloatTypes, name, option); }

const char* dtype_name(DType t) {
  const char* name = traits(t).name;
  return name ? name : "unknown";
}

int64_t dtype_block_size(DType t) {
  int64_t bs = traits(t).block_size;
  return bs > 0 ? bs : 1;
}

bool dtype_is_float_convertible(DType t) { return traits(t).float_convertible; }

size_t dtype_nbytes(DType t, int64_t numel, const std::string& where) {
  const TypeTraits tr = checked_traits(t, where);
  if (numel < 0) fail("{}: negative element count {}", where, numel);
  if (numel % tr.block_size != 0)
    fail("{}: {} elements are not a multiple of the {} block size {}", where, numel, tr.name, tr.block_size);
  const uint64_t blocks = uint64_t(numel / tr.block_size);
  if (blocks > std::numeric_limits<uint64_t>::max() / tr.block_bytes)
    fail("{}: tensor of {} {} elements is too large", where, numel, tr.name);
  return size_t(blocks * tr.block_bytes);
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void dequantize(const TensorView& view, float* out, const std::string& where) {
  const TypeTraits tr = checked_traits(view.dtype, where);
  if (!tr.float_convertible)
    fail("{}: tensor '{}' of type {} cannot be converted to f32", where, view.name, tr.name);
  const int64_t n = view.numel();
  const size_t need = dtype_nbytes(view.dtype, n, where + ": tensor '" + view.name + "'");
  if (view.nbytes != need)
    fail("{}: tensor '{}' has {} bytes, {} {} values need {}", where, view.name, view.nbytes, n, tr.name, need);
  if (n == 0) return;
  LCQ_CHECK(view.data != nullptr, "{}: tensor '{}' has no data", where, view.name);

  const uint8_t* src = view.data;
  const int64_t n_blocks = n / tr.block_size;
  switch (view.dtype) {
    case DType::F32:
      std::memcpy(out, src, size_t(n) * 4);
      break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, src + 8 * i, 8);
        out[i] = float(v);
      }
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(src + 2 * i));
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(load_u16(src + 2 * i));
      break;
    case DType::Q8_0: dequant_q8_0(src, out, n_blocks); break;
    case DType::Q4_0: dequant_q4_0(src, out, n_blocks); break;
    case DType::Q4_1: dequant_q4_1(src, out, n_blocks); break;
    case DType::Q4_K: dequant_q4_k(src, out, n_blocks); break;
    case DType::Q5_K: dequant_q5_k(src, out, n_blocks); break;
    case DType::Q6_K: dequant_q6_k(src, out, n_blocks); break;
    default:
      fail("{}: tensor '{}' of type {} cannot be converted to f32", where, view.name, tr.name);
  }
}

}  // namespace lcq::io
