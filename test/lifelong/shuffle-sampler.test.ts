/**
 * Offline shuffling sampler (REFERENCE_SPEC §3.1): NumPy-identical permutations per epoch
 * (values printed by NumPy 1.24: RandomState(7).permutation(10) and RandomState(8).permutation(10)),
 * padding to a multiple of the world size, rank striding, batches, state round trip.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { NumpyRandomState } from '../../src/util/mt19937.ts';
import { ShuffleSampler, permuteInPlace } from '../../src/lifelong/shuffle-sampler.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-shuffle-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

const PERM_7 = [8, 5, 0, 2, 1, 9, 7, 3, 6, 4]; // np.random.RandomState(7).permutation(10)
const PERM_8 = [8, 6, 9, 0, 2, 5, 7, 1, 4, 3]; // np.random.RandomState(8).permutation(10)

test('permuteInPlace equals NumPy RandomState.permutation', () => {
  const a = [...Array(10).keys()];
  permuteInPlace(a, new NumpyRandomState(7));
  assert.deepEqual(a, PERM_7);
  const b = [...Array(300).keys()];
  permuteInPlace(b, new NumpyRandomState(3));
  assert.deepEqual(b.slice(0, 12), [84, 217, 211, 286, 31, 134, 201, 248, 16, 177, 25, 109]);
});

test('epochs reshuffle with seed + epoch; ranks stride over a padded list', () => {
  const ranks = [0, 1, 2].map((rank) => new ShuffleSampler({ datasetLength: 10, globalBatch: 6, seed: 7, worldSize: 3, rank, epochs: 2 }));
  const padded0 = [...PERM_7, ...PERM_7.slice(0, 2)]; // 12 = ⌈10/3⌉·3
  const padded1 = [...PERM_8, ...PERM_8.slice(0, 2)];
  ranks.forEach((s, r) => {
    const batches = [...s];
    assert.deepEqual(batches.map((b) => [b.epoch, b.batchInEpoch]), [[0, 0], [0, 1], [1, 0], [1, 1]]);
    assert.deepEqual(batches.slice(0, 2).flatMap((b) => b.indices), padded0.filter((_, k) => k % 3 === r));
    assert.deepEqual(batches.slice(2).flatMap((b) => b.indices), padded1.filter((_, k) => k % 3 === r));
    assert.equal(s.nextBatch(), undefined);
  });
});

test('last batch of an epoch may be smaller (no drop-last); no shuffle = identity order', () => {
  const s = new ShuffleSampler({ datasetLength: 5, globalBatch: 2, shuffle: false, epochs: 1 });
  assert.deepEqual([...s].map((b) => b.indices), [[0, 1], [2, 3], [4]]);
  assert.equal(new ShuffleSampler({ datasetLength: 0, globalBatch: 2 }).nextBatch(), undefined);
});

test('state round trip continues identically (incl. across epoch boundaries)', () => {
  const opts = { datasetLength: 13, globalBatch: 4, seed: 1, worldSize: 2, rank: 1, epochs: 5 };
  const a = new ShuffleSampler(opts);
  for (let i = 0; i < 4; i++) a.nextBatch(); // exactly one epoch (⌈13/2⌉ = 7 samples → 4 batches)
  const file = path.join(tmp, 'shuffle.json');
  a.saveState(file);
  assert.deepEqual([a.getState().epoch, a.getState().batchInEpoch], [1, 0]);
  const b = new ShuffleSampler(opts);
  b.loadState(file);
  assert.deepEqual([...b], [...a]);
  assert.throws(() => new ShuffleSampler({ ...opts, seed: 2 }).loadState(file), /seed/);
});
