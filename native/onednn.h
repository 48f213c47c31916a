// What flexvid's oneDNN kernels (winograd.cc, attention.cc) share. Only with FLEXVID_DNNL.
#pragma once

#ifdef FLEXVID_DNNL
#include <oneapi/dnnl/dnnl.hpp>

#include <cstdlib>
#include <new>

namespace flexvid {

// The one CPU engine every flexvid oneDNN primitive runs on.
inline dnnl::engine& OnednnEngine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// A thread's own scratchpad for primitives made with scratchpad_mode::user, page-aligned like the
// scratchpads oneDNN allocates itself (it places the pieces at aligned offsets from the start).
class OnednnScratchpad {
 public:
  explicit OnednnScratchpad(size_t bytes)
      : p_(static_cast<char*>(std::aligned_alloc(kAlign, (bytes + kAlign) / kAlign * kAlign))) {
    if (!p_) throw std::bad_alloc();
  }
  ~OnednnScratchpad() { std::free(p_); }
  OnednnScratchpad(const OnednnScratchpad&) = delete;
  OnednnScratchpad& operator=(const OnednnScratchpad&) = delete;
  char* data() const { return p_; }

 private:
  static constexpr size_t kAlign = 4096;
  char* p_;
};

}  // namespace flexvid
#endif
