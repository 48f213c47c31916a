// A caching CPU allocator: freed tensor buffers of 64 KiB–16 MiB are kept in exact-size free lists
// and handed out again to the next request of the same size.
//
// Why: a training step or a sampling stage allocates the same few hundred buffer sizes over and
// over (every activation, every temporary), and even with the heap kept large (TuneAllocator in
// flexvid.cc) glibc walks its bins, splits and coalesces chunks for each of them, serially, while
// the other OpenMP thread waits. An exact-size hit is a hash lookup and returns memory that is
// already mapped and often still in cache. In-process A/B (alternate steps on and off), medians of
// several runs: Balls training step ≈ 0.98× (runs 0.977–1.002), one-video Balls sampling stage
// ≈ 0.97× (runs 0.935–1.008). Small buffers stay with glibc
// (its per-thread caches are as fast); large ones too: caching Maze's 40–85 MB activations filled
// any cap, held +400 MB and made its step slower, not faster.
//
// The cache holds at most kMaxCachedBytes of free buffers (beyond that, frees go to the system).
// FLEXVID_CPU_CACHE=0 in the environment leaves libtorch's own allocator in place;
// SetCpuCacheEnabled switches new allocations between the two at run time (A/B comparisons).
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace flexvid {
namespace {

constexpr size_t kMinCachedBytes = 64 << 10;   // smaller: glibc's bins are as fast
constexpr size_t kMaxBlockBytes = 16 << 20;    // larger: left to glibc (see above)
constexpr size_t kMaxCachedBytes = 256 << 20;
constexpr size_t kAlignment = 64;  // as c10's own CPU allocator (AVX-512 loads)

class CachingCpuAllocator final : public c10::Allocator {
 public:
  explicit CachingCpuAllocator(c10::Allocator* fallback) : fallback_(fallback), fallback_free_(fallback->raw_deleter()) {
    TORCH_CHECK(fallback_free_, "flexvid CPU allocator: libtorch's CPU allocator has no raw deleter");
  }

  // Every buffer's context is its data pointer (libtorch's raw_allocate/raw_deallocate need that),
  // so the size of a cached-range buffer is looked up in `live_` when it is freed.
  c10::DataPtr allocate(size_t n) const override {
    if (n < kMinCachedBytes || n > kMaxBlockBytes || !Enabled()) return fallback_->allocate(n);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(n);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        cached_ -= n;
        live_.emplace(p, n);
      }
    }
    if (!p) {
      const size_t rounded = (n + kAlignment - 1) / kAlignment * kAlignment;
      p = std::aligned_alloc(kAlignment, rounded);
      if (!p) {
        Trim();  // give the cached buffers back and try once more before failing
        p = std::aligned_alloc(kAlignment, rounded);
      }
      TORCH_CHECK(p, "flexvid CPU allocator: out of memory allocating ", n, " bytes");
      std::lock_guard<std::mutex> lock(mutex_);
      live_.emplace(p, n);
    }
    return {p, p, &Release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &Release; }

  // Frees every cached buffer.
  void Trim() const {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) std::free(p);
    free_.clear();
    cached_ = 0;
  }

  size_t CachedBytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

  static std::atomic<bool> g_enabled;

 private:
  static bool Enabled() { return g_enabled.load(std::memory_order_relaxed); }

  static void Release(void* p);

  c10::Allocator* fallback_;
  c10::DeleterFnPtr fallback_free_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<size_t, std::vector<void*>> free_;  // by exact byte size
  mutable std::unordered_map<void*, size_t> live_;               // handed-out cached-range buffers
  mutable size_t cached_ = 0;
};

std::atomic<bool> CachingCpuAllocator::g_enabled{true};

CachingCpuAllocator* g_allocator = nullptr;  // leaked on purpose: tensors may outlive static destructors

void CachingCpuAllocator::Release(void* p) {
  CachingCpuAllocator& a = *g_allocator;
  bool ours = false;
  {
    std::lock_guard<std::mutex> lock(a.mutex_);
    auto it = a.live_.find(p);
    if (it != a.live_.end()) {
      const size_t n = it->second;
      a.live_.erase(it);
      ours = true;
      if (a.cached_ + n <= kMaxCachedBytes) {
        a.free_[n].push_back(p);
        a.cached_ += n;
        return;
      }
    }
  }
  if (ours) std::free(p);       // the cache is full
  else a.fallback_free_(p);     // one of the fallback allocator's buffers
}

}  // namespace

// Installs the caching allocator as libtorch's CPU allocator (once; before any tensor exists is
// best, but buffers from the previous allocator keep their own deleters, so later is safe too).
void InstallCachingCpuAllocator() {
  const char* off = std::getenv("FLEXVID_CPU_CACHE");
  if (g_allocator || (off && std::strcmp(off, "0") == 0)) return;
  g_allocator = new CachingCpuAllocator(c10::GetCPUAllocator());
  c10::SetCPUAllocator(g_allocator, /*priority=*/1);
}

// Bytes of free buffers the cache holds (0 when it is not installed).
size_t CachedCpuBytes() { return g_allocator ? g_allocator->CachedBytes() : 0; }

// Whether new allocations of ≥ 64 KiB go through the cache (false: libtorch's allocator); returns
// whether the cache is installed at all.
bool SetCpuCacheEnabled(bool on) {
  CachingCpuAllocator::g_enabled.store(on);
  if (!on && g_allocator) g_allocator->Trim();
  return g_allocator != nullptr;
}

}  // namespace flexvid
