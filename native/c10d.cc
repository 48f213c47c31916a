// Distributed (c10d) entry points: libtorch's own process groups, exposed to JavaScript.
//
// One process group per process (the default group of torch.distributed): a c10d::TCPStore
// rendezvous (rank 0 hosts it) and a c10d::ProcessGroupGloo (CPU tensors) or, in CUDA builds
// compiled with USE_C10D_NCCL, a c10d::ProcessGroupNCCL (CUDA tensors). Collectives are blocking:
// they are issued and waited for on the calling (JS) thread, which is what synchronous
// data-parallel training needs. Everything with a design decision in it (bucketing, averaging,
// who writes files) lives in TypeScript (src/engine/distributed.ts).
//
// Building: Gloo support needs the Gloo headers next to the c10d headers (Debian: libgloo-dev,
// which scripts/setup.sh installs with libtorch-dev). Without them this file still compiles and
// distributedAvailable() is false, with the reason in distributedInfo().
#include <napi.h>

#include "autograd_util.h"
#include "guard.h"

#include <ATen/ATen.h>
#include <torch/csrc/api/include/torch/version.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#if __has_include(<torch/csrc/distributed/c10d/TCPStore.hpp>) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>) && \
    __has_include(<gloo/context.h>) && __has_include(<gloo/rendezvous/store.h>) && __has_include(<gloo/transport/device.h>)
#define FLEXVID_HAVE_GLOO 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1  // ProcessGroupGloo.hpp is empty unless this is defined
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#else
#define FLEXVID_HAVE_GLOO 0
#endif

// NCCL needs a CUDA libtorch, the CUDA toolkit headers and nccl.h; it is compiled only when the
// build asks for it (USE_C10D_NCCL, set by find-libtorch.mjs for CUDA libtorch with those headers).
#if FLEXVID_HAVE_GLOO && defined(USE_C10D_NCCL) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>) && __has_include(<nccl.h>)
#define FLEXVID_HAVE_NCCL 1
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#else
#define FLEXVID_HAVE_NCCL 0
#endif

namespace {

// Mirrors the tensor box of flexvid.cc (a Napi::External<TensorBox> whose only member is the
// tensor); collectives work in place on the tensors' storage, so no new handles are made here.
struct TensorBoxView {
  at::Tensor t;
};

at::Tensor tensor_arg(const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected a tensor handle");
  auto* box = static_cast<TensorBoxView*>(v.As<Napi::External<void>>().Data());
  if (!box->t.defined()) throw Napi::Error::New(v.Env(), std::string(what) + ": tensor used after dispose");
  return box->t;
}

std::vector<at::Tensor> tensor_list(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + ": expected an array of tensors");
  auto arr = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(tensor_arg(arr.Get(i), what));
  return out;
}

const char* unavailable_reason() {
#if FLEXVID_HAVE_GLOO
  return "";
#else
#if !__has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
  return "this libtorch ships no c10d headers (built without USE_DISTRIBUTED)";
#else
  return "the Gloo headers (gloo/context.h) were not found when the addon was built: install libgloo-dev "
         "(Debian/Ubuntu) and rebuild with: node native/build.mjs --force";
#endif
#endif
}

#if FLEXVID_HAVE_GLOO

struct Group {
  std::string backend;  // "gloo" | "nccl"
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#if FLEXVID_HAVE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
};

Group* g_group = nullptr;

Group& group(Napi::Env env) {
  if (!g_group) throw Napi::Error::New(env, "distributed: no process group (call initProcessGroup first)");
  return *g_group;
}

// Runs `fn(pg)` and waits for the returned work. CUDA tensors go to NCCL when the group has it,
// everything else (CPU tensors, host-side object exchange) to Gloo, as PyTorch routes by device.
template <typename F>
void run_blocking(Napi::Env env, const char* what, const at::Tensor& t, F fn) {
  Group& g = group(env);
  try {
#if FLEXVID_HAVE_NCCL
    if (g.nccl && t.is_cuda()) {
      auto work = fn(g.nccl);
      work->wait(g.timeout);
      return;
    }
#endif
    auto work = fn(g.gloo);
    work->wait(g.timeout);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string("distributed ") + what + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("distributed ") + what + ": " + e.what());
  }
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string get_string(const Napi::Object& o, const char* key, const std::string& dflt) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? std::string(v.As<Napi::String>()) : dflt;
}

double get_number(const Napi::Object& o, const char* key, double dflt) {
  Napi::Value v = o.Get(key);
  return v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : dflt;
}

// initProcessGroup({rank, worldSize, masterAddr, masterPort, backend?, timeoutMs?})
Napi::Value InitProcessGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_group) throw Napi::Error::New(env, "distributed: a process group is already initialised (destroyProcessGroup first)");
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "initProcessGroup: expected an options object");
  auto o = info[0].As<Napi::Object>();
  const int rank = static_cast<int>(get_number(o, "rank", -1));
  const int size = static_cast<int>(get_number(o, "worldSize", -1));
  const std::string addr = get_string(o, "masterAddr", "127.0.0.1");
  const double port = get_number(o, "masterPort", 29500);
  const std::string backend = get_string(o, "backend", "gloo");
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(get_number(o, "timeoutMs", 30 * 60 * 1000)));
  if (size < 1 || rank < 0 || rank >= size) {
    throw Napi::RangeError::New(env, "initProcessGroup: need 0 <= rank < worldSize, got rank " + std::to_string(rank) +
                                         ", worldSize " + std::to_string(size));
  }
  if (!(port >= 1 && port <= 65535)) throw Napi::RangeError::New(env, "initProcessGroup: masterPort must be in 1..65535");
  if (backend != "gloo" && backend != "nccl") throw Napi::Error::New(env, "initProcessGroup: backend must be 'gloo' or 'nccl', got '" + backend + "'");
#if !FLEXVID_HAVE_NCCL
  if (backend == "nccl") {
    throw Napi::Error::New(env, "initProcessGroup: this addon was built without NCCL (needs a CUDA libtorch, nccl.h and "
                                "USE_C10D_NCCL); use backend 'gloo'");
  }
#endif
  auto* g = new Group();
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(port);
    so.isServer = rank == 0;
    so.numWorkers = static_cast<std::size_t>(size);
    so.waitWorkers = true;
    so.timeout = timeout;
    g->store = c10::make_intrusive<c10d::TCPStore>(addr, so);
    g->backend = backend;
    g->rank = rank;
    g->size = size;
    g->timeout = timeout;
#if FLEXVID_HAVE_NCCL
    if (backend == "nccl") {
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      g->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("nccl", g->store), rank, size, opts);
    }
#endif
    // Gloo is always created: it carries CPU collectives (and barrier) in NCCL runs too.
    auto gopts = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname) {
      gopts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (is_loopback(addr)) {
      gopts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      gopts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    gopts->threads = 2;
    // The Gloo group gets its own key prefix so that it can share the store with NCCL.
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo", g->store);
    g->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, gopts);
  } catch (const c10::Error& e) {
    delete g;
    throw Napi::Error::New(env, std::string("initProcessGroup (rank ") + std::to_string(rank) + " of " + std::to_string(size) +
                                    ", " + addr + ":" + std::to_string(static_cast<int>(port)) + "): " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    delete g;
    throw Napi::Error::New(env, std::string("initProcessGroup (rank ") + std::to_string(rank) + " of " + std::to_string(size) +
                                    ", " + addr + ":" + std::to_string(static_cast<int>(port)) + "): " + e.what());
  }
  g_group = g;
  return env.Undefined();
}

Napi::Value DestroyProcessGroup(const Napi::CallbackInfo& info) {
  Group* g = g_group;
  g_group = nullptr;
  delete g;  // releases the process groups (their threads join) and the store connection
  return info.Env().Undefined();
}

c10d::ReduceOp reduce_op(Napi::Env env, const std::string& op) {
  if (op == "sum") return c10d::ReduceOp::SUM;
  if (op == "product") return c10d::ReduceOp::PRODUCT;
  if (op == "min") return c10d::ReduceOp::MIN;
  if (op == "max") return c10d::ReduceOp::MAX;
  throw Napi::Error::New(env, "allReduce: op must be sum, product, min or max, got '" + op + "'");
}

// allReduce(tensors[], op = "sum"): in place, every tensor separately (one collective each).
// Tensors must be contiguous and have the same shape and dtype on every rank.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto tensors = tensor_list(info[0], "allReduce");
  c10d::AllreduceOptions opts;
  opts.reduceOp = reduce_op(env, info.Length() > 1 && info[1].IsString() ? std::string(info[1].As<Napi::String>()) : "sum");
  for (auto& t : tensors) {
    std::vector<at::Tensor> one{t};
    run_blocking(env, "allReduce", t, [&](auto& pg) { return pg->allreduce(one, opts); });
    flexvid::MarkWritten(t);
  }
  return env.Undefined();
}

// broadcast(tensors[], root = 0): in place, every tensor separately.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto tensors = tensor_list(info[0], "broadcast");
  c10d::BroadcastOptions opts;
  opts.rootRank = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int64Value() : 0;
  opts.rootTensor = 0;
  if (opts.rootRank < 0 || opts.rootRank >= group(env).size) throw Napi::RangeError::New(env, "broadcast: root out of range");
  for (auto& t : tensors) {
    std::vector<at::Tensor> one{t};
    run_blocking(env, "broadcast", t, [&](auto& pg) { return pg->broadcast(one, opts); });
    flexvid::MarkWritten(t);
  }
  return env.Undefined();
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group& g = group(env);
  c10d::BarrierOptions opts;
  opts.timeout = g.timeout;
  try {
    // Always through Gloo: an NCCL barrier needs a device, and a host barrier is what is meant.
    auto work = g.gloo->barrier(opts);
    work->wait(g.timeout);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string("distributed barrier: ") + e.what_without_backtrace());
  }
  return env.Undefined();
}

// storeSet(key, value: string) / storeGet(key) -> string (waits for the key up to the timeout)
Napi::Value StoreSet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string key = info[0].As<Napi::String>();
  std::string value = info[1].As<Napi::String>();
  try {
    group(env).store->set("flexvid/" + key, std::vector<uint8_t>(value.begin(), value.end()));
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string("distributed storeSet: ") + e.what_without_backtrace());
  }
  return env.Undefined();
}

Napi::Value StoreGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string key = info[0].As<Napi::String>();
  try {
    auto bytes = group(env).store->get("flexvid/" + key);
    return Napi::String::New(env, std::string(bytes.begin(), bytes.end()));
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string("distributed storeGet('") + key + "'): " + e.what_without_backtrace());
  }
}

#endif  // FLEXVID_HAVE_GLOO

Napi::Value DistributedAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), FLEXVID_HAVE_GLOO != 0);
}

Napi::Value DistributedInfo(const Napi::CallbackInfo& info) {
  auto out = Napi::Object::New(info.Env());
  out.Set("gloo", FLEXVID_HAVE_GLOO != 0);
  out.Set("nccl", FLEXVID_HAVE_NCCL != 0);
  out.Set("torch", TORCH_VERSION);
  out.Set("reason", unavailable_reason());
#if FLEXVID_HAVE_GLOO
  out.Set("initialized", g_group != nullptr);
  if (g_group) {
    out.Set("rank", g_group->rank);
    out.Set("worldSize", g_group->size);
    out.Set("backend", g_group->backend);
  }
#else
  out.Set("initialized", false);
#endif
  return out;
}


}  // namespace

void RegisterDistributed(Napi::Env env, Napi::Object exports) {
  exports.Set("distributedAvailable", Napi::Function::New(env, flexvid::Guarded<DistributedAvailable>));
  exports.Set("distributedInfo", Napi::Function::New(env, flexvid::Guarded<DistributedInfo>));
#if FLEXVID_HAVE_GLOO
  exports.Set("initProcessGroup", Napi::Function::New(env, flexvid::Guarded<InitProcessGroup>));
  exports.Set("destroyProcessGroup", Napi::Function::New(env, flexvid::Guarded<DestroyProcessGroup>));
  exports.Set("allReduce", Napi::Function::New(env, flexvid::Guarded<AllReduce>));
  exports.Set("broadcast", Napi::Function::New(env, flexvid::Guarded<Broadcast>));
  exports.Set("barrier", Napi::Function::New(env, flexvid::Guarded<Barrier>));
  exports.Set("storeSet", Napi::Function::New(env, flexvid::Guarded<StoreSet>));
  exports.Set("storeGet", Napi::Function::New(env, flexvid::Guarded<StoreGet>));
#endif
}
