import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  chunkSizeFor,
  defaultFrames,
  methodTrainOptions,
  parseMethods,
  resolveLifelongSettings,
  runLifelongBalls,
  segmentRange,
  type LifelongBallsResult,
} from '../../src/experiments/lifelong-balls.ts';
import { resolveTrainOptions } from '../../src/training/options.ts';
import { ReplaySampler } from '../../src/lifelong/replay-sampler.ts';
import { main } from '../../src/cli/main.ts';
import { OptionError } from '../../src/util/errors.ts';
import { loadSafetensors } from '../../src/io/safetensors.ts';
import { rmTmp, tmpDir } from './helpers.ts';

test('segment ranges tile n windows of T frames exactly at the start and the end of the stream', () => {
  // 20 % of 3000 = 600 frames hold one block of 50 windows of 10 (500 frames, spacing 10).
  assert.deepEqual(segmentRange('early', 3000, 0.2, 50, 10, '--eval-windows'), [0, 500]);
  assert.deepEqual(segmentRange('late', 3000, 0.2, 50, 10, '--eval-windows'), [2500, 3000]);
  // 20 windows of 10: 3 blocks of 200 → spacing 30.
  assert.deepEqual(segmentRange('early', 3000, 0.2, 20, 10, '--eval-windows'), [0, 600]);
  // 4 videos of 30 frames: blocks of 120 → 5 · 120 = 600.
  assert.deepEqual(segmentRange('late', 3000, 0.2, 4, 30, '--eval-videos'), [2400, 3000]);
  assert.deepEqual(segmentRange('late', 2900, 0.2, 4, 30, '--eval-videos'), [2420, 2900]);
  // 42 frames hold at most 4 windows of 10.
  assert.deepEqual(segmentRange('early', 210, 0.2, 4, 10, '--eval-windows'), [0, 40]);
  assert.throws(() => segmentRange('early', 210, 0.2, 5, 10, '--eval-windows'), (e: unknown) => e instanceof OptionError && e.option === '--eval-windows');
});

test('stream length defaults and chunking', () => {
  assert.equal(chunkSizeFor(210), 210);
  assert.equal(chunkSizeFor(3010), 602); // 3010 = 2·5·7·43: divisors 602, 430, 301, 215 in [100, 1000]
  assert.equal(chunkSizeFor(1_000_000), 1000);
  assert.equal(chunkSizeFor(10 * 1009), undefined); // only tiny divisors
  assert.equal(defaultFrames(3009), 3010);
  assert.equal(defaultFrames(209), 210);
  assert.equal(defaultFrames(10 * 1009 - 5), 10100); // 10090 = 2·5·1009 has no chunk size; 10100 = 20 · 505
  assert.equal(chunkSizeFor(10100), 505);
  const s = resolveLifelongSettings({ steps: 3000 });
  assert.equal(s.frames, 3010);
  assert.equal(s.windows, 3001);
  assert.equal(s.ltmSize, 150); // 5 % of the windows
  const d = resolveLifelongSettings({});
  assert.deepEqual([d.steps, d.frames, d.evalWindows], [2000, 2010, 40]);
  // the defaults fit: 40 windows of 10 and 4 videos of 30 frames in 20 % of 2010 frames
  assert.deepEqual(segmentRange('early', d.frames, d.segment, d.evalWindows, d.maxFrames, '--eval-windows'), [0, 400]);
  assert.deepEqual(segmentRange('late', d.frames, d.segment, d.evalVideos, d.sampleLength, '--eval-videos'), [1650, 2010]);
  assert.throws(() => resolveLifelongSettings({ steps: 500, frames: 300 }), (e: unknown) => e instanceof OptionError && e.option === '--steps');
  assert.doesNotThrow(() => resolveLifelongSettings({ steps: 500, frames: 300, methods: ['offline'] }));
  assert.throws(() => resolveLifelongSettings({ numChannels: 48 }), (e: unknown) => e instanceof OptionError && e.option === '--num-channels');
  assert.deepEqual(parseMethods('no-replay, offline,no-replay'), ['no-replay', 'offline']);
  assert.throws(() => parseMethods('offline,er'), (e: unknown) => e instanceof OptionError && e.option === '--methods');
});

test('the three regimes: offline shuffles the folder, replay = 1 live + reservoir draws, no-replay = all live', () => {
  const s = resolveLifelongSettings({ steps: 90, frames: 100, batchSize: 3, ltmSize: 7 });
  const off = resolveTrainOptions([methodTrainOptions('offline', s, '/data/b', '/ck')]);
  assert.equal(off.dataset, '/data/b');
  const rep = resolveTrainOptions([methodTrainOptions('replay', s, '/data/b', '/ck')]);
  const nor = resolveTrainOptions([methodTrainOptions('no-replay', s, '/data/b', '/ck')]);
  for (const o of [off, rep, nor]) {
    assert.equal(o.maxSteps, 90);
    assert.equal(o.batchSize, 3);
    assert.equal(o.seed, 0);
    assert.equal(o.stepsPerExperience, 1);
  }
  assert.equal(rep.dataset, 'streaming_/data/b');
  assert.equal(nor.dataset, 'streaming_/data/b');
  const stream = (o: typeof rep) => new ReplaySampler({ streamLength: 91, globalBatch: o.batchSize, nSequential: o.nSampleStm, bufferSize: o.ltmSize, seed: o.dataSeed });
  const r = stream(rep);
  const n = stream(nor);
  for (let i = 0; i < 91; i++) {
    const a = r.nextBatch()!;
    const b = n.nextBatch()!;
    assert.deepEqual(b.indices, [i, i, i], 'no replay: every slot is the live window');
    assert.equal(a.indices[0], i, 'replay: slot 0 is the live window');
    if (i > 0) for (const j of a.indices.slice(1)) assert.ok(j < i, 'replay slots hold earlier windows');
  }
  assert.equal(r.bufferContent.length, 7);
  assert.equal(n.bufferContent.length, 0);
});

let root = '';
let first: LifelongBallsResult;
before(async () => {
  root = tmpDir('lifelong-balls');
  first = await runLifelongBalls({ root, small: true });
});
after(() => rmTmp(root));

test('a tiny run writes a report and a CSV with finite losses for every method and both segments', () => {
  assert.ok(fs.existsSync(first.report));
  const html = fs.readFileSync(first.report, 'utf8');
  for (const m of ['offline', 'replay', 'no-replay']) assert.ok(html.includes(m), `report mentions ${m}`);
  assert.ok(html.includes('<svg'), 'the report has charts');
  const rows = fs.readFileSync(first.csv, 'utf8').trim().split('\n').map((l) => l.split(','));
  const cols = rows[0]!;
  assert.deepEqual(cols.slice(0, 7), ['method', 'segment', 'lo', 'hi', 'windows', 'loss', 'loss_se']);
  const body = rows.slice(1);
  assert.equal(body.length, 6);
  const seen = new Set<string>();
  for (const r of body) {
    seen.add(`${r[0]}/${r[1]}`);
    const loss = Number(r[cols.indexOf('loss')]);
    assert.ok(Number.isFinite(loss) && loss > 0, `loss ${r.join(',')}`);
    assert.equal(Number(r[cols.indexOf('steps')]), 6);
    assert.ok(Number.isFinite(Number(r[cols.indexOf('train_s')])));
  }
  assert.deepEqual([...seen].sort(), ['no-replay/early', 'no-replay/late', 'offline/early', 'offline/late', 'replay/early', 'replay/late']);
  // early windows come from the start of the 200-frame test stream, late ones from its end
  const early = body.find((r) => r[1] === 'early')!;
  const late = body.find((r) => r[1] === 'late')!;
  assert.deepEqual([Number(early[2]), Number(early[3])], [0, 40]);
  assert.deepEqual([Number(late[2]), Number(late[3])], [160, 200]);
  const json = JSON.parse(fs.readFileSync(first.json, 'utf8')) as { results: { perWindow: number[] }[] };
  for (const r of json.results) assert.equal(r.perWindow.length, 2);
  for (const run of first.runs) assert.ok(fs.existsSync(run.checkpoint), run.checkpoint);
});

test('the CLI reruns the evaluation on finished runs without retraining them', async () => {
  const ckpt = first.runs.find((r) => r.method === 'no-replay')!.checkpoint;
  const mtime = fs.statSync(ckpt).mtimeMs;
  const code = await main(['experiment', 'lifelong-balls', '--small', '--root', root, '--methods', 'offline,no-replay', '--quiet']);
  assert.equal(code, 0);
  assert.equal(fs.statSync(ckpt).mtimeMs, mtime, 'the no-replay run was reused');
  const rows = fs.readFileSync(path.join(root, 'summarized', 'lifelong-balls', 'summary.csv'), 'utf8').trim().split('\n').slice(1);
  assert.deepEqual(rows.map((r) => r.split(',').slice(0, 2).join('/')), ['offline/early', 'offline/late', 'no-replay/early', 'no-replay/late']);
  const again = JSON.parse(fs.readFileSync(path.join(root, 'summarized', 'lifelong-balls', 'results.json'), 'utf8')) as { runs: { reused: boolean }[]; results: { loss: number }[] };
  assert.ok(again.runs.every((r) => r.reused));
  // same weights, same windows, same noise → the same losses
  const before = first.results.filter((r) => r.method !== 'replay').map((r) => r.loss);
  assert.deepEqual(again.results.map((r) => r.loss), before);
});

test('an interrupted run is resumed from its last checkpoint and ends with the same weights', async () => {
  const dir = tmpDir('lifelong-balls-resume');
  try {
    const o = { root: dir, small: true, methods: ['no-replay' as const], saveInterval: 3 };
    const full = await runLifelongBalls(o);
    const runDir = full.runs[0]!.runDir;
    const weights = () => {
      const t = loadSafetensors(path.join(runDir, 'model000006.safetensors')).tensors;
      return Object.fromEntries(Object.entries(t).map(([k, v]) => [k, Buffer.from(v.data)]));
    };
    const finalWeights = weights();
    // Simulate a crash after the step-3 checkpoint: drop the step-6 set and mark the run unfinished.
    for (const f of fs.readdirSync(runDir)) if (/000006\.(safetensors|json)$/.test(f)) fs.rmSync(path.join(runDir, f));
    const sigFile = path.join(runDir, 'lifelong-balls.json');
    fs.writeFileSync(sigFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(sigFile, 'utf8')), finished: false }));
    const lines: string[] = [];
    const resumed = await runLifelongBalls({ ...o, log: (l) => lines.push(l) });
    assert.ok(lines.some((l) => /resuming the interrupted run .* from step 3/.test(l)), lines.join('\n'));
    assert.equal(resumed.runs[0]!.reused, false);
    // Same tensors bit for bit (the metadata differs: it records --resume-id).
    assert.deepEqual(weights(), finalWeights);
    assert.deepEqual(resumed.results.map((r) => r.loss), full.results.map((r) => r.loss));
  } finally {
    rmTmp(dir);
  }
});
