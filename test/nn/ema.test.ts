/**
 * EMA of parameters for several rates against the closed form
 * θ_ema(n) = rⁿ θ₀ + (1 − r) Σ_{k=1..n} r^{n−k} θ_k, plus copy-in/out and state save/restore.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { EMA, Linear, rateKey, setInitSeed } from '../../src/nn/index.ts';
import { StateDictError } from '../../src/nn/module.ts';
import { assertClose } from '../engine/helpers.ts';

test('EMA update follows the closed form for every rate', () => {
  const theta = E.keep(E.tensor(Float64Array.of(1, -2, 0.5)));
  const ema = new EMA([['p', theta]], [0.9, 0.5, 0.99]);
  const history: number[][] = [theta.toArray()];
  for (let k = 1; k <= 6; k++) {
    E.noGrad(() => theta.copy_(E.tidy(() => E.tensor(Float64Array.of(k, -k / 2, Math.sin(k))))));
    history.push(theta.toArray());
    ema.update();
  }
  E.tidy(() => {
    for (const r of ema.rates) {
      const n = history.length - 1;
      const expected = history[0]!.map((x0, i) => {
        let s = r ** n * x0;
        for (let k = 1; k <= n; k++) s += (1 - r) * r ** (n - k) * history[k]![i]!;
        return s;
      });
      assertClose(ema.stateDict(r).get('p')!.toArray(), expected, { atol: 1e-12, rtol: 1e-12, what: `rate ${r}` });
    }
  });
  ema.dispose();
  theta.dispose();
});

test('EMA copyTo / withAveraged / resetFromParams / state round trip', () => {
  setInitSeed(3);
  const model = new Linear(2, 2);
  const ema = new EMA(model, [0.9999, 0.5]);
  const original = model.param('weight').toArray();
  // move the model, then average
  E.noGrad(() => model.param('weight').add_(1));
  ema.update();
  const avg = ema.stateDict(0.5).get('weight')!.toArray();
  assertClose(avg, original.map((x) => 0.5 * x + 0.5 * (x + 1)), { atol: 1e-6 });

  // withAveraged swaps the averages in and restores the live weights afterwards
  const live = model.param('weight').toArray();
  const seen = ema.withAveraged(model, 0.5, () => model.param('weight').toArray());
  assert.deepEqual(seen, avg);
  assert.deepEqual(model.param('weight').toArray(), live);
  assert.throws(() => ema.withAveraged(model, 0.5, () => { throw new Error('sampling failed'); }), /sampling failed/);
  assert.deepEqual(model.param('weight').toArray(), live);

  // module-shaped state dict; load into a fresh EMA; copyTo another model
  const sd = ema.moduleStateDict(model, 0.5);
  assert.deepEqual([...sd.keys()], ['weight', 'bias']);
  const other = new EMA(model, [0.5]);
  other.loadStateDict(0.5, sd);
  assert.deepEqual(other.stateDict(0.5).get('weight')!.toArray(), avg);
  const copy = new Linear(2, 2);
  other.copyTo(copy, 0.5);
  assert.deepEqual(copy.param('weight').toArray(), avg);
  assert.throws(() => other.loadStateDict(0.5, { weight: sd.get('weight')! }), (e: Error) => e instanceof StateDictError && /missing bias/.test(e.message));
  assert.throws(() => other.stateDict(0.25), /one of 0\.5/);
  ema.resetFromParams();
  assert.deepEqual(ema.stateDict(0.9999).get('weight')!.toArray(), live);
  for (const x of [ema, other, model, copy]) x.dispose();
});

test('EMA rate validation and reference-style rate keys', () => {
  assert.throws(() => new EMA([], []), /non-empty list/);
  assert.throws(() => new EMA([], [1.5]), /\[0, 1\]/);
  assert.throws(() => new EMA([], [0.9, 0.9]), /distinct/);
  assert.equal(rateKey(0.9999), '0.9999');
  assert.equal(rateKey(1), '1.0');
  assert.equal(rateKey(0), '0.0');
  assert.equal(rateKey(1e-5), '1e-05');
});
