import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { collectStages, createSamplingScheme } from '../../src/sampling/schemes.ts';
import {
  CELL_COLOURS,
  CellKind,
  renderSchedulePicture,
  scheduleCellKinds,
  writeSchedulePicture,
} from '../../src/sampling/schedule-picture.ts';
import { readPng } from '../../src/media/png.ts';

const o = { videoLength: 50, numObs: 10, maxFrames: 10, stepSize: 5 };
const stages = collectStages(createSamplingScheme('hierarchy-2', o));

test('cell kinds follow the stages (hierarchy-2 golden, REFERENCE_SPEC §7.3)', () => {
  const k = scheduleCellKinds(stages, { videoLength: 50, numObs: 10 });
  assert.equal(k.length, 8);
  const row0 = Array.from(k[0]!);
  for (const f of [0, 2, 4, 7, 9]) assert.equal(row0[f], CellKind.Observed);
  for (const f of [1, 3, 5, 6, 8]) assert.equal(row0[f], CellKind.Given);
  for (const f of [10, 19, 29, 39, 49]) assert.equal(row0[f], CellKind.Latent);
  assert.equal(row0[11], CellKind.Empty);
  const row1 = Array.from(k[1]!);
  assert.equal(row1[19], CellKind.Observed); // generated in stage 0, observed now
  assert.equal(row1[39], CellKind.Done);
  assert.equal(row1[12], CellKind.Latent);
  assert.equal(row1[0], CellKind.Given);
  // after the last stage every frame has been latent exactly once or given
  const latentCount = new Array(50).fill(0);
  k.forEach((r) => r.forEach((v, f) => (latentCount[f] += v === CellKind.Latent ? 1 : 0)));
  latentCount.forEach((c, f) => assert.equal(c, f < 10 ? 0 : 1));
});

test('PNG written atomically and decodes to the cell colours', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-pic-'));
  const file = path.join(dir, 'schedule.png');
  const pic = writeSchedulePicture(file, stages, { videoLength: 50, numObs: 10, title: 'hierarchy-2 T=50 K=10' });
  const img = readPng(file);
  assert.equal(img.width, pic.width);
  assert.equal(img.height, pic.height);
  const kinds = scheduleCellKinds(stages, { videoLength: 50, numObs: 10 });
  kinds.forEach((row, s) => {
    row.forEach((kind, f) => {
      const x = pic.x0 + f * pic.pitchX + (pic.cellWidth >> 1);
      const y = pic.y0 + s * pic.pitchY + (pic.cellHeight >> 1);
      const p = (y * img.width + x) * 3;
      assert.deepEqual([img.rgb[p], img.rgb[p + 1], img.rgb[p + 2]], [...CELL_COLOURS[kind]!], `stage ${s} frame ${f}`);
    });
  });
  assert.deepEqual(fs.readdirSync(dir), ['schedule.png']); // no temporary files left
  fs.rmSync(dir, { recursive: true });
});

test('small cells for long videos; no labels mode', () => {
  const long = collectStages(createSamplingScheme('autoreg', { videoLength: 1000, numObs: 36, maxFrames: 20, stepSize: 10 }));
  const pic = renderSchedulePicture(long, { videoLength: 1000, numObs: 36, labels: false });
  assert.equal(pic.cellWidth, 1);
  assert.equal(pic.pitchX, 1);
  assert.equal(pic.rgb.length, pic.width * pic.height * 3);
  assert.throws(() => renderSchedulePicture(long, { videoLength: 1000, numObs: 36, videoIndex: 3 }), /videoIndex/);
});
