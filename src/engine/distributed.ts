/**
 * Multi-process data parallelism on libtorch's own distributed layer (c10d): one process group
 * per process, a TCPStore rendezvous hosted by rank 0, Gloo for CPU tensors and NCCL for CUDA
 * tensors where the addon was built with it (native/c10d.cc). REFERENCE_SPEC §9.2.
 *
 * What lives here (the design decisions; the binding only issues blocking collectives):
 * - launcher environments: torchrun / `flexvid train --nproc` (WORLD_SIZE, RANK, LOCAL_RANK,
 *   MASTER_ADDR, MASTER_PORT) and SLURM (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) — {@link launchEnv};
 * - gradient averaging as DistributedDataParallel does it: gradients flattened into buckets of
 *   ~25 MB (`cat`), one all-reduce per bucket, divided by the world size, copied back
 *   ({@link allReduceMean}, {@link averageGradients});
 * - parameter broadcast from rank 0 ({@link broadcastParameters});
 * - small JSON objects exchanged through byte-tensor collectives ({@link allGatherObjects}).
 *
 * Every collective must be called by all ranks in the same order with tensors of the same
 * shapes and dtypes; a rank that stops calling makes the others wait until the group timeout.
 */
import { native, type NativeTensor } from './native.ts';
import { cat, fromBytes, noGrad, zeros } from './ops.ts';
import { tidy } from './scope.ts';
import { Tensor, TorchError } from './tensor.ts';
import { itemSize } from './dtype.ts';

/** Which launcher set the environment (for messages). */
export type LaunchSource = 'env' | 'slurm';

/** The process's place in a multi-process job, as read from the launcher's environment. */
export interface LaunchEnv {
  rank: number;
  worldSize: number;
  /** Rank on this machine (selects the GPU). */
  localRank: number;
  /** Processes on this machine. */
  localWorldSize: number;
  masterAddr: string;
  masterPort: number;
  source: LaunchSource;
}

export type DistributedBackend = 'gloo' | 'nccl';

export interface DistributedOptions {
  rank: number;
  worldSize: number;
  masterAddr?: string;
  masterPort?: number;
  /** 'gloo' (CPU, default) or 'nccl' (CUDA tensors; CPU collectives still go through Gloo). */
  backend?: DistributedBackend;
  /** Collective and rendezvous timeout (default 30 minutes, as torch.distributed). */
  timeoutMs?: number;
  localRank?: number;
}

/** Default bucket size of gradient all-reduces (DistributedDataParallel's `bucket_cap_mb`). */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

interface DistBinding {
  distributedInfo(): { gloo: boolean; nccl: boolean; torch: string; reason: string; initialized: boolean };
  initProcessGroup(o: { rank: number; worldSize: number; masterAddr: string; masterPort: number; backend: string; timeoutMs: number }): void;
  destroyProcessGroup(): void;
  allReduce(ts: NativeTensor[], op: string): void;
  broadcast(ts: NativeTensor[], root: number): void;
  barrier(): void;
}

const bind = native as unknown as DistBinding;

interface GroupState {
  rank: number;
  worldSize: number;
  localRank: number;
  backend: DistributedBackend;
}

let state: GroupState | null = null;

/** True when the addon was built with c10d process groups (Gloo). */
export function distributedAvailable(): boolean {
  return typeof native.distributedAvailable === 'function' && native.distributedAvailable();
}

/** What the addon supports: `{gloo, nccl, torch, reason}` (`reason` says why Gloo is missing). */
export function distributedInfo(): { gloo: boolean; nccl: boolean; torch: string; reason: string } {
  if (typeof bind.distributedInfo !== 'function') return { gloo: false, nccl: false, torch: '', reason: 'the native addon predates c10d support; rebuild it (node native/build.mjs --force)' };
  const { gloo, nccl, torch, reason } = bind.distributedInfo();
  return { gloo, nccl, torch, reason };
}

function intFrom(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new TorchError(`distributed: environment variable ${name}=${JSON.stringify(v)} is not a non-negative integer`);
  return n;
}

/**
 * The launcher environment, or null when this process is not part of a multi-process job.
 * torchrun / `flexvid train --nproc` / hand-made: WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE,
 * MASTER_ADDR (default 127.0.0.1), MASTER_PORT (default 29500). SLURM when WORLD_SIZE is unset,
 * inside an srun step (one task per process): SLURM_STEP_NUM_TASKS, SLURM_PROCID, SLURM_LOCALID,
 * SLURM_STEP_TASKS_PER_NODE; MASTER_ADDR defaults to the step's first host and MASTER_PORT to
 * 20000 + job id mod 20000 (examples/slurm/train.sbatch exports both). A world of size 1 counts
 * as no job.
 */
export function launchEnv(env: NodeJS.ProcessEnv = process.env): LaunchEnv | null {
  let source: LaunchSource = 'env';
  let worldSize = intFrom(env, 'WORLD_SIZE');
  let rank = intFrom(env, 'RANK');
  let localRank = intFrom(env, 'LOCAL_RANK');
  let localWorldSize = intFrom(env, 'LOCAL_WORLD_SIZE');
  // SLURM: only inside an srun step (SLURM_STEP_NUM_TASKS), not in the batch script itself,
  // whose SLURM_NTASKS describes the allocation rather than this process.
  const slurmStep = env.SLURM_STEP_NUM_TASKS !== undefined && env.SLURM_PROCID !== undefined;
  if (worldSize === undefined && slurmStep) {
    source = 'slurm';
    worldSize = intFrom(env, 'SLURM_STEP_NUM_TASKS');
    rank = intFrom(env, 'SLURM_PROCID');
    localRank = intFrom(env, 'SLURM_LOCALID');
    const perNode = /^(\d+)/.exec(env.SLURM_STEP_TASKS_PER_NODE ?? env.SLURM_NTASKS_PER_NODE ?? env.SLURM_TASKS_PER_NODE ?? '');
    localWorldSize = perNode ? Number(perNode[1]) : undefined;
  }
  if (worldSize === undefined || worldSize <= 1) return null;
  if (rank === undefined) throw new TorchError(`distributed: ${source === 'slurm' ? 'SLURM_PROCID' : 'RANK'} is not set although the world size is ${worldSize}`);
  if (rank >= worldSize) throw new TorchError(`distributed: rank ${rank} is not below the world size ${worldSize}`);
  // Under SLURM without MASTER_ADDR/MASTER_PORT: the step's first host, and a port derived from the job id.
  const slurmJob = source === 'slurm' ? intFrom(env, 'SLURM_JOB_ID') : undefined;
  const masterPort = intFrom(env, 'MASTER_PORT') ?? (slurmJob !== undefined ? 20000 + (slurmJob % 20000) : 29500);
  if (masterPort < 1 || masterPort > 65535) throw new TorchError(`distributed: MASTER_PORT=${masterPort} is not a port number`);
  const slurmHost = source === 'slurm' ? firstHost(env.SLURM_STEP_NODELIST ?? env.SLURM_JOB_NODELIST ?? '') : null;
  return {
    rank,
    worldSize,
    localRank: localRank ?? rank,
    localWorldSize: localWorldSize ?? worldSize,
    masterAddr: env.MASTER_ADDR || slurmHost || '127.0.0.1',
    masterPort,
    source,
  };
}

/**
 * First host of a SLURM host list (`gpu[01-04,07],cpu3` → `gpu01`, `node7` → `node7`), as
 * `scontrol show hostnames | head -n 1` gives it; null for an empty list.
 */
export function firstHost(nodelist: string): string | null {
  const m = /^([^,\[]*)(?:\[([^\]]*)\])?/.exec(nodelist.trim());
  if (!m || (!m[1] && !m[2])) return null;
  if (m[2] === undefined) return m[1]! || null;
  const first = m[2].split(',')[0]!.split('-')[0]!;
  return `${m[1]}${first}`;
}

/**
 * Join the process group (blocks until all `worldSize` processes have joined, or the timeout).
 * A world of size 1 needs no group: the functions below then act on this process alone.
 */
export function initDistributed(o: DistributedOptions): void {
  if (state) throw new TorchError(`distributed: already initialised (rank ${state.rank} of ${state.worldSize})`);
  if (!Number.isSafeInteger(o.worldSize) || o.worldSize < 1) throw new TorchError(`distributed: worldSize must be a positive integer, got ${o.worldSize}`);
  if (!Number.isSafeInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize) throw new TorchError(`distributed: rank must be in [0, ${o.worldSize}), got ${o.rank}`);
  const backend = o.backend ?? 'gloo';
  if (o.worldSize > 1) {
    if (!distributedAvailable()) throw new TorchError(`distributed: this build has no c10d process groups: ${distributedInfo().reason}`);
    if (backend === 'nccl' && !distributedInfo().nccl) throw new TorchError("distributed: the addon was built without NCCL (FLEXVID_NCCL=1 with a CUDA libtorch, see docs/distributed.md); use the 'gloo' backend");
    try {
      bind.initProcessGroup({
        rank: o.rank,
        worldSize: o.worldSize,
        masterAddr: o.masterAddr ?? '127.0.0.1',
        masterPort: o.masterPort ?? 29500,
        backend,
        timeoutMs: o.timeoutMs ?? 30 * 60 * 1000,
      });
    } catch (e) {
      throw new TorchError((e as Error).message);
    }
  }
  state = { rank: o.rank, worldSize: o.worldSize, localRank: o.localRank ?? o.rank, backend };
}

/** Leave the process group (idempotent). */
export function destroyDistributed(): void {
  if (state && state.worldSize > 1) bind.destroyProcessGroup();
  state = null;
}

/** Has {@link initDistributed} been called (and not destroyed)? */
export function isInitialized(): boolean {
  return state !== null;
}

/** True in a process group of more than one process. */
export function isDistributed(): boolean {
  return state !== null && state.worldSize > 1;
}

/** This process's rank (0 when not distributed). */
export function rank(): number {
  return state?.rank ?? 0;
}

/** Number of processes (1 when not distributed). */
export function worldSize(): number {
  return state?.worldSize ?? 1;
}

/** Rank on this machine (0 when not distributed). */
export function localRank(): number {
  return state?.localRank ?? 0;
}

/** Rank 0 (or a single process): the one that writes files and prints. */
export function isMainProcess(): boolean {
  return rank() === 0;
}

function guard<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw e instanceof TorchError ? e : new TorchError(`${(e as Error).message} [${what}, rank ${rank()} of ${worldSize()}]`);
  }
}

/** Wait until every rank has arrived. */
export function barrier(): void {
  if (!isDistributed()) return;
  guard('barrier', () => bind.barrier());
}

/** In-place all-reduce of each tensor (contiguous; same shapes on every rank). */
export function allReduce(tensors: readonly Tensor[], op: 'sum' | 'max' | 'min' | 'product' = 'sum'): void {
  if (!isDistributed() || tensors.length === 0) return;
  for (const t of tensors) if (!t.isContiguous()) throw new TorchError(`allReduce: tensors must be contiguous (got ${t.toString()})`);
  guard('allReduce', () => bind.allReduce(tensors.map((t) => t.handle), op));
}

/** In-place broadcast of each tensor from `root`. */
export function broadcast(tensors: readonly Tensor[], root = 0): void {
  if (!isDistributed() || tensors.length === 0) return;
  for (const t of tensors) if (!t.isContiguous()) throw new TorchError(`broadcast: tensors must be contiguous (got ${t.toString()})`);
  guard('broadcast', () => bind.broadcast(tensors.map((t) => t.handle), root));
}

/**
 * Split tensors into buckets of at most `bucketBytes` (a tensor larger than that gets a bucket
 * of its own), keeping order and never mixing dtypes or devices. Returns index lists.
 */
export function planBuckets(tensors: readonly { numel: number; dtype: Tensor['dtype']; device: string }[], bucketBytes = DEFAULT_BUCKET_BYTES): number[][] {
  const buckets: number[][] = [];
  let cur: number[] = [];
  let bytes = 0;
  let key = '';
  tensors.forEach((t, i) => {
    const k = `${t.dtype}@${t.device}`;
    const b = t.numel * itemSize(t.dtype);
    if (cur.length > 0 && (k !== key || bytes + b > bucketBytes)) {
      buckets.push(cur);
      cur = [];
      bytes = 0;
    }
    key = k;
    cur.push(i);
    bytes += b;
  });
  if (cur.length > 0) buckets.push(cur);
  return buckets;
}

/**
 * Apply an in-place collective to `tensors` bucket by bucket (~`bucketBytes` each, planned by
 * {@link planBuckets}): once per bucket on a flat copy whose result is written back, or on the
 * tensor itself when a bucket is a single contiguous tensor.
 */
function forEachBucket(tensors: readonly Tensor[], bucketBytes: number, collective: (flat: Tensor) => void): void {
  const metas = tensors.map((t) => ({ numel: t.numel, dtype: t.dtype, device: t.device }));
  for (const idx of planBuckets(metas, bucketBytes)) {
    tidy(() =>
      noGrad(() => {
        const members = idx.map((i) => tensors[i]!);
        if (members.length === 1 && members[0]!.isContiguous()) {
          collective(members[0]!);
          return;
        }
        const flat = cat(members.map((t) => t.detach().reshape([-1])));
        collective(flat);
        let off = 0;
        for (const t of members) {
          t.copy_(flat.narrow(0, off, t.numel).view(t.shape));
          off += t.numel;
        }
      }),
    );
  }
}

/**
 * Average tensors across ranks, in place: `t ← (Σ_ranks t) / worldSize`. Tensors are flattened
 * into buckets of ~`bucketBytes` (one all-reduce each), the way DistributedDataParallel reduces
 * gradients. A bucket of one contiguous tensor is reduced in place without a copy.
 */
export function allReduceMean(tensors: readonly Tensor[], opts: { bucketBytes?: number } = {}): void {
  if (!isDistributed() || tensors.length === 0) return;
  const n = worldSize();
  forEachBucket(tensors, opts.bucketBytes ?? DEFAULT_BUCKET_BYTES, (flat) => {
    allReduce([flat], 'sum');
    flat.div_(n);
  });
}

/** Parameters of a module-like object or a plain list. */
export type ParameterSource = readonly Tensor[] | { parameters(): Tensor[] };

function paramsOf(src: ParameterSource): Tensor[] {
  return Array.isArray(src) ? [...(src as readonly Tensor[])] : (src as { parameters(): Tensor[] }).parameters();
}

/**
 * Copy rank `root`'s values of every parameter (and of `extra` tensors, e.g. buffers) to all
 * ranks, bucketed like {@link allReduceMean}. Call after building the model and after loading a
 * checkpoint, so that all ranks start from the same state.
 */
export function broadcastParameters(src: ParameterSource, opts: { root?: number; extra?: readonly Tensor[]; bucketBytes?: number } = {}): void {
  if (!isDistributed()) return;
  const tensors = [...paramsOf(src), ...(opts.extra ?? [])];
  const root = opts.root ?? 0;
  forEachBucket(tensors, opts.bucketBytes ?? DEFAULT_BUCKET_BYTES, (flat) => broadcast([flat], root));
}

/**
 * Average the parameters' gradients across ranks (after `backward`, before clipping and the
 * optimiser step). Which parameters have a gradient is agreed first: a parameter that has one on
 * some rank but not on this one gets zeros here, and one that has none anywhere stays without
 * (so the optimiser skips it exactly as a single process on the whole batch would).
 */
export function averageGradients(src: ParameterSource, opts: { bucketBytes?: number } = {}): void {
  if (!isDistributed()) return;
  const params = paramsOf(src);
  const grads = params.map((p) => p.grad);
  try {
    const present = new Float32Array(params.length);
    grads.forEach((g, i) => (present[i] = g ? 1 : 0));
    const anyRank = tidy(() => {
      const t = fromBytes(new Uint8Array(present.buffer), [params.length], 'float32');
      allReduce([t], 'max');
      return t.toFloat32Array();
    });
    const toReduce: Tensor[] = [];
    params.forEach((p, i) => {
      if (anyRank[i]! === 0) return;
      if (!grads[i]) {
        const z = zeros(p.shape, { dtype: p.dtype, device: p.device });
        p.setGrad(z); // the parameter holds its own reference
        z.dispose();
        grads[i] = p.grad;
      }
      toReduce.push(grads[i]!);
    });
    allReduceMean(toReduce, opts);
  } finally {
    for (const g of grads) g?.dispose();
  }
}

/** True on every rank when `flag` is true on any rank (one tiny all-reduce). */
export function anyRank(flag: boolean): boolean {
  if (!isDistributed()) return flag;
  return tidy(() => {
    const t = fromBytes(new Uint8Array(new Float32Array([flag ? 1 : 0]).buffer), [1], 'float32');
    allReduce([t], 'max');
    return t.toFloat32Array()[0]! > 0;
  });
}

/**
 * Every rank's JSON-serialisable `value`, in rank order, on every rank (two small all-reduces on
 * the host: the longest encoding, then a zero-padded [worldSize, length] byte table).
 */
export function allGatherObjects<T>(value: T): T[] {
  if (!isDistributed()) return [value];
  const bytes = new TextEncoder().encode(JSON.stringify(value) ?? 'null');
  const n = worldSize();
  const r = rank();
  return tidy(() => {
    const len = fromBytes(new Uint8Array(new Float64Array([bytes.length]).buffer), [1], 'float64');
    allReduce([len], 'max');
    const maxLen = len.toFloat64Array()[0]!;
    const table = new Uint8Array(n * (maxLen + 4));
    const row = r * (maxLen + 4);
    new DataView(table.buffer).setUint32(row, bytes.length, true);
    table.set(bytes, row + 4);
    const t = fromBytes(table, [n, maxLen + 4], 'uint8');
    allReduce([t], 'sum'); // each row is non-zero on one rank only, so the sum is a gather
    const all = t.toBytes();
    const dv = new DataView(all.buffer, all.byteOffset, all.byteLength);
    const dec = new TextDecoder();
    const out: T[] = [];
    for (let k = 0; k < n; k++) {
      const o = k * (maxLen + 4);
      out.push(JSON.parse(dec.decode(all.subarray(o + 4, o + 4 + dv.getUint32(o, true)))) as T);
    }
    return out;
  });
}

/** Rank `root`'s `value` on every rank (JSON-serialisable). */
export function broadcastObject<T>(value: T, root = 0): T {
  return allGatherObjects(value)[root]!;
}
