/**
 * Loads the libtorch binding (native/build/Release/flexvid.node). When it is missing the error
 * says what was looked for and the exact command that builds it.
 */
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Opaque handle of a native tensor (a Napi::External). */
export type NativeTensor = { readonly __nativeTensor: unique symbol };
/** Opaque handle of a native random generator. */
export type NativeGenerator = { readonly __nativeGenerator: unique symbol };

export interface NativeBinding {
  resolveOp(name: string): number;
  opSchema(id: number): string;
  callOp(id: number, args: unknown[], returnSelf?: boolean): unknown;
  hasOp(name: string): boolean;
  fromBytes(bytes: ArrayBufferView, shape: number[], dtype: number): NativeTensor;
  toBytes(t: NativeTensor): ArrayBuffer;
  copyInto(t: NativeTensor, bytes: ArrayBufferView): void;
  meta(t: NativeTensor): [number[], number, string, boolean, boolean];
  strides(t: NativeTensor): number[];
  isContiguousIn(t: NativeTensor, memoryFormat: number): boolean;
  free(t: NativeTensor): void;
  isFreed(t: NativeTensor): boolean;
  sameTensor(a: NativeTensor, b: NativeTensor): boolean;
  liveCount(): number;
  liveBytes(): { cpu: number; cuda: number };
  setRequiresGrad(t: NativeTensor, v: boolean): void;
  grad(t: NativeTensor): NativeTensor | null;
  setGrad(t: NativeTensor, g: NativeTensor | null): void;
  backward(ts: NativeTensor[], grads: (NativeTensor | null)[] | null, retainGraph: boolean, createGraph: boolean): void;
  autogradGrad(
    outputs: NativeTensor[],
    inputs: NativeTensor[],
    gradOutputs: NativeTensor[] | null,
    retainGraph: boolean,
    createGraph: boolean,
    allowUnused: boolean,
  ): (NativeTensor | null)[];
  isGradEnabled(): boolean;
  setGradEnabled(v: boolean): void;
  pushInferenceMode(): void;
  popInferenceMode(): void;
  isInferenceTensor(t: NativeTensor): boolean;
  newGenerator(seed: number, device: string): NativeGenerator;
  generatorGetState(g: NativeGenerator): NativeTensor;
  generatorSetState(g: NativeGenerator, state: NativeTensor): void;
  manualSeed(seed: number): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  cudaAvailable(): boolean;
  cudaDeviceCount(): number;
  version(): { torch: string; cuda: boolean; mkldnn: boolean; openmp: boolean; parallel: string; onednnKernels: boolean };
  distributedAvailable(): boolean;
  profileStart(withShapes: boolean): void;
  profileStop(): { name: string; calls: number; totalMs: number; selfMs: number }[];
  setAutocast(device: 'cpu' | 'cuda', enabled: boolean, dtype?: 'bfloat16' | 'float16'): void;
  isAutocast(device: 'cpu' | 'cuda'): boolean;
  [k: string]: unknown;
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Cores not busy with other work at start-up (1-minute load average), at least 1. */
export function idleCores(): number {
  const cores = os.availableParallelism();
  const busy = Math.floor(os.loadavg()[0] ?? 0);
  return Math.max(1, Math.min(cores, cores - busy));
}

function load(): NativeBinding {
  // libgomp reads its wait settings when the addon (and libtorch with it) is loaded. An idle
  // OpenMP thread that spins without bound steals the core from the thread doing the work whenever
  // the machine has anything else to do (a single-threaded GEMM measured 6× slower that way); one
  // that sleeps at once (OMP_WAIT_POLICY=PASSIVE) pays a futex wake-up on every parallel region —
  // thousands per training step, 40–100 ms of system time per Balls step, measured. So by default
  // it spins for 100 000 rounds (≈ 3 ms here) and then sleeps; libgomp itself cuts that to 100
  // when there are more OpenMP threads than cores. OMP_WAIT_POLICY or GOMP_SPINCOUNT, when set, win.
  if (process.env.OMP_WAIT_POLICY === undefined && process.env.GOMP_SPINCOUNT === undefined) process.env.GOMP_SPINCOUNT = '100000';
  // The thread count must be chosen *before* libtorch loads: changing it later with
  // at::set_num_threads makes every single-threaded OpenBLAS GEMM fault its buffers in again
  // (measured 31 ms instead of 6 ms for a 5120×128·128×384 product). FLEXVID_THREADS wins, then
  // OMP_NUM_THREADS, else the cores idle at start-up.
  const wanted = Number(process.env.FLEXVID_THREADS);
  if (Number.isInteger(wanted) && wanted > 0) process.env.OMP_NUM_THREADS = String(wanted);
  else process.env.OMP_NUM_THREADS ??= String(idleCores());
  const candidates = [
    process.env.FLEXVID_NATIVE,
    path.join(root, 'native', 'build', 'Release', 'flexvid.node'),
  ].filter((p): p is string => !!p);
  const require = createRequire(import.meta.url);
  const problems: string[] = [];
  for (const file of candidates) {
    if (!fs.existsSync(file)) {
      problems.push(`${file}: not built`);
      continue;
    }
    try {
      return require(file) as NativeBinding;
    } catch (e) {
      problems.push(`${file}: ${(e as Error).message}`);
    }
  }
  throw new Error(
    'flexvid: the libtorch binding could not be loaded.\n  - ' +
      problems.join('\n  - ') +
      '\nPossible solutions:\n' +
      '  npm run setup                  # installs libtorch-dev when missing and builds the addon\n' +
      '  node native/build.mjs --force  # rebuild after changing LIBTORCH / LIBTORCH_USE_PYTORCH',
  );
}

/** The loaded binding (loaded once, on first import of the engine). */
export const native: NativeBinding = load();
