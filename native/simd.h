// Small helpers for the hand-written CPU loops (fused_norm.cc, attention.cc): a vectorisable exp
// and per-ISA function clones.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

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

}  // namespace flexvid
