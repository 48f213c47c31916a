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
// for T² = 100 multiply-adds per element. Here each (b, p, h) block is a few hundred
// multiply-adds in registers; the products' gradients for R (shared by all pixels) are summed
// per thread.
#include <torch/torch.h>
#include <torch/library.h>

#include <ATen/Parallel.h>

#include <cmath>
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
  int64_t Blocks() const { return b * heads * p; }
};

inline float Dot(const float* x, const float* y, int64_t n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t e = 0; e < n; ++e) s += x[e] * y[e];
  return s;
}

// A block's q, k, v gathered as [T][d] rows (its values sit P floats apart in qkv).
struct Block {
  std::vector<float> q, k, v;
  explicit Block(const Dims& s) : q(s.t * s.d), k(s.t * s.d), v(s.t * s.d) {}
  void Load(const float* qkv, const Dims& s, int64_t bb, int64_t h, int64_t pp) {
    for (int64_t i = 0; i < s.t; ++i)
      for (int part = 0; part < 3; ++part) {
        const float* src = qkv + s.Qkv(bb, i, part, h) + pp;
        float* dst = (part == 0 ? q : part == 1 ? k : v).data() + i * s.d;
        for (int64_t e = 0; e < s.d; ++e) dst[e] = src[e * s.p];
      }
  }
};

struct Inputs {
  const float *qkv, *rk, *rq, *rv, *bias;
};

void Forward(const Inputs& in, const Dims& s, float scale, float* out, float* attn) {
  at::parallel_for(0, s.Blocks(), 16, [&](int64_t begin, int64_t end) {
    Block blk(s);
    std::vector<float> a(s.t * s.t), o(s.d);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t pp = idx % s.p, h = (idx / s.p) % s.heads, bb = idx / (s.p * s.heads);
      blk.Load(in.qkv, s, bb, h, pp);
      for (int64_t i = 0; i < s.t; ++i) {
        float* row = a.data() + i * s.t;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < s.t; ++j) {
          float z = Dot(&blk.q[i * s.d], &blk.k[j * s.d], s.d);
          if (s.rpe) z += Dot(&blk.q[i * s.d], in.rk + s.R(bb, i, j, h), s.d) + Dot(&blk.k[j * s.d], in.rq + s.R(bb, j, i, h), s.d);
          z *= scale;
          if (s.bias) z += in.bias[(bb * s.t + i) * s.t + j];
          row[j] = z;
          mx = z > mx ? z : mx;
        }
        float sum = 0;
        for (int64_t j = 0; j < s.t; ++j) {
          // Masked logits (−∞) get exactly 0 (ExpApprox clamps its argument).
          row[j] = row[j] == -std::numeric_limits<float>::infinity() ? 0.0f : ExpApprox(row[j] - mx);
          sum += row[j];
        }
        for (int64_t j = 0; j < s.t; ++j) row[j] /= sum;
        std::fill(o.begin(), o.end(), 0.0f);
        for (int64_t j = 0; j < s.t; ++j) {
          const float w = row[j];
          if (w == 0.0f) continue;
          const float* vj = &blk.v[j * s.d];
#pragma omp simd
          for (int64_t e = 0; e < s.d; ++e) o[e] += w * vj[e];
          if (s.rpe) {
            const float* r = in.rv + s.R(bb, i, j, h);
#pragma omp simd
            for (int64_t e = 0; e < s.d; ++e) o[e] += w * r[e];
          }
        }
        float* dst = out + s.Out(bb, i, h) + pp;
        for (int64_t e = 0; e < s.d; ++e) dst[e * s.p] = o[e];
      }
      std::copy(a.begin(), a.end(), attn + idx * s.t * s.t);
    }
  });
}

struct Grads {
  float *qkv, *rk, *rq, *rv;  // rk/rq/rv: accumulated (+=), the rest written
};

void Backward(const Inputs& in, const float* gout, const float* attn, const Dims& s, float scale, const Grads& g) {
  std::mutex merge;
  const int64_t rsize = s.b * s.t * s.t * s.c;
  at::parallel_for(0, s.Blocks(), 16, [&](int64_t begin, int64_t end) {
    Block blk(s);
    std::vector<float> go(s.t * s.d), da(s.t * s.t), dq(s.t * s.d), dk(s.t * s.d), dv(s.t * s.d);
    // This thread's share of the relative-position gradients (every pixel adds to the same R).
    std::vector<float> grk(s.rpe ? rsize : 0), grq(s.rpe ? rsize : 0), grv(s.rpe ? rsize : 0);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t pp = idx % s.p, h = (idx / s.p) % s.heads, bb = idx / (s.p * s.heads);
      blk.Load(in.qkv, s, bb, h, pp);
      for (int64_t i = 0; i < s.t; ++i) {
        const float* src = gout + s.Out(bb, i, h) + pp;
        for (int64_t e = 0; e < s.d; ++e) go[i * s.d + e] = src[e * s.p];
      }
      const float* a = attn + idx * s.t * s.t;
      std::fill(dv.begin(), dv.end(), 0.0f);
      std::fill(dq.begin(), dq.end(), 0.0f);
      std::fill(dk.begin(), dk.end(), 0.0f);
      for (int64_t i = 0; i < s.t; ++i) {
        const float* goi = &go[i * s.d];
        // da_ij = go_i·(v_j + R^v_ij); dv_j += a_ij go_i; dR^v_ij += a_ij go_i
        float dot = 0;
        for (int64_t j = 0; j < s.t; ++j) {
          const float w = a[i * s.t + j];
          float z = Dot(goi, &blk.v[j * s.d], s.d);
          if (s.rpe) {
            z += Dot(goi, in.rv + s.R(bb, i, j, h), s.d);
            float* r = grv.data() + s.R(bb, i, j, h);
#pragma omp simd
            for (int64_t e = 0; e < s.d; ++e) r[e] += w * goi[e];
          }
          float* dvj = &dv[j * s.d];
#pragma omp simd
          for (int64_t e = 0; e < s.d; ++e) dvj[e] += w * goi[e];
          da[i * s.t + j] = z;
          dot += w * z;
        }
        // ds_ij = scale·a_ij (da_ij − Σ_j a_ij da_ij): the gradient of q·k + q·R^k + k·R^q
        for (int64_t j = 0; j < s.t; ++j) {
          const float ds = scale * a[i * s.t + j] * (da[i * s.t + j] - dot);
          if (ds == 0.0f) continue;
          const float *qi = &blk.q[i * s.d], *kj = &blk.k[j * s.d];
          float *dqi = &dq[i * s.d], *dkj = &dk[j * s.d];
#pragma omp simd
          for (int64_t e = 0; e < s.d; ++e) {
            dqi[e] += ds * kj[e];
            dkj[e] += ds * qi[e];
          }
          if (s.rpe) {
            const float *rkij = in.rk + s.R(bb, i, j, h), *rqji = in.rq + s.R(bb, j, i, h);
            float *grkij = grk.data() + s.R(bb, i, j, h), *grqji = grq.data() + s.R(bb, j, i, h);
#pragma omp simd
            for (int64_t e = 0; e < s.d; ++e) {
              dqi[e] += ds * rkij[e];
              dkj[e] += ds * rqji[e];
              grkij[e] += ds * qi[e];
              grqji[e] += ds * kj[e];
            }
          }
        }
      }
      for (int64_t i = 0; i < s.t; ++i)
        for (int part = 0; part < 3; ++part) {
          const float* src = (part == 0 ? dq : part == 1 ? dk : dv).data() + i * s.d;
          float* dst = g.qkv + s.Qkv(bb, i, part, h) + pp;
          for (int64_t e = 0; e < s.d; ++e) dst[e * s.p] = src[e];
        }
    }
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

class TemporalAttentionFunction : public torch::autograd::Function<TemporalAttentionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv, const at::Tensor& rk,
                            const at::Tensor& rq, const at::Tensor& rv, const at::Tensor& bias, int64_t b,
                            int64_t heads, double scale) {
    const Dims s = GetDims(qkv, rk, bias, b, heads);
    at::Tensor out = at::empty({s.b * s.t, s.c, s.p}, qkv.options());
    at::Tensor attn = at::empty({s.Blocks(), s.t, s.t}, qkv.options());
    Inputs in{qkv.data_ptr<float>(), s.rpe ? rk.data_ptr<float>() : nullptr, s.rpe ? rq.data_ptr<float>() : nullptr,
              s.rpe ? rv.data_ptr<float>() : nullptr, s.bias ? bias.data_ptr<float>() : nullptr};
    Forward(in, s, static_cast<float>(scale), out.data_ptr<float>(), attn.data_ptr<float>());
    ctx->save_for_backward({qkv, rk, rq, rv, bias, attn});
    ctx->saved_data["b"] = b;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "flexvid::temporal_attention (fused attention) is not twice differentiable; turn it off for "
                "higher-order gradients with setFusedAttention(false) or FLEXVID_FUSED_ATTENTION=0");
    auto saved = ctx->get_saved_variables();
    const at::Tensor &qkv = saved[0], &rk = saved[1], &rq = saved[2], &rv = saved[3], &bias = saved[4], &attn = saved[5];
    const Dims s = GetDims(qkv, rk, bias, ctx->saved_data["b"].toInt(), ctx->saved_data["heads"].toInt());
    at::Tensor gout = grads[0].contiguous();
    at::Tensor gqkv = at::empty_like(qkv);
    at::Tensor grk, grq, grv;
    if (s.rpe) grk = at::zeros_like(rk), grq = at::zeros_like(rq), grv = at::zeros_like(rv);
    Inputs in{qkv.data_ptr<float>(), s.rpe ? rk.data_ptr<float>() : nullptr, s.rpe ? rq.data_ptr<float>() : nullptr,
              s.rpe ? rv.data_ptr<float>() : nullptr, s.bias ? bias.data_ptr<float>() : nullptr};
    Grads g{gqkv.data_ptr<float>(), s.rpe ? grk.data_ptr<float>() : nullptr, s.rpe ? grq.data_ptr<float>() : nullptr,
            s.rpe ? grv.data_ptr<float>() : nullptr};
    Backward(in, gout.data_ptr<float>(), attn.data_ptr<float>(), s, static_cast<float>(ctx->saved_data["scale"].toDouble()), g);
    return {gqkv, grk, grq, grv, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
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
  return TemporalAttentionFunction::apply(qkv.contiguous(), k, q, v, opt(bias, {b, t, t}, "bias"), b, heads, scale);
}

TORCH_LIBRARY_FRAGMENT(flexvid, m) {
  m.def(
      "temporal_attention(Tensor qkv, Tensor? rk, Tensor? rq, Tensor? rv, Tensor? bias, int b, int heads, float "
      "scale) -> Tensor");
}
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) { m.impl("temporal_attention", &TemporalAttention); }

}  // namespace flexvid
