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
#include <numeric>
#include <type_traits>
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

// ----- Blocked layouts -------------------------------------------------------------------------
// oneDNN's Winograd convolution (winograd.cc) keeps activations as [N, C/16, H, W, 16]: sixteen
// channels innermost (oneDNN's nChw16c, "blocked"). A ResBlock's first normalisation reads the
// block input (plain) and its second the first convolution's output (blocked); both write the
// next convolution's input blocked, so neither convolution reorders its activations, forward or
// backward. Here a 16-lane F16 value holds 16 channels at one position, so the per-channel
// coefficients are lane vectors; plain data is read and written in 16×16 tiles transposed in
// registers. Work items are (sample, the fewest 16-channel blocks that hold whole groups).

enum Layout : int64_t { kPlain = 0, kPlainToBlocked = 1, kBlockedToBlocked = 2 };

struct BlockedDims {
  int64_t n, c, s, groups, cg;
  int64_t bpi;  // 16-channel blocks per work item
  int64_t Blocks() const { return c / 16; }
  int64_t ItemsPerSample() const { return Blocks() / bpi; }
  int64_t Items() const { return n * ItemsPerSample(); }
  int64_t Plain(int64_t nn, int64_t cc, int64_t ss) const { return (nn * c + cc) * s + ss; }
  int64_t Blocked(int64_t nn, int64_t cc, int64_t ss) const { return ((nn * Blocks() + cc / 16) * s + ss) * 16 + cc % 16; }
  int64_t At(bool blocked, int64_t nn, int64_t cc, int64_t ss) const { return blocked ? Blocked(nn, cc, ss) : Plain(nn, cc, ss); }
};

BlockedDims GetBlockedDims(int64_t n, int64_t c, int64_t s, int64_t groups) {
  const int64_t cg = c / groups;
  return {n, c, s, groups, cg, std::lcm(cg, int64_t{16}) / 16};
}

// A plain [N, C, S] activation as the blocked-path kernels read (x) or write (its gradient) it:
// one tensor, or two split along channels at `split` (a multiple of 16) — the U-Net's skip
// concatenation [h, skip] read in place instead of copied into one tensor first.
template <typename P>
struct PlainSrc {
  P a, b;
  int64_t split, c, s;
  // The row of channel ch (all S positions) of sample nn.
  P Row(int64_t nn, int64_t ch) const {
    return ch < split ? a + (nn * split + ch) * s : b + (nn * (c - split) + ch - split) * s;
  }
};

// The plain 16×16 tile at rows `row` (16 channels, row stride S) and positions s0…s0+15, transposed
// to 16 values t[i] = the 16 channels at position s0 + i.
FLEXVID_INLINE void LoadRows(const float* row, int64_t S, int64_t s0, F16* t) {
  for (int l = 0; l < 16; ++l) t[l] = LoadF16(row + l * S + s0);
  Transpose16x16(t);
}

// The 16×16 tile of channels 16·cb… and positions s0…s0+15 of sample nn, as 16 values t[i] =
// the 16 channels at position s0 + i.
FLEXVID_INLINE void LoadTile(const float* x, bool blocked, const BlockedDims& d, int64_t nn, int64_t cb, int64_t s0, F16* t) {
  if (blocked) {
    const float* p = x + ((nn * d.Blocks() + cb) * d.s + s0) * 16;
    for (int i = 0; i < 16; ++i) t[i] = LoadF16(p + i * 16);
  } else {
    LoadRows(x + (nn * d.c + cb * 16) * d.s, d.s, s0, t);
  }
}

// The inverse of LoadTile (t is clobbered for plain layouts).
FLEXVID_INLINE void StoreTile(float* x, bool blocked, const BlockedDims& d, int64_t nn, int64_t cb, int64_t s0, F16* t) {
  if (blocked) {
    float* p = x + ((nn * d.Blocks() + cb) * d.s + s0) * 16;
    for (int i = 0; i < 16; ++i) StoreF16(p + i * 16, t[i]);
  } else {
    Transpose16x16(t);
    float* p = x + (nn * d.c + cb * 16) * d.s + s0;
    for (int l = 0; l < 16; ++l) StoreF16(p + l * d.s, t[l]);
  }
}

FLEXVID_INLINE F16 SigmoidF16(F16 z) { return 1.0f / (1.0f + ExpApproxF16(-z)); }

FLEXVID_INLINE F16 LanesOf(const float* v) { return LoadF16(v); }

// Per-channel coefficients of one item's channels c0…c0+ci (ci = 16·bpi): z = a·x + b, k = γ(1 + s).
void ItemCoeffs(const BlockedDims& d, int64_t nn, int64_t c0, const float* mean, const float* rstd, const float* gamma,
                const float* beta, const float* scale, const float* shift, float* a, float* b, float* k) {
  for (int64_t l = 0; l < d.bpi * 16; ++l) {
    const int64_t c = c0 + l, nc = nn * d.c + c, g = nn * d.groups + c / d.cg;
    const auto co = ChannelCoeffs<float>(mean[g], rstd[g], gamma[c], beta[c], scale ? 1.0f + scale[nc] : 1.0f,
                                         shift ? shift[nc] : 0.0f);
    a[l] = co.a, b[l] = co.b, k[l] = co.k;
  }
}

// Forward: statistics (two passes: mean, then squared deviations), then y = act(a·x + b), written blocked.
// x: the blocked input (blocked_in), else unused and the plain input comes from xp.
FLEXVID_CLONES void BlockedForwardItem(const float* x, const PlainSrc<const float*>& xp, bool blocked_in, float* y,
                                       const float* gamma, const float* beta, const float* scale, const float* shift,
                                       const BlockedDims& d, double eps, bool silu, int64_t item, float* mean,
                                       float* rstd, double* acc) {
  const int64_t S = d.s, S16 = S / 16 * 16, ci = d.bpi * 16, m = d.cg * S;
  const int64_t nn = item / d.ItemsPerSample(), cb0 = (item % d.ItemsPerSample()) * d.bpi, c0 = cb0 * 16;
  const int64_t g0 = c0 / d.cg, gn = ci / d.cg;
  F16 t[16];
  float mu[64 * 16], a[64 * 16], b[64 * 16], k[64 * 16];  // per channel of the item (bpi ≤ 64)
  // pass A: channel sums → group means
  // (plain input: whole rows, as the plain kernel; blocked: the 16 lanes are 16 channels)
  for (int64_t l = 0; l < ci; ++l) acc[l] = 0;
  for (int64_t blk = 0; blk < d.bpi && !blocked_in; ++blk)
    for (int l = 0; l < 16; ++l) {
      const float* row = xp.Row(nn, c0 + blk * 16 + l);
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t ss = 0; ss < S; ++ss) sum += row[ss];
      acc[blk * 16 + l] = sum;
    }
  for (int64_t blk = 0; blk < d.bpi && blocked_in; ++blk) {
    for (int64_t s0 = 0; s0 < S16; s0 += 16) {
      LoadTile(x, true, d, nn, cb0 + blk, s0, t);
      F16 sum = t[0];
      for (int i = 1; i < 16; ++i) sum += t[i];
      for (int l = 0; l < 16; ++l) acc[blk * 16 + l] += sum[l];
    }
    for (int64_t ss = S16; ss < S; ++ss)
      for (int l = 0; l < 16; ++l) acc[blk * 16 + l] += x[d.Blocked(nn, c0 + blk * 16 + l, ss)];
  }
  for (int64_t g = 0; g < gn; ++g) {
    double sum = 0;
    for (int64_t l = g * d.cg; l < (g + 1) * d.cg; ++l) sum += acc[l];
    const float mg = static_cast<float>(sum / m);
    mean[nn * d.groups + g0 + g] = mg;
    for (int64_t l = g * d.cg; l < (g + 1) * d.cg; ++l) mu[l] = mg;
  }
  // pass B: squared deviations → group rstd
  for (int64_t l = 0; l < ci; ++l) acc[l] = 0;
  for (int64_t blk = 0; blk < d.bpi && !blocked_in; ++blk)
    for (int l = 0; l < 16; ++l) {
      const float* row = xp.Row(nn, c0 + blk * 16 + l);
      const float m0 = mu[blk * 16 + l];
      float sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t ss = 0; ss < S; ++ss) sum += (row[ss] - m0) * (row[ss] - m0);
      acc[blk * 16 + l] = sum;
    }
  for (int64_t blk = 0; blk < d.bpi && blocked_in; ++blk) {
    const F16 m16 = LanesOf(mu + blk * 16);
    for (int64_t s0 = 0; s0 < S16; s0 += 16) {
      LoadTile(x, true, d, nn, cb0 + blk, s0, t);
      F16 sum = {};
      for (int i = 0; i < 16; ++i) sum += (t[i] - m16) * (t[i] - m16);
      for (int l = 0; l < 16; ++l) acc[blk * 16 + l] += sum[l];
    }
    for (int64_t ss = S16; ss < S; ++ss)
      for (int l = 0; l < 16; ++l) {
        const float v = x[d.Blocked(nn, c0 + blk * 16 + l, ss)] - mu[blk * 16 + l];
        acc[blk * 16 + l] += v * v;
      }
  }
  for (int64_t g = 0; g < gn; ++g) {
    double ss = 0;
    for (int64_t l = g * d.cg; l < (g + 1) * d.cg; ++l) ss += acc[l];
    rstd[nn * d.groups + g0 + g] = static_cast<float>(1.0 / std::sqrt(ss / m + eps));
  }
  // pass C: output
  ItemCoeffs(d, nn, c0, mean, rstd, gamma, beta, scale, shift, a, b, k);
  for (int64_t blk = 0; blk < d.bpi; ++blk) {
    const F16 av = LanesOf(a + blk * 16), bv = LanesOf(b + blk * 16);
    const float* rows = blocked_in ? nullptr : xp.Row(nn, c0 + blk * 16);
    for (int64_t s0 = 0; s0 < S16; s0 += 16) {
      if (blocked_in) LoadTile(x, true, d, nn, cb0 + blk, s0, t);
      else LoadRows(rows, S, s0, t);
      for (int i = 0; i < 16; ++i) {
        const F16 z = av * t[i] + bv;
        t[i] = silu ? z * SigmoidF16(z) : z;
      }
      StoreTile(y, true, d, nn, cb0 + blk, s0, t);
    }
    for (int64_t ss = S16; ss < S; ++ss)
      for (int l = 0; l < 16; ++l) {
        const int64_t c = c0 + blk * 16 + l;
        const float xv = blocked_in ? x[d.Blocked(nn, c, ss)] : rows[l * S + ss];
        const float z = a[blk * 16 + l] * xv + b[blk * 16 + l];
        y[d.Blocked(nn, c, ss)] = silu ? z * Sigmoid(z) : z;
      }
  }
}

// dz = act'(z)·gy for z = a·x + b.
FLEXVID_INLINE F16 DzF16(F16 z, F16 gy, bool silu) {
  if (!silu) return gy;
  const F16 sg = SigmoidF16(z);
  return gy * sg * (1.0f + z * (1.0f - sg));
}

// Backward of one item: gy blocked, x and gx in x's layout. Fills sum_dz and Σ dz·x̂ per (n, c).
// x, gx: blocked (blocked_x), else unused and the plain input and its gradient come from xp, gxp
// (gxp.a null: no input gradient).
FLEXVID_CLONES void BlockedBackwardItem(const float* gy, const float* x, const PlainSrc<const float*>& xp,
                                        bool blocked_x, const float* gamma, const float* beta, const float* scale,
                                        const float* shift, const float* mean, const float* rstd,
                                        const BlockedDims& d, bool silu, int64_t item, float* gx,
                                        const PlainSrc<float*>& gxp, double* s1p, double* s2p, double* acc) {
  if (!blocked_x) gx = gxp.a;  // "any input gradient wanted" below
  const int64_t S = d.s, S16 = S / 16 * 16, ci = d.bpi * 16, m = d.cg * S;
  const int64_t nn = item / d.ItemsPerSample(), cb0 = (item % d.ItemsPerSample()) * d.bpi, c0 = cb0 * 16;
  const int64_t g0 = c0 / d.cg, gn = ci / d.cg;
  F16 t[16], gt[16];
  float a[64 * 16], b[64 * 16], k[64 * 16], p[64 * 16], q[64 * 16], r[64 * 16];
  ItemCoeffs(d, nn, c0, mean, rstd, gamma, beta, scale, shift, a, b, k);
  // pass 1: per channel Σ dz (acc[0…ci)) and Σ dz·x (acc[ci…2ci)). A plain x is read by rows and
  // the gradient's tiles transposed to match (one transpose per tile instead of two).
  for (int64_t l = 0; l < 2 * ci; ++l) acc[l] = 0;
  for (int64_t blk = 0; blk < d.bpi && !blocked_x; ++blk) {
    const float* xrows = xp.Row(nn, c0 + blk * 16);
    float* grows = gx ? gxp.Row(nn, c0 + blk * 16) : nullptr;
    F16 s1[16] = {}, s2[16] = {};
    for (int64_t s0 = 0; s0 < S16; s0 += 16) {
      LoadTile(gy, true, d, nn, cb0 + blk, s0, gt);
      Transpose16x16(gt);  // gt[l]: channel l of the block at positions s0…s0+15
      for (int l = 0; l < 16; ++l) {
        const F16 xv = LoadF16(xrows + l * S + s0);
        const F16 dz = DzF16(a[blk * 16 + l] * xv + b[blk * 16 + l], gt[l], silu);
        if (gx) StoreF16(grows + l * S + s0, dz);
        s1[l] += dz;
        s2[l] += dz * xv;
      }
    }
    for (int l = 0; l < 16; ++l) acc[blk * 16 + l] = SumF16(s1[l]), acc[ci + blk * 16 + l] = SumF16(s2[l]);
    for (int64_t ss = S16; ss < S; ++ss)
      for (int l = 0; l < 16; ++l) {
        const int64_t c = c0 + blk * 16 + l;
        const float xv = xrows[l * S + ss], z = a[blk * 16 + l] * xv + b[blk * 16 + l];
        const float g = gy[d.Blocked(nn, c, ss)];
        float dz = g;
        if (silu) {
          const float sg = Sigmoid(z);
          dz = g * sg * (1.0f + z * (1.0f - sg));
        }
        if (gx) grows[l * S + ss] = dz;
        acc[blk * 16 + l] += dz, acc[ci + blk * 16 + l] += dz * xv;
      }
  }
  for (int64_t blk = 0; blk < d.bpi && blocked_x; ++blk) {
    const F16 av = LanesOf(a + blk * 16), bv = LanesOf(b + blk * 16);
    for (int64_t s0 = 0; s0 < S16; s0 += 16) {
      LoadTile(x, true, d, nn, cb0 + blk, s0, t);
      LoadTile(gy, true, d, nn, cb0 + blk, s0, gt);
      F16 s1 = {}, s2 = {};
      for (int i = 0; i < 16; ++i) {
        const F16 dz = DzF16(av * t[i] + bv, gt[i], silu);
        s1 += dz;
        s2 += dz * t[i];
        gt[i] = dz;
      }
      if (gx) StoreTile(gx, true, d, nn, cb0 + blk, s0, gt);
      for (int l = 0; l < 16; ++l) acc[blk * 16 + l] += s1[l], acc[ci + blk * 16 + l] += s2[l];
    }
    for (int64_t ss = S16; ss < S; ++ss)
      for (int l = 0; l < 16; ++l) {
        const int64_t c = c0 + blk * 16 + l;
        const float xv = x[d.Blocked(nn, c, ss)], z = a[blk * 16 + l] * xv + b[blk * 16 + l];
        const float g = gy[d.Blocked(nn, c, ss)];
        float dz = g;
        if (silu) {
          const float sg = Sigmoid(z);
          dz = g * sg * (1.0f + z * (1.0f - sg));
        }
        if (gx) gx[d.Blocked(nn, c, ss)] = dz;
        acc[blk * 16 + l] += dz, acc[ci + blk * 16 + l] += dz * xv;
      }
  }
  for (int64_t g = 0; g < gn; ++g) {
    const float mu = mean[nn * d.groups + g0 + g], rs = rstd[nn * d.groups + g0 + g];
    double a_sum = 0, b_sum = 0;
    for (int64_t l = g * d.cg; l < (g + 1) * d.cg; ++l) {
      const double s1 = acc[l], dzxhat = rs * (acc[ci + l] - mu * s1);
      s1p[nn * d.c + c0 + l] = s1;
      s2p[nn * d.c + c0 + l] = dzxhat;
      a_sum += k[l] * s1;
      b_sum += k[l] * dzxhat;
    }
    const double A = a_sum / m, B = b_sum / m;
    for (int64_t l = g * d.cg; l < (g + 1) * d.cg; ++l) {
      p[l] = rs * k[l];
      q[l] = static_cast<float>(-static_cast<double>(rs) * rs * B);
      r[l] = static_cast<float>(-static_cast<double>(rs) * A + static_cast<double>(mu) * rs * rs * B);
    }
  }
  if (!gx) return;
  // pass 2: gx = p·dz + q·x + r, with dz where pass 1 left it in gx (this item's slice of gx and x
  // are still in cache; re-reading dz costs less than recomputing the SiLU's exp and division).
  for (int64_t blk = 0; blk < d.bpi; ++blk) {
    const F16 pv = LanesOf(p + blk * 16), qv = LanesOf(q + blk * 16), rv = LanesOf(r + blk * 16);
    if (blocked_x) {
      for (int64_t s0 = 0; s0 < S16; s0 += 16) {
        LoadTile(x, true, d, nn, cb0 + blk, s0, t);
        LoadTile(gx, true, d, nn, cb0 + blk, s0, gt);
        for (int i = 0; i < 16; ++i) t[i] = pv * gt[i] + qv * t[i] + rv;
        StoreTile(gx, true, d, nn, cb0 + blk, s0, t);
      }
    } else {
      const float* xrows = xp.Row(nn, c0 + blk * 16);
      float* grows = gxp.Row(nn, c0 + blk * 16);
      for (int64_t s0 = 0; s0 < S16; s0 += 16) {
        for (int l = 0; l < 16; ++l) {
          const int64_t c = blk * 16 + l;
          const F16 xv = LoadF16(xrows + l * S + s0), dz = LoadF16(grows + l * S + s0);
          StoreF16(grows + l * S + s0, p[c] * dz + q[c] * xv + r[c]);
        }
      }
    }
    for (int64_t ss = S16; ss < S; ++ss)
      for (int l = 0; l < 16; ++l) {
        const int64_t c = c0 + blk * 16 + l;
        float* gp = blocked_x ? gx + d.Blocked(nn, c, ss) : gxp.Row(nn, c) + ss;
        const float xv = blocked_x ? x[d.Blocked(nn, c, ss)] : xp.Row(nn, c)[ss];
        *gp = p[blk * 16 + l] * *gp + q[blk * 16 + l] * xv + r[blk * 16 + l];
      }
  }
}

// x: blocked input (blocked_in) or the first plain part; x2: the second plain part (channels
// split…C) or undefined.
void BlockedForward(const at::Tensor& x, const at::Tensor& x2, int64_t split, bool blocked_in, const at::Tensor& gamma,
                    const at::Tensor& beta, const at::Tensor& scale, const at::Tensor& shift, const BlockedDims& d,
                    double eps, bool silu, at::Tensor& y, at::Tensor& mean, at::Tensor& rstd) {
  const float* sp = scale.numel() > 0 ? scale.data_ptr<float>() : nullptr;
  const float* hp = shift.numel() > 0 ? shift.data_ptr<float>() : nullptr;
  const PlainSrc<const float*> xp{x.data_ptr<float>(), x2.defined() ? x2.data_ptr<float>() : nullptr, split, d.c, d.s};
  at::parallel_for(0, d.Items(), 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(d.bpi * 16);
    for (int64_t item = begin; item < end; ++item) {
      BlockedForwardItem(x.data_ptr<float>(), xp, blocked_in, y.data_ptr<float>(), gamma.data_ptr<float>(),
                         beta.data_ptr<float>(), sp, hp, d, eps, silu, item, mean.data_ptr<float>(),
                         rstd.data_ptr<float>(), acc.data());
    }
  });
}

// x, gx as BlockedForward's x (x2, gx2: the second plain part and its gradient, or undefined);
// gx undefined: no input gradient.
void BlockedBackward(const at::Tensor& gy, const at::Tensor& x, const at::Tensor& x2, int64_t split, bool blocked_x,
                     const at::Tensor& gamma, const at::Tensor& beta, const at::Tensor& scale,
                     const at::Tensor& shift, const at::Tensor& mean, const at::Tensor& rstd, const BlockedDims& d,
                     bool silu, at::Tensor& gx, at::Tensor& gx2, at::Tensor& sum_dz, at::Tensor& sum_dz_xhat) {
  const float* sp = scale.numel() > 0 ? scale.data_ptr<float>() : nullptr;
  const float* hp = shift.numel() > 0 ? shift.data_ptr<float>() : nullptr;
  float* gxp = gx.defined() ? gx.data_ptr<float>() : nullptr;
  const PlainSrc<const float*> xp{x.data_ptr<float>(), x2.defined() ? x2.data_ptr<float>() : nullptr, split, d.c, d.s};
  const PlainSrc<float*> gp{gxp, gx2.defined() ? gx2.data_ptr<float>() : nullptr, split, d.c, d.s};
  at::parallel_for(0, d.Items(), 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(2 * d.bpi * 16);
    for (int64_t item = begin; item < end; ++item) {
      BlockedBackwardItem(gy.data_ptr<float>(), x.data_ptr<float>(), xp, blocked_x, gamma.data_ptr<float>(),
                          beta.data_ptr<float>(), sp, hp, mean.data_ptr<float>(), rstd.data_ptr<float>(), d, silu,
                          item, gxp, gp, sum_dz.data_ptr<double>(), sum_dz_xhat.data_ptr<double>(), acc.data());
    }
  });
}

Dims GetDims(const at::Tensor& x, int64_t groups) {
  const int64_t n = x.size(0), c = x.size(1);
  return {n, c, n * c == 0 ? 0 : x.numel() / (n * c), groups, c / groups};
}

// Dimensions of a blocked-path input: plain [N, C, H, W] (kPlainToBlocked) or blocked
// [N, C/16, H, W, 16] (kBlockedToBlocked).
BlockedDims BlockedDimsOf(const at::Tensor& x, const at::Tensor& x2, int64_t layout, int64_t groups) {
  const int64_t c = layout == kBlockedToBlocked ? x.size(1) * 16 : x.size(1) + (x2.numel() > 0 ? x2.size(1) : 0);
  return GetBlockedDims(x.size(0), c, x.size(2) * x.size(3), groups);
}

class GroupNormSiluFunction : public torch::autograd::Function<GroupNormSiluFunction> {
 public:
  // x2: the second plain part of a plain → blocked input (channels x.size(1)… of the whole), or an
  // empty tensor for one input.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& x2,
                            const at::Tensor& gamma, const at::Tensor& beta, const at::Tensor& scale,
                            const at::Tensor& shift, int64_t groups, double eps, bool silu, int64_t layout) {
    at::Tensor y;
    at::Tensor mean = at::empty({x.size(0), groups}, x.options()), rstd = at::empty({x.size(0), groups}, x.options());
    const at::Tensor second = x2.numel() > 0 ? x2 : at::Tensor();
    if (layout == kPlain) {
      const Dims d = GetDims(x, groups);
      y = at::empty_like(x, at::MemoryFormat::Contiguous);
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu", [&] {
        Forward<scalar_t>(x, gamma, beta, scale, shift, d, eps, silu, y, mean, rstd);
      });
    } else {
      const BlockedDims d = BlockedDimsOf(x, x2, layout, groups);
      y = at::empty({d.n, d.Blocks(), x.size(2), x.size(3), 16}, x.options());
      BlockedForward(x, second, x.size(1), layout == kBlockedToBlocked, gamma, beta, scale, shift, d, eps, silu, y, mean,
                     rstd);
    }
    ctx->save_for_backward({x, x2, gamma, beta, scale, shift, mean, rstd});
    ctx->saved_data["groups"] = groups;
    ctx->saved_data["silu"] = silu;
    ctx->saved_data["layout"] = layout;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    // The gradients below are computed outside autograd, so they cannot be differentiated again.
    RefuseDoubleBackward("flexvid::group_norm_silu (fused GroupNorm)", "setFusedGroupNorm(false) or FLEXVID_FUSED_NORM=0");
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &x2 = saved[1], &gamma = saved[2], &beta = saved[3], &scale = saved[4];
    const at::Tensor &shift = saved[5], &mean = saved[6], &rstd = saved[7];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const bool silu = ctx->saved_data["silu"].toBool();
    const int64_t layout = ctx->saved_data["layout"].toInt();
    const bool pair = x2.numel() > 0;
    at::Tensor gy = grads[0].contiguous();
    // (with two parts both gradients are computed when either is wanted: one kernel writes them)
    const bool want_gx = ctx->needs_input_grad(0) || (pair && ctx->needs_input_grad(1));
    at::Tensor gx = want_gx ? at::empty_like(x, at::MemoryFormat::Contiguous) : at::Tensor();
    at::Tensor gx2 = want_gx && pair ? at::empty_like(x2, at::MemoryFormat::Contiguous) : at::Tensor();
    auto f64 = x.options().dtype(at::kDouble);
    Dims d{};
    if (layout == kPlain) {
      d = GetDims(x, groups);
    } else {
      const BlockedDims b = BlockedDimsOf(x, x2, layout, groups);
      d = Dims{b.n, b.c, b.s, groups, b.cg};
    }
    at::Tensor sum_dz = at::empty({d.n, d.c}, f64), sum_dz_xhat = at::empty({d.n, d.c}, f64);
    if (layout == kPlain) {
      AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "group_norm_silu_backward", [&] {
        Backward<scalar_t>(gy, x, gamma, beta, scale, shift, mean, rstd, d, silu, gx, sum_dz, sum_dz_xhat);
      });
    } else {
      BlockedBackward(gy, x, pair ? x2 : at::Tensor(), x.size(1), layout == kBlockedToBlocked, gamma, beta, scale, shift,
                      mean, rstd, BlockedDimsOf(x, x2, layout, groups), silu, gx, gx2, sum_dz, sum_dz_xhat);
    }
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
    return {gx, gx2, g_gamma, g_beta, g_scale, g_shift, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// x [N, C, *], weight/bias [C], scale/shift [N, C] (or [N, C, 1, …]) or none → same shape as x.
// x2 (defined only for plain → blocked): x's channels continue in x2 [N, C2, H, W], C = C1 + C2.
at::Tensor GroupNormSiluImpl(const at::Tensor& x, const at::Tensor& x2, const at::Tensor& weight, const at::Tensor& bias,
                             const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                             int64_t groups, double eps, bool silu, int64_t layout) {
  TORCH_CHECK(x.dim() >= 2, "flexvid::group_norm_silu: expected x [N, C, ...], got ", x.sizes());
  TORCH_CHECK(layout >= kPlain && layout <= kBlockedToBlocked, "flexvid::group_norm_silu: layout must be 0 (plain), 1 (plain → blocked) or 2 (blocked), got ", layout);
  const bool pair = x2.defined();
  if (layout == kPlainToBlocked) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) % 16 == 0, "flexvid::group_norm_silu: plain → blocked needs x [N, C, H, W] with C a multiple of 16, got ", x.sizes());
    TORCH_CHECK(!pair || (x2.dim() == 4 && x2.size(1) % 16 == 0 && x2.size(0) == x.size(0) && x2.size(2) == x.size(2) &&
                          x2.size(3) == x.size(3) && x2.scalar_type() == x.scalar_type() && x2.device() == x.device()),
                "flexvid::group_norm_silu_pair: expected a [N, C1, H, W] and b [N, C2, H, W] of one dtype and device, C1 and C2 multiples of 16, got ",
                x.sizes(), " and ", x2.sizes());
  } else if (layout == kBlockedToBlocked) {
    TORCH_CHECK(x.dim() == 5 && x.size(4) == 16, "flexvid::group_norm_silu: blocked input must be [N, C/16, H, W, 16], got ", x.sizes());
  }
  const int64_t n = x.size(0), c = layout == kBlockedToBlocked ? x.size(1) * 16 : x.size(1) + (pair ? x2.size(1) : 0);
  if (layout != kPlain) {
    TORCH_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(), "flexvid::group_norm_silu: blocked layouts need float32 CPU tensors, got ", x.scalar_type(), " on ", x.device());
    TORCH_CHECK(groups > 0 && c % groups == 0 && (c / 16) % GetBlockedDims(1, c, 1, groups).bpi == 0 && c / groups <= 64,
                "flexvid::group_norm_silu: ", c, " channels in ", groups, " groups do not tile into whole 16-channel blocks");
  }
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
  // An absent scale, shift or second part travels as an empty tensor (autograd functions take no
  // undefined inputs).
  auto per_sample = [&](const c10::optional<at::Tensor>& t, const char* what) -> at::Tensor {
    if (!t || !t->defined()) return at::empty({0}, x.options());
    TORCH_CHECK(t->numel() == n * c, "flexvid::group_norm_silu: ", what, " needs [", n, ", ", c, "], got ", t->sizes());
    same(*t, what);
    return t->reshape({n, c}).contiguous();
  };
  return GroupNormSiluFunction::apply(x.contiguous(), pair ? x2.contiguous() : at::empty({0}, x.options()),
                                      weight.contiguous(), bias.contiguous(), per_sample(scale, "scale"),
                                      per_sample(shift, "shift"), groups, eps, silu, layout);
}

at::Tensor GroupNormSilu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift, int64_t groups,
                         double eps, bool silu, int64_t layout) {
  return GroupNormSiluImpl(x, at::Tensor(), weight, bias, scale, shift, groups, eps, silu, layout);
}

// The plain → blocked normalisation of cat([a, b], 1) without the concatenation: a [N, C1, H, W],
// b [N, C2, H, W] (C1, C2 multiples of 16) → blocked [N, (C1 + C2)/16, H, W, 16]; gradients to a and b.
at::Tensor GroupNormSiluPair(const at::Tensor& a, const at::Tensor& b, const at::Tensor& weight, const at::Tensor& bias,
                             const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                             int64_t groups, double eps, bool silu) {
  return GroupNormSiluImpl(a, b, weight, bias, scale, shift, groups, eps, silu, kPlainToBlocked);
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

// One whole tile of 16 float32 pixels with the pixels in one register (the generic loops below run
// at the baseline's SIMD width, their trip count being a run-time value): 2.5–3× faster. The same
// sums in the same order; the multiply-adds may be fused here, so the last bit can differ.
FLEXVID_CLONES void FramesForwardTile16(const float* x, const float* gamma, const float* beta, const FrameDims& s,
                                        double eps, int64_t bb, int64_t g, int64_t p0, float* y, float* mean,
                                        float* rstd) {
  const double m = static_cast<double>(s.t * s.cg);
  F16 sum = {};
  for (int64_t tt = 0; tt < s.t; ++tt)
    for (int64_t c = g * s.cg; c < (g + 1) * s.cg; ++c) sum += LoadF16(x + s.At(bb, tt, c) + p0);
  float mu[kTile], ss[kTile], rs[kTile];
  StoreF16(mu, sum);
  for (int i = 0; i < kTile; ++i) mu[i] = static_cast<float>(mu[i] / m);
  const F16 mu16 = LoadF16(mu);
  F16 dev = {};
  for (int64_t tt = 0; tt < s.t; ++tt)
    for (int64_t c = g * s.cg; c < (g + 1) * s.cg; ++c) {
      const F16 d = LoadF16(x + s.At(bb, tt, c) + p0) - mu16;
      dev += d * d;
    }
  StoreF16(ss, dev);
  for (int i = 0; i < kTile; ++i) rs[i] = static_cast<float>(1.0 / std::sqrt(ss[i] / m + eps));
  std::memcpy(mean + (bb * s.groups + g) * s.p + p0, mu, sizeof mu);
  std::memcpy(rstd + (bb * s.groups + g) * s.p + p0, rs, sizeof rs);
  const F16 rs16 = LoadF16(rs);
  for (int64_t tt = 0; tt < s.t; ++tt)
    for (int64_t c = g * s.cg; c < (g + 1) * s.cg; ++c) {
      const F16 xv = LoadF16(x + s.At(bb, tt, c) + p0);
      StoreF16(y + s.At(bb, tt, c) + p0, (xv - mu16) * rs16 * gamma[c] + beta[c]);
    }
}

template <typename T>
void FramesForward(const T* x, const T* gamma, const T* beta, const FrameDims& s, double eps, T* y, T* mean, T* rstd) {
  const int64_t items = s.b * s.groups * s.Tiles();
  at::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t tile = idx % s.Tiles(), g = (idx / s.Tiles()) % s.groups, bb = idx / (s.Tiles() * s.groups);
      const int64_t p0 = tile * kTile, w = std::min(kTile, s.p - p0);
      if constexpr (std::is_same_v<T, float>) {
        if (w == kTile) {
          FramesForwardTile16(x, gamma, beta, s, eps, bb, g, p0, y, mean, rstd);
          continue;
        }
      }
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

// Rows of 16 channels × 16 positions: out = r + plain(h) (h blocked; r nullptr: none) for one (sample, block).
FLEXVID_CLONES void UnblockAddBlock(const float* h, const float* r, float* out, const BlockedDims& d, int64_t nn, int64_t cb) {
  const int64_t S16 = d.s / 16 * 16;
  F16 t[16];
  const int64_t row0 = (nn * d.c + cb * 16) * d.s;
  for (int64_t s0 = 0; s0 < S16; s0 += 16) {
    LoadTile(h, true, d, nn, cb, s0, t);
    Transpose16x16(t);  // t[l]: channel cb·16 + l at positions s0…s0+15
    for (int l = 0; l < 16; ++l) StoreF16(out + row0 + l * d.s + s0, r ? t[l] + LoadF16(r + row0 + l * d.s + s0) : t[l]);
  }
  for (int64_t ss = S16; ss < d.s; ++ss)
    for (int l = 0; l < 16; ++l) {
      const int64_t c = cb * 16 + l;
      out[d.Plain(nn, c, ss)] = (r ? r[d.Plain(nn, c, ss)] : 0.0f) + h[d.Blocked(nn, c, ss)];
    }
}

FLEXVID_CLONES void BlockBlock(const float* x, float* out, const BlockedDims& d, int64_t nn, int64_t cb) {
  const int64_t S16 = d.s / 16 * 16;
  F16 t[16];
  for (int64_t s0 = 0; s0 < S16; s0 += 16) {
    LoadTile(x, false, d, nn, cb, s0, t);
    StoreTile(out, true, d, nn, cb, s0, t);
  }
  for (int64_t ss = S16; ss < d.s; ++ss)
    for (int l = 0; l < 16; ++l) out[d.Blocked(nn, cb * 16 + l, ss)] = x[d.Plain(nn, cb * 16 + l, ss)];
}

}  // namespace

void UnblockAddRaw(const float* h, const float* r, float* out, int64_t n, int64_t c, int64_t sp) {
  const BlockedDims d = GetBlockedDims(n, c, sp, c / 16);
  at::parallel_for(0, n * d.Blocks(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) UnblockAddBlock(h, r, out, d, i / d.Blocks(), i % d.Blocks());
  });
}

void BlockRaw(const float* x, float* out, int64_t n, int64_t c, int64_t sp) {
  const BlockedDims d = GetBlockedDims(n, c, sp, c / 16);
  at::parallel_for(0, n * d.Blocks(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) BlockBlock(x, out, d, i / d.Blocks(), i % d.Blocks());
  });
}

TORCH_LIBRARY_FRAGMENT(flexvid, m) {
  m.def(
      "group_norm_silu(Tensor x, Tensor weight, Tensor bias, Tensor? scale, Tensor? shift, int groups, float eps, "
      "bool silu, int layout=0) -> Tensor");
  m.def(
      "group_norm_silu_pair(Tensor a, Tensor b, Tensor weight, Tensor bias, Tensor? scale, Tensor? shift, int groups, "
      "float eps, bool silu) -> Tensor");
  m.def("group_norm_frames(Tensor x, Tensor weight, Tensor bias, int groups, float eps) -> Tensor");
}
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) {
  m.impl("group_norm_silu", &GroupNormSilu);
  m.impl("group_norm_silu_pair", &GroupNormSiluPair);
  m.impl("group_norm_frames", &GroupNormFrames);
}

}  // namespace flexvid
