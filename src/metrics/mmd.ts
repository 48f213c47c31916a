/**
 * Kernel MMD on feature sets — KVD (REFERENCE_SPEC §8.3, [c6f25f7]): the squared maximum mean
 * discrepancy between I3D features of real and generated videos with the polynomial kernel
 * `k(x, y) = (γ xᵀy + 1)³`, `γ = 1/d` (Bińkowski et al., "Demystifying MMD GANs", 2018).
 * Only the unbiased polynomial estimator is used by the reference; the biased and U-statistic
 * estimators are provided because the reference module offers them.
 */
import { OptionError } from '../util/errors.ts';
import { type FeatureInput, type Matrix, toMatrix } from './linalg.ts';

/** Polynomial kernel parameters; defaults are the KVD ones. */
export interface PolynomialKernelOptions {
  /** Degree (default 3). */
  degree?: number;
  /** Scale γ (default 1/d). */
  gamma?: number;
  /** Constant term (default 1). */
  coef0?: number;
}

/** Which MMD² estimator {@link mmd2} returns. */
export type MmdEstimator = 'unbiased' | 'biased' | 'u-statistic';

/** Sums of the three kernel blocks needed by every estimator. */
interface KernelSums {
  /** Σ_{i≠j} k(xᵢ, xⱼ) */
  xxOff: number;
  /** Σᵢ k(xᵢ, xᵢ) */
  xxDiag: number;
  yyOff: number;
  yyDiag: number;
  /** Σ_{i,j} k(xᵢ, yⱼ) */
  xy: number;
  /** Σᵢ k(xᵢ, yᵢ) (only meaningful when m = n) */
  xyDiag: number;
}

function kernelSums(X: Matrix & { data: ArrayLike<number> }, Y: Matrix & { data: ArrayLike<number> }, o: PolynomialKernelOptions): KernelSums {
  const d = X.d;
  const degree = o.degree ?? 3;
  const gamma = o.gamma ?? 1 / d;
  const coef0 = o.coef0 ?? 1;
  const k = (A: ArrayLike<number>, i: number, B: ArrayLike<number>, j: number) => {
    let dot = 0;
    const a = i * d;
    const b = j * d;
    for (let t = 0; t < d; t++) dot += A[a + t]! * B[b + t]!;
    return (gamma * dot + coef0) ** degree;
  };
  const s: KernelSums = { xxOff: 0, xxDiag: 0, yyOff: 0, yyDiag: 0, xy: 0, xyDiag: 0 };
  for (let i = 0; i < X.n; i++) {
    s.xxDiag += k(X.data, i, X.data, i);
    for (let j = i + 1; j < X.n; j++) s.xxOff += 2 * k(X.data, i, X.data, j);
  }
  for (let i = 0; i < Y.n; i++) {
    s.yyDiag += k(Y.data, i, Y.data, i);
    for (let j = i + 1; j < Y.n; j++) s.yyOff += 2 * k(Y.data, i, Y.data, j);
  }
  for (let i = 0; i < X.n; i++) {
    for (let j = 0; j < Y.n; j++) {
      const v = k(X.data, i, Y.data, j);
      s.xy += v;
      if (i === j) s.xyDiag += v;
    }
  }
  return s;
}

/**
 * MMD² between the rows of `x` (`[m, d]`) and `y` (`[m, d]`) with a polynomial kernel:
 * - `'unbiased'` (default, KVD): `(Σ_{i≠j} K_XX + Σ_{i≠j} K_YY) / (m(m−1)) − 2 Σ_{i,j} K_XY / m²`
 * - `'biased'`: `(Σ K_XX + Σ K_YY − 2 Σ K_XY) / m²` (all terms, diagonals included)
 * - `'u-statistic'`: `(Σ_{i≠j} K_XX + Σ_{i≠j} K_YY − 2 Σ_{i≠j} K_XY) / (m(m−1))`
 *
 * Equal sizes are required, as in the reference. REFERENCE_SPEC §8.3.
 */
export function mmd2(x: FeatureInput, y: FeatureInput, opts: PolynomialKernelOptions & { estimator?: MmdEstimator } = {}): number {
  const X = toMatrix(x, 'real features');
  const Y = toMatrix(y, 'fake features');
  if (X.d !== Y.d) throw new OptionError('feature dimension', `equal for both sets (${X.d})`, Y.d);
  if (X.n !== Y.n) throw new OptionError('feature counts', `equal sizes (${X.n} real)`, Y.n);
  const m = X.n;
  if (m < 2) throw new OptionError('feature counts', 'at least 2 per set', m);
  const s = kernelSums(X, Y, opts);
  const estimator = opts.estimator ?? 'unbiased';
  switch (estimator) {
    case 'unbiased':
      return (s.xxOff + s.yyOff) / (m * (m - 1)) - (2 * s.xy) / (m * m);
    case 'biased':
      return (s.xxOff + s.xxDiag + s.yyOff + s.yyDiag - 2 * s.xy) / (m * m);
    case 'u-statistic':
      return (s.xxOff + s.yyOff - 2 * (s.xy - s.xyDiag)) / (m * (m - 1));
    default:
      throw new OptionError('estimator', "'unbiased', 'biased' or 'u-statistic'", estimator);
  }
}

/** KVD: the unbiased MMD² with the cubic polynomial kernel, γ = 1/d (REFERENCE_SPEC §8.3). */
export function kvdFromFeatures(real: FeatureInput, fake: FeatureInput): number {
  return mmd2(real, fake, { estimator: 'unbiased' });
}
