/**
 * Test helper: render bouncing-ball frames exactly as the simulator does (REFERENCE_SPEC §1.1.5),
 * in model space ([-1, 1], `2A − 1`), channel-first `[T, 3, res, res]`.
 */
import type { FloatVideo } from '../../src/metrics/ball-tracks.ts';

export const RED = [1, 0, 0] as const;
export const YELLOW = [1, 1, 0] as const;
export const GREEN = [0, 1, 0] as const;

export interface BallState {
  /** Centre in box units: [X (horizontal), Y (vertical)], box [0, S]². */
  x: number;
  y: number;
  color: readonly [number, number, number];
}

/** `frames[t]` lists the balls of frame t. Box side S = 10, radius r = 1.2. */
export function renderBalls(frames: readonly (readonly BallState[])[], res = 32, S = 10, r = 1.2): FloatVideo {
  const T = frames.length;
  const data = new Float32Array(T * 3 * res * res);
  const centre = (k: number) => ((k + 0.5) / res) * S;
  for (let t = 0; t < T; t++) {
    for (let p = 0; p < res; p++) {
      for (let q = 0; q < res; q++) {
        const I = centre(q);
        const J = centre(p);
        const A = [0, 0, 0];
        for (const b of frames[t]!) {
          const bump = Math.exp(-((((I - b.x) ** 2 + (J - b.y) ** 2) / (r * r)) ** 4));
          for (let c = 0; c < 3; c++) A[c]! += b.color[c]! * bump;
        }
        for (let c = 0; c < 3; c++) data[((t * 3 + c) * res + p) * res + q] = 2 * Math.min(1, A[c]!) - 1;
      }
    }
  }
  return { data, T, H: res, W: res };
}

/** Box coordinate of a ball whose best 8 × 8 patch starts at pixel `k` (res 32, S 10): `(k + 4)·S/res`. */
export function centreForPatch(k: number, res = 32, S = 10): number {
  return ((k + 4) * S) / res;
}
