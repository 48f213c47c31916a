/**
 * RawTensor helpers: float16/bfloat16 conversions against closed-form values, exhaustive
 * round trips, and NumPy's rounding (fixture written by test/fixtures/io/make-safetensors-fixture.py).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  bfloat16BitsToNumber,
  float16BitsToFloat32Bits,
  float16BitsToNumber,
  float32Bits,
  float32BitsToBfloat16Bits,
  float32BitsToFloat16Bits,
  float32View,
  fromFloat32,
  halfBitsView,
  int64ToNumbers,
  makeRawTensor,
  numel,
  rawFromTyped,
  toFloat32Array,
  toFloat64Array,
} from '../../src/io/raw-tensor.ts';
import { loadSafetensors } from '../../src/io/safetensors.ts';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/io');

test('float16 closed-form values', () => {
  assert.equal(float16BitsToNumber(0x3c00), 1);
  assert.equal(float16BitsToNumber(0xc000), -2);
  assert.equal(float16BitsToNumber(0x7bff), 65504);
  assert.equal(float16BitsToNumber(0x0001), 2 ** -24); // smallest subnormal
  assert.equal(float16BitsToNumber(0x03ff), 1023 * 2 ** -24); // largest subnormal
  assert.equal(float16BitsToNumber(0x0400), 2 ** -14); // smallest normal
  assert.equal(float16BitsToNumber(0x7c00), Infinity);
  assert.equal(float16BitsToNumber(0xfc00), -Infinity);
  assert.ok(Number.isNaN(float16BitsToNumber(0x7e00)));
  assert.ok(Object.is(float16BitsToNumber(0x8000), -0));
  assert.equal(numberToBits(65504), 0x7bff);
  assert.equal(numberToBits(65519.99), 0x7bff); // below the midpoint 65520
  assert.equal(numberToBits(65520), 0x7c00); // tie at the top rounds to even → ∞
  assert.equal(numberToBits(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal → even (0)
  assert.equal(numberToBits(3 * 2 ** -26), 0x0001);
  assert.equal(numberToBits(1 + 2 ** -11), 0x3c00); // tie → even mantissa
  assert.equal(numberToBits(1 + 3 * 2 ** -11), 0x3c02); // tie → even (up)
  assert.equal(numberToBits(-0), 0x8000);
});

function numberToBits(x: number): number {
  return float32BitsToFloat16Bits(float32Bits(x));
}

test('every float16 value survives float16 → float32 → float16', () => {
  for (let h = 0; h < 65536; h++) {
    const back = float32BitsToFloat16Bits(float16BitsToFloat32Bits(h));
    const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNaN) assert.equal(back, h | 0x200, `NaN ${h.toString(16)} stays NaN (quieted)`);
    else assert.equal(back, h, `bits ${h.toString(16)}`);
  }
});

test('float32 → float16 matches NumPy astype(float16)', () => {
  const { tensors } = loadSafetensors(path.join(FIX, 'tiny.safetensors'));
  const src = float32View(tensors.f16_src!);
  const ours = halfBitsView(fromFloat32(src, [src.length], 'float16'));
  const numpy = halfBitsView(tensors.f16_numpy!);
  assert.equal(ours.length, 63);
  for (let i = 0; i < ours.length; i++) assert.equal(ours[i], numpy[i], `value ${src[i]} (#${i})`);
});

test('bfloat16 conversions', () => {
  assert.equal(bfloat16BitsToNumber(0x3f80), 1);
  assert.equal(bfloat16BitsToNumber(0xc020), -2.5);
  assert.equal(float32BitsToBfloat16Bits(float32Bits(1)), 0x3f80);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1); 1 + 3·2^-8 → 1 + 2^-6.
  assert.equal(float32BitsToBfloat16Bits(float32Bits(1 + 2 ** -8)), 0x3f80);
  assert.equal(float32BitsToBfloat16Bits(float32Bits(1 + 3 * 2 ** -8)), 0x3f82);
  assert.equal(float32BitsToBfloat16Bits(0x7fc00001) & 0x7fc0, 0x7fc0); // NaN stays NaN
  for (let h = 0; h < 65536; h++) {
    if ((h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0) continue; // NaNs
    assert.equal(float32BitsToBfloat16Bits(h << 16), h);
  }
});

test('typed views and conversions', () => {
  const t = rawFromTyped(new Float32Array([1.5, -2, 3]), [3]);
  assert.deepEqual(Array.from(toFloat64Array(t)), [1.5, -2, 3]);
  const i64 = rawFromTyped(new BigInt64Array([1n, -(2n ** 53n) + 1n]), [2]);
  assert.deepEqual(Array.from(int64ToNumbers(i64)), [1, -(2 ** 53) + 1]);
  assert.throws(() => int64ToNumbers(rawFromTyped(new BigInt64Array([2n ** 60n]), [1])), /not a safe JS integer/);
  const half = fromFloat32(new Float32Array([0.5, 65504, 1e6]), [3], 'float16');
  assert.deepEqual(Array.from(toFloat32Array(half)), [0.5, 65504, Infinity]);
  const bf = fromFloat32(new Float32Array([0.5, -1]), [2], 'bfloat16');
  assert.deepEqual(Array.from(toFloat32Array(bf)), [0.5, -1]);
  // Unaligned data are copied before viewing.
  const buf = new Uint8Array(9);
  buf.set(new Uint8Array(new Float64Array([0.25]).buffer), 1);
  assert.deepEqual(Array.from(toFloat64Array(makeRawTensor('float64', [1], buf.subarray(1)))), [0.25]);
  assert.deepEqual(Array.from(toFloat32Array(makeRawTensor('bool', [2], new Uint8Array([1, 0])))), [1, 0]);
  assert.equal(numel([]), 1);
  assert.equal(numel([2, 0, 3]), 0);
  assert.throws(() => makeRawTensor('float32', [2], new Uint8Array(7)), /needs 8 bytes/);
  assert.throws(() => numel([-1]), /invalid tensor size/);
});
