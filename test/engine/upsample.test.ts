/**
 * The ×2 nearest upsampling (native/resample.cc, reached through E.interpolate with scale 2):
 * values and gradient against the definition written out as loops, for float32 and float64 and
 * for odd sizes; the routing (other dtypes keep libtorch's operator); no leaked tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';

const present = E.hasOperator('flexvid::upsample_nearest2x');

/** y[n, c, i, j] = x[n, c, ⌊i/2⌋, ⌊j/2⌋] for x [N, C, H, W] flattened. */
function naiveUp(x: ArrayLike<number>, NC: number, H: number, W: number): number[] {
  const y: number[] = [];
  for (let p = 0; p < NC; p++) for (let i = 0; i < 2 * H; i++) for (let j = 0; j < 2 * W; j++) y.push(x[(p * H + (i >> 1)) * W + (j >> 1)]!);
  return y;
}

/** gx[n, c, i, j] = Σ of gy over the 2×2 block (2i…2i+1, 2j…2j+1). */
function naiveDown(gy: ArrayLike<number>, NC: number, H: number, W: number): number[] {
  const gx = new Array<number>(NC * H * W).fill(0);
  for (let p = 0; p < NC; p++)
    for (let i = 0; i < 2 * H; i++) for (let j = 0; j < 2 * W; j++) gx[(p * H + (i >> 1)) * W + (j >> 1)]! += gy[(p * 2 * H + i) * 2 * W + j]!;
  return gx;
}

for (const dtype of ['float32', 'float64'] as const) {
  test(`upsample ×2 (${dtype}): values and gradient equal the definition, odd sizes included`, { skip: present ? false : 'operator not built' }, () => {
    const before = E.liveTensorCount();
    for (const [N, C, H, W] of [
      [2, 3, 5, 7],
      [3, 16, 4, 4],
      [1, 2, 1, 33],
    ] as const) {
      E.tidy(() => {
        const g = new E.Generator(N * 100 + W);
        const x = E.randn([N, C, H, W], g).to({ dtype }).requiresGrad_();
        const y = E.interpolate(x, { scale: 2 });
        assert.deepEqual(y.shape, [N, C, 2 * H, 2 * W]);
        const xs = Array.from(x.detach().toFloat64Array());
        assert.deepEqual(Array.from(y.detach().toFloat64Array()), naiveUp(xs, N * C, H, W));
        const gy = E.randn(y.shape, g).to({ dtype });
        y.mul(gy).sum().backward();
        const want = naiveDown(gy.toFloat64Array(), N * C, H, W);
        const got = x.grad!.toFloat64Array();
        const tol = dtype === 'float32' ? 1e-5 : 1e-12;
        want.forEach((v, i) => assert.ok(Math.abs(got[i]! - v) <= tol * (1 + Math.abs(v)), `gx[${i}] = ${got[i]} vs ${v}`));
      });
    }
    assert.equal(E.liveTensorCount(), before);
  });
}

test('upsample ×2: the native operator is what runs for float32 CPU, and agrees with libtorch’s', { skip: present ? false : 'operator not built' }, () => {
  E.tidy(() => {
    const x = E.randn([4, 32, 8, 8], new E.Generator(3));
    const p = E.profile(() => E.tidy(() => void E.interpolate(x, { scale: 2 })));
    assert.ok(p.rows.some((r) => r.name === 'flexvid::upsample_nearest2x'), 'native upsample not called');
    // An explicit size takes libtorch's operator: same values.
    const ours = E.interpolate(x, { scale: 2 });
    const theirs = E.interpolate(x, { size: [16, 16] });
    assert.equal(ours.sub(theirs).abs().max().item(), 0);
  });
});
