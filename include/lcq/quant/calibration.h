// Calibration data: random windows of a tokenized text (METHODS.md section 1, "Calibration").
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lcq::quant {

struct CalibrationOptions {
  std::string path;      // for error messages
  int64_t nsamples = 128;
  int64_t seqlen = 512;
  uint64_t seed = 0;
};

// `nsamples` windows of `seqlen` tokens starting at uniformly random offsets (seeded), as
// [nsamples, seqlen] int64. Throws lcq::Error naming opts.path when the text is shorter than
// one window, has fewer distinct windows (start positions) than nsamples, or the settings
// are impossible.
torch::Tensor sample_calibration(const std::vector<int>& tokens, const CalibrationOptions& opts);

}  // namespace lcq::quant
