// Rotating the residual stream: an exact rewrite of a LLaMA-family model before quantization
// (the idea of QuaRot and SpinQuant). Every weight that reads the residual stream gets its
// RMSNorm weight folded in and is multiplied by an orthogonal R^T on its input side; every
// weight that writes to it is multiplied by R on its output side; each value head gets its own
// rotation, undone in the output projection's columns. The stream between the embedding and
// the final norm is then R·h instead of h: the model keeps R (Model::rotation; a file stores
// its two small factors, residual_rotation.mix and .signs) and applies it after the embedding
// lookup and R^T before the final norm, so the embedding, the head and the final norm stay as
// they were.
//
// The rotated weights compute the same function (to rounding) but spread each input
// channel's outliers over all columns of a group, which GPTQ rounds with less error on some
// texts and more on others (docs/quantization.md, "Rotating the residual stream").
#pragma once

#include "lcq/model/model.h"

#include <cstdint>

namespace lcq::quant {

// An orthogonal n x n rotation: R = kron(Q, H) · diag(s), H the normalised Hadamard matrix of
// the largest power of two dividing n, Q a random orthogonal matrix of the rest (QR of a
// Gaussian matrix, rounded to f32), s random signs; from `seed`, the same on every machine up
// to libtorch's QR. R (f32) is expanded from the f32 factors as a loader expands them.
model::ResidualRotation make_rotation(int64_t n, uint64_t seed);

// Rewrites a float LLaMA-family model in place as described above (throws lcq::Error for
// other architectures, LayerNorm models, packed or quantized weights, or a model already
// rotated).
void rotate_residual(model::Model& m, uint64_t seed);

}  // namespace lcq::quant
