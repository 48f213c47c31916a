/**
 * Module tree: PyTorch naming, state-dict loading errors (missing / unexpected / mismatched listed
 * together), initialisation bounds and determinism, modes, casting and disposal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { AdamW, Conv2d, Conv3d, Dropout, GroupNorm, LayerNorm, Linear, Module, ModuleList, Sequential, SiLU, setInitSeed } from '../../src/nn/index.ts';
import { StateDictError } from '../../src/nn/module.ts';

class Block extends Module {
  readonly norm = this.registerModule('norm', new GroupNorm(2, 4));
  readonly layers = this.registerModule('layers', new Sequential(new Conv2d(4, 4, 3, { padding: 1 }), new SiLU(), new Dropout(0.1)));
  readonly heads = this.registerModule('heads', new ModuleList([new Linear(4, 2), new Linear(2, 1, { bias: false })]));
}

test('parameter names follow PyTorch (nested modules, Sequential and ModuleList indices)', () => {
  setInitSeed(0);
  const b = new Block();
  assert.deepEqual(b.namedParameters().map(([n]) => n), [
    'norm.weight',
    'norm.bias',
    'layers.0.weight',
    'layers.0.bias',
    'heads.0.weight',
    'heads.0.bias',
    'heads.1.weight',
  ]);
  assert.equal(b.numParameters(), 8 + 4 * 4 * 9 + 4 + 8 + 2 + 2);
  assert.deepEqual(b.namedModules().map(([n]) => n), ['', 'norm', 'layers', 'layers.0', 'layers.1', 'layers.2', 'heads', 'heads.0', 'heads.1']);
  b.eval();
  assert.equal(b.child<Sequential>('layers').layers[2]!.training, false);
  b.train();
  assert.equal(b.child<Sequential>('layers').layers[2]!.training, true);
  b.dispose();
});

test('loadStateDict reports missing, unexpected and mismatched names together', () => {
  setInitSeed(0);
  const b = new Block();
  const sd = b.stateDict();
  const bad = new Map(sd);
  bad.delete('norm.bias');
  bad.delete('heads.1.weight');
  const extra = E.keep(E.zeros([3]));
  const wrong = E.keep(E.zeros([2, 5]));
  bad.set('heads.2.weight', extra);
  bad.set('heads.0.weight', wrong);
  assert.throws(() => b.loadStateDict(bad), (e: Error) => {
    assert.ok(e instanceof StateDictError);
    assert.match(e.message, /missing 2: norm\.bias, heads\.1\.weight/);
    assert.match(e.message, /unexpected 1: heads\.2\.weight/);
    assert.match(e.message, /shape mismatch 1: heads\.0\.weight: expected \[2, 4\], got \[2, 5\]/);
    return true;
  });
  // non-strict: missing/unexpected are returned, but a shape mismatch still throws
  bad.set('heads.0.weight', sd.get('heads.0.weight')!);
  const r = b.loadStateDict(bad, { strict: false });
  assert.deepEqual(r, { missing: ['norm.bias', 'heads.1.weight'], unexpected: ['heads.2.weight'] });
  bad.set('heads.0.weight', wrong);
  assert.throws(() => b.loadStateDict(bad, { strict: false }), /shape mismatch/);
  // a full, correct state dict loads values (copied, converting dtype)
  const c = new Block();
  const src = new Map([...b.stateDict()].map(([k, t]) => [k, E.keep(t.double())]));
  c.loadStateDict(src);
  assert.deepEqual(c.child('heads').child<Linear>('0').param('weight').toArray(), b.child('heads').child<Linear>('0').param('weight').toArray());
  assert.equal(c.child('heads').child<Linear>('0').param('weight').dtype, 'float32');
  E.disposeAll([extra, wrong, [...src.values()]]);
  b.dispose();
  c.dispose();
});

/** max |x| over a tensor. */
const maxAbs = (t: E.Tensor) => E.tidy(() => t.abs().max().item());

test('initialisation: kaiming-uniform(a=√5) bounds 1/√fan_in, norms ones/zeros, zeroInit, determinism', () => {
  setInitSeed(123);
  const lin = new Linear(50, 40);
  const conv = new Conv2d(8, 16, 3, { groups: 2 });
  const conv3 = new Conv3d(4, 6, [1, 3, 3]);
  const checks: [string, E.Tensor, number][] = [
    ['linear.weight', lin.param('weight'), 1 / Math.sqrt(50)],
    ['linear.bias', lin.param('bias'), 1 / Math.sqrt(50)],
    ['conv.weight', conv.param('weight'), 1 / Math.sqrt(4 * 9)],
    ['conv.bias', conv.param('bias'), 1 / Math.sqrt(4 * 9)],
    ['conv3.weight', conv3.param('weight'), 1 / Math.sqrt(4 * 9)],
  ];
  for (const [name, t, bound] of checks) {
    const m = maxAbs(t);
    assert.ok(m <= bound, `${name}: max |w| ${m} > bound ${bound}`);
    if (t.numel >= 500) assert.ok(m > 0.95 * bound, `${name}: max |w| ${m} far below bound ${bound} (not uniform on the full range?)`);
    assert.equal(t.requiresGrad, true);
  }
  // U(−b, b) has variance b²/3
  const v = E.tidy(() => lin.param('weight').var().item());
  assert.ok(Math.abs(v - 1 / 50 / 3) / (1 / 50 / 3) < 0.1, `variance ${v}`);
  assert.deepEqual(conv.param('weight').shape, [16, 4, 3, 3]);
  const gn = new GroupNorm(2, 4);
  assert.deepEqual(gn.param('weight').toArray(), [1, 1, 1, 1]);
  assert.deepEqual(gn.param('bias').toArray(), [0, 0, 0, 0]);
  const ln = new LayerNorm([3]);
  assert.deepEqual(ln.param('weight').toArray(), [1, 1, 1]);
  const z = new Conv2d(2, 2, 3, { zeroInit: true });
  assert.equal(maxAbs(z.param('weight')), 0);
  assert.throws(() => new GroupNorm(3, 4), /not divisible/);
  // same seed → same weights
  setInitSeed(9);
  const a = new Linear(4, 4);
  setInitSeed(9);
  const b = new Linear(4, 4);
  assert.deepEqual(a.param('weight').toArray(), b.param('weight').toArray());
  for (const m of [lin, conv, conv3, gn, ln, z, a, b]) m.dispose();
});

test('Module.to casts floating parameters; dispose frees everything', () => {
  const live = E.liveTensorCount();
  setInitSeed(0);
  const b = new Block();
  assert.equal(E.liveTensorCount(), live + 7);
  b.to({ dtype: 'float64' });
  assert.equal(b.child<GroupNorm>('norm').param('weight').dtype, 'float64');
  assert.equal(b.child<GroupNorm>('norm').param('weight').requiresGrad, true);
  assert.equal(E.liveTensorCount(), live + 7);
  const y = E.tidy(() => E.keep(b.child<Sequential>('layers').forward(E.ones([1, 4, 3, 3], { dtype: 'float64' }))));
  assert.deepEqual(y.shape, [1, 4, 3, 3]);
  y.dispose();
  b.dispose();
  assert.equal(E.liveTensorCount(), live);
});

test('derived tensors: kept while grad is off and the parts are unchanged; remade after any in-place write (ATen, AdamW, setData) and always with grad on', () => {
  const before = E.liveTensorCount();
  class Pair extends Module {
    readonly a = this.registerModule('a', new Linear(3, 2));
    readonly b = this.registerModule('b', new Linear(3, 4));
  }
  const m = new Pair();
  const parts = () => [m.a.param('weight'), m.b.param('weight')];
  let made = 0;
  const joined = () => m.derived('w', parts(), () => (made++, E.cat(parts(), 0)));
  const values = () => Array.from(E.cat(parts(), 0).toFloat32Array());
  E.tidy(() => E.noGrad(() => {
    const first = joined();
    assert.equal(joined(), first, 'the same tensor handed out again');
    assert.equal(made, 1);
    // an ATen in-place operator
    m.a.param('weight').mul_(2);
    const second = joined();
    assert.equal(made, 2);
    assert.deepEqual(Array.from(second.toFloat32Array()), values());
    assert.equal(first.isDisposed, true, 'the stale tensor is freed');
    // flexvid's native AdamW (writes through data pointers)
    const opt = new AdamW([m.a.param('weight'), m.b.param('weight')], { lr: 0.1 });
    for (const p of parts()) p.setGrad(E.onesLike(p));
    opt.step();
    assert.deepEqual(Array.from(joined().toFloat32Array()), values());
    assert.equal(made, 3);
    // setData (a byte copy into the tensor)
    m.b.param('weight').setData(new Float32Array(12).fill(0.5));
    assert.deepEqual(Array.from(joined().toFloat32Array()), values());
    assert.equal(made, 4);
    // a different part list under the same key
    m.derived('w', [m.a.param('weight')], () => (made++, m.a.param('weight').clone()));
    assert.equal(made, 5);
    opt.dispose();
    for (const p of parts()) p.zeroGrad();
  }));
  // grad on: made every call, and the result reaches the parameters
  const y = joined();
  assert.equal(made, 6);
  assert.equal(y.requiresGrad, true);
  y.dispose();
  joined().dispose();
  assert.equal(made, 7);
  m.dispose();
  assert.equal(E.liveTensorCount(), before, 'dispose() frees the kept tensors');
});
