// WriteTensor's access to its values, whether they are in memory or produced piece by piece.
#include "lcq/core/error.h"
#include "lcq/io/writers.h"

#include <algorithm>
#include <cstring>

namespace lcq::io {

int64_t WriteTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void WriteTensor::read_f32(int64_t r0, int64_t r1, float* out) const {
  const int64_t per_row = rows() > 0 ? numel() / rows() : 0;
  if (f32)
    std::memcpy(out, f32 + r0 * per_row, size_t((r1 - r0) * per_row) * sizeof(float));
  else if (fill_f32)
    fill_f32(r0, r1, out);
  else
    fail("tensor '{}': no f32 values", name);
}

void WriteTensor::read_raw(int64_t r0, int64_t r1, size_t row_bytes, uint8_t* out) const {
  if (raw)
    std::memcpy(out, raw + size_t(r0) * row_bytes, size_t(r1 - r0) * row_bytes);
  else if (fill_raw)
    fill_raw(r0, r1, out);
  else
    fail("tensor '{}': no stored bytes", name);
}

int64_t rows_per_piece(const WriteTensor& t) {
  const int64_t per_row = t.rows() > 0 ? std::max<int64_t>(1, t.numel() / t.rows()) : 1;
  return std::max<int64_t>(1, (int64_t(4) << 20) / per_row);
}

}  // namespace lcq::io
