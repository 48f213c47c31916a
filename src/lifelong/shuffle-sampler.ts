/**
 * The offline (non-streaming) data order of `load_data` (REFERENCE_SPEC §3.1 step 3,
 * "non-deterministic"): a distributed shuffling sampler.
 *
 * Epoch `e` uses the permutation of `0 … n−1` drawn with an RNG seeded `seed + e`
 * (Fisher–Yates from the back with `randint(0, k+1)`, which with the default NumPy RNG equals
 * `np.random.RandomState(seed + e).permutation(n)`). The list is padded by repeating its head
 * to a multiple of the world size and rank `r` takes elements `r, r+W, r+2W, …`, like
 * `torch.utils.data.DistributedSampler`. Batches of `globalBatch / worldSize` consecutive
 * indices; the last batch of an epoch may be smaller (no drop-last, §3.1 step 4).
 *
 * Deviation (documented): PyTorch draws the permutation with `torch.randperm`, whose bit stream
 * we do not reproduce; orders therefore differ from reference runs, their distribution does not.
 */
import { FileFormatError, OptionError } from '../util/errors.ts';
import type { Rng } from '../util/rng.ts';
import { defaultRngFactory, type RngFactory } from './replay-sampler.ts';
import { readSamplerStateJson, writeSamplerStateJson } from './sampler-state.ts';

export interface ShuffleSamplerOptions {
  /** Number of dataset items. */
  datasetLength: number;
  /** Global batch size, divisible by `worldSize`. */
  globalBatch: number;
  /** Base seed (`--data-seed`, default 0). */
  seed?: number;
  worldSize?: number;
  rank?: number;
  /** false → identity order every epoch (default true). */
  shuffle?: boolean;
  /** Number of epochs before the iterator completes (default: infinite, like `load_data`). */
  epochs?: number;
  rngFactory?: RngFactory;
}

export interface ShuffleSamplerConfig {
  datasetLength: number;
  globalBatch: number;
  localBatch: number;
  seed: number;
  worldSize: number;
  rank: number;
  shuffle: boolean;
  epochs: number | null;
}

/** One local batch of the offline sampler. */
export interface ShuffleBatch {
  epoch: number;
  /** Batch number within the epoch. */
  batchInEpoch: number;
  indices: number[];
}

export interface ShuffleSamplerState {
  kind: 'flexvid.shuffle-sampler';
  version: 1;
  config: ShuffleSamplerConfig;
  /** Epoch of the next batch. */
  epoch: number;
  /** Index of the next batch within that epoch. */
  batchInEpoch: number;
}

/** Offline distributed shuffling sampler (§3.1). Same state API as the replay sampler. */
export class ShuffleSampler implements Iterable<ShuffleBatch> {
  readonly config: ShuffleSamplerConfig;
  private readonly rngFactory: RngFactory;
  private epoch = 0;
  private batchInEpoch = 0;
  private cachedEpoch = -1;
  private cachedIndices: number[] = [];

  constructor(o: ShuffleSamplerOptions) {
    const worldSize = o.worldSize ?? 1;
    const rank = o.rank ?? 0;
    const seed = o.seed ?? 0;
    if (!Number.isSafeInteger(o.datasetLength) || o.datasetLength < 0) throw new OptionError('datasetLength', 'a non-negative integer', o.datasetLength);
    if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new OptionError('worldSize', 'a positive integer', worldSize);
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= worldSize) throw new OptionError('rank', `an integer in [0, ${worldSize})`, rank);
    if (!Number.isSafeInteger(o.globalBatch) || o.globalBatch < 1 || o.globalBatch % worldSize !== 0) {
      throw new OptionError('--batch-size', `a positive multiple of the world size ${worldSize}`, o.globalBatch);
    }
    if (!Number.isSafeInteger(seed)) throw new OptionError('--data-seed', 'an integer', seed);
    const epochs = o.epochs ?? null;
    if (epochs !== null && (!Number.isSafeInteger(epochs) || epochs < 0)) throw new OptionError('epochs', 'a non-negative integer', epochs);
    this.config = { datasetLength: o.datasetLength, globalBatch: o.globalBatch, localBatch: o.globalBatch / worldSize, seed, worldSize, rank, shuffle: o.shuffle ?? true, epochs };
    this.rngFactory = o.rngFactory ?? defaultRngFactory;
  }

  /** Number of indices this rank gets per epoch: ⌈n / W⌉. */
  get samplesPerEpoch(): number {
    return Math.ceil(this.config.datasetLength / this.config.worldSize);
  }

  /** Number of local batches per epoch. */
  get batchesPerEpoch(): number {
    return Math.ceil(this.samplesPerEpoch / this.config.localBatch);
  }

  /** This rank's index list for an epoch (permute, pad with the head, take every W-th from `rank`). */
  epochIndices(epoch: number): number[] {
    if (epoch === this.cachedEpoch) return this.cachedIndices;
    const { datasetLength: n, worldSize: w, rank, seed, shuffle } = this.config;
    const order = Array.from({ length: n }, (_, k) => k);
    if (shuffle) permuteInPlace(order, this.rngFactory(seed + epoch));
    const total = Math.ceil(n / w) * w;
    const padded = order.slice();
    while (padded.length < total) padded.push(...order.slice(0, total - padded.length));
    const mine: number[] = [];
    for (let k = rank; k < total; k += w) mine.push(padded[k]!);
    this.cachedEpoch = epoch;
    this.cachedIndices = mine;
    return mine;
  }

  /** Next local batch; undefined after `epochs` epochs (never for an infinite sampler, unless the dataset is empty). */
  nextBatch(): ShuffleBatch | undefined {
    const { epochs, localBatch, datasetLength } = this.config;
    if (datasetLength === 0) return undefined;
    if (this.batchInEpoch >= this.batchesPerEpoch) {
      this.epoch++;
      this.batchInEpoch = 0;
    }
    if (epochs !== null && this.epoch >= epochs) return undefined;
    const all = this.epochIndices(this.epoch);
    const start = this.batchInEpoch * localBatch;
    const batch: ShuffleBatch = { epoch: this.epoch, batchInEpoch: this.batchInEpoch, indices: all.slice(start, start + localBatch) };
    this.batchInEpoch++;
    return batch;
  }

  *[Symbol.iterator](): Iterator<ShuffleBatch> {
    for (let b = this.nextBatch(); b !== undefined; b = this.nextBatch()) yield b;
  }

  getState(): ShuffleSamplerState {
    let { epoch, batchInEpoch } = this;
    if (batchInEpoch >= this.batchesPerEpoch && this.batchesPerEpoch > 0) {
      epoch++;
      batchInEpoch = 0;
    }
    return { kind: 'flexvid.shuffle-sampler', version: 1, config: { ...this.config }, epoch, batchInEpoch };
  }

  /** Restore a snapshot; options must match (OptionError naming the field otherwise). */
  setState(state: unknown): void {
    const s = state as Partial<ShuffleSamplerState> | null;
    if (!s || s.kind !== 'flexvid.shuffle-sampler' || s.version !== 1 || typeof s.config !== 'object' || s.config === null) {
      throw new FileFormatError('<shuffle sampler state>', 'not a flexvid.shuffle-sampler state (version 1)');
    }
    if (!Number.isSafeInteger(s.epoch) || s.epoch! < 0 || !Number.isSafeInteger(s.batchInEpoch) || s.batchInEpoch! < 0) {
      throw new FileFormatError('<shuffle sampler state>', 'epoch/batchInEpoch must be non-negative integers');
    }
    for (const k of ['datasetLength', 'globalBatch', 'seed', 'worldSize', 'rank', 'shuffle'] as const) {
      if (s.config[k] !== this.config[k]) throw new OptionError(k, `${JSON.stringify(s.config[k])} (the value the saved state was made with)`, this.config[k]);
    }
    this.epoch = s.epoch!;
    this.batchInEpoch = s.batchInEpoch!;
  }

  saveState(path: string): void {
    writeSamplerStateJson(path, this.getState());
  }

  loadState(path: string): void {
    this.setState(readSamplerStateJson(path, 'flexvid.shuffle-sampler'));
  }
}

/**
 * In-place Fisher–Yates shuffle from the back: for k = n−1 … 1 swap a[k] with a[j], j ~ U{0…k}
 * (`rng.randint(0, k+1)`). With NumPy's RandomState this is exactly `RandomState.shuffle`.
 */
export function permuteInPlace<T>(a: T[], rng: Rng): void {
  for (let k = a.length - 1; k > 0; k--) {
    const j = rng.randint(0, k + 1);
    const t = a[k]!;
    a[k] = a[j]!;
    a[j] = t;
  }
}
