// flexvid::project — a 1×1 convolution on channel-major rows as oneDNN matmuls that read and write
// the plain layout in place: y[n] = W · x[n] + b for x [N, Cin, L], W [Cout, Cin], b [Cout].
//
// Why: libtorch runs a 1×1 convolution through oneDNN's blocked layouts, reordering input and
// output (and, in backward, the input again) around a kernel that is itself fast. For the U-Net's
// skip connections on 32×32 maps ([20, 192, 32²] → 64) the reorders of 16 MB tensors cost more
// than the products: 50 ms per training step for that layer against ≈ 7 ms as matmuls. The weight
// is broadcast over the batch (a batch dimension of 1).
#include <torch/torch.h>
#include <torch/library.h>

#include "autograd_util.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "onednn.h"
#include "simd.h"

#ifdef FLEXVID_DNNL
namespace flexvid {
namespace {

using dnnl::memory;

// [batch, rows, cols] with explicit strides.
memory::desc Desc(int64_t batch, int64_t rows, int64_t cols, memory::dims strides) {
  return memory::desc({batch, rows, cols}, memory::data_type::f32, strides);
}

struct Product {
  memory::desc src, wei, dst;
  std::unique_ptr<dnnl::matmul> prim;
};

enum Kind { kForward, kGradInput, kGradWeight };

std::mutex g_mutex;
// Keyed by the thread count too: oneDNN shares a primitive's work among the threads it was made
// for (see ShapeKey in winograd.cc).
std::map<std::tuple<int, int64_t, int64_t, int64_t, int64_t, int>, std::unique_ptr<Product>> g_products;

// The product of `kind` for x [n, cin, l], W [cout, cin].
const Product& GetProduct(Kind kind, int64_t n, int64_t cin, int64_t cout, int64_t l) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& slot = g_products[{kind, n, cin, cout, l, at::get_num_threads()}];
  if (slot) return *slot;
  auto p = std::make_unique<Product>();
  switch (kind) {
    case kForward:  // y[n] = W x[n]: W broadcast over the batch
      p->src = Desc(1, cout, cin, {cout * cin, cin, 1});
      p->wei = Desc(n, cin, l, {cin * l, l, 1});
      p->dst = Desc(n, cout, l, {cout * l, l, 1});
      break;
    case kGradInput:  // dx[n] = Wᵀ dy[n]
      p->src = Desc(1, cin, cout, {cout * cin, 1, cin});
      p->wei = Desc(n, cout, l, {cout * l, l, 1});
      p->dst = Desc(n, cin, l, {cin * l, l, 1});
      break;
    case kGradWeight:  // dW_n = dy[n] x[n]ᵀ, summed over n afterwards
      p->src = Desc(n, cout, l, {cout * l, l, 1});
      p->wei = Desc(n, l, cin, {cin * l, 1, l});
      p->dst = Desc(n, cout, cin, {cout * cin, cin, 1});
      break;
  }
  p->prim.reset(new dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(p->src, p->wei, p->dst), OnednnEngine())));
  slot = std::move(p);
  return *slot;
}

void Run(const Product& p, const at::Tensor& src, const at::Tensor& wei, at::Tensor& dst) {
  dnnl::stream s(OnednnEngine());
  p.prim->execute(s, {{DNNL_ARG_SRC, memory(p.src, OnednnEngine(), src.data_ptr())},
                      {DNNL_ARG_WEIGHTS, memory(p.wei, OnednnEngine(), wei.data_ptr())},
                      {DNNL_ARG_DST, memory(p.dst, OnednnEngine(), dst.data_ptr())}});
  s.wait();
}

// y[k] += bias + r[k] (r may be null), k < n (vectorised; simd.h clones for AVX2/AVX-512).
FLEXVID_CLONES void AddRow(float* __restrict y, const float* __restrict r, float bias, int64_t n) {
  if (r) {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) y[k] += bias + r[k];
  } else {
#pragma omp simd
    for (int64_t k = 0; k < n; ++k) y[k] += bias;
  }
}

// ----- forward with bias and residual, in tiles -------------------------------------------------
// A separate pass adding bias (and residual) to y after one big product sweeps y through memory
// again: 25–35 % of the layer's time for the U-Net's shapes (measured). Instead the product is cut
// into tiles — one sample's [Cout, lc] block of columns — each computed by one thread with a
// single-threaded oneDNN matmul and finished (bias, residual) while it is still in that core's
// cache. Same arithmetic as the pass after the product.

struct TileProduct {
  dnnl::matmul prim;
  memory::desc src, wei, dst, scratch;
};

std::mutex g_tile_mutex;
std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, std::unique_ptr<TileProduct>> g_tiles;

// y_tile [cout, lc] (row stride l) = W [cout, cin] · x_tile [cin, lc] (row stride l).
const TileProduct& GetTile(int64_t cin, int64_t cout, int64_t lc, int64_t l) {
  std::lock_guard<std::mutex> lock(g_tile_mutex);
  auto& slot = g_tiles[{cin, cout, lc, l}];
  if (slot) return *slot;
  memory::desc src({cout, cin}, memory::data_type::f32, memory::dims{cin, 1});
  memory::desc wei({cin, lc}, memory::data_type::f32, memory::dims{l, 1});
  memory::desc dst({cout, lc}, memory::data_type::f32, memory::dims{l, 1});
  // Each thread brings its own scratchpad (several tiles run at once).
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), attr, OnednnEngine());
  slot.reset(new TileProduct{dnnl::matmul(pd), src, wei, dst, pd.scratchpad_desc()});
  return *slot;
}

// Columns per tile: whole rows when there are enough samples to share out, else the fewest
// 64-column chunks that give every thread two tiles.
int64_t TileColumns(int64_t n, int64_t l) {
  const int64_t want = 2 * at::get_num_threads();
  if (n >= want) return l;
  const int64_t chunks = (want + n - 1) / n;
  const int64_t lc = ((l + chunks - 1) / chunks + 63) / 64 * 64;
  return std::min(l, std::max<int64_t>(64, lc));
}

void ForwardTiles(const at::Tensor& x, const at::Tensor& w, const float* b, const float* r, at::Tensor& y) {
  const int64_t n = x.size(0), cin = x.size(1), l = x.size(2), cout = w.size(0);
  const int64_t lc = TileColumns(n, l), per = (l + lc - 1) / lc;
  const TileProduct& full = GetTile(cin, cout, lc, l);
  const TileProduct* last = l % lc ? &GetTile(cin, cout, l % lc, l) : &full;
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, n * per, 1, [&](int64_t begin, int64_t end) {
    dnnl::stream s(OnednnEngine());
    std::vector<char> scratch(std::max(full.scratch.get_size(), last->scratch.get_size()) + 1);
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / per, c0 = (t % per) * lc, cols = std::min(lc, l - c0);
      const TileProduct& tp = cols == lc ? full : *last;
      float* yt = yp + i * cout * l + c0;
      tp.prim.execute(s, {{DNNL_ARG_SRC, memory(tp.src, OnednnEngine(), const_cast<float*>(wp))},
                          {DNNL_ARG_WEIGHTS, memory(tp.wei, OnednnEngine(), const_cast<float*>(xp + i * cin * l + c0))},
                          {DNNL_ARG_DST, memory(tp.dst, OnednnEngine(), yt)},
                          {DNNL_ARG_SCRATCHPAD, memory(tp.scratch, OnednnEngine(), scratch.data())}});
      for (int64_t c = 0; c < cout; ++c) {
        AddRow(yt + c * l, r ? r + i * cout * l + c * l + c0 : nullptr, b ? b[c] : 0.0f, cols);
      }
    }
  });
}

class ProjectFunction : public torch::autograd::Function<ProjectFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, const at::Tensor& r) {
    const int64_t n = x.size(0), cin = x.size(1), l = x.size(2), cout = w.size(0);
    const bool has_bias = b.numel() > 0, has_residual = r.numel() > 0;
    at::Tensor y = at::empty({n, cout, l}, x.options());
    if (has_bias || has_residual) {
      // oneDNN's brgemm matmul takes a bias along the columns only (ours is per row), and its
      // binary post-ops measured no faster than a pass of our own: bias and residual are added
      // tile by tile (ForwardTiles).
      ForwardTiles(x, w, has_bias ? b.data_ptr<float>() : nullptr, has_residual ? r.data_ptr<float>() : nullptr, y);
    } else {
      Run(GetProduct(kForward, n, cin, cout, l), w, x, y);
    }
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = has_bias;
    ctx->saved_data["residual"] = has_residual;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    RefuseDoubleBackward("flexvid::project (1×1 convolution as matmul)", "setWinogradConv(false) or FLEXVID_WINOGRAD=0");
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &w = saved[1];
    const int64_t n = x.size(0), cin = x.size(1), l = x.size(2), cout = w.size(0);
    at::Tensor gy = grads[0].contiguous();
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gx = at::empty_like(x);
      Run(GetProduct(kGradInput, n, cin, cout, l), w, gy, gx);
    }
    if (ctx->needs_input_grad(1)) {
      at::Tensor per = at::empty({n, cout, cin}, x.options());
      Run(GetProduct(kGradWeight, n, cin, cout, l), gy, x, per);
      gw = per.sum(0);
    }
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = gy.sum(at::IntArrayRef{0, 2});
    at::Tensor gr;
    if (ctx->saved_data["residual"].toBool() && ctx->needs_input_grad(3)) gr = gy;
    return {gx, gw, gb, gr};
  }
};

}  // namespace

// x [N, Cin, L], weight [Cout, Cin], bias [Cout] or none, residual [N, Cout, L] or none
// → W·x + b + residual, [N, Cout, L] (float32 CPU).
at::Tensor Project(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                   const c10::optional<at::Tensor>& residual) {
  TORCH_CHECK(x.dim() == 3 && weight.dim() == 2 && weight.size(1) == x.size(1),
              "flexvid::project: expected x [N, Cin, L] and weight [Cout, Cin], got ", x.sizes(), " and ",
              weight.sizes());
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat,
              "flexvid::project: float32 CPU tensors only");
  TORCH_CHECK(x.numel() > 0, "flexvid::project: empty input ", x.sizes());
  at::Tensor b = bias && bias->defined() ? bias->contiguous() : at::empty({0}, x.options());
  TORCH_CHECK(b.numel() == 0 || (b.numel() == weight.size(0) && b.scalar_type() == at::kFloat),
              "flexvid::project: bias needs ", weight.size(0), " float32 elements");
  at::Tensor r = residual && residual->defined() ? residual->contiguous() : at::empty({0}, x.options());
  TORCH_CHECK(r.numel() == 0 || (r.sizes() == at::IntArrayRef{x.size(0), weight.size(0), x.size(2)} && r.scalar_type() == at::kFloat),
              "flexvid::project: residual must be float32 [", x.size(0), ", ", weight.size(0), ", ", x.size(2), "], got ",
              r.sizes());
  return ProjectFunction::apply(x.contiguous(), weight.contiguous(), b, r);
}

TORCH_LIBRARY_FRAGMENT(flexvid, m) {
  m.def("project(Tensor x, Tensor weight, Tensor? bias, Tensor? residual=None) -> Tensor");
}
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) { m.impl("project", &Project); }

}  // namespace flexvid
#endif  // FLEXVID_DNNL
