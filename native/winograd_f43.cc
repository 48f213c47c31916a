// Winograd F(4×4, 3×3) convolution kernels of our own, for the blocked activation layout
// [N, C/16, H, W, 16] (oneDNN's nChw16c): the forward pass, the input gradient (the same kernel
// with the weights transposed and flipped) and the weight gradient of the U-Net's 3×3, stride-1,
// padding-1 convolutions.
//
// Why: on the Zen 4 hosts this project is measured on, oneDNN 2.6's Winograd kernels
// (jit_wino_4x3, tuned for Skylake) spend about half their time outside the 36 tile products
// (`[20, 128, 16²]` 128 → 128: 3.2–3.5 ms forward, of which the products at this host's sgemm rate
// are ≈ 1.7 ms). Forward: every thread takes chunks of a few dozen 4×4 output tiles and keeps
// everything of a chunk in its own L2: the input tiles' transforms V [36][tiles][C_in], the 36
// products M_ξ = V_ξ · U_ξ with the transformed weights U [36][C_in][C_out] (a register-blocked
// kernel: 12 tiles × 32 output channels), and the output transform that adds the bias and writes
// the 4×4 × 16-channel pieces of the result. Each transform works on 16 channels per vector,
// which the blocked layout holds contiguously. Weight gradient: the transformed input tiles and
// output-gradient tiles of the whole batch, then 36 products [C_in × tiles] · [tiles × C_out]
// shared out by ξ, then the filter transform's transpose.
//
// Transforms (Lavin & Gray 2016, F(4×4, 3×3) with interpolation points 0, ±1, ±2, ∞):
//   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A   for a 6×6 input tile d, a 3×3 filter g, a 4×4 output tile Y;
//   so dM = A dY Aᵀ, dU_ξ = Σ_tiles V_ξᵀ dM_ξ and dg = Gᵀ dU G.
#include "winograd_f43.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <vector>

#include "simd.h"

namespace flexvid {
namespace {

// Bᵀ applied to six values (a column or a row of an input tile).
FLEXVID_INLINE void InputRows(const F16* d, F16* t) {
  // Shared terms: t1, t2 = (d4 − 4·d2) ± (d3 − 4·d1);  t3, t4 = (d4 − d2) ± 2·(d3 − d1).
  const F16 a = d[4] - 4.0f * d[2], b = d[3] - 4.0f * d[1];
  const F16 c = d[4] - d[2], e = 2.0f * (d[3] - d[1]);
  t[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
  t[1] = a + b;
  t[2] = a - b;
  t[3] = c + e;
  t[4] = c - e;
  t[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

// Aᵀ applied to six values: four outputs.
FLEXVID_INLINE void OutputRows(const F16* m, F16* o) {
  const F16 a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], e = m[3] - m[4];
  o[0] = m[0] + a + c;
  o[1] = b + 2.0f * e;
  o[2] = a + 4.0f * c;
  o[3] = b + 8.0f * e + m[5];
}

// G applied to three values: six outputs.
FLEXVID_INLINE void FilterRows(const F16* g, F16* u) {
  const F16 s = g[0] + g[2];
  u[0] = 0.25f * g[0];
  u[1] = (-1.0f / 6.0f) * (s + g[1]);
  u[2] = (-1.0f / 6.0f) * (s - g[1]);
  u[3] = (1.0f / 24.0f) * g[0] + (1.0f / 12.0f) * g[1] + (1.0f / 6.0f) * g[2];
  u[4] = (1.0f / 24.0f) * g[0] - (1.0f / 12.0f) * g[1] + (1.0f / 6.0f) * g[2];
  u[5] = g[2];
}

// A applied to four values (a column or a row of an output tile's gradient): six outputs, the
// transpose of OutputRows (Y = Aᵀ M A, so dM = A dY Aᵀ).
FLEXVID_INLINE void OutputGradRows(const F16* g, F16* m) {
  const F16 e = g[0] + g[2], o = g[1] + g[3];
  const F16 e4 = g[0] + 4.0f * g[2], o8 = 2.0f * g[1] + 8.0f * g[3];
  m[0] = g[0];
  m[1] = e + o;
  m[2] = e - o;
  m[3] = e4 + o8;
  m[4] = e4 - o8;
  m[5] = g[3];
}

// Gᵀ applied to six values: three outputs, the transpose of FilterRows (U = G g Gᵀ, so dg = Gᵀ dU G).
FLEXVID_INLINE void FilterGradRows(const F16* u, F16* g) {
  const F16 s12 = u[1] + u[2], s34 = u[3] + u[4];
  g[0] = 0.25f * u[0] - (1.0f / 6.0f) * s12 + (1.0f / 24.0f) * s34;
  g[1] = (1.0f / 6.0f) * (u[2] - u[1]) + (1.0f / 12.0f) * (u[3] - u[4]);
  g[2] = (1.0f / 6.0f) * (s34 - s12) + u[5];
}

// out = R d Rᵀ for the separable transform whose one-dimensional form `rows` maps In values to
// Out (InputRows, OutputRows, …): down every column of d [In][In], then along every row.
template <int In, int Out, typename Rows>
FLEXVID_INLINE void Separable(const F16 (&d)[In][In], F16 (&out)[Out][Out], Rows rows) {
  F16 u[Out][In];
#pragma GCC unroll 6
  for (int j = 0; j < In; ++j) {
    F16 column[In], t[Out];
#pragma GCC unroll 6
    for (int i = 0; i < In; ++i) column[i] = d[i][j];
    rows(column, t);
#pragma GCC unroll 6
    for (int i = 0; i < Out; ++i) u[i][j] = t[i];
  }
#pragma GCC unroll 6
  for (int i = 0; i < Out; ++i) rows(u[i], out[i]);
}

struct Dims {
  int64_t n, ic, oc, h, w;
  int64_t TilesY() const { return h / 4; }
  int64_t TilesX() const { return w / 4; }
  int64_t Tiles() const { return n * TilesY() * TilesX(); }
};

// V[ξ][r][c] (row stride ic, ξ stride xi_rows rows) for tiles t0 … t0 + count − 1 of x [n, ic/16, h, w, 16].
FLEXVID_INLINE void TransformInputs(const float* x, const Dims& s, int64_t t0, int64_t count, float* v, int64_t xi_rows) {
  const int64_t ty_n = s.TilesY(), tx_n = s.TilesX(), blocks = s.ic / 16;
  for (int64_t r = 0; r < count; ++r) {
    const int64_t t = t0 + r, nn = t / (ty_n * tx_n), ty = (t / tx_n) % ty_n, tx = t % tx_n;
    const int64_t y0 = ty * 4 - 1, x0 = tx * 4 - 1;
    const bool inside = y0 >= 0 && x0 >= 0 && y0 + 6 <= s.h && x0 + 6 <= s.w;
    for (int64_t cb = 0; cb < blocks; ++cb) {
      const float* plane = x + (nn * blocks + cb) * s.h * s.w * 16;
      F16 d[6][6], t[6][6];
#pragma GCC unroll 6
      for (int i = 0; i < 6; ++i)
#pragma GCC unroll 6
        for (int j = 0; j < 6; ++j) {
          const int64_t yy = y0 + i, xx = x0 + j;
          d[i][j] = inside || (yy >= 0 && yy < s.h && xx >= 0 && xx < s.w) ? LoadF16(plane + (yy * s.w + xx) * 16) : F16{};
        }
      Separable(d, t, [](const F16* a, F16* b) { InputRows(a, b); });
#pragma GCC unroll 36
      for (int xi = 0; xi < 36; ++xi) StoreF16(v + (xi * xi_rows + r) * s.ic + cb * 16, t[xi / 6][xi % 6]);
    }
  }
}

// c[R × 16·NB] (+)= a[R × k] · b[k × 16·NB] (a(r, kk) at a[r·lda + kk·ka], b's rows ldb apart, c's
// ldc apart; Acc: added to what c holds).
template <int R, int NB, bool Acc>
FLEXVID_INLINE void Product(const float* a, int64_t lda, int64_t ka, const float* b, int64_t ldb, float* c, int64_t ldc,
                            int64_t k) {
  F16 acc[R][NB];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int j = 0; j < NB; ++j) acc[r][j] = Acc ? LoadF16(c + r * ldc + 16 * j) : F16{};
  for (int64_t kk = 0; kk < k; ++kk) {
    F16 bv[NB];
#pragma GCC unroll 2
    for (int j = 0; j < NB; ++j) bv[j] = LoadF16(b + kk * ldb + 16 * j);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const float av = a[r * lda + kk * ka];
#pragma GCC unroll 2
      for (int j = 0; j < NB; ++j) acc[r][j] += av * bv[j];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int j = 0; j < NB; ++j) StoreF16(c + r * ldc + 16 * j, acc[r][j]);
}

constexpr int kRows = 12;  // tiles per register block: 24 accumulators + 2 weight vectors of 32 registers

// Columns j … j + 16·NB of c [rows × n] (+)= a · b [k × n]; a(r, kk) at a[r·lda + kk·ka].
template <int NB, bool Acc = false>
FLEXVID_INLINE void ProductsColumns(const float* a, int64_t lda, int64_t ka, const float* b, float* c, int64_t rows,
                                    int64_t k, int64_t n, int64_t j) {
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows) Product<kRows, NB, Acc>(a + r * lda, lda, ka, b + j, n, c + r * n + j, n, k);
  const float* ar = a + r * lda;
  float* cr = c + r * n + j;
  switch (rows - r) {
#define FLEXVID_REST(R) \
  case R: Product<R, NB, Acc>(ar, lda, ka, b + j, n, cr, n, k); break;
    FLEXVID_REST(1) FLEXVID_REST(2) FLEXVID_REST(3) FLEXVID_REST(4) FLEXVID_REST(5) FLEXVID_REST(6)
    FLEXVID_REST(7) FLEXVID_REST(8) FLEXVID_REST(9) FLEXVID_REST(10) FLEXVID_REST(11)
#undef FLEXVID_REST
    default: break;
  }
}

// M[ξ] = V[ξ] · U[ξ] for the 36 ξ: [rows × k] · [k × n] each.
FLEXVID_INLINE void Products(const float* v, const float* u, float* m, int64_t rows, int64_t k, int64_t n) {
  for (int xi = 0; xi < 36; ++xi) {
    const float* a = v + xi * rows * k;
    const float* b = u + xi * k * n;
    float* c = m + xi * rows * n;
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) ProductsColumns<2>(a, k, 1, b, c, rows, k, n, j);
    if (j < n) ProductsColumns<1>(a, k, 1, b, c, rows, k, n, j);  // n is a multiple of 16
  }
}

// y's 4×4 tiles t0 … t0 + count − 1 (y [n, oc/16, h, w, 16]) from M[ξ][r][o], plus the bias.
FLEXVID_INLINE void TransformOutputs(const float* m, const float* bias, const Dims& s, int64_t t0, int64_t count, float* y) {
  const int64_t ty_n = s.TilesY(), tx_n = s.TilesX(), blocks = s.oc / 16;
  for (int64_t r = 0; r < count; ++r) {
    const int64_t t = t0 + r, nn = t / (ty_n * tx_n), ty = (t / tx_n) % ty_n, tx = t % tx_n;
    for (int64_t cb = 0; cb < blocks; ++cb) {
      F16 d[6][6], o[4][4];
#pragma GCC unroll 36
      for (int xi = 0; xi < 36; ++xi) d[xi / 6][xi % 6] = LoadF16(m + (xi * count + r) * s.oc + cb * 16);
      Separable(d, o, [](const F16* a, F16* b) { OutputRows(a, b); });
      const F16 b = bias ? LoadF16(bias + cb * 16) : F16{};
      float* out = y + ((nn * blocks + cb) * s.h + ty * 4) * s.w * 16 + tx * 4 * 16;
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) StoreF16(out + (i * s.w + j) * 16, o[i][j] + b);
    }
  }
}

FLEXVID_CLONES void Chunk(const float* x, const float* u, const float* bias, const Dims& s, int64_t t0, int64_t count,
                          float* v, float* m, float* y) {
  TransformInputs(x, s, t0, count, v, count);
  Products(v, u, m, count, s.ic, s.oc);
  TransformOutputs(m, bias, s, t0, count, y);
}

// dM[ξ][r][o] (row stride oc, ξ stride xi_rows rows) = (A dY Aᵀ)_ξ for the 4×4 output tiles
// t0 … t0 + count − 1 of dY = g [n, oc/16, h, w, 16].
FLEXVID_INLINE void TransformOutputGrads(const float* g, const Dims& s, int64_t t0, int64_t count, float* dm, int64_t xi_rows) {
  const int64_t ty_n = s.TilesY(), tx_n = s.TilesX(), blocks = s.oc / 16;
  for (int64_t r = 0; r < count; ++r) {
    const int64_t t = t0 + r, nn = t / (ty_n * tx_n), ty = (t / tx_n) % ty_n, tx = t % tx_n;
    for (int64_t cb = 0; cb < blocks; ++cb) {
      const float* in = g + ((nn * blocks + cb) * s.h + ty * 4) * s.w * 16 + tx * 4 * 16;
      F16 d[4][4], t[6][6];
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i)
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) d[i][j] = LoadF16(in + (i * s.w + j) * 16);
      Separable(d, t, [](const F16* a, F16* b) { OutputGradRows(a, b); });
#pragma GCC unroll 36
      for (int xi = 0; xi < 36; ++xi) StoreF16(dm + (xi * xi_rows + r) * s.oc + cb * 16, t[xi / 6][xi % 6]);
    }
  }
}

// Tiles t0 … t0 + count − 1 of a range that starts at tile `base` and holds xi_rows tiles.
FLEXVID_CLONES void TransformForWeightGrad(const float* x, const float* g, const Dims& s, int64_t t0, int64_t count,
                                           int64_t base, int64_t xi_rows, float* v, float* dm) {
  TransformInputs(x, s, t0, count, v + (t0 - base) * s.ic, xi_rows);
  TransformOutputGrads(g, s, t0, count, dm + (t0 - base) * s.oc, xi_rows);
}

// dU_ξ [ic × oc] (+)= V_ξᵀ · dM_ξ, summed over a range of tiles (the GEMM's k; accumulate: added
// to what dU holds).
template <bool Acc>
FLEXVID_INLINE void WeightGradProductsOf(const float* v, const float* dm, float* du, int64_t tiles, int64_t ic,
                                         int64_t oc, int64_t xi) {
  const float* a = v + xi * tiles * ic;  // a(r = channel, kk = tile) at a[r + kk·ic]
  const float* b = dm + xi * tiles * oc;
  float* c = du + xi * ic * oc;
  int64_t j = 0;
  for (; j + 32 <= oc; j += 32) ProductsColumns<2, Acc>(a, 1, ic, b, c, ic, tiles, oc, j);
  if (j < oc) ProductsColumns<1, Acc>(a, 1, ic, b, c, ic, tiles, oc, j);
}
// dU_ξ [ic × oc] += V_ξᵀ · dM_ξ for every ξ, over the count tiles t0… of one chunk (V, dM: the
// chunk's transforms, ξ stride count rows): the weight gradient of small channel counts, whose
// dU (36 · ic · oc floats) stays in the thread's L2 while the chunks stream by.
FLEXVID_CLONES void WeightGradChunk(const float* x, const float* g, const Dims& s, int64_t t0, int64_t count, float* v,
                                    float* dm, float* du) {
  TransformInputs(x, s, t0, count, v, count);
  TransformOutputGrads(g, s, t0, count, dm, count);
  for (int xi = 0; xi < 36; ++xi) WeightGradProductsOf<true>(v, dm, du, count, s.ic, s.oc, xi);
}

FLEXVID_CLONES void WeightGradProducts(const float* v, const float* dm, float* du, int64_t tiles, int64_t ic, int64_t oc,
                                       int64_t xi, bool accumulate) {
  if (accumulate) WeightGradProductsOf<true>(v, dm, du, tiles, ic, oc, xi);
  else WeightGradProductsOf<false>(v, dm, du, tiles, ic, oc, xi);
}

// gw[o][c][3 × 3] = Gᵀ dU[·][c][o] G for input channel c and every output channel o.
FLEXVID_CLONES void FilterGrads(const float* du, int64_t ic, int64_t oc, int64_t c, float* gw) {
  for (int64_t o = 0; o < oc; o += 16) {
    F16 d[6][6], g[3][3];
#pragma GCC unroll 36
    for (int xi = 0; xi < 36; ++xi) d[xi / 6][xi % 6] = LoadF16(du + (xi * ic + c) * oc + o);
    Separable(d, g, [](const F16* a, F16* b) { FilterGradRows(a, b); });
#pragma GCC unroll 9
    for (int k = 0; k < 9; ++k)
      for (int l = 0; l < 16; ++l) gw[((o + l) * ic + c) * 9 + k] = g[k / 3][k % 3][l];
  }
}

// gb[o] = Σ over samples and positions of g [n, oc/16, h, w, 16], for output-channel block cb.
FLEXVID_CLONES void BiasGrad(const float* g, int64_t n, int64_t blocks, int64_t positions, int64_t cb, float* gb) {
  F16 acc[4] = {};
  for (int64_t nn = 0; nn < n; ++nn) {
    const float* p = g + (nn * blocks + cb) * positions * 16;
    int64_t i = 0;
    for (; i + 4 <= positions; i += 4)
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) acc[k] += LoadF16(p + (i + k) * 16);
    for (; i < positions; ++i) acc[0] += LoadF16(p + i * 16);
  }
  StoreF16(gb + cb * 16, (acc[0] + acc[1]) + (acc[2] + acc[3]));
}

// Row `row` of every U[ξ] (U [36][rows][cols]) from that row's nine taps, taps [9][cols]:
// U[ξ = 6i + j][row][col] = (G g Gᵀ)[i][j] for the filter g of column col, 16 columns per vector.
FLEXVID_CLONES void TransformFilters(const float* taps, int64_t rows, int64_t row, int64_t cols, float* u) {
  for (int64_t col = 0; col < cols; col += 16) {
    F16 g[3][3], t[6][6];
#pragma GCC unroll 9
    for (int k = 0; k < 9; ++k) g[k / 3][k % 3] = LoadF16(taps + k * cols + col);
    Separable(g, t, [](const F16* a, F16* b) { FilterRows(a, b); });
#pragma GCC unroll 36
    for (int xi = 0; xi < 36; ++xi) StoreF16(u + (xi * rows + row) * cols + col, t[xi / 6][xi % 6]);
  }
}

// taps [ic·9][oc] ← w viewed as [oc][ic·9], the 16 × 16 block at rows o0…, columns j0….
FLEXVID_CLONES void TransposeTaps(const float* w, int64_t oc, int64_t width, int64_t o0, int64_t j0, float* taps) {
  F16 t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) t[i] = LoadF16(w + (o0 + i) * width + j0);
  Transpose16x16(t);
#pragma GCC unroll 16
  for (int l = 0; l < 16; ++l) StoreF16(taps + (j0 + l) * oc + o0, t[l]);
}

// Scratch buffers that grow as needed and stay with their thread (no allocation per call).
float* ThreadBuffer(int which, int64_t floats) {
  struct Buf {
    float* p = nullptr;
    int64_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[2];
  Buf& b = bufs[which];
  if (b.n < floats) {
    std::free(b.p);
    b.p = static_cast<float*>(std::aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64));
    if (!b.p) throw std::bad_alloc();
    b.n = floats;
  }
  return b.p;
}

}  // namespace

void WinogradF43Weights(const float* w, int64_t oc, int64_t ic, bool input_grad, float* u) {
  if (input_grad) {
    // GEMM rows = output channels o, columns = input channels c: row o's taps are w[o] (contiguous
    // [ic][9]) transposed to [9][ic] and flipped (tap k → 8 − k).
    at::parallel_for(0, oc, 4, [&](int64_t begin, int64_t end) {
      std::vector<float> taps(9 * ic);
      for (int64_t o = begin; o < end; ++o) {
        const float* wo = w + o * ic * 9;
        for (int64_t c = 0; c < ic; ++c)
          for (int k = 0; k < 9; ++k) taps[(8 - k) * ic + c] = wo[c * 9 + k];
        TransformFilters(taps.data(), oc, o, ic, u);
      }
    });
    return;
  }
  // GEMM rows = input channels c, columns = output channels o: taps [ic·9][oc] is w transposed.
  const int64_t width = ic * 9;  // a multiple of 16 with ic
  at::Tensor taps = at::empty({width * oc}, at::dtype(at::kFloat));
  float* tp = taps.data_ptr<float>();
  at::parallel_for(0, width / 16, 4, [&](int64_t begin, int64_t end) {
    for (int64_t jb = begin; jb < end; ++jb)
      for (int64_t o0 = 0; o0 < oc; o0 += 16) TransposeTaps(w, oc, width, o0, jb * 16, tp);
  });
  at::parallel_for(0, ic, 4, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) TransformFilters(tp + c * 9 * oc, ic, c, oc, u);
  });
}

void WinogradF43Forward(const float* x, const float* u, const float* bias, int64_t n, int64_t ic, int64_t oc, int64_t h,
                        int64_t w, float* y) {
  const Dims s{n, ic, oc, h, w};
  const int64_t tiles = s.Tiles();
  if (tiles == 0) return;
  // A chunk's V and M together within ≈ 768 KB (this host's L2 is 1 MB), at most 32 tiles; the
  // chunk count a multiple of the thread count so that the threads finish together.
  const int64_t threads = at::get_num_threads();
  const int64_t most = std::clamp<int64_t>(768 * 1024 / (36 * 4 * (ic + oc)), 8, 32);
  int64_t chunks = (tiles + most - 1) / most;
  chunks = std::min(tiles, (chunks + threads - 1) / threads * threads);
  const int64_t per = (tiles + chunks - 1) / chunks;
  chunks = (tiles + per - 1) / per;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    float* v = ThreadBuffer(0, 36 * per * ic);
    float* m = ThreadBuffer(1, 36 * per * oc);
    for (int64_t c = begin; c < end; ++c) {
      const int64_t t0 = c * per;
      Chunk(x, u, bias, s, t0, std::min(per, tiles - t0), v, m, y);
    }
  });
}

// Up to this size of dU (36 · ic · oc floats: 192 × 64 channels) the weight gradient keeps one per
// thread and streams the tiles by in chunks; larger, it transforms every tile first and then runs
// 36 long products (measured on a Zen 4 host: chunks 0.88–0.90× oneDNN's time for 128 → 64 and
// 192 → 64 at 32² against 0.93–0.95× with all tiles first; the reverse from 128 × 128 up).
constexpr int64_t kSmallWeightGradBytes = 2048 * 1024;

// dU [36, ic, oc] for small channel counts: per-thread sums over chunks of tiles, then added up.
static at::Tensor WeightGradByChunks(const float* x, const float* g, const Dims& s) {
  const int64_t threads = at::get_num_threads(), tiles = s.Tiles(), size = 36 * s.ic * s.oc;
  at::Tensor parts = at::zeros({threads, size}, at::dtype(at::kFloat));
  float* pp = parts.data_ptr<float>();
  constexpr int64_t kChunk = 24;
  const int64_t chunks = (tiles + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    float* du = pp + at::get_thread_num() * size;
    float* v = ThreadBuffer(0, 36 * kChunk * s.ic);
    float* dm = ThreadBuffer(1, 36 * kChunk * s.oc);
    for (int64_t c = begin; c < end; ++c) {
      const int64_t t0 = c * kChunk;
      WeightGradChunk(x, g, s, t0, std::min(kChunk, tiles - t0), v, dm, du);
    }
  });
  return threads == 1 ? parts[0] : parts.sum(0);
}

// dU [36, ic, oc] for larger ones: the transformed tiles of x and of the output gradient for a
// range of tiles, then 36 products [ic × tiles] · [tiles × oc] with long rows, shared out by ξ and
// added up over the ranges. A range holds as many tiles as fit 32 MB of transforms (all of them
// for the Balls model; a sixth of a Maze batch at 64², whose transforms would take 190 MB).
static at::Tensor WeightGradByPositions(const float* x, const float* g, const Dims& s) {
  const int64_t tiles = s.Tiles();
  int64_t per = std::clamp<int64_t>((int64_t{32} << 20) / (36 * 4 * (s.ic + s.oc)), 64, tiles);
  // FLEXVID_WINOGRAD_RANGE_TILES: a smaller range, for tests of the accumulation over ranges.
  if (const char* r = std::getenv("FLEXVID_WINOGRAD_RANGE_TILES")) per = std::clamp<int64_t>(std::atoll(r), 1, tiles);
  at::Tensor v = at::empty({36 * per * s.ic}, at::dtype(at::kFloat));
  at::Tensor dm = at::empty({36 * per * s.oc}, at::dtype(at::kFloat));
  at::Tensor du = at::empty({36 * s.ic * s.oc}, at::dtype(at::kFloat));
  float *vp = v.data_ptr<float>(), *dmp = dm.data_ptr<float>(), *dup = du.data_ptr<float>();
  for (int64_t base = 0; base < tiles; base += per) {
    const int64_t count = std::min(per, tiles - base);
    at::parallel_for(base, base + count, 8, [&](int64_t begin, int64_t end) {
      TransformForWeightGrad(x, g, s, begin, end - begin, base, count, vp, dmp);
    });
    at::parallel_for(0, 36, 1, [&](int64_t begin, int64_t end) {
      for (int64_t xi = begin; xi < end; ++xi) WeightGradProducts(vp, dmp, dup, count, s.ic, s.oc, xi, base > 0);
    });
  }
  return du;
}

void WinogradF43WeightGrad(const float* x, const float* g, int64_t n, int64_t ic, int64_t oc, int64_t h, int64_t w,
                           float* gw, float* gb) {
  const Dims s{n, ic, oc, h, w};
  if (s.Tiles() == 0) {
    std::fill(gw, gw + oc * ic * 9, 0.0f);
    if (gb) std::fill(gb, gb + oc, 0.0f);
    return;
  }
  const bool small = 36 * ic * oc * static_cast<int64_t>(sizeof(float)) <= kSmallWeightGradBytes;
  const at::Tensor du = small ? WeightGradByChunks(x, g, s) : WeightGradByPositions(x, g, s);
  const float* dup = du.data_ptr<float>();
  at::parallel_for(0, ic, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) FilterGrads(dup, ic, oc, c, gw);
  });
  if (gb) {
    at::parallel_for(0, oc / 16, 1, [&](int64_t begin, int64_t end) {
      for (int64_t cb = begin; cb < end; ++cb) BiasGrad(g, n, oc / 16, h * w, cb, gb);
    });
  }
}

}  // namespace flexvid
