import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runDemo } from '../../src/experiments/demo.ts';
import { readGifInfo } from '../../src/media/gif-read.ts';
import { probeVideo } from '../../src/media/mp4.ts';

test('the demo pipeline at reduced size writes every artefact, all valid', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-demo-'));
  const r = await runDemo({ root, small: true });
  // report and CSV
  assert.ok(fs.existsSync(r.report));
  const html = fs.readFileSync(r.report, 'utf8');
  const refs = [...html.matchAll(/src="([^"]+)"/g)].map((m) => m[1]!);
  assert.ok(refs.length >= 2, 'the report shows the videos');
  for (const ref of refs) assert.ok(fs.existsSync(path.resolve(path.dirname(r.report), ref)), `report references a missing file ${ref}`);
  const csv = fs.readFileSync(path.join(path.dirname(r.report), 'summary.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  assert.deepEqual(csv[0], ['scheme', 'loss', 'minADE', 'color-acc', 'trans-kl']);
  assert.equal(csv.length, 3);
  for (const row of csv.slice(1)) for (const v of row.slice(1, 4)) assert.ok(Number.isFinite(Number(v)), `metric ${v}`);
  // videos decode with the expected frame count (15 frames)
  for (const v of r.videos) {
    if (v.endsWith('.gif')) assert.equal(readGifInfo(v).frameCount, 15);
    else assert.equal((await probeVideo(v)).frameCount, 15);
  }
  // metric files in the results folders
  for (const dir of Object.values(r.evalDirs)) {
    assert.ok(fs.existsSync(path.join(dir, 'minADE-1.txt')));
    assert.ok(fs.existsSync(path.join(dir, 'samples', 'sample_0000-0.npy')));
  }
  assert.ok(fs.existsSync(path.join(r.evalDirs['autoreg']!, 'loss-1.txt')));
  assert.ok(r.root.startsWith(root), 'everything lands under the demo folder');
});
