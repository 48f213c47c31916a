// flexvid native binding: a thin Node-API layer over libtorch.
//
// Design: instead of one hand-written wrapper per tensor operation, every ATen operator is
// reached through the c10 dispatcher by name ("aten::conv2d", overload ""), with its arguments
// converted from JavaScript according to the operator's own schema. This keeps the binding
// small, version-tolerant (libtorch 1.13 … 2.x) and complete: autograd, CPU and CUDA kernels
// are all selected by the dispatcher exactly as in PyTorch. Everything that has a design
// decision in it lives in TypeScript (src/engine).
//
// Tensors cross the boundary as Napi::External<TensorBox>. JavaScript frees them
// deterministically with `free`; the External's finalizer is only a safety net.

#include <napi.h>

#include "autograd_util.h"
#include "guard.h"

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/api/include/torch/version.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace flexvid {
bool HasOnednnKernels();  // winograd.cc: are the oneDNN kernels (Winograd conv3x3, bmm) compiled in?
}

namespace {

// ---------------------------------------------------------------------------------------------
// Tensor handles and the live-tensor registry (for leak tests and memory counters).

struct TensorBox {
  at::Tensor t;
};

std::mutex g_live_mutex;
std::unordered_set<TensorBox*> g_live;  // boxes whose tensor is still defined

void box_finalize(Napi::Env, TensorBox* box) {
  {
    std::lock_guard<std::mutex> lock(g_live_mutex);
    g_live.erase(box);
  }
  delete box;
}

Napi::Value wrap_tensor(Napi::Env env, at::Tensor t) {
  auto* box = new TensorBox{std::move(t)};
  {
    std::lock_guard<std::mutex> lock(g_live_mutex);
    g_live.insert(box);
  }
  return Napi::External<TensorBox>::New(env, box, box_finalize);
}

TensorBox* unwrap_box(const Napi::Value& v, const char* what) {
  if (!v.IsExternal()) {
    throw Napi::TypeError::New(v.Env(), std::string("expected a tensor handle for ") + what);
  }
  return v.As<Napi::External<TensorBox>>().Data();
}

const at::Tensor& unwrap_tensor(const Napi::Value& v, const char* what) {
  TensorBox* box = unwrap_box(v, what);
  if (!box->t.defined()) {
    throw Napi::Error::New(v.Env(), std::string("tensor used after dispose (") + what + ")");
  }
  return box->t;
}

struct GeneratorBox {
  at::Generator g;
};

GeneratorBox* unwrap_generator(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "expected a generator handle");
  return v.As<Napi::External<GeneratorBox>>().Data();
}

std::string shape_str(const at::Tensor& t) {
  std::ostringstream s;
  s << c10::toString(t.scalar_type()) << "[";
  for (int64_t i = 0; i < t.dim(); ++i) s << (i ? ", " : "") << t.size(i);
  s << "]";
  if (!t.device().is_cpu()) s << "@" << t.device();
  return s.str();
}

// ---------------------------------------------------------------------------------------------
// Operator table: JS resolves "aten::name.overload" once and calls by integer id.

struct OpEntry {
  std::string name;
  c10::OperatorHandle handle;
};
std::vector<OpEntry> g_ops;
std::unordered_map<std::string, int32_t> g_op_ids;

// resolveOp(qualifiedName: string) -> id (number) | throws
Napi::Value ResolveOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string full = info[0].As<Napi::String>();
  auto it = g_op_ids.find(full);
  if (it != g_op_ids.end()) return Napi::Number::New(env, it->second);
  std::string name = full, overload;
  auto dot = full.find('.');
  if (dot != std::string::npos) {
    name = full.substr(0, dot);
    overload = full.substr(dot + 1);
  }
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle.has_value()) {
    throw Napi::Error::New(env, "unknown libtorch operator '" + full + "' in this libtorch " +
                                    std::string(TORCH_VERSION));
  }
  int32_t id = static_cast<int32_t>(g_ops.size());
  g_ops.push_back({full, *handle});
  g_op_ids[full] = id;
  return Napi::Number::New(env, id);
}

// opSchema(id) -> string (for error messages and debugging)
Napi::Value OpSchema(const Napi::CallbackInfo& info) {
  int32_t id = info[0].As<Napi::Number>().Int32Value();
  std::ostringstream s;
  s << g_ops.at(id).handle.schema();
  return Napi::String::New(info.Env(), s.str());
}

std::vector<int64_t> to_int_vector(const Napi::Value& v) {
  std::vector<int64_t> out;
  if (v.IsNumber()) {
    out.push_back(v.As<Napi::Number>().Int64Value());
    return out;
  }
  auto arr = v.As<Napi::Array>();
  out.reserve(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(arr.Get(i).As<Napi::Number>().Int64Value());
  return out;
}

c10::Scalar to_scalar(const Napi::Value& v) {
  if (v.IsBoolean()) return c10::Scalar(v.As<Napi::Boolean>().Value());
  double d = v.As<Napi::Number>().DoubleValue();
  // Integral JS numbers become integer scalars so that integer tensors keep their dtype;
  // for floating tensors an integer scalar does not change the result type.
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.007199254740992e15) {
    return c10::Scalar(static_cast<int64_t>(d));
  }
  return c10::Scalar(d);
}

c10::IValue to_ivalue(const Napi::Value& v, const c10::TypePtr& type, const std::string& argName);

c10::IValue to_list_ivalue(const Napi::Value& v, const c10::TypePtr& elem, const std::string& argName) {
  switch (elem->kind()) {
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
      return c10::IValue(to_int_vector(v));
    case c10::TypeKind::FloatType: {
      auto arr = v.As<Napi::Array>();
      std::vector<double> out;
      for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(arr.Get(i).As<Napi::Number>().DoubleValue());
      return c10::IValue(out);
    }
    case c10::TypeKind::BoolType: {
      auto arr = v.As<Napi::Array>();
      c10::List<bool> out;
      for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(arr.Get(i).As<Napi::Boolean>().Value());
      return c10::IValue(out);
    }
    case c10::TypeKind::TensorType: {
      auto arr = v.As<Napi::Array>();
      std::vector<at::Tensor> out;
      out.reserve(arr.Length());
      for (uint32_t i = 0; i < arr.Length(); ++i) out.push_back(unwrap_tensor(arr.Get(i), argName.c_str()));
      return c10::IValue(out);
    }
    case c10::TypeKind::OptionalType: {
      // Tensor?[] (used by index / index_put)
      auto arr = v.As<Napi::Array>();
      c10::List<c10::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < arr.Length(); ++i) {
        Napi::Value e = arr.Get(i);
        if (e.IsNull() || e.IsUndefined()) out.push_back(c10::nullopt);
        else out.push_back(unwrap_tensor(e, argName.c_str()));
      }
      return c10::IValue(out);
    }
    default:
      throw Napi::TypeError::New(v.Env(), "unsupported list element type " + elem->str() + " for argument " + argName);
  }
}

c10::IValue to_ivalue(const Napi::Value& v, const c10::TypePtr& type, const std::string& argName) {
  Napi::Env env = v.Env();
  switch (type->kind()) {
    case c10::TypeKind::OptionalType:
      if (v.IsNull() || v.IsUndefined()) return c10::IValue();
      return to_ivalue(v, type->castRaw<c10::OptionalType>()->getElementType(), argName);
    case c10::TypeKind::TensorType:
      return c10::IValue(unwrap_tensor(v, argName.c_str()));
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
    case c10::TypeKind::ScalarTypeType:
    case c10::TypeKind::LayoutType:
    case c10::TypeKind::MemoryFormatType:
      if (v.IsBoolean()) return c10::IValue(static_cast<int64_t>(v.As<Napi::Boolean>().Value()));
      return c10::IValue(v.As<Napi::Number>().Int64Value());
    case c10::TypeKind::FloatType:
      return c10::IValue(v.As<Napi::Number>().DoubleValue());
    case c10::TypeKind::BoolType:
      if (v.IsNumber()) return c10::IValue(v.As<Napi::Number>().DoubleValue() != 0);
      return c10::IValue(v.As<Napi::Boolean>().Value());
    case c10::TypeKind::NumberType:
      return c10::IValue(to_scalar(v));
    case c10::TypeKind::StringType:
      return c10::IValue(std::string(v.As<Napi::String>()));
    case c10::TypeKind::DeviceObjType:
      return c10::IValue(c10::Device(std::string(v.As<Napi::String>())));
    case c10::TypeKind::GeneratorType:
      return c10::IValue(unwrap_generator(v)->g);
    case c10::TypeKind::ListType:
      return to_list_ivalue(v, type->castRaw<c10::ListType>()->getElementType(), argName);
    default:
      throw Napi::TypeError::New(env, "unsupported argument type " + type->str() + " for " + argName);
  }
}

Napi::Value from_ivalue(Napi::Env env, const c10::IValue& v) {
  if (v.isTensor()) return wrap_tensor(env, v.toTensor());
  if (v.isNone()) return env.Null();
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isScalar()) {
    auto s = v.toScalar();
    return Napi::Number::New(env, s.toDouble());
  }
  if (v.isTensorList()) {
    auto list = v.toTensorList();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) arr.Set(i, wrap_tensor(env, list.get(i)));
    return arr;
  }
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    auto arr = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); ++i) arr.Set(i, from_ivalue(env, elems[i]));
    return arr;
  }
  if (v.isIntList()) {
    auto list = v.toIntVector();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) arr.Set(i, Napi::Number::New(env, static_cast<double>(list[i])));
    return arr;
  }
  if (v.isList()) {
    auto list = v.toListRef();
    auto arr = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); ++i) arr.Set(i, from_ivalue(env, list[i]));
    return arr;
  }
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  throw Napi::TypeError::New(env, "unsupported return type " + v.tagKind());
}

std::string describe_args(const Napi::Array& args) {
  std::ostringstream s;
  for (uint32_t i = 0; i < args.Length(); ++i) {
    Napi::Value a = args.Get(i);
    s << (i ? ", " : "");
    if (a.IsExternal()) {
      auto* box = a.As<Napi::External<TensorBox>>().Data();
      s << (box->t.defined() ? shape_str(box->t) : std::string("<disposed>"));
    } else if (a.IsArray()) {
      auto arr = a.As<Napi::Array>();
      s << "[";
      for (uint32_t j = 0; j < arr.Length() && j < 8; ++j) {
        Napi::Value e = arr.Get(j);
        s << (j ? ", " : "");
        if (e.IsExternal()) s << shape_str(e.As<Napi::External<TensorBox>>().Data()->t);
        else if (e.IsNumber()) s << e.As<Napi::Number>().DoubleValue();
        else s << "…";
      }
      s << (arr.Length() > 8 ? ", …]" : "]");
    } else if (a.IsNumber()) {
      s << a.As<Napi::Number>().DoubleValue();
    } else if (a.IsBoolean()) {
      s << (a.As<Napi::Boolean>().Value() ? "true" : "false");
    } else if (a.IsString()) {
      s << '"' << std::string(a.As<Napi::String>()) << '"';
    } else if (a.IsNull() || a.IsUndefined()) {
      s << "None";
    } else {
      s << "?";
    }
  }
  return s.str();
}

// callOp(id, args: any[], returnSelf?: boolean) -> value | value[]
// Positional arguments follow the schema; missing trailing arguments take schema defaults.
// With returnSelf (used for in-place operators), a single tensor result that is the very tensor
// passed as the first argument is returned as that argument's own handle instead of a new one,
// which saves allocating (and then freeing) a duplicate handle per in-place call.
Napi::Value CallOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t id = info[0].As<Napi::Number>().Int32Value();
  auto args = info[1].As<Napi::Array>();
  const OpEntry& op = g_ops.at(id);
  const auto& schema = op.handle.schema();
  const auto& formals = schema.arguments();
  if (args.Length() > formals.size()) {
    throw Napi::Error::New(env, op.name + ": too many arguments (" + std::to_string(args.Length()) + " > " +
                                    std::to_string(formals.size()) + ")");
  }
  try {
    std::vector<c10::IValue> stack;
    stack.reserve(formals.size());
    for (size_t i = 0; i < formals.size(); ++i) {
      const auto& formal = formals[i];
      Napi::Value a = i < args.Length() ? args.Get(i) : env.Undefined();
      if (a.IsUndefined()) {
        if (formal.default_value().has_value()) {
          stack.push_back(*formal.default_value());
          continue;
        }
        if (formal.type()->kind() == c10::TypeKind::OptionalType) {
          stack.emplace_back();
          continue;
        }
        throw Napi::Error::New(env, "missing argument '" + formal.name() + "'");
      }
      stack.push_back(to_ivalue(a, formal.type(), formal.name()));
    }
    op.handle.callBoxed(&stack);
    if (stack.size() == 1 && info.Length() > 2 && info[2].ToBoolean().Value() && stack[0].isTensor() && args.Length() > 0) {
      Napi::Value first = args.Get(0u);
      if (first.IsExternal()) {
        const at::Tensor& self = first.As<Napi::External<TensorBox>>().Data()->t;
        if (self.defined() && self.unsafeGetTensorImpl() == stack[0].toTensor().unsafeGetTensorImpl()) return first;
      }
    }
    if (stack.size() == 1) return from_ivalue(env, stack[0]);
    auto out = Napi::Array::New(env, stack.size());
    for (size_t i = 0; i < stack.size(); ++i) out.Set(i, from_ivalue(env, stack[i]));
    return out;
  } catch (const Napi::Error& e) {
    throw Napi::Error::New(env, op.name + "(" + describe_args(args) + "): " + e.Message());
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, op.name + "(" + describe_args(args) + "): " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, op.name + "(" + describe_args(args) + "): " + e.what());
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor creation from and export to JS memory.

size_t element_size(c10::ScalarType st) { return c10::elementSize(st); }

// fromBytes(bytes: Uint8Array|TypedArray, shape: number[], dtype: number) -> tensor (CPU, owns a copy)
Napi::Value FromBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto ta = info[0].As<Napi::TypedArray>();
  auto shape = to_int_vector(info[1]);
  auto st = static_cast<c10::ScalarType>(info[2].As<Napi::Number>().Int32Value());
  auto buf = ta.ArrayBuffer();
  const uint8_t* src = static_cast<const uint8_t*>(buf.Data()) + ta.ByteOffset();
  size_t nbytes = ta.ByteLength();
  int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (static_cast<size_t>(numel) * element_size(st) != nbytes) {
    throw Napi::Error::New(env, "fromBytes: " + std::to_string(nbytes) + " bytes do not match shape with " +
                                    std::to_string(numel) + " elements of " + c10::toString(st));
  }
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(st));
  if (nbytes) std::memcpy(t.data_ptr(), src, nbytes);
  return wrap_tensor(env, t);
}

// toBytes(tensor) -> ArrayBuffer holding the C-order contents (copied to CPU if needed)
Napi::Value ToBytes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    at::Tensor t = unwrap_tensor(info[0], "toBytes");
    at::Tensor c;
    {
      at::NoGradGuard ng;
      c = t.detach().to(at::kCPU).contiguous();
    }
    size_t nbytes = static_cast<size_t>(c.numel()) * c.element_size();
    auto ab = Napi::ArrayBuffer::New(env, nbytes);
    if (nbytes) std::memcpy(ab.Data(), c.data_ptr(), nbytes);
    return ab;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string("toBytes: ") + e.what_without_backtrace());
  }
}

// copyInto(tensor, bytes): overwrite a CPU contiguous tensor's contents from JS memory (no allocation).
Napi::Value CopyInto(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = unwrap_tensor(info[0], "copyInto");
  auto ta = info[1].As<Napi::TypedArray>();
  size_t nbytes = static_cast<size_t>(t.numel()) * t.element_size();
  if (!t.device().is_cpu() || !t.is_contiguous() || ta.ByteLength() != nbytes) {
    throw Napi::Error::New(env, "copyInto: target must be a contiguous CPU tensor of " +
                                    std::to_string(ta.ByteLength()) + " bytes, got " + shape_str(t));
  }
  const uint8_t* src = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
  if (nbytes) std::memcpy(t.data_ptr(), src, nbytes);
  flexvid::MarkWritten(t);
  return env.Undefined();
}

// meta(tensor) -> [shape[], dtype, deviceString, requiresGrad, isContiguous]
Napi::Value Meta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = unwrap_tensor(info[0], "meta");
  auto shape = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  auto out = Napi::Array::New(env, 5);
  out.Set(0u, shape);
  out.Set(1u, Napi::Number::New(env, static_cast<int>(t.scalar_type())));
  out.Set(2u, Napi::String::New(env, t.device().str()));
  out.Set(3u, Napi::Boolean::New(env, t.requires_grad()));
  out.Set(4u, Napi::Boolean::New(env, t.is_contiguous()));
  return out;
}

Napi::Value Strides(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = unwrap_tensor(info[0], "strides");
  auto arr = Napi::Array::New(env, t.dim());
  for (int64_t i = 0; i < t.dim(); ++i) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(t.stride(i))));
  return arr;
}

Napi::Value IsContiguousIn(const Napi::CallbackInfo& info) {
  const at::Tensor& t = unwrap_tensor(info[0], "isContiguous");
  auto fmt = static_cast<c10::MemoryFormat>(info[1].As<Napi::Number>().Int32Value());
  return Napi::Boolean::New(info.Env(), t.is_contiguous(fmt));
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  TensorBox* box = unwrap_box(info[0], "free");
  if (box->t.defined()) {
    box->t.reset();
    std::lock_guard<std::mutex> lock(g_live_mutex);
    g_live.erase(box);
  }
  return info.Env().Undefined();
}

Napi::Value IsFreed(const Napi::CallbackInfo& info) {
  TensorBox* box = unwrap_box(info[0], "isFreed");
  return Napi::Boolean::New(info.Env(), !box->t.defined());
}

// Same underlying TensorImpl (an in-place op returned its input)?
Napi::Value SameTensor(const Napi::CallbackInfo& info) {
  const at::Tensor& a = unwrap_tensor(info[0], "a");
  const at::Tensor& b = unwrap_tensor(info[1], "b");
  return Napi::Boolean::New(info.Env(), a.unsafeGetTensorImpl() == b.unsafeGetTensorImpl());
}

Napi::Value LiveCount(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  return Napi::Number::New(info.Env(), static_cast<double>(g_live.size()));
}

// Bytes of distinct storages referenced by live handles, per device type (cpu, cuda).
Napi::Value LiveBytes(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(g_live_mutex);
  std::unordered_set<const void*> seen;
  double cpu = 0, cuda = 0;
  for (auto* box : g_live) {
    if (!box->t.defined() || !box->t.has_storage()) continue;
    const auto& st = box->t.storage();
    const void* key = st.unsafeGetStorageImpl();
    if (!seen.insert(key).second) continue;
    (box->t.device().is_cuda() ? cuda : cpu) += static_cast<double>(st.nbytes());
  }
  auto out = Napi::Object::New(info.Env());
  out.Set("cpu", cpu);
  out.Set("cuda", cuda);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Autograd.

Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  const at::Tensor& t = unwrap_tensor(info[0], "setRequiresGrad");
  try {
    t.set_requires_grad(info[1].As<Napi::Boolean>().Value());
  } catch (const c10::Error& e) {
    throw Napi::Error::New(info.Env(), std::string("requiresGrad: ") + e.what_without_backtrace());
  }
  return info.Env().Undefined();
}

Napi::Value Grad(const Napi::CallbackInfo& info) {
  const at::Tensor& t = unwrap_tensor(info[0], "grad");
  const at::Tensor& g = t.grad();
  if (!g.defined()) return info.Env().Null();
  return wrap_tensor(info.Env(), g);
}

// setGrad(t, g | null)
Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  const at::Tensor& t = unwrap_tensor(info[0], "setGrad");
  if (info[1].IsNull() || info[1].IsUndefined()) {
    t.mutable_grad().reset();
  } else {
    t.mutable_grad() = unwrap_tensor(info[1], "grad");
  }
  return info.Env().Undefined();
}

// backward(tensors[], grads[] | null, retainGraph, createGraph)
Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto arr = info[0].As<Napi::Array>();
  std::vector<at::Tensor> outputs, grads;
  for (uint32_t i = 0; i < arr.Length(); ++i) outputs.push_back(unwrap_tensor(arr.Get(i), "backward"));
  if (info[1].IsArray()) {
    auto g = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < g.Length(); ++i) {
      Napi::Value e = g.Get(i);
      grads.push_back(e.IsNull() || e.IsUndefined() ? at::Tensor() : unwrap_tensor(e, "backward grad"));
    }
  }
  bool retain = info[2].ToBoolean().Value();
  bool create = info[3].ToBoolean().Value();
  try {
    torch::autograd::backward(outputs, grads, retain, create);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string("backward: ") + e.what_without_backtrace());
  }
  return env.Undefined();
}

// autogradGrad(outputs[], inputs[], gradOutputs[]|null, retain, create, allowUnused) -> (tensor|null)[]
Napi::Value AutogradGrad(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto outs = info[0].As<Napi::Array>();
  auto ins = info[1].As<Napi::Array>();
  std::vector<at::Tensor> outputs, inputs, grads;
  for (uint32_t i = 0; i < outs.Length(); ++i) outputs.push_back(unwrap_tensor(outs.Get(i), "grad output"));
  for (uint32_t i = 0; i < ins.Length(); ++i) inputs.push_back(unwrap_tensor(ins.Get(i), "grad input"));
  if (info[2].IsArray()) {
    auto g = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < g.Length(); ++i) grads.push_back(unwrap_tensor(g.Get(i), "grad_outputs"));
  }
  bool retain = info[3].ToBoolean().Value();
  bool create = info[4].ToBoolean().Value();
  bool allowUnused = info[5].ToBoolean().Value();
  try {
    auto res = torch::autograd::grad(outputs, inputs, grads, retain, create, allowUnused);
    auto arr = Napi::Array::New(env, res.size());
    for (size_t i = 0; i < res.size(); ++i) arr.Set(i, res[i].defined() ? wrap_tensor(env, res[i]) : env.Null());
    return arr;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(env, std::string("grad: ") + e.what_without_backtrace());
  }
}

Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled());
}

Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  at::GradMode::set_enabled(info[0].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}

// Inference mode is an RAII guard in C++; JS scopes push and pop it.
std::vector<std::unique_ptr<c10::InferenceMode>> g_inference_stack;

Napi::Value PushInferenceMode(const Napi::CallbackInfo& info) {
  g_inference_stack.push_back(std::make_unique<c10::InferenceMode>(true));
  return info.Env().Undefined();
}

Napi::Value PopInferenceMode(const Napi::CallbackInfo& info) {
  if (!g_inference_stack.empty()) g_inference_stack.pop_back();
  return info.Env().Undefined();
}

Napi::Value IsInferenceTensor(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), unwrap_tensor(info[0], "isInference").is_inference());
}

// ---------------------------------------------------------------------------------------------
// Operator profiler: a RecordFunction callback that sums wall time per operator (optionally
// per operator and input shapes). Self time excludes nested operators (aten::linear -> aten::mm),
// so the table adds up to the profiled wall time. Behind `E.profile` (and the model benchmark's
// `--profile`): where a training step goes, without Kineto.

struct ProfEntry {
  int64_t calls = 0;
  double total_us = 0;
  double self_us = 0;
};

struct ProfFrame {
  std::chrono::steady_clock::time_point t0;
  double child_us = 0;
  std::string key;
};

std::mutex g_prof_mutex;
std::unordered_map<std::string, ProfEntry> g_prof;
std::atomic<bool> g_prof_shapes{false};
at::CallbackHandle g_prof_handle = 0;
thread_local std::vector<ProfFrame> t_prof_stack;

std::string prof_key(const at::RecordFunction& fn) {
  std::string key = fn.name();
  if (!g_prof_shapes.load()) return key;
  key += " [";
  bool first = true;
  for (const auto& v : fn.inputs()) {
    if (!v.isTensor()) continue;
    if (!first) key += ", ";
    first = false;
    const auto& t = v.toTensor();
    if (!t.defined()) { key += "-"; continue; }
    key += "[";
    for (int64_t d = 0; d < t.dim(); d++) key += (d ? "," : "") + std::to_string(t.size(d));
    key += "]";
    if (t.dim() > 1 && !t.is_contiguous()) key += "nc";
  }
  return key + "]";
}

std::unique_ptr<at::ObserverContext> prof_enter(const at::RecordFunction& fn) {
  t_prof_stack.push_back({std::chrono::steady_clock::now(), 0, prof_key(fn)});
  return nullptr;
}

void prof_exit(const at::RecordFunction&, at::ObserverContext*) {
  if (t_prof_stack.empty()) return;  // started before the callback was installed
  ProfFrame f = std::move(t_prof_stack.back());
  t_prof_stack.pop_back();
  double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - f.t0).count();
  if (!t_prof_stack.empty()) t_prof_stack.back().child_us += us;
  std::lock_guard<std::mutex> lock(g_prof_mutex);
  auto& e = g_prof[f.key];
  e.calls++;
  e.total_us += us;
  e.self_us += us - f.child_us;
}

// profileStart(withShapes: boolean)
Napi::Value ProfileStart(const Napi::CallbackInfo& info) {
  if (g_prof_handle) throw Napi::Error::New(info.Env(), "profileStart: the profiler is already running");
  g_prof_shapes = info.Length() > 0 && info[0].IsBoolean() && info[0].As<Napi::Boolean>().Value();
  {
    std::lock_guard<std::mutex> lock(g_prof_mutex);
    g_prof.clear();
  }
  auto cb = at::RecordFunctionCallback(prof_enter, prof_exit).needsInputs(g_prof_shapes.load()).scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION});
  g_prof_handle = at::addGlobalCallback(cb);
  return info.Env().Undefined();
}

// profileStop() -> [{ name, calls, totalMs, selfMs }]
Napi::Value ProfileStop(const Napi::CallbackInfo& info) {
  if (g_prof_handle) at::removeCallback(g_prof_handle);
  g_prof_handle = 0;
  std::lock_guard<std::mutex> lock(g_prof_mutex);
  auto arr = Napi::Array::New(info.Env(), g_prof.size());
  uint32_t i = 0;
  for (const auto& [k, e] : g_prof) {
    auto o = Napi::Object::New(info.Env());
    o.Set("name", k);
    o.Set("calls", static_cast<double>(e.calls));
    o.Set("totalMs", e.total_us / 1000.0);
    o.Set("selfMs", e.self_us / 1000.0);
    arr[i++] = o;
  }
  g_prof.clear();
  return arr;
}

// ---------------------------------------------------------------------------------------------
// Autocast (mixed precision). libtorch keeps one flag and dtype per device type; operators on
// the autocast list then run in the lower precision. setAutocast(device, enabled, dtype).

Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  std::string device = info[0].As<Napi::String>();
  bool enabled = info[1].As<Napi::Boolean>().Value();
  std::string dtype = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "bfloat16";
  at::ScalarType st;
  if (dtype == "bfloat16") st = at::kBFloat16;
  else if (dtype == "float16") st = at::kHalf;
  else throw Napi::Error::New(info.Env(), "setAutocast: dtype must be bfloat16 or float16, got " + dtype);
  if (device != "cpu" && device != "cuda") throw Napi::Error::New(info.Env(), "setAutocast: device must be cpu or cuda, got " + device);
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  // libtorch 2.4 replaced the per-device functions with device-type arguments.
  const auto type = device == "cpu" ? at::kCPU : at::kCUDA;
  at::autocast::set_autocast_dtype(type, st);
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (device == "cpu") {
    at::autocast::set_autocast_cpu_dtype(st);
    at::autocast::set_cpu_enabled(enabled);
  } else {
    at::autocast::set_autocast_gpu_dtype(st);
    at::autocast::set_enabled(enabled);
  }
#endif
  if (!enabled) at::autocast::clear_cache();
  return info.Env().Undefined();
}

Napi::Value IsAutocast(const Napi::CallbackInfo& info) {
  std::string device = info[0].As<Napi::String>();
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  return Napi::Boolean::New(info.Env(), at::autocast::is_autocast_enabled(device == "cuda" ? at::kCUDA : at::kCPU));
#else
  return Napi::Boolean::New(info.Env(), device == "cuda" ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled());
#endif
}

// ---------------------------------------------------------------------------------------------
// Random generators with explicit seeds and savable state.

void generator_finalize(Napi::Env, GeneratorBox* g) { delete g; }

// newGenerator(seed: number|bigint-as-string, device: string) -> generator
Napi::Value NewGenerator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  std::string dev = info.Length() > 1 && info[1].IsString() ? std::string(info[1].As<Napi::String>()) : "cpu";
  at::Generator g;
  c10::Device device(dev);
  if (!device.is_cpu() && !(device.is_cuda() && at::hasCUDA() && at::detail::getCUDAHooks().getNumGPUs() > 0)) {
    throw Napi::Error::New(env, "Generator: device '" + dev + "' is not available (this libtorch " +
                                    std::string(TORCH_VERSION) + (at::hasCUDA() ? " sees no CUDA device)" : " has no CUDA)"));
  }
  if (device.is_cpu()) {
    g = at::detail::createCPUGenerator(seed);
  } else {
    // A CUDA generator comes from the CUDA hooks, so this file needs no CUDA headers.
    g = at::detail::getCUDAHooks().getDefaultCUDAGenerator(device.has_index() ? device.index() : 0).clone();
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
  return Napi::External<GeneratorBox>::New(env, new GeneratorBox{g}, generator_finalize);
}

Napi::Value GeneratorGetState(const Napi::CallbackInfo& info) {
  auto* gb = unwrap_generator(info[0]);
  std::lock_guard<std::mutex> lock(gb->g.mutex());
  return wrap_tensor(info.Env(), gb->g.get_state());
}

Napi::Value GeneratorSetState(const Napi::CallbackInfo& info) {
  auto* gb = unwrap_generator(info[0]);
  const at::Tensor& st = unwrap_tensor(info[1], "generator state");
  try {
    std::lock_guard<std::mutex> lock(gb->g.mutex());
    gb->g.set_state(st);
  } catch (const c10::Error& e) {
    throw Napi::Error::New(info.Env(), std::string("generator setState: ") + e.what_without_backtrace());
  }
  return info.Env().Undefined();
}

Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  auto seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  auto g = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed(seed);
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------------
// Threads, devices, version.

Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  at::set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}

Napi::Value CudaAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::hasCUDA() && at::detail::getCUDAHooks().getNumGPUs() > 0);
}

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0);
}

Napi::Value Version(const Napi::CallbackInfo& info) {
  auto out = Napi::Object::New(info.Env());
  out.Set("torch", TORCH_VERSION);
  out.Set("cuda", at::hasCUDA());
  out.Set("mkldnn", at::hasMKLDNN());
  out.Set("openmp", at::hasOpenMP());
  out.Set("parallel", at::get_parallel_info());
  out.Set("onednnKernels", flexvid::HasOnednnKernels());
  return out;
}

// Has this libtorch an operator of that name? (feature probing, e.g. scaled_dot_product_attention)
Napi::Value HasOp(const Napi::CallbackInfo& info) {
  std::string full = info[0].As<Napi::String>();
  std::string name = full, overload;
  auto dot = full.find('.');
  if (dot != std::string::npos) {
    name = full.substr(0, dot);
    overload = full.substr(dot + 1);
  }
  return Napi::Boolean::New(info.Env(), c10::Dispatcher::singleton().findSchema({name, overload}).has_value());
}


}  // namespace

// Defined in cpu_allocator.cc.
namespace flexvid {
void InstallCachingCpuAllocator();
bool SetCpuCacheEnabled(bool on);
size_t CachedCpuBytes();
}  // namespace flexvid

// setCpuCache(on) -> whether the caching CPU allocator is installed (FLEXVID_CPU_CACHE=0 leaves
// libtorch's own); off also returns the cached buffers to the system.
Napi::Value SetCpuCache(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), flexvid::SetCpuCacheEnabled(info[0].ToBoolean().Value()));
}

// tensorVersions(tensors[]) -> the sum of their version counters (bumped by every in-place write;
// versions only grow, so for the same tensors a changed sum means some tensor was written), or −1
// when one of them is an inference tensor (those have no counter).
Napi::Value TensorVersions(const Napi::CallbackInfo& info) {
  auto arr = info[0].As<Napi::Array>();
  double sum = 0;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const at::Tensor& t = unwrap_tensor(arr.Get(i), "tensorVersions");
    if (t.is_inference()) return Napi::Number::New(info.Env(), -1);
    sum += static_cast<double>(t._version());
  }
  return Napi::Number::New(info.Env(), sum);
}

// cpuCacheBytes() -> bytes of freed tensor buffers the caching CPU allocator holds for reuse.
Napi::Value CpuCacheBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(flexvid::CachedCpuBytes()));
}

// Defined in c10d.cc when the distributed layer is compiled in.
void RegisterDistributed(Napi::Env env, Napi::Object exports);

// Tensors are large and short-lived. With glibc's defaults, freeing them shrinks the heap top
// (trim) or unmaps them, so the next step faults every page in again: a single-threaded 5120×128
// by 128×384 GEMM measured 30 ms instead of 6 ms, almost all of it page faults. Keep freed memory
// for reuse, as PyTorch processes effectively do. MALLOC_* variables or FLEXVID_MALLOPT=0 opt out.
static void TuneAllocator() {
#if defined(__GLIBC__)
  const char* off = std::getenv("FLEXVID_MALLOPT");
  if (off && std::string(off) == "0") return;
  if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (!std::getenv("MALLOC_TOP_PAD_")) mallopt(M_TOP_PAD, 64 << 20);
  // Up to 256 MiB from the heap: a Maze activation is 40–85 MB, and every mmap-served tensor
  // faults all its pages in again (measured: the Maze step 7 s → 18 s with a 32 MiB threshold).
  if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 256 << 20);
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  TuneAllocator();
  flexvid::InstallCachingCpuAllocator();
  exports.Set("resolveOp", Napi::Function::New(env, flexvid::Guarded<ResolveOp>));
  exports.Set("opSchema", Napi::Function::New(env, flexvid::Guarded<OpSchema>));
  exports.Set("callOp", Napi::Function::New(env, flexvid::Guarded<CallOp>));
  exports.Set("hasOp", Napi::Function::New(env, flexvid::Guarded<HasOp>));
  exports.Set("fromBytes", Napi::Function::New(env, flexvid::Guarded<FromBytes>));
  exports.Set("toBytes", Napi::Function::New(env, flexvid::Guarded<ToBytes>));
  exports.Set("copyInto", Napi::Function::New(env, flexvid::Guarded<CopyInto>));
  exports.Set("meta", Napi::Function::New(env, flexvid::Guarded<Meta>));
  exports.Set("strides", Napi::Function::New(env, flexvid::Guarded<Strides>));
  exports.Set("isContiguousIn", Napi::Function::New(env, flexvid::Guarded<IsContiguousIn>));
  exports.Set("free", Napi::Function::New(env, flexvid::Guarded<Free>));
  exports.Set("isFreed", Napi::Function::New(env, flexvid::Guarded<IsFreed>));
  exports.Set("sameTensor", Napi::Function::New(env, flexvid::Guarded<SameTensor>));
  exports.Set("liveCount", Napi::Function::New(env, flexvid::Guarded<LiveCount>));
  exports.Set("liveBytes", Napi::Function::New(env, flexvid::Guarded<LiveBytes>));
  exports.Set("setCpuCache", Napi::Function::New(env, flexvid::Guarded<SetCpuCache>));
  exports.Set("tensorVersions", Napi::Function::New(env, flexvid::Guarded<TensorVersions>));
  exports.Set("cpuCacheBytes", Napi::Function::New(env, flexvid::Guarded<CpuCacheBytes>));
  exports.Set("setRequiresGrad", Napi::Function::New(env, flexvid::Guarded<SetRequiresGrad>));
  exports.Set("grad", Napi::Function::New(env, flexvid::Guarded<Grad>));
  exports.Set("setGrad", Napi::Function::New(env, flexvid::Guarded<SetGrad>));
  exports.Set("backward", Napi::Function::New(env, flexvid::Guarded<Backward>));
  exports.Set("autogradGrad", Napi::Function::New(env, flexvid::Guarded<AutogradGrad>));
  exports.Set("isGradEnabled", Napi::Function::New(env, flexvid::Guarded<IsGradEnabled>));
  exports.Set("setGradEnabled", Napi::Function::New(env, flexvid::Guarded<SetGradEnabled>));
  exports.Set("pushInferenceMode", Napi::Function::New(env, flexvid::Guarded<PushInferenceMode>));
  exports.Set("popInferenceMode", Napi::Function::New(env, flexvid::Guarded<PopInferenceMode>));
  exports.Set("isInferenceTensor", Napi::Function::New(env, flexvid::Guarded<IsInferenceTensor>));
  exports.Set("newGenerator", Napi::Function::New(env, flexvid::Guarded<NewGenerator>));
  exports.Set("generatorGetState", Napi::Function::New(env, flexvid::Guarded<GeneratorGetState>));
  exports.Set("generatorSetState", Napi::Function::New(env, flexvid::Guarded<GeneratorSetState>));
  exports.Set("manualSeed", Napi::Function::New(env, flexvid::Guarded<ManualSeed>));
  exports.Set("setNumThreads", Napi::Function::New(env, flexvid::Guarded<SetNumThreads>));
  exports.Set("getNumThreads", Napi::Function::New(env, flexvid::Guarded<GetNumThreads>));
  exports.Set("cudaAvailable", Napi::Function::New(env, flexvid::Guarded<CudaAvailable>));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, flexvid::Guarded<CudaDeviceCount>));
  exports.Set("version", Napi::Function::New(env, flexvid::Guarded<Version>));
  exports.Set("profileStart", Napi::Function::New(env, flexvid::Guarded<ProfileStart>));
  exports.Set("profileStop", Napi::Function::New(env, flexvid::Guarded<ProfileStop>));
  exports.Set("setAutocast", Napi::Function::New(env, flexvid::Guarded<SetAutocast>));
  exports.Set("isAutocast", Napi::Function::New(env, flexvid::Guarded<IsAutocast>));
  RegisterDistributed(env, exports);
  return exports;
}

NODE_API_MODULE(flexvid, Init)
