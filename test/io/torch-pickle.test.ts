/**
 * Restricted pickle VM and torch.save reader/writer. Fixtures are written by
 * test/fixtures/io/make-torch-fixtures.py (PyTorch 1.13); expected values in torch-expected.json.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { unzipSync, zipSync } from 'fflate';
import { FileFormatError } from '../../src/util/errors.ts';
import { int64View, makeRawTensor, rawFromTyped, rawTensorsEqual, toFloat64Array, type RawTensor } from '../../src/io/raw-tensor.ts';
import { toJs, unpickle } from '../../src/io/pickle.ts';
import { PyFloat, PyTuple, encodeTorchFile, readTorchFile, writeTorchFile } from '../../src/io/torch-pickle.ts';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/io');
const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'torch-expected.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-pt-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

interface Described {
  dtype: string;
  shape: number[];
  values: Array<number | string | boolean>;
}

function assertTensor(actual: unknown, want: Described, name: string): void {
  const t = actual as RawTensor;
  assert.equal(t.dtype, want.dtype, `${name} dtype`);
  assert.deepEqual(t.shape, want.shape, `${name} shape`);
  if (t.dtype === 'int64') {
    assert.deepEqual(Array.from(int64View(t), String), want.values, `${name} values`);
  } else {
    const w = want.values.map((v) => (typeof v === 'boolean' ? Number(v) : typeof v === 'string' ? Number(v.replace('inf', 'Infinity')) : v));
    assert.deepEqual(Array.from(toFloat64Array(t)), w, `${name} values`);
  }
}

test('mixed.pt: every dtype, views, shared storage and parameters', () => {
  const v = readTorchFile(path.join(FIX, 'mixed.pt')) as Record<string, Record<string, unknown>>;
  const sd = v.state_dict!;
  assert.deepEqual(Object.keys(sd), ['w32', 'w16', 'i8', 'i64', 'transposed', 'sliced', 'shared_a', 'shared_b', 'param']);
  for (const [k, want] of Object.entries<Described>(expected.mixed.state_dict)) assertTensor(sd[k], want, k);
  for (const [k, want] of Object.entries<Described>(expected.mixed.extras)) assertTensor(v.extras![k], want, k);
  assert.equal(v.step, 42);
  // The same tensor object referenced twice (pickle memo) stays one object.
  assert.equal(v.alias, sd.w32);
  // Views of one storage are independent contiguous copies.
  (sd.shared_a as RawTensor).data[0] ^= 0xff;
  assert.deepEqual(Array.from(int64View(sd.shared_b as RawTensor), String), expected.mixed.state_dict.shared_b.values);
});

test('mixed.pt: Python values in the config', () => {
  const v = readTorchFile(path.join(FIX, 'mixed.pt')) as Record<string, Record<string, unknown>>;
  const c = v.config!;
  assert.equal(c.lr, 0.0001);
  assert.equal(c.batch_size, 8);
  assert.equal(c.dataset, 'ball_stn');
  assert.equal(c.use_fp16, false);
  assert.equal(c.resume_id, null);
  assert.deepEqual(c.attention_resolutions, [16, 8]);
  assert.deepEqual(c.nested, { a: [1, 2.5, 'x', null, true], b: {} });
  assert.equal(c.big, 2n ** 70n);
  assert.equal(c.neg, -5);
  assert.equal(c.negbig, -(2 ** 40));
  assert.equal(c.unicode, 'héllo ✓');
  assert.deepEqual(c.tuple, [1, 'two']);
  assert.deepEqual(c.set, new Set([3]));
  assert.deepEqual(c.bytes, new Uint8Array([0, 255]));
  assert.equal(c.inf, Infinity);
  assert.deepEqual(c.int_keys, new Map<unknown, unknown>([[1, 'one'], [2, 'two']]));
});

test('replay_state.pt content', () => {
  assert.deepEqual(readTorchFile(path.join(FIX, 'replay_state.pt')), expected.replay);
});

function assertFormatError(fn: () => unknown, file: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof FileFormatError, String(e));
    assert.ok(e.message.startsWith(file), e.message);
    assert.match(e.message, re);
    return true;
  });
}

test('globals outside the allow-list and legacy files are refused', () => {
  const unsafe = path.join(FIX, 'unsafe.pt');
  assertFormatError(() => readTorchFile(unsafe), unsafe, /refusing to load global 'numpy\.core\.multiarray\._reconstruct'/);
  const legacy = path.join(FIX, 'legacy.pt');
  assertFormatError(() => readTorchFile(legacy), legacy, /legacy \(non-zip\) torch\.save format/);
  // pickle.dumps(Evil(), protocol=2) where Evil.__reduce__ returns (os.system, ('echo pwned',)).
  const evil = Buffer.from('800263706f7369780a73797374656d0a7100580a0000006563686f2070776e656471018571025271032e', 'hex');
  assertFormatError(() => unpickle(evil, { file: 'evil.pkl', findGlobal: () => undefined }), 'evil.pkl', /refusing to load global 'posix\.system'/);
});

test('corrupt archives give clear errors', () => {
  const good = fs.readFileSync(path.join(FIX, 'replay_state.pt'));
  assertFormatError(() => readTorchFile(good.subarray(0, good.length - 30), { label: 'cut.pt' }), 'cut.pt', /corrupt ZIP|truncated|data\.pkl/);
  assertFormatError(() => readTorchFile(new Uint8Array([1, 2, 3, 4, 5]), { label: 'junk.pt' }), 'junk.pt', /not a PyTorch zip checkpoint/);
  assertFormatError(() => readTorchFile(zipSync({ 'a/other.txt': new Uint8Array(1) }), { label: 'nopkl.pt' }), 'nopkl.pt', /no <archive>\/data\.pkl/);
  // A storage record of the wrong length.
  const entries = unzipSync(encodeTorchFile({ t: rawFromTyped(new Float32Array([1, 2, 3]), [3]) }));
  entries['archive/data/0'] = entries['archive/data/0']!.subarray(0, 8);
  assertFormatError(() => readTorchFile(zipSync(entries), { label: 'short.pt' }), 'short.pt', /storage 0: record has 8 bytes, expected 3 × 4/);
  // Missing storage record.
  delete entries['archive/data/0'];
  assertFormatError(() => readTorchFile(zipSync(entries), { label: 'nostorage.pt' }), 'nostorage.pt', /missing storage record archive\/data\/0/);
  // A truncated pickle stream inside a valid zip.
  const e2 = unzipSync(encodeTorchFile({ a: [1, 2, 3] }));
  e2['archive/data.pkl'] = e2['archive/data.pkl']!.subarray(0, 10);
  assertFormatError(() => readTorchFile(zipSync(e2), { label: 'trunc.pt' }), 'trunc.pt', /pickle: (truncated data|stack underflow|no MARK)/);
  assertFormatError(() => readTorchFile(path.join(tmp, 'absent.pt')), path.join(tmp, 'absent.pt'), /file not found/);
});

test('pickle VM: protocol 4 opcodes (FRAME, MEMOIZE, SHORT_BINUNICODE, sets, bytes, LONG1)', () => {
  // pickle.dumps({'a': [1, 2.5, None, True, 'x'], 'b': (1, 2), 's': {1}, 'fs': frozenset([2]), 'by': b'ab',
  //               'n': -2**40, 'big': 2**80, 'u': 'é', 'shared': (l, l)}, protocol=4) with l = [7]
  const hex =
    '80049580000000000000007d94288c0161945d94284b014740040000000000004e888c017894658c0162944b014b0286948c0173948f94284b01908c02667394284b0291948c0262799443026162948c016e948a060000000000ff8c03626967948a0b00000000000000000000018c0175948c02c3a9948c06736861726564945d944b076168118694752e';
  const v = toJs(unpickle(Buffer.from(hex, 'hex'), { file: 'p4', findGlobal: () => undefined })) as Record<string, unknown>;
  assert.deepEqual(v.a, [1, 2.5, null, true, 'x']);
  assert.deepEqual(v.b, [1, 2]);
  assert.deepEqual(v.s, new Set([1]));
  assert.deepEqual(v.fs, new Set([2]));
  assert.deepEqual(v.by, new Uint8Array([0x61, 0x62]));
  assert.equal(v.n, -(2 ** 40));
  assert.equal(v.big, 2n ** 80n);
  assert.equal(v.u, 'é');
  const shared = v.shared as unknown[][];
  assert.equal(shared[0], shared[1]);
  // Protocol 0 text opcodes are not supported: clear error naming the opcode.
  assertFormatError(() => unpickle(Buffer.from('286470300a566b0a70310a49310a732e', 'hex'), { file: 'p0', findGlobal: () => undefined }), 'p0', /unsupported opcode 0x70 \('p'\)/);
});

test('writer: round trip through our reader', () => {
  const t32 = rawFromTyped(new Float32Array([1, -2, 3.5, 4, 5, 6]), [2, 3]);
  const value = {
    next_index: 57,
    buffer_indices: Array.from({ length: 1500 }, (_, i) => i * 3), // > 1000: several APPENDS batches
    floats: [0.5, new PyFloat(2), -0, NaN, Infinity],
    ints: [0, 255, 256, 65535, 65536, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, -(2 ** 53) + 1, 2n ** 64n, -(2n ** 64n), 128n, -129n],
    text: 'ünïcödé ✓',
    bytes: new Uint8Array([0, 1, 254, 255]),
    tuple: new PyTuple([1, 'a', null]),
    map: new Map<unknown, unknown>([[1, 'one'], ['k', true]]),
    '0': 'integer-like key',
    t32,
    scalar: makeRawTensor('int64', [], new Uint8Array(new BigInt64Array([-7n]).buffer)),
    empty: makeRawTensor('float16', [0, 2], new Uint8Array(0)),
  };
  const back = readTorchFile(encodeTorchFile(value)) as Record<string, unknown>;
  assert.equal(back.next_index, 57);
  assert.deepEqual(back.buffer_indices, value.buffer_indices);
  assert.deepEqual(back.floats, [0.5, 2, -0, NaN, Infinity]);
  assert.deepEqual(back.ints, [0, 255, 256, 65535, 65536, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 53 - 1, -(2 ** 53) + 1, 2n ** 64n, -(2n ** 64n), 128, -129]);
  assert.equal(back.text, value.text);
  assert.deepEqual(back.bytes, value.bytes);
  assert.deepEqual(back.tuple, [1, 'a', null]);
  assert.deepEqual(back.map, new Map<unknown, unknown>([[1, 'one'], ['k', true]]));
  assert.equal(back['0'], 'integer-like key');
  assert.ok(rawTensorsEqual(back.t32 as RawTensor, t32));
  assert.ok(rawTensorsEqual(back.scalar as RawTensor, value.scalar));
  assert.ok(rawTensorsEqual(back.empty as RawTensor, value.empty));
  const cyclic: unknown[] = [];
  cyclic.push(cyclic);
  assert.throws(() => encodeTorchFile(cyclic), /cyclic/);
  assert.throws(() => encodeTorchFile({ f: () => 1 }), /cannot pickle a function/);
});

const torchPython = (() => {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0;
})();

test('writer: torch.load reads our files (needs /usr/bin/python3 with torch)', { skip: !torchPython && 'no python3 with torch' }, () => {
  const file = path.join(tmp, 'replay_state.pt');
  writeTorchFile(file, {
    next_index: 9,
    buffer_indices: [0, 3, 8],
    w: rawFromTyped(new Float32Array([1.5, -2, 3, 4]), [2, 2]),
    h: makeRawTensor('bfloat16', [2], new Uint8Array([0x80, 0x3f, 0x20, 0xc0])),
    lr: new PyFloat(1),
  });
  const script =
    'import sys, torch, json; d = torch.load(sys.argv[1]); print(json.dumps({"n": d["next_index"], "b": d["buffer_indices"], ' +
    '"w": d["w"].tolist(), "wd": str(d["w"].dtype), "h": d["h"].float().tolist(), "hd": str(d["h"].dtype), "lr": repr(d["lr"])}))';
  const r = spawnSync('/usr/bin/python3', ['-c', script, file], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { n: 9, b: [0, 3, 8], w: [[1.5, -2], [3, 4]], wd: 'torch.float32', h: [1, -2.5], hd: 'torch.bfloat16', lr: '1.0' });
});
