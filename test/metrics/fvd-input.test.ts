/**
 * FVD input preparation (REFERENCE_SPEC §8.2 steps 4–5): the float32 uint8 round trip against
 * torch (test/fixtures/metrics/make-u8-conversion.py) and TF1 legacy bilinear resizing on
 * hand-worked cases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { FVD_ROUND_TRIP_TABLE, fvdRoundTripU8, resizeBilinearTF1 } from '../../src/metrics/fvd-input.ts';

const fixture = JSON.parse(fs.readFileSync(new URL('../fixtures/metrics/u8-conversion.json', import.meta.url), 'utf8')) as { fvdRoundTrip: number[] };

test('u8 → [-1,1] → u8 round trip matches torch float32 (63 levels lowered by one)', () => {
  assert.deepEqual([...FVD_ROUND_TRIP_TABLE], fixture.fvdRoundTrip);
  assert.equal(FVD_ROUND_TRIP_TABLE.filter((v, u) => v !== u).length, 63);
  for (let u = 1; u <= 20; u++) assert.equal(fvdRoundTripU8(u), u - 1);
});

test('TF1 resize_bilinear (align_corners=False, legacy scaling): 2 → 4 and 4 → 2', () => {
  // 1 × 2 row [0, 10] → 4 columns: in = 0, 0.5, 1, 1.5 → upper clamps to 1: [0, 5, 10, 10].
  assert.deepEqual([...resizeBilinearTF1([0, 10], 1, 2, 1, 1, 4)], [0, 5, 10, 10]);
  // 2 × 2 → 4 × 4, then check a middle pixel: (y=1, x=1) → in (0.5, 0.5) → mean of the four.
  const up = resizeBilinearTF1([0, 10, 20, 30], 2, 2, 1, 4, 4);
  assert.equal(up[1 * 4 + 1], 15);
  assert.equal(up[3 * 4 + 3], 30);
  // Downscale 4 → 2: in = 0, 2 (samples, no averaging).
  assert.deepEqual([...resizeBilinearTF1([1, 2, 3, 4], 1, 4, 1, 1, 2)], [1, 3]);
  // Channels are interpolated independently.
  assert.deepEqual([...resizeBilinearTF1([0, 100, 10, 200], 1, 2, 2, 1, 4)], [0, 100, 5, 150, 10, 200, 10, 200]);
  // 32 → 224: scale 1/7; output 7 lies exactly on input 1.
  const row = Float32Array.from({ length: 32 }, (_, i) => i * 3);
  const big = resizeBilinearTF1(row, 1, 32, 1, 1, 224);
  assert.equal(big.length, 224);
  assert.ok(Math.abs(big[7]! - 3) < 1e-5);
  assert.equal(big[223], 93); // clamps at the last input
});
