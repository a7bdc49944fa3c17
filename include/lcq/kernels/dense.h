// Dense GEMV baselines (Highway SIMD, OpenMP over rows with omp_get_max_threads() threads):
// the yardstick `lcq bench` prints beside the packed kernels, and the one-token (decoding)
// path of the runtime's dense f32 and bf16 layers. W is row-major [rows][cols]; accumulation
// is in f32.
#pragma once

#include <cstdint>

namespace lcq::kernels {

// y[rows] = W x with f32 weights.
void gemv_f32(const float* W, int64_t rows, int64_t cols, const float* x, float* y);
// y[rows] = W x with bf16 weights (raw bits) and f32 activations.
void gemv_bf16(const uint16_t* W, int64_t rows, int64_t cols, const float* x, float* y);
// y[rows] = W x with IEEE fp16 weights (raw bits): the tied embedding/head of LCQ files.
void gemv_f16(const uint16_t* W, int64_t rows, int64_t cols, const float* x, float* y);

// Rows [r0, r1) of the same products, on the calling thread (no OpenMP region).
void gemv_f32_rows(const float* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1);
void gemv_bf16_rows(const uint16_t* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1);
void gemv_f16_rows(const uint16_t* W, int64_t cols, const float* x, float* y, int64_t r0, int64_t r1);

}  // namespace lcq::kernels
