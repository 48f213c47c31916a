/**
 * Writing a bouncing-balls dataset to disk (REFERENCE_SPEC §1.1.1–§1.1.2), resumable and parallel.
 *
 * Order of work (mirrors the reference so files are identical):
 * 1. `config.json` is written before anything else.
 * 2. One RNG (`NumpyRandomState(seed)`) drives both streams: the train trajectory is simulated
 *    and its per-frame arrays written, then the test trajectory is simulated from the same RNG
 *    (rendering draws no random numbers, so it can come afterwards).
 * 3. Rendering chunks is the expensive part; chunks are rendered in parallel (worker threads plus
 *    the calling thread), each written atomically (temporary name + rename).
 *
 * Resume: an interrupted run leaves only complete chunk files. Running again with the same
 * settings re-simulates the (cheap, deterministic) trajectories and renders only the chunks that
 * are missing, so the result is byte-identical to an uninterrupted run.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OptionError, FileFormatError } from '../util/errors.ts';
import { writeJsonAtomic } from '../util/fs-atomic.ts';
import { NumpyRandomState } from '../util/mt19937.ts';
import { renderBallFrames, simulateBalls, type BallTrajectory } from './balls.ts';
import { readNpyHeader, writeNpy, encodeNpyHeader } from './npy.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';
import {
  FORMAT_VERSION,
  NPY_OF_DTYPE,
  STORE_DTYPES,
  chunkPath,
  configPath,
  removeStaleTemps,
  splitDir,
  type Split,
  type StoreDtype,
} from './layout.ts';
import { defaultWorkerCount, runPool } from './worker-pool.ts';

/** Options of {@link generateBalls} (CLI flags in brackets). */
export interface GenerateBallsOptions {
  /** Output folder [`--out`]. */
  out: string;
  /** Frames per stream, train and test each [`--frames`, default 1,000,000]. */
  frames?: number;
  /** Frames per chunk file; must divide `frames` [`--chunk-size`, 1000]. */
  chunkSize?: number;
  /** Image side in pixels [`--resolution`, 32]. */
  resolution?: number;
  /** RNG seed and name of the split sub-folder [`--seed`, 0]. */
  seed?: number;
  /** Number of balls [`--num-balls`, 2]. */
  numBalls?: number;
  /** Non-stationary variant: blue drifts from 0 to ≈1 over the stream [`--color-shift`]. */
  colorShift?: boolean;
  /** Stored element type [`--dtype`, uint8 = round(255·x)]. */
  dtype?: StoreDtype;
  /** Render threads [`--workers`, number of cores]; 1 renders on the calling thread. */
  workers?: number;
  /** Called after each chunk (and once at the start with the already-present frames). */
  onProgress?: (framesDone: number, framesTotal: number) => void;
}

/** What a generation run did. */
export interface GenerateBallsReport {
  out: string;
  /** Chunks rendered by this run. */
  renderedChunks: number;
  /** Complete chunks found and kept (resume). */
  keptChunks: number;
  /** Frames per stream. */
  frames: number;
}

/** A render job for one chunk (posted to worker threads). */
export interface RenderChunkJob {
  /** Target `.npy` path. */
  file: string;
  /** `[count, n, 2]` positions of the chunk's frames. */
  positions: Float64Array;
  /** `[count, n, 3]` colours. */
  colors: Float64Array;
  numBalls: number;
  count: number;
  resolution: number;
  dtype: StoreDtype;
}

/** Render one chunk and write it atomically as `(count, res, res, 3)` `.npy`. */
export function renderChunkToFile(job: RenderChunkJob): void {
  const len = job.count * job.resolution * job.resolution * 3;
  const out = job.dtype === 'uint8' ? new Uint8Array(len) : job.dtype === 'float32' ? new Float32Array(len) : new Float64Array(len);
  renderBallFrames(job.positions, job.colors, job.numBalls, job.count, job.resolution, out);
  const header = encodeNpyHeader(NPY_OF_DTYPE[job.dtype], [job.count, job.resolution, job.resolution, 3]);
  writeFileAtomic(job.file, [header, new Uint8Array(out.buffer, out.byteOffset, out.byteLength)]);
}

function checkInt(flag: string, v: number, min: number): number {
  if (!Number.isSafeInteger(v) || v < min) throw new OptionError(flag, `an integer ≥ ${min}`, v);
  return v;
}

/** The reference `config.json` keys (in order) plus flexvid's `dtype` and `format_version`. */
function buildConfig(o: Required<Omit<GenerateBallsOptions, 'onProgress' | 'workers'>>): Record<string, unknown> {
  return {
    save_dir: o.out,
    T_total: o.frames,
    chunk_size: o.chunkSize,
    resolution: o.resolution,
    seed: o.seed,
    num_balls: o.numBalls,
    color_shift: o.colorShift,
    dtype: o.dtype,
    format_version: FORMAT_VERSION,
  };
}

/** Keys that must agree for a resumed run to continue an existing folder. */
const RESUME_KEYS = ['T_total', 'chunk_size', 'resolution', 'seed', 'num_balls', 'color_shift', 'dtype'];

/** True when `file` is a complete chunk of the expected dtype and shape. */
function chunkComplete(file: string, dtype: StoreDtype, shape: number[]): boolean {
  if (!fs.existsSync(file)) return false;
  try {
    const h = readNpyHeader(file);
    return h.dtype === NPY_OF_DTYPE[dtype] && h.shape.join(',') === shape.join(',') && h.fileBytes === h.dataOffset + h.dataBytes;
  } catch {
    return false;
  }
}

/** Write the per-frame arrays the trajectory metrics need (§8.4): positions, velocities, colours. */
function writeTrajectory(dir: string, tr: BallTrajectory): void {
  const { frames: T, numBalls: n } = tr;
  writeNpy(path.join(dir, 'ball_positions.npy'), { dtype: '<f8', shape: [T, n, 2], data: tr.positions });
  writeNpy(path.join(dir, 'ball_velocities.npy'), { dtype: '<f8', shape: [T, n, 2], data: tr.velocities });
  writeNpy(path.join(dir, 'ball_colors.npy'), { dtype: '<f8', shape: [T, n, 3], data: tr.colors });
}

/**
 * Generate (or resume) a bouncing-balls dataset. See the module comment for the order of work.
 * Throws OptionError (naming the flag) for bad options, FileFormatError when `out` holds a
 * dataset made with different settings.
 */
export async function generateBalls(opts: GenerateBallsOptions): Promise<GenerateBallsReport> {
  const o = {
    out: opts.out,
    frames: opts.frames ?? 1_000_000,
    chunkSize: opts.chunkSize ?? 1000,
    resolution: opts.resolution ?? 32,
    seed: opts.seed ?? 0,
    numBalls: opts.numBalls ?? 2,
    colorShift: opts.colorShift ?? false,
    dtype: opts.dtype ?? 'uint8',
  };
  if (typeof o.out !== 'string' || o.out === '') throw new OptionError('--out', 'an output folder', o.out);
  checkInt('--frames', o.frames, 1);
  checkInt('--chunk-size', o.chunkSize, 1);
  checkInt('--resolution', o.resolution, 1);
  checkInt('--num-balls', o.numBalls, 1);
  checkInt('--seed', o.seed, 0);
  if (o.seed > 0xffffffff) throw new OptionError('--seed', 'an integer in [0, 2^32)', o.seed);
  if (o.frames % o.chunkSize !== 0) {
    throw new OptionError('--chunk-size', `a divisor of --frames ${o.frames}`, o.chunkSize);
  }
  if (!STORE_DTYPES.includes(o.dtype)) throw new OptionError('--dtype', STORE_DTYPES.join(' | '), o.dtype);
  const workers = opts.workers ?? defaultWorkerCount();
  checkInt('--workers', workers, 1);
  if (o.numBalls > 8) {
    // Rejection sampling of non-overlapping starts (§1.1.3) practically never succeeds beyond this.
    throw new OptionError('--num-balls', 'at most 8 balls (they must fit in the box without overlapping)', o.numBalls);
  }

  // 1. config.json (before generation, like the reference); refuse to mix different settings.
  const config = buildConfig(o);
  const cfgFile = configPath(o.out);
  if (fs.existsSync(cfgFile)) {
    let old: Record<string, unknown>;
    try {
      old = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    } catch (e) {
      throw new FileFormatError(cfgFile, `exists but is not valid JSON (${(e as Error).message}); remove it or choose another --out`);
    }
    for (const k of RESUME_KEYS) {
      const was = old[k] ?? (k === 'dtype' ? 'float64' : undefined);
      if (was !== config[k]) {
        throw new FileFormatError(
          cfgFile,
          `holds a dataset made with ${k}=${JSON.stringify(was)} but this run asks for ${JSON.stringify(config[k])}; choose another --out or delete the folder`,
        );
      }
    }
  }
  writeJsonAtomic(cfgFile, config);

  const total = 2 * o.frames;
  const nChunks = o.frames / o.chunkSize;
  const shape = [o.chunkSize, o.resolution, o.resolution, 3];
  let done = 0;
  let rendered = 0;
  let kept = 0;
  const rng = new NumpyRandomState(o.seed);

  // 2. Trajectories, train then test from one RNG (always re-simulated: cheap, and it keeps the
  //    RNG stream identical on resume). Only the slices the missing chunks need are kept.
  const jobs: RenderChunkJob[] = [];
  for (const split of ['train', 'test'] as Split[]) {
    const tr = simulateBalls(rng, { frames: o.frames, numBalls: o.numBalls, colorShift: o.colorShift });
    const dir = splitDir(o.out, split, o.seed);
    fs.mkdirSync(dir, { recursive: true });
    removeStaleTemps(dir);
    writeTrajectory(dir, tr);
    for (let k = 0; k < nChunks; k++) {
      const file = chunkPath(o.out, split, o.seed, k);
      if (chunkComplete(file, o.dtype, shape)) {
        kept++;
        done += o.chunkSize;
        continue;
      }
      const t0 = k * o.chunkSize;
      const t1 = t0 + o.chunkSize;
      jobs.push({
        file,
        positions: tr.positions.slice(t0 * o.numBalls * 2, t1 * o.numBalls * 2),
        colors: tr.colors.slice(t0 * o.numBalls * 3, t1 * o.numBalls * 3),
        numBalls: o.numBalls,
        count: o.chunkSize,
        resolution: o.resolution,
        dtype: o.dtype,
      });
    }
  }

  // 3. Render the missing chunks.
  opts.onProgress?.(done, total);
  const finished = (job: RenderChunkJob) => {
    rendered++;
    done += job.count;
    opts.onProgress?.(done, total);
  };
  if (workers <= 1 || jobs.length <= 1) {
    for (const job of jobs) {
      renderChunkToFile(job);
      finished(job);
    }
  } else {
    // The calling thread renders too, so `workers` threads work in total.
    await runPool<RenderChunkJob, { frames: number }>(
      new URL('./balls-worker.ts', import.meta.url),
      jobs,
      (_r, job) => finished(job),
      {
        workers,
        transfer: (job) => [job.positions.buffer as ArrayBuffer, job.colors.buffer as ArrayBuffer],
        inline: (job) => {
          renderChunkToFile(job);
          return { frames: job.count };
        },
      },
    );
  }
  return { out: o.out, renderedChunks: rendered, keptChunks: kept, frames: o.frames };
}
