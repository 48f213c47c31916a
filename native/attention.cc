// flexvid::channel_attention — multi-head softmax attention over the L positions of channel-major
// rows, computed block by block so that the [L, L] attention matrix of one (row, head) never
// leaves the cache (the idea of FlashAttention, with whole rows: L ≤ a few thousand here).
//
//   qkv [N, 3C, L] (channels q | k | v, each head-major: channel = part·C + head·d + e)
//   o   [N, C, L],   o[n, h·d + e, i] = Σ_j softmax_j(scale · q_i·k_j) · v[n, h·d + e, j]
//
// Why: written with batched products, the spatial attention of the U-Net materialises the logits,
// the probabilities and (in backward) their gradient as [N·heads, L, L] tensors — 21 MB each for
// the Balls model — and spends its time streaming them through memory (softmax backward alone
// ≈ 5 ms per layer), besides copying q, k, v and the output between layouts. Here every block
// reads its q, k, v straight from qkv (oneDNN's matmul takes the transposed views in place),
// writes its output straight into the merged-heads layout, keeps only the row log-sum-exp for
// backward and recomputes the probabilities there. Seven small matrix products per block (two
// forward, five backward) on one thread each, blocks spread over the threads.
#include <torch/torch.h>
#include <torch/library.h>

#include "autograd_util.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "onednn.h"
#include "simd.h"

// Needs oneDNN's matmul (FLEXVID_DNNL builds); without it the operator is not registered and
// E.fusedChannelAttention returns null (the model then uses batched products).
#ifdef FLEXVID_DNNL
namespace flexvid {
namespace {

// ----- row kernels (vectorised; simd.h) ---------------------------------------------------------

// Row i of the logits s (length n) → unnormalised probabilities in place, e_j = exp(scale·s_j − scale·max s);
// returns lse = log Σ_j exp(scale·s_j) and sets *inv_sum = 1 / Σ_j e_j. The caller divides the
// output (d values per row) rather than the L probabilities: one pass over the [L, L] block less.
FLEXVID_CLONES float ExpRow(float* s, int64_t n, float scale, float* inv_sum) {
  float mx = s[0];
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
  const float shift = scale * mx;
  float sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float e = ExpApprox(scale * s[j] - shift);
    s[j] = e;
    sum += e;
  }
  *inv_sum = 1.0f / sum;
  return shift + std::log(sum);
}

// o[e, i] *= inv[i] for the d rows of an [d, L] output block (row stride L).
FLEXVID_CLONES void ScaleColumns(float* o, int64_t d, int64_t l, const float* inv) {
  for (int64_t e = 0; e < d; ++e) {
    float* row = o + e * l;
#pragma omp simd
    for (int64_t i = 0; i < l; ++i) row[i] *= inv[i];
  }
}

// Recompute the probabilities from the logits in place: p_j = exp(scale·s_j − lse).
FLEXVID_CLONES void ProbRow(float* s, int64_t n, float scale, float lse) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) s[j] = ExpApprox(scale * s[j] - lse);
}

// Softmax backward for one row, into dp: ds_j = scale · p_j · (dp_j − Σ_k p_k dp_k).
FLEXVID_CLONES void SoftmaxGradRow(const float* p, float* dp, int64_t n, float scale) {
  float dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j) dot += p[j] * dp[j];
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dp[j] = scale * p[j] * (dp[j] - dot);
}

// ----- the three matrix products of a block ------------------------------------------------------
// With a block's q, k, v, o as [d, L] matrices (rows of L contiguous floats, row stride L):
//   TN:  [L, L] = Xᵀ · Y        logits s = qᵀk, and dp = doᵀ v
//   NT:  [d, L] = X · Pᵀ        o = v pᵀ (stored as [d, L]), and dq = k dsᵀ
//   NN:  [d, L] = X · P         dv = do p, and dk = q ds
enum Product { kTN, kNT, kNN };

using dnnl::memory;

memory::desc Matrix(int64_t rows, int64_t cols, int64_t row_stride, bool transposed) {
  // A [rows, cols] matrix; transposed: stored as [cols, rows] with row stride `row_stride`.
  return memory::desc({rows, cols}, memory::data_type::f32,
                      transposed ? memory::dims{1, row_stride} : memory::dims{row_stride, 1});
}

struct Products {
  memory::desc src[3], wei[3], dst[3], scratch[3];
  std::unique_ptr<dnnl::matmul> prim[3];
};

Products MakeProducts(int64_t d, int64_t l) {
  Products p;
  p.src[kTN] = Matrix(l, d, l, true), p.wei[kTN] = Matrix(d, l, l, false), p.dst[kTN] = Matrix(l, l, l, false);
  p.src[kNT] = Matrix(d, l, l, false), p.wei[kNT] = Matrix(l, l, l, true), p.dst[kNT] = Matrix(d, l, l, false);
  p.src[kNN] = Matrix(d, l, l, false), p.wei[kNN] = Matrix(l, l, l, false), p.dst[kNN] = Matrix(d, l, l, false);
  // Each thread brings its own scratchpad: with oneDNN's default (one library-owned scratchpad)
  // products running at once on two threads would share it.
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  for (int i = 0; i < 3; ++i) {
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p.src[i], p.wei[i], p.dst[i]), attr, OnednnEngine());
    p.scratch[i] = pd.scratchpad_desc();
    p.prim[i].reset(new dnnl::matmul(pd));
  }
  return p;
}

std::mutex g_products_mutex;
std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Products>> g_products;

const Products& GetProducts(int64_t d, int64_t l) {
  std::lock_guard<std::mutex> lock(g_products_mutex);
  auto& slot = g_products[{d, l}];
  if (!slot) slot.reset(new Products(MakeProducts(d, l)));
  return *slot;
}

// One thread's view of the products: memory objects made once, pointed at each block's data.
class Runner {
 public:
  explicit Runner(const Products& p) : p_(p), stream_(OnednnEngine()), scratch_buf_(ScratchBytes(p)) {
    for (int i = 0; i < 3; ++i) {
      src_[i] = memory(p.src[i], OnednnEngine(), DNNL_MEMORY_NONE);
      wei_[i] = memory(p.wei[i], OnednnEngine(), DNNL_MEMORY_NONE);
      dst_[i] = memory(p.dst[i], OnednnEngine(), DNNL_MEMORY_NONE);
      scratch_[i] = memory(p.scratch[i], OnednnEngine(), scratch_buf_.data());
    }
  }
  void Run(Product k, const float* x, const float* y, float* out) {
    src_[k].set_data_handle(const_cast<float*>(x));
    wei_[k].set_data_handle(const_cast<float*>(y));
    dst_[k].set_data_handle(out);
    p_.prim[k]->execute(stream_, {{DNNL_ARG_SRC, src_[k]},
                                  {DNNL_ARG_WEIGHTS, wei_[k]},
                                  {DNNL_ARG_DST, dst_[k]},
                                  {DNNL_ARG_SCRATCHPAD, scratch_[k]}});
  }

 private:
  static size_t ScratchBytes(const Products& p) {
    size_t bytes = 0;
    for (int i = 0; i < 3; ++i) bytes = std::max(bytes, p.scratch[i].get_size());
    return bytes;
  }

  const Products& p_;
  dnnl::stream stream_;
  OnednnScratchpad scratch_buf_;
  memory src_[3], wei_[3], dst_[3], scratch_[3];
};

struct Shape {
  int64_t n, c, l, heads, d;
  // Start of the [d, L] block of `part` (0 q, 1 k, 2 v) for block b = n·heads + h in qkv [N, 3C, L].
  int64_t Qkv(int64_t b, int part) const { return ((b / heads) * 3 * c + part * c + (b % heads) * d) * l; }
  // Start of block b's [d, L] rows in o [N, C, L].
  int64_t Out(int64_t b) const { return ((b / heads) * c + (b % heads) * d) * l; }
};

void Forward(const float* qkv, float* out, float* lse, const Shape& s, float scale) {
  const Products& prods = GetProducts(s.d, s.l);
  auto body = [&](int64_t begin, int64_t end) {
    Runner run(prods);
    std::vector<float> p(s.l * s.l), inv(s.l);
    for (int64_t b = begin; b < end; ++b) {
      run.Run(kTN, qkv + s.Qkv(b, 0), qkv + s.Qkv(b, 1), p.data());  // logits qᵀk
      for (int64_t i = 0; i < s.l; ++i) lse[b * s.l + i] = ExpRow(p.data() + i * s.l, s.l, scale, &inv[i]);
      run.Run(kNT, qkv + s.Qkv(b, 2), p.data(), out + s.Out(b));  // o = v eᵀ
      ScaleColumns(out + s.Out(b), s.d, s.l, inv.data());          // ÷ Σ e per query
    }
  };
  at::parallel_for(0, s.n * s.heads, 1, body);
}

void Backward(const float* qkv, const float* gout, const float* lse, float* gqkv, const Shape& s, float scale) {
  const Products& prods = GetProducts(s.d, s.l);
  at::parallel_for(0, s.n * s.heads, 1, [&](int64_t begin, int64_t end) {
    Runner run(prods);
    std::vector<float> p(s.l * s.l), dp(s.l * s.l);
    for (int64_t b = begin; b < end; ++b) {
      const float *q = qkv + s.Qkv(b, 0), *k = qkv + s.Qkv(b, 1), *v = qkv + s.Qkv(b, 2);
      const float* go = gout + s.Out(b);
      run.Run(kTN, q, k, p.data());
      for (int64_t i = 0; i < s.l; ++i) ProbRow(p.data() + i * s.l, s.l, scale, lse[b * s.l + i]);
      run.Run(kNN, go, p.data(), gqkv + s.Qkv(b, 2));  // dv = do p
      run.Run(kTN, go, v, dp.data());                  // dp = doᵀ v
      for (int64_t i = 0; i < s.l; ++i) SoftmaxGradRow(p.data() + i * s.l, dp.data() + i * s.l, s.l, scale);
      run.Run(kNT, k, dp.data(), gqkv + s.Qkv(b, 0));  // dq = k dsᵀ
      run.Run(kNN, q, dp.data(), gqkv + s.Qkv(b, 1));  // dk = q ds
    }
  });
}

class ChannelAttentionFunction : public torch::autograd::Function<ChannelAttentionFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv, int64_t heads, double scale) {
    const Shape s{qkv.size(0), qkv.size(1) / 3, qkv.size(2), heads, qkv.size(1) / 3 / heads};
    at::Tensor out = at::empty({s.n, s.c, s.l}, qkv.options());
    at::Tensor lse = at::empty({s.n * heads, s.l}, qkv.options());
    Forward(qkv.data_ptr<float>(), out.data_ptr<float>(), lse.data_ptr<float>(), s, static_cast<float>(scale));
    ctx->save_for_backward({qkv, lse});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    RefuseDoubleBackward("flexvid::channel_attention (fused attention)", "setFusedAttention(false) or FLEXVID_FUSED_ATTENTION=0");
    auto saved = ctx->get_saved_variables();
    const at::Tensor &qkv = saved[0], &lse = saved[1];
    const int64_t heads = ctx->saved_data["heads"].toInt();
    const Shape s{qkv.size(0), qkv.size(1) / 3, qkv.size(2), heads, qkv.size(1) / 3 / heads};
    at::Tensor gout = grads[0].contiguous();
    at::Tensor gqkv = at::empty_like(qkv);
    Backward(qkv.data_ptr<float>(), gout.data_ptr<float>(), lse.data_ptr<float>(), gqkv.data_ptr<float>(), s,
             static_cast<float>(ctx->saved_data["scale"].toDouble()));
    return {gqkv, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

// qkv [N, 3C, L] float32 CPU → o [N, C, L] (see the top of the file).
at::Tensor ChannelAttention(const at::Tensor& qkv, int64_t heads, double scale) {
  TORCH_CHECK(qkv.dim() == 3 && heads > 0 && qkv.size(1) % (3 * heads) == 0,
              "flexvid::channel_attention: expected qkv [N, 3C, L] with C divisible by ", heads, " heads, got ",
              qkv.sizes());
  TORCH_CHECK(qkv.device().is_cpu() && qkv.scalar_type() == at::kFloat,
              "flexvid::channel_attention: float32 CPU tensors only, got ", qkv.scalar_type(), " on ", qkv.device());
  TORCH_CHECK(qkv.size(2) > 0 && qkv.size(0) > 0, "flexvid::channel_attention: empty input ", qkv.sizes());
  return ChannelAttentionFunction::apply(qkv.contiguous(), heads, scale);
}

TORCH_LIBRARY_FRAGMENT(flexvid, m) {
  m.def("channel_attention(Tensor qkv, int heads, float scale) -> Tensor");
}
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) { m.impl("channel_attention", &ChannelAttention); }

}  // namespace flexvid
#endif  // FLEXVID_DNNL
