/**
 * Checkpoints: named tensors + metadata to safetensors and back, bit-exactly for every dtype;
 * the header layout of the public format; atomic writes; module save/load; a Python reader
 * (PyTorch, independent of our code) sees the same values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as E from '../../src/engine/index.ts';
import { Linear, loadModule, loadTensors, saveModule, saveTensors, setInitSeed } from '../../src/nn/index.ts';
import { StateDictError } from '../../src/nn/module.ts';
import { FileFormatError } from '../../src/util/errors.ts';

function tmpdir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-ckpt-'));
}

/** One tensor per dtype, with awkward values (NaN payloads, −0, ±∞, subnormals, extremes). */
function zoo(): Map<string, E.Tensor> {
  const f32 = new Float32Array([0, -0, Infinity, -Infinity, 1e-45, 3.4028234663852886e38, 1 / 3, 0]);
  new Uint32Array(f32.buffer)[7] = 0x7fc01234; // NaN with a payload
  const f64 = new Float64Array([Math.PI, -0, 5e-324, NaN, 1e308, -1]);
  const h = new Uint16Array([0x0001, 0x7bff, 0x8000, 0x7c00, 0x7e01, 0x3555]);
  return new Map<string, E.Tensor>([
    ['f32', E.tensor(f32, { shape: [2, 4] })],
    ['f64', E.tensor(f64, { shape: [3, 2] })],
    ['f16', E.fromBytes(new Uint8Array(h.buffer), [6], 'float16')],
    ['bf16', E.fromBytes(new Uint8Array(h.buffer), [2, 3], 'bfloat16')],
    ['i64', E.tensor(BigInt64Array.of(-(2n ** 62n), 2n ** 53n + 1n, 0n))],
    ['i32', E.tensor(Int32Array.of(-(2 ** 31), 2 ** 31 - 1))],
    ['i16', E.tensor(Int16Array.of(-32768, 7))],
    ['i8', E.tensor(Int8Array.of(-128, 127))],
    ['u8', E.tensor(Uint8Array.of(0, 255, 9))],
    ['bool', E.tensor([true, false, true, true])],
    ['scalar', E.scalarTensor(2.5, { dtype: 'float64' })],
    ['empty', E.zeros([0, 3])],
    ['0', E.ones([1])], // integer-like name
    ['input_blocks.1.0.in_layers.2.weight', E.arange(6, undefined, 1, { dtype: 'float32' }).reshape([2, 3]).transpose(0, 1)], // non-contiguous
  ]);
}

test('save/load round trip is bit-exact for every dtype and keeps metadata', () => {
  const dir = tmpdir();
  const file = path.join(dir, 'sub', 'model000010.safetensors');
  const tensors = zoo();
  try {
    const meta = { step: '10', config: JSON.stringify({ lr: 1e-4, unicode: 'αβγ' }) };
    saveTensors(file, tensors, meta);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['model000010.safetensors']); // no temporary left behind
    const loaded = loadTensors(file);
    assert.deepEqual(loaded.metadata, meta);
    assert.deepEqual([...loaded.tensors.keys()].sort(), [...tensors.keys()].sort());
    for (const [name, t] of tensors) {
      const u = loaded.tensors.get(name)!;
      assert.equal(u.dtype, t.dtype, name);
      assert.deepEqual(u.shape, t.shape, name);
      assert.deepEqual(u.toBytes(), t.toBytes(), `${name}: bytes differ`);
    }
    const some = loadTensors(file, { names: ['i64'] });
    assert.deepEqual([...some.tensors.keys()], ['i64']);
    assert.throws(() => loadTensors(file, { names: ['nope'] }), FileFormatError);
    E.disposeAll([[...loaded.tensors.values()], [...some.tensors.values()]]);
  } finally {
    E.disposeAll([...tensors.values()]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('header layout: u64 length, space-padded JSON to a multiple of 8, dtype codes, tiled offsets', () => {
  const dir = tmpdir();
  const file = path.join(dir, 'x.safetensors');
  const tensors = zoo();
  try {
    saveTensors(file, tensors, { note: 'hi' });
    const bytes = fs.readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    const text = bytes.subarray(8, 8 + n).toString('utf8');
    assert.match(text, /^\{"__metadata__":\{"note":"hi"\},/);
    assert.match(text, / *$/);
    const header = JSON.parse(text) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const codes: Record<string, string> = { f32: 'F32', f64: 'F64', f16: 'F16', bf16: 'BF16', i64: 'I64', i32: 'I32', i16: 'I16', i8: 'I8', u8: 'U8', bool: 'BOOL' };
    for (const [name, code] of Object.entries(codes)) assert.equal(header[name]!.dtype, code, name);
    assert.deepEqual(header.scalar!.shape, []);
    assert.deepEqual(header.empty!.shape, [0, 3]);
    assert.deepEqual(header['input_blocks.1.0.in_layers.2.weight']!.shape, [3, 2]);
    const ranges = Object.entries(header)
      .filter(([k]) => k !== '__metadata__')
      .map(([, e]) => e.data_offsets)
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let pos = 0;
    for (const [b, e] of ranges) {
      assert.equal(b, pos, 'offsets tile the buffer without gaps');
      pos = e;
    }
    assert.equal(8 + n + pos, bytes.length);
    // the non-contiguous tensor is stored in C order of its logical shape
    const e = header['input_blocks.1.0.in_layers.2.weight']!;
    const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset + 8 + n + e.data_offsets[0], bytes.byteOffset + 8 + n + e.data_offsets[1]));
    assert.deepEqual(Array.from(data), [0, 3, 1, 4, 2, 5]);
  } finally {
    E.disposeAll([...tensors.values()]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('module save/load; loading into a different architecture lists the problems', () => {
  const dir = tmpdir();
  const file = path.join(dir, 'model.safetensors');
  setInitSeed(4);
  const a = new Linear(3, 2);
  const b = new Linear(3, 2);
  const c = new Linear(4, 2, { bias: false });
  try {
    saveModule(file, a, { step: '7' });
    assert.deepEqual(loadModule(file, b), { step: '7' });
    assert.deepEqual(b.param('weight').toArray(), a.param('weight').toArray());
    assert.throws(() => loadModule(file, c), (e: Error) => e instanceof StateDictError && /unexpected 1: bias/.test(e.message) && /weight: expected \[2, 4\], got \[2, 3\]/.test(e.message));
    fs.writeFileSync(path.join(dir, 'broken.safetensors'), Buffer.from([1, 2, 3]));
    assert.throws(() => loadModule(path.join(dir, 'broken.safetensors'), b), FileFormatError);
    assert.throws(() => loadModule(path.join(dir, 'missing.safetensors'), b), /file not found/);
  } finally {
    for (const m of [a, b, c]) m.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0);

test('Python (PyTorch) reads our files with the same values', { skip: python ? false : 'no python3 with torch installed' }, () => {
  const dir = tmpdir();
  const file = path.join(dir, 'x.safetensors');
  const tensors = zoo();
  tensors.delete('f32'); // NaN payload: JSON cannot carry it
  tensors.delete('f64');
  try {
    saveTensors(file, tensors, { step: '3' });
    // Prefer the safetensors package; fall back to a reader written from the public format spec.
    const script = `
import json, struct, sys, torch
path = sys.argv[1]
try:
    from safetensors.torch import load_file
    from safetensors import safe_open
    tensors = load_file(path)
    with safe_open(path, 'pt') as f: meta = f.metadata()
except ImportError:
    codes = {'F64': torch.float64, 'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'I64': torch.int64,
             'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8, 'BOOL': torch.bool}
    raw = open(path, 'rb').read()
    n, = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop('__metadata__', None)
    tensors = {}
    for name, e in header.items():
        b, end = e['data_offsets']
        buf = bytearray(raw[8 + n + b: 8 + n + end])
        t = torch.frombuffer(buf, dtype=codes[e['dtype']]) if end > b else torch.empty(0, dtype=codes[e['dtype']])
        tensors[name] = t.reshape(e['shape'])
print(json.dumps({'meta': meta, 'tensors': {k: {'dtype': str(v.dtype).replace('torch.', ''), 'shape': list(v.shape),
    'values': [repr(x) for x in v.flatten().tolist()]} for k, v in tensors.items()}}))
`;
    const r = spawnSync(python!, ['-c', script, file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { meta: Record<string, string>; tensors: Record<string, { dtype: string; shape: number[]; values: string[] }> };
    assert.deepEqual(got.meta, { step: '3' });
    const names: Record<string, string> = { float16: 'float16', bfloat16: 'bfloat16', int64: 'int64', int32: 'int32', int16: 'int16', int8: 'int8', uint8: 'uint8', bool: 'bool', float64: 'float64', float32: 'float32' };
    const pyRepr = (v: number, dtype: string) => {
      if (dtype === 'bool') return v ? 'True' : 'False';
      if (!dtype.startsWith('float') && !dtype.startsWith('bfloat')) return String(v);
      if (Number.isNaN(v)) return 'nan';
      if (!Number.isFinite(v)) return v > 0 ? 'inf' : '-inf';
      return null; // compare numerically
    };
    for (const [name, t] of tensors) {
      const g = got.tensors[name]!;
      assert.ok(g, `python sees ${name}`);
      assert.equal(g.dtype, names[t.dtype], name);
      assert.deepEqual(g.shape, t.shape, name);
      const mine = t.dtype === 'int64' ? Array.from(t.toTypedArray() as BigInt64Array, String) : t.toArray();
      mine.forEach((v, i) => {
        if (typeof v === 'string') return assert.equal(g.values[i], v, `${name}[${i}]`);
        const repr = pyRepr(v, t.dtype);
        if (repr !== null) assert.equal(g.values[i], repr, `${name}[${i}]`);
        else assert.equal(Number(g.values[i]), v, `${name}[${i}]`);
      });
    }
  } finally {
    E.disposeAll([...tensors.values()]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
