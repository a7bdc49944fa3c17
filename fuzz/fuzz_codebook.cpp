// The LCQ packed format (src/io/codebook_tensors.cpp): a quantized GGUF model's codebook
// layers read as model::build_model() reads them (read_codebook_layer), dequantized, and packed
// for the float and look-up-table kernels (PackedCodebookMatrix / LutCodebookMatrix::pack),
// whose unpack() must give the layer back exactly; one product runs through each.
#include "fuzz_common.h"

namespace {
const std::string kName = "/nonexistent-lcq-fuzz/quantized.gguf";
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  lcq::fuzz::single_thread();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lcq;
  const auto file = fuzz::bytes_as_file(kName, data, size);
  fuzz::expect_clean(kName, [&] {
    const io::ModelSource src = io::load_model_file(file);
    fuzz::read_codebook_layers(src);
  });
  return 0;
}
