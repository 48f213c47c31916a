/**
 * Seeded generators: same seed → same draws (and the same draws as PyTorch's generator with that
 * seed), state saved and restored mid-stream (as a tensor or as bytes), independent streams.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { assertClose, torchReference } from './helpers.ts';

test('draws from a seeded generator equal PyTorch`s (fixture)', () => {
  const ref = torchReference().random;
  E.tidy(() => {
    const g = new E.Generator(ref.seed);
    assertClose(E.randn([6], g).toArray(), ref.randn, { atol: 0, rtol: 0 });
    assertClose(E.rand([6], g).toArray(), ref.rand, { atol: 0, rtol: 0 });
    assert.deepEqual(E.randint(3, 17, [6], g).toArray(), ref.randint);
    assert.deepEqual(E.randperm(10, g).toArray(), ref.randperm);
    const w = E.tensor([[1, 2, 3, 4], [4, 0, 1, 1]]);
    assert.deepEqual(E.multinomial(w, 3, true, g).toArray(), ref.multinomial);
    assertClose(E.randn([4], g, { dtype: 'float64' }).toArray(), ref.randn_f64, { atol: 0, rtol: 0 });
  });
});

test('same seed → same stream; different seeds → different streams', () => {
  E.tidy(() => {
    const a = E.randn([16], new E.Generator(42)).toArray();
    const b = E.randn([16], new E.Generator(42)).toArray();
    const c = E.randn([16], new E.Generator(43)).toArray();
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });
});

test('generator state saved and restored (tensor and bytes) resumes the stream exactly', () => {
  E.tidy(() => {
    const g = new E.Generator(5);
    E.rand([7], g); // advance
    const state = g.getState();
    assert.equal(state.dtype, 'uint8');
    const bytes = g.getStateBytes();
    const first = [E.randn([5], g).toArray(), E.randint(0, 100, [5], g).toArray(), E.randperm(6, g).toArray()];
    g.setState(state);
    assert.deepEqual([E.randn([5], g).toArray(), E.randint(0, 100, [5], g).toArray(), E.randperm(6, g).toArray()], first);
    const h = new E.Generator(999);
    h.setStateBytes(bytes);
    assert.deepEqual([E.randn([5], h).toArray(), E.randint(0, 100, [5], h).toArray(), E.randperm(6, h).toArray()], first);
    // in-place fills use the generator too
    g.setState(state);
    const filled = E.empty([5]).normal_(0, 1, g).toArray();
    assert.deepEqual(filled, first[0]);
    assert.throws(() => g.setStateBytes(new Uint8Array(3)), E.TorchError);
    assert.throws(() => new E.Generator(-1), E.TorchError);
  });
});

test('distributions: ranges, permutations, multinomial without replacement', () => {
  E.tidy(() => {
    const g = new E.Generator(11);
    const u = E.rand([4000], g).toFloat32Array();
    assert.ok(u.every((v) => v >= 0 && v < 1));
    const mean = u.reduce((s, v) => s + v, 0) / u.length;
    assert.ok(Math.abs(mean - 0.5) < 0.03, `mean ${mean}`);
    const r = E.randint(-3, 4, [2000], g).toArray();
    assert.ok(r.every((v) => Number.isInteger(v) && v >= -3 && v < 4));
    assert.equal(new Set(r).size, 7);
    const p = E.randperm(50, g).toArray();
    assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    const m = E.multinomial(E.tensor([0, 1, 1, 0, 1]), 3, false, g).toArray();
    assert.deepEqual([...m].sort(), [1, 2, 4]);
    const n = E.randn([4000], g, { dtype: 'float64' });
    assert.ok(Math.abs(n.mean().item()) < 0.06);
    assert.ok(Math.abs(n.std().item() - 1) < 0.05);
    const ui = E.empty([1000]).uniform_(2, 3, g).toFloat32Array();
    assert.ok(ui.every((v) => v >= 2 && v < 3));
  });
});
