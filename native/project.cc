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

std::mutex g_mutex;
// Keyed by the thread count too: oneDNN shares a primitive's work among the threads it was made
// for (see ShapeKey in winograd.cc).
std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int>, std::unique_ptr<Product>> g_products;

// y[n] = W x[n] for x [n, cin, l], W [cout, cin] broadcast over the batch (no bias or residual).
const Product& GetProduct(int64_t n, int64_t cin, int64_t cout, int64_t l) {
  std::lock_guard<std::mutex> lock(g_mutex);
  auto& slot = g_products[{n, cin, cout, l, at::get_num_threads()}];
  if (slot) return *slot;
  auto p = std::make_unique<Product>();
  p->src = Desc(1, cout, cin, {cout * cin, cin, 1});
  p->wei = Desc(n, cin, l, {cin * l, l, 1});
  p->dst = Desc(n, cout, l, {cout * l, l, 1});
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
// into tiles — one sample's [rows, L] block of output channels — each computed by one thread with a
// single-threaded oneDNN matmul and finished (bias, residual) while it is still in that core's
// cache. Same arithmetic as the pass after the product.

// One tile's matmul, run by one thread with that thread's scratchpad (several tiles run at once,
// and oneDNN's default scratchpad is shared); `accumulate`: dst += product (sum post-op).
struct TileProduct {
  dnnl::matmul prim;
  memory::desc src, wei, dst, scratch;

  TileProduct(const memory::desc& src_, const memory::desc& wei_, const memory::desc& dst_, bool accumulate = false)
      : src(src_), wei(wei_), dst(dst_) {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (accumulate) {
      dnnl::post_ops sum;
      sum.append_sum(1.0f);
      attr.set_post_ops(sum);
    }
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), attr, OnednnEngine());
    prim = dnnl::matmul(pd);
    scratch = pd.scratchpad_desc();
  }

  void Run(dnnl::stream& s, const float* a, const float* b, float* out, char* scratchpad) const {
    prim.execute(s, {{DNNL_ARG_SRC, memory(src, OnednnEngine(), const_cast<float*>(a))},
                     {DNNL_ARG_WEIGHTS, memory(wei, OnednnEngine(), const_cast<float*>(b))},
                     {DNNL_ARG_DST, memory(dst, OnednnEngine(), out)},
                     {DNNL_ARG_SCRATCHPAD, memory(scratch, OnednnEngine(), scratchpad)}});
  }
};

// A [rows, cols] float32 matrix with row stride `row_stride` (transposed: column stride instead).
memory::desc Matrix(int64_t rows, int64_t cols, int64_t stride, bool transposed = false) {
  return memory::desc({rows, cols}, memory::data_type::f32, transposed ? memory::dims{1, stride} : memory::dims{stride, 1});
}

std::mutex g_tile_mutex;
std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<TileProduct>> g_tiles;

// y_rows [rows, l] = W_rows [rows, cin] · x_sample [cin, l]: every operand a dense block.
//
// Tiles are never narrower than a row: a column tile is a strided matrix, which oneDNN 2.6 hands
// to its gemm:jit implementation instead of brgemm, and that path corrupted the heap when the
// process took asynchronous signals at ≈ 1 kHz (`node --cpu-prof`; reproduced with
// `--cpu-prof-interval 200`, gone with dense tiles). Where the samples do not share out evenly
// over the threads, tiles split the output channels instead.
const TileProduct& GetTile(int64_t cin, int64_t rows, int64_t l) {
  std::lock_guard<std::mutex> lock(g_tile_mutex);
  auto& slot = g_tiles[{cin, rows, l}];
  if (!slot) slot.reset(new TileProduct(Matrix(rows, cin, cin), Matrix(cin, l, l), Matrix(rows, l, l)));
  return *slot;
}

// Output channels per forward tile: all of them when the samples share out evenly over the
// threads (or are many), else the fewest blocks (multiples of 16 channels) that give every thread
// the same number of tiles, at least two (5 samples on 2 threads as 5 tiles would leave one thread
// idle for a sixth of the time).
int64_t TileRows(int64_t n, int64_t cout) {
  const int64_t threads = at::get_num_threads();
  if (n >= 8 * threads || (n % threads == 0 && n >= 2 * threads)) return cout;
  auto rows = [cout](int64_t blocks) { return std::min(cout, std::max<int64_t>(16, ((cout + blocks - 1) / blocks + 15) / 16 * 16)); };
  for (int64_t blocks = 1; blocks <= 16; ++blocks) {
    const int64_t rc = rows(blocks);
    const int64_t tiles = n * ((cout + rc - 1) / rc);
    if (tiles % threads == 0 && tiles >= 2 * threads) return rc;
    if (rc == 16 || (rc == cout && blocks > 1)) break;
  }
  // No even split (few channels): the fewest blocks that give every thread two tiles.
  return rows((2 * threads + n - 1) / n);
}

void ForwardTiles(const at::Tensor& x, const at::Tensor& w, const float* b, const float* r, at::Tensor& y) {
  const int64_t n = x.size(0), cin = x.size(1), l = x.size(2), cout = w.size(0);
  const int64_t rc = TileRows(n, cout), per = (cout + rc - 1) / rc;
  const TileProduct& full = GetTile(cin, rc, l);
  const TileProduct* last = cout % rc ? &GetTile(cin, cout % rc, l) : &full;
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, n * per, 1, [&](int64_t begin, int64_t end) {
    dnnl::stream s(OnednnEngine());
    OnednnScratchpad scratch(std::max(full.scratch.get_size(), last->scratch.get_size()));
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / per, c0 = (t % per) * rc, rows = std::min(rc, cout - c0);
      const TileProduct& tp = rows == rc ? full : *last;
      float* yt = yp + (i * cout + c0) * l;
      tp.Run(s, wp + c0 * cin, xp + i * cin * l, yt, scratch.data());
      const float* rt = r ? r + (i * cout + c0) * l : nullptr;
      for (int64_t c = 0; c < rows; ++c) AddRow(yt + c * l, rt ? rt + c * l : nullptr, b ? b[c0 + c] : 0.0f, l);
    }
  });
}

// ----- backward in tiles ---------------------------------------------------------------------------
// One tile per sample, each on one thread: dx_tile = Wᵀ · dy_tile, the thread's own weight
// gradient += dy_tile · x_tileᵀ (oneDNN's sum post-op accumulates in place) and its bias gradient
// += the rows of dy_tile, while dy_tile is in that core's cache. The per-thread partial sums are
// added at the end. Before: one batched product for dx, per-sample weight gradients [N, Cout, Cin]
// summed afterwards, and a separate pass over dy for the bias (≈ 2.4× forward; measured).

struct BackwardTile {
  TileProduct grad_input;   // dx_tile [cin, l] = Wᵀ · dy_tile
  TileProduct grad_weight;  // dW [cout, cin] += dy_tile · x_tileᵀ
};

std::mutex g_bwd_mutex;
std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<BackwardTile>> g_bwd_tiles;

// For one sample's dy [cout, l] and x [cin, l]: dx [cin, l] and dW [cout, cin].
const BackwardTile& GetBackwardTile(int64_t cin, int64_t cout, int64_t l) {
  std::lock_guard<std::mutex> lock(g_bwd_mutex);
  auto& slot = g_bwd_tiles[{cin, cout, l}];
  if (!slot) {
    slot.reset(new BackwardTile{TileProduct(Matrix(cin, cout, cin, true), Matrix(cout, l, l), Matrix(cin, l, l)),
                                TileProduct(Matrix(cout, l, l), Matrix(l, cin, l, true), Matrix(cout, cin, cin), true)});
  }
  return *slot;
}

// Σ_j y[j], j < n, for one row (vectorised).
FLEXVID_CLONES float RowSum(const float* __restrict y, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += y[j];
  return s;
}

// gx (or undefined), gw and gb (or undefined) from gy [N, Cout, L], x [N, Cin, L], w [Cout, Cin].
void BackwardTiles(const at::Tensor& gy, const at::Tensor& x, const at::Tensor& w, at::Tensor* gx, at::Tensor* gw,
                   at::Tensor* gb) {
  const int64_t n = x.size(0), cin = x.size(1), l = x.size(2), cout = w.size(0);
  // One tile per sample (column tiles would be strided matrices: see GetTile).
  const BackwardTile& tile = GetBackwardTile(cin, cout, l);
  const int64_t nt = at::get_num_threads();
  // Per-thread partial sums: weight gradient (float, as the products give them) and bias gradient.
  at::Tensor gw_parts = gw ? at::zeros({nt, cout, cin}, x.options()) : at::Tensor();
  std::vector<double> gb_parts(gb ? nt * cout : 0, 0.0);
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* gyp = gy.data_ptr<float>();
  float* gxp = gx ? gx->data_ptr<float>() : nullptr;
  const size_t scratch_bytes = std::max(tile.grad_input.scratch.get_size(), tile.grad_weight.scratch.get_size());
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    const int64_t tid = at::get_thread_num();
    dnnl::stream s(OnednnEngine());
    OnednnScratchpad scratch(scratch_bytes);
    float* gw_mine = gw ? gw_parts.data_ptr<float>() + tid * cout * cin : nullptr;
    double* gb_mine = gb ? gb_parts.data() + tid * cout : nullptr;
    for (int64_t i = begin; i < end; ++i) {
      const float* gy_tile = gyp + i * cout * l;
      const float* x_tile = xp + i * cin * l;
      if (gxp) tile.grad_input.Run(s, wp, gy_tile, gxp + i * cin * l, scratch.data());
      if (gw_mine) tile.grad_weight.Run(s, gy_tile, x_tile, gw_mine, scratch.data());
      if (gb_mine) {
        for (int64_t c = 0; c < cout; ++c) gb_mine[c] += RowSum(gy_tile + c * l, l);
      }
    }
  });
  if (gw) *gw = nt == 1 ? gw_parts[0] : gw_parts.sum(0);
  if (gb) {
    *gb = at::empty({cout}, x.options());
    float* gbp = gb->data_ptr<float>();
    for (int64_t c = 0; c < cout; ++c) {
      double v = 0;
      for (int64_t t = 0; t < nt; ++t) v += gb_parts[t * cout + c];
      gbp[c] = static_cast<float>(v);
    }
  }
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
      Run(GetProduct(n, cin, cout, l), w, x, y);
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
    at::Tensor gy = grads[0].contiguous();
    at::Tensor gx, gw, gb;
    const bool want_gb = ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2);
    if (ctx->needs_input_grad(0)) gx = at::empty_like(x);
    BackwardTiles(gy, x, w, gx.defined() ? &gx : nullptr, ctx->needs_input_grad(1) ? &gw : nullptr,
                  want_gb ? &gb : nullptr);
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
