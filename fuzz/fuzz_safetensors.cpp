// safetensors files (src/io/safetensors.cpp): the header length, the JSON header (dtypes,
// shapes, data_offsets, __metadata__), the offset checks, then every float tensor dequantized.
#include "fuzz_common.h"

#include "lcq/io/safetensors.h"

namespace {
const std::string kName = "/nonexistent-lcq-fuzz/model.safetensors";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lcq;
  const auto file = fuzz::bytes_as_file(kName, data, size);
  fuzz::expect_clean(kName, [&] {
    const io::SafetensorsFile st = io::read_safetensors(file);
    std::vector<float> out;
    for (const io::TensorView& t : st.tensors) {
      if (!io::dtype_is_float_convertible(t.dtype)) continue;
      out.resize(size_t(t.numel()));
      io::dequantize(t, out.data(), st.path);
    }
  });
  return 0;
}
