/**
 * Frame conversions, observed borders, grids and labelled stacks (REFERENCE_SPEC §7.2, §8.1, §8.6).
 * Conversion values come from torch 1.13 via test/fixtures/metrics/make-u8-conversion.py.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import {
  composeGrid,
  createVideo,
  firstFrames,
  floatToU8,
  floatToU8Logging,
  frameAt,
  markObserved,
  stackWithLabels,
  videoFromFloatTCHW,
  videoFromU8TCHW,
  videoToU8TCHW,
  type Rgb,
  type VideoU8,
} from '../../src/media/frames.ts';
import { GLYPH_HEIGHT, GLYPH_WIDTH, glyphRows, textWidth } from '../../src/media/font5x7.ts';

const fixture = JSON.parse(fs.readFileSync(new URL('../fixtures/metrics/u8-conversion.json', import.meta.url), 'utf8')) as {
  x: number[];
  sample: number[];
  logging: number[];
};

function px(v: VideoU8, t: number, y: number, x: number): number[] {
  const o = ((t * v.H + y) * v.W + x) * 3;
  return [v.data[o]!, v.data[o + 1]!, v.data[o + 2]!];
}

test('float → uint8 matches torch float32 truncation (sample and logging rules)', () => {
  assert.deepEqual(fixture.x.map(floatToU8), fixture.sample);
  assert.deepEqual(fixture.x.map(floatToU8Logging), fixture.logging);
  assert.equal(floatToU8(NaN), 0);
});

test('videoFromFloatTCHW reads channel-first input into frame-major RGB', () => {
  const T = 2, C = 3, H = 2, W = 3;
  const x = new Float32Array(T * C * H * W).fill(-1);
  // frame 1, channel 2 (blue), row 1, col 2 = +1
  x[((1 * C + 2) * H + 1) * W + 2] = 1;
  x[((0 * C + 0) * H + 0) * W + 1] = 0; // frame 0, red, (0,1) → 127
  const v = videoFromFloatTCHW(x, T, C, H, W);
  assert.deepEqual(px(v, 1, 1, 2), [0, 0, 255]);
  assert.deepEqual(px(v, 0, 0, 1), [127, 0, 0]);
  assert.deepEqual(px(v, 0, 1, 2), [0, 0, 0]);
  const grey = videoFromFloatTCHW(new Float32Array(H * W).fill(1), 1, 1, H, W);
  assert.deepEqual(px(grey, 0, 1, 1), [255, 255, 255]);
  assert.throws(() => videoFromFloatTCHW(x, T, 4, H, W), /channels/);
});

test('uint8 [T,3,H,W] ↔ VideoU8 round trip', () => {
  const T = 3, H = 4, W = 5;
  const u = Uint8Array.from({ length: T * 3 * H * W }, (_, i) => (i * 7) % 256);
  const v = videoFromU8TCHW(u, T, 3, H, W);
  // element (t=2, c=1, y=3, x=4)
  assert.equal(px(v, 2, 3, 4)[1], u[((2 * 3 + 1) * H + 3) * W + 4]);
  assert.deepEqual(videoToU8TCHW(v), u);
});

test('markObserved draws a one-pixel red rectangle inset by one pixel, only on the given frames', () => {
  const v = createVideo(3, 6, 7, [10, 20, 30]);
  markObserved(v, firstFrames(2, 3));
  for (let t = 0; t < 2; t++) {
    for (let y = 0; y < 6; y++) {
      for (let x = 0; x < 7; x++) {
        const onBorder = y === 1 || y === 4 || x === 1 || x === 5;
        assert.deepEqual(px(v, t, y, x), onBorder ? [255, 0, 0] : [10, 20, 30], `t=${t} y=${y} x=${x}`);
      }
    }
  }
  assert.ok(frameAt(v, 2).every((b, i) => b === [10, 20, 30][i % 3]));
  assert.deepEqual(firstFrames(10, 3), [0, 1, 2]);
  assert.throws(() => markObserved(v, [3]), /frameIdx/);
});

test('composeGrid stacks [gt, seeds…] vertically and data indices horizontally', () => {
  const T = 2, H = 3, W = 4;
  const fill = (r: number, g: number): Rgb => [r, g, 0];
  const cols = [0, 1].map((d) => [0, 1, 2].map((row) => createVideo(T, H, W, fill(d, row))));
  const g = composeGrid(cols);
  assert.equal(g.H, 3 * H);
  assert.equal(g.W, 2 * W);
  assert.equal(g.T, T);
  for (let d = 0; d < 2; d++) for (let row = 0; row < 3; row++) assert.deepEqual(px(g, 1, row * H + 1, d * W + 2), [d, row, 0]);
  const sep = composeGrid(cols, { separator: 1 });
  assert.equal(sep.H, 3 * H + 2);
  assert.equal(sep.W, 2 * W + 1);
  assert.deepEqual(px(sep, 0, H, 0), [255, 255, 255]); // separator row
  assert.deepEqual(px(sep, 0, 0, W), [255, 255, 255]); // separator column
  assert.deepEqual(px(sep, 0, H + 1, W + 1), [1, 1, 0]);
  assert.throws(() => composeGrid([[createVideo(2, H, W)], [createVideo(3, H, W)]]), /frame counts/);
});

test('stackWithLabels: 2-px white separators, 50-px white margin, black label at (5, 5) of the margin', () => {
  const a = createVideo(2, 20, 30, [0, 0, 0]);
  const b = createVideo(2, 16, 24, [0, 0, 255]);
  const s = stackWithLabels([a, b], ['A', 'er-h']);
  assert.equal(s.W, 30 + 50);
  assert.equal(s.H, 20 + 2 + 16);
  assert.equal(s.T, 2);
  assert.deepEqual(px(s, 1, 20, 3), [255, 255, 255]); // separator
  assert.deepEqual(px(s, 1, 21, 3), [255, 255, 255]);
  assert.deepEqual(px(s, 1, 22, 3), [0, 0, 255]); // second panel
  assert.deepEqual(px(s, 1, 22, 26), [255, 255, 255]); // narrower panel padded white
  // Glyph of 'A' in panel 0 and of 'e' in panel 1, at margin offset (5, 5).
  for (const [y0, ch] of [
    [0, 'A'],
    [22, 'e'],
  ] as const) {
    const rows = glyphRows(ch);
    for (let r = 0; r < GLYPH_HEIGHT; r++) {
      for (let c = 0; c < GLYPH_WIDTH; c++) {
        const on = (rows[r]! >> (GLYPH_WIDTH - 1 - c)) & 1;
        assert.deepEqual(px(s, 0, y0 + 5 + r, 30 + 5 + c), on ? [0, 0, 0] : [255, 255, 255], `${ch} r=${r} c=${c}`);
      }
    }
  }
  // Nothing is drawn outside the label box in the margin.
  let black = 0;
  for (let y = 0; y < 20; y++) for (let x = 30; x < 80; x++) if (px(s, 0, y, x)[0] === 0) black++;
  const expected = [...glyphRows('A')].reduce((n, r) => n + r.toString(2).split('1').length - 1, 0);
  assert.equal(black, expected);
  assert.equal(textWidth('er-h'), 23);
});

test('every printable ASCII character has a distinct glyph', () => {
  const seen = new Set<string>();
  for (let c = 0x21; c <= 0x7e; c++) {
    const key = [...glyphRows(String.fromCharCode(c))].join(',');
    assert.ok(!seen.has(key), `duplicate glyph for ${String.fromCharCode(c)}`);
    assert.notEqual(key, '0,0,0,0,0,0,0');
    seen.add(key);
  }
  assert.deepEqual(glyphRows('\u00e9'), glyphRows('?'));
});
