/**
 * Gradient norm (training log's grad_norm) and clipGradNorm (torch.nn.utils.clip_grad_norm_).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { clipGradNorm, gradNorm } from '../../src/nn/index.ts';
import { assertClose, det, torchReference } from '../engine/helpers.ts';

function params(): E.Tensor[] {
  return [E.keep(E.zeros([3, 2]).requiresGrad_()), E.keep(E.zeros([5]).requiresGrad_())];
}

function setGrads(ps: E.Tensor[]): void {
  E.tidy(() => {
    ps[0]!.setGrad(det([3, 2], 0.9, 0, 'float32').mul(3));
    ps[1]!.setGrad(det([5], 1.3, 0.2, 'float32').mul(2));
  });
}

test('gradNorm = sqrt(Σ‖g‖²) over parameters with gradients', () => {
  const ps = params();
  const extra = E.keep(E.zeros([2]).requiresGrad_()); // no gradient: ignored
  assert.equal(gradNorm([...ps, extra]), 0);
  setGrads(ps);
  const all = [...ps[0]!.grad!.toArray(), ...ps[1]!.grad!.toArray()];
  const expected = Math.sqrt(all.reduce((s, g) => s + g * g, 0));
  assertClose([gradNorm([...ps, extra])], [expected], { atol: 0, rtol: 1e-6 });
  E.disposeAll([...ps, extra]);
});

test('clipGradNorm matches torch.nn.utils.clip_grad_norm_ (fixture: 2-norm, ∞-norm, 1-norm)', () => {
  for (const c of torchReference().clip_grad_norm as { max_norm: number; norm_type: number | 'inf'; total: number; g0: number[]; g1: number[] }[]) {
    const ps = params();
    setGrads(ps);
    const total = clipGradNorm(ps, c.max_norm, c.norm_type === 'inf' ? Infinity : c.norm_type);
    const what = `max_norm ${c.max_norm}, norm ${c.norm_type}`;
    assertClose([total], [c.total], { atol: 0, rtol: 1e-6, what });
    E.tidy(() => {
      assertClose(ps[0]!.grad!.toArray(), c.g0, { atol: 1e-7, rtol: 1e-6, what });
      assertClose(ps[1]!.grad!.toArray(), c.g1, { atol: 1e-7, rtol: 1e-6, what });
    });
    E.disposeAll(ps);
  }
});

test('clipGradNorm: closed form, errorIfNonfinite, no leaks', () => {
  const p = E.keep(E.zeros([2]).requiresGrad_());
  E.tidy(() => p.setGrad(E.tensor([3, 4])));
  const live = E.liveTensorCount();
  assert.equal(clipGradNorm([p], 1), 5);
  assert.equal(E.liveTensorCount(), live);
  E.tidy(() => assertClose(p.grad!.toArray(), [3 / (5 + 1e-6), 4 / (5 + 1e-6)], { atol: 1e-7 }));
  assert.ok(Math.abs(clipGradNorm([p], 10) - 1) < 1e-6); // below the threshold: unchanged (coef clamped to 1)
  E.tidy(() => assertClose(p.grad!.toArray(), [0.6, 0.8], { atol: 1e-6 }));
  E.tidy(() => p.setGrad(E.tensor([NaN, 1])));
  assert.throws(() => clipGradNorm([p], 1, 2, true), /finite total 2-norm/);
  E.tidy(() => assert.ok(Number.isNaN(p.grad!.toArray()[0]!)));
  assert.equal(clipGradNorm([E.keep(E.zeros([1]))], 1), 0);
  assert.throws(() => clipGradNorm([p], -1), /maxNorm/);
  p.dispose();
});
