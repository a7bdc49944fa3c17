#include "lcq/model/linear.h"

#include "lcq/core/error.h"
#include "lcq/kernels/dense.h"

#include <oneapi/dnnl/dnnl.h>
#include <torch/torch.h>

#include <vector>

namespace lcq::model {

torch::Tensor ActQuant::apply(const torch::Tensor& x) const {
  if (bits <= 0) return x;
  if (scheme == Scheme::PerTensorStatic) {
    // Symmetric signed grid with a calibrated scale; straight-through rounding.
    const double qmax = double((1 << (bits - 1)) - 1);
    auto q = torch::clamp(torch::round(x / static_scale), -qmax - 1, qmax);
    return x + (q * static_scale - x).detach();
  }
  // Per-token (last dimension) dynamic asymmetric min-max.
  const double levels = double((1 << bits) - 1);
  auto xmin = std::get<0>(x.min(-1, true)).clamp_max(0);
  auto xmax = std::get<0>(x.max(-1, true)).clamp_min(0);
  auto scale = ((xmax - xmin) / levels).clamp_min(1e-8);
  auto zero = torch::round(-xmin / scale);
  auto q = torch::clamp(torch::round(x / scale) + zero, 0, levels);
  return x + ((q - zero) * scale - x).detach();
}

int64_t Linear::in_features() const { return packed ? packed->cols() : weight.size(1); }
int64_t Linear::out_features() const { return packed ? packed->rows() : weight.size(0); }

namespace {
thread_local LinearInputTap::Fn* g_tap = nullptr;

// y [..., rows] = x [..., cols] W^T computed in f32 by `product(x, n, y)` on n contiguous
// rows of x; returns x's dtype. The shared frame of the kernel-backed weights below.
template <class Product>
torch::Tensor linear_in_f32(const torch::Tensor& x, int64_t rows, int64_t cols, Product product) {
  LCQ_CHECK(x.device().is_cpu(), "packed and fp16-stored layers run on the CPU only");
  LCQ_CHECK(x.size(-1) == cols, "linear: input has {} features, the layer expects {}", x.size(-1), cols);
  const torch::Tensor xf = x.to(torch::kFloat32).contiguous();
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = rows;
  torch::Tensor y = torch::empty(shape, torch::kFloat32);
  product(xf, xf.numel() / cols, y);
  return y.scalar_type() == x.scalar_type() ? y : y.to(x.scalar_type());
}

// From kPromptMinTokens on, a packed layer's product is a BLAS GEMM on its weights dequantized
// in panels of rows: the rows are decoded once per product and the multiply-adds run at BLAS
// speed, where the packed kernels decode the indices again for every few tokens.
// Rows per panel: a panel of f32 weights stays within about 4 MiB (most of SmolLM2's linears
// are one panel; the head is 28).
constexpr int64_t kPanelBytes = int64_t(4) << 20;

// Y [n, rows] = X [n, cols] W^T, W dequantized panel by panel (in parallel rows), through
// oneDNN's f32 GEMM (dnnl_sgemm: 5-15 % faster than OpenBLAS 0.3.21 at these shapes on an
// AVX-512 Xeon, and it knows CPUs newer than that OpenBLAS; each panel's product is written in
// place, into its columns of Y) or, with dtype bf16, through libtorch's bf16 mm, which is
// oneDNN's bf16 GEMM (inputs and result in bf16).
// A bf16 panel is filled chunk by chunk from an f32 chunk that stays in cache: the f32 panel
// never goes through memory.
void panel_gemm(const kernels::Matrix& m, const torch::Tensor& x2, torch::Tensor& y2, torch::ScalarType dtype) {
  const int64_t rows = m.rows(), cols = m.cols();
  const int64_t panel = std::max<int64_t>(64, kPanelBytes / (4 * cols)) / 8 * 8;
  const bool bf16 = dtype == torch::kBFloat16;
  torch::Tensor w = torch::empty({std::min(rows, panel), cols}, bf16 ? torch::kBFloat16 : torch::kFloat32);
  const torch::Tensor x = bf16 ? x2.to(torch::kBFloat16) : x2;
  constexpr int64_t kChunk = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += panel) {
    const int64_t r1 = std::min(rows, r0 + panel), chunks = (r1 - r0 + kChunk - 1) / kChunk;
    torch::Tensor wp = w.slice(0, 0, r1 - r0);
#pragma omp parallel
    {
      std::vector<float> local(bf16 ? size_t(kChunk * cols) : 0);
#pragma omp for schedule(dynamic, 1)
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t a = r0 + c * kChunk, b = std::min(r1, a + kChunk);
        if (!bf16) {
          m.dequantize_rows(a, b, wp.data_ptr<float>() + (a - r0) * cols);
          continue;
        }
        m.dequantize_rows(a, b, local.data());
        // copy_ rounds to nearest even, as .to(kBFloat16) does; inside this parallel region
        // torch runs it on this thread.
        wp.slice(0, a - r0, b - r0).copy_(torch::from_blob(local.data(), {b - a, cols}, torch::kFloat32));
      }
    }
    if (!bf16) {
      const int64_t n = x.size(0);
      const dnnl_status_t st = dnnl_sgemm('N', 'T', n, r1 - r0, cols, 1.f, x.data_ptr<float>(), cols,
                                          wp.data_ptr<float>(), cols, 0.f, y2.data_ptr<float>() + r0, rows);
      LCQ_CHECK(st == dnnl_success, "oneDNN's f32 GEMM failed (status {})", int(st));
    } else {
      y2.slice(1, r0, r1).copy_(torch::mm(x, wp.t()));
    }
  }
}

// Packed LCQ layer: its kernel for one or a few tokens, BLAS on dequantized panels for more.
torch::Tensor packed_linear(const kernels::Matrix& m, torch::ScalarType panel_dtype, const torch::Tensor& x) {
  return linear_in_f32(x, m.rows(), m.cols(), [&](const torch::Tensor& xf, int64_t n, torch::Tensor& y) {
    if (n < kPromptMinTokens) return m.gemm(xf.data_ptr<float>(), n, y.data_ptr<float>());
    torch::Tensor y2 = y.view({n, m.rows()});
    panel_gemm(m, xf.view({n, m.cols()}), y2, panel_dtype);
  });
}

// y [rows] = W x for one token through the Highway GEMV of W's dtype (f32, bf16 or fp16).
void dense_gemv(const torch::Tensor& w, const float* x, float* y) {
  const int64_t rows = w.size(0), cols = w.size(1);
  switch (w.scalar_type()) {
    case torch::kFloat32: return kernels::gemv_f32(w.data_ptr<float>(), rows, cols, x, y);
    case torch::kBFloat16:
      return kernels::gemv_bf16(reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>()), rows, cols, x, y);
    case torch::kHalf: return kernels::gemv_f16(reinterpret_cast<const uint16_t*>(w.data_ptr<at::Half>()), rows, cols, x, y);
    default: fail("linear: no GEMV kernel for weights of type {}", c10::toString(w.scalar_type()));
  }
}

// Weights kept in fp16 for their size (the tied embedding/head of an LCQ file): one token ->
// the fp16 GEMV kernel; more -> f32 copies of row chunks through BLAS.
torch::Tensor half_linear(const torch::Tensor& w, const torch::Tensor& x) {
  const int64_t rows = w.size(0), cols = w.size(1);
  return linear_in_f32(x, rows, cols, [&](const torch::Tensor& xf, int64_t n, torch::Tensor& y) {
    if (n == 1) return dense_gemv(w, xf.data_ptr<float>(), y.data_ptr<float>());
    const torch::Tensor x2 = xf.view({n, cols});
    torch::Tensor y2 = y.view({n, rows});
    const int64_t chunk = 4096;
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t r1 = std::min(rows, r0 + chunk);
      y2.slice(1, r0, r1).copy_(torch::mm(x2, w.slice(0, r0, r1).to(torch::kFloat32).t()));
    }
  });
}

// Whether one token through a dense f32 or bf16 layer should take the Highway GEMV: BLAS
// computes x W^T for a single row as a GEMM and first copies (packs) all of W, so fp32
// decoding ran at a third of the read bandwidth (BENCHMARKS.md, issue 5, eighth round).
bool one_token_gemv_applies(const torch::Tensor& w, const torch::Tensor& x) {
  const auto t = w.scalar_type();
  return (t == torch::kFloat32 || t == torch::kBFloat16) && x.scalar_type() == t && w.dim() == 2 &&
         x.numel() == w.size(1) && w.device().is_cpu() && w.is_contiguous() &&
         !(torch::GradMode::is_enabled() && (x.requires_grad() || w.requires_grad()));
}
}  // namespace

LinearInputTap::LinearInputTap(Fn fn) {
  LCQ_CHECK(g_tap == nullptr, "LinearInputTap: taps do not nest");
  g_tap = new Fn(std::move(fn));
}

LinearInputTap::~LinearInputTap() {
  delete g_tap;
  g_tap = nullptr;
}

torch::Tensor Linear::forward(const torch::Tensor& x) const {
  if (g_tap) (*g_tap)(*this, x);
  torch::Tensor in = input_quant ? input_quant->apply(x) : x;
  torch::Tensor y;
  if (packed || (weight.scalar_type() == torch::kHalf && in.scalar_type() != torch::kHalf)) {
    LCQ_CHECK(!in.requires_grad(), "a packed or fp16-stored layer is inference-only");
    y = packed ? packed_linear(*packed, panel_dtype, in) : half_linear(weight, in);
    if (bias.defined()) y.add_(bias);
  } else if (one_token_gemv_applies(weight, in)) {
    y = linear_in_f32(in, weight.size(0), weight.size(1), [&](const torch::Tensor& xf, int64_t, torch::Tensor& out) {
      dense_gemv(weight, xf.data_ptr<float>(), out.data_ptr<float>());
    });
    if (bias.defined()) y.add_(bias);
  } else {
    y = bias.defined() ? torch::nn::functional::linear(in, weight, bias) : torch::nn::functional::linear(in, weight);
  }
  return output_quant ? output_quant->apply(y) : y;
}

torch::Tensor Linear::dense_weight() const {
  if (!packed) return weight;
  torch::Tensor w = torch::empty({packed->rows(), packed->cols()}, torch::kFloat32);
  packed->dequantize_rows(0, packed->rows(), w.data_ptr<float>());
  return w;
}

size_t Linear::weight_bytes() const {
  if (packed) return packed->nbytes();
  return weight.defined() ? size_t(weight.numel()) * weight.element_size() : 0;
}

}  // namespace lcq::model
