// Calibration for the weight-activation schemes (lcq/model/act_quant.h): SmoothQuant's
// migration of activation outliers into the weights, and the ranges of per-tensor static
// activation quantization. Both run the calibration set through the model block by block.
#pragma once

#include "lcq/model/model.h"

#include <torch/types.h>

#include <map>
#include <string>

namespace lcq::quant {

// SmoothQuant (Xiao et al., ICML 2023), as LRQ applies it before W8A8/W4A8 quantization: for
// each norm-fed site (attn_norm -> q, k, v; ffn_norm -> gate, up or fc1) per-input-channel
// scales s_j = max|X_j|^alpha / max_i |W_ij|^(1 - alpha), from the full-precision
// activations, are folded into the norm and the consumers' columns (the AWQ fold), so the
// model computes the same function with flatter activations. Post-norm blocks (OPT-350m) have
// no such site and are left alone. Returns the number of sites smoothed.
int smooth_quant(model::Model& m, const torch::Tensor& calib_tokens, double alpha, bool progress);

// The largest |input| of every block linear ("blk.3.attn_q") over the calibration tokens,
// through the model as it is, with its activation quantization switched off (the ranges a
// per-tensor static scheme is then calibrated from, as SmoothQuant and LRQ do).
std::map<std::string, float> calibrate_input_absmax(const model::Model& m, const torch::Tensor& calib_tokens,
                                                    bool progress);

}  // namespace lcq::quant
