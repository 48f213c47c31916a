// Shared by the binding's translation units: every exported function runs inside this guard, so a
// libtorch (c10::Error) or standard C++ exception becomes a JS exception instead of terminating
// the process.
#pragma once
#include <napi.h>
#include <c10/util/Exception.h>
#include <exception>

namespace flexvid {

template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(info.Env(), e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), e.what());
  }
}

}  // namespace flexvid
