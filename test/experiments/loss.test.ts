import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readMetricFile } from '../../src/metrics/results.ts';
import { Generator, randn } from '../../src/engine/index.ts';
import { main } from '../../src/cli/main.ts';
import { makeBalls, makeCheckpoint, rmTmp, tmpDir } from './helpers.ts';

let dir = '';
let ckpt = '';
before(async () => {
  dir = tmpDir('loss');
  const data = await makeBalls(dir);
  ckpt = makeCheckpoint(dir, data);
});
after(() => rmTmp(dir));

test('flexvid loss writes the latent-frame-weighted teacher-forced loss (§8.5)', async () => {
  const out = path.join(dir, 'eval');
  const code = await main([
    'loss', ckpt, '--stop_index', '2', '--batch-size', '2', '--n-obs', '3', '--T', '8', '--max-frames', '6',
    '--max-latent-frames', '3', '--trials', '2', '--eval-dir', out, '--device', 'cpu', '--quiet',
  ]);
  assert.equal(code, 0);
  const file = path.join(out, 'loss-2.txt');
  assert.match(fs.readFileSync(file, 'utf8'), /^\d\.\d{18}e[+-]\d\d\n$/);
  const loss = readMetricFile(file);
  assert.ok(Number.isFinite(loss));
  // The fresh model predicts ε = 0 exactly, so a stage's loss for video b is the mean of ε² over
  // all k·C·H·W entries with only the latent ones counted. Recompute it from the same noise
  // (Generator(seed 0), one [B, k, 3, 32, 32] draw per stage and trial, in order). Stages (autoreg,
  // T=8, n_obs=3, K=6, S=3): [0,1,2]→[3,4,5], [3,4,5]→[6,7].
  const stages = [{ k: 6, nLat: 3 }, { k: 5, nLat: 2 }];
  const g = new Generator(0);
  const B = 2;
  const per = 3 * 32 * 32;
  const num = [0, 0];
  for (const { k, nLat } of stages) {
    const stageLoss = [0, 0];
    for (let trial = 0; trial < 2; trial++) {
      const n = randn([B, k, 3, 32, 32], g);
      const v = n.toFloat32Array();
      n.dispose();
      for (let b = 0; b < B; b++) {
        let s = 0;
        for (let j = k - nLat; j < k; j++) for (let p = 0; p < per; p++) s += v[(b * k + j) * per + p]! ** 2;
        stageLoss[b]! += s / (k * per) / 2;
      }
    }
    for (let b = 0; b < B; b++) num[b]! += stageLoss[b]! * nLat;
  }
  const expected = (num[0]! / 5 + num[1]! / 5) / 2; // Σ loss·n_lat / Σ n_lat per video, then the mean over videos
  assert.ok(Math.abs(loss - expected) < 1e-5 * expected, `loss ${loss} vs ${expected}`);
  assert.ok(Math.abs(loss - 0.46) < 0.02); // ≈ Σ n_lat·(n_lat/k) / Σ n_lat = (3·3/6 + 2·2/5)/5
});
