/**
 * Long-video sampling schemes of FDM (REFERENCE_SPEC §7.3, `sampling_schemes.py`).
 *
 * A scheme decides, stage by stage, which frames of a length-L video to generate next ("latent")
 * and which already-available frames to condition on ("obs"). Each stage then runs one full
 * diffusion chain on at most K = `maxFrames` frames. Schemes are iterators of {@link Stage}s:
 *
 * ```ts
 * const scheme = createSamplingScheme('hierarchy-2', { videoLength: 50, numObs: 10, maxFrames: 10, stepSize: 5 });
 * for (const { obs, latent } of scheme) { … sample frames latent[b] given obs[b] for every video b … }
 * ```
 *
 * State shared by every scheme: `done` (frames observed or already generated; starts as the
 * `numObs` leading frames), `obsFrames` (the ground-truth observed frames, or — after an
 * unconditional start — the first generated batch) and a step counter.
 */
import { FileFormatError, FlexvidError, OptionError } from '../util/errors.ts';
import { npLinspace } from '../diffusion/schedule.ts';
import * as fs from 'node:fs';

/** One stage: per-video frame indices (positions within the video). */
export interface Stage {
  /** 0-based stage index. */
  step: number;
  /** `obs[b]`: frames video b is conditioned on (all already done). */
  obs: number[][];
  /** `latent[b]`: frames video b generates in this stage. */
  latent: number[][];
}

/**
 * Embeds frames of one video for the adaptive schemes: returns one vector per requested frame, in
 * order. With the LPIPS embedding of §7.3 the squared Euclidean distance equals the LPIPS distance.
 * Called when the stage is planned, so the caller must have written the previous stage's frames.
 */
export type EmbedFn = (videoIndex: number, frameIndices: number[]) => Float32Array[];

/** Map from stage index to observed frames (§7.1 `--optimality`), e.g. parsed from JSON. */
export type OptimalSchedule = Record<string, number[]> | Map<number, number[]>;

/** Options shared by every scheme (§7.2 `sample_video`, §7.3). */
export interface SchemeOptions {
  /** Video length L (frames). */
  videoLength: number;
  /** Leading ground-truth frames n_obs (0 = unconditional start). */
  numObs: number;
  /** K: most frames (observed + latent) per stage. */
  maxFrames: number;
  /** S: frames generated per stage; default ⌊K/2⌋ (`--max_latent_frames`). */
  stepSize?: number;
  /** Videos per batch B; non-adaptive schemes replicate their lists B times. Default 1. */
  batchSize?: number;
  /** Replace observed indices by this schedule's entry for each stage (non-adaptive schemes only). */
  optimalSchedule?: OptimalSchedule;
  /** Receives warnings (missing optimal-schedule entries). Default: ignore. */
  onWarning?: (message: string) => void;
  /**
   * Apply the §10.3 #34 correction (default false = faithful): when no context is wanted
   * (K = S in `autoreg`, ⌊(K−S)/2⌋ = 0 in `long-range`) condition on no frames instead of on every
   * done frame (the reference's Python slice `[-0:]` returns the whole list).
   */
  corrected?: boolean;
  /** Frame embedder; required by the adaptive schemes. */
  embed?: EmbedFn;
  /** Distance between embeddings; default squared Euclidean. */
  distance?: (a: Float32Array, b: Float32Array) => number;
}

/** Python `list[-n:]` for n ≥ 0 (note `[-0:]` is the whole list). */
function pyTail<T>(a: readonly T[], n: number): T[] {
  return n === 0 ? a.slice() : a.slice(Math.max(0, a.length - n));
}

/** `range(a, b)`. */
function range(a: number, b: number): number[] {
  const out: number[] = [];
  for (let i = a; i < b; i++) out.push(i);
  return out;
}

/** Squared Euclidean distance (LPIPS distance for LPIPS embeddings). */
export function squaredDistance(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new OptionError('embedding', `length ${a.length}`, b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  return s;
}

/**
 * Base of every scheme: bookkeeping, checks and the unconditional start (§7.3 "Common state").
 * Subclasses implement {@link nextIndices}.
 */
export abstract class SamplingScheme implements IterableIterator<Stage> {
  /** Class display name, e.g. `Hierarchy-2` (printed as "Inferring using the sampling scheme …"). */
  abstract readonly displayName: string;
  /** Whether observed lists differ per video (and optimal schedules are ignored). */
  readonly adaptive: boolean = false;
  protected readonly L: number;
  protected readonly K: number;
  /** S; mutable because hierarchy schemes retry with a smaller step (§7.3). */
  protected stepSize: number;
  protected readonly batchSize: number;
  protected readonly numObs: number;
  protected readonly corrected: boolean;
  protected readonly done = new Set<number>();
  protected obsFrames: number[];
  protected step = 0;
  private readonly optimal?: OptimalSchedule;
  private readonly onWarning: (m: string) => void;

  constructor(o: SchemeOptions) {
    const int = (name: string, v: unknown, min: number): number => {
      if (!(typeof v === 'number' && Number.isInteger(v) && v >= min)) throw new OptionError(name, `an integer ≥ ${min}`, v);
      return v;
    };
    this.L = int('T', o.videoLength, 1);
    this.numObs = int('n_obs', o.numObs, 0);
    this.K = int('max_frames', o.maxFrames, 1);
    this.stepSize = int('max_latent_frames', o.stepSize ?? Math.floor(o.maxFrames / 2), 1);
    if (this.stepSize > this.K) throw new OptionError('max_latent_frames', `an integer ≤ max_frames (${this.K})`, this.stepSize);
    if (this.numObs > this.L) throw new OptionError('n_obs', `an integer ≤ T (${this.L})`, this.numObs);
    this.batchSize = int('batch_size', o.batchSize ?? 1, 1);
    this.corrected = o.corrected ?? false;
    this.optimal = o.optimalSchedule;
    this.onWarning = o.onWarning ?? (() => {});
    for (let i = 0; i < this.numObs; i++) this.done.add(i);
    this.obsFrames = range(0, this.numObs);
  }

  /** Frames of the first (unconditional) stage when n_obs = 0; default `[0 … K−1]`. */
  protected unconditionalIndices(): number[] {
    return range(0, this.K);
  }

  /** The next stage's observed and latent frames (one list, or one obs list per video). */
  protected abstract nextIndices(): { obs: number[] | number[][]; latent: number[] };

  /** True once every frame is done (`|done| ≥ L`). */
  isDone(): boolean {
    return this.done.size >= this.L;
  }

  /** Done frames, ascending. */
  doneFrames(): number[] {
    return [...this.done].sort((a, b) => a - b);
  }

  /** Optimal-schedule override for the current step (§7.3), or undefined when none is set. */
  private optimalObs(): number[] | undefined {
    if (!this.optimal) return undefined;
    const entry = this.optimal instanceof Map ? this.optimal.get(this.step) : this.optimal[String(this.step)];
    if (entry === undefined) {
      this.onWarning(`optimal schedule has no entry for step ${this.step}; conditioning on no frames`);
      return [];
    }
    return entry.slice();
  }

  next(): IteratorResult<Stage> {
    if (this.isDone()) return { done: true, value: undefined };
    let obs: number[] | number[][];
    let latent: number[];
    const unconditional = this.obsFrames.length === 0;
    if (unconditional) {
      obs = [];
      latent = this.unconditionalIndices();
    } else {
      ({ obs, latent } = this.nextIndices());
      if (!this.adaptive) obs = this.optimalObs() ?? obs;
    }
    const perVideo: number[][] = this.adaptive && !unconditional
      ? (obs as number[][])
      : Array.from({ length: this.batchSize }, () => (obs as number[]).slice());
    // Generic checks (§7.3): observed frames must already exist; latent frames lie inside the video.
    perVideo.forEach((o) => {
      for (const idx of o) {
        if (!this.done.has(idx)) {
          throw new FlexvidError(`${this.displayName} step ${this.step}: attempting to condition on frame ${idx}, which is not generated yet`);
        }
      }
    });
    for (const idx of latent) {
      if (!(Number.isInteger(idx) && idx >= 0 && idx < this.L)) {
        throw new FlexvidError(`${this.displayName} step ${this.step}: latent frame ${idx} is outside the video [0, ${this.L})`);
      }
    }
    for (const idx of latent) this.done.add(idx);
    if (unconditional) this.obsFrames = latent.slice();
    const stage: Stage = { step: this.step, obs: perVideo, latent: perVideo.map(() => latent.slice()) };
    this.step += 1;
    return { done: false, value: stage };
  }

  [Symbol.iterator](): IterableIterator<Stage> {
    return this;
  }
}

/** `autoreg` (§7.3): condition on the last K − S done frames, generate the next S. */
export class Autoregressive extends SamplingScheme {
  readonly displayName = 'Autoregressive';
  protected nextIndices(): { obs: number[]; latent: number[] } {
    const nCtx = this.K - this.stepSize;
    const sorted = this.doneFrames();
    // faithful (§10.3 #34): with K = S, `sorted[-0:]` is every done frame; corrected: none.
    const obs = this.corrected && nCtx === 0 ? [] : pyTail(sorted, nCtx);
    const first = (obs.length > 0 ? obs[obs.length - 1]! : sorted[sorted.length - 1]!) + 1;
    return { obs, latent: range(first, Math.min(first + this.stepSize, this.L)) };
  }
}

/**
 * `long-range` (§7.3): n_c = K − S context frames — the last ⌊n_c/2⌋ done frames, topped up with
 * `obsFrames` from the largest downwards — then the next S frames after the last done one.
 */
export class LongRangeAutoregressive extends SamplingScheme {
  readonly displayName = 'LongRangeAutoregressive';
  protected nextIndices(): { obs: number[]; latent: number[] } {
    const nCtx = this.K - this.stepSize;
    const nAutoreg = Math.floor(nCtx / 2);
    const sorted = this.doneFrames();
    const chosen = new Set<number>(this.corrected && nAutoreg === 0 ? [] : pyTail(sorted, nAutoreg));
    const reversedObs = [...this.obsFrames].sort((a, b) => b - a);
    for (const i of reversedObs) {
      if (this.corrected && chosen.size >= nCtx) break;
      chosen.add(i);
      if (chosen.size === nCtx) break; // faithful: equality test, as the reference
    }
    const first = sorted[sorted.length - 1]! + 1;
    return { obs: [...chosen].sort((a, b) => a - b), latent: range(first, Math.min(first + this.stepSize, this.L)) };
  }
}

/**
 * `hierarchy-N` (§7.3), N = 2…5: level 1 spreads S latent frames over the whole video, each
 * further level fills the gaps more densely (spacing `every`), conditioning on done frames between
 * the latents, ⌊rest/2⌋ after them and the remainder before them. Observed lists are not sorted.
 */
export class HierarchyNLevel extends SamplingScheme {
  readonly displayName: string;
  private level = 1;
  private lastSampledIdx = 0;

  constructor(readonly levels: number, o: SchemeOptions) {
    super(o);
    if (!(Number.isInteger(levels) && levels >= 2)) throw new OptionError('hierarchy levels', 'an integer ≥ 2', levels);
    // S = 1 divides by zero in `every` (a crash in the reference too).
    if (this.stepSize < 2) throw new OptionError('max_latent_frames', 'an integer ≥ 2 for hierarchy schemes', this.stepSize);
    this.displayName = `Hierarchy-${levels}`;
  }

  /** `every = ⌊((L − |obsFrames|)/(S − 1))^{(N−ℓ)/(N−1)}⌋` (Python `int(x ** y)`). */
  private get sampleEvery(): number {
    const base = (this.L - this.obsFrames.length) / (this.stepSize - 1);
    return Math.trunc(Math.pow(base, (this.levels - this.level) / (this.levels - 1)));
  }

  protected override unconditionalIndices(): number[] {
    if (this.K > this.L) throw new OptionError('max_frames', `at most T (${this.L}) frames for an unconditional start`, this.K);
    this.level = 1;
    this.lastSampledIdx = this.L - 1;
    return Array.from(npLinspace(0, this.L - 1, this.K), Math.trunc);
  }

  protected nextIndices(): { obs: number[] | number[][]; latent: number[] } {
    return this.hierarchyIndices();
  }

  /** The hierarchy selection itself (non-virtual, so the adaptive subclass can reuse it). */
  protected hierarchyIndices(): { obs: number[]; latent: number[] } {
    if (this.done.size === this.obsFrames.length) {
      // First conditional step.
      this.level = 1;
      this.lastSampledIdx = Math.max(...this.obsFrames);
    }
    const nCond = this.K - this.stepSize;
    const nSample = this.stepSize;
    let idx = this.lastSampledIdx + this.sampleEvery;
    if (!range(Math.max(0, idx), this.L).some((i) => !this.done.has(i))) {
      // Reached the end of the video: next level, restarting from the first undone frame.
      this.level += 1;
      this.lastSampledIdx = 0;
      idx = this.firstUndone() - 1 + this.sampleEvery;
    }
    let latent: number[];
    if (this.level === 1) {
      latent = Array.from(npLinspace(Math.max(...this.obsFrames) + 1, this.L - 0.001, nSample), Math.trunc);
    } else {
      latent = [];
      while (latent.length < nSample && idx < this.L) {
        if (!this.done.has(idx)) {
          latent.push(idx);
          idx += this.sampleEvery;
        } else {
          idx += 1;
        }
      }
    }
    if (latent.length === 0) throw new FlexvidError(`${this.displayName} step ${this.step}: no frame left to generate at level ${this.level}`);
    const lo = Math.min(...latent);
    const hi = Math.max(...latent);
    // Observe the done frames in between the latent frames.
    const obs = range(lo, hi).filter((i) => this.done.has(i));
    const rest = nCond - obs.length;
    if (rest < 2) {
      // Retry with a smaller step so that frames before and after can be observed.
      if (this.stepSize <= 2) throw new FlexvidError('Cannot condition before and after even with step size of 1');
      this.stepSize -= 1;
      try {
        return this.hierarchyIndices();
      } finally {
        this.stepSize += 1;
      }
    }
    obs.push(...range(hi + 1, this.L).filter((i) => this.done.has(i)).slice(0, Math.floor(rest / 2)));
    const nBefore = nCond - obs.length;
    if (this.level === 1) {
      obs.push(...Array.from(npLinspace(0, Math.max(...this.obsFrames) + 0.999, nBefore), Math.trunc));
    } else {
      obs.push(...range(0, lo).reverse().filter((i) => this.done.has(i)).slice(0, nBefore));
    }
    this.lastSampledIdx = hi;
    return { obs, latent };
  }

  private firstUndone(): number {
    for (let i = 0; i < this.L; i++) if (!this.done.has(i)) return i;
    return this.L;
  }
}

/**
 * Farthest-point selection of observed frames for one video (§7.3 adaptive schemes): start from
 * the forced picks, then repeatedly add the candidate whose minimum distance to the chosen frames is
 * largest (ties → first candidate). Already-chosen frames are never picked twice, and at most
 * `|candidates|` frames are returned (the reference could repeat a frame when every remaining
 * distance is 0 — a deliberate fix).
 */
export function farthestPointSelection(
  candidates: readonly number[],
  embeddings: readonly Float32Array[],
  forced: readonly number[],
  n: number,
  distance: (a: Float32Array, b: Float32Array) => number = squaredDistance,
): number[] {
  const pos = new Map(candidates.map((c, i) => [c, i] as const));
  const selected: number[] = [];
  const minDist = new Float64Array(candidates.length).fill(Infinity);
  const take = (i: number): void => {
    selected.push(candidates[i]!);
    const e = embeddings[i]!;
    for (let j = 0; j < candidates.length; j++) minDist[j] = Math.min(minDist[j]!, distance(embeddings[j]!, e));
    minDist[i] = -Infinity;
  };
  const limit = Math.min(n, candidates.length);
  for (const f of forced) {
    if (selected.length >= limit) break;
    const i = pos.get(f);
    if (i === undefined) throw new FlexvidError(`forced frame ${f} is not among the candidates`);
    if (minDist[i] !== -Infinity) take(i);
  }
  while (selected.length < limit) {
    let best = 0;
    for (let j = 1; j < candidates.length; j++) if (minDist[j]! > minDist[best]!) best = j;
    take(best);
  }
  return selected;
}

/** Shared embedding plumbing of the adaptive schemes. */
function adaptiveSelect(
  o: SchemeOptions,
  batchSize: number,
  candidates: number[],
  forced: number[],
  n: number,
): number[][] {
  const embed = o.embed;
  if (!embed) throw new OptionError('embed', 'a frame embedder (LPIPS) for adaptive sampling schemes', undefined);
  return Array.from({ length: batchSize }, (_, b) => {
    const embs = embed(b, candidates.slice());
    if (embs.length !== candidates.length) throw new OptionError('embed result', `${candidates.length} embeddings`, embs.length);
    return farthestPointSelection(candidates, embs, forced, n, o.distance);
  });
}

/**
 * `adaptive-autoreg` (§7.3): latent frames as `autoreg` (after the last done frame); per video,
 * K − S observed frames by farthest-point selection over the done frames (most recent first).
 */
export class AdaptiveAutoregressive extends SamplingScheme {
  readonly displayName = 'AdaptiveAutoregressive';
  override readonly adaptive = true;
  constructor(private readonly opts: SchemeOptions) {
    super(opts);
    if (!opts.embed) throw new OptionError('embed', 'a frame embedder (LPIPS) for adaptive sampling schemes', undefined);
  }
  protected nextIndices(): { obs: number[][]; latent: number[] } {
    const candidates = this.doneFrames().reverse();
    const first = candidates[0]! + 1;
    const latent = range(first, Math.min(first + this.stepSize, this.L));
    const obs = adaptiveSelect(this.opts, this.batchSize, candidates, [candidates[0]!], this.K - this.stepSize);
    return { obs, latent };
  }
}

/**
 * `adaptive-hierarchy-N` (§7.3), N = 2, 3: latent frames as `hierarchy-N`; forced observed picks =
 * done frames between the latents, the two closest done frames before them and the closest after;
 * then farthest-point selection over all done frames (ascending order — the reference iterates a
 * Python set, whose order only matters for exact ties) up to K − S frames.
 */
export class AdaptiveHierarchyNLevel extends HierarchyNLevel {
  override readonly displayName: string;
  override readonly adaptive = true;
  constructor(levels: number, private readonly opts: SchemeOptions) {
    super(levels, opts);
    if (!opts.embed) throw new OptionError('embed', 'a frame embedder (LPIPS) for adaptive sampling schemes', undefined);
    this.displayName = `AdaptiveHierarchy-${levels}`;
  }
  protected override nextIndices(): { obs: number[][]; latent: number[] } {
    const latent = this.hierarchyIndices().latent;
    const lo = Math.min(...latent);
    const hi = Math.max(...latent);
    const done = this.doneFrames();
    const between = done.filter((i) => i >= lo && i < hi);
    const before = done.filter((i) => i < lo).reverse().slice(0, 2);
    const after = done.filter((i) => i > hi).slice(0, 1);
    const forced = [...new Set([...between, ...before, ...after])];
    const obs = adaptiveSelect(this.opts, this.batchSize, done, forced, this.K - this.stepSize);
    return { obs, latent };
  }
}

/** Every `--sampling_scheme` name (§7.3). Scheme names contain no `_` (§7.5). */
export const SCHEME_NAMES = [
  'autoreg',
  'long-range',
  'hierarchy-2',
  'hierarchy-3',
  'hierarchy-4',
  'hierarchy-5',
  'adaptive-autoreg',
  'adaptive-hierarchy-2',
  'adaptive-hierarchy-3',
] as const;

export type SchemeName = (typeof SCHEME_NAMES)[number];

/** Whether a scheme needs a frame embedder. */
export function isAdaptiveScheme(name: string): boolean {
  return name.startsWith('adaptive-');
}

/**
 * Build a scheme by its `--sampling_scheme` name (§7.3).
 * @throws OptionError for unknown names or bad sizes.
 */
export function createSamplingScheme(name: string, o: SchemeOptions): SamplingScheme {
  const m = /^(adaptive-)?hierarchy-(\d+)$/.exec(name);
  switch (name) {
    case 'autoreg':
      return new Autoregressive(o);
    case 'long-range':
      return new LongRangeAutoregressive(o);
    case 'adaptive-autoreg':
      return new AdaptiveAutoregressive(o);
  }
  if (m && (SCHEME_NAMES as readonly string[]).includes(name)) {
    const levels = Number(m[2]);
    return m[1] ? new AdaptiveHierarchyNLevel(levels, o) : new HierarchyNLevel(levels, o);
  }
  throw new OptionError('sampling_scheme', `one of ${SCHEME_NAMES.join(', ')}`, name);
}

/**
 * Run a scheme to the end and return all stages (non-adaptive schemes, or adaptive ones with an
 * embedder that does not need generated content). Guards against runaway schemes.
 */
export function collectStages(scheme: SamplingScheme, maxStages = 1_000_000): Stage[] {
  const out: Stage[] = [];
  for (const s of scheme) {
    out.push(s);
    if (out.length > maxStages) throw new FlexvidError(`${scheme.displayName}: more than ${maxStages} stages`);
  }
  return out;
}

/**
 * Read an optimal schedule (§7.1 `--optimality`): a JSON object mapping stage index → observed
 * frame indices, e.g. `{"0": [0, 5, 9], "1": [3, 9, 14]}`. The reference loads a `.pt` file whose
 * generating script is not in the reference repository (§10.3 #37); convert such files to JSON.
 */
export function loadOptimalSchedule(file: string): Record<string, number[]> {
  let data: unknown;
  try {
    data = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FileFormatError(file, `cannot read optimal schedule JSON: ${(e as Error).message}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new FileFormatError(file, 'expected an object mapping step → list of frame indices');
  }
  const out: Record<string, number[]> = {};
  for (const [k, v] of Object.entries(data)) {
    if (!/^\d+$/.test(k)) throw new FileFormatError(file, `key ${JSON.stringify(k)} is not a step number`);
    if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && x >= 0)) {
      throw new FileFormatError(file, `entry ${k} is not a list of frame indices`);
    }
    out[String(Number(k))] = v as number[];
  }
  return out;
}
