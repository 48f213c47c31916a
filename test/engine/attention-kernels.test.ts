/**
 * batchedMatmul (grouped-convolution formulation on CPU) against a closed-form reference: per-batch
 * products computed element by element in float64, values and gradients; the profiler's counts
 * and self/total times; autocast scopes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';

/** C[g] = A[g] B[g] by explicit loops in float64. a [G, M, K], b [G, K, N]. */
function naiveBmm(a: Float64Array, b: Float64Array, G: number, M: number, K: number, N: number): Float64Array {
  const c = new Float64Array(G * M * N);
  for (let g = 0; g < G; g++)
    for (let i = 0; i < M; i++)
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[(g * M + i) * K + k]! * b[(g * K + k) * N + j]!;
        c[(g * M + i) * N + j] = s;
      }
  return c;
}

function maxAbsDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  return m;
}

for (const threads of [1, 2]) {
  test(`batchedMatmul equals the per-batch products, values and gradients (${threads} thread${threads > 1 ? 's' : ''})`, () => {
    const before = E.getNumThreads();
    E.setNumThreads(threads);
    try {
      E.tidy(() => {
        const [G, M, K, N] = [6, 5, 3, 4];
        const g = new E.Generator(1);
        const a = E.randn([G, M, K], g).requiresGrad_();
        const b = E.randn([G, K, N], g).requiresGrad_();
        const w = E.randn([G, M, N], g); // upstream gradient
        const c = E.batchedMatmul(a, b);
        assert.deepEqual(c.shape, [G, M, N]);
        const av = Float64Array.from(a.detach().toArray() as number[]);
        const bv = Float64Array.from(b.detach().toArray() as number[]);
        assert.ok(maxAbsDiff(c.detach().toArray() as number[], naiveBmm(av, bv, G, M, K, N)) < 1e-5);
        // d(Σ w∘C)/dA = w Bᵀ, d/dB = Aᵀ w
        c.mul(w).sum().backward();
        const wv = Float64Array.from(w.toArray() as number[]);
        const bT = Float64Array.from(b.detach().transpose(1, 2).contiguous().toArray() as number[]);
        const aT = Float64Array.from(a.detach().transpose(1, 2).contiguous().toArray() as number[]);
        assert.ok(maxAbsDiff(a.grad!.toArray() as number[], naiveBmm(wv, bT, G, M, N, K)) < 1e-5);
        assert.ok(maxAbsDiff(b.grad!.toArray() as number[], naiveBmm(aT, wv, G, K, M, N)) < 1e-5);
        // transposed (non-contiguous) operands give the same numbers
        const c2 = E.batchedMatmul(a.detach(), b.detach().transpose(1, 2).contiguous().transpose(1, 2));
        assert.ok(maxAbsDiff(c2.toArray() as number[], c.detach().toArray() as number[]) < 1e-6);
      });
    } finally {
      E.setNumThreads(before);
    }
  });
}

test('batchedMatmul rejects mismatched shapes, naming both', () => {
  E.tidy(() => {
    assert.throws(() => E.batchedMatmul(E.zeros([2, 3, 4]), E.zeros([2, 5, 6])), /\[2, 3, 4\] and \[2, 5, 6\]/);
    assert.throws(() => E.batchedMatmul(E.zeros([3, 4]), E.zeros([4, 6])), /expected a \[G, M, K\]/);
  });
});

test('batchedMatmul frees its temporaries (live tensor count)', () => {
  const a = E.randn([4, 3, 2]);
  const b = E.randn([4, 2, 5]);
  E.batchedMatmul(a, b).dispose();
  const live = E.liveTensorCount();
  for (let i = 0; i < 5; i++) E.batchedMatmul(a, b).dispose();
  assert.equal(E.liveTensorCount(), live);
  a.dispose();
  b.dispose();
});

test('profile counts operator calls, with shapes on request; self time ≤ total time', () => {
  E.tidy(() => {
    const x = E.randn([4, 5]);
    const w = E.randn([5, 6]);
    const { rows, wallMs, result } = E.profile(() => {
      E.matmul(x, w);
      E.matmul(x, w);
      return E.matmul(x, w).sum().item();
    });
    assert.equal(typeof result, 'number');
    const mm = rows.find((r) => r.name === 'aten::mm');
    assert.ok(mm, `aten::mm in ${rows.map((r) => r.name).join(', ')}`);
    assert.equal(mm!.calls, 3);
    const matmul = rows.find((r) => r.name === 'aten::matmul')!;
    assert.ok(matmul.totalMs >= matmul.selfMs);
    const selfSum = rows.reduce((s, r) => s + r.selfMs, 0);
    assert.ok(selfSum <= wallMs + 0.5, `${selfSum} ≤ ${wallMs}`);
    for (let i = 1; i < rows.length; i++) assert.ok(rows[i - 1]!.selfMs >= rows[i]!.selfMs, 'sorted by self time');

    const shaped = E.profile(() => E.matmul(x, w), { shapes: true }).rows;
    assert.ok(shaped.some((r) => r.name === 'aten::mm [[4,5], [5,6]]'), shaped.map((r) => r.name).join(', '));
    assert.match(E.formatProfile(shaped, 1), /aten::mm/);
    // stopped: nothing recorded afterwards, and a second profile starts clean
    assert.equal(E.profile(() => 0).rows.length, 0);
  });
});

test('autocast runs matmuls in bfloat16 inside the scope only, and nests', () => {
  E.tidy(() => {
    const a = E.randn([8, 8]);
    assert.equal(E.isAutocastEnabled('cpu'), false);
    const inside = E.autocast('cpu', () => {
      assert.equal(E.isAutocastEnabled('cpu'), true);
      E.autocast('cpu', () => undefined); // nested scope restores "on"
      assert.equal(E.isAutocastEnabled('cpu'), true);
      assert.equal(E.autocast('cpu', () => E.matmul(a, a), 'bfloat16').dtype, 'bfloat16');
      return E.matmul(a, a);
    });
    assert.equal(inside.dtype, 'bfloat16');
    assert.equal(E.isAutocastEnabled('cpu'), false);
    assert.equal(E.matmul(a, a).dtype, 'float32');
    // bf16 keeps ~3 significant digits
    const exact = E.matmul(a, a);
    const rel = inside.to({ dtype: 'float32' }).sub(exact).abs().max().item() / exact.abs().max().item();
    assert.ok(rel < 2e-2, `relative error ${rel}`);
    assert.throws(() => E.autocast('cpu', () => { throw new Error('boom'); }), /boom/);
    assert.equal(E.isAutocastEnabled('cpu'), false, 'restored after an exception');
  });
});
