/**
 * Scalar versions of the variational-bound terms (REFERENCE_SPEC §5.3): Gaussian KL, the tanh
 * approximation of the standard-normal CDF and the discretised Gaussian log-likelihood of 8-bit
 * data. These are the element-wise definitions; the tensor implementation applies the same
 * formulas element by element and averages over non-batch dimensions.
 */

/** ln 2, to convert nats into bits. */
const LN2 = Math.log(2);

/**
 * KL(N(μ₁, e^{lv₁}) ‖ N(μ₂, e^{lv₂})) in nats (REFERENCE_SPEC §5.3):
 * `½(−1 + lv₂ − lv₁ + e^{lv₁−lv₂} + (μ₁ − μ₂)² e^{−lv₂})`.
 */
export function normalKl(mean1: number, logVar1: number, mean2: number, logVar2: number): number {
  const d = mean1 - mean2;
  return 0.5 * (-1 + logVar2 - logVar1 + Math.exp(logVar1 - logVar2) + d * d * Math.exp(-logVar2));
}

/**
 * Fast approximation of the standard normal CDF used by the reference (§5.3):
 * `Φ(x) ≈ ½(1 + tanh(sqrt(2/π)(x + 0.044715x³)))`.
 */
export function approxStandardNormalCdf(x: number): number {
  return 0.5 * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

/**
 * Log-likelihood (nats) of an 8-bit-quantised value under a Gaussian (REFERENCE_SPEC §5.3).
 * The bin of `x ∈ [-1, 1]` has half-width 1/255; the outer bins extend to ±∞ (edge test at
 * ±0.999); every log argument is clamped at 1e-12.
 *
 * @param x target value (data rescaled to [-1, 1]).
 * @param mean Gaussian mean.
 * @param logScale log standard deviation (the reference passes `½·log variance`).
 */
export function discretizedGaussianLogLikelihood(x: number, mean: number, logScale: number): number {
  const centered = x - mean;
  const invStdv = Math.exp(-logScale);
  const cdfPlus = approxStandardNormalCdf(invStdv * (centered + 1 / 255));
  const cdfMin = approxStandardNormalCdf(invStdv * (centered - 1 / 255));
  if (x < -0.999) return Math.log(Math.max(cdfPlus, 1e-12));
  if (x > 0.999) return Math.log(Math.max(1 - cdfMin, 1e-12));
  return Math.log(Math.max(cdfPlus - cdfMin, 1e-12));
}

/**
 * One element of `vb_terms_bpd` in bits (REFERENCE_SPEC §5.3): at `t = 0` the decoder NLL
 * `−log p(x0 | x1)` of the discretised Gaussian with the model's mean and log variance; otherwise
 * `KL(q(x_{t−1}|x_t, x0) ‖ p(x_{t−1}|x_t))`. Both are divided by ln 2. The tensor version takes the
 * mean of these over all non-batch elements.
 */
export function vbTermBits(
  t: number,
  x0: number,
  trueMean: number,
  trueLogVar: number,
  modelMean: number,
  modelLogVar: number,
): number {
  if (t === 0) return -discretizedGaussianLogLikelihood(x0, modelMean, 0.5 * modelLogVar) / LN2;
  return normalKl(trueMean, trueLogVar, modelMean, modelLogVar) / LN2;
}
