/**
 * Training-time frame-subset sampling, observation/latent masks and the gathering plan of
 * `prepare_training_batch` (REFERENCE_SPEC §6.4), plus the fixed masks of the training-time
 * sample logging (§6.9). Pure index arithmetic on plain arrays; the caller gathers frames.
 *
 * Shapes: a batch of B windows of T frames; masks are `[B, T]` (flat, row-major, 0/1);
 * the gathering plan is `[B, K]` with K = max_frames (padding on) or the largest selection.
 *
 * RNG: one {@link Rng} for everything. The reference mixes torch and NumPy generators, so draws
 * are not bit-identical to reference runs; the distributions are.
 */
import { OptionError } from '../util/errors.ts';
import type { Rng } from '../util/rng.ts';

/** `--masking-mode` values. */
export type MaskingMode = 'autoregressive' | 'none' | 'flexible' | 'autoflex';
export const MASKING_MODES: readonly MaskingMode[] = ['autoregressive', 'none', 'flexible', 'autoflex'];

/** Observation and latent masks of a batch, `[B, T]` flat (1 = frame in the set). */
export interface FrameMasks {
  B: number;
  T: number;
  obs: Uint8Array;
  latent: Uint8Array;
}

/** Result of {@link planGather}: per video, K slots. All arrays are `[B, K]` flat. */
export interface GatherPlan {
  B: number;
  K: number;
  /** Frame position (0 … T−1) within the window gathered into each slot. */
  positions: Int32Array;
  /** Observation mask per slot. */
  obs: Float32Array;
  /** Latent mask per slot. */
  latent: Float32Array;
  /** Absolute stream frame index per slot: `absoluteIndexMap[b, positions[b,k]]` (or the position). */
  frameIndices: Float64Array;
}

/**
 * `sample_some_indices(N, T)` (§6.4): a random, roughly evenly spaced set of frame positions.
 * 1. s ~ U{1 … N};  2. scale = exp(u · ln(T / (s − 0.999))), u ~ U(0,1) (log-uniform in [1, max_scale]);
 * 3. pos ~ U(0, T − scale·(s−1));  4. indices ⌊pos + i·scale⌋, i = 0 … s−1.
 * @returns strictly increasing integers in [0, T), 1 ≤ length ≤ N
 */
export function sampleSomeIndices(N: number, T: number, rng: Rng): number[] {
  if (!Number.isSafeInteger(N) || N < 1) throw new OptionError('N', 'a positive integer', N);
  if (!Number.isSafeInteger(T) || T < 1) throw new OptionError('T', 'a positive integer', T);
  // The reference warns and retries when an index falls outside [0, T) (impossible in exact
  // arithmetic); we retry too, with a bound so a broken RNG cannot loop forever.
  for (let attempt = 0; attempt < 1000; attempt++) {
    const s = rng.randint(1, N + 1);
    const maxScale = T / (s - 0.999);
    const scale = Math.exp(rng.random() * Math.log(maxScale));
    const pos = rng.random() * (T - scale * (s - 1));
    const out: number[] = new Array(s);
    let ok = true;
    for (let i = 0; i < s; i++) {
      const v = Math.floor(pos + i * scale);
      if (v < 0 || v >= T || (i > 0 && v <= out[i - 1]!)) ok = false;
      out[i] = v;
    }
    if (ok) return out;
  }
  throw new Error('sampleSomeIndices: 1000 consecutive out-of-range draws (broken RNG?)');
}

/** Options of {@link sampleFrameMasks}. */
export interface MaskOptions {
  /**
   * `autoflex` stop test. Faithful (default false): compare the *whole* draw's size with the room
   * left (the reference's "already selected" test never matches, §10.2 #22). Corrected (true):
   * count only new indices, stop when they exceed the room or there is no room and nothing new.
   */
  autoflexCountNewOnly?: boolean;
}

/**
 * Sample observation/latent masks for a batch (§6.4). `N = min(T, maxFrames)`.
 * - `autoregressive`: frames [0, ⌊T/2⌋) observed, the rest latent;
 * - `none`: all frames latent;
 * - `flexible`: latent ← one draw; then repeatedly pick obs or latent with probability ½ and add a
 *   new draw (minus frames already used) until it would not fit (`|I| > room`, or `|I| = room = 0`);
 * - `autoflex`: union of draws until one does not fit; sorted, the first ⌊N/2⌋ observed, rest latent.
 */
export function sampleFrameMasks(mode: MaskingMode, B: number, T: number, maxFrames: number, rng: Rng, options: MaskOptions = {}): FrameMasks {
  checkMode(mode);
  if (!Number.isSafeInteger(B) || B < 0) throw new OptionError('B', 'a non-negative integer', B);
  if (!Number.isSafeInteger(T) || T < 1) throw new OptionError('--T', 'a positive integer', T);
  if (!Number.isSafeInteger(maxFrames) || maxFrames < 1) throw new OptionError('--max-frames', 'a positive integer', maxFrames);
  const obs = new Uint8Array(B * T);
  const latent = new Uint8Array(B * T);
  const N = Math.min(T, maxFrames);
  for (let b = 0; b < B; b++) {
    const row = b * T;
    switch (mode) {
      case 'autoregressive': {
        const h = Math.floor(T / 2);
        for (let t = 0; t < T; t++) (t < h ? obs : latent)[row + t] = 1;
        break;
      }
      case 'none':
        latent.fill(1, row, row + T);
        break;
      case 'flexible': {
        const lat = new Set(sampleSomeIndices(N, T, rng));
        const ob = new Set<number>();
        for (;;) {
          const target = rng.random() < 0.5 ? ob : lat;
          const draw = sampleSomeIndices(N, T, rng).filter((i) => !ob.has(i) && !lat.has(i));
          const room = N - ob.size - lat.size;
          if (draw.length > room || (draw.length === 0 && room === 0)) break;
          for (const i of draw) target.add(i);
        }
        for (const i of ob) obs[row + i] = 1;
        for (const i of lat) latent[row + i] = 1;
        break;
      }
      case 'autoflex': {
        const sel = new Set<number>();
        for (;;) {
          const draw = sampleSomeIndices(N, T, rng);
          const size = options.autoflexCountNewOnly ? draw.filter((i) => !sel.has(i)).length : draw.length; // faithful: whole draw
          const room = N - sel.size;
          if (size > room || (size === 0 && room === 0)) break;
          for (const i of draw) sel.add(i);
        }
        const sorted = [...sel].sort((x, y) => x - y);
        const nObs = Math.floor(N / 2);
        sorted.forEach((i, k) => ((k < nObs ? obs : latent)[row + i] = 1));
        break;
      }
    }
  }
  return { B, T, obs, latent };
}

/** Options of {@link planGather}. */
export interface GatherOptions {
  /** `--max-frames`. */
  maxFrames: number;
  /** `--pad-with-random-frames` (reference default true). */
  padWithRandomFrames: boolean;
  /** RNG for the random padding positions (needed when padding is on). */
  rng?: Rng;
  /** `[B, T]` absolute stream frame numbers of each window; default: relative positions. */
  absoluteIndexMap?: ArrayLike<number>;
}

/**
 * The gathering plan of `prepare_training_batch` (§6.4). With `any = obs ∪ latent`:
 * K = maxFrames if padding is on, else max_b |any_b|; slots 0 … n_b−1 hold the selected positions
 * in increasing order, the remaining slots random positions U{0…T−1} (padding on) or 0 (off).
 * Masks are read at the gathered positions, so a padding slot that hits a selected frame
 * inherits its mask value (faithful, §10.2 #23). Throws OptionError if a selection exceeds K.
 */
export function planGather(masks: FrameMasks, options: GatherOptions): GatherPlan {
  const { B, T, obs, latent } = masks;
  const { maxFrames, padWithRandomFrames, rng, absoluteIndexMap } = options;
  if (absoluteIndexMap !== undefined && absoluteIndexMap.length !== B * T) {
    throw new OptionError('absoluteIndexMap', `${B * T} entries ([B, T] = [${B}, ${T}])`, `${absoluteIndexMap.length} entries`);
  }
  const selected: number[][] = [];
  let maxN = 0;
  for (let b = 0; b < B; b++) {
    const sel: number[] = [];
    for (let t = 0; t < T; t++) if (obs[b * T + t] || latent[b * T + t]) sel.push(t);
    selected.push(sel);
    maxN = Math.max(maxN, sel.length);
  }
  const K = padWithRandomFrames ? maxFrames : maxN;
  if (maxN > K) {
    throw new OptionError('--max-frames', `at least the number of selected frames (${maxN} of T = ${T}; autoregressive/none select all T frames, so T must be ≤ --max-frames with --pad-with-random-frames)`, maxFrames);
  }
  if (padWithRandomFrames && !rng && selected.some((s) => s.length < K)) throw new OptionError('rng', 'an RNG for the random padding frames', undefined);
  const positions = new Int32Array(B * K);
  const pObs = new Float32Array(B * K);
  const pLat = new Float32Array(B * K);
  const frameIndices = new Float64Array(B * K);
  for (let b = 0; b < B; b++) {
    const sel = selected[b]!;
    for (let k = 0; k < K; k++) {
      const p = k < sel.length ? sel[k]! : padWithRandomFrames ? rng!.randint(0, T) : 0;
      const o = b * K + k;
      positions[o] = p;
      pObs[o] = obs[b * T + p]!;
      pLat[o] = latent[b * T + p]!;
      frameIndices[o] = absoluteIndexMap ? absoluteIndexMap[b * T + p]! : p;
    }
  }
  return { B, K, positions, obs: pObs, latent: pLat, frameIndices };
}

/** Options of {@link prepareTrainingBatch}. */
export interface TrainingBatchOptions extends MaskOptions {
  mode: MaskingMode;
  B: number;
  T: number;
  maxFrames: number;
  padWithRandomFrames: boolean;
  rng: Rng;
  absoluteIndexMap?: ArrayLike<number>;
}

/**
 * Masks + gathering plan for one optimisation step (§6.4, §6.5 step 2). Validates up front that
 * `autoregressive`/`none` with padding have T ≤ maxFrames (the reference fails later).
 */
export function prepareTrainingBatch(o: TrainingBatchOptions): GatherPlan & { masks: FrameMasks } {
  checkMode(o.mode);
  if ((o.mode === 'autoregressive' || o.mode === 'none') && o.padWithRandomFrames && o.T > o.maxFrames) {
    throw new OptionError('--max-frames', `≥ T = ${o.T} with --masking-mode=${o.mode} and --pad-with-random-frames (all T frames are used)`, o.maxFrames);
  }
  const masks = sampleFrameMasks(o.mode, o.B, o.T, o.maxFrames, o.rng, o);
  const plan = planGather(masks, { maxFrames: o.maxFrames, padWithRandomFrames: o.padWithRandomFrames, rng: o.rng, absoluteIndexMap: o.absoluteIndexMap });
  return { ...plan, masks };
}

/**
 * Fixed masks of the training-time sample logging (§6.9): `n_obs = ⌊maxFrames/3⌋`; frames
 * [0, n_obs) observed and [n_obs, maxFrames) latent, clipped to T. Faithful: only video 0 gets
 * them, other rows stay empty (§10.2 #24); `allVideos: true` applies them to every video.
 * Gather with {@link planGather} (no absolute map: relative positions are the frame indices).
 */
export function sampleLoggingMasks(B: number, T: number, maxFrames: number, options: { allVideos?: boolean } = {}): FrameMasks & { nObs: number } {
  const obs = new Uint8Array(B * T);
  const latent = new Uint8Array(B * T);
  const nObs = Math.floor(maxFrames / 3);
  const rows = options.allVideos ? B : Math.min(B, 1);
  for (let b = 0; b < rows; b++) {
    for (let t = 0; t < Math.min(nObs, T); t++) obs[b * T + t] = 1;
    for (let t = nObs; t < Math.min(maxFrames, T); t++) latent[b * T + t] = 1;
  }
  return { B, T, obs, latent, nObs };
}

function checkMode(mode: string): asserts mode is MaskingMode {
  if (!(MASKING_MODES as readonly string[]).includes(mode)) throw new OptionError('--masking-mode', MASKING_MODES.map((m) => `"${m}"`).join(', '), mode);
}
