/**
 * .npy reading/writing against files written by NumPy (test/fixtures/data/make-data.py) and
 * round trips of our writer; truncated / corrupt / unsupported files give clear errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileFormatError } from '../../src/util/errors.ts';
import {
  encodeNpyHeader,
  floatToHalf,
  halfToFloat,
  npyToFloat32,
  parseNpy,
  readNpy,
  readNpyHeader,
  writeNpy,
} from '../../src/data/npy.ts';

const FIX = path.join(import.meta.dirname, '../fixtures/data/npy');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-npy-'));
const expectedA = Array.from({ length: 24 }, (_, i) => i / 8 - 1);

test('reads NumPy-written dtypes and header versions', () => {
  for (const name of ['f8', 'v2', 'v3']) {
    const a = readNpy(path.join(FIX, `${name}.npy`));
    assert.equal(a.dtype, '<f8');
    assert.deepEqual(a.shape, [2, 3, 4]);
    assert.deepEqual(Array.from(a.data as Float64Array), expectedA);
  }
  const f4 = readNpy(path.join(FIX, 'f4.npy'));
  assert.equal(f4.dtype, '<f4');
  assert.deepEqual(Array.from(f4.data as Float32Array), expectedA);
  const f2 = readNpy(path.join(FIX, 'f2.npy'));
  assert.equal(f2.dtype, '<f2');
  const f2v = Array.from(npyToFloat32(f2));
  assert.deepEqual(f2v.slice(0, 4), [0, 1, -2.5, 65504]);
  assert.ok(Math.abs(f2v[4]! - 1e-7) < 6e-8); // subnormal half
  assert.equal(f2v[5], Math.fround(halfToFloat(floatToHalf(0.1))));
  assert.ok(Object.is(f2v[6], -0));
  const i8 = readNpy(path.join(FIX, 'i8.npy'));
  assert.deepEqual(Array.from(i8.data as BigInt64Array), [-3n, 2n ** 40n, 7n, 0n]);
  assert.deepEqual(Array.from(readNpy(path.join(FIX, 'i4.npy')).data as Int32Array), [-5, 6, 2 ** 31 - 1]);
  const b1 = readNpy(path.join(FIX, 'b1.npy'));
  assert.equal(b1.dtype, '|b1');
  assert.deepEqual(Array.from(b1.data as Uint8Array), [1, 0, 1]);
  const scalar = readNpy(path.join(FIX, 'u1-scalar.npy'));
  assert.deepEqual(scalar.shape, []);
  assert.deepEqual(Array.from(scalar.data as Uint8Array), [200]);
});

test('Fortran order and big-endian files are rejected naming the file', () => {
  assert.throws(() => readNpy(path.join(FIX, 'fortran.npy')), (e: Error) => e instanceof FileFormatError && /fortran\.npy.*Fortran/.test(e.message));
  assert.throws(() => readNpy(path.join(FIX, 'bigendian.npy')), (e: Error) => e instanceof FileFormatError && /bigendian\.npy.*big-endian/.test(e.message));
});

test('writer round-trips every dtype and writes 64-byte aligned v1.0 headers', () => {
  const cases = [
    { dtype: '<f8' as const, shape: [2, 2], data: new Float64Array([1.5, -2, 3, 1e-300]) },
    { dtype: '<f4' as const, shape: [3], data: new Float32Array([0.25, -1, 7]) },
    { dtype: '|u1' as const, shape: [1, 2, 2, 3], data: new Uint8Array(12).map((_, i) => i * 20) },
    { dtype: '<i8' as const, shape: [2], data: new BigInt64Array([-1n, 5n]) },
    { dtype: '<i4' as const, shape: [1], data: new Int32Array([-7]) },
    { dtype: '<f2' as const, shape: [2], data: new Uint16Array([floatToHalf(1.5), floatToHalf(-0.125)]) },
    { dtype: '|b1' as const, shape: [], data: new Uint8Array([1]) },
  ];
  for (const c of cases) {
    const file = path.join(tmp, `rt-${c.dtype.slice(1)}.npy`);
    writeNpy(file, c);
    const h = readNpyHeader(file);
    assert.equal(h.version, 1);
    assert.equal(h.dataOffset % 64, 0);
    const back = readNpy(file);
    assert.equal(back.dtype, c.dtype);
    assert.deepEqual(back.shape, c.shape);
    assert.deepEqual(Array.from(back.data as ArrayLike<unknown>), Array.from(c.data as ArrayLike<unknown>));
  }
  const text = new TextDecoder().decode(encodeNpyHeader('<f8', [1000, 32, 32, 3]));
  assert.match(text, /\{'descr': '<f8', 'fortran_order': False, 'shape': \(1000, 32, 32, 3\), \}\s*\n$/);
  assert.match(new TextDecoder().decode(encodeNpyHeader('|u1', [5])), /'shape': \(5,\)/);
});

test('half-precision conversions round to nearest even', () => {
  assert.equal(halfToFloat(floatToHalf(1 + 2 ** -11)), 1); // tie → even
  assert.equal(halfToFloat(floatToHalf(1 + 3 * 2 ** -11)), 1 + 2 ** -9);
  assert.equal(floatToHalf(70000), 0x7c00);
  assert.equal(halfToFloat(floatToHalf(2 ** -24)), 2 ** -24);
  assert.equal(floatToHalf(2 ** -26), 0);
});

test('truncated and corrupt files give FileFormatError naming the file and what was expected', () => {
  const good = fs.readFileSync(path.join(FIX, 'f8.npy'));
  const cut = path.join(tmp, 'cut.npy');
  fs.writeFileSync(cut, good.subarray(0, good.length - 5));
  assert.throws(() => readNpy(cut), (e: Error) => e instanceof FileFormatError && e.message.includes('cut.npy') && /truncated .npy data.*needs 320 bytes but the file has 315/.test(e.message));
  assert.throws(() => readNpyHeader(cut), /truncated/);
  fs.writeFileSync(cut, good.subarray(0, 40));
  assert.throws(() => readNpy(cut), /cut\.npy: truncated .npy header/);
  const bad = path.join(tmp, 'bad.npy');
  fs.writeFileSync(bad, 'hello world, not numpy');
  assert.throws(() => readNpy(bad), /bad\.npy: not a \.npy file/);
  const weird = Buffer.from(good);
  weird.write("'descr': '<c16'", 10, 'latin1');
  fs.writeFileSync(bad, weird);
  assert.throws(() => readNpy(bad), /bad\.npy: unsupported \.npy dtype "<c16"/);
  assert.throws(() => readNpy(path.join(tmp, 'missing.npy')), /missing\.npy: cannot read .npy file \(ENOENT\)/);
  assert.throws(() => parseNpy(new Uint8Array([0x93, 78, 85, 77, 80, 89, 9, 0, 0, 0]), 'x.npy'), /unsupported .npy format version 9/);
});
