/**
 * Autograd: requiresGrad, backward (scalar and with an explicit gradient), accumulation and
 * zeroing, detach, no-grad and inference-mode scopes, in-place ops and gradients through views.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';

const f64 = (v: number[]) => E.tensor(Float64Array.from(v));

test('backward of a scalar; gradients accumulate until zeroed', () => {
  E.tidy(() => {
    const x = f64([1, 2, 3]).requiresGrad_();
    assert.equal(x.requiresGrad, true);
    x.mul(x).sum().backward(); // d/dx Σx² = 2x
    assert.deepEqual(x.grad!.toArray(), [2, 4, 6]);
    x.mul(3).sum().backward(); // accumulates +3
    assert.deepEqual(x.grad!.toArray(), [5, 7, 9]);
    x.zeroGrad();
    assert.equal(x.grad, null);
    x.setGrad(f64([1, 1, 1]));
    assert.deepEqual(x.grad!.toArray(), [1, 1, 1]);
    assert.throws(() => x.setGrad(f64([1, 1])), /does not match/);
  });
});

test('backward with an explicit gradient (vector-Jacobian product) and retainGraph', () => {
  E.tidy(() => {
    const x = f64([1, 2]).requiresGrad_();
    const y = x.exp();
    y.backward(f64([1, 0.5]), { retainGraph: true });
    assert.deepEqual(x.grad!.toArray(), [Math.exp(1), 0.5 * Math.exp(2)]);
    y.backward(f64([1, 0])); // second pass over the retained graph accumulates
    assert.deepEqual(x.grad!.toArray(), [2 * Math.exp(1), 0.5 * Math.exp(2)]);
    assert.throws(() => x.exp().backward(), /grad can be implicitly created only for scalar outputs/);
  });
});

test('autogradGrad computes gradients without touching .grad (and higher order with createGraph)', () => {
  E.tidy(() => {
    const x = f64([2]).requiresGrad_();
    const y = x.pow(3);
    const [dy] = E.autogradGrad([y.sum()], [x], { createGraph: true });
    assert.deepEqual(dy!.toArray(), [12]); // 3x²
    const [d2y] = E.autogradGrad([dy!.sum()], [x]);
    assert.deepEqual(d2y!.toArray(), [12]); // 6x
    assert.equal(x.grad, null);
    const z = f64([1]).requiresGrad_();
    assert.deepEqual(E.autogradGrad([x.mul(2).sum()], [x, z], { allowUnused: true }).map((g) => g?.toArray() ?? null), [[2], null]);
  });
});

test('detach, noGrad, enableGrad and inferenceMode', () => {
  E.tidy(() => {
    const x = f64([1, 2]).requiresGrad_();
    assert.equal(x.detach().requiresGrad, false);
    assert.equal(x.mul(2).requiresGrad, true);
    const y = E.noGrad(() => {
      assert.equal(E.isGradEnabled(), false);
      const inner = E.enableGrad(() => x.mul(2));
      assert.equal(inner.requiresGrad, true);
      return x.mul(2);
    });
    assert.equal(E.isGradEnabled(), true);
    assert.equal(y.requiresGrad, false);
    // the previous mode is restored after an exception
    assert.throws(() => E.noGrad(() => { throw new Error('boom'); }), /boom/);
    assert.equal(E.isGradEnabled(), true);
    const z = E.inferenceMode(() => x.mul(2));
    assert.equal(z.requiresGrad, false);
    assert.deepEqual(z.toArray(), [2, 4]);
    // inference tensors cannot enter autograd
    assert.throws(() => z.mul(x).sum().backward(), E.TorchError);
  });
});

test('in-place ops: on leaves under noGrad; through views with autograd', () => {
  E.tidy(() => {
    const w = f64([1, 2, 3]).requiresGrad_();
    assert.throws(() => w.add_(1), /leaf Variable that requires grad/);
    E.noGrad(() => w.add_(1).mul_(2));
    assert.deepEqual(w.toArray(), [4, 6, 8]);
    assert.equal(w.requiresGrad, true);

    // y = clone(x); y[1:3] *= x[0:2]  (in place on a view of a non-leaf)
    const x = f64([1, 2, 3]).requiresGrad_();
    const y = x.clone();
    const view = y.narrow(0, 1, 2);
    view.mul_(x.narrow(0, 0, 2));
    assert.deepEqual(y.toArray(), [1, 2, 6]);
    // Σy = x0 + x1·x0 + x2·x1  →  ∂/∂x = [1 + x1, x0 + x2, x1] = [3, 4, 2]
    y.sum().backward();
    assert.deepEqual(x.grad!.toArray(), [3, 4, 2]);

    // modifying a tensor saved for backward is detected
    const a = f64([1, 2]).requiresGrad_();
    const b = a.exp();
    const c = b.mul(b);
    b.add_(1);
    assert.throws(() => c.sum().backward(), /modified by an inplace operation/);
  });
});

test('in-place arithmetic used by optimisers', () => {
  E.tidy(() => {
    const p = f64([1, 2]);
    p.addcmul_(f64([2, 3]), f64([4, 5]), 0.5); // + 0.5·[8, 15]
    assert.deepEqual(p.toArray(), [5, 9.5]);
    p.addcdiv_(f64([1, 1]), f64([2, 4]), -2); // − 2·[0.5, 0.25]
    assert.deepEqual(p.toArray(), [4, 9]);
    p.sqrt_().sub_(1).div_(2);
    assert.deepEqual(p.toArray(), [0.5, 1]);
    p.lerp_(f64([1.5, 3]), 0.5).clamp_(0, 1.5);
    assert.deepEqual(p.toArray(), [1, 1.5]);
    p.zero_().add_(f64([1, 1]), 3).fill_(7);
    assert.deepEqual(p.toArray(), [7, 7]);
  });
});
