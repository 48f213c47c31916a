/**
 * Error function, complementary error function and the normal CDF in float64, written from the
 * classical expansions (Abramowitz & Stegun 7.1.6 and 7.1.14):
 *
 * - |x| < 1.5: `erf(x) = (2/√π)·e^{−x²}·Σ_{n≥0} 2ⁿ x^{2n+1} / (1·3·…·(2n+1))` — all terms positive,
 *   so there is no cancellation;
 * - |x| ≥ 1.5: `erfc(x) = e^{−x²}/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …))))`, evaluated with the
 *   modified Lentz algorithm.
 *
 * `e^{−x²}` is computed as `e^{−s²}·e^{−(x−s)(x+s)}` with `s` = x rounded to 12 fractional bits, so
 * the rounding of `x²` does not leak into the result. Accuracy is a few ulps (tests compare against
 * Python's `math.erf`/`math.erfc`), which is all the EDM schedule sampler (§5.10) needs.
 */

const TWO_OVER_SQRT_PI = 1.1283791670955126; // 2/√π
const ONE_OVER_SQRT_PI = 0.5641895835477563; // 1/√π
const CUTOFF = 1.5;

/** e^{−x²} without the rounding error of forming x² directly. */
function expMinusSquare(x: number): number {
  const s = Math.round(x * 4096) / 4096;
  return Math.exp(-s * s) * Math.exp(-(x - s) * (x + s));
}

/** Series for erf, valid (and accurate) for |x| < CUTOFF. */
function erfSeries(x: number): number {
  const x2 = 2 * x * x;
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= x2 / (2 * n + 1);
    sum += term;
    if (Math.abs(term) <= 1e-17 * Math.abs(sum)) break;
  }
  return TWO_OVER_SQRT_PI * expMinusSquare(x) * sum;
}

/** Continued fraction for erfc, x ≥ CUTOFF. */
function erfcContinuedFraction(x: number): number {
  // f = x + a1/(x + a2/(x + …)), a_k = k/2, by modified Lentz.
  const tiny = 1e-300;
  let f = x;
  let c = x;
  let d = 0;
  for (let k = 1; k < 500; k++) {
    const a = k / 2;
    d = x + a * d;
    d = d === 0 ? tiny : d;
    c = x + a / c;
    c = c === 0 ? tiny : c;
    d = 1 / d;
    const delta = c * d;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return (ONE_OVER_SQRT_PI * expMinusSquare(x)) / f;
}

/** The error function erf(x) in float64. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a < CUTOFF) return erfSeries(x);
  const r = 1 - erfcContinuedFraction(a);
  return x < 0 ? -r : r;
}

/** The complementary error function erfc(x) = 1 − erf(x), accurate in the upper tail. */
export function erfc(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x >= CUTOFF) return x === Infinity ? 0 : erfcContinuedFraction(x);
  if (x <= -CUTOFF) return x === -Infinity ? 2 : 2 - erfcContinuedFraction(-x);
  return 1 - erfSeries(x);
}

/** Standard normal CDF Φ(z) = ½·erfc(−z/√2). */
export function normalCdf(z: number): number {
  return 0.5 * erfc(-z / Math.SQRT2);
}

/**
 * Probability mass of N(μ, s²) in the interval [a, b] (a ≤ b; ±Infinity allowed).
 * Uses upper-tail differences when both ends lie above μ, so masses far in either tail keep their
 * relative precision.
 */
export function normalIntervalMass(a: number, b: number, mean: number, std: number): number {
  const za = (a - mean) / std;
  const zb = (b - mean) / std;
  if (za >= 0) return 0.5 * (erfc(za / Math.SQRT2) - erfc(zb / Math.SQRT2));
  return 0.5 * (erfc(-zb / Math.SQRT2) - erfc(-za / Math.SQRT2));
}
