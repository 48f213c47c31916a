// flexvid::temporal_attention — the U-Net's temporal attention (over the T frames of each video,
// at every pixel, with relative-position terms and the frame-group mask; spec §4.3) in one
// operator that reads its inputs in the features' own frame-major layout.
//
//   qkv  [B·T, 3C, P]   the qkv projection of the (normalised) features, frame-major rows
//   rk, rq, rv [B, T, T, C] or empty   relative-position terms R^k_ij, R^q_ij, R^v_ij
//   bias [B, T, T] or empty            added to the logits (0 or −∞: the frame-group mask)
//   → o  [B·T, C, P]
//
// For video b, pixel p, head h (d = C/heads, channel h·d + e), with q_i, k_j, v_j the d-vectors of
// frames i and j:
//   s_ij = scale·(q_i·k_j + q_i·R^k_ij + k_j·R^q_ji) + bias_ij,   a_i = softmax_j(s_i)
//   o_i  = Σ_j a_ij (v_j + R^v_ij)
//
// Why: with batched products the attention needs the features permuted to [B·P, C, T] and back,
// q, k, v copied into [B, heads, T, P, d], the logits, relative terms and probabilities as
// [B, heads, P, T, T] tensors and the output merged back — a dozen full copies of the activations
// for T² = 100 multiply-adds per element. Here the work items are (video, head, 16 consecutive
// pixels), whose values are contiguous for every frame and channel, so the products vectorise
// across pixels; the gradients of R (shared by all pixels) are summed per thread.
#include <torch/torch.h>
#include <torch/library.h>

#include "autograd_util.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <vector>

#include "simd.h"

namespace flexvid {
namespace {

struct Dims {
  int64_t b, t, c, p, heads, d;
  bool rpe, bias;
  int64_t Qkv(int64_t bb, int64_t i, int part, int64_t h) const { return ((bb * t + i) * 3 * c + part * c + h * d) * p; }
  int64_t Out(int64_t bb, int64_t i, int64_t h) const { return ((bb * t + i) * c + h * d) * p; }
  int64_t R(int64_t bb, int64_t i, int64_t j, int64_t h) const { return ((bb * t + i) * t + j) * c + h * d; }
  // Work items: (video, head, tile of kTile consecutive pixels).
  int64_t Tiles() const { return (p + kTile - 1) / kTile; }
  int64_t Items() const { return b * heads * Tiles(); }
  // attn [B, heads, T, T, P]: the probabilities kept for backward, pixels innermost.
  int64_t Attn(int64_t bb, int64_t h, int64_t i, int64_t j) const { return (((bb * heads + h) * t + i) * t + j) * p; }
  static constexpr int64_t kTile = 16;  // pixels per work item: one AVX-512 vector of floats
};

struct Inputs {
  const float *qkv, *rk, *rq, *rv, *bias;
};

struct Grads {
  float *qkv, *rk, *rq, *rv;  // rk/rq/rv: accumulated (+=), qkv written
};

// Every loop below runs over the w ≤ 16 pixels of a tile, which are contiguous in memory for every
// (frame, channel): the products vectorise across pixels, the relative terms (shared by all
// pixels) are scalars.

// Forward for one (video bb, head h, pixels p0…p0+w): logits, softmax, output; keeps the
// probabilities in attn (unless null). s: scratch [T][T][16].
FLEXVID_CLONES void ForwardTile(const Inputs& in, const Dims& s, float scale, int64_t bb, int64_t h, int64_t p0,
                                int64_t w, float* s_buf, float* out, float* attn) {
  const int64_t T = s.t, d = s.d, P = s.p, K = Dims::kTile;
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < T; ++i) {
    const float* q = in.qkv + s.Qkv(bb, i, 0, h) + p0;
    for (int64_t j = 0; j < T; ++j) {
      const float* k = in.qkv + s.Qkv(bb, j, 1, h) + p0;
      float* z = s_buf + (i * T + j) * K;
      for (int64_t x = 0; x < w; ++x) z[x] = 0.0f;
      const float* rk = s.rpe ? in.rk + s.R(bb, i, j, h) : nullptr;
      const float* rq = s.rpe ? in.rq + s.R(bb, j, i, h) : nullptr;
      for (int64_t e = 0; e < d; ++e) {
        const float* qe = q + e * P;
        const float* ke = k + e * P;
        const float a = rk ? rk[e] : 0.0f, c = rq ? rq[e] : 0.0f;
#pragma omp simd
        for (int64_t x = 0; x < w; ++x) z[x] += qe[x] * (ke[x] + a) + ke[x] * c;  // q·k + q·R^k_ij + k·R^q_ji
      }
      const float bias = s.bias ? in.bias[(bb * T + i) * T + j] : 0.0f;
#pragma omp simd
      for (int64_t x = 0; x < w; ++x) z[x] = z[x] * scale + bias;
    }
    // softmax over j, per pixel
    float mx[Dims::kTile], sum[Dims::kTile];
    for (int64_t x = 0; x < w; ++x) mx[x] = ninf, sum[x] = 0.0f;
    for (int64_t j = 0; j < T; ++j) {
      const float* z = s_buf + (i * T + j) * K;
#pragma omp simd
      for (int64_t x = 0; x < w; ++x) mx[x] = z[x] > mx[x] ? z[x] : mx[x];
    }
    for (int64_t j = 0; j < T; ++j) {
      float* z = s_buf + (i * T + j) * K;
#pragma omp simd
      for (int64_t x = 0; x < w; ++x) {
        // masked logits (−∞) get exactly 0 (ExpApprox clamps its argument)
        const float e = z[x] == ninf ? 0.0f : ExpApprox(z[x] - mx[x]);
        z[x] = e;
        sum[x] += e;
      }
    }
    for (int64_t j = 0; j < T; ++j) {
      float* z = s_buf + (i * T + j) * K;
#pragma omp simd
      for (int64_t x = 0; x < w; ++x) z[x] = z[x] / sum[x];
      if (attn) std::memcpy(attn + s.Attn(bb, h, i, j) + p0, z, w * sizeof(float));
    }
    // o_i = Σ_j a_ij (v_j + R^v_ij)
    for (int64_t e = 0; e < d; ++e) {
      float* o = out + s.Out(bb, i, h) + e * P + p0;
      float acc[Dims::kTile] = {};
      for (int64_t j = 0; j < T; ++j) {
        const float* a = s_buf + (i * T + j) * K;
        const float* v = in.qkv + s.Qkv(bb, j, 2, h) + e * P + p0;
        const float r = s.rpe ? in.rv[s.R(bb, i, j, h) + e] : 0.0f;
#pragma omp simd
        for (int64_t x = 0; x < w; ++x) acc[x] += a[x] * (v[x] + r);
      }
      for (int64_t x = 0; x < w; ++x) o[x] = acc[x];
    }
  }
}

// Backward for one tile. da: scratch [T][T][16]; dq/dk/dv: scratch [T][d][16]; grk/grq/grv: this
// thread's relative-term gradients (summed over its pixels).
FLEXVID_CLONES void BackwardTile(const Inputs& in, const Dims& s, float scale, int64_t bb, int64_t h, int64_t p0,
                                 int64_t w, const float* gout, const float* attn, float* da, float* dq, float* dk,
                                 float* dv, float* grk, float* grq, float* grv, float* gqkv) {
  const int64_t T = s.t, d = s.d, P = s.p, K = Dims::kTile;
  for (int64_t x = 0; x < T * d * K; ++x) dq[x] = dk[x] = dv[x] = 0.0f;
  for (int64_t i = 0; i < T; ++i) {
    // da_ij = go_i·(v_j + R^v_ij);  dv_j += a_ij go_i;  dR^v_ij += Σ_pixels a_ij go_i
    float* dai = da + i * T * K;
    for (int64_t x = 0; x < T * K; ++x) dai[x] = 0.0f;
    for (int64_t e = 0; e < d; ++e) {
      const float* go = gout + s.Out(bb, i, h) + e * P + p0;
      for (int64_t j = 0; j < T; ++j) {
        const float* a = attn + s.Attn(bb, h, i, j) + p0;
        const float* v = in.qkv + s.Qkv(bb, j, 2, h) + e * P + p0;
        const float r = s.rpe ? in.rv[s.R(bb, i, j, h) + e] : 0.0f;
        float* z = dai + j * K;
        float* dvje = dv + (j * d + e) * K;
        float racc = 0.0f;
#pragma omp simd reduction(+ : racc)
        for (int64_t x = 0; x < w; ++x) {
          z[x] += go[x] * (v[x] + r);
          dvje[x] += a[x] * go[x];
          racc += a[x] * go[x];
        }
        if (s.rpe) grv[s.R(bb, i, j, h) + e] += racc;
      }
    }
    // ds_ij = scale·a_ij·(da_ij − Σ_j a_ij da_ij), in place in da
    float dot[Dims::kTile] = {};
    for (int64_t j = 0; j < T; ++j) {
      const float* a = attn + s.Attn(bb, h, i, j) + p0;
#pragma omp simd
      for (int64_t x = 0; x < w; ++x) dot[x] += a[x] * dai[j * K + x];
    }
    for (int64_t j = 0; j < T; ++j) {
      const float* a = attn + s.Attn(bb, h, i, j) + p0;
#pragma omp simd
      for (int64_t x = 0; x < w; ++x) dai[j * K + x] = scale * a[x] * (dai[j * K + x] - dot[x]);
    }
    // dq_i += ds_ij (k_j + R^k_ij);  dk_j += ds_ij (q_i + R^q_ji);  dR^k_ij, dR^q_ji += Σ_pixels ds_ij q_i, ds_ij k_j
    for (int64_t j = 0; j < T; ++j) {
      const float* ds = dai + j * K;
      const float* rk = s.rpe ? in.rk + s.R(bb, i, j, h) : nullptr;
      const float* rq = s.rpe ? in.rq + s.R(bb, j, i, h) : nullptr;
      for (int64_t e = 0; e < d; ++e) {
        const float* q = in.qkv + s.Qkv(bb, i, 0, h) + e * P + p0;
        const float* k = in.qkv + s.Qkv(bb, j, 1, h) + e * P + p0;
        float* dqie = dq + (i * d + e) * K;
        float* dkje = dk + (j * d + e) * K;
        const float a = rk ? rk[e] : 0.0f, c = rq ? rq[e] : 0.0f;
        float sk = 0.0f, sq = 0.0f;
#pragma omp simd reduction(+ : sk, sq)
        for (int64_t x = 0; x < w; ++x) {
          dqie[x] += ds[x] * (k[x] + a);
          dkje[x] += ds[x] * (q[x] + c);
          sk += ds[x] * q[x];
          sq += ds[x] * k[x];
        }
        if (s.rpe) {
          grk[s.R(bb, i, j, h) + e] += sk;
          grq[s.R(bb, j, i, h) + e] += sq;
        }
      }
    }
  }
  for (int64_t i = 0; i < T; ++i)
    for (int part = 0; part < 3; ++part) {
      const float* src = (part == 0 ? dq : part == 1 ? dk : dv) + i * d * K;
      for (int64_t e = 0; e < d; ++e) {
        float* dst = gqkv + s.Qkv(bb, i, part, h) + e * P + p0;
        for (int64_t x = 0; x < w; ++x) dst[x] = src[e * K + x];
      }
    }
}

// ----- full tiles: the same computations with the 16 pixels as one F16 value (simd.h) -------------
// Accumulators live in registers across the loops over channels and frames; the generic loops
// above (kept for the last, partial tile of a row) load and store them on every step.

// Copy part (0 q, 1 k, 2 v) of the tile's qkv rows into packed[T·d] (frame-major, then channel):
// the rows sit P floats apart, and at P = 256 the d rows of a frame share four L1 sets.
FLEXVID_INLINE void PackTile(const float* base, const Dims& s, int part, int64_t bb, int64_t h, int64_t p0, F16* packed) {
  for (int64_t i = 0; i < s.t; ++i) {
    const float* src = base + s.Qkv(bb, i, part, h) + p0;
    for (int64_t e = 0; e < s.d; ++e) packed[i * s.d + e] = LoadF16(src + e * s.p);
  }
}

// Forward for one full tile; a: scratch [T], packed: scratch [3·T·d]. attn may be null (nothing
// will need the probabilities).
FLEXVID_CLONES void ForwardTile16(const Inputs& in, const Dims& s, float scale, int64_t bb, int64_t h, int64_t p0,
                                  F16* a, F16* packed, float* out, float* attn) {
  const int64_t T = s.t, d = s.d, P = s.p;
  const F16 ninf = SplatF16(-std::numeric_limits<float>::infinity()), zero = {};
  F16 *qs = packed, *ks = packed + T * d, *vs = packed + 2 * T * d;
  PackTile(in.qkv, s, 0, bb, h, p0, qs);
  PackTile(in.qkv, s, 1, bb, h, p0, ks);
  PackTile(in.qkv, s, 2, bb, h, p0, vs);
  for (int64_t i = 0; i < T; ++i) {
    const F16* q = qs + i * d;
    F16 mx = ninf;
    int64_t j = 0;
    // Four frames j at a time: four independent sums over e (each in the same order as the single
    // loop below, so the same rounding), not one chain of dependent adds.
    for (; s.rpe && j + 4 <= T; j += 4) {
      const F16 *k0 = ks + j * d, *k1 = k0 + d, *k2 = k1 + d, *k3 = k2 + d;
      const float *rk0 = in.rk + s.R(bb, i, j, h), *rk1 = in.rk + s.R(bb, i, j + 1, h),
                  *rk2 = in.rk + s.R(bb, i, j + 2, h), *rk3 = in.rk + s.R(bb, i, j + 3, h);
      const float *rq0 = in.rq + s.R(bb, j, i, h), *rq1 = in.rq + s.R(bb, j + 1, i, h),
                  *rq2 = in.rq + s.R(bb, j + 2, i, h), *rq3 = in.rq + s.R(bb, j + 3, i, h);
      F16 z0 = {}, z1 = {}, z2 = {}, z3 = {};
      for (int64_t e = 0; e < d; ++e) {
        const F16 qe = q[e];
        z0 += qe * (k0[e] + rk0[e]) + k0[e] * rq0[e];
        z1 += qe * (k1[e] + rk1[e]) + k1[e] * rq1[e];
        z2 += qe * (k2[e] + rk2[e]) + k2[e] * rq2[e];
        z3 += qe * (k3[e] + rk3[e]) + k3[e] * rq3[e];
      }
      const F16 zs[4] = {z0, z1, z2, z3};
      for (int u = 0; u < 4; ++u) {
        const F16 z = zs[u] * scale + (s.bias ? in.bias[(bb * T + i) * T + j + u] : 0.0f);
        a[j + u] = z;
        mx = MaxF16(mx, z);
      }
    }
    for (; j < T; ++j) {
      const F16* k = ks + j * d;
      F16 z = {};
      if (s.rpe) {
        const float* rk = in.rk + s.R(bb, i, j, h);
        const float* rq = in.rq + s.R(bb, j, i, h);
        for (int64_t e = 0; e < d; ++e) z += q[e] * (k[e] + rk[e]) + k[e] * rq[e];  // q·k + q·R^k_ij + k·R^q_ji
      } else {
        for (int64_t e = 0; e < d; ++e) z += q[e] * k[e];
      }
      z = z * scale + (s.bias ? in.bias[(bb * T + i) * T + j] : 0.0f);
      a[j] = z;
      mx = MaxF16(mx, z);
    }
    F16 sum = {};
    for (int64_t j = 0; j < T; ++j) {
      const F16 e = a[j] == ninf ? zero : ExpApproxF16(a[j] - mx);  // masked logits: exactly 0
      a[j] = e;
      sum += e;
    }
    const F16 inv = 1.0f / sum;
    for (int64_t j = 0; j < T; ++j) {
      a[j] *= inv;
      if (attn) StoreF16(attn + s.Attn(bb, h, i, j) + p0, a[j]);
    }
    // o_i = Σ_j a_ij (v_j + R^v_ij), four channels at a time: four independent sums (each still
    // over j in order, so the same rounding) instead of one chain of dependent multiply-adds.
    float* o = out + s.Out(bb, i, h) + p0;
    int64_t e = 0;
    for (; e + 4 <= d; e += 4) {
      F16 acc0 = {}, acc1 = {}, acc2 = {}, acc3 = {};
      for (int64_t j = 0; j < T; ++j) {
        const F16* v = vs + j * d + e;
        const F16 aj = a[j];
        if (s.rpe) {
          const float* rv = in.rv + s.R(bb, i, j, h) + e;
          acc0 += aj * (v[0] + rv[0]), acc1 += aj * (v[1] + rv[1]), acc2 += aj * (v[2] + rv[2]), acc3 += aj * (v[3] + rv[3]);
        } else {
          acc0 += aj * v[0], acc1 += aj * v[1], acc2 += aj * v[2], acc3 += aj * v[3];
        }
      }
      StoreF16(o + e * P, acc0), StoreF16(o + (e + 1) * P, acc1), StoreF16(o + (e + 2) * P, acc2), StoreF16(o + (e + 3) * P, acc3);
    }
    for (; e < d; ++e) {
      F16 acc = {};
      for (int64_t j = 0; j < T; ++j) {
        const F16 v = vs[j * d + e];
        acc += a[j] * (s.rpe ? v + in.rv[s.R(bb, i, j, h) + e] : v);
      }
      StoreF16(o + e * P, acc);
    }
  }
}

// Backward for one full tile. da: scratch [T]; dq/dk/dv: scratch [T·d]; gk/gq/gv: this thread's
// relative-term gradients of the current (video, head), still per pixel lane, [T·T·d] each
// (summed over the lanes when the thread moves on: a horizontal sum per element and tile would
// cost more than the products).
FLEXVID_CLONES void BackwardTile16(const Inputs& in, const Dims& s, float scale, int64_t bb, int64_t h, int64_t p0,
                                   const float* gout, const float* attn, F16* da, F16* dq, F16* dk, F16* dv, F16* gk,
                                   F16* gq, F16* gv, F16* packed, float* gqkv) {
  const int64_t T = s.t, d = s.d, P = s.p;
  for (int64_t x = 0; x < T * d; ++x) dq[x] = dk[x] = dv[x] = F16{};
  // packed: q, k, v, the output gradient [T·d] each, then this tile's probabilities [T·T]
  F16 *qs = packed, *ks = packed + T * d, *vs = packed + 2 * T * d, *gos = packed + 3 * T * d, *as = packed + 4 * T * d;
  PackTile(in.qkv, s, 0, bb, h, p0, qs);
  PackTile(in.qkv, s, 1, bb, h, p0, ks);
  PackTile(in.qkv, s, 2, bb, h, p0, vs);
  for (int64_t i = 0; i < T; ++i) {
    for (int64_t e = 0; e < d; ++e) gos[i * d + e] = LoadF16(gout + s.Out(bb, i, h) + e * P + p0);
    for (int64_t j = 0; j < T; ++j) as[i * T + j] = LoadF16(attn + s.Attn(bb, h, i, j) + p0);
  }
  for (int64_t i = 0; i < T; ++i) {
    const F16* go = gos + i * d;
    // da_ij = go_i·(v_j + R^v_ij);  dv_j += a_ij go_i;  dR^v_ij += a_ij go_i
    for (int64_t j = 0; j < T; ++j) {
      const F16* v = vs + j * d;
      const F16 a = as[i * T + j];
      F16 acc = {};
      if (s.rpe) {
        const float* rv = in.rv + s.R(bb, i, j, h);
        F16* gvij = gv + (i * T + j) * d;
        for (int64_t e = 0; e < d; ++e) {
          const F16 ag = a * go[e];
          acc += go[e] * (v[e] + rv[e]);
          dv[j * d + e] += ag;
          gvij[e] += ag;
        }
      } else {
        for (int64_t e = 0; e < d; ++e) {
          acc += go[e] * v[e];
          dv[j * d + e] += a * go[e];
        }
      }
      da[j] = acc;
    }
    // ds_ij = scale·a_ij·(da_ij − Σ_j a_ij da_ij)
    F16 dot = {};
    for (int64_t j = 0; j < T; ++j) dot += as[i * T + j] * da[j];
    for (int64_t j = 0; j < T; ++j) da[j] = scale * as[i * T + j] * (da[j] - dot);
    // dq_i += ds_ij (k_j + R^k_ij);  dk_j += ds_ij (q_i + R^q_ji);  dR^k_ij += ds_ij q_i;  dR^q_ji += ds_ij k_j
    const F16* q = qs + i * d;
    for (int64_t j = 0; j < T; ++j) {
      const F16* k = ks + j * d;
      const F16 ds = da[j];
      if (s.rpe) {
        const float* rk = in.rk + s.R(bb, i, j, h);
        const float* rq = in.rq + s.R(bb, j, i, h);
        F16* gkij = gk + (i * T + j) * d;
        F16* gqji = gq + (j * T + i) * d;
        for (int64_t e = 0; e < d; ++e) {
          dq[i * d + e] += ds * (k[e] + rk[e]);
          dk[j * d + e] += ds * (q[e] + rq[e]);
          gkij[e] += ds * q[e];
          gqji[e] += ds * k[e];
        }
      } else {
        for (int64_t e = 0; e < d; ++e) {
          dq[i * d + e] += ds * k[e];
          dk[j * d + e] += ds * q[e];
        }
      }
    }
  }
  for (int64_t i = 0; i < T; ++i)
    for (int64_t e = 0; e < d; ++e) {
      StoreF16(gqkv + s.Qkv(bb, i, 0, h) + e * P + p0, dq[i * d + e]);
      StoreF16(gqkv + s.Qkv(bb, i, 1, h) + e * P + p0, dk[i * d + e]);
      StoreF16(gqkv + s.Qkv(bb, i, 2, h) + e * P + p0, dv[i * d + e]);
    }
}

// Add the lane sums of a thread's per-lane relative-term gradients of video bb, head h to g (and
// clear them): g.r*[b, i, j, h·d + e] += Σ_lanes acc[(i·T + j)·d + e].
// Sixteen channels at a time: their 16 lane vectors transposed in registers and added up give the
// 16 sums in one vector (a horizontal sum each would cost ≈ 5× more).
FLEXVID_CLONES void FlushRelativeGrads(const Dims& s, int64_t bb, int64_t h, F16* gk, F16* gq, F16* gv, float* rk,
                                       float* rq, float* rv) {
  const int64_t d16 = s.d / 16 * 16;
  for (int64_t i = 0; i < s.t; ++i)
    for (int64_t j = 0; j < s.t; ++j) {
      const int64_t x0 = (i * s.t + j) * s.d, r0 = s.R(bb, i, j, h);
      for (int part = 0; part < 3; ++part) {
        F16* acc = (part == 0 ? gk : part == 1 ? gq : gv) + x0;
        float* out = (part == 0 ? rk : part == 1 ? rq : rv) + r0;
        for (int64_t e = 0; e < d16; e += 16) {
          F16 t[16];
#pragma GCC unroll 16
          for (int l = 0; l < 16; ++l) t[l] = acc[e + l], acc[e + l] = F16{};
          Transpose16x16(t);  // t[lane][l] = acc[e + l][lane]
          F16 sum = t[0];
#pragma GCC unroll 15
          for (int lane = 1; lane < 16; ++lane) sum += t[lane];
          StoreF16(out + e, LoadF16(out + e) + sum);
        }
        for (int64_t e = d16; e < s.d; ++e) out[e] += SumF16(acc[e]), acc[e] = F16{};
      }
    }
}

void Forward(const Inputs& in, const Dims& s, float scale, float* out, float* attn) {
  at::parallel_for(0, s.Items(), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(s.t * s.t * Dims::kTile);
    F16Array a(s.t), packed(3 * s.t * s.d);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t tile = idx % s.Tiles(), h = (idx / s.Tiles()) % s.heads, bb = idx / (s.Tiles() * s.heads);
      const int64_t p0 = tile * Dims::kTile, w = std::min(Dims::kTile, s.p - p0);
      if (w == Dims::kTile) {
        ForwardTile16(in, s, scale, bb, h, p0, a.data(), packed.data(), out, attn);
      } else {
        ForwardTile(in, s, scale, bb, h, p0, w, buf.data(), out, attn);
      }
    }
  });
}

void Backward(const Inputs& in, const float* gout, const float* attn, const Dims& s, float scale, const Grads& g) {
  std::mutex merge;
  const int64_t rsize = s.b * s.t * s.t * s.c;
  at::parallel_for(0, s.Items(), 1, [&](int64_t begin, int64_t end) {
    const int64_t K = Dims::kTile;
    std::vector<float> da(s.t * s.t * K), dq(s.t * s.d * K), dk(s.t * s.d * K), dv(s.t * s.d * K);
    // This thread's share of the relative-position gradients (every pixel adds to the same R).
    std::vector<float> grk(s.rpe ? rsize : 0), grq(s.rpe ? rsize : 0), grv(s.rpe ? rsize : 0);
    // Full tiles: vector scratch, and per-lane relative-term sums of the current (video, head).
    F16Array da16(s.t), dq16(s.t * s.d), dk16(s.t * s.d), dv16(s.t * s.d), packed16(4 * s.t * s.d + s.t * s.t);
    const int64_t lanes = s.rpe ? s.t * s.t * s.d : 0;
    F16Array gk16(lanes), gq16(lanes), gv16(lanes);
    int64_t open = -1;  // the (video·heads + head) whose lane sums gk16… hold, −1: none
    auto flush = [&] {
      if (s.rpe && open >= 0) {
        FlushRelativeGrads(s, open / s.heads, open % s.heads, gk16.data(), gq16.data(), gv16.data(), grk.data(),
                           grq.data(), grv.data());
      }
      open = -1;
    };
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t tile = idx % s.Tiles(), h = (idx / s.Tiles()) % s.heads, bb = idx / (s.Tiles() * s.heads);
      const int64_t p0 = tile * K, w = std::min(K, s.p - p0);
      if (w == K) {
        if (open != bb * s.heads + h) flush();
        open = bb * s.heads + h;
        BackwardTile16(in, s, scale, bb, h, p0, gout, attn, da16.data(), dq16.data(), dk16.data(), dv16.data(),
                       gk16.data(), gq16.data(), gv16.data(), packed16.data(), g.qkv);
      } else {
        BackwardTile(in, s, scale, bb, h, p0, w, gout, attn, da.data(), dq.data(), dk.data(), dv.data(), grk.data(),
                     grq.data(), grv.data(), g.qkv);
      }
    }
    flush();
    if (s.rpe) {
      std::lock_guard<std::mutex> lock(merge);
      for (int64_t x = 0; x < rsize; ++x) {
        g.rk[x] += grk[x];
        g.rq[x] += grq[x];
        g.rv[x] += grv[x];
      }
    }
  });
}

Dims GetDims(const at::Tensor& qkv, const at::Tensor& rk, const at::Tensor& bias, int64_t b, int64_t heads) {
  const int64_t t = qkv.size(0) / b, c = qkv.size(1) / 3;
  return {b, t, c, qkv.size(2), heads, c / heads, rk.numel() > 0, bias.numel() > 0};
}

Inputs GetInputs(const at::Tensor& qkv, const at::Tensor& rk, const at::Tensor& rq, const at::Tensor& rv,
                 const at::Tensor& bias, const Dims& s) {
  auto ptr = [](const at::Tensor& t, bool present) { return present ? t.data_ptr<float>() : nullptr; };
  return {qkv.data_ptr<float>(), ptr(rk, s.rpe), ptr(rq, s.rpe), ptr(rv, s.rpe), ptr(bias, s.bias)};
}

class TemporalAttentionFunction : public torch::autograd::Function<TemporalAttentionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv, const at::Tensor& rk,
                            const at::Tensor& rq, const at::Tensor& rv, const at::Tensor& bias, int64_t b,
                            int64_t heads, double scale, bool keep_probabilities) {
    const Dims s = GetDims(qkv, rk, bias, b, heads);
    at::Tensor out = at::empty({s.b * s.t, s.c, s.p}, qkv.options());
    // The probabilities are kept for backward only; sampling does not write them.
    at::Tensor attn = keep_probabilities ? at::empty({s.b, s.heads, s.t, s.t, s.p}, qkv.options())
                                         : at::empty({0}, qkv.options());
    const Inputs in = GetInputs(qkv, rk, rq, rv, bias, s);
    Forward(in, s, static_cast<float>(scale), out.data_ptr<float>(), keep_probabilities ? attn.data_ptr<float>() : nullptr);
    ctx->save_for_backward({qkv, rk, rq, rv, bias, attn});
    ctx->saved_data["b"] = b;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    RefuseDoubleBackward("flexvid::temporal_attention (fused attention)", "setFusedAttention(false) or FLEXVID_FUSED_ATTENTION=0");
    auto saved = ctx->get_saved_variables();
    const at::Tensor &qkv = saved[0], &rk = saved[1], &rq = saved[2], &rv = saved[3], &bias = saved[4], &attn = saved[5];
    const Dims s = GetDims(qkv, rk, bias, ctx->saved_data["b"].toInt(), ctx->saved_data["heads"].toInt());
    at::Tensor gout = grads[0].contiguous();
    at::Tensor gqkv = at::empty_like(qkv);
    at::Tensor grk, grq, grv;
    if (s.rpe) grk = at::zeros_like(rk), grq = at::zeros_like(rq), grv = at::zeros_like(rv);
    const Inputs in = GetInputs(qkv, rk, rq, rv, bias, s);
    Grads g{gqkv.data_ptr<float>(), s.rpe ? grk.data_ptr<float>() : nullptr, s.rpe ? grq.data_ptr<float>() : nullptr,
            s.rpe ? grv.data_ptr<float>() : nullptr};
    Backward(in, gout.data_ptr<float>(), attn.data_ptr<float>(), s, static_cast<float>(ctx->saved_data["scale"].toDouble()), g);
    return {gqkv, grk, grq, grv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

// See the top of the file. Absent rk/rq/rv/bias travel as empty tensors.
at::Tensor TemporalAttention(const at::Tensor& qkv, const c10::optional<at::Tensor>& rk,
                             const c10::optional<at::Tensor>& rq, const c10::optional<at::Tensor>& rv,
                             const c10::optional<at::Tensor>& bias, int64_t b, int64_t heads, double scale) {
  TORCH_CHECK(qkv.dim() == 3 && b > 0 && qkv.size(0) % b == 0 && heads > 0 && qkv.size(1) % (3 * heads) == 0,
              "flexvid::temporal_attention: expected qkv [B·T, 3C, P] with B = ", b, " and C divisible by ", heads,
              " heads, got ", qkv.sizes());
  TORCH_CHECK(qkv.device().is_cpu() && qkv.scalar_type() == at::kFloat,
              "flexvid::temporal_attention: float32 CPU tensors only, got ", qkv.scalar_type(), " on ", qkv.device());
  const int64_t t = qkv.size(0) / b, c = qkv.size(1) / 3;
  auto opt = [&](const c10::optional<at::Tensor>& x, std::vector<int64_t> shape, const char* what) -> at::Tensor {
    if (!x || !x->defined() || x->numel() == 0) return at::empty({0}, qkv.options());
    TORCH_CHECK(x->sizes() == c10::IntArrayRef(shape), "flexvid::temporal_attention: ", what, " must be ",
                c10::IntArrayRef(shape), ", got ", x->sizes());
    TORCH_CHECK(x->scalar_type() == at::kFloat && x->device().is_cpu(), "flexvid::temporal_attention: ", what,
                " must be float32 on the CPU");
    return x->contiguous();
  };
  at::Tensor k = opt(rk, {b, t, t, c}, "rk"), q = opt(rq, {b, t, t, c}, "rq"), v = opt(rv, {b, t, t, c}, "rv");
  TORCH_CHECK((k.numel() > 0) == (q.numel() > 0) && (q.numel() > 0) == (v.numel() > 0),
              "flexvid::temporal_attention: give all of rk, rq, rv or none");
  const bool grad = at::GradMode::is_enabled() && (qkv.requires_grad() || k.requires_grad() || q.requires_grad() || v.requires_grad());
  return TemporalAttentionFunction::apply(qkv.contiguous(), k, q, v, opt(bias, {b, t, t}, "bias"), b, heads, scale, grad);
}

TORCH_LIBRARY_FRAGMENT(flexvid, m) {
  m.def(
      "temporal_attention(Tensor qkv, Tensor? rk, Tensor? rq, Tensor? rv, Tensor? bias, int b, int heads, float "
      "scale) -> Tensor");
}
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) { m.impl("temporal_attention", &TemporalAttention); }

}  // namespace flexvid
