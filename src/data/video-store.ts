/**
 * Chunked video store: random access to the frames of a dataset folder (REFERENCE_SPEC §2.2,
 * §2.3 chunk arithmetic, §2.5 DATA_ROOT).
 *
 * Reads chunk files of any chunk size and dtype (`<f8` reference data in [0, 1], `<f4`, `|u1`
 * in [0, 255], `<f2`) and returns float32 frames `[T, C, H, W]` in [-1, 1]
 * (`x ↦ 2x − 1`, uint8 first divided by 255). Frames are read with positioned reads of just the
 * needed part of a chunk file ("segments" of at most ~16 MiB decoded), and the decoded segments
 * are kept in a small LRU cache, so sliding windows, windows crossing chunk boundaries and
 * multi-GB reference chunks all cost the same.
 *
 * The folder is validated against `config.json` when a split is first used: chunk count,
 * shapes, dtypes and file sizes (errors name the file and the mismatch).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileFormatError, OptionError } from '../util/errors.ts';
import { halfToFloat, readNpyHeader, type NpyDtype, type NpyHeader } from './npy.ts';
import {
  chunkPath,
  readDatasetConfig,
  splitDir,
  splitFrames,
  type DatasetConfig,
  type Split,
} from './layout.ts';
import { ensureLocalCopy, envDataRoot, localMirrorPath } from './local-cache.ts';

export type { Split } from './layout.ts';

/** A block of consecutive frames, `data` laid out `[T, C, H, W]`, values in [-1, 1]. */
export interface FrameBlock {
  data: Float32Array;
  shape: [number, number, number, number];
}

/** A dataset item: frames `[T, C, H, W]` plus the true absolute frame index of each frame. */
export interface FrameWindow {
  frames: Float32Array;
  shape: number[];
  indices: number[];
}

/** Anything views can read windows from (npy stores, PLAICraft latents). */
export interface FrameSource {
  /** Frames in a split's stream. */
  frameCount(split: Split): number;
  /** `[C, H, W]` of one frame. */
  frameShape(split: Split): [number, number, number];
  /**
   * Frames `[start, start + count)` of a split as `[count, C, H, W]` float32. With `out` (at least
   * `count·C·H·W` long, e.g. a slice of a batch buffer) the frames are written there and
   * `data` is a view of it; otherwise a new array is returned.
   */
  readFrames(split: Split, start: number, count: number, out?: Float32Array): FrameBlock;
}

/** `out` (checked) or a new array of `n` floats. */
export function outputBuffer(n: number, out?: Float32Array): Float32Array {
  if (out === undefined) return new Float32Array(n);
  if (out.length < n) throw new RangeError(`output buffer holds ${out.length} values, ${n} needed`);
  return out.length === n ? out : out.subarray(0, n);
}

/** Facts about one split of a store. */
export interface SplitInfo {
  split: Split;
  /** Folder holding the chunk files (the shared source). */
  dir: string;
  frames: number;
  chunks: number;
  chunkSize: number;
  height: number;
  width: number;
  channels: number;
  /** `.npy` descr of the chunk files. */
  dtype: NpyDtype;
}

/** Options of {@link VideoStore.open}. */
export interface VideoStoreOptions {
  /** Split sub-folder `<split>/<seed>/` (default: `config.seed`, else 0). */
  seed?: number;
  /** Local mirror root; default `process.env.DATA_ROOT`; `null` disables mirroring. */
  dataRoot?: string | null;
  /** Budget of the decoded-segment cache in bytes (default 256 MiB). */
  cacheBytes?: number;
  /** Largest decoded segment in bytes (default 16 MiB); a chunk is read in segments of this size. */
  segmentBytes?: number;
}

const READABLE: NpyDtype[] = ['<f8', '<f4', '<f2', '|u1'];

/** Lookup table uint8 → `2·(v/255) − 1` as float32. */
const U8_TO_UNIT = (() => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = 2 * (v / 255) - 1;
  return t;
})();

interface SplitState extends SplitInfo {
  /** Chunks whose header was checked. */
  checked: Uint8Array;
  /** Byte offset of the data in each checked chunk (headers may differ in length). */
  dataOffsets: Float64Array;
  frameBytes: number;
  /** Frames per decoded segment. */
  segFrames: number;
}

/** A chunked dataset folder opened for reading. Implements {@link FrameSource}. */
export class VideoStore implements FrameSource {
  /** The shared (source) folder. */
  readonly root: string;
  /** The local mirror folder (equals `root` without DATA_ROOT). */
  readonly localRoot: string;
  readonly config: DatasetConfig;
  readonly chunkSize: number;
  readonly seed: number;
  private readonly splits = new Map<Split, SplitState>();
  private readonly cache = new Map<string, Float32Array>();
  private cacheUsed = 0;
  private readonly cacheBytes: number;
  private readonly segmentBytes: number;
  private readonly mirror: boolean;

  private constructor(root: string, opts: VideoStoreOptions) {
    this.root = root;
    this.config = readDatasetConfig(root);
    this.chunkSize = this.config.chunk_size;
    const cfgSeed = this.config.seed;
    this.seed = opts.seed ?? (typeof cfgSeed === 'number' && Number.isSafeInteger(cfgSeed) && cfgSeed >= 0 ? cfgSeed : 0);
    const dataRoot = opts.dataRoot === undefined ? envDataRoot() : opts.dataRoot;
    this.localRoot = dataRoot ? localMirrorPath(root, dataRoot) : root;
    this.mirror = this.localRoot !== path.resolve(root) && this.localRoot !== root;
    if (this.mirror) fs.mkdirSync(this.localRoot, { recursive: true });
    this.cacheBytes = opts.cacheBytes ?? 256 * 2 ** 20;
    this.segmentBytes = opts.segmentBytes ?? 16 * 2 ** 20;
  }

  /**
   * Open a dataset folder. Reads and checks `config.json` (FileFormatError naming it when
   * missing or inconsistent); splits are validated on first use.
   */
  static open(root: string, opts: VideoStoreOptions = {}): VideoStore {
    return new VideoStore(root, opts);
  }

  /** Folder of a split's chunks under `base` (accepts the reference maze layout without the seed level). */
  private splitFolder(split: Split): string {
    const dir = splitDir(this.root, split, this.seed);
    if (fs.existsSync(dir)) return dir;
    const flat = path.join(this.root, split);
    if (fs.existsSync(path.join(flat, '0.npy'))) return flat; // reference mp4_to_npy layout (§1.2)
    throw new FileFormatError(dir, `missing ${split} split (expected chunk files ${split}/${this.seed}/0.npy …)`);
  }

  /** Validate a split's folder against config.json and return its state (cached). */
  private state(split: Split): SplitState {
    const known = this.splits.get(split);
    if (known) return known;
    const dir = this.splitFolder(split);
    const frames = splitFrames(this.config, split);
    const chunks = frames / this.chunkSize;
    const names = new Set(fs.readdirSync(dir));
    for (let k = 0; k < chunks; k++) {
      if (!names.has(`${k}.npy`)) {
        throw new FileFormatError(
          path.join(dir, `${k}.npy`),
          `missing chunk ${k} of ${chunks} (config.json: ${split === 'test' && this.config.T_total_test !== undefined ? 'T_total_test' : 'T_total'} ${frames}, chunk_size ${this.chunkSize})`,
        );
      }
    }
    if (names.has(`${chunks}.npy`)) {
      throw new FileFormatError(
        path.join(dir, `${chunks}.npy`),
        `unexpected chunk beyond the ${chunks} chunks config.json describes (T_total ${frames}, chunk_size ${this.chunkSize}); is config.json out of date?`,
      );
    }
    const first = this.checkHeader(path.join(dir, '0.npy'), null);
    const [, H, W, C] = first.shape as [number, number, number, number];
    const res = this.config.resolution;
    if (typeof res === 'number' && (H !== res || W !== res)) {
      throw new FileFormatError(path.join(dir, '0.npy'), `frames are ${H}×${W} but config.json says resolution ${res}`);
    }
    const frameBytes = H * W * C * (first.dataBytes / (first.shape[0]! * H * W * C));
    const decodedFrame = H * W * C * 4;
    const segFrames = Math.max(1, Math.min(this.chunkSize, Math.floor(this.segmentBytes / decodedFrame)));
    const st: SplitState = {
      split,
      dir,
      frames,
      chunks,
      chunkSize: this.chunkSize,
      height: H,
      width: W,
      channels: C,
      dtype: first.dtype,
      checked: new Uint8Array(chunks),
      dataOffsets: new Float64Array(chunks),
      frameBytes,
      segFrames,
    };
    st.checked[0] = 1;
    st.dataOffsets[0] = first.dataOffset;
    this.splits.set(split, st);
    return st;
  }

  /** Check one chunk header: readable dtype, shape `(chunk_size, H, W, C)` like chunk 0, full size. */
  private checkHeader(file: string, like: SplitState | null): NpyHeader {
    const h = readNpyHeader(file);
    if (!READABLE.includes(h.dtype)) {
      throw new FileFormatError(file, `chunk dtype ${h.dtype} is not a frame type (expected <f8, <f4, <f2 or |u1)`);
    }
    if (h.shape.length !== 4 || h.shape[0] !== this.chunkSize) {
      throw new FileFormatError(file, `chunk shape (${h.shape.join(', ')}) is not (chunk_size=${this.chunkSize}, H, W, C)`);
    }
    if (like) {
      const want = [this.chunkSize, like.height, like.width, like.channels];
      if (h.shape.join(',') !== want.join(',') || h.dtype !== like.dtype) {
        throw new FileFormatError(file, `chunk is (${h.shape.join(', ')}) ${h.dtype} but chunk 0 is (${want.join(', ')}) ${like.dtype}`);
      }
    }
    return h;
  }

  /** Facts about a split (validates it on first call). */
  info(split: Split): SplitInfo {
    const { checked: _c, dataOffsets: _d, frameBytes: _f, segFrames: _s, ...info } = this.state(split);
    return info;
  }

  /** Check every chunk header and size of the given splits (default both). */
  validate(splits: readonly Split[] = ['train', 'test']): void {
    for (const split of splits) {
      const st = this.state(split);
      for (let k = 1; k < st.chunks; k++) {
        if (!st.checked[k]) {
          st.dataOffsets[k] = this.checkHeader(path.join(st.dir, `${k}.npy`), st).dataOffset;
          st.checked[k] = 1;
        }
      }
    }
  }

  /** Frames in a split. */
  frameCount(split: Split): number {
    return this.state(split).frames;
  }

  /** `[C, H, W]` of a split's frames. */
  frameShape(split: Split): [number, number, number] {
    const st = this.state(split);
    return [st.channels, st.height, st.width];
  }

  /** Path of chunk `k` to read from (the local mirror when DATA_ROOT is set, copied on demand). */
  private chunkFile(st: SplitState, k: number): string {
    const source = path.join(st.dir, `${k}.npy`);
    let file = source;
    if (this.mirror) {
      const rel = path.relative(path.resolve(this.root), path.resolve(source));
      file = path.join(this.localRoot, rel);
      ensureLocalCopy(source, file);
    }
    if (!st.checked[k]) {
      // (A mirror copy is byte-identical to its source, so either header describes both.)
      st.dataOffsets[k] = this.checkHeader(file, st).dataOffset;
      st.checked[k] = 1;
    }
    return file;
  }

  /** Decoded segment `j` of chunk `k`: `[L, C, H, W]` float32 in [-1, 1]. */
  private segment(st: SplitState, k: number, j: number): Float32Array {
    const key = `${st.split}/${k}/${j}`;
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit); // most recently used goes last
      return hit;
    }
    const f0 = j * st.segFrames;
    const n = Math.min(st.segFrames, this.chunkSize - f0);
    const file = this.chunkFile(st, k);
    const bytes = Buffer.allocUnsafe(n * st.frameBytes);
    const fd = fs.openSync(file, 'r');
    try {
      let got = 0;
      while (got < bytes.length) {
        const r = fs.readSync(fd, bytes, got, bytes.length - got, st.dataOffsets[k]! + f0 * st.frameBytes + got);
        if (r === 0) throw new FileFormatError(file, `truncated while reading frames ${f0}…${f0 + n - 1}`);
        got += r;
      }
    } finally {
      fs.closeSync(fd);
    }
    const out = decodeFrames(bytes, st.dtype, n, st.height, st.width, st.channels);
    this.cache.set(key, out);
    this.cacheUsed += out.byteLength;
    while (this.cacheUsed > this.cacheBytes && this.cache.size > 1) {
      const [oldKey, old] = this.cache.entries().next().value as [string, Float32Array];
      this.cache.delete(oldKey);
      this.cacheUsed -= old.byteLength;
    }
    return out;
  }

  /**
   * Frames `[start, start + count)` of a split (REFERENCE_SPEC §2.3 chunk arithmetic: frame `s`
   * lives in chunk `⌊s/K⌋` at offset `s mod K`; windows may cross any number of chunks).
   * @returns `[count, C, H, W]` float32 in [-1, 1].
   */
  readFrames(split: Split, start: number, count: number, out?: Float32Array): FrameBlock {
    const st = this.state(split);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 1 || start + count > st.frames) {
      throw new OptionError('frame range', `a range inside [0, ${st.frames}) of the ${split} stream`, [start, start + count]);
    }
    const frameLen = st.channels * st.height * st.width;
    const data = outputBuffer(count * frameLen, out);
    let t = start;
    while (t < start + count) {
      const k = Math.floor(t / this.chunkSize);
      const off = t - k * this.chunkSize;
      const j = Math.floor(off / st.segFrames);
      const seg = this.segment(st, k, j);
      const segStart = k * this.chunkSize + j * st.segFrames;
      const segLen = seg.length / frameLen;
      const take = Math.min(start + count - t, segStart + segLen - t);
      data.set(seg.subarray((t - segStart) * frameLen, (t - segStart + take) * frameLen), (t - start) * frameLen);
      t += take;
    }
    return { data, shape: [count, st.channels, st.height, st.width] };
  }

  /** Drop all cached segments. */
  clearCache(): void {
    this.cache.clear();
    this.cacheUsed = 0;
  }
}

/**
 * Decode `n` channel-last frames `(n, H, W, C)` of `dtype` into `[n, C, H, W]` float32 in [-1, 1]
 * (§2.2: uint8 divided by 255; then `2x − 1`).
 */
export function decodeFrames(bytes: Uint8Array, dtype: NpyDtype, n: number, H: number, W: number, C: number): Float32Array {
  const hw = H * W;
  const out = new Float32Array(n * C * hw);
  const count = n * hw * C;
  let src: ArrayLike<number>;
  const aligned = (size: number) => (bytes.byteOffset % size === 0 ? bytes : bytes.slice());
  switch (dtype) {
    case '|u1':
      for (let f = 0; f < n; f++) {
        for (let p = 0; p < hw; p++) {
          const s = (f * hw + p) * C;
          for (let c = 0; c < C; c++) out[(f * C + c) * hw + p] = U8_TO_UNIT[bytes[s + c]!]!;
        }
      }
      return out;
    case '<f8': {
      const b = aligned(8);
      src = new Float64Array(b.buffer, b.byteOffset, count);
      break;
    }
    case '<f4': {
      const b = aligned(4);
      src = new Float32Array(b.buffer, b.byteOffset, count);
      break;
    }
    case '<f2': {
      const b = aligned(2);
      const h = new Uint16Array(b.buffer, b.byteOffset, count);
      const f = new Float64Array(count);
      for (let i = 0; i < count; i++) f[i] = halfToFloat(h[i]!);
      src = f;
      break;
    }
    default:
      throw new FileFormatError('(frames)', `cannot decode frames of dtype ${dtype}`);
  }
  for (let f = 0; f < n; f++) {
    for (let p = 0; p < hw; p++) {
      const s = (f * hw + p) * C;
      for (let c = 0; c < C; c++) out[(f * C + c) * hw + p] = 2 * src[s + c]! - 1;
    }
  }
  return out;
}
