/**
 * The Fréchet distance between Gaussians fitted to two feature sets — the arithmetic of FVD
 * (REFERENCE_SPEC §8.2 step 6; ANCHORS §5). Features (400-d I3D logits for FVD) come from the
 * engine; everything here is plain float64.
 *
 *   FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁Σ₂)^{1/2}
 *
 * The reference evaluates `tr sqrtm(Σ₁Σ₂)` with SciPy's general (Schur-based) matrix square
 * root. For covariance matrices Σ₁Σ₂ is similar to the symmetric PSD matrix
 * `Σ₁^{1/2} Σ₂ Σ₁^{1/2}`, so both have the same eigenvalues and
 * `tr (Σ₁Σ₂)^{1/2} = Σᵢ √λᵢ(Σ₁^{1/2} Σ₂ Σ₁^{1/2})`. We use this symmetric form: two symmetric
 * eigendecompositions, exact up to rounding, with tiny negative eigenvalues (rounding noise of
 * rank-deficient covariances) clamped to 0 — where SciPy would produce small imaginary parts that
 * the reference discards by taking the real part.
 */
import { FlexvidError, OptionError } from '../util/errors.ts';
import { type EigenMethod, type FeatureInput, matmulSquare, meanAndCovariance, symmetricEigen } from './linalg.ts';

export { meanAndCovariance } from './linalg.ts';

/** Options of {@link frechetDistance} / {@link fvdFromFeatures}. */
export interface FrechetOptions {
  /** Diagonal offset for the retry when the square-root term is not finite (default 1e-6, as the reference). */
  eps?: number;
  /** Called with a message when the retry happens (the reference prints a warning). */
  onWarning?: (message: string) => void;
  /** Eigensolver (default `'auto'`: Jacobi up to d = 64, tridiagonal QR above). */
  method?: EigenMethod;
}

/**
 * `tr (Σ₁Σ₂)^{1/2}` for symmetric PSD `d × d` matrices, via
 * `Σᵢ √λᵢ(Σ₁^{1/2} Σ₂ Σ₁^{1/2})` (negative eigenvalues clamped to 0). NaN if an input is not finite.
 */
export function traceSqrtProduct(sigma1: ArrayLike<number>, sigma2: ArrayLike<number>, d: number, method: EigenMethod = 'auto'): number {
  // Σ₁^{1/2} = V diag(√max(λ, 0)) Vᵀ, with V's rows holding the eigenvectors.
  const e1 = symmetricEigen(sigma1, d, { vectors: true, method });
  const V = e1.vectors!;
  const root = new Float64Array(d * d);
  for (let k = 0; k < d; k++) {
    const s = Math.sqrt(Math.max(e1.values[k]!, 0));
    if (!(s > 0)) {
      if (Number.isNaN(s)) return NaN;
      continue;
    }
    const vk = k * d;
    for (let i = 0; i < d; i++) {
      const f = s * V[vk + i]!;
      if (f === 0) continue;
      const row = i * d;
      for (let j = 0; j < d; j++) root[row + j]! += f * V[vk + j]!;
    }
  }
  const s2 = Float64Array.from(sigma2);
  const m = matmulSquare(matmulSquare(root, s2, d), root, d);
  const e2 = symmetricEigen(m, d, { vectors: false, method });
  let tr = 0;
  for (const v of e2.values) tr += Math.sqrt(Math.max(v, 0));
  return e2.values.some(Number.isNaN) ? NaN : tr;
}

function checkStats(mu: ArrayLike<number>, sigma: ArrayLike<number>, d: number, which: string): void {
  if (mu.length !== d) throw new OptionError(`mu${which}.length`, `${d}`, mu.length);
  if (sigma.length !== d * d) throw new OptionError(`sigma${which}.length`, `d·d = ${d * d}`, sigma.length);
}

/**
 * Fréchet distance between `N(μ₁, Σ₁)` and `N(μ₂, Σ₂)` (REFERENCE_SPEC §8.2 step 6).
 * Shapes: `mu*` is `[d]`, `sigma*` is `[d, d]` row-major.
 *
 * Faithful: when the square-root term is not finite, it is recomputed with `eps·I` added to both
 * covariances (the trace terms keep the original covariances), and `onWarning` is called.
 */
export function frechetDistance(
  mu1: ArrayLike<number>,
  sigma1: ArrayLike<number>,
  mu2: ArrayLike<number>,
  sigma2: ArrayLike<number>,
  opts: FrechetOptions = {},
): number {
  const d = mu1.length;
  checkStats(mu1, sigma1, d, '1');
  checkStats(mu2, sigma2, d, '2');
  let diff2 = 0;
  let tr1 = 0;
  let tr2 = 0;
  for (let i = 0; i < d; i++) {
    diff2 += (mu1[i]! - mu2[i]!) ** 2;
    tr1 += sigma1[i * d + i]!;
    tr2 += sigma2[i * d + i]!;
  }
  let trSqrt = traceSqrtProduct(sigma1, sigma2, d, opts.method);
  if (!Number.isFinite(trSqrt)) {
    const eps = opts.eps ?? 1e-6;
    opts.onWarning?.(`FVD: the matrix square root is not finite; adding ${eps} to the diagonal of both covariances`);
    const a = Float64Array.from(sigma1);
    const b = Float64Array.from(sigma2);
    for (let i = 0; i < d; i++) {
      a[i * d + i]! += eps;
      b[i * d + i]! += eps;
    }
    trSqrt = traceSqrtProduct(a, b, d, opts.method);
    if (!Number.isFinite(trSqrt)) throw new FlexvidError('FVD: the matrix square root is not finite even after adding eps·I (non-finite features?)');
  }
  return diff2 + tr1 + tr2 - 2 * trSqrt;
}

/**
 * FVD from two feature sets: sample means, unbiased covariances (divisor N − 1) and
 * {@link frechetDistance}. REFERENCE_SPEC §8.2 steps 5–6. Shapes: `[n_real, d]` and `[n_fake, d]`
 * (the two counts may differ; each needs ≥ 2 rows).
 */
export function fvdFromFeatures(real: FeatureInput, fake: FeatureInput, opts: FrechetOptions = {}): number {
  const a = meanAndCovariance(real);
  const b = meanAndCovariance(fake);
  if (a.mu.length !== b.mu.length) throw new OptionError('feature dimension', `equal for real and fake (${a.mu.length})`, b.mu.length);
  return frechetDistance(a.mu, a.sigma, b.mu, b.sigma, opts);
}
