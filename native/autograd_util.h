// Shared by the addon's custom autograd operators.
#pragma once

#include <torch/torch.h>

namespace flexvid {

// Our backward passes compute gradients outside autograd, so they cannot be differentiated again:
// refuse a second derivative (backward running with grad mode on, i.e. createGraph) and say how to
// switch the operator off. `op` names the operator, `switch_off` the setting that disables it.
inline void RefuseDoubleBackward(const char* op, const char* switch_off) {
  TORCH_CHECK(!at::GradMode::is_enabled(), op, " is not twice differentiable; turn it off for higher-order gradients with ",
              switch_off);
}

// Records an in-place write made through data pointers rather than by an ATen operator (which
// would bump the version counter itself), so that checks of `_version` — the caches of tensors
// derived from parameters (Module.derived in TypeScript) — see it. Inference tensors have no
// version counter.
inline void MarkWritten(const at::Tensor& t) {
  if (t.defined() && !t.is_inference()) t.unsafeGetTensorImpl()->bump_version();
}

}  // namespace flexvid
