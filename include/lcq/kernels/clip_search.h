// The clipping search of a rank-one grid (quant/uniform.h, mse_grid): for one group of
// weights, the shrink of its min-max range that minimises the weighted error
//   sum_i c_i |w_hat_i - w_i|^p,   w_hat = s * (clamp(round(w / s) + z, 0, qmax) - z),
// over `steps` shrinks t_k = 1 - (1 - min_shrink) k / steps, k = 0..steps-1, where for shrink t
//   s = max((t max(w) - t min(w)) / qmax, 1e-8),  z = clamp(round(-t min(w) / s), 0, qmax).
// Highway SIMD, dispatched at run time; one group per call, on the calling thread. It does in
// one pass over the group what the tensor form did with a dozen whole-layer temporaries per
// step (the 4096 x 11008 layers of a 7B block took minutes and 4 bytes per weight each).
#pragma once

#include <cstdint>

namespace lcq::kernels {

struct ClipChoice {
  float scale = 0, zero = 0;  // the grid at the chosen shrink (zero an integer in [0, qmax])
  double error = 0;           // its weighted error
};

// w[n] the group's weights, c[n] their error weights (nullptr: all 1); the first shrink with
// the smallest error wins (t = 1, plain min-max, unless another is strictly better).
ClipChoice search_clipping(const float* w, const float* c, int64_t n, int bits, int steps, double min_shrink,
                           double p);

}  // namespace lcq::kernels
