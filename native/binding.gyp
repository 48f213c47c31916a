{
  "targets": [
    {
      "target_name": "flexvid",
      "sources": ["flexvid.cc", "c10d.cc", "winograd.cc", "fused_norm.cc", "attention.cc", "temporal_attention.cc", "project.cc", "optim.cc", "resample.cc", "narrow_conv.cc", "winograd_f43.cc", "cpu_allocator.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(node find-libtorch.mjs include)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NDEBUG", "<!@(node find-libtorch.mjs defines)"],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O2", "-fvect-cost-model=dynamic", "<!(node find-libtorch.mjs openmp)", "-Wno-unused-parameter", "-Wno-deprecated-declarations", "-Wno-maybe-uninitialized", "-Wno-psabi"],
      "ldflags": ["<!(node find-libtorch.mjs openmp)"],
      "libraries": [
        "-L<!(node find-libtorch.mjs libdirs)",
        "<!@(node find-libtorch.mjs rpath)",
        "<!@(node find-libtorch.mjs libs)"
      ]
    }
  ]
}
