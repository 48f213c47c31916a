/**
 * Small dense float64 linear algebra for the metrics that need no tensor engine: feature
 * statistics and the symmetric eigendecomposition behind the Fréchet distance
 * (REFERENCE_SPEC §8.2 step 6).
 *
 * Matrices are row-major `Float64Array`s of `n·n` (or `rows·cols`) numbers.
 */
import { OptionError } from '../util/errors.ts';

/** A row-major matrix of `n` rows (samples) and `d` columns (features). */
export interface Matrix {
  data: ArrayLike<number>;
  n: number;
  d: number;
}

/** Anything accepted as a feature matrix: a {@link Matrix} or an array of equal-length rows. */
export type FeatureInput = Matrix | readonly ArrayLike<number>[];

/** Normalise a {@link FeatureInput} to a float64 {@link Matrix} (copying rows when given as an array). */
export function toMatrix(x: FeatureInput, name = 'features'): Matrix & { data: Float64Array | Float32Array } {
  if (Array.isArray(x)) {
    const rows = x as readonly ArrayLike<number>[];
    const n = rows.length;
    const d = n > 0 ? rows[0]!.length : 0;
    const data = new Float64Array(n * d);
    rows.forEach((r, i) => {
      if (r.length !== d) throw new OptionError(`${name}[${i}].length`, `${d} (all rows equal)`, r.length);
      for (let j = 0; j < d; j++) data[i * d + j] = r[j]!;
    });
    return { data, n, d };
  }
  const m = x as Matrix;
  if (!Number.isInteger(m.n) || !Number.isInteger(m.d) || m.n < 0 || m.d < 1) throw new OptionError(`${name} shape`, 'integers n ≥ 0, d ≥ 1', [m.n, m.d]);
  if (m.data.length !== m.n * m.d) throw new OptionError(`${name}.data.length`, `n·d = ${m.n * m.d}`, m.data.length);
  const data = m.data instanceof Float64Array || m.data instanceof Float32Array ? m.data : Float64Array.from(m.data);
  return { data, n: m.n, d: m.d };
}

/**
 * Sample mean and unbiased covariance (divisor `n − 1`) of the rows of `x`, in float64, as
 * `numpy.mean(x, 0)` / `numpy.cov(x, rowvar=False)`. REFERENCE_SPEC §8.2 step 6.
 * Shape: `x` is `[n, d]`; returns `mu: [d]`, `sigma: [d, d]` (exactly symmetric).
 */
export function meanAndCovariance(x: FeatureInput): { mu: Float64Array; sigma: Float64Array } {
  const { data, n, d } = toMatrix(x);
  if (n < 2) throw new OptionError('features rows', 'at least 2 samples for an unbiased covariance', n);
  const mu = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mu[j]! += data[i * d + j]!;
  for (let j = 0; j < d; j++) mu[j]! /= n;
  // Centred copy, then Σ = XcᵀXc / (n − 1) accumulated row by row (upper triangle, mirrored).
  const xc = new Float64Array(n * d);
  for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) xc[i * d + j] = data[i * d + j]! - mu[j]!;
  const sigma = new Float64Array(d * d);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    for (let a = 0; a < d; a++) {
      const xa = xc[o + a]!;
      if (xa === 0) continue;
      const row = a * d;
      for (let b = a; b < d; b++) sigma[row + b]! += xa * xc[o + b]!;
    }
  }
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) {
      const v = sigma[a * d + b]! / (n - 1);
      sigma[a * d + b] = v;
      sigma[b * d + a] = v;
    }
  }
  return { mu, sigma };
}

/** `C = A·B` for square `n × n` matrices (i-k-j loop order, contiguous inner loop). */
export function matmulSquare(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ci = i * n;
    for (let k = 0; k < n; k++) {
      const aik = a[ci + k]!;
      if (aik === 0) continue;
      const bk = k * n;
      for (let j = 0; j < n; j++) c[ci + j]! += aik * b[bk + j]!;
    }
  }
  return c;
}

/** Result of {@link symmetricEigen}. */
export interface Eigen {
  /** Eigenvalues, ascending. */
  values: Float64Array;
  /** Eigenvectors as rows: row `i` (`vectors[i·n … i·n+n−1]`) belongs to `values[i]`. Absent when not requested. */
  vectors?: Float64Array;
  /** Jacobi sweeps, or implicit QR steps for the tridiagonal method. */
  iterations: number;
}

/**
 * Eigendecomposition of a real symmetric `n × n` matrix by the cyclic Jacobi method, in float64.
 * Each sweep zeroes every off-diagonal pair (p, q) in row order with a plane rotation chosen for
 * stability (the smaller rotation angle, Rutishauser's formulas); sweeps repeat until the
 * off-diagonal mass is below `1e-30 ×` the squared Frobenius norm. Jacobi gives eigenvalues with
 * small relative error even when they are tiny, which matters for rank-deficient covariances.
 *
 * The input is not modified; it is symmetrised as `(A + Aᵀ)/2` first. Cost: about `3n³` flops
 * per sweep (plus `2n³` for vectors) and 6–12 sweeps, so prefer {@link tridiagonalEigen}
 * beyond n ≈ 100.
 */
export function jacobiEigen(a: ArrayLike<number>, n: number, opts: { vectors?: boolean; maxSweeps?: number } = {}): Eigen {
  if (a.length !== n * n) throw new OptionError('matrix.length', `n·n = ${n * n}`, a.length);
  const wantVectors = opts.vectors ?? true;
  const maxSweeps = opts.maxSweeps ?? 60;
  const A = symmetrisedCopy(a, n);
  for (let i = 0; i < n * n; i++) if (!Number.isFinite(A[i]!)) return nonFiniteEigen(n, wantVectors);
  const V = wantVectors ? new Float64Array(n * n) : null;
  if (V) for (let i = 0; i < n; i++) V[i * n + i] = 1;

  let frob2 = 0;
  for (let i = 0; i < n * n; i++) frob2 += A[i]! * A[i]!;
  const tol = 1e-30 * frob2;

  let sweeps = 0;
  for (; sweeps < maxSweeps; sweeps++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q]! * A[p * n + q]!;
    if (!(2 * off > tol)) break; // also stops on NaN
    for (let p = 0; p < n - 1; p++) {
      const rp = p * n;
      for (let q = p + 1; q < n; q++) {
        const rq = q * n;
        const apq = A[rp + q]!;
        if (apq === 0) continue;
        const app = A[rp + p]!;
        const aqq = A[rq + q]!;
        // Negligible element: adding it would not change either diagonal entry.
        if (Math.abs(apq) * 1e18 < Math.abs(app) && Math.abs(apq) * 1e18 < Math.abs(aqq)) {
          A[rp + q] = 0;
          A[rq + p] = 0;
          continue;
        }
        const theta = (aqq - app) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        // Rows/columns p and q for k ≠ p, q (A stays symmetric: write both halves).
        for (let k = 0; k < n; k++) {
          if (k === p || k === q) continue;
          const akp = A[rp + k]!;
          const akq = A[rq + k]!;
          const np = c * akp - s * akq;
          const nq = s * akp + c * akq;
          A[rp + k] = np;
          A[k * n + p] = np;
          A[rq + k] = nq;
          A[k * n + q] = nq;
        }
        A[rp + p] = app - t * apq;
        A[rq + q] = aqq + t * apq;
        A[rp + q] = 0;
        A[rq + p] = 0;
        if (V) {
          for (let k = 0; k < n; k++) {
            const vp = V[rp + k]!;
            const vq = V[rq + k]!;
            V[rp + k] = c * vp - s * vq;
            V[rq + k] = s * vp + c * vq;
          }
        }
      }
    }
  }
  // Sort ascending (with vectors).
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[i * n + i]! - A[j * n + j]!);
  const values = Float64Array.from(order, (i) => A[i * n + i]!);
  const out: Eigen = { values, iterations: sweeps };
  if (V) {
    const vs = new Float64Array(n * n);
    order.forEach((i, r) => vs.set(V.subarray(i * n, i * n + n), r * n));
    out.vectors = vs;
  }
  return out;
}

/** Symmetrised float64 copy `(A + Aᵀ)/2`. */
function symmetrisedCopy(a: ArrayLike<number>, n: number): Float64Array {
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const v = 0.5 * (a[i * n + j]! + a[j * n + i]!);
      A[i * n + j] = v;
      A[j * n + i] = v;
    }
  }
  return A;
}

/**
 * Householder reduction of a symmetric matrix to tridiagonal form, `A = Q T Qᵀ`
 * (Golub & Van Loan, Matrix Computations, §8.3.1). `A` (full, symmetric) is overwritten.
 * Returns the diagonal `d[0…n−1]`, the off-diagonal `e[i] = T[i, i+1]` (`e[n−1] = 0`) and,
 * when asked, `Qᵀ` (row `i` = column `i` of `Q`), built by backward accumulation.
 */
function tridiagonalize(A: Float64Array, n: number, wantQ: boolean): { d: Float64Array; e: Float64Array; qt: Float64Array | null } {
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const vs: (Float64Array | null)[] = [];
  const betas: number[] = [];
  const p = new Float64Array(n);
  for (let k = 0; k + 2 < n; k++) {
    const m = n - k - 1; // size of the trailing block rows/cols k+1 … n−1
    const off = k + 1;
    // x = A[k+1…, k]; reflect it onto a multiple of e1.
    let tail = 0;
    for (let i = 1; i < m; i++) tail += A[(off + i) * n + k]! ** 2;
    const x0 = A[off * n + k]!;
    if (tail === 0) {
      vs.push(null);
      betas.push(0);
      continue;
    }
    const norm = Math.sqrt(x0 * x0 + tail);
    const alpha = x0 > 0 ? -norm : norm;
    const v = new Float64Array(m);
    v[0] = x0 - alpha;
    for (let i = 1; i < m; i++) v[i] = A[(off + i) * n + k]!;
    const beta = 2 / (v[0]! * v[0]! + tail);
    // Column k / row k become (alpha, 0, …).
    A[off * n + k] = alpha;
    A[k * n + off] = alpha;
    for (let i = 1; i < m; i++) {
      A[(off + i) * n + k] = 0;
      A[k * n + off + i] = 0;
    }
    // Trailing block B ← H B H with H = I − β v vᵀ:  p = β B v,  w = p − (β pᵀv / 2) v,  B −= v wᵀ + w vᵀ.
    let pv = 0;
    for (let i = 0; i < m; i++) {
      const row = (off + i) * n + off;
      let acc = 0;
      for (let j = 0; j < m; j++) acc += A[row + j]! * v[j]!;
      p[i] = beta * acc;
      pv += p[i]! * v[i]!;
    }
    const half = 0.5 * beta * pv;
    for (let i = 0; i < m; i++) p[i]! -= half * v[i]!; // p now holds w
    for (let i = 0; i < m; i++) {
      const row = (off + i) * n + off;
      const vi = v[i]!;
      const wi = p[i]!;
      for (let j = 0; j < m; j++) A[row + j]! -= vi * p[j]! + wi * v[j]!;
    }
    vs.push(v);
    betas.push(beta);
  }
  for (let i = 0; i < n; i++) d[i] = A[i * n + i]!;
  for (let i = 0; i + 1 < n; i++) e[i] = A[(i + 1) * n + i]!;

  let qt: Float64Array | null = null;
  if (wantQ) {
    // Q = H_0 H_1 ⋯ H_{n−3}, accumulated backwards so each step touches only the trailing block.
    const Q = new Float64Array(n * n);
    for (let i = 0; i < n; i++) Q[i * n + i] = 1;
    const u = new Float64Array(n);
    for (let k = vs.length - 1; k >= 0; k--) {
      const v = vs[k];
      if (!v) continue;
      const beta = betas[k]!;
      const off = k + 1;
      const m = n - off;
      u.fill(0, 0, m);
      for (let i = 0; i < m; i++) {
        const row = (off + i) * n + off;
        const vi = v[i]!;
        for (let j = 0; j < m; j++) u[j]! += vi * Q[row + j]!;
      }
      for (let i = 0; i < m; i++) {
        const row = (off + i) * n + off;
        const f = beta * v[i]!;
        for (let j = 0; j < m; j++) Q[row + j]! -= f * u[j]!;
      }
    }
    qt = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) qt[j * n + i] = Q[i * n + j]!;
  }
  return { d, e, qt };
}

/**
 * Eigenvalues (and vectors) of a symmetric tridiagonal matrix by implicit symmetric QR steps with
 * Wilkinson shifts (Golub & Van Loan, Algorithm 8.3.2), deflating from the bottom. `d` and `e`
 * are overwritten (`d` ends as the eigenvalues). Rotations are applied to the rows of `zt`
 * (row `i` = current vector `i`), so on entry `zt = Qᵀ` from {@link tridiagonalize}.
 */
function tridiagonalQR(d: Float64Array, e: Float64Array, n: number, zt: Float64Array | null): number {
  const eps = 2 ** -52;
  const tiny = 1e-300;
  const negligible = (i: number) => Math.abs(e[i]!) <= eps * (Math.abs(d[i]!) + Math.abs(d[i + 1]!)) + tiny;
  let steps = 0;
  const maxSteps = 60 * Math.max(n, 1);
  let hi = n - 1;
  while (hi > 0) {
    if (negligible(hi - 1)) {
      e[hi - 1] = 0;
      hi--;
      continue;
    }
    let lo = hi - 1;
    while (lo > 0 && !negligible(lo - 1)) lo--;
    if (++steps > maxSteps) throw new Error('tridiagonal QR did not converge');
    // Wilkinson shift: the eigenvalue of the trailing 2×2 block closer to d[hi].
    const delta = 0.5 * (d[hi - 1]! - d[hi]!);
    const b2 = e[hi - 1]! * e[hi - 1]!;
    const mu = d[hi]! - b2 / (delta + (delta >= 0 ? 1 : -1) * Math.sqrt(delta * delta + b2));
    // Chase the bulge from the top of the block [lo, hi] to the bottom.
    let x = d[lo]! - mu;
    let z = e[lo]!;
    for (let k = lo; k < hi; k++) {
      const r = Math.hypot(x, z);
      const c = r === 0 ? 1 : x / r;
      const s = r === 0 ? 0 : z / r;
      if (k > lo) e[k - 1] = r; // the rotation zeroes the bulge at (k−1, k+1)
      const a = d[k]!;
      const b = e[k]!;
      const a2 = d[k + 1]!;
      d[k] = c * c * a + 2 * c * s * b + s * s * a2;
      d[k + 1] = s * s * a - 2 * c * s * b + c * c * a2;
      e[k] = c * s * (a2 - a) + (c * c - s * s) * b;
      if (k + 1 < hi) {
        const f = e[k + 1]!;
        z = s * f; // new bulge at (k, k+2)
        e[k + 1] = c * f;
        x = e[k]!;
      }
      if (zt) {
        const rk = k * n;
        const rk1 = rk + n;
        for (let j = 0; j < n; j++) {
          const p = zt[rk + j]!;
          const q = zt[rk1 + j]!;
          zt[rk + j] = c * p + s * q;
          zt[rk1 + j] = c * q - s * p;
        }
      }
    }
  }
  return steps;
}

/**
 * Eigendecomposition of a real symmetric `n × n` matrix by Householder tridiagonalisation and
 * implicit QR with Wilkinson shifts — `O(n³)` with a small constant (a 400 × 400 covariance takes
 * well under a second with vectors). The input is not modified (it is symmetrised first).
 */
export function tridiagonalEigen(a: ArrayLike<number>, n: number, opts: { vectors?: boolean } = {}): Eigen {
  if (a.length !== n * n) throw new OptionError('matrix.length', `n·n = ${n * n}`, a.length);
  const wantVectors = opts.vectors ?? true;
  const A = symmetrisedCopy(a, n);
  for (let i = 0; i < n * n; i++) if (!Number.isFinite(A[i]!)) return nonFiniteEigen(n, wantVectors);
  const { d, e, qt } = tridiagonalize(A, n, wantVectors);
  const iterations = tridiagonalQR(d, e, n, qt);
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => d[i]! - d[j]!);
  const out: Eigen = { values: Float64Array.from(order, (i) => d[i]!), iterations };
  if (qt) {
    const vs = new Float64Array(n * n);
    order.forEach((i, r) => vs.set(qt.subarray(i * n, i * n + n), r * n));
    out.vectors = vs;
  }
  return out;
}

/** NaN eigenvalues (and vectors) for an input that holds NaN or ±∞. */
function nonFiniteEigen(n: number, vectors: boolean): Eigen {
  const out: Eigen = { values: new Float64Array(n).fill(NaN), iterations: 0 };
  if (vectors) out.vectors = new Float64Array(n * n).fill(NaN);
  return out;
}

/** Which eigensolver {@link symmetricEigen} uses. */
export type EigenMethod = 'auto' | 'jacobi' | 'tridiagonal';

/**
 * Eigendecomposition of a real symmetric matrix: eigenvalues ascending, eigenvectors as rows.
 * `'jacobi'` = {@link jacobiEigen} (cyclic Jacobi: highest relative accuracy, slow for large n);
 * `'tridiagonal'` = {@link tridiagonalEigen}; `'auto'` (default) uses Jacobi up to n = 64.
 */
export function symmetricEigen(a: ArrayLike<number>, n: number, opts: { vectors?: boolean; method?: EigenMethod } = {}): Eigen {
  const method = opts.method ?? 'auto';
  if (method === 'jacobi' || (method === 'auto' && n <= 64)) return jacobiEigen(a, n, opts);
  if (method === 'tridiagonal' || method === 'auto') return tridiagonalEigen(a, n, opts);
  throw new OptionError('method', "'auto', 'jacobi' or 'tridiagonal'", method);
}
