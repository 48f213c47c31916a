import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { getEvalDataset } from '../../src/data/datasets.ts';
import { readMetricFile } from '../../src/metrics/results.ts';
import { main } from '../../src/cli/main.ts';
import { runMinade } from '../../src/experiments/minade.ts';
import { itemU8, makeBalls, makeEvalDir, rmTmp, tmpDir, writeSample } from './helpers.ts';

let dir = '';
before(() => {
  dir = tmpDir('minade');
});
after(() => rmTmp(dir));

test('samples equal to the ground truth: minADE 0, colour accuracy 1 (stationary balls, Chunked view, §8.4)', async () => {
  const data = await makeBalls(dir);
  const evalDir = makeEvalDir(dir, 'autoreg_8_10_2_default_0_None_test', data);
  const { dataset } = await getEvalDataset(data, { T: 10 });
  for (let i = 0; i < 3; i++) {
    writeSample(evalDir, i, 0, itemU8(dataset, i), 10);
    writeSample(evalDir, i, 1, itemU8(dataset, i + 5), 10); // a wrong seed: the min/max over seeds ignore it
  }
  const code = await main(['minade', '--eval_dir', evalDir, '--sample_indices', '0,1']);
  assert.equal(code, 0);
  assert.equal(readMetricFile(path.join(evalDir, 'minADE-3.txt')), 0);
  assert.equal(readMetricFile(path.join(evalDir, 'color-acc-3.txt')), 1);
  assert.equal(fs.readFileSync(path.join(evalDir, 'minADE-3.txt'), 'utf8'), '0.000000000000000000e+00\n');
  assert.ok(fs.existsSync(path.join(evalDir, 'trans-kl-3.txt')));
  // The wrong seed alone is far off.
  const wrong = await runMinade({ evalDir, sampleIndices: [1], numVideos: 3 });
  assert.ok(wrong.minADE > 1, `minADE of unrelated videos ${wrong.minADE}`);
  assert.equal(wrong.perVideo.length, 3);
});

test('non-stationary balls (Spaced view): shifted kernels still give minADE 0 and accuracy 1 on the ground truth', async () => {
  const data = await makeBalls(dir, { colorShift: true });
  const evalDir = makeEvalDir(dir, 'hierarchy-2_8_10_2_default_0_None_test', data);
  const N = 4; // spacing ⌊200/4⌋ = 50, a multiple of T
  const { dataset } = await getEvalDataset(data, { T: 10, nData: N });
  assert.deepEqual([0, 1, 2, 3].map((i) => dataset.startOf(i)), [0, 50, 100, 150]);
  for (let i = 0; i < N; i++) writeSample(evalDir, i, 0, itemU8(dataset, i), 10);
  const r = await runMinade({ evalDir, numVideos: N });
  assert.equal(r.minADE, 0);
  assert.equal(r.colorAccuracy, 1);
  assert.equal(readMetricFile(r.files.colorAcc), 1);
  await assert.rejects(runMinade({ evalDir, numVideos: 3 }), /--num-videos|nData/); // spacing 66 is not a multiple of T
});
