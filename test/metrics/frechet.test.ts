/**
 * Fréchet distance / FVD arithmetic (REFERENCE_SPEC §8.2 step 6, acceptance test §11.9):
 * closed forms for Gaussians, identical sets, and NumPy reference values
 * (test/fixtures/metrics/make-frechet-mmd.py: eigenvalues of the non-symmetric Σ₁Σ₂ via LAPACK
 * geev, cross-checked with a Denman–Beavers sqrtm).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { frechetDistance, fvdFromFeatures, traceSqrtProduct } from '../../src/metrics/frechet.ts';
import { meanAndCovariance } from '../../src/metrics/linalg.ts';
import { FlexvidError } from '../../src/util/errors.ts';
import { fixtureFeatures, type FixtureCase } from './features.ts';

const fixture = JSON.parse(fs.readFileSync(new URL('../fixtures/metrics/frechet-mmd.json', import.meta.url), 'utf8')) as { cases: FixtureCase[] };

const close = (a: number, b: number, rel: number, msg?: string) => assert.ok(Math.abs(a - b) <= rel * Math.max(1, Math.abs(b)), `${msg ?? ''} ${a} vs ${b}`);

test('1-D Gaussians: (μ₁ − μ₂)² + (σ₁ − σ₂)²', () => {
  for (const [m1, v1, m2, v2] of [
    [0, 1, 0, 1],
    [1, 4, -2, 9],
    [0.5, 0.01, 0.25, 2.5],
  ] as const) {
    close(frechetDistance([m1], [v1], [m2], [v2]), (m1 - m2) ** 2 + (Math.sqrt(v1) - Math.sqrt(v2)) ** 2, 1e-14);
  }
});

test('diagonal and commuting covariances: Σ (Δμ)² + Σ (√aᵢ − √bᵢ)²', () => {
  const a = [4, 1, 0.25, 9, 2];
  const b = [1, 1, 4, 0.5, 0];
  const mu1 = [0, 1, 2, 3, 4];
  const mu2 = [1, 1, 0, 3, 5];
  const expected = mu1.reduce((s, m, i) => s + (m - mu2[i]!) ** 2, 0) + a.reduce((s, ai, i) => s + (Math.sqrt(ai) - Math.sqrt(b[i]!)) ** 2, 0);
  const d = a.length;
  const diag = (v: number[]) => {
    const m = new Float64Array(d * d);
    v.forEach((x, i) => (m[i * d + i] = x));
    return m;
  };
  close(frechetDistance(mu1, diag(a), mu2, diag(b)), expected, 1e-14, 'diagonal');
  // Commuting: rotate both by the same orthogonal Q (a Householder reflection I − 2uuᵀ/uᵀu).
  const u = [1, -2, 0.5, 3, 1];
  const uu = u.reduce((s, x) => s + x * x, 0);
  const Q = new Float64Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) Q[i * d + j] = (i === j ? 1 : 0) - (2 * u[i]! * u[j]!) / uu;
  const rot = (v: number[]) => {
    const m = new Float64Array(d * d);
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let k = 0; k < d; k++) m[i * d + j]! += Q[i * d + k]! * v[k]! * Q[j * d + k]!;
    return m;
  };
  // b has a zero eigenvalue: after rotation it is ~1e-16 of rounding noise, whose square root
  // (~1e-8) bounds the attainable accuracy (the same holds for SciPy's sqrtm).
  for (const method of ['jacobi', 'tridiagonal'] as const) close(frechetDistance(mu1, rot(a), mu2, rot(b), { method }), expected, 1e-7, `commuting ${method}`);
  const bPos = [1, 1, 4, 0.5, 0.3];
  const expectedPos = expected - b.reduce((s, bi, i) => s + (Math.sqrt(a[i]!) - Math.sqrt(bi)) ** 2, 0) + a.reduce((s, ai, i) => s + (Math.sqrt(ai) - Math.sqrt(bPos[i]!)) ** 2, 0);
  for (const method of ['jacobi', 'tridiagonal'] as const) close(frechetDistance(mu1, rot(a), mu2, rot(bPos), { method }), expectedPos, 1e-13, `commuting, full rank, ${method}`);
  // tr sqrt(Σ₁Σ₂) of commuting matrices = Σ √(aᵢbᵢ).
  close(traceSqrtProduct(rot(a), rot(bPos), d), a.reduce((s, ai, i) => s + Math.sqrt(ai * bPos[i]!), 0), 1e-13);
});

test('identical feature sets give 0', () => {
  const x = fixtureFeatures(3, 50, 20, 'real');
  assert.ok(Math.abs(fvdFromFeatures(x, x)) < 1e-12);
  const wide = fixtureFeatures(4, 10, 30, 'fake'); // rank-deficient covariance
  assert.ok(Math.abs(fvdFromFeatures(wide, wide)) < 1e-6);
});

test('matches the NumPy reference values', () => {
  for (const c of fixture.cases) {
    const real = fixtureFeatures(c.seed, c.nReal, c.d, 'real');
    const fake = fixtureFeatures(c.seed + 1, c.nFake, c.d, 'fake');
    // Rank-deficient products carry rounding-level eigenvalues whose square roots (~1e-8 each)
    // differ between methods; full-rank cases agree to ~1e-12.
    const tol = c.frechetDenmanBeavers === null ? 1e-6 : 1e-11;
    for (const method of ['jacobi', 'tridiagonal'] as const) close(fvdFromFeatures(real, fake, { method }), c.frechet, tol, `${c.name} ${method}`);
  }
});

test('symmetric in its arguments, accepts row arrays, checks shapes', () => {
  const a = fixtureFeatures(8, 30, 6, 'real');
  const b = fixtureFeatures(9, 25, 6, 'fake');
  close(fvdFromFeatures(a, b), fvdFromFeatures(b, a), 1e-12);
  const rows = Array.from({ length: a.n }, (_, i) => a.data.subarray(i * a.d, (i + 1) * a.d));
  close(fvdFromFeatures(rows, b), fvdFromFeatures(a, b), 1e-15);
  assert.throws(() => fvdFromFeatures(a, fixtureFeatures(9, 25, 5, 'fake')), /feature dimension/);
  assert.throws(() => frechetDistance([0, 0], [1, 0, 0, 1], [0], [1]), /mu2\.length/);
});

test('non-finite covariance: warns, retries with eps·I, then throws', () => {
  const warnings: string[] = [];
  assert.throws(
    () => frechetDistance([0, 0], [1, NaN, NaN, 1], [0, 0], [1, 0, 0, 1], { onWarning: (m) => warnings.push(m) }),
    (e: unknown) => e instanceof FlexvidError && /not finite even after/.test(e.message),
  );
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /adding 0.000001 to the diagonal/);
});

test('400-d features, 400 samples per set (FVD size) complete quickly', (t) => {
  const real = fixtureFeatures(21, 400, 400, 'real');
  const fake = fixtureFeatures(22, 400, 400, 'fake');
  const t0 = performance.now();
  const { mu: m1, sigma: s1 } = meanAndCovariance(real);
  const { mu: m2, sigma: s2 } = meanAndCovariance(fake);
  const fd = frechetDistance(m1, s1, m2, s2);
  t.diagnostic(`400×400 Fréchet distance ${fd.toFixed(6)} in ${(performance.now() - t0).toFixed(0)} ms`);
  assert.ok(Number.isFinite(fd) && fd > 0);
  // Cross-check this size against the symmetric identity tr sqrt(Σ₁Σ₂) = tr sqrt(Σ₂Σ₁).
  close(traceSqrtProduct(s1, s2, 400), traceSqrtProduct(s2, s1, 400), 1e-9);
});
