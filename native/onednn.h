// What flexvid's oneDNN kernels (winograd.cc, attention.cc) share. Only with FLEXVID_DNNL.
#pragma once

#ifdef FLEXVID_DNNL
#include <oneapi/dnnl/dnnl.hpp>

namespace flexvid {

// The one CPU engine every flexvid oneDNN primitive runs on.
inline dnnl::engine& OnednnEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

}  // namespace flexvid
#endif
