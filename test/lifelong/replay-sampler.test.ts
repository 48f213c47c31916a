/**
 * Replay sampler (REFERENCE_SPEC §3.2, acceptance test §11.3): stream order, live/replay slots,
 * reservoir statistics (closed-form inclusion probabilities), identical buffers across ranks,
 * exact resume, reference replay_state.pt import/export.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileFormatError, OptionError } from '../../src/util/errors.ts';
import { NumpyRandomState } from '../../src/util/mt19937.ts';
import { ReplaySampler, type ReplayBatch, type ReplaySamplerOptions } from '../../src/lifelong/replay-sampler.ts';
import { readReferenceReplayState } from '../../src/io/reference-checkpoint.ts';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/io');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-replay-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

test('stream order and live/replay composition (one rank)', () => {
  const s = new ReplaySampler({ streamLength: 30, globalBatch: 4, nSequential: 1, bufferSize: 5, seed: 3 });
  let expectPos = 0;
  for (;;) {
    const before = s.bufferContent;
    const b = s.nextBatch();
    if (!b) break;
    assert.equal(b.position, expectPos++);
    assert.equal(b.indices.length, 4);
    if (b.position === 0) {
      assert.deepEqual(b.indices, [0, 0, 0, 0]); // i = 0: every slot is the current window
      assert.deepEqual(b.live, [true, true, true, true]);
      continue;
    }
    assert.equal(b.indices[0], b.position);
    assert.deepEqual(b.live, [true, false, false, false]);
    for (const r of b.indices.slice(1)) {
      assert.ok(r < b.position, 'replay draws are past positions');
      assert.ok(before.includes(r), 'replay draws come from the buffer before the update');
    }
    assert.ok(s.bufferContent.length <= 5);
  }
  assert.equal(expectPos, 30);
  assert.equal(s.nextBatch(), undefined); // end of stream stays ended, no exception
  assert.equal(s.done, true);
  assert.deepEqual([...s], []);
});

test('iterator yields one batch per position and then completes', () => {
  const s = new ReplaySampler({ streamLength: 12, globalBatch: 2, nSequential: 2, bufferSize: -1 }); // pure online
  const batches = [...s];
  assert.deepEqual(batches.map((b) => b.position), [...Array(12).keys()]);
  for (const b of batches) assert.deepEqual(b.indices, [b.position, b.position]);
});

test('several ranks: rank-major live slots, identical buffers, different replay draws', () => {
  const opts = { streamLength: 60, globalBatch: 6, nSequential: 3, bufferSize: 7, seed: 11 };
  const ranks = [0, 1, 2].map((rank) => new ReplaySampler({ ...opts, worldSize: 3, rank }));
  const draws: number[][] = [[], [], []];
  for (let i = 0; i < 60; i++) {
    const bs = ranks.map((r) => r.nextBatch()!) as ReplayBatch[];
    for (const b of bs) assert.equal(b.position, i);
    if (i > 0) {
      // Global slots 0,1 (rank 0) and 2 (rank 1, slot 0) are live; the rest replay.
      assert.deepEqual(bs.map((b) => b.live), [[true, true], [true, false], [false, false]]);
      assert.deepEqual(bs[0]!.indices, [i, i]);
      assert.equal(bs[1]!.indices[0], i);
      draws[1]!.push(bs[1]!.indices[1]!);
      draws[2]!.push(...bs[2]!.indices);
    }
    const buf = ranks[0]!.bufferContent;
    assert.deepEqual(ranks[1]!.bufferContent, buf);
    assert.deepEqual(ranks[2]!.bufferContent, buf);
    assert.ok(buf.length <= 7);
  }
  assert.notDeepEqual(draws[1], draws[2]!.filter((_, k) => k % 2 === 0), 'sample RNGs are seeded seed + rank');
});

/** Inclusion frequency of every position in the final reservoir over `runs` seeds. */
function inclusion(reservoir: 'faithful' | 'vitter', k: number, n: number, runs: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (let r = 0; r < runs; r++) {
    const s = new ReplaySampler({ streamLength: n, globalBatch: 1, nSequential: 1, bufferSize: k, seed: 1000 + r, reservoir });
    while (s.nextBatch());
    for (const p of s.bufferContent) counts[p]!++;
  }
  return counts;
}

function chiSquare(counts: number[], probs: number[], runs: number): number {
  return counts.reduce((acc, c, i) => acc + (c - runs * probs[i]!) ** 2 / (runs * probs[i]!), 0);
}

test('reservoir inclusion probabilities: Vitter is uniform, faithful has the closed-form bias', () => {
  const k = 10;
  const n = 200;
  const runs = 6000;
  // Chi-square with ~199 degrees of freedom: mean 199, sd ≈ 20; 320 is a > 6-sigma bound.
  const vitter = inclusion('vitter', k, n, runs);
  assert.ok(vitter.reduce((a, b) => a + b) === k * runs);
  const uniform = new Array<number>(n).fill(k / n);
  const chiV = chiSquare(vitter, uniform, runs);
  assert.ok(chiV < 320, `Vitter chi-square ${chiV.toFixed(1)}`);
  // Faithful rule (j ~ U{0…i−1}): position i ≥ k enters with probability k/i and survives each
  // later step m with probability 1 − 1/m, so P = (k/i)·(i/(n−1)) = k/(n−1); the first k positions
  // only survive: P = (k−1)/(n−1). The earliest positions are under-represented.
  const faithfulP = Array.from({ length: n }, (_, i) => (i < k ? (k - 1) / (n - 1) : k / (n - 1)));
  const faithful = inclusion('faithful', k, n, runs);
  const chiF = chiSquare(faithful, faithfulP, runs);
  assert.ok(chiF < 320, `faithful chi-square against its closed form ${chiF.toFixed(1)}`);
  // The early-position deficit is visible: mean inclusion of positions 0…k−1.
  const early = (c: number[]) => c.slice(0, k).reduce((a, b) => a + b) / (k * runs);
  const se = Math.sqrt((0.05 * 0.95) / (k * runs)); // ≈ 0.00089
  assert.ok(Math.abs(early(vitter) - k / n) < 3.5 * se, `Vitter early mean ${early(vitter)}`);
  assert.ok(Math.abs(early(faithful) - (k - 1) / (n - 1)) < 3.5 * se, `faithful early mean ${early(faithful)}`);
  assert.ok(early(faithful) < k / n - 3.5 * se, 'faithful rule is biased against the first positions');
});

test('validation: replay slots need a buffer (clear OptionError naming the flags)', () => {
  const bad = (o: Partial<ReplaySamplerOptions>, re: RegExp) =>
    assert.throws(() => new ReplaySampler({ streamLength: 10, globalBatch: 4, nSequential: 1, bufferSize: 5, ...o }), (e: unknown) => e instanceof OptionError && re.test(e.message));
  bad({ nSequential: -1, bufferSize: -1 }, /--ltm-size.*--n-sample-stm/); // the reference defaults
  bad({ nSequential: 1, bufferSize: 0 }, /--ltm-size/);
  bad({ globalBatch: 6, worldSize: 4 }, /--batch-size/);
  bad({ rank: 2, worldSize: 2, globalBatch: 4 }, /rank/);
  bad({ streamLength: -3 }, /streamLength/);
  // Pure online training needs no buffer; bufferSize undefined means len(dataset).
  assert.doesNotThrow(() => new ReplaySampler({ streamLength: 10, globalBatch: 4, nSequential: 4, bufferSize: -1 }));
  assert.equal(new ReplaySampler({ streamLength: 10, globalBatch: 4, nSequential: 1 }).config.bufferSize, 10);
  // nSequential ≤ 0 with a buffer: every slot after position 0 is a replay draw.
  const s = new ReplaySampler({ streamLength: 5, globalBatch: 2, nSequential: 0, bufferSize: 3 });
  assert.deepEqual(s.nextBatch()!.indices, [0, 0]);
  assert.deepEqual(s.nextBatch()!.indices, [0, 0]); // only position 0 is in the buffer at i = 1
});

test('state save/restore continues the identical sequence (JSON file round trip)', () => {
  const opts: ReplaySamplerOptions = { streamLength: 80, globalBatch: 4, nSequential: 1, bufferSize: 6, seed: 5, worldSize: 2, rank: 1, reservoir: 'vitter' };
  const a = new ReplaySampler(opts);
  for (let i = 0; i < 37; i++) a.nextBatch();
  const file = path.join(tmp, 'sampler.json');
  a.saveState(file);
  const st = a.getState();
  assert.equal(st.nextIndex, 37);
  assert.equal(st.lastConsumed, 36);
  const b = new ReplaySampler(opts);
  b.loadState(file);
  assert.deepEqual([...b], [...a]);
  // Mismatched flags are refused, naming the flag.
  const c = new ReplaySampler({ ...opts, bufferSize: 7 });
  assert.throws(() => c.setState(st), (e: unknown) => e instanceof OptionError && /--ltm-size/.test(e.message));
  fs.writeFileSync(file, '{"kind":"other"}');
  assert.throws(() => b.loadState(file), (e: unknown) => e instanceof FileFormatError && e.message.startsWith(file));
  assert.throws(() => b.setState({ ...st, buffer: [999] }), /buffer must hold integers/);
});

test('reference replay_state.pt: export/import (RNGs restart from their seeds, faithful)', () => {
  const opts: ReplaySamplerOptions = { streamLength: 100, globalBatch: 3, nSequential: 1, bufferSize: 6, seed: 2 };
  const a = new ReplaySampler(opts);
  for (let i = 0; i < 20; i++) a.nextBatch();
  const ref = a.toReferenceState();
  assert.equal(ref.next_index, 20);
  assert.deepEqual(ref.buffer_indices, a.bufferContent);
  const b = new ReplaySampler(opts);
  b.loadReferenceState(ref);
  assert.equal(b.nextIndex, 20);
  assert.deepEqual(b.bufferContent, ref.buffer_indices);
  // The first replay draw after resuming uses a freshly seeded sample RNG.
  const fresh = new NumpyRandomState(2);
  const batch = b.nextBatch()!;
  assert.equal(batch.position, 20);
  assert.equal(batch.indices[1], ref.buffer_indices[fresh.randint(0, ref.buffer_indices.length)]);
  // The file written by the reference (fixture from PyTorch).
  const c = new ReplaySampler(opts);
  c.loadReferenceState(readReferenceReplayState(path.join(FIX, 'replay_state.pt')));
  assert.equal(c.nextBatch()!.position, 57);
  assert.throws(() => c.loadReferenceState({ next_index: 3, buffer_indices: [5] }), /buffer_indices must be integers in \[0, next_index=3\)/);
});
