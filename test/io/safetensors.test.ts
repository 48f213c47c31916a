/**
 * safetensors: exact byte layout, bit-exact round trips for every dtype, a fixture written by a
 * committed Python script (test/fixtures/io/make-safetensors-fixture.py), and clear errors for
 * corrupted / truncated files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileFormatError } from '../../src/util/errors.ts';
import { DTYPES, ITEM_SIZE, makeRawTensor, rawTensorsEqual, toFloat64Array, type RawTensor } from '../../src/io/raw-tensor.ts';
import { decodeSafetensors, encodeSafetensors, loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../../src/io/safetensors.ts';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/io');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-st-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

const concat = (parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
};

test('exact byte layout of a hand-computed tiny file', () => {
  const bytes = concat(encodeSafetensors({ b: makeRawTensor('uint8', [2], new Uint8Array([1, 2])), a: makeRawTensor('int16', [1], new Uint8Array([0x34, 0x12])) }, { k: 'v' }));
  const json = '{"__metadata__":{"k":"v"},"a":{"dtype":"I16","shape":[1],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}';
  // 26 ({"__metadata__":{"k":"v"},) + 52 (entry a) + 1 (,) + 51 (entry b) + 1 (}) = 131 bytes,
  // padded with 5 spaces to 136 = 17 · 8.
  assert.equal(json.length, 131);
  const expected = [136, 0, 0, 0, 0, 0, 0, 0, ...Buffer.from(json + ' '.repeat(5)), 0x34, 0x12, 1, 2];
  assert.deepEqual(Array.from(bytes), expected);
});

test('no metadata → no __metadata__ key; header is a multiple of 8 bytes', () => {
  const bytes = concat(encodeSafetensors({ x: makeRawTensor('float32', [], new Uint8Array(4)) }));
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  assert.equal(Buffer.from(bytes.subarray(8, 8 + n)).toString().trimEnd(), '{"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}');
});

function sampleTensor(dtype: RawTensor['dtype'], shape: number[], seed: number): RawTensor {
  const n = shape.reduce((a, b) => a * b, 1) * ITEM_SIZE[dtype];
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (i * 131 + seed * 17 + 7) & 0xff; // arbitrary bit patterns (incl. NaN payloads)
  if (dtype === 'bool') for (let i = 0; i < n; i++) data[i] &= 1;
  return makeRawTensor(dtype, shape, data);
}

test('round trip is bit-exact for every dtype, odd sizes and integer-like names', () => {
  const tensors: Record<string, RawTensor> = {};
  DTYPES.forEach((dt, k) => {
    tensors[`t.${dt}`] = sampleTensor(dt, [3, k + 1], k);
  });
  tensors['10'] = sampleTensor('uint8', [5], 99);
  tensors['2'] = sampleTensor('float64', [1, 1], 98);
  tensors['zero'] = sampleTensor('float32', [0, 7], 97);
  tensors['input_blocks.1.0.in_layers.2.weight'] = sampleTensor('float32', [4, 2, 3, 3], 96);
  const file = path.join(tmp, 'rt.safetensors');
  saveSafetensors(file, tensors, { step: '7', config: '{"lr":1e-4}' });
  const back = loadSafetensors(file);
  assert.deepEqual(Object.keys(back.tensors).sort(), Object.keys(tensors).sort());
  for (const [k, t] of Object.entries(tensors)) assert.ok(rawTensorsEqual(back.tensors[k]!, t), k);
  assert.deepEqual(back.metadata, { step: '7', config: '{"lr":1e-4}' });
  // Every tensor is aligned to its item size within the file.
  const h = readSafetensorsHeader(file);
  for (const e of Object.values(h.tensors)) assert.equal((h.dataStart + e.dataOffsets[0]) % ITEM_SIZE[e.dtype], 0);
  // Only the requested tensors are read.
  assert.deepEqual(Object.keys(loadSafetensors(file, { names: ['2'] }).tensors), ['2']);
  assert.throws(() => loadSafetensors(file, { names: ['nope'] }), /no tensor named "nope"/);
  // No temporary files are left behind.
  assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.includes('rt.safetensors')), ['rt.safetensors']);
});

test('reads the Python-written fixture; our writer reproduces its bytes', () => {
  const file = path.join(FIX, 'tiny.safetensors');
  const { tensors, metadata } = loadSafetensors(file);
  assert.deepEqual(metadata, { format: 'pt', step: '123' });
  assert.deepEqual(tensors.weight!.shape, [2, 3]);
  assert.deepEqual(Array.from(toFloat64Array(tensors.weight!)), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]);
  assert.deepEqual(Array.from(toFloat64Array(tensors.steps!)), [1, -2, 2 ** 40]);
  assert.deepEqual(Array.from(tensors.flags!.data), [1, 0, 1]);
  assert.deepEqual(Array.from(tensors.pixels!.data), [0, 7, 255]);
  assert.deepEqual(tensors.empty!.shape, [0, 4]);
  assert.deepEqual(tensors.scalar!.shape, []);
  assert.deepEqual(Array.from(toFloat64Array(tensors.scalar!)), [0.125]);
  const ours = concat(encodeSafetensors(tensors, metadata));
  assert.deepEqual(Buffer.from(ours), fs.readFileSync(file));
  const h = readSafetensorsHeader(file);
  assert.equal(h.headerLength % 8, 0);
  assert.deepEqual(h.tensors.f16_src, { dtype: 'float32', shape: [63], dataOffsets: [32, 284] });
});

/** Build a file from a header object and a data buffer (for corruption tests). */
function rawFile(name: string, header: unknown, data: Uint8Array, headerLen?: number): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerLen ?? json.length));
  const file = path.join(tmp, name);
  fs.writeFileSync(file, Buffer.concat([len, json, data]));
  return file;
}

function assertFormatError(fn: () => unknown, file: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FileFormatError, String(e));
    assert.ok(e.message.startsWith(file), `message names the file: ${e.message}`);
    assert.match(e.message, re);
    return true;
  });
}

test('corrupted and truncated files give clear errors naming the file', () => {
  const good = path.join(tmp, 'good.safetensors');
  saveSafetensors(good, { a: sampleTensor('float32', [4], 1), b: sampleTensor('uint8', [3], 2) });
  const bytes = fs.readFileSync(good);
  const cut = path.join(tmp, 'cut.safetensors');
  fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 1));
  assertFormatError(() => loadSafetensors(cut), cut, /covers|past the end/);
  const cutHeader = path.join(tmp, 'cut-header.safetensors');
  fs.writeFileSync(cutHeader, bytes.subarray(0, 20));
  assertFormatError(() => readSafetensorsHeader(cutHeader), cutHeader, /truncated safetensors file/);
  const tiny = path.join(tmp, 'tiny.bin');
  fs.writeFileSync(tiny, Buffer.from([1, 2, 3]));
  assertFormatError(() => loadSafetensors(tiny), tiny, /shorter than the 8-byte header length/);
  const huge = rawFile('huge.safetensors', '{}', new Uint8Array(0), 2 ** 40);
  assertFormatError(() => loadSafetensors(huge), huge, /exceeds/);
  const notJson = rawFile('notjson.safetensors', '{"a":', new Uint8Array(0));
  assertFormatError(() => loadSafetensors(notJson), notJson, /not valid JSON/);
  const e = (o: [number, number], shape = [2], dtype = 'F32') => ({ dtype, shape, data_offsets: o });
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['dtype', { a: e([0, 8], [2], 'C64') }, 8, /unsupported dtype "C64"/],
    ['size', { a: e([0, 4]) }, 4, /span 4 bytes but float32\[2\] needs 8/],
    ['gap', { a: e([0, 8]), b: e([12, 20]) }, 20, /gap in safetensors data before tensor "b"/],
    ['overlap', { a: e([0, 8]), b: e([4, 12]) }, 12, /overlaps/],
    ['bounds', { a: e([0, 8]) }, 4, /past the end/],
    ['trailing', { a: e([0, 8]) }, 12, /trailing or missing bytes/],
    ['shape', { a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8, /shape must be a list of non-negative integers/],
    ['offsets', { a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 8, /data_offsets must be/],
    ['metadata', { __metadata__: { step: 3 } }, 0, /__metadata__ "step" must be a string/],
  ];
  for (const [name, header, dataLen, re] of cases) {
    const f = rawFile(`${name}.safetensors`, header, new Uint8Array(dataLen));
    assertFormatError(() => loadSafetensors(f), f, re);
  }
  const missing = path.join(tmp, 'missing.safetensors');
  assertFormatError(() => loadSafetensors(missing), missing, /file not found/);
  assertFormatError(() => decodeSafetensors(new Uint8Array(3), 'mem'), 'mem', /shorter/);
});

test('writer rejects invalid input', () => {
  assert.throws(() => encodeSafetensors({ __metadata__: sampleTensor('uint8', [1], 0) }), /cannot be named/);
  assert.throws(() => encodeSafetensors({ a: { dtype: 'float32', shape: [2], data: new Uint8Array(4) } }), /needs 8 bytes/);
  assert.throws(() => encodeSafetensors({}, { a: 1 as unknown as string }), /must be a string/);
});
