#!/usr/bin/env node
// Locates libtorch for the native build, in this order:
//   1. LIBTORCH=/path/to/libtorch          (a libtorch folder: include/, lib/)
//   2. LIBTORCH_USE_PYTORCH=1               (the libtorch inside the installed Python `torch`)
//   3. the system install                   (Debian/Ubuntu `libtorch-dev`)
// Usage: node find-libtorch.mjs json | include | libdirs | libs | defines | rpath | openmp
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export function findLibtorch() {
  const tried = [];
  if (process.env.LIBTORCH) {
    const root = path.resolve(process.env.LIBTORCH);
    const inc = path.join(root, 'include');
    const lib = path.join(root, 'lib');
    if (fs.existsSync(path.join(inc, 'ATen', 'ATen.h')) && fs.existsSync(lib)) {
      return describe('LIBTORCH', [inc, path.join(inc, 'torch', 'csrc', 'api', 'include')], lib, abiFromLib(lib));
    }
    tried.push(`LIBTORCH=${root}: no include/ATen/ATen.h or lib/ there`);
  }
  if (process.env.LIBTORCH_USE_PYTORCH === '1') {
    const python = process.env.PYTHON ?? 'python3';
    try {
      const out = execFileSync(
        python,
        ['-c', 'import torch, os, json; print(json.dumps({"root": os.path.dirname(torch.__file__), "abi": int(torch._C._GLIBCXX_USE_CXX11_ABI), "version": torch.__version__}))'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const info = JSON.parse(out.trim().split('\n').pop());
      const inc = path.join(info.root, 'include');
      return describe(`PyTorch ${info.version}`, [inc, path.join(inc, 'torch', 'csrc', 'api', 'include')], path.join(info.root, 'lib'), info.abi);
    } catch (e) {
      tried.push(`LIBTORCH_USE_PYTORCH=1: '${python} -c "import torch"' failed`);
    }
  }
  const multiarch = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  if (fs.existsSync('/usr/include/ATen/ATen.h')) {
    const lib = multiarch.find((d) => fs.existsSync(path.join(d, 'libtorch.so')) || fs.existsSync(path.join(d, 'libtorch_cpu.so')));
    if (lib) return describe('system libtorch-dev', ['/usr/include/torch/csrc/api/include'], lib, 1);
    tried.push('/usr/include/ATen exists but no libtorch.so in the multiarch lib folders');
  } else {
    tried.push('no system libtorch (/usr/include/ATen/ATen.h)');
  }
  const err = new Error(
    'libtorch not found. Tried:\n  - ' + tried.join('\n  - ') +
      '\nFix one of:\n' +
      '  apt-get install -y libtorch-dev                 # Debian/Ubuntu, as root (CPU)\n' +
      '  export LIBTORCH=/path/to/libtorch               # an unpacked libtorch folder\n' +
      '  export LIBTORCH_USE_PYTORCH=1                   # use the libtorch of your Python torch (CUDA builds)',
  );
  err.code = 'LIBTORCH_NOT_FOUND';
  throw err;
}

function abiFromLib(lib) {
  // libtorch zips ship a build-version marker; default to the modern ABI.
  return fs.readdirSync(lib).some((f) => f.includes('pre-cxx11')) ? 0 : 1;
}

function describe(source, includes, libdir, abi) {
  const has = (name) => fs.existsSync(path.join(libdir, `lib${name}.so`));
  const libs = ['c10', 'torch_cpu', 'torch'].filter(has);
  // CUDA builds: linking these (with --no-as-needed) registers the CUDA kernels and hooks.
  const cuda = ['c10_cuda', 'torch_cuda'].filter(has);
  return { source, includes, libdir, libs: [...libs, ...cuda], cuda: cuda.length > 0, abi, dnnl: dnnlBuild(source, libdir) };
}

/**
 * The Winograd convolution (native/winograd.cc) calls oneDNN directly. It is compiled only against
 * the system libtorch, whose oneDNN is the shared libdnnl.so of the same folder, and only when that
 * library's headers are installed (Debian: libdnnl-dev): linking a second oneDNN next to a PyTorch
 * build's private copy is not worth the risk. FLEXVID_DNNL=0 turns it off.
 */
function dnnlBuild(source, libdir) {
  if (process.env.FLEXVID_DNNL === '0' || source !== 'system libtorch-dev') return false;
  return fs.existsSync('/usr/include/oneapi/dnnl/dnnl.hpp') && fs.existsSync(path.join(libdir, 'libdnnl.so'));
}

/**
 * The addon's own loops (fused_norm.cc, attention.cc) are split over threads by at::parallel_for,
 * which is inlined from libtorch's headers: without -fopenmp it silently runs on one thread. Only
 * against the system libtorch, whose OpenMP is the system libgomp this flag links; a PyTorch wheel
 * carries a private libgomp, and a second OpenMP runtime in the process is worse than serial loops.
 */
function openmpFlag(t) {
  return t.source === 'system libtorch-dev' ? '-fopenmp' : '-fopenmp-simd';
}

/**
 * NCCL process groups (native/c10d.cc) are compiled only on request, because they need the CUDA
 * toolkit headers and nccl.h besides a CUDA libtorch: FLEXVID_NCCL=1 with CUDA_HOME (default
 * /usr/local/cuda) and NCCL_INCLUDE_DIR (default: CUDA_HOME/include) pointing at them.
 */
export function ncclBuild(t) {
  if (process.env.FLEXVID_NCCL !== '1' || !t.cuda) return { defines: [], includes: [] };
  const cudaHome = process.env.CUDA_HOME ?? process.env.CUDA_PATH ?? '/usr/local/cuda';
  const includes = [path.join(cudaHome, 'include')];
  if (process.env.NCCL_INCLUDE_DIR) includes.push(path.resolve(process.env.NCCL_INCLUDE_DIR));
  return { defines: ['USE_C10D_NCCL', 'USE_C10D_GLOO'], includes: includes.filter((d) => fs.existsSync(d)) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const t = findLibtorch();
    const what = process.argv[2] ?? 'json';
    if (what === 'json') console.log(JSON.stringify(t, null, 2));
    else if (what === 'libdirs') console.log(t.libdir);
    else if (what === 'libs') console.log(['-Wl,--no-as-needed', ...t.libs.map((l) => `-l${l}`), ...(t.dnnl ? ['-ldnnl'] : []), '-Wl,--as-needed'].join(' '));
    else if (what === 'rpath') console.log(`-Wl,-rpath,${t.libdir}`);
    else if (what === 'defines') console.log([`_GLIBCXX_USE_CXX11_ABI=${t.abi}`, ...ncclBuild(t).defines, ...(t.dnnl ? ['FLEXVID_DNNL'] : [])].join(' '));
    else if (what === 'openmp') console.log(openmpFlag(t));
    else if (what === 'include') console.log([...t.includes, ...ncclBuild(t).includes].join(' '));
    else throw new Error(`unknown query ${what}`);
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
