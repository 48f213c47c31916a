/**
 * KVD / polynomial-kernel MMD² (REFERENCE_SPEC §8.3, acceptance test §11.9): a hand-computed
 * 1-D case and NumPy O(m²) reference values (test/fixtures/metrics/make-frechet-mmd.py).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { kvdFromFeatures, mmd2 } from '../../src/metrics/mmd.ts';
import { fixtureFeatures, type FixtureCase } from './features.ts';

const fixture = JSON.parse(fs.readFileSync(new URL('../fixtures/metrics/frechet-mmd.json', import.meta.url), 'utf8')) as { cases: FixtureCase[] };

test('hand-computed case: X = {0, 1}, Y = {1, 2}, d = 1 (γ = 1), k = (xy + 1)³', () => {
  // K_XX: k(0,0)=1, k(1,1)=8, k(0,1)=1.  K_YY: k(1,1)=8, k(2,2)=125, k(1,2)=27.
  // K_XY: k(0,1)=1, k(0,2)=1, k(1,1)=8, k(1,2)=27 → Σ = 37; its "diagonal" k(0,1)+k(1,2) = 28.
  const X = [[0], [1]];
  const Y = [[1], [2]];
  assert.equal(kvdFromFeatures(X, Y), (2 + 54) / 2 - (2 * 37) / 4); // 9.5
  assert.equal(mmd2(X, Y, { estimator: 'biased' }), (11 + 187 - 2 * 37) / 4); // 31
  assert.equal(mmd2(X, Y, { estimator: 'u-statistic' }), (2 + 54 - 2 * (37 - 28)) / 2); // 19
  // Kernel parameters are honoured: degree 1, γ = 1, c = 0 → linear kernel MMD² = (x̄ − ȳ)² (biased).
  assert.equal(mmd2(X, Y, { estimator: 'biased', degree: 1, coef0: 0 }), 1);
});

test('matches the NumPy reference (m = 100, d = 64)', () => {
  for (const c of fixture.cases.filter((k) => k.kvd !== undefined)) {
    const real = fixtureFeatures(c.seed, c.nReal, c.d, 'real');
    const fake = fixtureFeatures(c.seed + 1, c.nFake, c.d, 'fake');
    const kvd = kvdFromFeatures(real, fake);
    assert.ok(Math.abs(kvd - c.kvd!) < 1e-12 * Math.abs(c.kvd!), `${kvd} vs ${c.kvd}`);
    const biased = mmd2(real, fake, { estimator: 'biased' });
    assert.ok(Math.abs(biased - c.mmdBiased!) < 1e-12 * Math.abs(c.mmdBiased!), `${biased} vs ${c.mmdBiased}`);
  }
});

test('requires equal sizes and dimensions', () => {
  assert.throws(() => kvdFromFeatures([[0], [1]], [[0], [1], [2]]), /equal sizes/);
  assert.throws(() => kvdFromFeatures([[0], [1]], [[0, 1], [1, 2]]), /feature dimension/);
  assert.throws(() => kvdFromFeatures([[0]], [[1]]), /at least 2/);
});
