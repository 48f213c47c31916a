/**
 * Feature statistics and both symmetric eigensolvers: hand-worked cases, residual and
 * orthogonality checks, and Jacobi vs tridiagonal-QR agreement on random matrices.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jacobiEigen, matmulSquare, meanAndCovariance, symmetricEigen, tridiagonalEigen, type Eigen } from '../../src/metrics/linalg.ts';

function randomSymmetric(n: number, seed: number, rank = n): Float64Array {
  // A = B Bᵀ − c·I with B n×rank from an LCG: symmetric, with mixed-sign or zero eigenvalues.
  let s = seed >>> 0;
  const r = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const B = Array.from({ length: n * rank }, r);
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < rank; k++) A[i * n + j]! += B[i * rank + k]! * B[j * rank + k]!;
  return A;
}

function checkDecomposition(A: Float64Array, n: number, e: Eigen, tol: number): void {
  const V = e.vectors!;
  let scale = 0;
  for (const v of A) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < n; i++) {
    if (i > 0) assert.ok(e.values[i]! >= e.values[i - 1]!, 'ascending');
    for (let k = 0; k < n; k++) {
      let av = 0;
      for (let j = 0; j < n; j++) av += A[k * n + j]! * V[i * n + j]!;
      assert.ok(Math.abs(av - e.values[i]! * V[i * n + k]!) < tol * Math.max(1, scale), `residual ${i},${k}`);
    }
    for (let j = 0; j <= i; j++) {
      let dot = 0;
      for (let k = 0; k < n; k++) dot += V[i * n + k]! * V[j * n + k]!;
      assert.ok(Math.abs(dot - (i === j ? 1 : 0)) < tol, `orthonormal ${i},${j}`);
    }
  }
}

test('mean and unbiased covariance of a hand-worked 3 × 2 set', () => {
  const { mu, sigma } = meanAndCovariance([
    [1, 2],
    [3, 6],
    [5, 7],
  ]);
  assert.deepEqual([...mu], [3, 5]);
  assert.deepEqual([...sigma], [4, 5, 5, 7]);
  assert.throws(() => meanAndCovariance([[1, 2]]), /at least 2/);
  assert.throws(() => meanAndCovariance([[1, 2], [3]]), /features\[1\]\.length/);
  assert.throws(() => meanAndCovariance({ data: new Float64Array(5), n: 2, d: 3 }), /data\.length/);
});

test('2 × 2 and diagonal cases, both methods', () => {
  for (const method of ['jacobi', 'tridiagonal'] as const) {
    const e = symmetricEigen([2, 1, 1, 2], 2, { method });
    assert.ok(Math.abs(e.values[0]! - 1) < 1e-15 && Math.abs(e.values[1]! - 3) < 1e-15, method);
    assert.ok(Math.abs(Math.abs(e.vectors![0]!) - Math.SQRT1_2) < 1e-15);
    const diag = symmetricEigen([3, 0, 0, 0, -1, 0, 0, 0, 2], 3, { method });
    assert.deepEqual([...diag.values], [-1, 2, 3]);
    assert.deepEqual([...symmetricEigen([7], 1, { method }).values], [7]);
    assert.deepEqual([...symmetricEigen(new Float64Array(16), 4, { method }).values], [0, 0, 0, 0]);
  }
});

test('random symmetric matrices: residuals, orthogonality, and the two solvers agree', () => {
  for (const [n, rank, seed] of [
    [5, 5, 1],
    [30, 30, 2],
    [40, 7, 3], // rank-deficient: many zero eigenvalues
    [90, 90, 4],
  ] as const) {
    const A = randomSymmetric(n, seed, rank);
    const j = jacobiEigen(A, n);
    const q = tridiagonalEigen(A, n);
    checkDecomposition(A, n, j, 1e-12);
    checkDecomposition(A, n, q, 1e-12);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(j.values[i]! - q.values[i]!) < 1e-12, `n=${n} λ${i}`);
    const vOnly = tridiagonalEigen(A, n, { vectors: false });
    assert.equal(vOnly.vectors, undefined);
    for (let i = 0; i < n; i++) assert.ok(Math.abs(vOnly.values[i]! - q.values[i]!) < 1e-12);
  }
});

test('repeated eigenvalues (identity plus rank one)', () => {
  const n = 12;
  const u = Array.from({ length: n }, (_, i) => (i + 1) / n);
  const A = new Float64Array(n * n);
  let uu = 0;
  for (let i = 0; i < n; i++) {
    uu += u[i]! * u[i]!;
    for (let j = 0; j < n; j++) A[i * n + j] = (i === j ? 1 : 0) + u[i]! * u[j]!;
  }
  for (const method of ['jacobi', 'tridiagonal'] as const) {
    const e = symmetricEigen(A, n, { method });
    for (let i = 0; i < n - 1; i++) assert.ok(Math.abs(e.values[i]! - 1) < 1e-14);
    assert.ok(Math.abs(e.values[n - 1]! - (1 + uu)) < 1e-13);
    checkDecomposition(A, n, e, 1e-13);
  }
});

test('non-finite input gives NaN eigenvalues; matmulSquare', () => {
  assert.ok(Number.isNaN(symmetricEigen([1, NaN, NaN, 1], 2).values[0]));
  assert.ok(Number.isNaN(tridiagonalEigen([1, 0, 0, Infinity], 2).values[1]));
  assert.deepEqual([...matmulSquare(Float64Array.of(1, 2, 3, 4), Float64Array.of(5, 6, 7, 8), 2)], [19, 22, 43, 50]);
});
