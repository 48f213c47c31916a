/**
 * Video frames as plain bytes, and the pixel-level operations of the visualisation scripts:
 * float → uint8 conversion, the red "observed" border, grid composition and labelled stacks.
 *
 * A {@link VideoU8} stores `T` RGB frames frame-major, channel-last: byte
 * `((t·H + y)·W + x)·3 + c`. This is the layout GIF/MP4/PNG writers consume; samples on disk are
 * channel-first `[T, 3, H, W]` uint8 (REFERENCE_SPEC §7.2) and are converted with
 * {@link videoFromU8TCHW}.
 */
import { OptionError } from '../util/errors.ts';
import { drawText } from './font5x7.ts';

/** `T` RGB frames of `H × W` pixels. Shape of `data`: `[T, H, W, 3]`, uint8. */
export interface VideoU8 {
  data: Uint8Array;
  T: number;
  H: number;
  W: number;
}

/** An RGB colour, each channel 0–255. */
export type Rgb = readonly [number, number, number];

export const RED: Rgb = [255, 0, 0];
export const WHITE: Rgb = [255, 255, 255];
export const BLACK: Rgb = [0, 0, 0];

function checkDims(name: string, dims: Record<string, number>): void {
  for (const [k, v] of Object.entries(dims)) {
    if (!Number.isInteger(v) || v < 0) throw new OptionError(`${name}.${k}`, 'a non-negative integer', v);
  }
}

/** A new video filled with `fill` (default black). */
export function createVideo(T: number, H: number, W: number, fill: Rgb = BLACK): VideoU8 {
  checkDims('createVideo', { T, H, W });
  const data = new Uint8Array(T * H * W * 3);
  if (fill[0] !== 0 || fill[1] !== 0 || fill[2] !== 0) {
    for (let i = 0; i < data.length; i += 3) {
      data[i] = fill[0];
      data[i + 1] = fill[1];
      data[i + 2] = fill[2];
    }
  }
  return { data, T, H, W };
}

/**
 * Map one model-space value in [-1, 1] to uint8 the way samples are saved (REFERENCE_SPEC §7.2,
 * §8.1): `floor((clamp(x, −1, 1) + 1) / 2 · 255)`. Faithful: each step is rounded to float32, as the
 * reference computes on float32 tensors, so boundary cases truncate identically.
 */
export function floatToU8(x: number): number {
  const f = Math.fround;
  let v = f(x);
  if (!(v >= -1)) v = -1; // NaN also maps to the bottom, like a clamp that then truncates 0
  else if (v > 1) v = 1;
  return Math.floor(f(f(f(v + 1) / 2) * 255));
}

/**
 * Map one value the way training-time sample logging does (REFERENCE_SPEC §6.9 step 6):
 * `clamp((x + 1) · 127.5, 0, 255)` then truncation, in float32.
 */
export function floatToU8Logging(x: number): number {
  const f = Math.fround;
  let v = f(f(f(x) + 1) * 127.5);
  if (!(v >= 0)) v = 0;
  else if (v > 255) v = 255;
  return Math.trunc(v);
}

/**
 * Convert a float video `[T, C, H, W]` in [-1, 1] (channel-first, as produced by the model) to a
 * {@link VideoU8}. `C` must be 3 (RGB) or 1 (grey, replicated). REFERENCE_SPEC §7.2 / §8.1.
 *
 * @param rule `'sample'` (default) = {@link floatToU8}; `'logging'` = {@link floatToU8Logging}.
 */
export function videoFromFloatTCHW(
  x: ArrayLike<number>,
  T: number,
  C: number,
  H: number,
  W: number,
  rule: 'sample' | 'logging' = 'sample',
): VideoU8 {
  checkDims('videoFromFloatTCHW', { T, C, H, W });
  if (C !== 3 && C !== 1) throw new OptionError('channels', '1 or 3 (decode latents first)', C);
  if (x.length !== T * C * H * W) throw new OptionError('x.length', `T·C·H·W = ${T * C * H * W}`, x.length);
  const conv = rule === 'sample' ? floatToU8 : floatToU8Logging;
  const out = createVideo(T, H, W);
  const d = out.data;
  const plane = H * W;
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < 3; c++) {
      const src = (t * C + (C === 1 ? 0 : c)) * plane;
      const dst = t * plane * 3 + c;
      for (let p = 0; p < plane; p++) d[dst + 3 * p] = conv(x[src + p]!);
    }
  }
  return out;
}

/** Convert channel-first uint8 `[T, C, H, W]` (C = 3, or 1 for grey) — the sample file layout — to a {@link VideoU8}. */
export function videoFromU8TCHW(x: Uint8Array, T: number, C: number, H: number, W: number): VideoU8 {
  checkDims('videoFromU8TCHW', { T, C, H, W });
  if (C !== 3 && C !== 1) throw new OptionError('channels', '1 or 3', C);
  if (x.length !== T * C * H * W) throw new OptionError('x.length', `T·C·H·W = ${T * C * H * W}`, x.length);
  const out = createVideo(T, H, W);
  const d = out.data;
  const plane = H * W;
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < 3; c++) {
      const src = (t * C + (C === 1 ? 0 : c)) * plane;
      const dst = t * plane * 3 + c;
      for (let p = 0; p < plane; p++) d[dst + 3 * p] = x[src + p]!;
    }
  }
  return out;
}

/** The inverse of {@link videoFromU8TCHW}: channel-first `[T, 3, H, W]` uint8. */
export function videoToU8TCHW(v: VideoU8): Uint8Array {
  const plane = v.H * v.W;
  const out = new Uint8Array(v.T * 3 * plane);
  for (let t = 0; t < v.T; t++) {
    for (let c = 0; c < 3; c++) {
      const dst = (t * 3 + c) * plane;
      const src = t * plane * 3 + c;
      for (let p = 0; p < plane; p++) out[dst + p] = v.data[src + 3 * p]!;
    }
  }
  return out;
}

/** Frame `t` as a view (no copy) of `H × W × 3` bytes. */
export function frameAt(v: VideoU8, t: number): Uint8Array {
  const n = v.H * v.W * 3;
  return v.data.subarray(t * n, (t + 1) * n);
}

/** All frames as views, in order — the input of `writeGif` / `writeMp4`. */
export function videoFrames(v: VideoU8): Uint8Array[] {
  return Array.from({ length: v.T }, (_, t) => frameAt(v, t));
}

/** A deep copy. */
export function cloneVideo(v: VideoU8): VideoU8 {
  return { data: v.data.slice(), T: v.T, H: v.H, W: v.W };
}

/**
 * Mark frames as observed (in place): row 1, row H−2, column 1 and column W−2 are set to red
 * (255, 0, 0) — a one-pixel rectangle inset by one pixel (REFERENCE_SPEC §8.1, §6.9 step 6).
 * Every index must lie in `[0, T)` (use {@link firstFrames} for "the first n_obs frames").
 *
 * @returns the same video, for chaining.
 */
export function markObserved(v: VideoU8, frameIdx: Iterable<number>, color: Rgb = RED): VideoU8 {
  const { H, W } = v;
  if (H < 3 || W < 3) return v; // no inset row/column exists
  for (const t of frameIdx) {
    if (!Number.isInteger(t) || t < 0 || t >= v.T) throw new OptionError('frameIdx', `integers in [0, ${v.T})`, t);
    const f = frameAt(v, t);
    const set = (y: number, x: number) => {
      const o = (y * W + x) * 3;
      f[o] = color[0];
      f[o + 1] = color[1];
      f[o + 2] = color[2];
    };
    for (let x = 0; x < W; x++) {
      set(1, x);
      set(H - 2, x);
    }
    for (let y = 0; y < H; y++) {
      set(y, 1);
      set(y, W - 2);
    }
  }
  return v;
}

/** `[0, 1, …, n−1]` clipped to `T` — convenience for "the first n_obs frames". */
export function firstFrames(n: number, T: number): number[] {
  return Array.from({ length: Math.max(0, Math.min(n, T)) }, (_, i) => i);
}

/** Options for {@link vstack} / {@link hstack} / {@link composeGrid}. */
export interface StackOptions {
  /** Pixels of separator between neighbours (default 0, as the reference's plain concatenation). */
  separator?: number;
  /** Separator colour (default white). */
  separatorColor?: Rgb;
}

function checkSameT(videos: readonly VideoU8[], what: string): number {
  if (videos.length === 0) throw new OptionError(what, 'at least one video', 0);
  const T = videos[0]!.T;
  for (const v of videos) if (v.T !== T) throw new OptionError(`${what} frame counts`, `all equal to ${T}`, v.T);
  return T;
}

/** Copy `src` into `dst` with its top-left corner at (`x0`, `y0`); `src` must fit. */
function blit(dst: VideoU8, src: VideoU8, x0: number, y0: number): void {
  const row = src.W * 3;
  for (let t = 0; t < src.T; t++) {
    for (let y = 0; y < src.H; y++) {
      const s = ((t * src.H + y) * src.W) * 3;
      const d = ((t * dst.H + y0 + y) * dst.W + x0) * 3;
      dst.data.set(src.data.subarray(s, s + row), d);
    }
  }
}

/** Stack videos top to bottom (along H). All must share T and W. */
export function vstack(videos: readonly VideoU8[], opts: StackOptions = {}): VideoU8 {
  const T = checkSameT(videos, 'vstack');
  const sep = opts.separator ?? 0;
  const W = videos[0]!.W;
  for (const v of videos) if (v.W !== W) throw new OptionError('vstack widths', `all equal to ${W}`, v.W);
  const H = videos.reduce((s, v) => s + v.H, 0) + sep * (videos.length - 1);
  const out = createVideo(T, H, W, opts.separatorColor ?? WHITE);
  let y = 0;
  for (const v of videos) {
    blit(out, v, 0, y);
    y += v.H + sep;
  }
  return out;
}

/** Place videos left to right (along W). All must share T and H. */
export function hstack(videos: readonly VideoU8[], opts: StackOptions = {}): VideoU8 {
  const T = checkSameT(videos, 'hstack');
  const sep = opts.separator ?? 0;
  const H = videos[0]!.H;
  for (const v of videos) if (v.H !== H) throw new OptionError('hstack heights', `all equal to ${H}`, v.H);
  const W = videos.reduce((s, v) => s + v.W, 0) + sep * (videos.length - 1);
  const out = createVideo(T, H, W, opts.separatorColor ?? WHITE);
  let x = 0;
  for (const v of videos) {
    blit(out, v, x, 0);
    x += v.W + sep;
  }
  return out;
}

/**
 * The visual grid of `video_make_mp4.py` (REFERENCE_SPEC §8.1): `columns[d]` holds the videos of
 * data index `d` in order `[gt?, seed0, seed1, …]`; each column is stacked vertically and the
 * columns are placed side by side. All videos must have equal T (and equal H/W within the
 * stacking rules). Separators default to 0 px, which reproduces the reference exactly.
 *
 * Shape: each input `[T, H, W, 3]` → `[T, n_rows·H, n_cols·W, 3]` (plus separators).
 */
export function composeGrid(columns: readonly (readonly VideoU8[])[], opts: StackOptions = {}): VideoU8 {
  if (columns.length === 0) throw new OptionError('composeGrid columns', 'at least one data index', 0);
  return hstack(
    columns.map((col) => vstack(col, opts)),
    opts,
  );
}

/** Options for {@link stackWithLabels}. */
export interface LabelStackOptions {
  /** White pixels between runs (default 2, REFERENCE_SPEC §8.6). */
  separator?: number;
  /** White margin on the right of every panel (default 50). */
  margin?: number;
  /** Text offset inside the margin, `[x, y]` (default `[5, 5]`). */
  textOffset?: readonly [number, number];
  /** Frame count of the result (default: the first video's T, as the reference reads the first GIF). */
  T?: number;
}

/**
 * The summary video of `collect_results.py` (REFERENCE_SPEC §8.6): runs stacked vertically with
 * 2-px white separators; each panel gets a 50-px white margin on its right holding the run's
 * nickname in black, drawn with the built-in 5×7 font at (5, 5) of the margin.
 *
 * Interpretation (the reference's exact drawing code is not available): panels narrower than the
 * widest are padded with white on the right; a run with fewer frames than the result repeats its
 * last frame; text that does not fit is clipped.
 */
export function stackWithLabels(videos: readonly VideoU8[], labels: readonly string[], opts: LabelStackOptions = {}): VideoU8 {
  if (videos.length === 0) throw new OptionError('stackWithLabels videos', 'at least one video', 0);
  if (labels.length !== videos.length) throw new OptionError('labels', `${videos.length} labels (one per video)`, labels.length);
  const sep = opts.separator ?? 2;
  const margin = opts.margin ?? 50;
  const [tx, ty] = opts.textOffset ?? [5, 5];
  const T = opts.T ?? videos[0]!.T;
  const maxW = Math.max(...videos.map((v) => v.W));
  const W = maxW + margin;
  const H = videos.reduce((s, v) => s + v.H, 0) + sep * (videos.length - 1);
  const out = createVideo(T, H, W, WHITE);
  let y0 = 0;
  videos.forEach((v, i) => {
    const row = v.W * 3;
    for (let t = 0; t < T; t++) {
      const st = v.T === 0 ? -1 : Math.min(t, v.T - 1);
      if (st >= 0) {
        for (let y = 0; y < v.H; y++) {
          const s = (st * v.H + y) * v.W * 3;
          out.data.set(v.data.subarray(s, s + row), ((t * H + y0 + y) * W) * 3);
        }
      }
      // Draw the label into a view of this panel only, so it is clipped to the panel.
      const panel = out.data.subarray(((t * H + y0) * W) * 3, ((t * H + y0 + v.H) * W) * 3);
      drawText(panel, W, v.H, maxW + tx, ty, labels[i]!, BLACK);
    }
    y0 += v.H + sep;
  });
  return out;
}
