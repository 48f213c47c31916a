/**
 * The bouncing-balls simulator and renderer of REFERENCE_SPEC §1.1 (reference `datasets/ball.py`).
 *
 * Everything here is pure and deterministic: {@link simulateBalls} turns an RNG into a trajectory
 * (positions, velocities, colours per frame) and {@link renderBallFrames} turns a slice of a
 * trajectory into pixels. The floating-point expressions are written in the same order as the
 * reference (NumPy) computes them, so with {@link NumpyRandomState} the files are reproduced; see
 * `docs/data.md` for the (ulp-level) caveats on `pow`/`exp`.
 *
 * Coordinates: `x[…, 0]` is horizontal (column), `x[…, 1]` vertical (row), row 0 at the top.
 */
import type { Rng } from '../util/rng.ts';

/** Side of the square box `[0, S]²` (§1.1.3). */
export const BOX_SIZE = 10;
/** Radius of every ball (the generator's value; §1.1.3). */
export const BALL_RADIUS = 1.2;
/** Mass of every ball. */
export const BALL_MASS = 1;
/** Integration substep; `⌊1/ε⌋ = 2` substeps per frame. */
export const SUBSTEP = 0.5;

/** Palette indices (§1.1.4). */
export const RED = 0;
export const YELLOW = 1;
export const GREEN = 2;
/** "No previous colour" marker of the state machine. */
export const NONE = -1;
/** RGB of each palette entry. */
export const PALETTE: readonly (readonly [number, number, number])[] = [
  [1, 0, 0],
  [1, 1, 0],
  [0, 1, 0],
];

/**
 * Next colour of the state machine given `(prev, curr)` (§1.1.4 table). The cycle per ball is
 * red → yellow → red → green → red → yellow → …
 */
export function nextColor(prev: number, curr: number): number {
  if (curr === RED) {
    if (prev === NONE || prev === GREEN) return YELLOW;
    if (prev === YELLOW) return GREEN;
  } else if (curr === YELLOW || curr === GREEN) {
    return RED; // (red, yellow), (red, green) and the unreachable (none, yellow|green)
  }
  throw new RangeError(`colour state machine: no transition from (${prev}, ${curr})`);
}

/** A simulated stream: all arrays C order, float64. */
export interface BallTrajectory {
  frames: number;
  numBalls: number;
  /** Ball centres before each frame's motion, `[T, n, 2]`. */
  positions: Float64Array;
  /** Velocities before each frame's motion, `[T, n, 2]`. */
  velocities: Float64Array;
  /** Colours (before clipping; blue may exceed 1 with colour shift), `[T, n, 3]`. */
  colors: Float64Array;
  /** Palette index of each ball per frame, `[T, n]`. */
  colorIndex: Uint8Array;
}

/** Initial state drawn from the RNG (§1.1.3 "Initialisation"). */
export interface BallInit {
  /** `[n, 2]` velocities, Frobenius norm 0.5. */
  v: Float64Array;
  /** `[n, 2]` accepted positions. */
  x: Float64Array;
  /** The first (up to 16) rejected position candidates, in draw order (each `[n, 2]`). */
  rejected: Float64Array[];
}

/** Euclidean norm computed like NumPy's `sqrt((a**2).sum())` (sequential sum for short vectors). */
function norm(a: ArrayLike<number>, off: number, len: number): number {
  let s = 0;
  for (let k = 0; k < len; k++) {
    const q = a[off + k]!;
    s += q * q;
  }
  return Math.sqrt(s);
}

/**
 * Draw the initial velocities and positions (RNG order of §1.1.3 / §1.1.6):
 * `v ~ N(0,1)^{n×2}` row-major, `v ← v / ‖v‖_F · 0.5`; then repeat `x = 2 + U·8` (row-major)
 * until every ball is inside the box and no two balls overlap.
 */
export function initBalls(rng: Rng, numBalls: number, r = BALL_RADIUS, size = BOX_SIZE): BallInit {
  const n = numBalls;
  const v = new Float64Array(n * 2);
  for (let k = 0; k < n * 2; k++) v[k] = rng.normal();
  const nv = norm(v, 0, n * 2);
  for (let k = 0; k < n * 2; k++) v[k] = (v[k]! / nv) * 0.5;
  const rejected: Float64Array[] = [];
  for (;;) {
    const x = new Float64Array(n * 2);
    for (let k = 0; k < n * 2; k++) x[k] = 2 + rng.random() * 8;
    let ok = true;
    for (let k = 0; k < n * 2; k++) {
      if (x[k]! - r < 0 || x[k]! + r > size) ok = false;
    }
    const d = new Float64Array(2);
    for (let i = 0; i < n && ok; i++) {
      for (let j = 0; j < i; j++) {
        d[0] = x[2 * i]! - x[2 * j]!;
        d[1] = x[2 * i + 1]! - x[2 * j + 1]!;
        if (norm(d, 0, 2) < r + r) ok = false;
      }
    }
    if (ok) return { v, x, rejected };
    if (rejected.length < 16) rejected.push(x);
  }
}

/** Options of {@link simulateBalls}. */
export interface SimulateOptions {
  /** Frames in the stream (`T_total`). */
  frames: number;
  /** Number of balls (default 2). */
  numBalls?: number;
  /** Non-stationary variant: blue channel `+ t / frames` (§1.1.4). */
  colorShift?: boolean;
}

/**
 * Simulate one stream (§1.1.3–§1.1.4). Draws from `rng` only during initialisation, so calling it
 * twice on one RNG gives the reference's train then test stream.
 * @returns positions/velocities `[T, n, 2]`, colours `[T, n, 3]`, palette indices `[T, n]`.
 */
export function simulateBalls(rng: Rng, opts: SimulateOptions): BallTrajectory {
  const T = opts.frames;
  const n = opts.numBalls ?? 2;
  const shift = opts.colorShift ?? false;
  const r = BALL_RADIUS;
  const S = BOX_SIZE;
  const m = BALL_MASS;
  const eps = SUBSTEP;
  const substeps = Math.floor(1 / eps);
  const { v, x } = initBalls(rng, n, r, S);

  const positions = new Float64Array(T * n * 2);
  const velocities = new Float64Array(T * n * 2);
  const colors = new Float64Array(T * n * 3);
  const colorIndex = new Uint8Array(T * n);
  const prev = new Int8Array(n).fill(NONE);
  const curr = new Int8Array(n).fill(RED);
  const w = new Float64Array(2);

  for (let t = 0; t < T; t++) {
    // 1. Record the state before this frame's motion.
    positions.set(x, t * n * 2);
    velocities.set(v, t * n * 2);
    for (let i = 0; i < n; i++) {
      const c = PALETTE[curr[i]!]!;
      const o = (t * n + i) * 3;
      colors[o] = c[0];
      colors[o + 1] = c[1];
      colors[o + 2] = shift ? c[2] + t / T : c[2];
      colorIndex[t * n + i] = curr[i]!;
    }
    // 2. A direction change since the previous frame advances the colour (visible from t + 1).
    if (t > 0) {
      const a = (t - 1) * n * 2;
      const b = t * n * 2;
      for (let i = 0; i < n; i++) {
        if (velocities[a + 2 * i] !== velocities[b + 2 * i] || velocities[a + 2 * i + 1] !== velocities[b + 2 * i + 1]) {
          const next = nextColor(prev[i]!, curr[i]!);
          prev[i] = curr[i]!;
          curr[i] = next;
        }
      }
    }
    // 3. Integrate: move, walls, ball-ball collisions, per substep.
    for (let sub = 0; sub < substeps; sub++) {
      for (let k = 0; k < n * 2; k++) x[k] = x[k]! + eps * v[k]!;
      for (let k = 0; k < n * 2; k++) {
        if (x[k]! - r < 0) v[k] = Math.abs(v[k]!);
        if (x[k]! + r > S) v[k] = -Math.abs(v[k]!);
      }
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < i; j++) {
          w[0] = x[2 * i]! - x[2 * j]!;
          w[1] = x[2 * i + 1]! - x[2 * j + 1]!;
          if (norm(w, 0, 2) < r + r) {
            const nw = norm(w, 0, 2);
            w[0] = w[0]! / nw;
            w[1] = w[1]! / nw;
            const a = w[0]! * v[2 * i]! + w[1]! * v[2 * i + 1]!;
            const b = w[0]! * v[2 * j]! + w[1]! * v[2 * j + 1]!;
            // 1-D elastic collision, in the reference's operation order.
            const bNew = (2 * m * a + b * (m - m)) / (m + m);
            const aNew = bNew + (b - a);
            v[2 * i] = v[2 * i]! + w[0]! * (aNew - a);
            v[2 * i + 1] = v[2 * i + 1]! + w[1]! * (aNew - a);
            v[2 * j] = v[2 * j]! + w[0]! * (bNew - b);
            v[2 * j + 1] = v[2 * j + 1]! + w[1]! * (bNew - b);
          }
        }
      }
    }
  }
  return { frames: T, numBalls: n, positions, velocities, colors, colorIndex };
}

/** Pixel-centre coordinates in box units, computed like the reference: `(z/2 + k·z) · S`, `z = 1/res`. */
export function pixelCenters(res: number): Float64Array {
  const z = 1 / res;
  const c = new Float64Array(res);
  for (let k = 0; k < res; k++) c[k] = (z / 2 + k * z) * BOX_SIZE;
  return c;
}

/**
 * Above this normalised squared distance `d = dist²/r²` the bump `exp(−d⁴)` is exactly 0 in
 * double precision (`d⁴ > 746` and `exp(−745.14)` already underflows), so skipping such pixels
 * changes no bit of the result.
 */
const UNDERFLOW_D = Math.pow(746, 0.25);

const SPLITTER = 134217729; // 2^27 + 1 (Veltkamp splitting)

/**
 * `d⁴` correctly rounded (what a correctly rounded libm `pow(d, 4)` returns), from exact
 * two-products (Dekker): `d² = s + e₁` exactly, `s² = q + e₂` exactly, `d⁴ ≈ q + (e₂ + 2·s·e₁)`.
 * About 4× faster than `Math.pow`, whose results differ from a correctly rounded pow in ~30 % of
 * cases. (NumPy's own `d**4` depends on the CPU: its AVX-512 builds are not correctly rounded.)
 */
export function pow4(d: number): number {
  const s = d * d;
  let c = SPLITTER * d;
  const dh = c - (c - d);
  const dl = d - dh;
  const e1 = dh * dh - s + 2 * dh * dl + dl * dl;
  const q = s * s;
  c = SPLITTER * s;
  const sh = c - (c - s);
  const sl = s - sh;
  const e2 = sh * sh - q + 2 * sh * sl + sl * sl;
  return q + (e2 + 2 * s * e1);
}

/** Output element types of {@link renderBallFrames}. */
export type FrameBuffer = Float64Array | Float32Array | Uint8Array;

/**
 * Render `count` frames (§1.1.5): `A[p,q,ch] = min(1, Σ_i C[t,i,ch] · exp(−(((I−X₀)² + (J−X₁)²)/r²)⁴))`.
 * @param positions `[count, n, 2]` ball centres (a subarray of the trajectory).
 * @param colors `[count, n, 3]` ball colours.
 * @param out `[count, res, res, 3]` (channel-last). Float outputs get the value; a Uint8Array gets
 *   `round(255 · value)`. Pixels where a bump underflows to 0 are skipped (exact).
 */
export function renderBallFrames(
  positions: Float64Array,
  colors: Float64Array,
  numBalls: number,
  count: number,
  res: number,
  out: FrameBuffer,
): void {
  const n = numBalls;
  const r2 = BALL_RADIUS * BALL_RADIUS;
  const c = pixelCenters(res);
  const acc = new Float64Array(res * res * 3);
  const dx2 = new Float64Array(res);
  const dy2 = new Float64Array(res);
  const quantise = out instanceof Uint8Array;
  const frameLen = res * res * 3;
  if (out.length < count * frameLen) throw new RangeError(`renderBallFrames: output holds ${out.length} values, needs ${count * frameLen}`);
  for (let f = 0; f < count; f++) {
    acc.fill(0);
    for (let i = 0; i < n; i++) {
      const px = positions[(f * n + i) * 2]!;
      const py = positions[(f * n + i) * 2 + 1]!;
      const cr = colors[(f * n + i) * 3]!;
      const cg = colors[(f * n + i) * 3 + 1]!;
      const cb = colors[(f * n + i) * 3 + 2]!;
      for (let k = 0; k < res; k++) {
        const a = c[k]! - px;
        dx2[k] = a * a;
        const b = c[k]! - py;
        dy2[k] = b * b;
      }
      // Columns whose horizontal distance alone underflows are skipped on every row (contiguous range).
      let q0 = 0;
      while (q0 < res && dx2[q0]! / r2 > UNDERFLOW_D) q0++;
      let q1 = res;
      while (q1 > q0 && dx2[q1 - 1]! / r2 > UNDERFLOW_D) q1--;
      for (let p = 0; p < res; p++) {
        const ry = dy2[p]!;
        if (ry / r2 > UNDERFLOW_D) continue; // the whole row underflows
        let o = (p * res + q0) * 3;
        for (let q = q0; q < q1; q++, o += 3) {
          const d = (dx2[q]! + ry) / r2;
          if (d > UNDERFLOW_D) continue;
          const bump = Math.exp(-pow4(d));
          acc[o] = acc[o]! + cr * bump;
          acc[o + 1] = acc[o + 1]! + cg * bump;
          acc[o + 2] = acc[o + 2]! + cb * bump;
        }
      }
    }
    const base = f * frameLen;
    if (quantise) {
      for (let k = 0; k < frameLen; k++) {
        const val = acc[k]!;
        out[base + k] = Math.round((val > 1 ? 1 : val) * 255);
      }
    } else {
      for (let k = 0; k < frameLen; k++) {
        const val = acc[k]!;
        out[base + k] = val > 1 ? 1 : val;
      }
    }
  }
}
