// Winograd F(4×4, 3×3) kernels for blocked activations [N, C/16, H, W, 16] (winograd_f43.cc).
#pragma once

#include <cstdint>

namespace flexvid {

// U [36, rows, cols], the transformed 3×3 filters of w [oc, ic, 3, 3] as the GEMM operand of each
// of the 36 Winograd positions: rows × cols = ic × oc for the forward pass, oc × ic (the filters
// transposed and flipped) for the input gradient. oc and ic multiples of 16.
void WinogradF43Weights(const float* w, int64_t oc, int64_t ic, bool input_grad, float* u);

// y [n, oc/16, h, w, 16] = the 3×3, stride-1, padding-1 convolution of x [n, ic/16, h, w, 16] with
// the filters transformed into u (WinogradF43Weights), plus bias [oc] (nullptr: none). h and w
// multiples of 4, ic and oc multiples of 16.
void WinogradF43Forward(const float* x, const float* u, const float* bias, int64_t n, int64_t ic, int64_t oc, int64_t h,
                        int64_t w, float* y);

// The weight and bias gradients of that convolution: gw [oc, ic, 3, 3] and gb [oc] (nullptr: not
// wanted) from x [n, ic/16, h, w, 16] and the output gradient g [n, oc/16, h, w, 16].
void WinogradF43WeightGrad(const float* x, const float* g, int64_t n, int64_t ic, int64_t oc, int64_t h, int64_t w,
                           float* gw, float* gb);

}  // namespace flexvid
