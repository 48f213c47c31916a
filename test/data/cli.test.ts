/**
 * `flexvid data …` end to end, in process: generate a small stream (2000 frames, chunks of 500)
 * with two render threads, describe it, preview it as a GIF, and reject bad flags.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../../src/cli/main.ts';
import { readNpy } from '../../src/data/npy.ts';
import { NumpyRandomState } from '../../src/util/mt19937.ts';
import { simulateBalls } from '../../src/data/balls.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-cli-'));
const FIX = path.join(import.meta.dirname, '../fixtures/data');

/** Run the CLI, capturing stdout and stderr. */
async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  // Only strings are captured: under `node --test` the runner reports through stdout as binary
  // (serialised) chunks, which must pass through while a command runs.
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? ((out += s), true) : ow(s, ...rest))) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? ((err += s), true) : ew(s, ...rest))) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

before(() => {
  process.env.FLEXVID_QUIET = '1';
});
after(() => {
  delete process.env.FLEXVID_QUIET;
});

test('data balls → info → preview', async () => {
  const out = path.join(tmp, 'ball_nstn');
  const g = await run('data', 'balls', '--out', out, '--frames', '2000', '--chunk-size', '500', '--color-shift', '--workers', '2');
  assert.equal(g.code, 0, g.err);
  assert.match(g.out, /2000 frames per stream, 8 chunks rendered/);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.equal(cfg.color_shift, true);
  const pos = readNpy(path.join(out, 'test', '0', 'ball_positions.npy'));
  const rng = new NumpyRandomState(0);
  simulateBalls(rng, { frames: 2000 });
  assert.deepEqual(pos.data, simulateBalls(rng, { frames: 2000, colorShift: true }).positions);

  const info = await run('data', 'info', out, '--T', '10', '--json');
  assert.equal(info.code, 0, info.err);
  const j = JSON.parse(info.out);
  assert.equal(j.family, 'balls-nonstationary');
  assert.deepEqual(j.splits.map((s: { split: string; frames: number; chunks: number; frameShape: number[]; dtype: string; views: object }) => [s.split, s.frames, s.chunks, s.frameShape, s.dtype, s.views]), [
    ['train', 2000, 4, [3, 32, 32], '|u1', { continuous: 1991, chunked: 200 }],
    ['test', 2000, 4, [3, 32, 32], '|u1', { continuous: 1991, chunked: 200 }],
  ]);
  const text = await run('data', 'info', out);
  assert.match(text.out, /train\s+2000 frames, 4 chunks, 32×32×3 \|u1; T=10: continuous 1991 windows, chunked 200/);

  const gif = path.join(tmp, 'clip.gif');
  const p = await run('data', 'preview', out, '--split', 'test', '--start', '490', '--frames', '20', '--scale', '2', '--out', gif);
  assert.equal(p.code, 0, p.err);
  assert.match(p.out, /frames 490…509 of the test stream \(64×64\)/);
  const bytes = fs.readFileSync(gif);
  assert.equal(bytes.subarray(0, 6).toString('latin1'), 'GIF89a');
  assert.equal(bytes.readUInt16LE(6), 64);
});

test('reference snake_case flags are accepted; a reference float64 folder can be described', async () => {
  const out = path.join(tmp, 'snake');
  const g = await run('data', 'balls', '--save_dir', out, '--T_total', '40', '--chunk_size', '20', '--num_balls', '3', '--resolution', '8', '--workers', '1');
  assert.equal(g.code, 0, g.err);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.deepEqual([cfg.T_total, cfg.chunk_size, cfg.num_balls, cfg.save_dir], [40, 20, 3, out]);
  const info = await run('data', 'info', path.join(FIX, 'ref-f8'), '--json');
  assert.equal(JSON.parse(info.out).splits[0].dtype, '<f8');
});

test('bad flags and bad folders give a message naming the flag or file and a non-zero exit', async () => {
  const r1 = await run('data', 'balls', '--out', path.join(tmp, 'x'), '--frames', '1000', '--chunk-size', '300');
  assert.equal(r1.code, 1);
  assert.match(r1.err, /flexvid: Expected a divisor of --frames 1000 for --chunk-size but received 300/);
  const r2 = await run('data', 'balls', '--out', path.join(tmp, 'x'), '--frames', 'lots');
  assert.equal(r2.code, 1);
  assert.match(r2.err, /for --frames but received "lots"/);
  const r3 = await run('data', 'balls', '--frames', '10');
  assert.match(r3.err, /for --out/);
  const r4 = await run('data', 'balls', '--out', path.join(tmp, 'x'), '--dtype', 'int16');
  assert.equal(r4.code, 2); // commander usage error
  const r5 = await run('data', 'info', path.join(tmp, 'nothing-here'));
  assert.equal(r5.code, 1);
  assert.match(r5.err, /for dataset but received/);
  fs.mkdirSync(path.join(tmp, 'empty'));
  const r6 = await run('data', 'info', path.join(tmp, 'empty'));
  assert.match(r6.err, /empty\/config\.json: missing dataset config/);
  const r7 = await run('data', 'preview', path.join(FIX, 'ref-f8'), '--start', '99', '--out', path.join(tmp, 'p.gif'));
  assert.match(r7.err, /for --start but received 99/);
});
