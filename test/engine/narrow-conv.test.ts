/**
 * The 3×3 convolution with few channels on one side (native/narrow_conv.cc, reached through
 * E.conv2d for the U-Net's input and output convolutions): values and the gradients of input,
 * weight and bias against a float64 convolution (libtorch's, which this routing never takes) and,
 * for one tiny case, against the definition written out as loops; the routing; no leaked tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';

const present = E.hasOperator('flexvid::conv3x3_narrow');
const skip = present ? false : 'operator not built';

function assertClose(got: Float64Array, want: Float64Array, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  want.forEach((v, i) => assert.ok(Math.abs(got[i]! - v) <= tol * (1 + scale), `${what}[${i}] = ${got[i]} vs ${v}`));
}

test('narrow 3×3 convolution: output and gradients equal a float64 convolution', { skip }, () => {
  const before = E.liveTensorCount();
  for (const [N, Ci, Co, H, W, bias] of [
    [2, 64, 3, 8, 32, true], // the output convolution's shape, 4 output channels per block + a remainder of 3
    [3, 4, 64, 5, 16, true], // the input convolution's, odd height
    [1, 3, 6, 1, 16, false], // a single row, learn_sigma-like output width, no bias
    [2, 20, 8, 17, 48, true], // input channels in three blocks of 8, 8 and 4
    [1, 5, 2, 3, 16, true],
  ] as const) {
    E.tidy(() => {
      const g = new E.Generator(N * 1000 + Ci * 10 + Co);
      const x = E.randn([N, Ci, H, W], g).requiresGrad_();
      const w = E.randn([Co, Ci, 3, 3], g).mul(0.2).requiresGrad_();
      const b = bias ? E.randn([Co], g).requiresGrad_() : null;
      const p = E.profile(() => E.conv2d(x, w, b, { padding: 1 }));
      assert.ok(p.rows.some((r) => r.name === 'flexvid::conv3x3_narrow'), `[${N}, ${Ci}, ${H}, ${W}] → ${Co}: narrow kernel not called`);
      const y = p.result;
      assert.deepEqual(y.shape, [N, Co, H, W]);
      const gy = E.randn(y.shape, g);
      y.mul(gy).sum().backward();

      const x64 = x.detach().to({ dtype: 'float64' }).requiresGrad_();
      const w64 = w.detach().to({ dtype: 'float64' }).requiresGrad_();
      const b64 = b ? b.detach().to({ dtype: 'float64' }).requiresGrad_() : null;
      const y64 = E.conv2d(x64, w64, b64, { padding: 1 });
      y64.mul(gy.to({ dtype: 'float64' })).sum().backward();
      const tol = 2e-6;
      assertClose(y.detach().toFloat64Array(), y64.detach().toFloat64Array(), tol, 'y');
      assertClose(x.grad!.toFloat64Array(), x64.grad!.toFloat64Array(), tol, 'gx');
      assertClose(w.grad!.toFloat64Array(), w64.grad!.toFloat64Array(), tol, 'gw');
      if (b) assertClose(b.grad!.toFloat64Array(), b64!.grad!.toFloat64Array(), tol, 'gb');
    });
  }
  assert.equal(E.liveTensorCount(), before);
});

test('narrow 3×3 convolution: a 1-channel case worked by hand', { skip }, () => {
  E.tidy(() => {
    // x = 1…16 in one 1×16 row; w = [[0,0,0],[1,2,3],[0,0,0]] → y[j] = x[j−1] + 2x[j] + 3x[j+1] + bias.
    const x = E.arange(1, 17, 1, { dtype: 'float32' }).reshape([1, 1, 1, 16]).requiresGrad_();
    const w = E.tensor(new Float32Array([0, 0, 0, 1, 2, 3, 0, 0, 0]), { shape: [1, 1, 3, 3] }).requiresGrad_();
    const b = E.tensor(new Float32Array([0.5]), { shape: [1] }).requiresGrad_();
    const y = E.conv2d(x, w, b, { padding: 1 });
    const want = Array.from({ length: 16 }, (_, j) => (j > 0 ? j : 0) + 2 * (j + 1) + (j < 15 ? 3 * (j + 2) : 0) + 0.5);
    assert.deepEqual(Array.from(y.detach().toFloat64Array()), want);
    y.sum().backward();
    // Each x[j] appears with weights 1 (in y[j+1]), 2 (y[j]) and 3 (y[j−1]) where those exist.
    const gx = Array.from({ length: 16 }, (_, j) => (j < 15 ? 1 : 0) + 2 + (j > 0 ? 3 : 0));
    assert.deepEqual(Array.from(x.grad!.toFloat64Array()), gx);
    // gw[ky = 1, kx] = Σ_j x[j + kx − 1]: 136 minus the element the padding drops; other rows see only padding.
    assert.deepEqual(Array.from(w.grad!.toFloat64Array()), [0, 0, 0, 136 - 16, 136, 136 - 1, 0, 0, 0]);
    assert.deepEqual(Array.from(b.grad!.toFloat64Array()), [16]);
  });
});

test('narrow 3×3 convolution: other shapes keep libtorch’s convolution', { skip }, () => {
  E.tidy(() => {
    const g = new E.Generator(5);
    const called = (x: E.Tensor, w: E.Tensor, o: E.ConvOptions) =>
      E.profile(() => E.tidy(() => void E.conv2d(x, w, null, o))).rows.some((r) => r.name === 'flexvid::conv3x3_narrow');
    assert.ok(called(E.randn([1, 64, 4, 16], g), E.randn([3, 64, 3, 3], g), { padding: 1 }));
    assert.ok(!called(E.randn([1, 64, 4, 12], g), E.randn([3, 64, 3, 3], g), { padding: 1 }), 'width not a multiple of 16');
    assert.ok(!called(E.randn([1, 16, 4, 16], g), E.randn([16, 16, 3, 3], g), { padding: 1 }), 'no narrow side');
    assert.ok(!called(E.randn([1, 64, 4, 16], g), E.randn([3, 64, 3, 3], g), { padding: 1, stride: 2 }), 'stride 2');
    assert.ok(!called(E.randn([1, 64, 4, 16], g), E.randn([3, 64, 3, 3], g), {}), 'no padding');
  });
});
