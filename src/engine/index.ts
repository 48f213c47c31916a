/**
 * flexvid's tensor engine: libtorch through a thin Node-API binding.
 * See docs/engine.md for the memory model (tidy / dispose / using) and conventions.
 */
import * as os from 'node:os';
import { native } from './native.ts';

export { Tensor, Generator, TorchError, call as atenCall, type Shape, type TensorOptions, type Scalar, type TensorOrScalar } from './tensor.ts';
export * from './ops.ts';
export { tidy, keep, adopt, disposeAll, scopeDepth } from './scope.ts';
export { type DType, itemSize, isFloating, MemoryFormat, type MemoryFormatName } from './dtype.ts';

// libtorch may start with a single intra-op thread when OpenMP sees no hint; default to every core
// unless the user chose (OMP_NUM_THREADS / FLEXVID_THREADS).
// OpenMP threads that find their core busy stall every parallel region (a training step has
// thousands), so by default only the cores that are idle at start-up are used.
const requested = Number(process.env.FLEXVID_THREADS ?? process.env.OMP_NUM_THREADS ?? NaN);
native.setNumThreads(Number.isInteger(requested) && requested > 0 ? requested : defaultThreadCount());

/** Cores not busy with other work at start-up (1-minute load average), at least 1. */
export function defaultThreadCount(): number {
  const cores = os.availableParallelism();
  const busy = Math.floor(os.loadavg()[0] ?? 0);
  return Math.max(1, Math.min(cores, cores - busy));
}
