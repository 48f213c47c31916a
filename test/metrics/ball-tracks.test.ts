/**
 * Ball detection, tracking and trajectory metrics (REFERENCE_SPEC §8.4, acceptance test §11.10)
 * on synthetic videos rendered with the simulator's formula (§1.1.5).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  averageDisplacementError,
  ballKernels,
  colorAccuracy,
  colorShiftOffset,
  detectBalls,
  evaluateBallTracks,
  evaluateBallVideos,
  rowNormalize,
  trackBalls,
  transitionCounts,
  transitionKL,
  u8VideoToFloat,
  type BallTracks,
} from '../../src/metrics/ball-tracks.ts';
import { floatToU8 } from '../../src/media/frames.ts';
import { GREEN, RED, YELLOW, centreForPatch, renderBalls, type BallState } from './ball-render.ts';

/** Two balls: ball A moves right along row 4, ball B moves left/down from (20, 18); colours per frame. */
function scene(T: number, shiftB = 0, colorsA?: (t: number) => BallState['color']): BallState[][] {
  return Array.from({ length: T }, (_, t) => [
    { x: centreForPatch(2 + t), y: centreForPatch(4), color: colorsA ? colorsA(t) : RED },
    { x: centreForPatch(20 - t + shiftB), y: centreForPatch(18 + (t >> 1)), color: t < 3 ? YELLOW : GREEN },
  ]);
}

test('kernels: shape, range, centre value', () => {
  const k = ballKernels();
  assert.equal(k.length, 3 * 3 * 64);
  // Centre-ish pixel (3, 3): I = J = −0.15625 → bump ≈ 1; red kernel red channel ≈ 1, green channel −1.
  const b = Math.exp(-((((0.15625 ** 2) * 2) / 1.44) ** 4));
  assert.ok(Math.abs(k[(0 * 3 + 0) * 64 + 3 * 8 + 3]! - (2 * b - 1)) < 1e-15);
  assert.equal(k[(0 * 3 + 1) * 64 + 3 * 8 + 3], -1);
  assert.ok(Math.abs(k[(1 * 3 + 1) * 64 + 3 * 8 + 3]! - (2 * b - 1)) < 1e-15); // yellow green channel
  assert.equal(k[(2 * 3 + 0) * 64 + 3 * 8 + 3], -1); // green kernel red channel
  // Corner pixel (I = J = −1.09375), just outside the radius: nearly background.
  const corner = 2 * Math.exp(-(((2 * 1.09375 ** 2) / 1.44) ** 4)) - 1;
  assert.ok(Math.abs(k[0]! - corner) < 1e-15 && corner < -0.99);
  const shifted = ballKernels(0.25);
  assert.equal(shifted[(1 * 3 + 2) * 64 + 10], -0.75);
  assert.equal(colorShiftOffset({ scheme: 'legacy', index: 3, nData: 12 }), 0.25);
  assert.equal(colorShiftOffset({ scheme: 'spaced', index: 2, lo: 100, spacing: 50, totalFrames: 1000 }), 0.2);
  assert.equal(colorShiftOffset({ scheme: 'chunked', index: 2, lo: 0, T: 300, totalFrames: 1200 }), 0.5);
});

test('a rendered ball is detected at its patch with distance ≈ 0 and the right colour', () => {
  const v = renderBalls(scene(1));
  const d = detectBalls(v, 0, 2);
  assert.equal(d.length, 2);
  const byX = [...d].sort((a, b) => a.x - b.x);
  assert.deepEqual([byX[0]!.x, byX[0]!.y, byX[0]!.color], [2, 4, 0]);
  assert.deepEqual([byX[1]!.x, byX[1]!.y, byX[1]!.color], [20, 18, 1]);
  for (const det of d) assert.ok(det.dist < 1e-5, `distance ${det.dist}`);
});

test('tracks follow each ball; frame-0 order is lexicographic by [x, y]', () => {
  const T = 8;
  const tr = trackBalls(renderBalls(scene(T)), 2);
  for (let t = 0; t < T; t++) {
    assert.deepEqual([tr.pos[t * 4], tr.pos[t * 4 + 1], tr.pos[t * 4 + 2], tr.pos[t * 4 + 3]], [2 + t, 4, 20 - t, 18 + (t >> 1)], `t=${t}`);
    assert.deepEqual([tr.color[t * 2], tr.color[t * 2 + 1]], [0, t < 3 ? 1 : 2]);
  }
});

test('identical videos: minADE 0, colour accuracy 1 (§11.10)', () => {
  const gt = renderBalls(scene(10));
  const m = evaluateBallVideos([gt], [[gt]], { nObs: 3 });
  assert.equal(m.minADE, 0);
  assert.equal(m.colorAccuracy, 1);
});

test('shifting one ball by k pixels after the observed frames gives ADE k/2; minADE takes the best seed', () => {
  const T = 8, nObs = 3, k = 3;
  const gtScene = scene(T);
  const shifted = gtScene.map((balls, t) => (t < nObs ? balls : [balls[0]!, { ...balls[1]!, x: balls[1]!.x + (k * 10) / 32 }]));
  const gt = renderBalls(gtScene);
  const s = renderBalls(shifted);
  const gtT = trackBalls(gt);
  const sT = trackBalls(s);
  assert.equal(averageDisplacementError(gtT, sT, nObs), k / 2);
  assert.equal(colorAccuracy(gtT, sT, nObs), 1);
  const m = evaluateBallVideos([gt, gt], [[s, s], [s, gt]], { nObs });
  assert.deepEqual(m.perVideo[0]!.ade, [k / 2, k / 2]);
  assert.equal(m.perVideo[1]!.minADE, 0);
  assert.equal(m.minADE, k / 4);
});

test('colour accuracy counts mismatching (frame, ball) pairs after n_obs', () => {
  const T = 6, nObs = 2;
  const gt = renderBalls(scene(T));
  // Ball A turns green in frames 4 and 5 of the sample: 2 of 8 (frame, ball) pairs differ.
  const s = renderBalls(scene(T, 0, (t) => (t >= 4 ? GREEN : RED)));
  assert.equal(colorAccuracy(trackBalls(gt), trackBalls(s), nObs), 6 / 8);
});

test('stored uint8 samples detect the same as the float render', () => {
  const v = renderBalls(scene(4));
  const u8 = Uint8Array.from(v.data, floatToU8);
  const back = u8VideoToFloat(u8, 4, 32, 32);
  assert.deepEqual(trackBalls(back).pos, trackBalls(v).pos);
  // float32 arithmetic: 255 ↦ exactly 1, 0 ↦ −1, 128 ↦ fround(−1 + fround(256/255))
  const w = u8VideoToFloat(Uint8Array.of(0, 255, 128), 1, 1, 1);
  assert.deepEqual(Array.from(w.data), [-1, 1, Math.fround(-1 + Math.fround(256 / 255))]);
});

function tracksFromColors(colors: number[][]): BallTracks {
  // colors[t][b]
  const T = colors.length;
  const nBalls = colors[0]!.length;
  return { T, nBalls, pos: new Float64Array(T * nBalls * 2), color: Uint8Array.from(colors.flat()) };
}

test('transition counts only count changes at t ≥ n_obs, row-normalised with 0/0 → 0', () => {
  // ball 0: R R Y R G R ; ball 1: Y R R G R R
  const tr = tracksFromColors([
    [0, 1],
    [0, 0],
    [1, 0],
    [0, 2],
    [2, 0],
    [0, 0],
  ]);
  // n_obs = 2: changes at t = 2 (b0 R→Y), 3 (b0 Y→R, b1 R→G), 4 (b0 R→G, b1 G→R), 5 (b0 G→R). t = 1 (b1 Y→R) excluded.
  assert.deepEqual([...transitionCounts(tr, 2)], [0, 1, 2, 1, 0, 0, 2, 0, 0]);
  assert.deepEqual([...transitionCounts(tr, 0)], [0, 1, 2, 2, 0, 0, 2, 0, 0]);
  assert.deepEqual([...rowNormalize([0, 1, 3, 0, 0, 0, 2, 0, 0])], [0, 0.25, 0.75, 0, 0, 0, 1, 0, 0]);
});

test('transition KL: zero for the true matrix, closed form otherwise, +∞ when q = 0 < p', () => {
  assert.equal(transitionKL([0, 0.5, 0.5, 1, 0, 0, 1, 0, 0]), 0);
  // red row (¼, ¾): KL = ½ ln(½/¼) + ½ ln(½/¾); other rows exact → 0.
  const kl = transitionKL([0, 0.25, 0.75, 1, 0, 0, 1, 0, 0]);
  assert.ok(Math.abs(kl - (0.5 * Math.log(2) + 0.5 * Math.log(2 / 3)) / 3) < 1e-15);
  // p = 0 terms are skipped even when q > 0 (yellow row puts mass on green).
  const kl2 = transitionKL([0, 0.5, 0.5, 0.5, 0, 0.5, 1, 0, 0]);
  assert.ok(Math.abs(kl2 - Math.log(2) / 3) < 1e-15);
  assert.equal(transitionKL([0, 1, 0, 1, 0, 0, 1, 0, 0]), Infinity);
});

test('evaluateBallTracks aggregates transitions: normalise per (video, seed), sum videos, mean seeds, normalise', () => {
  const gt = tracksFromColors([[0], [0], [0]]);
  // video 0: seed 0 R→Y, seed 1 R→G ; video 1: seed 0 R→Y twice… per-seed normalisation makes counts 1.
  const v0s0 = tracksFromColors([[0], [1], [1]]);
  const v0s1 = tracksFromColors([[0], [2], [2]]);
  const v1s0 = tracksFromColors([[0], [1], [0]]); // R→Y, Y→R
  const v1s1 = tracksFromColors([[0], [0], [2]]); // R→G
  const m = evaluateBallTracks([gt, gt], [[v0s0, v0s1], [v1s0, v1s1]], 1);
  // seed 0: red row (2, 0) → after mean over seeds: red row = ((0,2,0) + (0,0,2))/2 = (0,1,1) → (0,½,½);
  // yellow row = (1,0,0)/2 → (1,0,0); green row 0.
  assert.deepEqual([...m.transitions], [0, 0.5, 0.5, 1, 0, 0, 0, 0, 0]);
  assert.equal(m.transKL, Infinity); // green → red never observed
  assert.equal(m.minADE, 0);
  assert.deepEqual(m.perVideo[0]!.accuracy, [0, 0]);
  assert.deepEqual(m.perVideo[1]!.accuracy, [0.5, 0.5]);
  assert.equal(m.colorAccuracy, 0.25);
  assert.throws(() => evaluateBallTracks([gt, gt], [[v0s0], [v1s0, v1s1]], 1), /seeds per video/);
});
