// flexvid::adamw_ — one AdamW update of every parameter in one pass over memory.
//
// Why: the multi-tensor (`_foreach_*`) form of the update still runs nine operators per
// parameter, each a separate sweep over p, g, m, v: ≈ 3 500 operator calls and ≈ 730 MB of memory
// traffic per step for the Balls model's 390 tensors (8.2 M parameters), ≈ 20 ms of a 350 ms
// training step. Here each element is read and written once (p, g, m, v in; p, m, v out).
//
// Same arithmetic as the operators it replaces, element by element and in the same order, with
// each intermediate rounded to the tensor's type (the result is bit-identical to PyTorch 1.13's
// single-tensor AdamW and to our `_foreach_*` path — test/nn/optim.test.ts checks both):
//   p ← p·decay                      (mul_, only when decay ≠ 1)
//   m ← fma(g, 1−β₁, m·β₁)           (mul_, then add_(g, alpha): ATen's vector kernel is an FMA)
//   v ← fma((1−β₂)·g, g, v·β₂)        (mul_, then addcmul_: contracted to an FMA in Debian's build)
//   d ← √v / √(1−β₂ᵗ) + ε            (sqrt, div_, add_)
//   p ← p + ((−step)·m) / d          (addcdiv_)
#include <torch/torch.h>

#include "autograd_util.h"
#include <torch/library.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FLEXVID_STREAMING_ADAMW 1
#endif

#include "simd.h"

namespace flexvid {
namespace {

struct Span {
  int64_t tensor, begin, end;
};

template <typename T>
struct Constants {
  T decay, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step;
  bool apply_decay;
};

template <typename T>
FLEXVID_CLONES void UpdateSpan(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n,
                               const Constants<T> c) {
  if (c.apply_decay) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) p[i] = p[i] * c.decay;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    const T mi = std::fma(gi, c.one_minus_beta1, m[i] * c.beta1);
    const T scaled = c.one_minus_beta2 * gi;
    const T vb = v[i] * c.beta2;
    const T vi = std::fma(scaled, gi, vb);
    m[i] = mi;
    v[i] = vi;
    T d = std::sqrt(vi);
    d = d / c.bc2_sqrt;
    d = d + c.eps;
    const T num = c.neg_step * mi;
    p[i] = p[i] + num / d;
  }
}

#ifdef FLEXVID_STREAMING_ADAMW
// The float32 update with AVX-512 and non-temporal stores for p, m and v. Why: the update streams
// ≈ 8 bytes per parameter in and 3 × 4 out through memory (the Balls model's 33 MB tensors do not
// stay in any cache), and ordinary stores first read every destination line (read-for-ownership):
// ≈ 100 MB more traffic per step for the Balls model. The arithmetic is UpdateSpan's, operation
// for operation (IEEE multiply, FMA, square root, divide and add: the same roundings), so the
// result is bit-identical. p, m and v must be 64-byte aligned (libtorch's allocations are).
__attribute__((target("avx512f"))) void UpdateSpanStreaming(float* p, const float* g, float* m, float* v, int64_t n,
                                                             const Constants<float> c) {
  const __m512 decay = _mm512_set1_ps(c.decay), beta1 = _mm512_set1_ps(c.beta1),
               one_minus_beta1 = _mm512_set1_ps(c.one_minus_beta1), beta2 = _mm512_set1_ps(c.beta2),
               one_minus_beta2 = _mm512_set1_ps(c.one_minus_beta2), bc2_sqrt = _mm512_set1_ps(c.bc2_sqrt),
               eps = _mm512_set1_ps(c.eps), neg_step = _mm512_set1_ps(c.neg_step);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 pi = _mm512_load_ps(p + i);
    if (c.apply_decay) pi = _mm512_mul_ps(pi, decay);
    const __m512 gi = _mm512_loadu_ps(g + i);
    const __m512 mi = _mm512_fmadd_ps(gi, one_minus_beta1, _mm512_mul_ps(_mm512_load_ps(m + i), beta1));
    const __m512 vi = _mm512_fmadd_ps(_mm512_mul_ps(one_minus_beta2, gi), gi, _mm512_mul_ps(_mm512_load_ps(v + i), beta2));
    const __m512 d = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vi), bc2_sqrt), eps);
    pi = _mm512_add_ps(pi, _mm512_div_ps(_mm512_mul_ps(neg_step, mi), d));
    _mm512_stream_ps(m + i, mi);
    _mm512_stream_ps(v + i, vi);
    _mm512_stream_ps(p + i, pi);
  }
  _mm_sfence();  // non-temporal stores are weakly ordered: make them visible before the threads join
  if (i < n) UpdateSpan<float>(p + i, g + i, m + i, v + i, n - i, c);
}

bool Aligned64(const void* x) { return (reinterpret_cast<uintptr_t>(x) & 63) == 0; }
#endif

template <typename T>
void Update(const std::vector<at::Tensor>& ps, const std::vector<at::Tensor>& gs, const std::vector<at::Tensor>& ms,
            const std::vector<at::Tensor>& vs, const Constants<T>& c) {
  // Work items of at most 32 K elements, so that one big tensor and many small ones both spread
  // over the threads.
  constexpr int64_t kChunk = 32768;
  std::vector<Span> spans;
  for (size_t t = 0; t < ps.size(); ++t) {
    const int64_t n = ps[t].numel();
    for (int64_t b = 0; b < n; b += kChunk) spans.push_back({static_cast<int64_t>(t), b, std::min(n, b + kChunk)});
  }
#ifdef FLEXVID_STREAMING_ADAMW
  static const bool streaming = __builtin_cpu_supports("avx512f");
#endif
  at::parallel_for(0, static_cast<int64_t>(spans.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const Span& sp = spans[s];
      const int64_t t = sp.tensor;
      T* p = ps[t].data_ptr<T>() + sp.begin;
      const T* g = gs[t].data_ptr<T>() + sp.begin;
      T* m = ms[t].data_ptr<T>() + sp.begin;
      T* v = vs[t].data_ptr<T>() + sp.begin;
#ifdef FLEXVID_STREAMING_ADAMW
      if constexpr (std::is_same_v<T, float>) {
        if (streaming && Aligned64(p) && Aligned64(m) && Aligned64(v)) {
          UpdateSpanStreaming(p, g, m, v, sp.end - sp.begin, c);
          continue;
        }
      }
#endif
      UpdateSpan<T>(p, g, m, v, sp.end - sp.begin, c);
    }
  });
}

template <typename T>
Constants<T> MakeConstants(double decay, double beta1, double beta2, double bc2_sqrt, double eps, double step_size) {
  // The operators this replaces take their scalars as doubles and convert them to the tensor's type.
  return Constants<T>{static_cast<T>(decay),    static_cast<T>(beta1),    static_cast<T>(1 - beta1),
                      static_cast<T>(beta2),    static_cast<T>(1 - beta2), static_cast<T>(bc2_sqrt),
                      static_cast<T>(eps),      static_cast<T>(-step_size), decay != 1.0};
}

}  // namespace

// In place on params, exp_avg, exp_avg_sq; grads read. The scalars are AdamW's for one step count:
// decay = 1 − lr·λ, bc2_sqrt = √(1 − β₂ᵗ), step_size = lr / (1 − β₁ᵗ). Returns false, touching
// nothing, unless all four lists are equally long and hold contiguous CPU tensors of one floating
// type (float32 or float64), pairwise of equal size — the caller then takes the per-operator path.
// (Checked here rather than by the caller: one call instead of a metadata query per tensor.)
bool AdamW(at::TensorList params, at::TensorList grads, at::TensorList exp_avg, at::TensorList exp_avg_sq, double decay,
           double beta1, double beta2, double bc2_sqrt, double eps, double step_size) {
  const size_t n = params.size();
  if (n == 0 || grads.size() != n || exp_avg.size() != n || exp_avg_sq.size() != n) return false;
  const at::ScalarType dtype = params[0].scalar_type();
  if (dtype != at::kFloat && dtype != at::kDouble) return false;
  std::vector<at::Tensor> ps, gs, ms, vs;
  for (size_t i = 0; i < n; ++i) {
    for (const at::Tensor* t : {&params[i], &grads[i], &exp_avg[i], &exp_avg_sq[i]}) {
      if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != dtype || !t->is_contiguous() ||
          t->numel() != params[i].numel()) {
        return false;
      }
    }
    ps.push_back(params[i]), gs.push_back(grads[i]), ms.push_back(exp_avg[i]), vs.push_back(exp_avg_sq[i]);
  }
  if (dtype == at::kFloat) {
    Update<float>(ps, gs, ms, vs, MakeConstants<float>(decay, beta1, beta2, bc2_sqrt, eps, step_size));
  } else {
    Update<double>(ps, gs, ms, vs, MakeConstants<double>(decay, beta1, beta2, bc2_sqrt, eps, step_size));
  }
  for (size_t i = 0; i < n; ++i) MarkWritten(ps[i]), MarkWritten(ms[i]), MarkWritten(vs[i]);
  return true;
}

TORCH_LIBRARY_FRAGMENT(flexvid, m) {
  m.def("adamw_(Tensor(a!)[] params, Tensor[] grads, Tensor(b!)[] exp_avg, Tensor(c!)[] exp_avg_sq, float decay, "
        "float beta1, float beta2, float bc2_sqrt, float eps, float step_size) -> bool");
}
TORCH_LIBRARY_IMPL(flexvid, CPU, m) { m.impl("adamw_", &AdamW); }

}  // namespace flexvid
