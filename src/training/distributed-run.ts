/**
 * Data-parallel training runs (REFERENCE_SPEC §9.2, §3.2): joining the c10d process group from
 * the launcher environment, one device per rank, per-rank RNG seeds, the world size recorded in
 * and checked against checkpoints, and metric accumulators merged across ranks.
 *
 * The training loop (loop.ts) stays one code path: with one process every helper here is a
 * no-op, so single-process runs are unchanged.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cudaDeviceCount } from '../engine/index.ts';
import { allGatherObjects, destroyDistributed, distributedInfo, initDistributed, isInitialized, launchEnv, localRank, rank, worldSize, type DistributedBackend } from '../engine/distributed.ts';
import { OptionError } from '../util/errors.ts';
import { completeCheckpointSteps, checkpointFiles } from './checkpoint.ts';
import type { TrainOptions } from './options.ts';

/** This process's place in the run. */
export interface RunGroup {
  rank: number;
  worldSize: number;
  localRank: number;
  /** Rank 0: writes checkpoints, metrics, status and previews. */
  main: boolean;
  /** The device this rank trains on (`cuda:<local rank>` on multi-GPU machines). */
  device: string;
  backend: DistributedBackend | null;
  /** Whether this run joined the group itself (and so leaves it at the end). */
  owned: boolean;
}

/**
 * Offset added to the seeds of the per-rank random streams (noise, masks, timesteps): 0 on rank
 * 0, so a single-process run is unchanged; a large prime apart between ranks so that the streams
 * `seed + 1 … seed + 3` of different ranks never coincide.
 */
export function rankSeedOffset(r: number): number {
  return 1_000_003 * r;
}

/** gloo or nccl for a device (`auto`: NCCL for CUDA when the addon has it). */
export function resolveBackend(choice: TrainOptions['distBackend'], device: string): DistributedBackend {
  if (choice === 'gloo' || choice === 'nccl') return choice;
  return device.startsWith('cuda') && distributedInfo().nccl ? 'nccl' : 'gloo';
}

/**
 * Join the process group described by the launcher environment (torchrun, SLURM, or the
 * children of `flexvid train --nproc N`), or return a group of one when there is none.
 * `device` is the device picked for a single process; CUDA ranks get `cuda:<local rank>`.
 */
export function joinRunGroup(o: TrainOptions, device: string): RunGroup {
  const env = launchEnv();
  if (!env && !isInitialized()) {
    if (o.nproc > 1) {
      throw new OptionError('--nproc', `1 when training is called directly (start multi-process runs with "flexvid train --nproc ${o.nproc}", torchrun or srun)`, o.nproc);
    }
    return { rank: 0, worldSize: 1, localRank: 0, main: true, device, backend: null, owned: false };
  }
  let owned = false;
  const lr = env?.localRank ?? localRank();
  let dev = device;
  if (device === 'cuda' && (env?.worldSize ?? worldSize()) > 1) {
    const n = cudaDeviceCount();
    dev = `cuda:${n > 0 ? lr % n : 0}`;
  }
  const backend = resolveBackend(o.distBackend, dev);
  if (!isInitialized() && env) {
    initDistributed({ rank: env.rank, worldSize: env.worldSize, localRank: env.localRank, masterAddr: env.masterAddr, masterPort: env.masterPort, backend });
    owned = true;
  }
  if (o.batchSize % worldSize() !== 0) {
    throw new OptionError('--batch-size', `a multiple of the number of processes (${worldSize()}): the global batch is split evenly between ranks`, o.batchSize);
  }
  return { rank: rank(), worldSize: worldSize(), localRank: localRank(), main: rank() === 0, device: dev, backend: worldSize() > 1 ? backend : null, owned };
}

/** Leave the group if this run joined it. */
export function leaveRunGroup(g: RunGroup): void {
  if (g.owned) destroyDistributed();
}

/**
 * Refuse to resume a run with another number of processes: the per-rank sampler and RNG states
 * in the checkpoint belong to its world size (the replay slots are split rank-major, §3.2).
 */
export function checkResumeWorldSize(saved: number, current: number, runId: string): void {
  if (saved !== current) {
    throw new OptionError(
      '--nproc',
      `${saved} (run ${runId} was trained with ${saved} process${saved === 1 ? '' : 'es'} and its checkpoint holds per-rank data-sampler and RNG states: ` +
        `resume it with --nproc ${saved}, or start a new run from its weights with --resume-checkpoint)`,
      current,
    );
  }
}

/** World size recorded in the newest complete checkpoint of a run folder (1 for runs that predate it), or null without one. */
export function savedWorldSize(runDir: string): number | null {
  const steps = completeCheckpointSteps(runDir);
  if (steps.length === 0) return null;
  const snap = JSON.parse(fs.readFileSync(path.join(runDir, checkpointFiles.state(steps[steps.length - 1]!)), 'utf8')) as { worldSize?: number };
  return snap.worldSize ?? 1;
}

/**
 * Merge `{sum, n}` metric accumulators over all ranks (a collective: every rank calls it at the
 * same flush). Each metric becomes Σ sums / Σ counts over the ranks that logged it, i.e. the
 * average over the global batch — the reference's proposal (§9.1) instead of rank 0's values.
 */
export function mergeMetricAccumulators(acc: Map<string, { sum: number; n: number }>): Map<string, { sum: number; n: number }> {
  if (worldSize() <= 1) return acc;
  // JSON has no NaN/Infinity: send those as text so that a diverging rank stays visible.
  const all = allGatherObjects([...acc.entries()].map(([k, a]) => [k, Number.isFinite(a.sum) ? a.sum : String(a.sum), a.n] as const));
  const out = new Map<string, { sum: number; n: number }>();
  for (const entries of all) {
    for (const [k, sum, n] of entries) {
      const m = out.get(k) ?? { sum: 0, n: 0 };
      m.sum += Number(sum);
      m.n += n;
      out.set(k, m);
    }
  }
  return out;
}
