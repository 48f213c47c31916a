/**
 * GIF writer and decoder: exact round trips for small-palette videos, local palettes, lossy
 * quantisation above 256 colours, timing/loop metadata, and cross-checks of both directions
 * against the bundled ffmpeg's own GIF decoder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeGif, writeGif } from '../../src/media/gif.ts';
import { decodeGif, gifFrameRate, lzwDecode, readGif, readGifInfo } from '../../src/media/gif-read.ts';
import { composeGrid, createVideo, firstFrames, markObserved, videoFrames, type VideoU8 } from '../../src/media/frames.ts';
import { probeVideo } from '../../src/media/mp4.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-gif-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** A moving square of a few colours on black, with a red border on the first frames. */
function testVideo(T: number, H: number, W: number): VideoU8 {
  const v = createVideo(T, H, W);
  for (let t = 0; t < T; t++) {
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const o = ((t * H + y) * W + x) * 3;
        if (Math.abs(x - 4 - t) < 3 && Math.abs(y - 5) < 3) v.data.set([200, 200, 10 * t], o);
        else if ((x + y) % 7 === 0) v.data.set([0, 90, 0], o);
      }
    }
  }
  return markObserved(v, firstFrames(2, T));
}

function noise(n: number, seed: number): Uint8Array {
  let s = seed >>> 0;
  return Uint8Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s >>> 24;
  });
}

test('small-palette video round-trips exactly, with timing and loop metadata', () => {
  const v = testVideo(6, 17, 23);
  const file = path.join(tmp, 'a', 'small.gif');
  writeGif(file, videoFrames(v), v.W, v.H, { fps: 4 });
  const info = readGifInfo(file);
  assert.deepEqual(info, { width: 23, height: 17, frameCount: 6, delaysMs: Array(6).fill(250), loopCount: 0 });
  assert.equal(gifFrameRate(info), 4);
  assert.equal(gifFrameRate({ ...info, delaysMs: [0] }), 5);
  const dec = readGif(file);
  dec.frames.forEach((f, t) => assert.deepEqual(f, videoFrames(v)[t], `frame ${t}`));
  // No temporary files left next to the output.
  assert.deepEqual(fs.readdirSync(path.dirname(file)), ['small.gif']);
});

test('red observed borders survive in a grid GIF', () => {
  const gt = markObserved(createVideo(4, 12, 10, [0, 0, 0]), firstFrames(4, 4));
  const seed = markObserved(createVideo(4, 12, 10, [0, 0, 40]), firstFrames(1, 4));
  const grid = composeGrid([[gt, seed]]);
  const dec = decodeGif(encodeGif(videoFrames(grid), grid.W, grid.H));
  assert.equal(dec.frameCount, 4);
  const at = (t: number, y: number, x: number) => [...dec.frames[t]!.subarray((y * grid.W + x) * 3, (y * grid.W + x) * 3 + 3)];
  for (let t = 0; t < 4; t++) {
    assert.deepEqual(at(t, 1, 5), [255, 0, 0], 'gt border row 1');
    assert.deepEqual(at(t, 10, 5), [255, 0, 0], 'gt border row H-2');
    assert.deepEqual(at(t, 12 + 1, 5), t < 1 ? [255, 0, 0] : [0, 0, 40], 'seed border only on observed frames');
    assert.deepEqual(at(t, 12 + 5, 8), t < 1 ? [255, 0, 0] : [0, 0, 40], 'seed border column W-2');
  }
});

test('more than 256 colours overall but ≤ 256 per frame: exact local palettes', () => {
  const W = 20, H = 10;
  // Frame t: red = pixel index, green = 50·t → 200 colours per frame, 600 overall.
  const frames = [0, 1, 2].map((t) => {
    const f = new Uint8Array(W * H * 3);
    for (let p = 0; p < W * H; p++) f.set([p, 50 * t, 0], 3 * p);
    return f;
  });
  const dec = decodeGif(encodeGif(frames, W, H, { loop: false }));
  assert.equal(dec.loopCount, null);
  dec.frames.forEach((f, t) => assert.deepEqual(f, frames[t]));
});

test('noise frames are quantised (lossy) but decode to the right size and close colours', () => {
  const W = 64, H = 64;
  const frames = [1, 2].map((s) => noise(W * H * 3, s));
  const bytes = encodeGif(frames, W, H);
  const dec = decodeGif(bytes);
  assert.equal(dec.frameCount, 2);
  for (let t = 0; t < 2; t++) {
    let err = 0;
    for (let i = 0; i < frames[t]!.length; i++) err += Math.abs(frames[t]![i]! - dec.frames[t]![i]!);
    assert.ok(err / frames[t]!.length < 40, `mean abs error ${err / frames[t]!.length}`);
  }
});

test('our decoder agrees with ffmpeg on GIFs we wrote (incl. LZW dictionary resets)', async () => {
  const v = testVideo(5, 40, 61);
  // Add a noisy frame so codes exceed 4096 and the encoder emits clear codes.
  const frames = videoFrames(v);
  frames[3] = noise(40 * 61 * 3, 7).map((b) => b & 0xe0); // 512 colours, quantised
  const file = path.join(tmp, 'cross.gif');
  writeGif(file, frames, 61, 40);
  const ours = readGif(file);
  const ff = await probeVideo(file, { keepFrames: true });
  assert.equal(ff.frameCount, 5);
  assert.equal(ff.width, 61);
  assert.equal(ff.height, 40);
  ff.frames!.forEach((f, t) => assert.deepEqual(f, ours.frames[t], `frame ${t}`));
});

test('lzwDecode on a hand-encoded stream', () => {
  // Minimum code size 2: clear = 4, end = 5, first free code 6, codes start 3 bits wide.
  // Stream: clear, 1 → "1", 1 → "1" (adds 6 = "11"), 6 → "11" (adds 7; next = 8 widens codes to 4 bits), end.
  const codes: [number, number][] = [
    [4, 3],
    [1, 3],
    [1, 3],
    [6, 3],
    [5, 4],
  ];
  let acc = 0;
  let n = 0;
  const bytes: number[] = [];
  for (const [c, width] of codes) {
    acc |= c << n;
    n += width;
    while (n >= 8) {
      bytes.push(acc & 255);
      acc >>= 8;
      n -= 8;
    }
  }
  if (n > 0) bytes.push(acc & 255);
  assert.deepEqual([...lzwDecode(Uint8Array.from(bytes), 2, 4)], [1, 1, 1, 1]);
  // Asking for more pixels than the stream holds leaves the rest 0.
  assert.deepEqual([...lzwDecode(Uint8Array.from(bytes), 2, 6)], [1, 1, 1, 1, 0, 0]);
});

test('bad input is rejected with a file-named error', () => {
  assert.throws(() => decodeGif(Uint8Array.from([1, 2, 3, 4, 5, 6, 7]), 'x.gif'), /x\.gif: not a GIF/);
  const good = encodeGif([new Uint8Array(12)], 2, 2);
  assert.throws(() => decodeGif(good.subarray(0, good.length - 8), 'cut.gif'), /cut\.gif: truncated/);
  assert.throws(() => encodeGif([new Uint8Array(11)], 2, 2), /frames\[0\]\.length/);
});
