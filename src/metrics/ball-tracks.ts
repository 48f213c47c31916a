/**
 * Bouncing-ball trajectory metrics (REFERENCE_SPEC §8.4, `scripts/video_minade.py`): detect the
 * balls in every frame by template matching, link detections into tracks, and compare the tracks
 * of generated videos with those of the ground truth — minADE, colour accuracy and the KL
 * divergence of the colour-transition statistics from the simulator's true ones (§1.1.4).
 *
 * Videos are model-space float `[T, 3, H, W]` in [-1, 1], channel-first (samples stored as uint8
 * are mapped with `x = −1 + 2·u/255` first). Locations are `[x, y]` = (column, row) of the top-left
 * corner of the best-matching 8 × 8 patch.
 */
import { FlexvidError, OptionError } from '../util/errors.ts';

/** A float video `[T, 3, H, W]` in [-1, 1] (channel-first). */
export interface FloatVideo {
  data: ArrayLike<number>;
  T: number;
  H: number;
  W: number;
}

/** Kernel (and patch) side in pixels. */
export const KERNEL_SIZE = 8;
/** Colour ids, as the kernel order: 0 red, 1 yellow, 2 green (REFERENCE_SPEC §1.1.4 palette). */
export const BALL_COLORS = ['red', 'yellow', 'green'] as const;
/** The simulator's colour-transition matrix: red → yellow/green ½ each; yellow, green → red. */
export const TRUE_TRANSITIONS: readonly number[] = [0, 0.5, 0.5, 1, 0, 0, 1, 0, 0];

const PALETTE: readonly (readonly [number, number, number])[] = [
  [1, 0, 0],
  [1, 1, 0],
  [0, 1, 0],
];

/**
 * The three 8 × 8 RGB detection kernels in model space, shape `[3 kernels, 3, 8, 8]` (float64).
 * Grid coordinates `−1.25 + (k + 0.5)·0.3125`, bump `b = exp(−((I² + J²)/1.2²)⁴)`; red `(b,0,0)`,
 * yellow `(b,b,0)`, green `(0,b,0)`, mapped to [-1, 1] by `2k − 1` (REFERENCE_SPEC §8.4).
 *
 * `blueShift` (non-stationary balls, §1.1.4 `--color_shift`) is added to the blue channel of every
 * kernel pixel *after* the mapping to [-1, 1]. Interpretation: the spec states the constant is
 * added to the blue channel of all kernels without fixing the space; we follow its order of
 * operations. See {@link colorShiftOffset} for the per-video constant.
 */
export function ballKernels(blueShift = 0): Float64Array {
  const K = KERNEL_SIZE;
  const out = new Float64Array(3 * 3 * K * K);
  const coord = (k: number) => -1.25 + (k + 0.5) * 0.3125;
  for (let kk = 0; kk < 3; kk++) {
    for (let c = 0; c < 3; c++) {
      for (let j = 0; j < K; j++) {
        for (let i = 0; i < K; i++) {
          const I = coord(i);
          const J = coord(j);
          const b = Math.exp(-(((I * I + J * J) / (1.2 * 1.2)) ** 4));
          let v = 2 * (PALETTE[kk]![c]! * b) - 1;
          if (c === 2) v += blueShift;
          out[((kk * 3 + c) * K + j) * K + i] = v;
        }
      }
    }
  }
  return out;
}

/**
 * The per-video blue offset of the detection kernels for non-stationary balls (REFERENCE_SPEC §8.4):
 * - `legacy` (177f6e5): `index / nData`;
 * - `spaced` ([c6f25f7], Spaced eval dataset): `(lo + index·spacing) / totalFrames`;
 * - `chunked` ([c6f25f7], Chunked eval dataset): `(lo + index·T) / totalFrames`.
 */
export function colorShiftOffset(
  o:
    | { scheme: 'legacy'; index: number; nData: number }
    | { scheme: 'spaced'; index: number; lo: number; spacing: number; totalFrames: number }
    | { scheme: 'chunked'; index: number; lo: number; T: number; totalFrames: number },
): number {
  switch (o.scheme) {
    case 'legacy':
      return o.index / o.nData;
    case 'spaced':
      return (o.lo + o.index * o.spacing) / o.totalFrames;
    case 'chunked':
      return (o.lo + o.index * o.T) / o.totalFrames;
    default:
      throw new OptionError('scheme', "'legacy', 'spaced' or 'chunked'", (o as { scheme: unknown }).scheme);
  }
}

/** One detected ball. */
export interface Detection {
  /** Column of the patch's top-left corner. */
  x: number;
  /** Row of the patch's top-left corner. */
  y: number;
  /** Kernel index: 0 red, 1 yellow, 2 green. */
  color: number;
  /** L2 distance between kernel and patch (over 3 × 8 × 8 values). */
  dist: number;
}

/**
 * Detect `nBalls` balls in frame `t` of `video` (REFERENCE_SPEC §8.4 "Detection"):
 * for each kernel, the L2 distance to every 8 × 8 patch (stride 1, no padding); its `4·nBalls`
 * closest patches; of those, the best plus every one more than 4 px (Euclidean) from the best;
 * then all kernels' survivors merged by distance and the `nBalls` closest kept.
 * Ties in distance go to the earlier patch (row-major) and the earlier kernel.
 */
export function detectBalls(video: FloatVideo, t: number, nBalls: number, kernels: Float64Array = ballKernels()): Detection[] {
  const { H, W } = video;
  const K = KERNEL_SIZE;
  if (H < K || W < K) throw new OptionError('frame size', `at least ${K}×${K}`, `${H}×${W}`);
  const nCand = 4 * nBalls;
  const plane = H * W;
  const base = t * 3 * plane;
  const px = video.data;
  const merged: Detection[] = [];
  for (let kk = 0; kk < 3; kk++) {
    const kb = kk * 3 * K * K;
    // Top-nCand by (dist², position), kept sorted by insertion.
    const best: { d2: number; x: number; y: number }[] = [];
    for (let y = 0; y + K <= H; y++) {
      for (let x = 0; x + K <= W; x++) {
        let d2 = 0;
        for (let c = 0; c < 3; c++) {
          for (let j = 0; j < K; j++) {
            const row = base + c * plane + (y + j) * W + x;
            const krow = kb + (c * K + j) * K;
            for (let i = 0; i < K; i++) {
              const diff = px[row + i]! - kernels[krow + i]!;
              d2 += diff * diff;
            }
          }
        }
        if (best.length === nCand && !(d2 < best[nCand - 1]!.d2)) continue;
        let pos = best.length;
        while (pos > 0 && d2 < best[pos - 1]!.d2) pos--;
        best.splice(pos, 0, { d2, x, y });
        if (best.length > nCand) best.pop();
      }
    }
    const top = best[0]!;
    for (const [r, cand] of best.entries()) {
      if (r === 0 || Math.hypot(cand.x - top.x, cand.y - top.y) > 4) merged.push({ x: cand.x, y: cand.y, color: kk, dist: Math.sqrt(cand.d2) });
    }
  }
  merged.sort((a, b) => a.dist - b.dist); // stable: earlier kernel wins ties
  if (merged.length < nBalls) throw new FlexvidError(`ball detection: only ${merged.length} candidates for ${nBalls} balls in frame ${t}`);
  return merged.slice(0, nBalls);
}

/** Ball tracks of one video. */
export interface BallTracks {
  T: number;
  nBalls: number;
  /** `[T, nBalls, 2]`: `[x, y]` per ball and frame. */
  pos: Float64Array;
  /** `[T, nBalls]`: colour id per ball and frame. */
  color: Uint8Array;
}

/**
 * Detect and link balls over all frames (REFERENCE_SPEC §8.4 "Track alignment"): frame 0's
 * detections sorted lexicographically by `[x, y]`; in each later frame, balls in track order
 * greedily take the nearest (Euclidean) detection not yet taken.
 */
export function trackBalls(video: FloatVideo, nBalls = 2, kernels: Float64Array = ballKernels()): BallTracks {
  const { T, H, W } = video;
  if (video.data.length !== T * 3 * H * W) throw new OptionError('video.data.length', `T·3·H·W = ${T * 3 * H * W}`, video.data.length);
  const pos = new Float64Array(T * nBalls * 2);
  const color = new Uint8Array(T * nBalls);
  for (let t = 0; t < T; t++) {
    const dets = detectBalls(video, t, nBalls, kernels);
    let order: Detection[];
    if (t === 0) {
      order = [...dets].sort((a, b) => a.x - b.x || a.y - b.y);
    } else {
      const used = new Array<boolean>(dets.length).fill(false);
      order = [];
      for (let b = 0; b < nBalls; b++) {
        const px = pos[((t - 1) * nBalls + b) * 2]!;
        const py = pos[((t - 1) * nBalls + b) * 2 + 1]!;
        let pick = -1;
        let pickD = Infinity;
        dets.forEach((d, j) => {
          if (used[j]) return;
          const dd = Math.hypot(d.x - px, d.y - py);
          if (dd < pickD) {
            pickD = dd;
            pick = j;
          }
        });
        used[pick] = true;
        order.push(dets[pick]!);
      }
    }
    order.forEach((d, b) => {
      pos[(t * nBalls + b) * 2] = d.x;
      pos[(t * nBalls + b) * 2 + 1] = d.y;
      color[t * nBalls + b] = d.color;
    });
  }
  return { T, nBalls, pos, color };
}

function checkPair(gt: BallTracks, s: BallTracks): void {
  if (gt.T !== s.T || gt.nBalls !== s.nBalls) throw new OptionError('sample tracks', `T = ${gt.T}, nBalls = ${gt.nBalls} (as the ground truth)`, `T = ${s.T}, nBalls = ${s.nBalls}`);
}

/** Average displacement error over frames `t ≥ nObs` and balls: mean ‖p_gt − p_s‖₂ (REFERENCE_SPEC §8.4). NaN if no frame is generated. */
export function averageDisplacementError(gt: BallTracks, sample: BallTracks, nObs: number): number {
  checkPair(gt, sample);
  let sum = 0;
  let count = 0;
  for (let t = Math.max(0, nObs); t < gt.T; t++) {
    for (let b = 0; b < gt.nBalls; b++) {
      const o = (t * gt.nBalls + b) * 2;
      sum += Math.hypot(gt.pos[o]! - sample.pos[o]!, gt.pos[o + 1]! - sample.pos[o + 1]!);
      count++;
    }
  }
  return sum / count;
}

/** Share of (frame ≥ nObs, ball) pairs whose colour matches the ground truth (REFERENCE_SPEC §8.4). */
export function colorAccuracy(gt: BallTracks, sample: BallTracks, nObs: number): number {
  checkPair(gt, sample);
  let hits = 0;
  let count = 0;
  for (let t = Math.max(0, nObs); t < gt.T; t++) {
    for (let b = 0; b < gt.nBalls; b++) {
      if (gt.color[t * gt.nBalls + b] === sample.color[t * gt.nBalls + b]) hits++;
      count++;
    }
  }
  return hits / count;
}

/**
 * Colour-transition counts `[3, 3]` (row = previous colour, column = new colour) of one track set:
 * for each ball and `t = 1 … T−1` with `t ≥ nObs`, a change of colour between `t−1` and `t` counts
 * once (REFERENCE_SPEC §8.4).
 */
export function transitionCounts(tracks: BallTracks, nObs: number): Float64Array {
  const m = new Float64Array(9);
  for (let t = Math.max(1, nObs); t < tracks.T; t++) {
    for (let b = 0; b < tracks.nBalls; b++) {
      const prev = tracks.color[(t - 1) * tracks.nBalls + b]!;
      const curr = tracks.color[t * tracks.nBalls + b]!;
      if (prev !== curr) m[prev * 3 + curr]! += 1;
    }
  }
  return m;
}

/** Divide each row of a `[3, 3]` matrix by its sum; an all-zero row stays zero (0/0 → 0). */
export function rowNormalize(m: ArrayLike<number>): Float64Array {
  const out = new Float64Array(9);
  for (let r = 0; r < 3; r++) {
    const s = m[3 * r]! + m[3 * r + 1]! + m[3 * r + 2]!;
    for (let c = 0; c < 3; c++) out[3 * r + c] = s === 0 ? 0 : m[3 * r + c]! / s;
  }
  return out;
}

/**
 * Mean row-wise KL divergence `(1/3) Σ_rows KL(P_true,row ‖ P_model,row)` (natural log), with
 * terms where `p = 0` skipped and `+∞` when `q = 0 < p` (REFERENCE_SPEC §8.4).
 */
export function transitionKL(pModel: ArrayLike<number>, pTrue: ArrayLike<number> = TRUE_TRANSITIONS): number {
  let total = 0;
  for (let i = 0; i < 9; i++) {
    const p = pTrue[i]!;
    const q = pModel[i]!;
    if (p === 0) continue;
    if (q === 0) return Infinity;
    total += p * Math.log(p / q);
  }
  return total / 3;
}

/** Per-video results of {@link evaluateBallTracks}. */
export interface BallVideoResult {
  /** ADE of each seed. */
  ade: number[];
  /** Colour accuracy of each seed. */
  accuracy: number[];
  minADE: number;
  maxAccuracy: number;
}

/** Aggregate results of {@link evaluateBallTracks} — the three numbers written to the eval dir. */
export interface BallMetrics {
  /** Mean over videos of the minimum ADE over seeds → `minADE-<N>.txt`. */
  minADE: number;
  /** Mean over videos of the maximum colour accuracy over seeds → `color-acc-<N>.txt`. */
  colorAccuracy: number;
  /** Row-wise KL of the true transitions from the model's → `trans-kl-<N>.txt`. */
  transKL: number;
  /** The model's row-normalised transition matrix `[3, 3]`. */
  transitions: Float64Array;
  perVideo: BallVideoResult[];
}

/**
 * The aggregation of `video_minade.py` (REFERENCE_SPEC §8.4): `gt[v]` are the ground-truth
 * tracks of video `v`, `samples[v][s]` the tracks of its seed `s` (every video needs the same
 * number of seeds). Transition statistics: per (video, seed) counts are row-normalised, summed
 * over videos, averaged over seeds and row-normalised again before the KL.
 */
export function evaluateBallTracks(gt: readonly BallTracks[], samples: readonly (readonly BallTracks[])[], nObs: number): BallMetrics {
  if (gt.length === 0) throw new OptionError('videos', 'at least one', 0);
  if (samples.length !== gt.length) throw new OptionError('samples', `one seed list per video (${gt.length})`, samples.length);
  const nSeeds = samples[0]!.length;
  if (nSeeds === 0 || samples.some((s) => s.length !== nSeeds)) throw new OptionError('seeds per video', `the same positive count for every video (${nSeeds})`, samples.map((s) => s.length));
  const perSeed = Array.from({ length: nSeeds }, () => new Float64Array(9));
  const perVideo: BallVideoResult[] = gt.map((g, v) => {
    const ade = samples[v]!.map((s) => averageDisplacementError(g, s, nObs));
    const accuracy = samples[v]!.map((s) => colorAccuracy(g, s, nObs));
    samples[v]!.forEach((s, k) => {
      const m = rowNormalize(transitionCounts(s, nObs));
      for (let i = 0; i < 9; i++) perSeed[k]![i]! += m[i]!;
    });
    return { ade, accuracy, minADE: Math.min(...ade), maxAccuracy: Math.max(...accuracy) };
  });
  const mean = new Float64Array(9);
  for (const m of perSeed) for (let i = 0; i < 9; i++) mean[i]! += m[i]! / nSeeds;
  const transitions = rowNormalize(mean);
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  return {
    minADE: avg(perVideo.map((r) => r.minADE)),
    colorAccuracy: avg(perVideo.map((r) => r.maxAccuracy)),
    transKL: transitionKL(transitions),
    transitions,
    perVideo,
  };
}

/**
 * Convenience: track every video with the same kernels (or per-video `blueShifts`) and evaluate.
 * `gt[v]` and `samples[v][s]` are `[T, 3, H, W]` float videos in [-1, 1].
 */
export function evaluateBallVideos(
  gt: readonly FloatVideo[],
  samples: readonly (readonly FloatVideo[])[],
  opts: { nObs: number; nBalls?: number; blueShifts?: readonly number[] },
): BallMetrics {
  const nBalls = opts.nBalls ?? 2;
  const kernelsFor = (v: number) => ballKernels(opts.blueShifts?.[v] ?? 0);
  const gtTracks = gt.map((g, v) => trackBalls(g, nBalls, kernelsFor(v)));
  const sampleTracks = samples.map((seeds, v) => {
    const k = kernelsFor(v);
    return seeds.map((s) => trackBalls(s, nBalls, k));
  });
  return evaluateBallTracks(gtTracks, sampleTracks, opts.nObs);
}

/** Map a stored uint8 sample `[T, 3, H, W]` to model space, `x = −1 + 2·u/255` (REFERENCE_SPEC §8.2 step 2). */
export function u8VideoToFloat(u8: Uint8Array, T: number, H: number, W: number): FloatVideo {
  if (u8.length !== T * 3 * H * W) throw new OptionError('sample length', `T·3·H·W = ${T * 3 * H * W}`, u8.length);
  const data = new Float32Array(u8.length);
  // float32 steps, as the reference computes on float32 tensors
  for (let i = 0; i < u8.length; i++) data[i] = Math.fround(-1 + Math.fround((2 * u8[i]!) / 255));
  return { data, T, H, W };
}
