// flexvid::conv3x3 — a 3×3, stride-1, padding-1 float32 convolution on the CPU computed with
// oneDNN's Winograd F(4×4, 3×3) kernels (forward, backward-data and backward-weights).
//
// Why: libtorch's CPU convolution calls oneDNN's direct algorithm only. On the U-Net's 3×3
// convolutions (≈ 85 % of the model's FLOPs) Winograd does the same work with ≈ 2× fewer
// multiplications; measured 2× faster per primitive at 2 threads (docs/performance.md).
//
// The same file holds flexvid::bmm, oneDNN's batched matmul for the attention products (below).
//
// Compiled only when oneDNN's headers are present and the library is the one libtorch itself
// links (Debian: libdnnl-dev next to libtorch-dev); FLEXVID_DNNL is defined then. Anything the
// Winograd primitives do not cover (other dtypes, devices, channel counts) falls back to
// at::conv2d, so the operator is always safe to call.
#include <torch/torch.h>
#include <torch/library.h>

#include "autograd_util.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "onednn.h"
#include "winograd_f43.h"

namespace flexvid {

// fused_norm.cc: plain ↔ blocked layout changes in 16×16 register tiles (sp = H·W positions).
// out = r + plain(h) (r nullptr: plain(h));  out = blocked(x).
void UnblockAddRaw(const float* h, const float* r, float* out, int64_t n, int64_t c, int64_t sp);
void BlockRaw(const float* x, float* out, int64_t n, int64_t c, int64_t sp);

namespace {

at::Tensor Fallback(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b) {
  return at::conv2d(x, w, b, {1, 1}, {1, 1}, {1, 1}, 1);
}

#ifdef FLEXVID_DNNL
using dnnl::memory;
using Tag = memory::format_tag;

dnnl::engine& Engine() { return OnednnEngine(); }

// Output size of a 3×3 convolution with padding 1.
int64_t OutSize(int64_t in, int64_t stride) { return (in - 1) / stride + 1; }

// The primitives for one problem shape [N, IC, H, W] → [N, OC, Ho, Wo], created once.
struct Plan {
  dnnl::convolution_forward::primitive_desc fwd_pd;
  dnnl::convolution_backward_data::primitive_desc bwd_data_pd;
  dnnl::convolution_backward_weights::primitive_desc bwd_weights_pd;
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_data;
  dnnl::convolution_backward_weights bwd_weights;
  int64_t stride;
  bool direct;
};

struct ShapeKey {
  int64_t n, ic, oc, h, w;
  // Stride 2 (the U-Net's downsampling) and images under 8×8 take oneDNN's direct algorithm.
  int64_t stride = 1;
  bool direct = false;
  // oneDNN shares a primitive's work among the threads it is created for: a plan made at another
  // thread count runs (correctly but) slowly, e.g. one made at 1 thread and run at 2 (measured:
  // [10, 64, 32², 64 → 64] forward 2.1 instead of 1.0 ms).
  int64_t threads = at::get_num_threads();
  bool operator==(const ShapeKey& o) const {
    return n == o.n && ic == o.ic && oc == o.oc && h == o.h && w == o.w && stride == o.stride && direct == o.direct &&
           threads == o.threads;
  }
};
size_t HashInts(std::initializer_list<int64_t> vs) {
  size_t s = 0;
  for (int64_t v : vs) s = s * 1000003u + static_cast<size_t>(v);
  return s;
}
struct ShapeHash {
  size_t operator()(const ShapeKey& k) const {
    return HashInts({k.n, k.ic, k.oc, k.h, k.w, k.stride, k.direct ? 1 : 0, k.threads});
  }
};

std::mutex g_plans_mutex;
// nullptr marks a shape oneDNN has no kernel for (→ at::conv2d from then on).
std::unordered_map<ShapeKey, std::unique_ptr<Plan>, ShapeHash> g_plans;

const Plan* GetPlan(const ShapeKey& k) {
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  auto it = g_plans.find(k);
  if (it != g_plans.end()) return it->second.get();
  std::unique_ptr<Plan> plan;
  try {
    auto any = [](memory::dims d) { return memory::desc(d, memory::data_type::f32, Tag::any); };
    const int64_t ho = OutSize(k.h, k.stride), wo = OutSize(k.w, k.stride);
    memory::desc src = any({k.n, k.ic, k.h, k.w}), wei = any({k.oc, k.ic, 3, 3}), dst = any({k.n, k.oc, ho, wo});
    memory::desc bias({k.oc}, memory::data_type::f32, Tag::a);
    const memory::dims stride{k.stride, k.stride}, pad{1, 1};
    const auto alg = k.direct ? dnnl::algorithm::convolution_direct : dnnl::algorithm::convolution_winograd;
    dnnl::convolution_forward::primitive_desc fpd(
        {dnnl::prop_kind::forward_training, alg, src, wei, bias, dst, stride, pad, pad}, Engine());
    dnnl::convolution_backward_data::primitive_desc bdpd({alg, src, wei, dst, stride, pad, pad}, Engine(), fpd);
    dnnl::convolution_backward_weights::primitive_desc bwpd({alg, src, wei, bias, dst, stride, pad, pad}, Engine(), fpd);
    plan.reset(new Plan{fpd, bdpd, bwpd, dnnl::convolution_forward(fpd), dnnl::convolution_backward_data(bdpd),
                        dnnl::convolution_backward_weights(bwpd), k.stride, k.direct});
  } catch (const dnnl::error&) {
    plan.reset();
  }
  return (g_plans[k] = std::move(plan)).get();
}

// A float32 buffer for a oneDNN memory of descriptor `md`, owned by a torch tensor (so it goes
// through libtorch's allocator and is freed with the tensor).
at::Tensor Buffer(const memory::desc& md) {
  return at::empty({static_cast<int64_t>(md.get_size() / sizeof(float))}, at::dtype(at::kFloat));
}

memory Wrap(const memory::desc& md, const at::Tensor& t) { return memory(md, Engine(), t.data_ptr()); }

memory::desc Plain(memory::dims d, Tag tag) { return memory::desc(d, memory::data_type::f32, tag); }

// Copy `t`, laid out as `have`, into a new buffer of layout `want`; returns `t` itself if the layouts agree.
at::Tensor ToLayout(const at::Tensor& t, const memory::desc& have, const memory::desc& want, dnnl::stream& s) {
  if (have == want) return t;
  at::Tensor out = Buffer(want);
  auto src = Wrap(have, t), dst = Wrap(want, out);
  dnnl::reorder(src, dst).execute(s, src, dst);
  return out;
}

// The same for a tensor in a plain layout `tag` of its own shape.
at::Tensor ToLayout(const at::Tensor& t, Tag tag, const memory::desc& md, dnnl::stream& s) {
  memory::dims dims(t.sizes().begin(), t.sizes().end());
  return ToLayout(t, Plain(dims, tag), md, s);
}

// Copy a buffer of layout `md` into a new tensor of shape `shape` laid out as `want`.
at::Tensor FromLayout(const at::Tensor& buf, const memory::desc& md, c10::IntArrayRef shape, const memory::desc& want,
                      dnnl::stream& s) {
  at::Tensor out = at::empty(shape, at::dtype(at::kFloat));
  auto src = Wrap(md, buf), dst = Wrap(want, out);
  dnnl::reorder(src, dst).execute(s, src, dst);
  return out;
}

// How the caller holds an activation [n, c, h, w]: plain NCHW, or blocked [n, c/16, h, w, 16]
// (oneDNN's nChw16c, which the Winograd kernels read and write; see fused_norm.cc).
memory::desc Activation(int64_t n, int64_t c, int64_t h, int64_t w, bool blocked) {
  return Plain({n, c, h, w}, blocked ? Tag::nChw16c : Tag::nchw);
}
std::vector<int64_t> ActivationShape(int64_t n, int64_t c, int64_t h, int64_t w, bool blocked) {
  if (blocked) return {n, c / 16, h, w, 16};
  return {n, c, h, w};
}

// Run `prim` writing its `md`-laid-out destination straight into a new tensor of the caller's
// layout `want` when they agree, else through a buffer and a reorder.
template <typename Exec>
at::Tensor IntoLayout(const memory::desc& md, const memory::desc& want, c10::IntArrayRef shape, dnnl::stream& s, Exec exec) {
  if (md == want) {
    at::Tensor out = at::empty(shape, at::dtype(at::kFloat));
    exec(out);
    return out;
  }
  at::Tensor buf = Buffer(md);
  exec(buf);
  return FromLayout(buf, md, shape, want, s);
}

// Our own Winograd kernels (winograd_f43.cc) take the forward pass and both gradients where the
// image is made of whole 4×4 tiles and the channel pairs number more than 64 × 64 but their
// transformed weights U (36 · ic · oc floats) stay within 8 MB; oneDNN's take the rest, and
// everything with FLEXVID_OWN_WINOGRAD=0. Measured on a Zen 4 host, 2 threads, against oneDNN's:
// forward and backward 0.73–0.93× and 0.82–0.92× from 128 channel pairs up (8², 16², 32², 64²);
// ≈ 1.0–1.1× at 64 → 64 (where the transforms weigh as much as the products); 2–3× at 384 → 384
// and 512 → 512 (each chunk of tiles streams the 21–38 MB U from memory; all tiles' transforms
// first instead, then one product per ξ, came to 1.0–1.2×).
bool OwnWinograd(int64_t h, int64_t w, int64_t ic, int64_t oc) {
  // Read at every call (a few hundred nanoseconds) so that a benchmark can switch between the two.
  const char* v = std::getenv("FLEXVID_OWN_WINOGRAD");
  const int64_t u_bytes = 36 * ic * oc * static_cast<int64_t>(sizeof(float));
  return !(v && std::string(v) == "0") && h % 4 == 0 && w % 4 == 0 && ic * oc > 64 * 64 && u_bytes <= (int64_t{8} << 20);
}

// [n, c, h, w] ↔ [n, c/16, h, w, 16] by the fused_norm.cc register-tile kernels, for use inside
// autograd functions (not differentiable; PlainToBlocked / BlockedToPlain below are, for fallbacks).
at::Tensor ToBlocked(const at::Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor out = at::empty({n, c / 16, h, w, 16}, at::dtype(at::kFloat));
  BlockRaw(x.data_ptr<float>(), out.data_ptr<float>(), n, c, h * w);
  return out;
}
at::Tensor ToPlain(const at::Tensor& xb) {
  const int64_t n = xb.size(0), c = xb.size(1) * 16, h = xb.size(2), w = xb.size(3);
  at::Tensor out = at::empty({n, c, h, w}, at::dtype(at::kFloat));
  UnblockAddRaw(xb.data_ptr<float>(), nullptr, out.data_ptr<float>(), n, c, h * w);
  return out;
}

// out [n, cout/16, h, w, 16] = conv(xb [n, cin/16, h, w, 16]) + bias by our kernels, with w
// [oc, ic, 3, 3] as given (forward: cin = ic, cout = oc) or transposed and flipped (input_grad).
// Transformed filters kept for no-grad passes (sampling) of convolutions with few tiles, where
// transforming the weights costs more than the products (at 8×8, 10 frames: 40 tiles; measured:
// the one-video Balls sampling stage 0.96–0.97×; with every convolution cached it was 1.03×, a
// freshly transformed U being in cache and a kept one not). An entry keeps a copy of the weights
// it was made from and is used only while they are equal (memcmp: parameters are updated in place
// by kernels that do not count versions); up to 256 MB in all. FLEXVID_WINOGRAD_CACHE=0: off.
constexpr int64_t kFewTiles = 64;
struct FilterKey {
  const void* data;
  int64_t oc, ic;
  bool input_grad;
  bool operator==(const FilterKey& o) const {
    return data == o.data && oc == o.oc && ic == o.ic && input_grad == o.input_grad;
  }
};
struct FilterKeyHash {
  size_t operator()(const FilterKey& k) const {
    return HashInts({reinterpret_cast<int64_t>(k.data), k.oc, k.ic, k.input_grad ? 1 : 0});
  }
};
struct FilterEntry {
  at::Tensor weights, u;
};
std::mutex g_filters_mutex;
std::unordered_map<FilterKey, FilterEntry, FilterKeyHash> g_filters;
int64_t g_filter_bytes = 0;

at::Tensor TransformedFilters(const at::Tensor& w, bool input_grad, int64_t tiles) {
  const int64_t oc = w.size(0), ic = w.size(1);
  auto transform = [&] {
    at::Tensor u = at::empty({36 * ic * oc}, at::dtype(at::kFloat));
    WinogradF43Weights(w.data_ptr<float>(), oc, ic, input_grad, u.data_ptr<float>());
    return u;
  };
  const char* off = std::getenv("FLEXVID_WINOGRAD_CACHE");
  if (at::GradMode::is_enabled() || tiles > kFewTiles || (off && off[0] == '0')) return transform();
  const int64_t bytes = w.numel() * static_cast<int64_t>(sizeof(float));
  std::lock_guard<std::mutex> lock(g_filters_mutex);
  const FilterKey key{w.data_ptr(), oc, ic, input_grad};
  auto it = g_filters.find(key);
  if (it != g_filters.end()) {
    FilterEntry& e = it->second;
    if (std::memcmp(e.weights.data_ptr(), w.data_ptr(), bytes) != 0) {
      e.u = transform();  // a new tensor: a caller may still hold the old one
      // A byte copy, not copy_: the kept copy may be an inference tensor (made under inference
      // mode) and this call outside it, where ATen refuses in-place writes to inference tensors.
      // (Freed weights' addresses are reused, so a key can meet another model's weights.)
      std::memcpy(e.weights.data_ptr(), w.data_ptr(), bytes);
    }
    return e.u;
  }
  at::Tensor u = transform();
  if (g_filter_bytes + 5 * bytes <= (int64_t{256} << 20)) {  // the copy, and U (36/9 = 4× the weights)
    g_filters.emplace(key, FilterEntry{w.clone(), u});
    g_filter_bytes += 5 * bytes;
  }
  return u;
}

at::Tensor OwnWinogradBlocked(const at::Tensor& xb, const at::Tensor& w, const float* bias, bool input_grad) {
  const int64_t oc = w.size(0), ic = w.size(1), cin = input_grad ? oc : ic, cout = input_grad ? ic : oc;
  const int64_t n = xb.size(0), h = xb.size(2), wd = xb.size(3);
  const at::Tensor u = TransformedFilters(w, input_grad, n * (h / 4) * (wd / 4));
  at::Tensor out = at::empty({n, cout / 16, h, wd, 16}, at::dtype(at::kFloat));
  WinogradF43Forward(xb.data_ptr<float>(), u.data_ptr<float>(), bias, n, cin, cout, h, wd, out.data_ptr<float>());
  return out;
}

class Conv3x3Function : public torch::autograd::Function<Conv3x3Function> {
 public:
  // x [N, IC, H, W] (or blocked [N, IC/16, H, W, 16]); the output comes in the same layout family.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& b, const Plan* plan, bool blocked) {
    dnnl::stream s(Engine());
    const auto& pd = plan->fwd_pd;
    const int64_t n = x.size(0), ic = w.size(1), oc = w.size(0), h = x.size(2), wd = x.size(3);
    const int64_t ho = OutSize(h, plan->stride), wo = OutSize(wd, plan->stride);
    const bool own = plan->stride == 1 && !plan->direct && OwnWinograd(h, wd, ic, oc);
    at::Tensor xb, y;
    if (own) {
      xb = blocked ? x : ToBlocked(x);
      at::Tensor yb = OwnWinogradBlocked(xb, w, b.data_ptr<float>(), false);
      y = blocked ? yb : ToPlain(yb);
    } else {
      xb = ToLayout(x, Activation(n, ic, h, wd, blocked), pd.src_desc(), s);
      at::Tensor wb = ToLayout(w, Tag::oihw, pd.weights_desc(), s);
      y = IntoLayout(pd.dst_desc(), Activation(n, oc, ho, wo, blocked), ActivationShape(n, oc, ho, wo, blocked), s,
                     [&](const at::Tensor& dst) {
                       plan->fwd.execute(s, {{DNNL_ARG_SRC, Wrap(pd.src_desc(), xb)},
                                             {DNNL_ARG_WEIGHTS, Wrap(pd.weights_desc(), wb)},
                                             {DNNL_ARG_BIAS, Wrap(pd.bias_desc(), b)},
                                             {DNNL_ARG_DST, Wrap(pd.dst_desc(), dst)}});
                     });
      s.wait();
    }
    // Keep the source in the layout backward-weights reads, so backward does not reorder it again
    // (ours: the blocked layout).
    const bool same = own || plan->bwd_weights_pd.src_desc() == pd.src_desc();
    ctx->save_for_backward({same ? xb : x, w});
    ctx->saved_data["own"] = own;
    ctx->saved_data["src_reordered"] = same && !xb.is_same(x);
    ctx->saved_data["plan"] = reinterpret_cast<int64_t>(plan);
    ctx->saved_data["blocked"] = blocked;
    ctx->saved_data["n"] = n;
    ctx->saved_data["h"] = h;
    ctx->saved_data["w"] = wd;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    // The gradients below are computed outside autograd, so they cannot be differentiated again.
    RefuseDoubleBackward("flexvid::conv3x3 (oneDNN / Winograd convolution)", "setWinogradConv(false) or FLEXVID_WINOGRAD=0");
    const Plan* plan = reinterpret_cast<const Plan*>(ctx->saved_data["plan"].toInt());
    auto saved = ctx->get_saved_variables();
    const at::Tensor& xs = saved[0];
    const at::Tensor& w = saved[1];
    const int64_t n = ctx->saved_data["n"].toInt(), h = ctx->saved_data["h"].toInt(), wd = ctx->saved_data["w"].toInt();
    const bool blocked = ctx->saved_data["blocked"].toBool();
    const int64_t oc = w.size(0), ic = w.size(1);
    const int64_t ho = OutSize(h, plan->stride), wo = OutSize(wd, plan->stride);
    const memory::desc gy_have = Activation(n, oc, ho, wo, blocked), x_have = Activation(n, ic, h, wd, blocked);
    at::Tensor gy = grads[0].contiguous();
    dnnl::stream s(Engine());
    at::Tensor gx, gw, gb;
    // gy in some layout, reused by backward-weights when that is the layout it reads.
    at::Tensor gyb;
    memory::desc gyb_desc;
    const bool own = ctx->saved_data["own"].toBool();
    if (ctx->needs_input_grad(0)) {
      if (own) {
        gyb = blocked ? gy : ToBlocked(gy);
        gyb_desc = Activation(n, oc, h, wd, true);
        at::Tensor gxb = OwnWinogradBlocked(gyb, w, nullptr, true);
        gx = blocked ? gxb : ToPlain(gxb);
      } else {
        const auto& pd = plan->bwd_data_pd;
        gyb = ToLayout(gy, gy_have, pd.diff_dst_desc(), s);
        gyb_desc = pd.diff_dst_desc();
        at::Tensor wb = ToLayout(w, Tag::oihw, pd.weights_desc(), s);
        gx = IntoLayout(pd.diff_src_desc(), x_have, ActivationShape(n, ic, h, wd, blocked), s, [&](const at::Tensor& dst) {
          plan->bwd_data.execute(s, {{DNNL_ARG_DIFF_DST, Wrap(pd.diff_dst_desc(), gyb)},
                                     {DNNL_ARG_WEIGHTS, Wrap(pd.weights_desc(), wb)},
                                     {DNNL_ARG_DIFF_SRC, Wrap(pd.diff_src_desc(), dst)}});
        });
      }
    }
    if (own && (ctx->needs_input_grad(1) || ctx->needs_input_grad(2))) {
      if (!gyb.defined()) gyb = blocked ? gy : ToBlocked(gy);
      const at::Tensor& xb = xs;  // saved in the blocked layout
      gw = at::empty({oc, ic, 3, 3}, at::dtype(at::kFloat));
      gb = at::empty({oc}, at::dtype(at::kFloat));
      WinogradF43WeightGrad(xb.data_ptr<float>(), gyb.data_ptr<float>(), n, ic, oc, h, wd, gw.data_ptr<float>(),
                            gb.data_ptr<float>());
    } else if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      const auto& pd = plan->bwd_weights_pd;
      if (!gyb.defined() || gyb_desc != pd.diff_dst_desc()) gyb = ToLayout(gy, gy_have, pd.diff_dst_desc(), s);
      at::Tensor xb = ctx->saved_data["src_reordered"].toBool() ? xs : ToLayout(xs, x_have, pd.src_desc(), s);
      at::Tensor gwb = Buffer(pd.diff_weights_desc());
      gb = at::empty({oc}, at::dtype(at::kFloat));
      plan->bwd_weights.execute(s, {{DNNL_ARG_DIFF_DST, Wrap(pd.diff_dst_desc(), gyb)},
                                    {DNNL_ARG_SRC, Wrap(pd.src_desc(), xb)},
                                    {DNNL_ARG_DIFF_WEIGHTS, Wrap(pd.diff_weights_desc(), gwb)},
                                    {DNNL_ARG_DIFF_BIAS, Wrap(pd.diff_bias_desc(), gb)}});
      gw = FromLayout(gwb, pd.diff_weights_desc(), {oc, ic, 3, 3}, Plain({oc, ic, 3, 3}, Tag::oihw), s);
    }
    s.wait();
    return {gx, gw, gb, at::Tensor(), at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// flexvid::bmm — batched matrix product through oneDNN's matmul (brgemm kernels), reading both
// operands in place, transposed or not (no reorders), where libtorch's CPU bmm without MKL loops
// over the batch with one BLAS call each.

struct MatmulKey {
  int64_t g, m, k, n;
  bool ta, tb;
  int64_t threads = at::get_num_threads();  // as ShapeKey
  bool operator==(const MatmulKey& o) const {
    return g == o.g && m == o.m && k == o.k && n == o.n && ta == o.ta && tb == o.tb && threads == o.threads;
  }
};
struct MatmulHash {
  size_t operator()(const MatmulKey& k) const { return HashInts({k.g, k.m, k.k, k.n, k.ta, k.tb, k.threads}); }
};
std::unordered_map<MatmulKey, std::unique_ptr<dnnl::matmul>, MatmulHash> g_matmuls;

// Is the [G, R, C] tensor stored as contiguous [G, C, R] (a transposed view)?
bool IsTransposedContiguous(const at::Tensor& t) {
  return t.stride(0) == t.size(1) * t.size(2) && t.stride(1) == 1 && t.stride(2) == t.size(1);
}

memory::desc MatrixDesc(int64_t g, int64_t r, int64_t c, bool transposed) {
  return memory::desc({g, r, c}, memory::data_type::f32,
                      transposed ? memory::dims{r * c, 1, r} : memory::dims{r * c, c, 1});
}

// out = a @ b for a [G, M, K], b [G, K, N] (float32 CPU, each contiguous or a transposed view).
at::Tensor MatmulRaw(const at::Tensor& a0, const at::Tensor& b0) {
  const bool ta = IsTransposedContiguous(a0) && !a0.is_contiguous();
  const bool tb = IsTransposedContiguous(b0) && !b0.is_contiguous();
  at::Tensor a = ta ? a0 : a0.contiguous(), b = tb ? b0 : b0.contiguous();
  const int64_t g = a.size(0), m = a.size(1), k = a.size(2), n = b.size(2);
  MatmulKey key{g, m, k, n, ta, tb};
  dnnl::matmul* prim;
  {
    std::lock_guard<std::mutex> lock(g_plans_mutex);
    auto& slot = g_matmuls[key];
    if (!slot) {
      dnnl::matmul::primitive_desc pd(
          dnnl::matmul::desc(MatrixDesc(g, m, k, ta), MatrixDesc(g, k, n, tb), MatrixDesc(g, m, n, false)), Engine());
      slot.reset(new dnnl::matmul(pd));
    }
    prim = slot.get();
  }
  at::Tensor out = at::empty({g, m, n}, at::dtype(at::kFloat));
  dnnl::stream s(Engine());
  prim->execute(s, {{DNNL_ARG_SRC, Wrap(MatrixDesc(g, m, k, ta), a)},
                    {DNNL_ARG_WEIGHTS, Wrap(MatrixDesc(g, k, n, tb), b)},
                    {DNNL_ARG_DST, Wrap(MatrixDesc(g, m, n, false), out)}});
  s.wait();
  return out;
}

class MatmulFunction : public torch::autograd::Function<MatmulFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return MatmulRaw(a, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "flexvid::bmm is not twice differentiable; use bmm for higher-order gradients");
    auto saved = ctx->get_saved_variables();
    at::Tensor gc = grads[0].contiguous();
    at::Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = MatmulRaw(gc, saved[1].transpose(1, 2));  // dA = dC Bᵀ
    if (ctx->needs_input_grad(1)) gb = MatmulRaw(saved[0].transpose(1, 2), gc);  // dB = Aᵀ dC
    return {ga, gb};
  }
};
#endif  // FLEXVID_DNNL

// a [G, M, K], b [G, K, N] → [G, M, N]; oneDNN matmul for float32 CPU, else at::bmm.
at::Tensor Bmm(const at::Tensor& a, const at::Tensor& b) {
#ifdef FLEXVID_DNNL
  if (a.dim() == 3 && b.dim() == 3 && a.device().is_cpu() && b.device().is_cpu() &&
      a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat && a.size(0) == b.size(0) &&
      a.size(2) == b.size(1) && a.numel() > 0 && b.numel() > 0) {
    return MatmulFunction::apply(a, b);
  }
#endif
  return at::bmm(a, b);
}

// Blocked [N, C/16, H, W, 16] ↔ plain [N, C, H, W] with libtorch operators (differentiable), for
// the shapes the Winograd kernels do not cover.
at::Tensor BlockedToPlain(const at::Tensor& x) {
  return x.permute({0, 1, 4, 2, 3}).reshape({x.size(0), x.size(1) * 16, x.size(2), x.size(3)});
}
at::Tensor PlainToBlocked(const at::Tensor& x) {
  return x.view({x.size(0), x.size(1) / 16, 16, x.size(2), x.size(3)}).permute({0, 1, 3, 4, 2}).contiguous();
}

// x [N, IC, H, W] (or blocked [N, IC/16, H, W, 16]), w [OC, IC, 3, 3], b [OC] or none → [N, OC, H, W]
// (or blocked [N, OC/16, H, W, 16]); stride 1, padding 1.
at::Tensor Conv3x3Impl(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b, bool blocked) {
  const char* op = blocked ? "flexvid::conv3x3_blocked" : "flexvid::conv3x3";
  const int64_t ic = blocked ? x.size(1) * 16 : x.size(1);
  TORCH_CHECK(x.dim() == (blocked ? 5 : 4) && (!blocked || x.size(4) == 16) && w.dim() == 4 && w.size(2) == 3 &&
                  w.size(3) == 3 && w.size(1) == ic && (!blocked || w.size(0) % 16 == 0),
              op, ": expected x ", blocked ? "[N, C/16, H, W, 16]" : "[N, C, H, W]", " and weight [O, C, 3, 3]",
              blocked ? " with O a multiple of 16" : "", ", got ", x.sizes(), " and ", w.sizes());
#ifdef FLEXVID_DNNL
  const bool eligible = x.device().is_cpu() && w.device().is_cpu() && x.scalar_type() == at::kFloat &&
                        w.scalar_type() == at::kFloat && (!b || b->scalar_type() == at::kFloat) &&
                        !x.is_mkldnn() && x.size(0) > 0 && ic % 16 == 0 && w.size(0) % 16 == 0;
  if (eligible) {
    const Plan* plan = GetPlan({x.size(0), ic, w.size(0), x.size(2), x.size(3)});
    if (plan) {
      at::Tensor bias = b ? b->contiguous() : at::zeros({w.size(0)}, at::dtype(at::kFloat));
      return Conv3x3Function::apply(x.contiguous(), w.contiguous(), bias, plan, blocked);
    }
  }
#endif
  if (blocked) return PlainToBlocked(Fallback(BlockedToPlain(x), w, b));
  return Fallback(x, w, b);
}

at::Tensor Conv3x3(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b) {
  return Conv3x3Impl(x, w, b, false);
}
at::Tensor Conv3x3Blocked(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b) {
  return Conv3x3Impl(x, w, b, true);
}

// flexvid::conv3x3_direct: x [N, IC, H, W], w [OC, IC, 3, 3], b [OC] or none → [N, OC, Ho, Wo], padding
// 1, stride 1 or 2, by oneDNN's direct kernels — the convolutions Winograd does not take (the
// U-Net's downsampling, its 4×4 level). libtorch runs the same kernels, but around them its
// backward took 1.5–2.5× the primitives' time on a Zen 4 host (e.g. `[20, 64, 32²]` stride 2:
// 8.9 ms against 3.5 ms).
at::Tensor Conv3x3Direct(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b, int64_t stride) {
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && w.size(2) == 3 && w.size(3) == 3 && w.size(1) == x.size(1),
              "flexvid::conv3x3_direct: expected x [N, C, H, W] and weight [O, C, 3, 3], got ", x.sizes(), " and ",
              w.sizes());
  TORCH_CHECK(stride == 1 || stride == 2, "flexvid::conv3x3_direct: stride 1 or 2, got ", stride);
#ifdef FLEXVID_DNNL
  const bool eligible = x.device().is_cpu() && w.device().is_cpu() && x.scalar_type() == at::kFloat &&
                        w.scalar_type() == at::kFloat && (!b || b->scalar_type() == at::kFloat) &&
                        !x.is_mkldnn() && x.size(0) > 0 && x.size(1) % 16 == 0 && w.size(0) % 16 == 0;
  if (eligible) {
    ShapeKey key{x.size(0), x.size(1), w.size(0), x.size(2), x.size(3)};
    key.stride = stride;
    key.direct = true;
    const Plan* plan = GetPlan(key);
    if (plan) {
      at::Tensor bias = b ? b->contiguous() : at::zeros({w.size(0)}, at::dtype(at::kFloat));
      return Conv3x3Function::apply(x.contiguous(), w.contiguous(), bias, plan, false);
    }
  }
#endif
  return at::conv2d(x, w, b, {stride, stride}, {1, 1}, {1, 1}, 1);
}

// ---------------------------------------------------------------------------------------------
// flexvid::unblock_add — r + h for h blocked [N, C/16, H, W, 16] and r plain [N, C, H, W], into a
// plain tensor: the residual sum that ends a ResBlock whose convolutions stay blocked, with the
// layout change inside the addition's own pass (16×16 tiles transposed in registers).

class UnblockAddFunction : public torch::autograd::Function<UnblockAddFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& h, const at::Tensor& r) {
    at::Tensor out = at::empty_like(r, at::MemoryFormat::Contiguous);
    UnblockAddRaw(h.data_ptr<float>(), r.data_ptr<float>(), out.data_ptr<float>(), r.size(0), r.size(1),
                  r.size(2) * r.size(3));
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    at::Tensor g = grads[0].contiguous();
    return {ctx->needs_input_grad(0) ? ToBlocked(g) : at::Tensor(), ctx->needs_input_grad(1) ? g : at::Tensor()};
  }
};

at::Tensor UnblockAdd(const at::Tensor& h, const at::Tensor& r) {
  TORCH_CHECK(h.dim() == 5 && h.size(4) == 16 && r.dim() == 4 && r.size(0) == h.size(0) && r.size(1) == h.size(1) * 16 &&
                  r.size(2) == h.size(2) && r.size(3) == h.size(3),
              "flexvid::unblock_add: expected h [N, C/16, H, W, 16] and r [N, C, H, W] of the same N, C, H, W, got ",
              h.sizes(), " and ", r.sizes());
  TORCH_CHECK(h.scalar_type() == at::kFloat && r.scalar_type() == at::kFloat && h.device().is_cpu() && r.device().is_cpu(),
              "flexvid::unblock_add: float32 CPU tensors only");
  return UnblockAddFunction::apply(h.contiguous(), r.contiguous());
}

}  // namespace

// Whether this build has the oneDNN kernels (else flexvid::conv3x3 is at::conv2d and
// flexvid::bmm is at::bmm).
bool HasOnednnKernels() {
#ifdef FLEXVID_DNNL
  return true;
#else
  return false;
#endif
}

TORCH_LIBRARY(flexvid, m) {
  m.def("conv3x3(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  m.def("conv3x3_blocked(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
  m.def("conv3x3_direct(Tensor x, Tensor weight, Tensor? bias, int stride) -> Tensor");
  m.def("unblock_add(Tensor h, Tensor r) -> Tensor");
  m.def("bmm(Tensor a, Tensor b) -> Tensor");
}
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) {
  m.impl("conv3x3", &Conv3x3);
  m.impl("conv3x3_blocked", &Conv3x3Blocked);
  m.impl("conv3x3_direct", &Conv3x3Direct);
  m.impl("unblock_add", &UnblockAdd);
  m.impl("bmm", &Bmm);
}

}  // namespace flexvid
