#include "lcq/model/decoder.h"

#include "lcq/core/error.h"

#include <torch/torch.h>

namespace lcq::model {

namespace {

// The matrix a Linear multiplies by: its packed layer, or a view of its dense weight.
run::MatrixPtr matrix_of(const Linear& l) {
  if (l.packed) return l.packed;
  const torch::Tensor& w = l.weight;
  LCQ_CHECK(w.defined() && w.dim() == 2 && w.is_contiguous() && w.device().is_cpu(),
            "decoder: a linear layer has no usable weight");
  switch (w.scalar_type()) {
    case torch::kFloat32: return kernels::make_dense_matrix(w.data_ptr(), kernels::DenseType::kF32, w.size(0), w.size(1));
    case torch::kBFloat16: return kernels::make_dense_matrix(w.data_ptr(), kernels::DenseType::kBF16, w.size(0), w.size(1));
    case torch::kHalf: return kernels::make_dense_matrix(w.data_ptr(), kernels::DenseType::kF16, w.size(0), w.size(1));
    default: fail("decoder: no kernel for weights of type {}", c10::toString(w.scalar_type()));
  }
}

const float* f32_data(const torch::Tensor& t) {
  if (!t.defined()) return nullptr;
  LCQ_CHECK(t.scalar_type() == torch::kFloat32 && t.is_contiguous(), "decoder: a norm or bias is not contiguous f32");
  return t.data_ptr<float>();
}

}  // namespace

bool Decoder::supports(const Model& m) {
  if (m.config.arch != Arch::Llama || m.options.dtype != torch::kFloat32 || !m.options.device.is_cpu()) return false;
  for (const Block& b : m.blocks) {
    if (!b.attn_norm.rms || !b.ffn_norm.rms) return false;
    for (const auto& [name, lin] : b.linears())
      if (lin->input_quant || lin->output_quant) return false;
  }
  return true;
}

run::Weights lean_weights(const Model& m) {
  LCQ_CHECK(Decoder::supports(m), "decoder: the lean path runs LLaMA-family models in f32 without activation quantization");
  run::Weights w;
  w.config = m.config;
  for (const Block& b : m.blocks) {
    run::LayerWeights l;
    l.attn_norm = f32_data(b.attn_norm.weight);
    l.ffn_norm = f32_data(b.ffn_norm.weight);
    l.q = matrix_of(b.q), l.k = matrix_of(b.k), l.v = matrix_of(b.v), l.o = matrix_of(b.o);
    l.gate = matrix_of(b.gate), l.up = matrix_of(b.up), l.down = matrix_of(b.down);
    l.bq = f32_data(b.q.bias), l.bk = f32_data(b.k.bias), l.bv = f32_data(b.v.bias), l.bo = f32_data(b.o.bias);
    l.bgate = f32_data(b.gate.bias), l.bup = f32_data(b.up.bias), l.bdown = f32_data(b.down.bias);
    w.layers.push_back(std::move(l));
  }
  w.out_norm = f32_data(m.output_norm.weight);
  if (m.rotation.defined()) run::set_rotation(w, f32_data(m.rotation.matrix));
  w.head = matrix_of(m.output);
  if (m.tok_embd_packed) {
    w.embedding = m.tok_embd_packed;
  } else {
    Linear e;
    e.weight = m.tok_embd;
    w.embedding = matrix_of(e);
  }
  w.rope_cos = f32_data(m.rope.cos);
  w.rope_sin = f32_data(m.rope.sin);
  w.rope_positions = m.rope.cos.size(0);
  return w;
}

Decoder::Decoder(const Model& m, KVCache& cache) : run_(lean_weights(m), cache.view()) {}

}  // namespace lcq::model
