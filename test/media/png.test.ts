/**
 * PNG writer/reader: CRC-32 check value, exact round trip, and both directions cross-checked
 * with the bundled ffmpeg (which writes its own filter choices).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32, decodePng, encodePng, readPng, writePng } from '../../src/media/png.ts';
import { ffmpegPath } from '../../src/media/mp4.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-png-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function image(W: number, H: number): Uint8Array {
  const rgb = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) rgb.set([(x * 37) & 255, (y * 11 + x) & 255, (x * y) & 255], (y * W + x) * 3);
  return rgb;
}

test('crc32 check values', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  // Incremental use equals one pass.
  const b = new TextEncoder().encode('IHDR and more bytes');
  assert.equal(crc32(b.subarray(5), crc32(b.subarray(0, 5))), crc32(b));
});

test('encode → decode is exact', () => {
  const rgb = image(33, 17);
  const png = encodePng(rgb, 33, 17);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.deepEqual(decodePng(png), { width: 33, height: 17, rgb });
  const bad = png.slice();
  bad[40] = bad[40]! ^ 1;
  assert.throws(() => decodePng(bad, 'bad.png'), /bad\.png: CRC mismatch/);
});

test('ffmpeg reads our PNG, and we read ffmpeg’s PNG', () => {
  const W = 40, H = 23;
  const rgb = image(W, H);
  const ours = path.join(tmp, 'ours.png');
  writePng(ours, rgb, W, H);
  const raw = spawnSync(ffmpegPath(), ['-hide_banner', '-loglevel', 'error', '-i', ours, '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1']);
  assert.equal(raw.status, 0, raw.stderr?.toString());
  assert.deepEqual(new Uint8Array(raw.stdout), rgb);
  // ffmpeg re-encodes (adaptive filters, RGB and RGBA variants).
  for (const fmt of ['rgb24', 'rgba', 'gray']) {
    const theirs = path.join(tmp, `theirs-${fmt}.png`);
    const r = spawnSync(ffmpegPath(), ['-hide_banner', '-loglevel', 'error', '-y', '-i', ours, '-pix_fmt', fmt, theirs]);
    assert.equal(r.status, 0, r.stderr?.toString());
    const dec = readPng(theirs);
    assert.equal(dec.width, W);
    assert.equal(dec.height, H);
    if (fmt !== 'gray') assert.deepEqual(dec.rgb, rgb, fmt);
    else {
      // grey: all three channels equal
      for (let p = 0; p < W * H; p++) assert.ok(dec.rgb[3 * p] === dec.rgb[3 * p + 1] && dec.rgb[3 * p] === dec.rgb[3 * p + 2]);
    }
  }
});
