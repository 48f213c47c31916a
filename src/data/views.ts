/**
 * Dataset views: the ways the reference cuts a stream into length-`T` windows
 * (REFERENCE_SPEC §2.3 for npy streams, §2.6 for PLAICraft).
 *
 * Index arithmetic is the reference's, with the §10.1 fixes (corrected):
 * - every item reports the **true absolute frame indices** `[s, …, s+T−1]` (item 6);
 * - windows crossing chunk boundaries work in every view (item 7; the store reads across chunks);
 * - Spaced no longer asserts `hi ≤ n_data` (item 2);
 * - the `T | T_total`, `T | chunk_size` assertions of the reference's Continuous dataset only
 *   protected its single-chunk loading and are dropped.
 *
 * Views work on any {@link FrameSource}; the split is chosen with `setTrain()` / `setTest()`
 * (or the `split` option) like the reference's mode flag.
 */
import { OptionError } from '../util/errors.ts';
import type { FrameSource, FrameWindow, Split } from './video-store.ts';

/** `[lo, hi)` frame range; `hi = null` means the end of the stream. */
export type FrameRange = readonly [number, number | null];

/** What every view offers (and what training/evaluation code consumes). */
export interface WindowDataset {
  /** Window length. */
  readonly T: number;
  /** Number of items. */
  readonly length: number;
  /** Current split. */
  readonly split: Split;
  /** First absolute frame of item `i`. */
  startOf(i: number): number;
  /** Item `i`: frames `[T, C, H, W]` in [-1, 1] and their absolute frame indices. */
  get(i: number): FrameWindow;
  /**
   * Item `i` written into `out` (at least `T·C·H·W` floats, e.g. one slot of a
   * `[B, T, C, H, W]` batch buffer); returns the absolute frame indices.
   */
  getInto(i: number, out: Float32Array): number[];
  /** `[C, H, W]` of a frame. */
  frameShape(): [number, number, number];
  setTrain(): void;
  setTest(): void;
}

/** Options shared by all views. */
export interface ViewOptions {
  /** Window length (≥ 1). */
  T: number;
  /** Split to read (default 'train'). */
  split?: Split;
  /** `[lo, hi)` of the stream to use (default the whole stream). */
  frameRange?: FrameRange;
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) throw new OptionError(name, 'a positive integer', v);
}

/** Base class: split handling, range resolution, item reading. */
abstract class BaseView implements WindowDataset {
  readonly T: number;
  protected _split: Split;
  protected readonly range: FrameRange;
  protected lo = 0;
  protected hi = 0;

  constructor(
    protected readonly source: FrameSource,
    opts: ViewOptions,
  ) {
    checkPositiveInt('T', opts.T);
    this.T = opts.T;
    this._split = opts.split ?? 'train';
    this.range = opts.frameRange ?? [0, null];
  }

  /** Resolve `[lo, hi)` against the current split and run the subclass checks. */
  protected resolve(): void {
    const total = this.source.frameCount(this._split);
    const [lo, hiOpt] = this.range;
    const hi = hiOpt ?? total;
    if (!Number.isSafeInteger(lo) || lo < 0) throw new OptionError('frame range start', 'an integer ≥ 0', lo);
    if (!Number.isSafeInteger(hi) || hi > total || hi <= lo) {
      throw new OptionError('frame range end', `an integer in (${lo}, ${total}] (the ${this._split} stream has ${total} frames)`, hi);
    }
    this.lo = lo;
    this.hi = hi;
    this.check();
  }

  /** Subclass-specific assertions (after lo/hi are set). */
  protected abstract check(): void;
  abstract get length(): number;
  abstract startOf(i: number): number;

  get split(): Split {
    return this._split;
  }

  setTrain(): void {
    this._split = 'train';
    this.resolve();
  }

  setTest(): void {
    this._split = 'test';
    this.resolve();
  }

  frameShape(): [number, number, number] {
    return this.source.frameShape(this._split);
  }

  get(i: number): FrameWindow {
    const s = this.checkedStart(i);
    const block = this.source.readFrames(this._split, s, this.T);
    return { frames: block.data, shape: block.shape, indices: this.indicesFrom(s) };
  }

  getInto(i: number, out: Float32Array): number[] {
    const s = this.checkedStart(i);
    this.source.readFrames(this._split, s, this.T, out);
    return this.indicesFrom(s);
  }

  private checkedStart(i: number): number {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.length) {
      throw new RangeError(`item ${i} is out of range [0, ${this.length})`);
    }
    return this.startOf(i);
  }

  private indicesFrom(s: number): number[] {
    return Array.from({ length: this.T }, (_, k) => s + k);
  }
}

/** Options of {@link ContinuousView}. */
export interface ContinuousOptions extends ViewOptions {
  /** 177f6e5 `restart_index`: item `i` starts at `lo + (i mod restartIndex)`. */
  restartIndex?: number;
}

/**
 * Sliding windows with stride 1 (ContinuousBaseDataset): `len = (hi − lo) − (T − 1)`, item `i`
 * starts at `s = lo + (i mod restartIndex?)`.
 */
export class ContinuousView extends BaseView {
  private readonly restartIndex: number | undefined;

  constructor(source: FrameSource, opts: ContinuousOptions) {
    super(source, opts);
    if (opts.restartIndex !== undefined) checkPositiveInt('restartIndex', opts.restartIndex);
    this.restartIndex = opts.restartIndex;
    this.resolve();
  }

  protected check(): void {
    if (this.hi - this.lo < this.T) {
      throw new OptionError('T', `at most the ${this.hi - this.lo} frames of the range`, this.T);
    }
  }

  get length(): number {
    return this.hi - this.lo - (this.T - 1);
  }

  startOf(i: number): number {
    return this.lo + (this.restartIndex !== undefined ? i % this.restartIndex : i);
  }
}

/** Non-overlapping windows (ChunkedBaseDataset): `len = ⌊(hi − lo)/T⌋`, `s = lo + i·T`. */
export class ChunkedView extends BaseView {
  constructor(source: FrameSource, opts: ViewOptions) {
    super(source, opts);
    this.resolve();
  }

  protected check(): void {
    if (this.hi - this.lo < this.T) {
      throw new OptionError('T', `at most the ${this.hi - this.lo} frames of the range`, this.T);
    }
  }

  get length(): number {
    return Math.floor((this.hi - this.lo) / this.T);
  }

  startOf(i: number): number {
    return this.lo + i * this.T;
  }
}

/** Options of {@link SpacedView}. */
export interface SpacedOptions extends ViewOptions {
  /** Number of evenly spaced windows. */
  nData: number;
  /**
   * `'npy'` (SpacedBaseDataset, default): asserts `T | spacing`.
   * `'plaicraft'` (SpacedPlaicraftDataset): asserts `spacing > T`, then `spacing −= spacing mod T`.
   */
  flavour?: 'npy' | 'plaicraft';
}

/**
 * `nData` evenly spaced windows: `spacing = ⌊(hi − lo)/nData⌋`, item `i` starts at
 * `lo + i·spacing` (README example: 100 frames, T = 5, 10 items → 0, 10, …, 90).
 */
export class SpacedView extends BaseView {
  readonly nData: number;
  private readonly flavour: 'npy' | 'plaicraft';
  /** Distance between consecutive window starts. */
  spacing = 0;

  constructor(source: FrameSource, opts: SpacedOptions) {
    super(source, opts);
    checkPositiveInt('nData', opts.nData);
    this.nData = opts.nData;
    this.flavour = opts.flavour ?? 'npy';
    this.resolve();
  }

  protected check(): void {
    const spacing = Math.floor((this.hi - this.lo) / this.nData);
    if (this.flavour === 'plaicraft') {
      if (!(spacing > this.T)) {
        throw new OptionError('nData', `few enough windows that the spacing ⌊(hi − lo)/nData⌋ = ${spacing} exceeds T = ${this.T}`, this.nData);
      }
      this.spacing = spacing - (spacing % this.T);
    } else {
      if (spacing === 0 || spacing % this.T !== 0) {
        throw new OptionError('nData', `a count whose spacing ⌊(${this.hi} − ${this.lo})/nData⌋ = ${spacing} is a positive multiple of T = ${this.T}`, this.nData);
      }
      if (!(this.lo + this.T < this.hi)) {
        throw new OptionError('frame range', `lo + T < hi`, [this.lo, this.hi]);
      }
      this.spacing = spacing;
    }
  }

  get length(): number {
    return this.nData;
  }

  startOf(i: number): number {
    return this.lo + i * this.spacing;
  }
}
