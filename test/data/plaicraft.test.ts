/**
 * PLAICraft latent streams (REFERENCE_SPEC §2.6) against a tiny fixture made with PyTorch and
 * sqlite3 (test/fixtures/data/make-data.py): session selection and order, timeline arithmetic,
 * dequantisation bit-exact with PyTorch, windows spanning sessions and batch files.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileFormatError, OptionError } from '../../src/util/errors.ts';
import { PlaicraftClipSource, PlaicraftStore, readPlaicraftSessions } from '../../src/data/plaicraft.ts';
import { registerDataset, unregisterDataset } from '../../src/data/registry.ts';
import { getEvalDataset } from '../../src/data/datasets.ts';

const FIX = path.join(import.meta.dirname, '../fixtures/data');
const ROOT = path.join(FIX, 'plaicraft');
const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'plaicraft-expected.json'), 'utf8')) as Record<string, number[]>;

test('sessions: video = 1 only, ordered by start time, ⌊frame_count/3⌋ latent frames each', async () => {
  const train = await readPlaicraftSessions(ROOT, ['Alex']);
  assert.deepEqual(train.map((s) => [s.sessionId, s.start, s.end]), [['s-a1', 0, 103], ['s-a2', 103, 109]]);
  assert.equal(train[0]!.dir, path.join(ROOT, 'alex@example.com', 's-a1', 'encoded_video'));
  const both = await readPlaicraftSessions(ROOT, ['Kyrie', 'Alex']); // player order, then time order
  assert.deepEqual(both.map((s) => [s.sessionId, s.start]), [['s-k1', 0], ['s-k2', 10], ['s-a1', 15], ['s-a2', 118]]);
  assert.deepEqual(await readPlaicraftSessions(ROOT, ['Nobody']), []);
});

test('windows across batch files and sessions equal PyTorch dequantisation (float16-rounded)', async () => {
  const store = await PlaicraftStore.open(ROOT);
  assert.equal(store.frameCount('train'), 109);
  assert.equal(store.frameCount('test'), 15);
  assert.deepEqual(store.frameShape('train'), [4, 2, 3]);
  const w = store.readFrames('train', 98, 10); // batch_0000 → batch_0001 → next session
  assert.deepEqual(w.shape, [10, 4, 2, 3]);
  assert.deepEqual(Array.from(w.data), expected.train_98_10);
  assert.deepEqual(Array.from(store.readFrames('test', 8, 5).data), expected.test_8_5);
  assert.throws(() => store.readFrames('train', 105, 5), OptionError);
});

test('players are configurable; output_fps validated; missing batch files are named', async () => {
  const swapped = await PlaicraftStore.open(ROOT, { playersTrain: ['Kyrie'], playersTest: ['Alex'] });
  assert.deepEqual(Array.from(swapped.readFrames('train', 8, 5).data), expected.test_8_5);
  await assert.rejects(PlaicraftStore.open(ROOT, { outputFps: 30 }), /outputFps/);
  await assert.rejects(PlaicraftStore.open(ROOT, { playersTrain: [] }), /playersTrain/);
  await assert.rejects(PlaicraftStore.open(path.join(FIX, 'npy')), (e: Error) => e instanceof FileFormatError && /global_database\.db/.test(e.message));
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-plaicraft-'));
  fs.cpSync(ROOT, copy, { recursive: true });
  fs.rmSync(path.join(copy, 'alex@example.com', 's-a1', 'encoded_video', 'batch_0001.pt'));
  const broken = await PlaicraftStore.open(copy);
  broken.readFrames('train', 0, 100);
  assert.throws(() => broken.readFrames('train', 99, 2), (e: Error) => e instanceof FileFormatError && /s-a1\/encoded_video\/batch_0001\.pt: missing batch file/.test(e.message));
});

test('evaluation views: Spaced with the PLAICraft rule, custom clip (c6f25f7)', async () => {
  registerDataset('t_plaicraft', { path: ROOT, T: 5, imageSize: 160, channels: 4, family: 'plaicraft' });
  after(() => unregisterDataset('t_plaicraft'));
  const { dataset } = await getEvalDataset('t_plaicraft', { nData: 2, T: 4 });
  assert.equal(dataset.constructor.name, 'SpacedView');
  assert.equal(dataset.split, 'test');
  // test timeline 15 frames: spacing ⌊15/2⌋ = 7 > 4 → 7 − 7 mod 4 = 4
  assert.deepEqual([dataset.startOf(0), dataset.startOf(1)], [0, 4]);
  const store = await PlaicraftStore.open(ROOT);
  assert.deepEqual(dataset.get(1).frames, store.readFrames('test', 4, 4).data);
  assert.deepEqual(dataset.get(1).indices, [4, 5, 6, 7]);
  const { dataset: cont } = await getEvalDataset('t_plaicraft', { config: 'continuous', train: true });
  assert.equal(cont.length, 109 - 5 + 1);
  const clip = new PlaicraftClipSource(path.join(FIX, 'plaicraft-clip'));
  assert.equal(clip.frameCount('test'), 5);
  const { dataset: custom } = await getEvalDataset('t_plaicraft', { customClipPath: path.join(FIX, 'plaicraft-clip'), T: 3 });
  assert.equal(custom.length, 3);
  custom.setTest(); // a no-op split switch (corrected §10.1 item 13)
  const item = custom.get(1); // frames 1…3: spans batch_a (3 frames) and batch_b
  assert.deepEqual(item.indices, [1, 2, 3]);
  assert.deepEqual(Array.from(item.frames), Array.from(clip.readFrames('train', 1, 3).data));
});
