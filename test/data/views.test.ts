/**
 * Dataset views (REFERENCE_SPEC §2.3 with the §10.1 fixes), the registry (§2.1) and the
 * evaluation-dataset table (§2.4), on hand-worked small streams.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { OptionError } from '../../src/util/errors.ts';
import type { FrameBlock, FrameSource, Split } from '../../src/data/video-store.ts';
import { ChunkedView, ContinuousView, SpacedView } from '../../src/data/views.ts';
import { listDatasets, registerDataset, resolveDataset, unregisterDataset } from '../../src/data/registry.ts';
import { getEvalDataset, getTestDataset, getTrainDataset } from '../../src/data/datasets.ts';

const REF = path.join(import.meta.dirname, '../fixtures/data/ref-f8');

/** A 1-pixel stream whose frame t has value t (test split: t + 1000). */
class CountingSource implements FrameSource {
  constructor(private readonly counts: Record<Split, number>) {}
  frameCount(split: Split): number {
    return this.counts[split];
  }
  frameShape(): [number, number, number] {
    return [1, 1, 1];
  }
  readFrames(split: Split, start: number, count: number): FrameBlock {
    assert.ok(start >= 0 && start + count <= this.counts[split], `read [${start}, ${start + count}) inside the ${split} stream`);
    const data = Float32Array.from({ length: count }, (_, k) => start + k + (split === 'test' ? 1000 : 0));
    return { data, shape: [count, 1, 1, 1] };
  }
}

const starts = (v: { length: number; startOf(i: number): number }) => Array.from({ length: v.length }, (_, i) => v.startOf(i));

test('Continuous: len = (hi − lo) − (T − 1), item i = frames lo+i … with true indices; restart index', () => {
  const src = new CountingSource({ train: 24, test: 12 });
  const v = new ContinuousView(src, { T: 5 });
  assert.equal(v.length, 20);
  const item = v.get(7);
  assert.deepEqual(item.indices, [7, 8, 9, 10, 11]);
  assert.deepEqual(Array.from(item.frames), [7, 8, 9, 10, 11]);
  assert.deepEqual(item.shape, [5, 1, 1, 1]);
  const r = new ContinuousView(src, { T: 5, frameRange: [3, 20] });
  assert.equal(r.length, 13);
  assert.deepEqual(r.get(0).indices, [3, 4, 5, 6, 7]); // corrected: offset by lo (§10.1 item 6)
  assert.deepEqual(r.get(12).indices, [15, 16, 17, 18, 19]);
  const restart = new ContinuousView(src, { T: 2, restartIndex: 4 });
  assert.deepEqual(starts(restart).slice(0, 10), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]);
  v.setTest();
  assert.equal(v.split, 'test');
  assert.equal(v.length, 8);
  assert.deepEqual(Array.from(v.get(1).frames), [1001, 1002, 1003, 1004, 1005]);
  assert.throws(() => v.get(8), RangeError);
  assert.throws(() => new ContinuousView(src, { T: 25 }), OptionError);
  assert.throws(() => new ContinuousView(src, { T: 0 }), OptionError);
  assert.throws(() => new ContinuousView(src, { T: 2, frameRange: [0, 30] }), /frame range end/);
});

test('Chunked: len = ⌊(hi − lo)/T⌋, starts lo + i·T', () => {
  const src = new CountingSource({ train: 24, test: 24 });
  assert.deepEqual(starts(new ChunkedView(src, { T: 5 })), [0, 5, 10, 15]);
  const v = new ChunkedView(src, { T: 5, frameRange: [6, 23] });
  assert.deepEqual(starts(v), [6, 11, 16]);
  assert.deepEqual(v.get(2).indices, [16, 17, 18, 19, 20]); // corrected: frame positions, not [i … i+T−1]
});

test('Spaced: README example 100 frames, T = 5, 10 items → 0, 10, …, 90; T | spacing; PLAICraft rule', () => {
  const src = new CountingSource({ train: 100, test: 100 });
  const v = new SpacedView(src, { T: 5, nData: 10 });
  assert.deepEqual(starts(v), [0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
  assert.deepEqual(v.get(9).indices, [90, 91, 92, 93, 94]);
  // No `hi ≤ n_data` assertion (§10.1 item 2): 100 frames, 10 windows is fine.
  assert.deepEqual(starts(new SpacedView(src, { T: 5, nData: 4, frameRange: [20, 100] })), [20, 40, 60, 80]);
  assert.throws(() => new SpacedView(src, { T: 5, nData: 7 }), (e: Error) => e instanceof OptionError && /spacing .* = 14 is a positive multiple of T = 5/.test(e.message));
  const p = new SpacedView(src, { T: 6, nData: 7, flavour: 'plaicraft' });
  assert.equal(p.spacing, 12); // ⌊100/7⌋ = 14, minus 14 mod 6
  assert.deepEqual(starts(p), [0, 12, 24, 36, 48, 60, 72]);
  assert.throws(() => new SpacedView(src, { T: 20, nData: 5, flavour: 'plaicraft' }), /exceeds T = 20/);
});

test('windows straddling chunk boundaries work in every view (real chunked store)', async () => {
  registerDataset('t_ref', { path: REF, T: 4, imageSize: 4 });
  after(() => unregisterDataset('t_ref'));
  const { dataset: c } = await getEvalDataset('t_ref', { config: 'chunked', frameRange: [6, null], train: true });
  assert.deepEqual(starts(c), [6, 10, 14, 18]);
  const item = c.get(0); // frames 6…9 span chunks 0 and 1 (chunk size 8)
  assert.deepEqual(item.indices, [6, 7, 8, 9]);
  assert.deepEqual(item.shape, [4, 3, 4, 4]);
  // Frame 8, pixel (0,0), channel 0 of the train stream: ((8·7) % 11)/10 = 0.1 → 2·0.1 − 1.
  assert.equal(item.frames[2 * 48], Math.fround(2 * 0.1 - 1));
  // Spaced with unaligned starts: spacing ⌊23/3⌋ = 7 = T; item 2 covers frames 15…21 (chunks 1 and 2).
  const s = new SpacedView((c as unknown as { source: FrameSource }).source, { T: 7, nData: 3, frameRange: [1, 24], split: 'test' });
  assert.deepEqual(starts(s), [1, 8, 15]);
  const last = s.get(2);
  assert.deepEqual(last.indices, [15, 16, 17, 18, 19, 20, 21]);
  // Test stream, frame 16, pixel (0,0), channel 0: ((16·7 + 4) % 11)/10 = 0.6.
  assert.equal(last.frames[1 * 48], Math.fround(2 * 0.6 - 1));
  // getInto fills slots of a [B, T, C, H, W] batch buffer.
  const batch = new Float32Array(2 * 7 * 48).fill(NaN);
  assert.deepEqual(s.getInto(0, batch.subarray(0, 7 * 48)), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(s.getInto(2, batch.subarray(7 * 48)), last.indices);
  assert.deepEqual(batch.subarray(7 * 48), last.frames);
  assert.deepEqual(batch.subarray(0, 7 * 48), s.get(0).frames);
  assert.throws(() => s.getInto(1, new Float32Array(10)), RangeError);
});

test('registry: names, defaults, streaming variants, folders, user registrations', () => {
  const b = resolveDataset('ball_stn');
  assert.deepEqual(b, { name: 'ball_stn', streaming: false, family: 'balls-stationary', path: 'datasets/ball_stn', T: 10, imageSize: 32, channels: 3 });
  const n = resolveDataset('streaming_ball_nstn');
  assert.equal(n.streaming, true);
  assert.equal(n.path, 'datasets/ball_nstn');
  assert.equal(n.family, 'balls-nonstationary');
  const m = resolveDataset('streaming_wmaze');
  assert.deepEqual([m.path, m.T, m.imageSize, m.family], ['datasets/windows_maze', 20, 64, 'maze']);
  const p = resolveDataset('plaicraft');
  assert.deepEqual([p.path, p.T, p.imageSize, p.channels], ['datasets/plaicraft', 20, 160, 4]);
  assert.ok(listDatasets().includes('streaming_plaicraft'));
  assert.throws(() => resolveDataset('no_such_dataset'), (e: Error) => e instanceof OptionError && /ball_stn, ball_nstn, wmaze, plaicraft/.test(e.message));
  const folder = resolveDataset(REF);
  assert.deepEqual([folder.family, folder.imageSize, folder.channels, folder.T, folder.path], ['balls-stationary', 4, 3, 10, REF]);
  registerDataset('my_cam', { path: '/data/cam', T: 16, imageSize: 64 });
  after(() => unregisterDataset('my_cam'));
  assert.deepEqual(resolveDataset('streaming_my_cam'), { name: 'streaming_my_cam', streaming: true, family: 'npy', path: '/data/cam', T: 16, imageSize: 64, channels: 3 });
  assert.throws(() => registerDataset('ball_stn', { path: 'x', T: 1, imageSize: 1 }), OptionError);
  assert.throws(() => registerDataset('streaming_x', { path: 'x', T: 1, imageSize: 1 }), OptionError);
  assert.throws(() => registerDataset('x', { path: 'x', T: 0, imageSize: 1 }), /for T/);
});

test('getEvalDataset follows the §2.4 table; test split unless train', async () => {
  for (const [name, family] of [['e_stn', 'balls-stationary'], ['e_nstn', 'balls-nonstationary'], ['e_maze', 'maze']] as const) {
    registerDataset(name, { path: REF, T: 4, imageSize: 4, family });
  }
  after(() => ['e_stn', 'e_nstn', 'e_maze'].forEach(unregisterDataset));
  const kind = async (name: string, config: 'default' | 'continuous' | 'chunked', extra = {}) => {
    const { dataset } = await getEvalDataset(name, { config, nData: 3, ...extra });
    return `${dataset.constructor.name}/${dataset.split}/${dataset.T}`;
  };
  assert.equal(await kind('e_stn', 'default'), 'ChunkedView/test/4');
  assert.equal(await kind('e_stn', 'continuous'), 'ContinuousView/test/4');
  assert.equal(await kind('e_nstn', 'default'), 'SpacedView/test/4');
  assert.equal(await kind('e_nstn', 'chunked', { train: true }), 'ChunkedView/train/4');
  assert.equal(await kind('e_maze', 'default', { T: 2 }), 'ChunkedView/test/2');
  await assert.rejects(getEvalDataset('e_nstn', {}), /nData/);
  await assert.rejects(getEvalDataset('e_stn', { config: 'spaced' as never }), /eval_dataset_config/);
  const { dataset: spaced } = await getEvalDataset('e_nstn', { nData: 3, frameRange: [0, 24] });
  assert.deepEqual(starts(spaced), [0, 8, 16]);
  const { dataset: t } = await getTestDataset('e_nstn', { nData: 2 });
  assert.deepEqual(starts(t), [0, 12]);
  const { info, dataset: train } = await getTrainDataset('streaming_e_stn');
  assert.equal(info.streaming, true);
  assert.equal(train.split, 'train');
  assert.equal(train.length, 21);
});
