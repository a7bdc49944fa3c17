// The small vector operations of one token through a decoder block (Highway SIMD, dispatched
// at run time): norms, rotary embedding, attention over the cached positions, SwiGLU. Each
// runs on the calling thread; the decode path splits the work between threads itself.
#pragma once

#include <cstdint>

namespace lcq::kernels {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]  (RMSNorm); out may be x.
void rms_norm(const float* x, const float* w, float eps, float* out, int64_t n);
// out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i]  (LayerNorm); out may be x.
void layer_norm(const float* x, const float* w, const float* b, float eps, float* out, int64_t n);
// Rotary embedding of one head in rotate-half layout, in place: with h = n / 2,
// x[i] <- x[i] cos[i] - x[i + h] sin[i], x[i + h] <- x[i + h] cos[i + h] + x[i] sin[i + h].
void rope_rotate_half(float* x, const float* cos, const float* sin, int64_t n);
// out[i] = silu(gate[i]) * up[i]; out may alias either input.
void silu_mul(const float* gate, const float* up, float* out, int64_t n);
// y[i] += x[i].
void add_inplace(float* y, const float* x, int64_t n);
// y[i] += a * x[i].
void axpy(float a, const float* x, float* y, int64_t n);
// sum x[i]^2, and the largest |x[i]| in *amax.
float square_sum_max_abs(const float* x, int64_t n, float* amax);

// One query head against `len` cached positions of its key/value head (rows of `hd` floats,
// `len` x hd each, contiguous): out[hd] = softmax(scale * K q) V. `scores` holds len floats
// of scratch.
void attend(const float* q, const float* K, const float* V, int64_t len, int64_t hd, float scale, float* scores,
            float* out);

}  // namespace lcq::kernels
