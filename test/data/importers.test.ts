/**
 * Importers: dataset zips (REFERENCE_SPEC §1.2/§1.4, fixing §10.1 item 8) and the user's own
 * videos through ffmpeg (synthesised here with ffmpeg's lavfi sources).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileFormatError, OptionError } from '../../src/util/errors.ts';
import { importZip } from '../../src/data/import-zip.ts';
import { datasetFromVideo, ffmpegPath } from '../../src/data/from-video.ts';
import { VideoStore } from '../../src/data/video-store.ts';
import { readNpy } from '../../src/data/npy.ts';

const FIX = path.join(import.meta.dirname, '../fixtures/data');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-import-'));
const refValue = (split: string, t: number, y: number, x: number, c: number) => ((t * 7 + y * 3 + x * 5 + c * 2 + (split === 'test' ? 4 : 0)) % 11) / 10;

test('maze zip: flat <split>/<k>.npy moved to <split>/0/, T_total fixed, .mp4 skipped, validated', () => {
  const out = path.join(tmp, 'maze');
  const r = importZip(path.join(FIX, 'maze.zip'), out);
  assert.equal(r.kind, 'npy');
  assert.equal(r.files, 5);
  assert.equal(r.movedToSeedFolder, true);
  assert.deepEqual(r.configFixes, ['T_total: 27 → 24', 'T_total_test: 8']);
  assert.deepEqual(fs.readdirSync(out).sort(), ['config.json', 'test', 'train']);
  assert.deepEqual(fs.readdirSync(path.join(out, 'train', '0')).sort(), ['0.npy', '1.npy', '2.npy']);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.equal(cfg.T_total, 24);
  assert.equal(cfg.T_total_test, 8);
  assert.equal(cfg.T_total_reference, 27);
  const store = VideoStore.open(out, { dataRoot: null });
  assert.equal(store.frameCount('test'), 8);
  const w = store.readFrames('train', 7, 2); // STORED member (chunk 1) and a DEFLATE one
  assert.equal(w.data[48], Math.fround(2 * refValue('train', 8, 0, 0, 0) - 1));
  assert.throws(() => importZip(path.join(FIX, 'maze.zip'), out), (e: Error) => e instanceof OptionError && /--out/.test(e.message));
});

test('corrupt and truncated zips are reported naming the archive', () => {
  const bytes = fs.readFileSync(path.join(FIX, 'maze.zip'));
  const cut = path.join(tmp, 'cut.zip');
  fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
  assert.throws(() => importZip(cut, path.join(tmp, 'cut-out')), (e: Error) => e instanceof FileFormatError && /cut\.zip/.test(e.message));
  const junk = path.join(tmp, 'junk.zip');
  fs.writeFileSync(junk, 'not a zip at all');
  assert.throws(() => importZip(junk, path.join(tmp, 'junk-out')), /junk\.zip/);
  assert.throws(() => importZip(path.join(tmp, 'none.zip'), path.join(tmp, 'x')), /ZIP/);
});

/** A video whose centre square is green and whose left/right margins are blue/red. */
function makeVideo(file: string, seconds: number, w = 48, h = 32): void {
  const m = (w - h) / 2;
  const vf = `drawbox=x=0:y=0:w=${m}:h=${h}:color=blue:t=fill,drawbox=x=${w - m}:y=0:w=${m}:h=${h}:color=red:t=fill`;
  execFileSync(ffmpegPath(), ['-v', 'error', '-y', '-f', 'lavfi', '-i', `color=c=green:s=${w}x${h}:r=10:d=${seconds}`, '-vf', vf, '-pix_fmt', 'yuv420p', file]);
}

test('from-video: centre square crop, scale, fps, uint8 chunks, test fraction', async () => {
  const vid = path.join(tmp, 'clip.mp4');
  makeVideo(vid, 3);
  const out = path.join(tmp, 'fromvideo');
  const seen: number[] = [];
  const r = await datasetFromVideo({ inputs: [vid], out, resolution: 8, fps: 10, chunkSize: 5, testFraction: 0.2, onProgress: (f) => seen.push(f) });
  assert.deepEqual(r, { out, trainFrames: 25, testFrames: 5, droppedFrames: 0 });
  assert.equal(seen.at(-1), 30);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.deepEqual([cfg.T_total, cfg.T_total_test, cfg.chunk_size, cfg.resolution, cfg.dtype, cfg.fps], [25, 5, 5, 8, 'uint8', 10]);
  const chunk = readNpy(path.join(out, 'test', '0', '0.npy'));
  assert.equal(chunk.dtype, '|u1');
  assert.deepEqual(chunk.shape, [5, 8, 8, 3]);
  const px = chunk.data as Uint8Array;
  for (let k = 0; k < px.length; k += 3) {
    // ffmpeg's "green" is #008000; only the centre square (no blue/red margins) survives the crop.
    assert.ok(px[k]! < 12 && Math.abs(px[k + 1]! - 128) < 12 && px[k + 2]! < 12, `pixel ${k / 3}: ${px[k]},${px[k + 1]},${px[k + 2]}`);
  }
  const store = VideoStore.open(out, { dataRoot: null });
  assert.equal(store.frameCount('train'), 25);
  assert.deepEqual(store.frameShape('train'), [3, 8, 8]);
});

test('from-video: separate test video, several inputs concatenated, dropped tail, errors', async () => {
  const a = path.join(tmp, 'a.mp4');
  const b = path.join(tmp, 'b.mp4');
  makeVideo(a, 2);
  makeVideo(b, 1.3, 32, 48); // portrait: crop keeps the middle rows
  const out = path.join(tmp, 'fv2');
  const r = await datasetFromVideo({ inputs: [a, b], out, resolution: 4, fps: 10, chunkSize: 6, test: b });
  assert.deepEqual(r, { out, trainFrames: 30, testFrames: 12, droppedFrames: 3 + 1 });
  await assert.rejects(datasetFromVideo({ inputs: [a], out, resolution: 4, chunkSize: 6, test: b }), /--out/);
  const again = await datasetFromVideo({ inputs: [a], out, resolution: 4, chunkSize: 5, testFraction: 0, overwrite: true });
  assert.equal(again.testFrames, 0);
  assert.equal(fs.existsSync(path.join(out, 'test')), false);
  await assert.rejects(datasetFromVideo({ inputs: [path.join(tmp, 'missing.mp4')], out: path.join(tmp, 'x') }), (e: Error) => e instanceof OptionError && /missing\.mp4/.test(e.message));
  await assert.rejects(datasetFromVideo({ inputs: [a], out: path.join(tmp, 'y'), chunkSize: 1000 }), /too short|fewer than one chunk/);
  await assert.rejects(datasetFromVideo({ inputs: [a], out: path.join(tmp, 'z'), testFraction: 1.5 }), /--test-fraction/);
  const notVideo = path.join(tmp, 'text.mp4');
  fs.writeFileSync(notVideo, 'hello');
  await assert.rejects(datasetFromVideo({ inputs: [notVideo], out: path.join(tmp, 'w') }), (e: Error) => e instanceof FileFormatError && /text\.mp4: ffmpeg could not decode/.test(e.message));
});
