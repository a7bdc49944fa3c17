#include "lcq/quant/gptq.h"

#include "layer_inputs.h"
#include "lcq/core/error.h"
#include "lcq/core/named.h"
#include "lcq/core/half.h"
#include "lcq/core/progress.h"
#include "lcq/quant/uniform.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

namespace lcq::quant {

namespace {
constexpr Named<GptqGroups> kGptqGroups[] = {{GptqGroups::kStatic, "static"}, {GptqGroups::kLazy, "lazy"}};
constexpr Named<LcqInit> kGptqGrids[] = {{LcqInit::kRtn, "rtn"}, {LcqInit::kMse, "mse"}, {LcqInit::kWmse, "wmse"}};
}  // namespace

const std::vector<std::string>& gptq_grid_names() {
  static const auto v = names_of(kGptqGrids);
  return v;
}

LcqInit parse_gptq_grid(const std::string& name) { return parse_named(kGptqGrids, name, "--gptq-grid"); }

const std::vector<std::string>& gptq_groups_names() {
  static const auto v = names_of(kGptqGroups);
  return v;
}

GptqGroups parse_gptq_groups(const std::string& name) { return parse_named(kGptqGroups, name, "--gptq-groups"); }

std::string to_string(GptqGroups g) { return name_of(kGptqGroups, g); }

namespace {

// The options the sweep itself reads (gptq_round has no grid to check).
void validate_sweep(const GptqOptions& g) {
  LCQ_CHECK(std::isfinite(g.damp) && g.damp >= 0, "--gptq-damp must be >= 0 (a fraction of mean(diag H)), got {}",
            g.damp);
  LCQ_CHECK(g.block >= 1, "--gptq-block must be >= 1, got {}", g.block);
}

}  // namespace

void validate(const GptqOptions& g, const LcqOptions& o) {
  validate(o);
  validate_sweep(g);
  LCQ_CHECK(g.groups == GptqGroups::kStatic || o.dq_bits == 0,
            "--gptq-groups lazy needs --dq-bits 0: a double-quantization block's scale is known only once all "
            "its groups are, so GPTQ could not round against the grid the file stores (got --dq-bits {})",
            o.dq_bits);
  LCQ_CHECK(is_grid_init(g.grid), "--gptq-grid must be rtn, mse or wmse, got {}", to_string(g.grid));
  LCQ_CHECK(g.groups == GptqGroups::kStatic || g.grid == LcqInit::kRtn,
            "--gptq-groups lazy takes min-max grids of the updated weights: it needs --gptq-grid rtn (got {})",
            to_string(g.grid));
  LCQ_CHECK(g.groups == GptqGroups::kStatic || !g.act_order,
            "--act-order needs --gptq-groups static (with lazy groups add --no-act-order): lazy groups in "
            "activation order are sets of scattered columns, which a file of contiguous groups cannot hold");
}

namespace {

// A rank-one layer whose f32 parameters are filled group by group (lazy groups).
CodebookLayer empty_grid_layer(int64_t m, int64_t n, const LcqOptions& o) {
  CodebookLayer l;
  l.rows = m;
  l.cols = n;
  l.bits = o.bits;
  l.group = int(std::min<int64_t>(o.group, n));
  l.rank = 1;
  l.dq_bits = 0;
  l.dq_group = o.dq_group;
  l.s_f32.assign(size_t(l.n_groups()), 0.f);
  l.b_f32.assign(size_t(l.n_groups()), 0.f);
  for (int t = 0; t < l.levels(); ++t) l.v.push_back(f32_to_f16(float(t)));
  return l;
}

}  // namespace

namespace {

// The sweep shared by gptq_quantize and gptq_round: W's columns (in order of decreasing
// diag(H) with act-order) each rounded to the nearest entry of its group's codebook in L, the
// error spread over the later columns. `lazy`: L's rank-one grid of a group is computed from
// the updated weights when the sweep reaches it. Sets L.indices; returns L.
CodebookLayer sweep(const torch::Tensor& W_in, const torch::Tensor& H_in, CodebookLayer L, const GptqOptions& g,
                    bool lazy) {
  torch::NoGradGuard ng;
  const int64_t m = W_in.size(0), n = W_in.size(1);
  torch::Tensor W = W_in.detach().to(torch::kFloat32).clone(at::MemoryFormat::Contiguous);
  torch::Tensor H = H_in.detach().to(torch::kFloat64).clone();
  LCQ_CHECK(torch::isfinite(H).all().item<bool>(), "GPTQ: the layer's inputs contain NaN or infinite values");
  // A column whose input is always 0 cannot affect the output: H gets a unit diagonal there
  // (so it stays invertible) and the weight becomes 0, as in the reference.
  const torch::Tensor dead = H.diagonal() == 0;
  H.diagonal().masked_fill_(dead, 1.0);
  W.masked_fill_(dead.unsqueeze(0), 0.0);

  const int64_t gpr = L.groups_per_row(), K = L.levels(), group = L.group;
  // Every group's codebook in CodebookLayer's own arithmetic: GPTQ's q is then exactly what
  // the file's dequantization gives back.
  std::vector<float> table(size_t(m * gpr * K));
  if (!lazy)
    for (int64_t k = 0; k < m * gpr; ++k) L.codebook(k, &table[size_t(k * K)]);

  torch::Tensor perm = torch::arange(n, torch::kInt64);
  if (g.act_order) {
    perm = torch::argsort(H.diagonal(), /*dim=*/0, /*descending=*/true);
    W = W.index_select(1, perm).contiguous();
    H = H.index_select(0, perm).index_select(1, perm);
  }
  H.diagonal().add_(g.damp * H.diagonal().mean().item<double>());
  // Upper Cholesky factor of H^-1, in f64 (n <= a few thousand: cheap) for robustness.
  auto [chol, info] = at::linalg_cholesky_ex(H);
  LCQ_CHECK(info.item<int64_t>() == 0,
            "GPTQ: H is not positive definite after dampening; a larger --gptq-damp (now {}) may help", g.damp);
  auto [hinv_u, info2] = at::linalg_cholesky_ex(torch::cholesky_inverse(chol), /*upper=*/true);
  LCQ_CHECK(info2.item<int64_t>() == 0,
            "GPTQ: H^-1 is not positive definite (ill-conditioned inputs); a larger --gptq-damp (now {}) may help",
            g.damp);
  const torch::Tensor Hinv = hinv_u.to(torch::kFloat32).contiguous();
  const float* hinv = Hinv.data_ptr<float>();
  const int64_t* perm_of = perm.data_ptr<int64_t>();
  float* w_all = W.data_ptr<float>();
  std::vector<uint8_t> codes(size_t(m * n));  // in sweep order
  const float qmax = float(K - 1);

  for (int64_t i1 = 0; i1 < n; i1 += g.block) {
    const int64_t i2 = std::min(n, i1 + g.block), count = i2 - i1;
    torch::Tensor Err1 = torch::zeros({m, count}, torch::kFloat32);
    float* err_all = Err1.data_ptr<float>();
    // Within a batch every row is independent: its columns are swept in order, each rounded
    // to the nearest entry of its group's codebook, the scaled error subtracted from the
    // row's later columns of the batch. Later batches get the errors at once below.
    at::parallel_for(0, m, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float* w = w_all + r * n;
        float* err = err_all + r * count;
        for (int64_t i = 0; i < count; ++i) {
          const int64_t c = i1 + i, j = perm_of[c] / group;
          float* cb = &table[size_t((r * gpr + j) * K)];
          if (lazy && c % group == 0) {
            // The group's grid from the row's weights as they are now: columns of this
            // batch are up to date, later ones still lack this batch's earlier errors.
            // (The reference reads the batch's columns before their in-batch updates: the
            // same when the group starts a batch, as with --group a multiple of --gptq-block.)
            float lo = std::numeric_limits<float>::infinity(), hi = -lo;
            for (int64_t col = c; col < std::min(n, c + group); ++col) {
              float v = w[col];
              if (col >= i2)
                for (int64_t k = 0; k < i; ++k) v -= err[k] * hinv[(i1 + k) * n + col];
              lo = std::min(lo, v);
              hi = std::max(hi, v);
            }
            // minmax_grid's arithmetic, in f32.
            const float scale = std::max((hi - lo) / qmax, 1e-8f);
            const float zero = std::min(qmax, std::max(0.f, std::nearbyint(-lo / scale)));
            L.s_f32[size_t(r * gpr + j)] = scale;
            L.b_f32[size_t(r * gpr + j)] = zero * scale;
            L.codebook(r * gpr + j, cb);
          }
          int best = 0;
          float best_d = std::abs(w[c] - cb[0]);
          for (int t = 1; t < K; ++t) {
            const float d = std::abs(w[c] - cb[t]);
            if (d < best_d) best_d = d, best = t;
          }
          codes[size_t(r * n + c)] = uint8_t(best);
          const float e = (w[c] - cb[best]) / hinv[c * n + c];
          for (int64_t col = c + 1; col < i2; ++col) w[col] -= e * hinv[c * n + col];
          err[i] = e;
        }
      }
    });
    if (i2 < n) W.slice(1, i2).sub_(Err1.mm(Hinv.slice(0, i1, i2).slice(1, i2)));
  }
  torch::Tensor swept = torch::from_blob(codes.data(), {m, n}, torch::kUInt8);
  torch::Tensor ordered = torch::empty_like(swept);
  ordered.index_copy_(1, perm, swept);  // column perm[c] was quantized c-th
  ordered = ordered.contiguous();
  L.indices.assign(ordered.data_ptr<uint8_t>(), ordered.data_ptr<uint8_t>() + ordered.numel());
  L.validate("gptq");
  return L;
}

void check_shapes(const torch::Tensor& W, const torch::Tensor& H) {
  LCQ_CHECK(W.dim() == 2 && H.dim() == 2 && H.size(0) == W.size(1) && H.size(1) == W.size(1),
            "GPTQ: H must be [{0}, {0}] for a weight of {0} columns", W.dim() == 2 ? W.size(1) : 0);
}

}  // namespace

CodebookLayer gptq_quantize(const torch::Tensor& W, const torch::Tensor& H, const LcqOptions& o, const GptqOptions& g) {
  validate(g, o);
  check_shapes(W, H);
  torch::NoGradGuard ng;
  if (g.groups == GptqGroups::kLazy) return sweep(W, H, empty_grid_layer(W.size(0), W.size(1), o), g, true);
  // The grid of the weights as the sweep sees them (never-active columns zeroed); wmse weighs
  // each column by diag(H) (its scale does not matter).
  const torch::Tensor dead = H.diagonal() == 0;
  const torch::Tensor w = W.detach().to(torch::kFloat32).masked_fill(dead.unsqueeze(0), 0.0);
  return sweep(W, H, detail::grid_layer(w, o, g.grid, H.diagonal().to(torch::kFloat32)), g, false);
}

CodebookLayer gptq_round(const torch::Tensor& W, const torch::Tensor& H, CodebookLayer codebooks,
                         const GptqOptions& g) {
  check_shapes(W, H);
  LCQ_CHECK(codebooks.rows == W.size(0) && codebooks.cols == W.size(1),
            "GPTQ: codebook layer {}x{} for a weight of {}x{}", codebooks.rows, codebooks.cols, W.size(0), W.size(1));
  validate_sweep(g);
  return sweep(W, H, std::move(codebooks), g, false);
}

namespace {

class GptqMethod final : public BlockMethod {
 public:
  GptqMethod(const model::Model& m, const LcqOptions& o, const GptqOptions& g, bool progress,
             std::map<std::string, int> layer_bits)
      : model_(&m), o_(o), g_(g), progress_(progress), layer_bits_(std::move(layer_bits)) {
    validate(g_, o_);
  }

  void begin_block(int layer, const model::Block& fp, const std::vector<torch::Tensor>& inputs) override {
    LCQ_CHECK(!inputs.empty() && inputs[0].defined(), "GPTQ needs the block's calibration inputs");
    torch::NoGradGuard ng;
    layer_ = layer;
    rtn_.clear();
    gptq_.clear();
    for (const auto& [name, lin] : fp.linears()) rtn_.emplace(name, detail::rtn_layer(lin->weight, options_of(name)));

    // Stages of layers quantized together; each stage's H comes from a pass over the block
    // in which the earlier stages are already quantized.
    std::vector<std::vector<std::string>> stages(g_.true_sequential ? 4 : 1);
    for (const auto& [name, lin] : fp.linears()) {
      size_t s = 0;
      if (g_.true_sequential)
        s = name == "attn_output" ? 1 : name == "ffn_gate" || name == "ffn_up" ? 2 : name == "ffn_down" ? 3 : 0;
      stages[s].push_back(name);
    }
    const model::BlockContext ctx = detail::exact_context(*model_);
    model::Block work = fp;  // shares fp's tensors; quantized weights replace them one by one
    Progress bar(fmt::format("block {} gptq", layer), int64_t(rtn_.size()), progress_);
    for (const auto& stage : stages) {
      std::vector<std::string> sites;
      for (const auto& name : stage) {
        const std::string s = detail::input_site(fp, name);
        if (std::find(sites.begin(), sites.end(), s) == sites.end()) sites.push_back(s);
      }
      std::map<std::string, detail::InputStats> stats;
      detail::StatsOptions so;
      so.need_output = false;
      detail::collect_input_stats(ctx, work, inputs[0], sites, stats, so);
      for (const auto& name : stage) {
        const detail::InputStats& st = stats.at(detail::input_site(fp, name));
        model::Linear& lin = detail::linear_named(work, name);
        CodebookLayer cl;
        try {
          cl = gptq_quantize(lin.weight, st.gram * (2.0 / double(st.tokens)), options_of(name), g_);
        } catch (const Error& e) {
          fail("blk.{}.{}: {}", layer, name, e.what());
        }
        lin.weight = detail::dequantized(cl, lin.weight);
        gptq_.emplace(name, std::move(cl));
        bar.add(1, name);
      }
    }
    bar.finish();
  }

  std::vector<torch::optim::OptimizerParamGroup> param_groups() override { return {}; }

  void apply(model::Block& working) override {
    for (auto& [name, lin] : working.linears()) lin->weight = detail::dequantized(rtn_.at(name), lin->weight);
  }

  std::map<std::string, CodebookLayer> end_block(model::Block& working) override {
    std::map<std::string, CodebookLayer> out;
    for (auto& [name, lin] : working.linears()) {
      lin->weight = detail::dequantized(gptq_.at(name), lin->weight);
      out.emplace(model::layer_name(layer_, name), std::move(gptq_.at(name)));
    }
    rtn_.clear();
    gptq_.clear();
    return out;
  }

 private:
  LcqOptions options_of(const std::string& name) const { return with_layer_bits(o_, layer_bits_, layer_, name); }

  const model::Model* model_;
  LcqOptions o_;
  GptqOptions g_;
  bool progress_;
  std::map<std::string, int> layer_bits_;
  int layer_ = 0;
  std::map<std::string, CodebookLayer> rtn_, gptq_;
};

}  // namespace

std::unique_ptr<BlockMethod> make_gptq_method(const model::Model& model, const LcqOptions& o, const GptqOptions& g,
                                              bool progress, std::map<std::string, int> layer_bits) {
  return std::make_unique<GptqMethod>(model, o, g, progress, std::move(layer_bits));
}

}  // namespace lcq::quant
