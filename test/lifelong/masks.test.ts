/**
 * Frame-subset sampling, masks and the gathering plan (REFERENCE_SPEC §6.4, §6.9; acceptance
 * test §11.6). Invariants over many random draws plus hand-worked scripted cases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OptionError } from '../../src/util/errors.ts';
import { NumpyRandomState } from '../../src/util/mt19937.ts';
import type { Rng } from '../../src/util/rng.ts';
import { planGather, prepareTrainingBatch, sampleFrameMasks, sampleLoggingMasks, sampleSomeIndices, type FrameMasks } from '../../src/lifelong/masks.ts';

/** An RNG that replays scripted values (randint and random have separate queues). */
class ScriptedRng implements Rng {
  constructor(
    private ints: number[],
    private reals: number[],
  ) {}
  randint(low: number, high: number): number {
    const v = this.ints.shift();
    assert.ok(v !== undefined && v >= low && v < high, `scripted randint(${low}, ${high}) → ${v}`);
    return v;
  }
  random(): number {
    const v = this.reals.shift();
    assert.ok(v !== undefined, 'scripted random() exhausted');
    return v;
  }
  normal(): number {
    throw new Error('unused');
  }
  getState(): unknown {
    return null;
  }
  setState(): void {}
}

const rows = (m: FrameMasks, which: 'obs' | 'latent') =>
  Array.from({ length: m.B }, (_, b) => [...Array(m.T).keys()].filter((t) => m[which][b * m.T + t] === 1));

test('sampleSomeIndices: strictly increasing, in [0, T), 1 ≤ size ≤ N, all sizes reached', () => {
  const rng = new NumpyRandomState(0);
  for (const [N, T] of [[1, 1], [5, 5], [10, 10], [20, 300], [7, 1000], [3, 4]] as const) {
    const sizes = new Set<number>();
    for (let k = 0; k < 2000; k++) {
      const idx = sampleSomeIndices(N, T, rng);
      sizes.add(idx.length);
      assert.ok(idx.length >= 1 && idx.length <= N);
      idx.forEach((v, i) => {
        assert.ok(Number.isInteger(v) && v >= 0 && v < T, `${v} in [0, ${T})`);
        if (i > 0) assert.ok(v > idx[i - 1]!);
      });
    }
    assert.equal(sizes.size, N, `every size 1…${N} occurs`);
  }
});

test('sampleSomeIndices: hand-worked draw', () => {
  // s = 3, u = 0.5 → scale = sqrt(T / 2.001) for T = 20 (≈ 3.1615), pos = 0.25 · (20 − 2·scale) ≈ 3.419
  // → ⌊3.419⌋, ⌊6.581⌋, ⌊9.742⌋ = 3, 6, 9.
  assert.deepEqual(sampleSomeIndices(5, 20, new ScriptedRng([3], [0.5, 0.25])), [3, 6, 9]);
});

test('autoregressive and none masks', () => {
  const rng = new NumpyRandomState(1);
  const ar = sampleFrameMasks('autoregressive', 2, 7, 20, rng);
  assert.deepEqual(rows(ar, 'obs'), [[0, 1, 2], [0, 1, 2]]); // ⌊7/2⌋ = 3
  assert.deepEqual(rows(ar, 'latent'), [[3, 4, 5, 6], [3, 4, 5, 6]]);
  const none = sampleFrameMasks('none', 1, 4, 20, rng);
  assert.deepEqual(rows(none, 'obs'), [[]]);
  assert.deepEqual(rows(none, 'latent'), [[0, 1, 2, 3]]);
});

test('flexible masks: disjoint, |obs| + |latent| ≤ N, |latent| ≥ 1', () => {
  const rng = new NumpyRandomState(2);
  for (const [T, maxFrames] of [[10, 20], [30, 10], [300, 20], [3, 3]] as const) {
    const N = Math.min(T, maxFrames);
    const m = sampleFrameMasks('flexible', 300, T, maxFrames, rng);
    let someObs = false;
    for (let b = 0; b < m.B; b++) {
      let nObs = 0;
      let nLat = 0;
      for (let t = 0; t < T; t++) {
        const o = m.obs[b * T + t]!;
        const l = m.latent[b * T + t]!;
        assert.ok(!(o && l), 'obs and latent are disjoint');
        nObs += o;
        nLat += l;
      }
      assert.ok(nLat >= 1);
      assert.ok(nObs + nLat <= N);
      someObs ||= nObs > 0;
    }
    assert.ok(someObs);
  }
});

test('autoflex masks: sorted selection, first ⌊N/2⌋ observed, the rest latent', () => {
  const rng = new NumpyRandomState(3);
  const T = 50;
  const N = 12;
  const m = sampleFrameMasks('autoflex', 300, T, N, rng);
  const obs = rows(m, 'obs');
  const lat = rows(m, 'latent');
  for (let b = 0; b < 300; b++) {
    const sel = obs[b]!.length + lat[b]!.length;
    assert.ok(sel >= 1 && sel <= N);
    assert.equal(obs[b]!.length, Math.min(Math.floor(N / 2), sel));
    if (obs[b]!.length && lat[b]!.length) assert.ok(Math.max(...obs[b]!) < Math.min(...lat[b]!));
  }
});

test('autoflex stop test: faithful counts the whole draw, corrected counts new indices', () => {
  // N = 2, T = 10. Draw 1: s = 1 at ⌊0.35·10⌋ = 3. Draw 2: s = 2, u = 0 (scale 1), pos = 3.5 → {3, 4}.
  // Faithful: |draw| = 2 > room 1 → stop with {3}. Corrected: 1 new index ≤ room → {3, 4};
  // draw 3 (s = 1 at 5) then has 1 new index > room 0 → stop.
  const script = () => new ScriptedRng([1, 2, 1], [0.5, 0.35, 0, 3.5 / 9, 0.5, 0.5]);
  const faithful = sampleFrameMasks('autoflex', 1, 10, 2, script());
  assert.deepEqual([rows(faithful, 'obs')[0], rows(faithful, 'latent')[0]], [[3], []]);
  const corrected = sampleFrameMasks('autoflex', 1, 10, 2, script(), { autoflexCountNewOnly: true });
  assert.deepEqual([rows(corrected, 'obs')[0], rows(corrected, 'latent')[0]], [[3], [4]]);
});

test('gather with padding: K = max_frames, selected positions first, padding inherits masks', () => {
  // Video 0 selects {1 (obs), 3 (latent)}, video 1 selects {0 (latent)}; T = 4, K = 5.
  const masks: FrameMasks = { B: 2, T: 4, obs: new Uint8Array([0, 1, 0, 0, 0, 0, 0, 0]), latent: new Uint8Array([0, 0, 0, 1, 1, 0, 0, 0]) };
  const absMap = [100, 101, 102, 103, 7, 8, 9, 10];
  const pads = [3, 0, 2, 1, 3, 2, 0];
  const plan = planGather(masks, { maxFrames: 5, padWithRandomFrames: true, rng: new ScriptedRng([...pads], []), absoluteIndexMap: absMap });
  assert.equal(plan.K, 5);
  assert.deepEqual(Array.from(plan.positions), [1, 3, 3, 0, 2, 0, 1, 3, 2, 0]);
  assert.deepEqual(Array.from(plan.obs), [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // video 1 has no observed frame
  assert.deepEqual(Array.from(plan.latent), [0, 1, 1, 0, 0, 1, 0, 0, 0, 1]); // padding at a selected frame inherits its mask
  assert.deepEqual(Array.from(plan.frameIndices), [101, 103, 103, 100, 102, 7, 8, 10, 9, 7]);
});

test('gather without padding: K = largest selection, padding slots at position 0', () => {
  const masks: FrameMasks = { B: 2, T: 4, obs: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]), latent: new Uint8Array([0, 1, 1, 0, 0, 0, 0, 1]) };
  const plan = planGather(masks, { maxFrames: 10, padWithRandomFrames: false });
  assert.equal(plan.K, 3);
  assert.deepEqual(Array.from(plan.positions), [0, 1, 2, 3, 0, 0]);
  assert.deepEqual(Array.from(plan.frameIndices), [0, 1, 2, 3, 0, 0]);
  assert.deepEqual(Array.from(plan.latent), [0, 1, 1, 1, 0, 0]);
});

test('prepareTrainingBatch: pads to max_frames; T > max_frames with padding in autoregressive/none is an error', () => {
  const rng = new NumpyRandomState(4);
  const absMap = Array.from({ length: 3 * 10 }, (_, k) => 1000 + k);
  for (const mode of ['autoregressive', 'none', 'flexible', 'autoflex'] as const) {
    const p = prepareTrainingBatch({ mode, B: 3, T: 10, maxFrames: 12, padWithRandomFrames: true, rng, absoluteIndexMap: absMap });
    assert.equal(p.K, 12);
    assert.equal(p.positions.length, 36);
    for (let k = 0; k < 36; k++) {
      const b = Math.floor(k / 12);
      assert.ok(p.positions[k]! >= 0 && p.positions[k]! < 10);
      assert.equal(p.frameIndices[k], 1000 + b * 10 + p.positions[k]!);
    }
  }
  for (const mode of ['autoregressive', 'none'] as const) {
    assert.throws(
      () => prepareTrainingBatch({ mode, B: 1, T: 30, maxFrames: 20, padWithRandomFrames: true, rng }),
      (e: unknown) => e instanceof OptionError && /--max-frames/.test(e.message),
    );
    assert.equal(prepareTrainingBatch({ mode, B: 1, T: 30, maxFrames: 20, padWithRandomFrames: false, rng }).K, 30);
  }
  assert.throws(() => sampleFrameMasks('bogus' as never, 1, 5, 5, rng), (e: unknown) => e instanceof OptionError && /--masking-mode/.test(e.message));
  assert.throws(() => planGather(sampleFrameMasks('none', 1, 8, 8, rng), { maxFrames: 5, padWithRandomFrames: true, rng }), /--max-frames/);
});

test('sample-logging masks (§6.9): video 0 only (faithful) or all videos', () => {
  const m = sampleLoggingMasks(2, 30, 20);
  assert.equal(m.nObs, 6);
  assert.deepEqual(rows(m, 'obs'), [[0, 1, 2, 3, 4, 5], []]);
  assert.deepEqual(rows(m, 'latent'), [[6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19], []]);
  const clipped = sampleLoggingMasks(2, 10, 20, { allVideos: true });
  assert.deepEqual(rows(clipped, 'latent'), [[6, 7, 8, 9], [6, 7, 8, 9]]);
  const plan = planGather(m, { maxFrames: 20, padWithRandomFrames: true, rng: new NumpyRandomState(0) });
  assert.deepEqual(Array.from(plan.positions.subarray(0, 20)), [...Array(20).keys()]);
  assert.deepEqual(Array.from(plan.obs.subarray(20)), new Array(20).fill(0)); // video 1: padding only
});
