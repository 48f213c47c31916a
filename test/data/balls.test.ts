/**
 * Bouncing-balls simulator and renderer (REFERENCE_SPEC §1.1): the golden values of §1.1.6,
 * a bit-exact cross-check against an independent NumPy implementation
 * (test/fixtures/data/make-balls.py → balls-golden.json), and physics / colour invariants.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NumpyRandomState } from '../../src/util/mt19937.ts';
import {
  BALL_RADIUS,
  BOX_SIZE,
  GREEN,
  RED,
  YELLOW,
  initBalls,
  nextColor,
  pow4,
  renderBallFrames,
  simulateBalls,
  type BallTrajectory,
} from '../../src/data/balls.ts';

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

/** Frames t ≥ 1 where ball i's velocity differs from the previous frame's. */
function directionChanges(tr: BallTrajectory, i: number, upTo: number): number[] {
  const n = tr.numBalls;
  const out: number[] = [];
  for (let t = 1; t < upTo; t++) {
    const a = ((t - 1) * n + i) * 2;
    const b = (t * n + i) * 2;
    if (tr.velocities[a] !== tr.velocities[b] || tr.velocities[a + 1] !== tr.velocities[b + 1]) out.push(t);
  }
  return out;
}

/** `[colour, first frame]` runs of ball i. */
function colourRuns(tr: BallTrajectory, i: number, upTo: number): [number, number][] {
  const runs: [number, number][] = [];
  for (let t = 0; t < upTo; t++) {
    const c = tr.colorIndex[t * tr.numBalls + i]!;
    if (t === 0 || c !== tr.colorIndex[(t - 1) * tr.numBalls + i]) runs.push([c, t]);
  }
  return runs;
}

test('golden values of §1.1.6 (seed 0, 2 balls)', () => {
  const init = initBalls(new NumpyRandomState(0), 2);
  const V0 = [0.28998433, 0.06577998, 0.16089017, 0.36836997];
  V0.forEach((v, k) => close(init.v[k]!, v, 5e-9, `V[0][${k}]`));
  const rej = [5.3892, 7.1672, 5.5007, 9.1342];
  rej.forEach((v, k) => close(init.rejected[0]![k]!, v, 5e-5, `rejected[${k}]`));
  const X0 = [6.174786574, 5.31729552, 4.116444897, 8.193869515];
  X0.forEach((v, k) => close(init.x[k]!, v, 5e-10, `X[0][${k}]`));

  const tr = simulateBalls(new NumpyRandomState(0), { frames: 200, numBalls: 2 });
  assert.deepEqual(Array.from(tr.positions.subarray(0, 4)), Array.from(init.x));
  assert.deepEqual(directionChanges(tr, 0, 80), [10, 12, 29, 77]);
  assert.deepEqual(colourRuns(tr, 0, 90), [[RED, 0], [YELLOW, 11], [RED, 13], [GREEN, 30], [RED, 78], [YELLOW, 87]]);
  assert.deepEqual(colourRuns(tr, 1, 40), [[RED, 0], [YELLOW, 3], [RED, 13], [GREEN, 22], [RED, 39]]);

  const frames = new Float64Array(6 * 32 * 32 * 3);
  renderBallFrames(tr.positions, tr.colors, 2, 6, 32, frames);
  const sums = (f: number) => [0, 1, 2].map((c) => frames.subarray(f * 3072, (f + 1) * 3072).reduce((s, v, k) => (k % 3 === c ? s + v : s), 0));
  [84.0119, 0, 0].forEach((v, c) => close(sums(0)[c]!, v, 5e-5, `frame 0 sum ${c}`));
  [84.0011, 42.0081, 0].forEach((v, c) => close(sums(5)[c]!, v, 5e-5, `frame 5 sum ${c}`));
  const px = (17 * 32 + 19) * 3;
  close(frames[px]!, 0.99999982, 5e-9, 'pixel (17,19) red');
  assert.equal(frames[px + 1], 0);
  assert.equal(frames[px + 2], 0);
});

test('bit-exact against the independent NumPy implementation (train then test from one RNG)', () => {
  const g = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '../fixtures/data/balls-golden.json'), 'utf8'));
  const { frames, num_balls: n, resolution: res, rendered_frames: nf } = g.params;
  const sha = (a: ArrayBufferView) => createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
  for (const shift of [false, true]) {
    const rng = new NumpyRandomState(0);
    for (const split of ['train', 'test']) {
      const e = g[shift ? 'shift' : 'stationary'][split];
      const tr = simulateBalls(rng, { frames, numBalls: n, colorShift: shift });
      assert.equal(sha(tr.positions), e.positions, `${split} positions`);
      assert.equal(sha(tr.velocities), e.velocities, `${split} velocities`);
      assert.equal(sha(tr.colors), e.colors, `${split} colours`);
      const u8 = new Uint8Array(nf * res * res * 3);
      renderBallFrames(tr.positions, tr.colors, n, nf, res, u8);
      assert.equal(sha(u8), e.frames_u1, `${split} uint8 frames`);
      // float64 pixels: libm exp/pow may differ in the last bits from NumPy's.
      const f8 = new Float64Array(nf * res * res * 3);
      renderBallFrames(tr.positions, tr.colors, n, nf, res, f8);
      for (let f = 0; f < nf; f++) {
        for (let c = 0; c < 3; c++) {
          let s = 0;
          for (let k = c; k < res * res * 3; k += 3) s += f8[f * res * res * 3 + k]!;
          close(s, e.frame_sums[f][c], 1e-9, `${split} frame ${f} channel ${c} sum`);
        }
        const p = (f * res * res + 17 * res + 19) * 3;
        for (let c = 0; c < 3; c++) close(f8[p + c]!, e.pixel_17_19[f][c], 1e-12, `${split} frame ${f} pixel`);
      }
    }
  }
});

test('physics invariants over a long run: energy, wall bounces keep speed, collisions keep momentum, balls stay in the box', () => {
  const T = 60000;
  for (const n of [2, 3]) {
    const tr = simulateBalls(new NumpyRandomState(7), { frames: T, numBalls: n });
    const r = BALL_RADIUS;
    let collisions = 0;
    let wallOnly = 0;
    for (let t = 0; t < T; t++) {
      let e = 0;
      for (let k = 0; k < n * 2; k++) e += tr.velocities[t * n * 2 + k]! ** 2;
      close(e, 0.25, 1e-12, `kinetic energy at ${t}`); // ‖v‖_F = 0.5 at start; both kinds of bounce keep it
      for (let k = 0; k < n * 2; k++) {
        const x = tr.positions[t * n * 2 + k]!;
        // A ball overshoots the wall by at most two substeps (ε·|v| ≤ 0.25 each; a collision after
        // the wall test can push it outwards once more) before the wall turns it round.
        assert.ok(x > r - 0.5 && x < BOX_SIZE - r + 0.5, `ball inside the box at ${t}: ${x}`);
      }
      if (t === 0) continue;
      const a = (t - 1) * n * 2;
      const b = t * n * 2;
      const speedsKept = Array.from({ length: n * 2 }, (_, k) => Math.abs(tr.velocities[a + k]!) === Math.abs(tr.velocities[b + k]!)).every(Boolean);
      if (speedsKept) {
        wallOnly++;
        continue;
      }
      // A ball-ball collision happened in frame t−1. When no ball was near a wall, momentum is kept.
      collisions++;
      const nearWall = [a, b].some((o) =>
        Array.from({ length: n * 2 }, (_, k) => tr.positions[o + k]!).some((x) => x < r + 0.6 || x > BOX_SIZE - r - 0.6),
      );
      if (!nearWall) {
        for (let z = 0; z < 2; z++) {
          let p0 = 0;
          let p1 = 0;
          for (let i = 0; i < n; i++) {
            p0 += tr.velocities[a + 2 * i + z]!;
            p1 += tr.velocities[b + 2 * i + z]!;
          }
          close(p1, p0, 1e-12, `momentum at ${t}`);
        }
      }
    }
    assert.ok(collisions > 50, `collisions seen: ${collisions}`);
    assert.ok(wallOnly > T / 2);
  }
});

test('colours change only one frame after a direction change, and only as the state machine allows', () => {
  const T = 20000;
  const tr = simulateBalls(new NumpyRandomState(3), { frames: T, numBalls: 2 });
  for (let i = 0; i < 2; i++) {
    const changes = new Set(directionChanges(tr, i, T).map((t) => t + 1));
    const runs = colourRuns(tr, i, T);
    assert.equal(runs[0]![0], RED);
    for (const [, t] of runs.slice(1)) assert.ok(changes.has(t), `colour change at ${t} follows a direction change`);
    // The deterministic cycle red → yellow → red → green → red → …
    const cycle = [RED, YELLOW, RED, GREEN];
    runs.forEach(([c], k) => assert.equal(c, cycle[k % 4], `run ${k}`));
    // Every direction change advances the colour (as long as the stream lasts).
    assert.equal(runs.length - 1, [...changes].filter((t) => t < T).length);
  }
  assert.equal(nextColor(-1, RED), YELLOW);
  assert.equal(nextColor(YELLOW, RED), GREEN);
  assert.equal(nextColor(GREEN, RED), YELLOW);
  assert.equal(nextColor(RED, GREEN), RED);
  assert.throws(() => nextColor(RED, RED), RangeError);
});

test('--color-shift: blue = palette blue + t / T_total, red/green unchanged; same trajectory', () => {
  const T = 5000;
  const plain = simulateBalls(new NumpyRandomState(0), { frames: T });
  const shifted = simulateBalls(new NumpyRandomState(0), { frames: T, colorShift: true });
  assert.deepEqual(shifted.positions, plain.positions);
  for (let t = 0; t < T; t += 37) {
    for (let i = 0; i < 2; i++) {
      const o = (t * 2 + i) * 3;
      assert.equal(shifted.colors[o], plain.colors[o]);
      assert.equal(shifted.colors[o + 1], plain.colors[o + 1]);
      assert.equal(shifted.colors[o + 2], t / T);
    }
  }
});

test('rendering: channel-last, clipped at 1, uint8 = round(255·x) of the float64 render', () => {
  const tr = simulateBalls(new NumpyRandomState(11), { frames: 300, colorShift: true });
  const f8 = new Float64Array(300 * 16 * 16 * 3);
  const u8 = new Uint8Array(300 * 16 * 16 * 3);
  const f4 = new Float32Array(300 * 16 * 16 * 3);
  renderBallFrames(tr.positions, tr.colors, 2, 300, 16, f8);
  renderBallFrames(tr.positions, tr.colors, 2, 300, 16, u8);
  renderBallFrames(tr.positions, tr.colors, 2, 300, 16, f4);
  let max = 0;
  for (let k = 0; k < f8.length; k++) {
    assert.ok(f8[k]! >= 0 && f8[k]! <= 1);
    max = Math.max(max, f8[k]!);
    assert.equal(u8[k], Math.round(f8[k]! * 255));
    assert.equal(f4[k], Math.fround(f8[k]!));
  }
  assert.equal(max, 1); // disk centres saturate
  assert.throws(() => renderBallFrames(tr.positions, tr.colors, 2, 300, 16, new Uint8Array(10)), RangeError);
});

test('pow4 is correctly rounded (exact BigInt reference)', () => {
  const rng = new NumpyRandomState(5);
  const view = new DataView(new ArrayBuffer(8));
  for (let k = 0; k < 20000; k++) {
    const d = rng.random() * 6;
    if (d === 0) continue;
    view.setFloat64(0, d);
    const bits = view.getBigUint64(0);
    const exp = Number((bits >> 52n) & 0x7ffn) - 1075;
    const mant = (bits & ((1n << 52n) - 1n)) | (1n << 52n);
    // d = mant·2^exp exactly; Number(BigInt) rounds to nearest even, scaling by 2^(4·exp) is exact.
    const exact = Number(mant ** 4n) * 2 ** (4 * exp);
    assert.equal(pow4(d), exact, `d = ${d}`);
  }
});
