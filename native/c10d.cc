// Distributed (c10d) entry points. Filled in by the data-parallel training work; until then the
// binding reports that no process-group support is compiled in.
#include <napi.h>

void RegisterDistributed(Napi::Env env, Napi::Object exports) {
  exports.Set("distributedAvailable", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), false);
  }));
}
