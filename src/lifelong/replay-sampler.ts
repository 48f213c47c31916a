/**
 * The streaming replay sampler (REFERENCE_SPEC §3.2, `DistributedReplaySampler`) as a pure
 * index generator: one batch of window indices per stream position.
 *
 * For stream position `i` (0 … streamLength−1) this rank's local batch has `localBatch` slots;
 * global slot `rank·localBatch + b` is **live** (the newest window, index `i`) when it is below
 * `nSequential`, and a **replay** slot otherwise: a uniform draw with replacement from the
 * reservoir of earlier positions (sample RNG, seeded `seed + rank`). At `i = 0` every slot is
 * live. After the batch, position `i` is offered to the reservoir (update RNG, seeded `seed`, the
 * same on every rank so the reservoirs stay identical):
 * ```
 * if |buffer| < bufferSize: append i
 * elif bufferSize > 0: j ~ U{0 … i−1} (faithful)  |  U{0 … i} (vitter);  if j < |buffer|: buffer[j] = i
 * ```
 * Differences from the reference, all from the §3.2 / §10.2 proposals:
 * - end of stream is the iterator completing (`nextBatch()` returns undefined), not an error (§10.2 #17);
 * - configurations whose replay slots would draw from an empty buffer are rejected up front (§10.2 #17);
 * - the state includes both RNG states and the last consumed position, so a resumed run
 *   continues the identical sequence (§10.2 #19); the reference `replay_state.pt` content
 *   `{next_index, buffer_indices}` can still be imported/exported (RNGs then restart from their seeds, faithful).
 * The reservoir rule defaults to the faithful `U{0 … i−1}` (§10.2 #18).
 */
import { OptionError, FileFormatError } from '../util/errors.ts';
import { NumpyRandomState } from '../util/mt19937.ts';
import type { Rng } from '../util/rng.ts';
import { readSamplerStateJson, writeSamplerStateJson } from './sampler-state.ts';

/** Reservoir replacement rule: `'faithful'` draws j from U{0…i−1} (reference), `'vitter'` from U{0…i} (Algorithm R). */
export type ReservoirRule = 'faithful' | 'vitter';

/** Creates a seeded RNG; the default is NumPy's legacy `RandomState` (MT19937). */
export type RngFactory = (seed: number) => Rng;

export const defaultRngFactory: RngFactory = (seed) => new NumpyRandomState(seed);

/** Options of {@link ReplaySampler} (flag names from `video_train.py`, §3.2/§3.3). */
export interface ReplaySamplerOptions {
  /** Number of stream positions (`len(dataset)` = number of sliding windows). */
  streamLength: number;
  /** Global batch size `--batch-size`, divisible by `worldSize`. */
  globalBatch: number;
  /** `--n-sample-stm`: global slots (rank-major) holding the current window; ≤ 0 → none. */
  nSequential: number;
  /** `--ltm-size`: reservoir capacity; ≤ 0 → never filled; undefined → `streamLength` (reference default for None). */
  bufferSize?: number;
  /** `--data-seed` (default 0). */
  seed?: number;
  /** Number of processes (default 1). */
  worldSize?: number;
  /** This process (default 0). */
  rank?: number;
  /** Reservoir rule (default `'faithful'`). */
  reservoir?: ReservoirRule;
  /** RNG constructor (default NumPy `RandomState`). */
  rngFactory?: RngFactory;
}

/** One local batch: the window indices for this rank at one stream position. */
export interface ReplayBatch {
  /** Stream position `i` this batch belongs to. */
  position: number;
  /** `localBatch` window indices (dataset item indices). */
  indices: number[];
  /** Per slot: true for the current window, false for a replay draw. */
  live: boolean[];
}

/** Resolved, validated configuration (stored in the state to detect mismatched resumes). */
export interface ReplaySamplerConfig {
  streamLength: number;
  globalBatch: number;
  localBatch: number;
  nSequential: number;
  bufferSize: number;
  seed: number;
  worldSize: number;
  rank: number;
  reservoir: ReservoirRule;
}

/** JSON-serialisable sampler state (§3.2 proposal). */
export interface ReplaySamplerState {
  kind: 'flexvid.replay-sampler';
  version: 1;
  config: ReplaySamplerConfig;
  /** Next stream position to emit (= the reference's `next_index`). */
  nextIndex: number;
  /** Stream position of the last batch handed out (= consumed), null before the first. */
  lastConsumed: number | null;
  /** Reservoir content (stream positions). */
  buffer: number[];
  /** Sample RNG state (seeded `seed + rank`). */
  sampleRng: unknown;
  /** Update RNG state (seeded `seed`). */
  updateRng: unknown;
}

/** Validate options and fill defaults (throws OptionError naming the flag). */
export function resolveReplayConfig(o: ReplaySamplerOptions): ReplaySamplerConfig {
  const worldSize = o.worldSize ?? 1;
  const rank = o.rank ?? 0;
  const seed = o.seed ?? 0;
  const reservoir = o.reservoir ?? 'faithful';
  if (!Number.isSafeInteger(o.streamLength) || o.streamLength < 0) throw new OptionError('streamLength', 'a non-negative integer (number of stream windows)', o.streamLength);
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new OptionError('worldSize', 'a positive integer', worldSize);
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) throw new OptionError('rank', `an integer in [0, ${worldSize})`, rank);
  if (!Number.isSafeInteger(o.globalBatch) || o.globalBatch < 1) throw new OptionError('--batch-size', 'a positive integer', o.globalBatch);
  if (o.globalBatch % worldSize !== 0) throw new OptionError('--batch-size', `a multiple of the world size ${worldSize}`, o.globalBatch);
  if (!Number.isSafeInteger(o.nSequential)) throw new OptionError('--n-sample-stm', 'an integer', o.nSequential);
  const bufferSize = o.bufferSize ?? o.streamLength;
  if (!Number.isSafeInteger(bufferSize)) throw new OptionError('--ltm-size', 'an integer', bufferSize);
  if (!Number.isSafeInteger(seed)) throw new OptionError('--data-seed', 'an integer', seed);
  if (reservoir !== 'faithful' && reservoir !== 'vitter') throw new OptionError('reservoir', '"faithful" or "vitter"', reservoir);
  // §10.2 #17: replay slots exist (some slot index ≥ nSequential) but the reservoir can never
  // hold anything → the reference crashes at i = 1 and silently stops training. Reject instead.
  if (o.nSequential < o.globalBatch && bufferSize <= 0) {
    throw new OptionError(
      '--ltm-size',
      `a positive replay buffer size when --n-sample-stm (${o.nSequential}) < --batch-size (${o.globalBatch}) leaves replay slots ` +
        `(set e.g. --n-sample-stm=1 --ltm-size=<N>, or --n-sample-stm=${o.globalBatch} for pure online training)`,
      bufferSize,
    );
  }
  return { streamLength: o.streamLength, globalBatch: o.globalBatch, localBatch: o.globalBatch / worldSize, nSequential: o.nSequential, bufferSize, seed, worldSize, rank, reservoir };
}

/**
 * Replay sampler (§3.2). Iterate with `for (const batch of sampler)` or call {@link nextBatch}
 * until it returns undefined (end of stream). Deterministic given the options; the state can be
 * saved after any batch and restored to continue the identical sequence.
 */
export class ReplaySampler implements Iterable<ReplayBatch> {
  readonly config: ReplaySamplerConfig;
  private readonly rngFactory: RngFactory;
  private sampleRng: Rng;
  private updateRng: Rng;
  private buffer: number[] = [];
  private next = 0;

  constructor(options: ReplaySamplerOptions) {
    this.config = resolveReplayConfig(options);
    this.rngFactory = options.rngFactory ?? defaultRngFactory;
    this.sampleRng = this.rngFactory(this.config.seed + this.config.rank);
    this.updateRng = this.rngFactory(this.config.seed);
  }

  /** Next stream position to emit (the reference's `next_index`). */
  get nextIndex(): number {
    return this.next;
  }

  /** True when every position has been emitted. */
  get done(): boolean {
    return this.next >= this.config.streamLength;
  }

  /** Copy of the reservoir content. */
  get bufferContent(): number[] {
    return [...this.buffer];
  }

  /**
   * Emit the local batch for the next stream position and update the reservoir;
   * undefined at the end of the stream (explicit end-of-stream signal, §10.2 #17).
   */
  nextBatch(): ReplayBatch | undefined {
    const c = this.config;
    const i = this.next;
    if (i >= c.streamLength) return undefined;
    const indices: number[] = new Array(c.localBatch);
    const live: boolean[] = new Array(c.localBatch);
    for (let b = 0; b < c.localBatch; b++) {
      if (i === 0 || c.rank * c.localBatch + b < c.nSequential) {
        indices[b] = i;
        live[b] = true;
      } else {
        // Non-empty by construction: validation guarantees bufferSize > 0, and position 0 was appended.
        indices[b] = this.buffer[this.sampleRng.randint(0, this.buffer.length)]!;
        live[b] = false;
      }
    }
    this.offer(i);
    this.next = i + 1;
    return { position: i, indices, live };
  }

  /** Reservoir update with position `i` (identical on every rank). */
  private offer(i: number): void {
    const { bufferSize, reservoir } = this.config;
    if (this.buffer.length < bufferSize) {
      this.buffer.push(i);
    } else if (bufferSize > 0) {
      // faithful: j ~ U{0 … i−1} (replacement probability bufferSize / i, §10.2 #18);
      // vitter:   j ~ U{0 … i}   (Algorithm R, every position kept with probability bufferSize / (i+1)).
      const j = this.updateRng.randint(0, reservoir === 'vitter' ? i + 1 : i);
      if (j < this.buffer.length) this.buffer[j] = i;
    }
  }

  *[Symbol.iterator](): Iterator<ReplayBatch> {
    for (let b = this.nextBatch(); b !== undefined; b = this.nextBatch()) yield b;
  }

  /** Snapshot of the full state (after the batches emitted so far). */
  getState(): ReplaySamplerState {
    return {
      kind: 'flexvid.replay-sampler',
      version: 1,
      config: { ...this.config },
      nextIndex: this.next,
      lastConsumed: this.next > 0 ? this.next - 1 : null,
      buffer: [...this.buffer],
      sampleRng: this.sampleRng.getState(),
      updateRng: this.updateRng.getState(),
    };
  }

  /**
   * Restore a snapshot from {@link getState}. The sampler's own options must match the saved
   * ones (except `streamLength`, which may grow); a mismatch throws OptionError naming the flag.
   */
  setState(state: unknown): void {
    const s = validateReplayState(state, '<replay sampler state>');
    const c = this.config;
    const checks: Array<[keyof ReplaySamplerConfig, string]> = [
      ['globalBatch', '--batch-size'],
      ['nSequential', '--n-sample-stm'],
      ['bufferSize', '--ltm-size'],
      ['seed', '--data-seed'],
      ['worldSize', 'worldSize'],
      ['rank', 'rank'],
      ['reservoir', 'reservoir'],
    ];
    for (const [k, flag] of checks) {
      if (s.config[k] !== c[k]) throw new OptionError(flag, `${JSON.stringify(s.config[k])} (the value the saved replay state was made with)`, c[k]);
    }
    const sample = this.rngFactory(0);
    const update = this.rngFactory(0);
    sample.setState(s.sampleRng);
    update.setState(s.updateRng);
    this.sampleRng = sample;
    this.updateRng = update;
    this.buffer = [...s.buffer];
    this.next = s.nextIndex;
  }

  /** Save {@link getState} as JSON (atomic write). */
  saveState(path: string): void {
    writeSamplerStateJson(path, this.getState());
  }

  /** Load a JSON state file written by {@link saveState}. */
  loadState(path: string): void {
    const s = readSamplerStateJson(path, 'flexvid.replay-sampler');
    try {
      validateReplayState(s, path);
    } catch (e) {
      if (e instanceof FileFormatError) throw e;
      throw new FileFormatError(path, (e as Error).message);
    }
    this.setState(s);
  }

  /** The reference `replay_state.pt` content `{next_index, buffer_indices}` (§3.2). */
  toReferenceState(): { next_index: number; buffer_indices: number[] } {
    return { next_index: this.next, buffer_indices: [...this.buffer] };
  }

  /**
   * Resume from reference `replay_state.pt` content like the reference does: start at
   * `next_index`, take the buffer, and restart both RNGs from their seeds (faithful — the RNG
   * states are not in that file, so draws differ from an uninterrupted run).
   */
  loadReferenceState(content: { next_index: number; buffer_indices: readonly number[] }, file = '<replay_state>'): void {
    const { next_index, buffer_indices } = content;
    if (!Number.isSafeInteger(next_index) || next_index < 0) throw new FileFormatError(file, `next_index must be a non-negative integer, got ${String(next_index)}`);
    if (!Array.isArray(buffer_indices) || !buffer_indices.every((x) => Number.isSafeInteger(x) && x >= 0 && x < Math.max(next_index, 1))) {
      throw new FileFormatError(file, `buffer_indices must be integers in [0, next_index=${next_index})`);
    }
    if (next_index > 0 && buffer_indices.length === 0 && this.config.nSequential < this.config.globalBatch) {
      throw new FileFormatError(file, 'empty buffer_indices after position 0: replay slots would have nothing to draw from');
    }
    this.next = next_index;
    this.buffer = [...buffer_indices];
    this.sampleRng = this.rngFactory(this.config.seed + this.config.rank);
    this.updateRng = this.rngFactory(this.config.seed);
  }
}

/** Structural validation of a saved state (TypeError-free: throws FileFormatError with `file`). */
export function validateReplayState(state: unknown, file: string): ReplaySamplerState {
  const s = state as Partial<ReplaySamplerState> | null;
  const bad = (detail: string): never => {
    throw new FileFormatError(file, `invalid replay sampler state: ${detail}`);
  };
  if (typeof s !== 'object' || s === null) return bad('not an object');
  if (s.kind !== 'flexvid.replay-sampler') bad(`kind is ${JSON.stringify(s.kind)}`);
  if (s.version !== 1) bad(`unsupported version ${JSON.stringify(s.version)}`);
  if (typeof s.config !== 'object' || s.config === null) bad('missing config');
  if (!Number.isSafeInteger(s.nextIndex) || s.nextIndex! < 0) bad('nextIndex must be a non-negative integer');
  if (!(s.lastConsumed === null || s.lastConsumed === s.nextIndex! - 1)) bad('lastConsumed must be nextIndex − 1 (or null)');
  if (!Array.isArray(s.buffer) || !s.buffer.every((x) => Number.isSafeInteger(x) && x >= 0 && x < s.nextIndex!)) bad('buffer must hold integers in [0, nextIndex)');
  if (s.sampleRng === undefined || s.updateRng === undefined) bad('missing RNG states');
  return s as ReplaySamplerState;
}
