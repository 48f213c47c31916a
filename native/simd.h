// Small helpers for the hand-written CPU loops (fused_norm.cc, attention.cc): a vectorisable exp
// and per-ISA function clones.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace flexvid {

#define FLEXVID_INLINE inline __attribute__((always_inline))

// Functions marked FLEXVID_CLONES are compiled for the baseline, AVX2 and AVX-512, and the best
// one is picked when the addon loads (GCC function multiversioning); the loops inside are
// vectorised with `#pragma omp simd` (-fopenmp-simd).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FLEXVID_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define FLEXVID_CLONES
#endif

// exp for float, vectorisable: Cody–Waite range reduction and Cephes' expf polynomial (≈ 1 ulp on
// the clamped range [-87, 88]). std::exp does not vectorise.
FLEXVID_INLINE float ExpApprox(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // n = round(x / ln 2), by the 1.5·2²³ trick (plain float additions vectorise everywhere).
  const float shifter = 12582912.0f;
  float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
FLEXVID_INLINE double ExpApprox(double x) { return std::exp(x); }

// 16 floats as one value: a single AVX-512 register in the x86-64-v4 clone (two AVX2, four SSE
// registers in the others). For kernels whose work items are 16 consecutive pixels: accumulators
// stay in registers, which `#pragma omp simd` loops over a runtime length do not guarantee.
typedef float F16 __attribute__((vector_size(64)));
typedef int32_t I16 __attribute__((vector_size(64)));

// A zero-filled array of n F16 values, 64-byte aligned (std::vector does not promise that here).
class F16Array {
 public:
  explicit F16Array(int64_t n) : p_(static_cast<F16*>(std::aligned_alloc(64, std::max<int64_t>(n, 1) * sizeof(F16)))) {
    if (!p_) throw std::bad_alloc();
    for (int64_t i = 0; i < n; ++i) p_[i] = F16{};
  }
  ~F16Array() { std::free(p_); }
  F16Array(const F16Array&) = delete;
  F16Array& operator=(const F16Array&) = delete;
  F16* data() { return p_; }

 private:
  F16* p_;
};

FLEXVID_INLINE F16 LoadF16(const float* p) {
  F16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
FLEXVID_INLINE void StoreF16(float* p, F16 v) { std::memcpy(p, &v, sizeof v); }
FLEXVID_INLINE F16 SplatF16(float x) { return F16{} + x; }
FLEXVID_INLINE F16 MaxF16(F16 a, F16 b) { return a > b ? a : b; }
FLEXVID_INLINE float SumF16(F16 v) {
  float s = 0;
  for (int i = 0; i < 16; ++i) s += v[i];
  return s;
}

// One round of Transpose16x16: rows i and i + b (i without bit b) exchange their lanes with bit b.
FLEXVID_INLINE void TransposeRound(F16* r, int b, I16 ma, I16 mb) {
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) {
    if (i & b) continue;
    const F16 a = r[i], c = r[i + b];
    r[i] = __builtin_shuffle(a, c, ma);
    r[i + b] = __builtin_shuffle(a, c, mb);
  }
}

// Transpose a 16×16 tile held as 16 values: r[i][j] ← r[j][i]. Four rounds of swapping the
// off-diagonal halves of ever smaller blocks, each a two-source lane permutation (vpermt2ps).
FLEXVID_INLINE void Transpose16x16(F16* r) {
  const I16 m8a = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  const I16 m8b = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  const I16 m4a = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};
  const I16 m4b = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};
  const I16 m2a = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
  const I16 m2b = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
  const I16 m1a = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
  const I16 m1b = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};
  TransposeRound(r, 8, m8a, m8b);
  TransposeRound(r, 4, m4a, m4b);
  TransposeRound(r, 2, m2a, m2b);
  TransposeRound(r, 1, m1a, m1b);
}

// ExpApprox on 16 lanes (the same range reduction and polynomial, so the same values).
FLEXVID_INLINE F16 ExpApproxF16(F16 x) {
  const F16 lo = SplatF16(-87.0f), hi = SplatF16(88.0f);
  x = x < lo ? lo : (x > hi ? hi : x);
  const F16 shifter = SplatF16(12582912.0f);
  const F16 n = (x * 1.44269504088896341f + shifter) - shifter;
  const F16 r = x - n * 0.693359375f + n * 2.12194440e-4f;
  F16 p = SplatF16(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const I16 bits = (__builtin_convertvector(n, I16) + 127) << 23;
  F16 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

}  // namespace flexvid
