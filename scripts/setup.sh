#!/usr/bin/env bash
# One idempotent set-up step, run first by both `npm run demo` and `npm test`:
#   1. libtorch: LIBTORCH / LIBTORCH_USE_PYTORCH=1 / system libtorch-dev (installed via apt when root)
#   2. npm dependencies (npm ci) when node_modules is missing or older than package-lock.json
#   3. Gloo headers (libgloo-dev) for multi-process training with the system libtorch (c10d), and
#      oneDNN headers (libdnnl-dev) for the Winograd 3×3 convolution and batched matmul
#   4. the native addon (rebuilt only when its sources or the chosen libtorch changed)
# Takes a second or two when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt-get install without recommends; refreshes the package lists once if the first try fails.
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2; }
}

if ! node native/find-libtorch.mjs json >/dev/null 2>&1; then
  if [ -n "${LIBTORCH:-}" ] || [ "${LIBTORCH_USE_PYTORCH:-}" = "1" ]; then
    node native/find-libtorch.mjs json || true
    echo "flexvid: the libtorch you configured (LIBTORCH / LIBTORCH_USE_PYTORCH) was not usable; see above." >&2
    exit 1
  fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "flexvid: installing Debian's libtorch-dev (one time, a few minutes)…" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libtorch-dev libopenblas0-openmp >&2
  else
    echo "flexvid: libtorch not found. Install it with:" >&2
    echo "  sudo apt-get install -y libtorch-dev" >&2
    echo "or point LIBTORCH at a libtorch folder, or set LIBTORCH_USE_PYTORCH=1 to use your Python torch." >&2
    exit 1
  fi
fi

# Debian's libtorch calls BLAS through libblas.so.3, which defaults to the slow reference BLAS:
# matmuls (linear layers, attention) then run ~10x slower. OpenBLAS (OpenMP build, to share
# libtorch's thread pool) is picked up through the alternatives system.
if [ -z "${LIBTORCH:-}" ] && [ "${LIBTORCH_USE_PYTORCH:-}" != "1" ] && [ -e /usr/include/ATen/ATen.h ]; then
  blas=$(readlink -f "$(ldconfig -p 2>/dev/null | awk '/libblas\.so\.3 /{print $NF; exit}')" 2>/dev/null || true)
  case "$blas" in
    *openblas*|*mkl*|*blis*|*atlas*) ;;
    *)
      if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "flexvid: installing OpenBLAS for fast matrix products (libopenblas0-openmp)…" >&2
        apt_install libopenblas0-openmp
      else
        echo "flexvid: warning: the system BLAS is the slow reference implementation; for speed run: sudo apt-get install -y libopenblas0-openmp" >&2
      fi
      ;;
  esac
fi

# Multi-process training (c10d ProcessGroupGloo) compiles against the Gloo headers, which Debian
# ships apart from libtorch-dev. Without them the addon still builds, single-process only.
build_flags=""
if [ -z "${LIBTORCH:-}" ] && [ "${LIBTORCH_USE_PYTORCH:-}" != "1" ] && [ -e /usr/include/ATen/ATen.h ] && [ ! -e /usr/include/gloo/context.h ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "flexvid: installing the Gloo headers for multi-process training (libgloo-dev)…" >&2
    if apt_install libgloo-dev; then
      build_flags="--force"
    fi
  else
    echo "flexvid: note: without libgloo-dev, multi-process training (--nproc) is unavailable: sudo apt-get install -y libgloo-dev" >&2
  fi
fi

# The Winograd 3×3 convolution and batched matmul (native/winograd.cc: ≈ 2× faster 3×3
# convolutions, 3–4× faster attention products) call the oneDNN library Debian's libtorch already
# links; they need that library's headers (libdnnl-dev). Without them the addon still builds and
# uses libtorch's own kernels.
if [ -z "${LIBTORCH:-}" ] && [ "${LIBTORCH_USE_PYTORCH:-}" != "1" ] && [ "${FLEXVID_DNNL:-}" != "0" ] && [ -e /usr/include/ATen/ATen.h ] && [ ! -e /usr/include/oneapi/dnnl/dnnl.hpp ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "flexvid: installing oneDNN's headers for the Winograd convolution (libdnnl-dev)…" >&2
    apt_install libdnnl-dev \
      || echo "flexvid: note: libdnnl-dev could not be installed; 3×3 convolutions use libtorch's direct algorithm" >&2
  else
    echo "flexvid: note: for ≈ 2× faster 3×3 convolutions on the CPU: sudo apt-get install -y libdnnl-dev" >&2
  fi
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "flexvid: installing npm dependencies…" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

node native/build.mjs $build_flags
