import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readGif } from '../../src/media/gif-read.ts';
import { probeVideo } from '../../src/media/mp4.ts';
import { main } from '../../src/cli/main.ts';
import { makeVideo } from '../../src/experiments/make-video.ts';
import { makeBalls, makeEvalDir, rmTmp, tmpDir, writeSample } from './helpers.ts';

let dir = '';
let evalDir = '';
const T = 10;
const nObs = 3;
const GRAY = 100;

before(async () => {
  dir = tmpDir('video');
  const data = await makeBalls(dir);
  evalDir = makeEvalDir(dir, `autoreg_8_${T}_${nObs}_default_0_None_test`, data);
  const grey = new Uint8Array(T * 3 * 32 * 32).fill(GRAY);
  for (const i of [0, 1]) for (const k of [0, 1]) writeSample(evalDir, i, k, grey, T);
});
after(() => rmTmp(dir));

function pixel(frame: Uint8Array, W: number, x: number, y: number): number[] {
  const o = (y * W + x) * 3;
  return [frame[o]!, frame[o + 1]!, frame[o + 2]!];
}

test('GIF grid: ground truth above seeds, data indices side by side, red borders on observed frames (§8.1)', async () => {
  const code = await main(['video', '--eval_dir', evalDir, '--do_n', '2', '--n-seeds', '2', '--fps', '5']);
  assert.equal(code, 0);
  const g = readGif(path.join(evalDir, 'videos', '2_2.gif'));
  assert.equal(g.frameCount, T);
  assert.equal(g.width, 2 * 32);
  assert.equal(g.height, 3 * 32); // gt + 2 seeds
  assert.equal(g.delaysMs[0], 200);
  const RED = [255, 0, 0];
  for (let t = 0; t < T; t++) {
    const f = g.frames[t]!;
    for (const col of [0, 1]) {
      const x0 = col * 32;
      // ground truth: every frame marked (rows 1 and 30, columns 1 and 30 of the panel)
      assert.deepEqual(pixel(f, g.width, x0 + 16, 1), RED, `gt frame ${t}`);
      assert.deepEqual(pixel(f, g.width, x0 + 30, 16), RED);
      for (const seedRow of [1, 2]) {
        const y0 = seedRow * 32;
        const want = t < nObs ? RED : [GRAY, GRAY, GRAY];
        assert.deepEqual(pixel(f, g.width, x0 + 16, y0 + 1), want, `seed ${seedRow - 1} frame ${t}`);
        assert.deepEqual(pixel(f, g.width, x0 + 1, y0 + 16), want);
        assert.deepEqual(pixel(f, g.width, x0 + 16, y0 + 30), want);
        assert.deepEqual(pixel(f, g.width, x0 + 16, y0 + 16), [GRAY, GRAY, GRAY]); // inside untouched
        assert.deepEqual(pixel(f, g.width, x0 + 16, y0), [GRAY, GRAY, GRAY]); // outermost row untouched
      }
    }
  }
});

test('MP4 without ground truth decodes with the expected frame count and size', async () => {
  const r = await makeVideo({ evalDir, format: 'mp4', addGt: false, startIdx: 1 });
  assert.equal(r.file, path.join(evalDir, 'videos', '1_1.mp4'));
  const p = await probeVideo(r.file, { keepFrames: true });
  assert.equal(p.frameCount, T);
  assert.equal(p.width, 32);
  assert.equal(p.height, 32);
  const centre = pixel(p.frames![T - 1]!, 32, 16, 16);
  for (const c of centre) assert.ok(Math.abs(c - GRAY) < 6, `centre ${centre}`);
  const border0 = pixel(p.frames![0]!, 32, 16, 1);
  assert.ok(border0[0]! > border0[1]! + 60, `observed frame border is reddish: ${border0}`);
});

test('missing seeds abort with the file name; unknown formats are refused', async () => {
  await assert.rejects(makeVideo({ evalDir, nSeeds: 3 }), /sample_0000-2\.npy/);
  await assert.rejects(makeVideo({ evalDir, format: 'avi' }), /--format/);
  assert.ok(!fs.existsSync(path.join(evalDir, 'videos', '1_3.gif')));
});
