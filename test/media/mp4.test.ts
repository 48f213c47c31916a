/**
 * MP4 via the bundled ffmpeg: codec choice, even-size rounding, frame count and approximate
 * content of the decoded result, atomic writes (REFERENCE_SPEC §8.1).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ffmpegEncoders, probeVideo, writeMp4 } from '../../src/media/mp4.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-mp4-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** Smooth frames (a moving gradient), which lossy codecs reproduce closely. */
function frames(T: number, W: number, H: number): Uint8Array[] {
  return Array.from({ length: T }, (_, t) => {
    const f = new Uint8Array(W * H * 3);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) f.set([(4 * x + 8 * t) & 255, 6 * y, 128], (y * W + x) * 3);
    return f;
  });
}

test('writes H.264 (bundled ffmpeg has libx264), crops odd sizes to even, keeps every frame', async () => {
  assert.ok(ffmpegEncoders().has('libx264'));
  const W = 33, H = 21, T = 12;
  const src = frames(T, W, H);
  const file = path.join(tmp, 'videos', '1_1.mp4');
  const res = await writeMp4(file, src, W, H);
  assert.equal(res.codec, 'libx264');
  assert.equal(res.width, 32);
  assert.equal(res.height, 20);
  assert.match(res.note ?? '', /cropped 33×21 to even size 32×20/);
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['1_1.mp4']);
  const p = await probeVideo(file, { keepFrames: true });
  assert.equal(p.codec, 'h264');
  assert.equal(p.width, 32);
  assert.equal(p.height, 20);
  assert.equal(p.frameCount, T);
  assert.equal(p.fps, 10);
  // Faststart: the moov atom precedes mdat.
  const bytes = fs.readFileSync(file).toString('latin1');
  assert.ok(bytes.indexOf('moov') < bytes.indexOf('mdat'));
  // Content: mean abs error against the cropped source is small.
  let err = 0;
  let n = 0;
  for (let t = 0; t < T; t++) {
    for (let y = 0; y < 20; y++) {
      for (let x = 0; x < 32; x++) {
        for (let c = 0; c < 3; c++) {
          err += Math.abs(p.frames![t]![(y * 32 + x) * 3 + c]! - src[t]![(y * W + x) * 3 + c]!);
          n++;
        }
      }
    }
  }
  assert.ok(err / n < 6, `mean abs error ${err / n}`);
});

test('mpeg4 codec on request, custom fps', async () => {
  const file = path.join(tmp, 'b.mp4');
  const res = await writeMp4(file, frames(5, 16, 16), 16, 16, { codec: 'mpeg4', fps: 5 });
  assert.equal(res.codec, 'mpeg4');
  assert.equal(res.note, undefined);
  const p = await probeVideo(file);
  assert.equal(p.codec, 'mpeg4');
  assert.equal(p.frameCount, 5);
  assert.equal(p.fps, 5);
});

test('errors: bad sizes, empty input, missing file', async () => {
  await assert.rejects(writeMp4(path.join(tmp, 'c.mp4'), [new Uint8Array(3)], 1, 1), /at least 2×2/);
  await assert.rejects(writeMp4(path.join(tmp, 'c.mp4'), [], 4, 4), /at least one frame/);
  await assert.rejects(writeMp4(path.join(tmp, 'c.mp4'), [new Uint8Array(5)], 4, 4), /frames\[0\]\.length/);
  await assert.rejects(probeVideo(path.join(tmp, 'none.mp4')), /no such file/);
  assert.ok(!fs.existsSync(path.join(tmp, 'c.mp4')));
});
