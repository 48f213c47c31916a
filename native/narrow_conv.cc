// flexvid::conv3x3_narrow — 3×3, stride-1, padding-1 convolution of [N, Ci, H, W] float32 maps
// when one side has few channels: the U-Net's output convolution (64 → 3) and its input
// convolution (3–5 → 64), forward and backward.
//
// Why: libtorch's oneDNN path handles a 3-channel side badly — on a Zen 4 host the Balls output
// convolution [10, 64, 32²] → 3 takes 3 ms forward and 5 ms backward for 35 MFLOP each way
// (≈ 7–12 GFLOP/s), ≈ 2 % of a training step. Computed directly, 16 output pixels per register,
// the work is a few hundred microseconds.
//
// Layout: each work item copies the input rows it reads into a thread-local buffer with a zero
// on either side of every row (and zero rows above and below the image), so the nine taps are
// plain unaligned loads at fixed offsets. W must be a multiple of 16 (every U-Net image size is).
#include <torch/torch.h>
#include <torch/library.h>

#include <ATen/Parallel.h>

#include "autograd_util.h"
#include "simd.h"

namespace flexvid {
namespace {

// A padded row: kLead floats before the data (the last of them a zero: the tap left of x = 0), the
// W values, then zeros. Data start 64-byte aligned within the buffer.
constexpr int64_t kLead = 16;
int64_t PaddedStride(int64_t w) { return (kLead + w + 1 + 15) / 16 * 16; }

// Rows [y0 - 1, y1] of plane src [H, W] into buf ((y1 - y0 + 2) rows of `stride`), zero outside the image.
void PadRows(const float* src, int64_t h, int64_t w, int64_t y0, int64_t y1, float* buf, int64_t stride) {
  for (int64_t r = y0 - 1; r <= y1; ++r) {
    float* row = buf + (r - (y0 - 1)) * stride;
    if (r < 0 || r >= h) {
      std::memset(row, 0, stride * sizeof(float));
      continue;
    }
    row[kLead - 1] = 0.0f;
    std::memcpy(row + kLead, src + r * w, w * sizeof(float));
    row[kLead + w] = 0.0f;
  }
}

// Output channels [co0, co0 + CB) of rows [y0, y1) of one sample, the terms of input channels
// [c0, c1): out[co, y, x] (+)= Σ_ci Σ_ky,kx w[co, ci, ky·3 + kx] · x[ci, y + ky − 1, x + kx − 1],
// starting from the bias when `first`, else from what out holds. buf holds the padded rows of
// channels c0… (channel c0's plane first, planes of y1 − y0 + 2 rows); the CB accumulators share each loaded input vector.
template <int CB>
FLEXVID_INLINE void ForwardBlock(const float* buf, int64_t plane, int64_t stride, const float* w, const float* bias,
                                 float* out, int64_t ci_n, int64_t c0, int64_t c1, bool first, int64_t co0, int64_t h,
                                 int64_t wd, int64_t y0, int64_t y1) {
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t x0 = 0; x0 < wd; x0 += 16) {
      F16 acc[CB];
      float* o = out + (co0 * h + y) * wd + x0;
#pragma GCC unroll 4
      for (int j = 0; j < CB; ++j)
        acc[j] = first ? F16{} + (bias ? bias[co0 + j] : 0.0f) : LoadF16(o + j * h * wd);
      const float* r = buf + (y - y0) * stride + kLead - 1 + x0;
      for (int64_t ci = c0; ci < c1; ++ci, r += plane) {
#pragma GCC unroll 9
        for (int k = 0; k < 9; ++k) {
          const F16 v = LoadF16(r + (k / 3) * stride + k % 3);
#pragma GCC unroll 4
          for (int j = 0; j < CB; ++j) acc[j] += w[((co0 + j) * ci_n + ci) * 9 + k] * v;
        }
      }
#pragma GCC unroll 4
      for (int j = 0; j < CB; ++j) StoreF16(o + j * h * wd, acc[j]);
    }
  }
}

// Input channels per pass: their padded rows around one output row (3 rows each) stay in L1.
constexpr int64_t kChannelBlock = 8;

// Rows [y0, y1) of every output channel of one sample (x [Ci, H, W], out [Co, H, W]), input
// channels kChannelBlock at a time; buf holds kChannelBlock padded planes of y1 − y0 + 2 rows.
FLEXVID_CLONES void ForwardBand(const float* x, const float* w, const float* bias, float* out, int64_t ci_n,
                                int64_t co_n, int64_t h, int64_t wd, int64_t y0, int64_t y1, float* buf) {
  const int64_t stride = PaddedStride(wd), plane = (y1 - y0 + 2) * stride;
  for (int64_t c0 = 0; c0 < ci_n; c0 += kChannelBlock) {
    const int64_t c1 = std::min(ci_n, c0 + kChannelBlock);
    for (int64_t ci = c0; ci < c1; ++ci) PadRows(x + ci * h * wd, h, wd, y0, y1, buf + (ci - c0) * plane, stride);
    const bool first = c0 == 0;
    int64_t co = 0;
    for (; co + 4 <= co_n; co += 4) ForwardBlock<4>(buf, plane, stride, w, bias, out, ci_n, c0, c1, first, co, h, wd, y0, y1);
    switch (co_n - co) {
      case 3: ForwardBlock<3>(buf, plane, stride, w, bias, out, ci_n, c0, c1, first, co, h, wd, y0, y1); break;
      case 2: ForwardBlock<2>(buf, plane, stride, w, bias, out, ci_n, c0, c1, first, co, h, wd, y0, y1); break;
      case 1: ForwardBlock<1>(buf, plane, stride, w, bias, out, ci_n, c0, c1, first, co, h, wd, y0, y1); break;
      default: break;
    }
  }
}

// out [N, Co, H, W] = conv(x [N, Ci, H, W], w [Co, Ci, 3, 3]) + bias; work items are bands of rows.
at::Tensor Forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) {
  const int64_t n = x.size(0), ci_n = x.size(1), h = x.size(2), wd = x.size(3), co_n = w.size(0);
  at::Tensor out = at::empty({n, co_n, h, wd}, x.options());
  if (out.numel() == 0) return out;
  // Bands of ≤ 16 rows, at least ≈ 8 items per thread so uneven bands still share out evenly.
  const int64_t threads = at::get_num_threads();
  const int64_t band = std::clamp<int64_t>((n * h + 8 * threads - 1) / (8 * threads), 1, 16);
  const int64_t bands = (h + band - 1) / band;
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  const float* bp = bias.defined() ? bias.data_ptr<float>() : nullptr;  // undefined in the input-gradient pass
  float* op = out.data_ptr<float>();
  at::parallel_for(0, n * bands, 1, [&](int64_t begin, int64_t end) {
    F16Array buf(kChannelBlock * (band + 2) * PaddedStride(wd) / 16);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t s = item / bands, y0 = (item % bands) * band, y1 = std::min(h, y0 + band);
      ForwardBand(xp + s * ci_n * h * wd, wp, bp, op + s * co_n * h * wd, ci_n, co_n, h, wd, y0, y1, reinterpret_cast<float*>(buf.data()));
    }
  });
  return out;
}

// gw[co, ci, k] for co in [co0, co0 + CB) and one ci: Σ_n,y,x g[n, co, y, x] · x[n, ci, y + ky − 1, x + kx − 1].
// 9·CB vector accumulators (27 registers at CB = 3) summed across lanes at the end.
template <int CB>
FLEXVID_INLINE void WeightGradBlock(const float* x, const float* g, float* gw, float* buf, int64_t n, int64_t ci_n,
                                    int64_t co_n, int64_t ci, int64_t co0, int64_t h, int64_t wd) {
  const int64_t stride = PaddedStride(wd);
  F16 acc[CB][9];
#pragma GCC unroll 3
  for (int j = 0; j < CB; ++j)
#pragma GCC unroll 9
    for (int k = 0; k < 9; ++k) acc[j][k] = F16{};
  for (int64_t s = 0; s < n; ++s) {
    PadRows(x + (s * ci_n + ci) * h * wd, h, wd, 0, h, buf, stride);
    const float* gs = g + (s * co_n + co0) * h * wd;
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x0 = 0; x0 < wd; x0 += 16) {
        F16 gv[CB];
#pragma GCC unroll 3
        for (int j = 0; j < CB; ++j) gv[j] = LoadF16(gs + (j * h + y) * wd + x0);
        const float* r = buf + y * stride + kLead - 1 + x0;
#pragma GCC unroll 9
        for (int k = 0; k < 9; ++k) {
          const F16 v = LoadF16(r + (k / 3) * stride + k % 3);
#pragma GCC unroll 3
          for (int j = 0; j < CB; ++j) acc[j][k] += gv[j] * v;
        }
      }
    }
  }
#pragma GCC unroll 3
  for (int j = 0; j < CB; ++j)
#pragma GCC unroll 9
    for (int k = 0; k < 9; ++k) gw[((co0 + j) * ci_n + ci) * 9 + k] = SumF16(acc[j][k]);
}

FLEXVID_CLONES void WeightGradItem(const float* x, const float* g, float* gw, float* buf, int64_t n, int64_t ci_n,
                                   int64_t co_n, int64_t ci, int64_t co0, int64_t h, int64_t wd) {
  switch (std::min<int64_t>(3, co_n - co0)) {
    case 3: WeightGradBlock<3>(x, g, gw, buf, n, ci_n, co_n, ci, co0, h, wd); break;
    case 2: WeightGradBlock<2>(x, g, gw, buf, n, ci_n, co_n, ci, co0, h, wd); break;
    default: WeightGradBlock<1>(x, g, gw, buf, n, ci_n, co_n, ci, co0, h, wd); break;
  }
}

// gw [Co, Ci, 3, 3] from x [N, Ci, H, W] and g [N, Co, H, W]; items are (ci, block of ≤ 3 output channels).
at::Tensor WeightGrad(const at::Tensor& x, const at::Tensor& g, int64_t co_n) {
  const int64_t n = x.size(0), ci_n = x.size(1), h = x.size(2), wd = x.size(3);
  at::Tensor gw = at::zeros({co_n, ci_n, 3, 3}, x.options());
  if (x.numel() == 0) return gw;
  const int64_t blocks = (co_n + 2) / 3;
  const float* xp = x.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  float* gwp = gw.data_ptr<float>();
  at::parallel_for(0, ci_n * blocks, 1, [&](int64_t begin, int64_t end) {
    F16Array buf((h + 2) * PaddedStride(wd) / 16);
    for (int64_t item = begin; item < end; ++item)
      WeightGradItem(xp, gp, gwp, reinterpret_cast<float*>(buf.data()), n, ci_n, co_n, item / blocks, (item % blocks) * 3, h, wd);
  });
  return gw;
}

class NarrowConvFunction : public torch::autograd::Function<NarrowConvFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const at::Tensor& bias) {
    // x is kept only when the weight's gradient needs it.
    ctx->save_for_backward({w.requires_grad() ? x : at::Tensor(), w});
    return Forward(x, w, bias);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    RefuseDoubleBackward("flexvid::conv3x3_narrow", "FLEXVID_NARROW_CONV=0");
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor g = grads[0].contiguous();
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      // The input's gradient is the convolution of g with the weights transposed and flipped:
      // gx[ci, y, x] = Σ_co Σ_ky,kx w[co, ci, 2 − ky, 2 − kx] · g[co, y + ky − 1, x + kx − 1].
      const at::Tensor wt = w.flip({2, 3}).transpose(0, 1).contiguous();
      gx = Forward(g, wt, at::Tensor());
    }
    if (ctx->needs_input_grad(1)) gw = WeightGrad(x, g, w.size(0));
    if (ctx->needs_input_grad(2)) gb = g.sum({0, 2, 3});
    return {gx, gw, gb};
  }
};

}  // namespace

// x [N, Ci, H, W], w [Co, Ci, 3, 3], bias [Co] or None; float32 CPU, W a multiple of 16 →
// [N, Co, H, W], the 3×3 convolution with stride 1 and padding 1.
at::Tensor Conv3x3Narrow(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 4 && w.dim() == 4 && w.size(1) == x.size(1) && w.size(2) == 3 && w.size(3) == 3,
              "flexvid::conv3x3_narrow: expected x [N, C, H, W] and weight [O, C, 3, 3], got ", x.sizes(), " and ",
              w.sizes());
  TORCH_CHECK(x.size(3) % 16 == 0, "flexvid::conv3x3_narrow: the width must be a multiple of 16, got ", x.size(3));
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat,
              "flexvid::conv3x3_narrow: float32 CPU tensors only");
  // A missing bias is a zero one: autograd functions take defined tensors only.
  const at::Tensor b = bias.has_value() && bias->defined() ? bias->contiguous() : at::zeros({w.size(0)}, x.options());
  TORCH_CHECK(b.dim() == 1 && b.size(0) == w.size(0) && b.scalar_type() == at::kFloat,
              "flexvid::conv3x3_narrow: expected bias [", w.size(0), "] float32, got ", b.sizes());
  return NarrowConvFunction::apply(x.contiguous(), w.contiguous(), b);
}

TORCH_LIBRARY_FRAGMENT(flexvid, m) { m.def("conv3x3_narrow(Tensor x, Tensor w, Tensor? bias) -> Tensor"); }
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) { m.impl("conv3x3_narrow", &Conv3x3Narrow); }

}  // namespace flexvid
