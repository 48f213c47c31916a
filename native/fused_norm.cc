// flexvid::group_norm_silu — GroupNorm, optional per-sample scale-shift and optional SiLU in one
// pass over the activations (and two passes in backward), for float32 and float64 CPU tensors.
//
// Why: a U-Net ResBlock runs GroupNorm → ·(1+scale) + shift → SiLU on every feature map, which as
// separate libtorch operators is four full read-write passes forward and about eight backward, each
// writing a fresh tensor that autograd keeps. Fused, forward reads the input twice (statistics, then
// output) and writes once; backward reads input and incoming gradient twice (per-channel sums, then
// the input gradient) and writes once, recomputing the SiLU instead of storing it.
//
//   u = (x − μ_ng)·rstd_ng·γ_c + β_c            GroupNorm, statistics per (sample n, group g)
//   z = u·(1 + s_nc) + h_nc                      scale-shift (s, h per sample and channel; optional)
//   y = z·σ(z)  or  y = z                        SiLU (optional)
//
// Anything else (other dtypes or devices) takes the composite libtorch path in TypeScript, so this
// file needs nothing but libtorch and is built in every configuration.
#include <torch/torch.h>
#include <torch/library.h>

#include <ATen/Parallel.h>

#include "autograd_util.h"
#include "simd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

namespace flexvid {
namespace {

template <typename T>
FLEXVID_INLINE T Sigmoid(T z) {
  return T(1) / (T(1) + ExpApprox(-z));
}

// Per-(n, c) affine coefficients: z = a·x + b.
template <typename T>
struct Coeffs {
  T a, b, k;  // k = γ_c·(1 + s_nc), the factor from x̂ to z
};

template <typename T>
inline Coeffs<T> ChannelCoeffs(T mean, T rstd, T gamma, T beta, T scale1, T shift) {
  const T k = gamma * scale1;
  return {rstd * k, (beta - mean * rstd * gamma) * scale1 + shift, k};
}

// y[i] = act(a·x[i] + b), i < n.
template <typename T>
FLEXVID_INLINE void ForwardRow(const T* x, T* y, int64_t n, T a, T b, bool silu) {
  if (silu) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const T z = a * x[i] + b;
      y[i] = z * Sigmoid(z);
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) y[i] = a * x[i] + b;
  }
}

// dz[i] = act'(z)·gy[i] with z = a·x[i] + b, kept in `dz` (a cache-sized scratch row) for the
// second pass; returns (Σ dz, Σ dz·x).
template <typename T>
FLEXVID_INLINE void ReduceRow(const T* x, const T* gy, T* dz, int64_t n, T a, T b, bool silu, double* s1, double* s2) {
  T acc1 = 0, acc2 = 0;
  if (silu) {
#pragma omp simd reduction(+ : acc1, acc2)
    for (int64_t i = 0; i < n; ++i) {
      const T z = a * x[i] + b;
      const T sg = Sigmoid(z);
      const T d = gy[i] * sg * (T(1) + z * (T(1) - sg));
      dz[i] = d;
      acc1 += d;
      acc2 += d * x[i];
    }
  } else {
#pragma omp simd reduction(+ : acc1, acc2)
    for (int64_t i = 0; i < n; ++i) {
      dz[i] = gy[i];
      acc1 += gy[i];
      acc2 += gy[i] * x[i];
    }
  }
  *s1 = acc1;
  *s2 = acc2;
}

// gx[i] = p·dz[i] + q·x[i] + r.
template <typename T>
FLEXVID_INLINE void InputGradRow(const T* x, const T* dz, T* gx, int64_t n, T p, T q, T r) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) gx[i] = p * dz[i] + q * x[i] + r;
}

// The float rows are compiled for AVX2 and AVX-512 as well as the baseline (simd.h): the
// SiLU's exp makes them compute-bound at SSE2 width.
FLEXVID_CLONES void Row(const float* x, float* y, int64_t n, float a, float b, bool silu) {
  ForwardRow<float>(x, y, n, a, b, silu);
}
FLEXVID_CLONES void Row(const float* x, const float* gy, float* dz, int64_t n, float a, float b, bool silu,
                        double* s1, double* s2) {
  ReduceRow<float>(x, gy, dz, n, a, b, silu, s1, s2);
}
FLEXVID_CLONES void Row(const float* x, const float* dz, float* gx, int64_t n, float p, float q, float r) {
  InputGradRow<float>(x, dz, gx, n, p, q, r);
}
void Row(const double* x, double* y, int64_t n, double a, double b, bool silu) { ForwardRow<double>(x, y, n, a, b, silu); }
void Row(const double* x, const double* gy, double* dz, int64_t n, double a, double b, bool silu, double* s1,
         double* s2) {
  ReduceRow<double>(x, gy, dz, n, a, b, silu, s1, s2);
}
void Row(const double* x, const double* dz, double* gx, int64_t n, double p, double q, double r) {
  InputGradRow<double>(x, dz, gx, n, p, q, r);
}

// Shapes: x [N, C, S] (S = product of trailing dims), gamma/beta [C], scale/shift [N, C] or empty.
struct Dims {
  int64_t n, c, s, groups, cg;
};

template <typename T>
void Forward(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta, const at::Tensor& scale,
             const at::Tensor& shift, const Dims& d, double eps, bool silu, at::Tensor& y, at::Tensor& mean,
             at::Tensor& rstd) {
  const T* xp = x.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  const T* gp = gamma.data_ptr<T>();
  const T* bp = beta.data_ptr<T>();
  const T* sp = scale.numel() > 0 ? scale.data_ptr<T>() : nullptr;
  const T* hp = shift.numel() > 0 ? shift.data_ptr<T>() : nullptr;
  T* mp = mean.data_ptr<T>();
  T* rp = rstd.data_ptr<T>();
  const int64_t m = d.cg * d.s;  // elements per (sample, group), contiguous
  at::parallel_for(0, d.n * d.groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ng = begin; ng < end; ++ng) {
      const T* xg = xp + ng * m;
      // Two passes over the group (it is in cache after the first): mean, then Σ(x − μ)².
      double sum = 0;
      {
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < m; ++i) acc += xg[i];
        sum = acc;
      }
      const T mu = static_cast<T>(sum / m);
      T ss = 0;
#pragma omp simd reduction(+ : ss)
      for (int64_t i = 0; i < m; ++i) ss += (xg[i] - mu) * (xg[i] - mu);
      const T rs = static_cast<T>(1.0 / std::sqrt(static_cast<double>(ss) / m + eps));
      mp[ng] = mu;
      rp[ng] = rs;
      const int64_t n = ng / d.groups, g = ng % d.groups;
      for (int64_t cc = 0; cc < d.cg; ++cc) {
        const int64_t c = g * d.cg + cc, nc = n * d.c + c;
        const auto k = ChannelCoeffs<T>(mu, rs, gp[c], bp[c], sp ? T(1) + sp[nc] : T(1), hp ? hp[nc] : T(0));
        Row(xg + cc * d.s, yp + ng * m + cc * d.s, d.s, k.a, k.b, silu);
      }
    }
  });
}

template <typename T>
void Backward(const at::Tensor& gy, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
              const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& rstd,
              const Dims& d, bool silu, at::Tensor& gx, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat) {
  const T* xp = x.data_ptr<T>();
  const T* gyp = gy.data_ptr<T>();
  T* gxp = gx.defined() ? gx.data_ptr<T>() : nullptr;
  const T* gp = gamma.data_ptr<T>();
  const T* bp = beta.data_ptr<T>();
  const T* sp = scale.numel() > 0 ? scale.data_ptr<T>() : nullptr;
  const T* hp = shift.numel() > 0 ? shift.data_ptr<T>() : nullptr;
  const T* mp = mean.data_ptr<T>();
  const T* rp = rstd.data_ptr<T>();
  double* s1p = sum_dz.data_ptr<double>();
  double* s2p = sum_dz_xhat.data_ptr<double>();
  const int64_t m = d.cg * d.s;
  at::parallel_for(0, d.n * d.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> dz(m);  // this group's dz, computed once (it needs the SiLU's exp) and read twice
    for (int64_t ng = begin; ng < end; ++ng) {
      const int64_t n = ng / d.groups, g = ng % d.groups;
      const T mu = mp[ng], rs = rp[ng];
      // Pass 1: per channel Σ dz and Σ dz·x̂, and the group terms of GroupNorm's backward.
      double a_sum = 0, b_sum = 0;  // Σ_c k·Σdz, Σ_c k·Σdz·x̂
      for (int64_t cc = 0; cc < d.cg; ++cc) {
        const int64_t c = g * d.cg + cc, nc = n * d.c + c;
        const auto k = ChannelCoeffs<T>(mu, rs, gp[c], bp[c], sp ? T(1) + sp[nc] : T(1), hp ? hp[nc] : T(0));
        double s1, s2;
        Row(xp + ng * m + cc * d.s, gyp + ng * m + cc * d.s, dz.data() + cc * d.s, d.s, k.a, k.b, silu, &s1, &s2);
        const double dzxhat = rs * (s2 - mu * s1);  // Σ dz·(x − μ)·rstd
        s1p[nc] = s1;
        s2p[nc] = dzxhat;
        a_sum += k.k * s1;
        b_sum += k.k * dzxhat;
      }
      if (!gxp) continue;
      // Pass 2: gx = rstd·(k·dz − A − x̂·B) with A, B the group means of k·dz and k·dz·x̂.
      const double A = a_sum / m, B = b_sum / m;
      const T q = static_cast<T>(-static_cast<double>(rs) * rs * B);
      const T r = static_cast<T>(-static_cast<double>(rs) * A + static_cast<double>(mu) * rs * rs * B);
      for (int64_t cc = 0; cc < d.cg; ++cc) {
        const int64_t c = g * d.cg + cc, nc = n * d.c + c;
        const T kk = gp[c] * (sp ? T(1) + sp[nc] : T(1));
        Row(xp + ng * m + cc * d.s, dz.data() + cc * d.s, gxp + ng * m + cc * d.s, d.s, rs * kk, q, r);
      }
    }
  });
}

Dims GetDims(const at::Tensor& x, int64_t groups) {
  const int64_t n = x.size(0), c = x.size(1);
  return {n, c, n * c == 0 ? 0 : x.numel() / (n * c), groups, c / groups};
}

class GroupNormSiluFunction : public torch::autograd::Function<GroupNormSiluFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gamma,
                            const at::Tensor& beta, const at::Tensor& scale, const at::Tensor& shift, int64_t groups,
                            double eps, bool silu) {
    const Dims d = GetDims(x, groups);
    at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
    at::Tensor mean = at::empty({d.n, groups}, x.options()), rstd = at::empty({d.n, groups}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu", [&] {
      Forward<scalar_t>(x, gamma, beta, scale, shift, d, eps, silu, y, mean, rstd);
    });
    ctx->save_for_backward({x, gamma, beta, scale, shift, mean, rstd});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["silu"] = silu;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    // The gradients below are computed outside autograd, so they cannot be differentiated again.
    RefuseDoubleBackward("flexvid::group_norm_silu (fused GroupNorm)", "setFusedGroupNorm(false) or FLEXVID_FUSED_NORM=0");
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &gamma = saved[1], &beta = saved[2], &scale = saved[3], &shift = saved[4];
    const at::Tensor &mean = saved[5], &rstd = saved[6];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const bool silu = ctx->saved_data["silu"].toBool();
    const Dims d = GetDims(x, groups);
    at::Tensor gy = grads[0].contiguous();
    at::Tensor gx = ctx->needs_input_grad(0) ? at::empty_like(x, at::MemoryFormat::Contiguous) : at::Tensor();
    auto f64 = x.options().dtype(at::kDouble);
    at::Tensor sum_dz = at::empty({d.n, d.c}, f64), sum_dz_xhat = at::empty({d.n, d.c}, f64);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu_backward", [&] {
      Backward<scalar_t>(gy, x, gamma, beta, scale, shift, mean, rstd, d, silu, gx, sum_dz, sum_dz_xhat);
    });
    // z = u·(1+s) + h with u = x̂·γ + β: ∂/∂s = Σ dz·u, ∂/∂h = Σ dz, ∂/∂γ = Σ_n (1+s)·Σ dz·x̂, ∂/∂β = Σ_n (1+s)·Σ dz.
    const bool has_scale = scale.numel() > 0, has_shift = shift.numel() > 0;
    at::Tensor scale1 = has_scale ? scale.to(at::kDouble).add(1) : at::ones({1, d.c}, f64);
    at::Tensor g_gamma = (scale1 * sum_dz_xhat).sum(0).to(x.scalar_type());
    at::Tensor g_beta = (scale1 * sum_dz).sum(0).to(x.scalar_type());
    at::Tensor g_scale, g_shift;
    if (has_scale) {
      g_scale = (sum_dz_xhat * gamma.to(at::kDouble) + sum_dz * beta.to(at::kDouble)).to(x.scalar_type());
    }
    if (has_shift) g_shift = sum_dz.to(x.scalar_type());
    return {gx, g_gamma, g_beta, g_scale, g_shift, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// x [N, C, *], weight/bias [C], scale/shift [N, C] (or [N, C, 1, …]) or none → same shape as x.
at::Tensor GroupNormSilu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift, int64_t groups,
                         double eps, bool silu) {
  TORCH_CHECK(x.dim() >= 2, "flexvid::group_norm_silu: expected x [N, C, ...], got ", x.sizes());
  const int64_t n = x.size(0), c = x.size(1);
  TORCH_CHECK(groups > 0 && c % groups == 0, "flexvid::group_norm_silu: ", c, " channels not divisible into ", groups,
              " groups");
  TORCH_CHECK(x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              "flexvid::group_norm_silu: float32/float64 CPU tensors only, got ", x.scalar_type(), " on ", x.device());
  auto same = [&](const at::Tensor& t, const char* what) {
    TORCH_CHECK(t.scalar_type() == x.scalar_type() && t.device() == x.device(), "flexvid::group_norm_silu: ", what,
                " must be ", x.scalar_type(), " on ", x.device());
  };
  TORCH_CHECK(weight.numel() == c && bias.numel() == c, "flexvid::group_norm_silu: weight and bias need ", c,
              " elements");
  same(weight, "weight");
  same(bias, "bias");
  // An absent scale or shift travels as an empty tensor (autograd functions take no undefined inputs).
  auto per_sample = [&](const c10::optional<at::Tensor>& t, const char* what) -> at::Tensor {
    if (!t || !t->defined()) return at::empty({0}, x.options());
    TORCH_CHECK(t->numel() == n * c, "flexvid::group_norm_silu: ", what, " needs [", n, ", ", c, "], got ", t->sizes());
    same(*t, what);
    return t->reshape({n, c}).contiguous();
  };
  return GroupNormSiluFunction::apply(x.contiguous(), weight.contiguous(), bias.contiguous(), per_sample(scale, "scale"),
                                      per_sample(shift, "shift"), groups, eps, silu);
}

// ----- GroupNorm over frames: flexvid::group_norm_frames -------------------------------------------
// x [B, T, C, P] (video, frame, channel, pixel) normalised per (video, group, pixel) over the T frames
// and the group's channels — the temporal attention's GroupNorm (rows of frames at each pixel),
// computed in the features' own layout instead of on a [B·P, C, T] permuted copy. Work items are
// (video, group, tile of 16 pixels); every loop runs over the tile's contiguous pixels.

constexpr int64_t kTile = 16;

struct FrameDims {
  int64_t b, t, c, p, groups, cg;
  int64_t At(int64_t bb, int64_t tt, int64_t cc) const { return ((bb * t + tt) * c + cc) * p; }
  int64_t Tiles() const { return (p + kTile - 1) / kTile; }
};

template <typename T>
void FramesForward(const T* x, const T* gamma, const T* beta, const FrameDims& s, double eps, T* y, T* mean, T* rstd) {
  const int64_t items = s.b * s.groups * s.Tiles();
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t tile = idx % s.Tiles(), g = (idx / s.Tiles()) % s.groups, bb = idx / (s.Tiles() * s.groups);
      const int64_t p0 = tile * kTile, w = std::min(kTile, s.p - p0);
      const double m = static_cast<double>(s.t * s.cg);
      T mu[kTile] = {}, ss[kTile] = {};
      for (int64_t tt = 0; tt < s.t; ++tt)
        for (int64_t c = g * s.cg; c < (g + 1) * s.cg; ++c) {
          const T* xr = x + s.At(bb, tt, c) + p0;
#pragma omp simd
          for (int64_t i = 0; i < w; ++i) mu[i] += xr[i];
        }
      for (int64_t i = 0; i < w; ++i) mu[i] = static_cast<T>(mu[i] / m);
      for (int64_t tt = 0; tt < s.t; ++tt)
        for (int64_t c = g * s.cg; c < (g + 1) * s.cg; ++c) {
          const T* xr = x + s.At(bb, tt, c) + p0;
#pragma omp simd
          for (int64_t i = 0; i < w; ++i) ss[i] += (xr[i] - mu[i]) * (xr[i] - mu[i]);
        }
      T rs[kTile];
      for (int64_t i = 0; i < w; ++i) rs[i] = static_cast<T>(1.0 / std::sqrt(ss[i] / m + eps));
      T* mo = mean + (bb * s.groups + g) * s.p + p0;
      T* ro = rstd + (bb * s.groups + g) * s.p + p0;
      for (int64_t i = 0; i < w; ++i) mo[i] = mu[i], ro[i] = rs[i];
      for (int64_t tt = 0; tt < s.t; ++tt)
        for (int64_t c = g * s.cg; c < (g + 1) * s.cg; ++c) {
          const T* xr = x + s.At(bb, tt, c) + p0;
          T* yr = y + s.At(bb, tt, c) + p0;
          const T ga = gamma[c], be = beta[c];
#pragma omp simd
          for (int64_t i = 0; i < w; ++i) yr[i] = (xr[i] - mu[i]) * rs[i] * ga + be;
        }
    }
  });
}

template <typename T>
void FramesBackward(const T* gy, const T* x, const T* gamma, const T* mean, const T* rstd, const FrameDims& s, T* gx,
                    double* ggamma, double* gbeta) {
  const int64_t items = s.b * s.groups * s.Tiles();
  std::mutex merge;
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> lg(s.c, 0.0), lb(s.c, 0.0);  // this thread's Σ gy·x̂ and Σ gy per channel
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t tile = idx % s.Tiles(), g = (idx / s.Tiles()) % s.groups, bb = idx / (s.Tiles() * s.groups);
      const int64_t p0 = tile * kTile, w = std::min(kTile, s.p - p0);
      const T* mu = mean + (bb * s.groups + g) * s.p + p0;
      const T* rs = rstd + (bb * s.groups + g) * s.p + p0;
      T a[kTile] = {}, b[kTile] = {};  // Σ γ·gy and Σ γ·gy·x̂ over the group, per pixel
      for (int64_t tt = 0; tt < s.t; ++tt)
        for (int64_t c = g * s.cg; c < (g + 1) * s.cg; ++c) {
          const T* xr = x + s.At(bb, tt, c) + p0;
          const T* gr = gy + s.At(bb, tt, c) + p0;
          const T ga = gamma[c];
          T sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
          for (int64_t i = 0; i < w; ++i) {
            const T xh = (xr[i] - mu[i]) * rs[i];
            a[i] += ga * gr[i];
            b[i] += ga * gr[i] * xh;
            sg += gr[i];
            sgx += gr[i] * xh;
          }
          lb[c] += sg;
          lg[c] += sgx;
        }
      if (!gx) continue;
      const T inv_m = static_cast<T>(1.0 / static_cast<double>(s.t * s.cg));
      for (int64_t tt = 0; tt < s.t; ++tt)
        for (int64_t c = g * s.cg; c < (g + 1) * s.cg; ++c) {
          const T* xr = x + s.At(bb, tt, c) + p0;
          const T* gr = gy + s.At(bb, tt, c) + p0;
          T* out = gx + s.At(bb, tt, c) + p0;
          const T ga = gamma[c];
#pragma omp simd
          for (int64_t i = 0; i < w; ++i) {
            const T xh = (xr[i] - mu[i]) * rs[i];
            out[i] = rs[i] * (ga * gr[i] - a[i] * inv_m - xh * b[i] * inv_m);
          }
        }
    }
    std::lock_guard<std::mutex> lock(merge);
    for (int64_t c = 0; c < s.c; ++c) ggamma[c] += lg[c], gbeta[c] += lb[c];
  });
}

FrameDims GetFrameDims(const at::Tensor& x, int64_t groups) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), groups, x.size(2) / groups};
}

class GroupNormFramesFunction : public torch::autograd::Function<GroupNormFramesFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& gamma,
                            const at::Tensor& beta, int64_t groups, double eps) {
    const FrameDims s = GetFrameDims(x, groups);
    at::Tensor y = at::empty_like(x, at::MemoryFormat::Contiguous);
    at::Tensor mean = at::empty({s.b, groups, s.p}, x.options()), rstd = at::empty({s.b, groups, s.p}, x.options());
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_frames", [&] {
      FramesForward<scalar_t>(x.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(), beta.data_ptr<scalar_t>(), s, eps,
                              y.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>());
    });
    ctx->save_for_backward({x, gamma, mean, rstd});
    ctx->saved_data["groups"] = groups;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    RefuseDoubleBackward("flexvid::group_norm_frames (fused GroupNorm)", "setFusedGroupNorm(false) or FLEXVID_FUSED_NORM=0");
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &gamma = saved[1], &mean = saved[2], &rstd = saved[3];
    const FrameDims s = GetFrameDims(x, ctx->saved_data["groups"].toInt());
    at::Tensor gy = grads[0].contiguous();
    at::Tensor gx = ctx->needs_input_grad(0) ? at::empty_like(x, at::MemoryFormat::Contiguous) : at::Tensor();
    auto f64 = x.options().dtype(at::kDouble);
    at::Tensor gg = at::zeros({s.c}, f64), gb = at::zeros({s.c}, f64);
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_frames_backward", [&] {
      FramesBackward<scalar_t>(gy.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), gamma.data_ptr<scalar_t>(),
                               mean.data_ptr<scalar_t>(), rstd.data_ptr<scalar_t>(), s,
                               gx.defined() ? gx.data_ptr<scalar_t>() : nullptr, gg.data_ptr<double>(),
                               gb.data_ptr<double>());
    });
    return {gx, gg.to(x.scalar_type()), gb.to(x.scalar_type()), at::Tensor(), at::Tensor()};
  }
};

// x [B, T, C, P] → same shape; statistics per (b, group, p) over (T × channels of the group).
at::Tensor GroupNormFrames(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, int64_t groups,
                           double eps) {
  TORCH_CHECK(x.dim() == 4, "flexvid::group_norm_frames: expected x [B, T, C, P], got ", x.sizes());
  TORCH_CHECK(groups > 0 && x.size(2) % groups == 0, "flexvid::group_norm_frames: ", x.size(2),
              " channels not divisible into ", groups, " groups");
  TORCH_CHECK(x.device().is_cpu() && (x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble),
              "flexvid::group_norm_frames: float32/float64 CPU tensors only, got ", x.scalar_type(), " on ", x.device());
  TORCH_CHECK(weight.numel() == x.size(2) && bias.numel() == x.size(2) && weight.scalar_type() == x.scalar_type() &&
                  bias.scalar_type() == x.scalar_type(),
              "flexvid::group_norm_frames: weight and bias need ", x.size(2), " elements of ", x.scalar_type());
  return GroupNormFramesFunction::apply(x.contiguous(), weight.contiguous(), bias.contiguous(), groups, eps);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(flexvid, m) {
  m.def(
      "group_norm_silu(Tensor x, Tensor weight, Tensor bias, Tensor? scale, Tensor? shift, int groups, float eps, "
      "bool silu) -> Tensor");
  m.def("group_norm_frames(Tensor x, Tensor weight, Tensor bias, int groups, float eps) -> Tensor");
}
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) {
  m.impl("group_norm_silu", &GroupNormSilu);
  m.impl("group_norm_frames", &GroupNormFrames);
}

}  // namespace flexvid
