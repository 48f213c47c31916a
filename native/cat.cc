// flexvid::cat_dense_grad — torch.cat whose backward hands each input a contiguous gradient.
//
// Why: libtorch's cat backward gives every input a slice of the output gradient, a
// non-contiguous view when the concatenation is not along the first dimension. The U-Net's up
// path concatenates on channels, so each ResBlock output receives a channel slice; libtorch's
// oneDNN convolution backward (the 1×1 skip convolution) then takes a slow path on it — 27 ms
// instead of ≈ 4 ms for the [20, 192, 32²] → 64 skip of the Balls model. One copy per input here.
#include <torch/torch.h>
#include <torch/library.h>

namespace flexvid {
namespace {

class CatDenseGradFunction : public torch::autograd::Function<CatDenseGradFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b,
                            int64_t dim) {
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["split"] = a.size(dim);
    return at::cat({a, b}, dim);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const int64_t dim = ctx->saved_data["dim"].toInt(), split = ctx->saved_data["split"].toInt();
    const at::Tensor& g = grads[0];
    return {g.narrow(dim, 0, split).contiguous(), g.narrow(dim, split, g.size(dim) - split).contiguous(),
            at::Tensor()};
  }
};

at::Tensor CatDenseGrad(const at::Tensor& a, const at::Tensor& b, int64_t dim) {
  TORCH_CHECK(a.dim() == b.dim() && a.dim() > 0, "flexvid::cat_dense_grad: expected two tensors of the same rank, got ",
              a.sizes(), " and ", b.sizes());
  const int64_t d = dim < 0 ? dim + a.dim() : dim;
  TORCH_CHECK(d >= 0 && d < a.dim(), "flexvid::cat_dense_grad: dim ", dim, " out of range for ", a.dim(), " dims");
  return CatDenseGradFunction::apply(a, b, d);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(flexvid, m) { m.def("cat_dense_grad(Tensor a, Tensor b, int dim) -> Tensor"); }
TORCH_LIBRARY_IMPL(flexvid, CompositeImplicitAutograd, m) { m.impl("cat_dense_grad", &CatDenseGrad); }

}  // namespace flexvid
