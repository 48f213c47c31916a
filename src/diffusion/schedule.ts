/**
 * Noise schedules and every derived float64 coefficient table of the Gaussian diffusion
 * (REFERENCE_SPEC §5.1, §5.2, §5.9). Pure number math: tensor code indexes these tables by the
 * integer timestep, converts to float32 and broadcasts (§5.1 "Coefficient lookup").
 *
 * The scalar forward/posterior helpers at the end (`qSample`, `predictXstartFromEps`, …) are the
 * element-wise definitions the tensor implementation mirrors; they are also what the tests use as
 * the independent closed form.
 */
import { OptionError } from '../util/errors.ts';

export { normalKl, approxStandardNormalCdf, discretizedGaussianLogLikelihood, vbTermBits } from './likelihood.ts';

/** Names accepted by {@link betaSchedule} (`--noise_schedule`). */
export type BetaScheduleName = 'linear' | 'cosine';

/** The variance types of §5.2. */
export type VarianceType = 'fixed-large' | 'fixed-small' | 'learned-range';

/** The mean (model output) types of §5.2. */
export type MeanType = 'epsilon' | 'start-x' | 'previous-x';

/**
 * NumPy's `linspace(start, stop, num)` in float64, element for element: `start + i·step` with
 * `step = (stop − start)/(num − 1)`, and the last element set to `stop` exactly.
 * (Exported because the sampling schemes of §7.3 also rely on its exact rounding.)
 */
export function npLinspace(start: number, stop: number, num: number): Float64Array {
  if (!Number.isInteger(num) || num < 0) throw new OptionError('num', 'an integer ≥ 0', num);
  const out = new Float64Array(num);
  if (num === 0) return out;
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  if (step === 0) {
    // NumPy's denormal-safe branch: (i / div) · delta.
    for (let i = 0; i < num; i++) out[i] = (i / (num - 1)) * (stop - start) + start;
  } else {
    for (let i = 0; i < num; i++) out[i] = i * step + start;
  }
  out[num - 1] = stop;
  return out;
}

/**
 * β schedule of length `N` (REFERENCE_SPEC §5.1).
 * - `linear`: `linspace(0.0001·s, 0.02·s, N)` with `s = 1000/N`;
 * - `cosine`: `β_t = min(1 − ᾱ((t+1)/N)/ᾱ(t/N), 0.999)`, `ᾱ(u) = cos²(((u + 0.008)/1.008)·π/2)`.
 * @returns Float64Array of shape [N], every value in (0, 1].
 */
export function betaSchedule(name: BetaScheduleName, N: number): Float64Array {
  if (!Number.isInteger(N) || N < 1) throw new OptionError('diffusion_steps', 'an integer ≥ 1', N);
  if (name === 'linear') {
    const scale = 1000 / N;
    return npLinspace(scale * 0.0001, scale * 0.02, N);
  }
  if (name === 'cosine') {
    const alphaBar = (u: number): number => {
      const c = Math.cos(((u + 0.008) / 1.008) * Math.PI / 2);
      return c * c;
    };
    const betas = new Float64Array(N);
    for (let t = 0; t < N; t++) betas[t] = Math.min(1 - alphaBar((t + 1) / N) / alphaBar(t / N), 0.999);
    return betas;
  }
  throw new OptionError('noise_schedule', '"linear" or "cosine"', name);
}

/** Apply `f` element-wise into a new Float64Array (helper for the tables). */
function mapArray(a: Float64Array, f: (v: number, i: number) => number): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = f(a[i]!, i);
  return out;
}

/**
 * All float64 tables derived from a β schedule (REFERENCE_SPEC §5.1), indexed by timestep
 * `t = 0…N−1`. Field names follow the reference (`alphas_cumprod` → `alphasCumprod`, …).
 *
 * @example
 * const s = new DiffusionSchedule(betaSchedule('linear', 1000));
 * s.alphasCumprod[0]; // 0.9999
 */
export class DiffusionSchedule {
  /** Number of diffusion steps N. */
  readonly numTimesteps: number;
  /** β_t, shape [N]. */
  readonly betas: Float64Array;
  /** α_t = 1 − β_t, shape [N]. */
  readonly alphas: Float64Array;
  /** ᾱ_t = Π_{s≤t} α_s (sequential product, like `np.cumprod`), shape [N]. */
  readonly alphasCumprod: Float64Array;
  /** ᾱ_{t−1} with ᾱ_{−1} = 1, shape [N]. */
  readonly alphasCumprodPrev: Float64Array;
  /** ᾱ_{t+1} with ᾱ_N = 0, shape [N]. */
  readonly alphasCumprodNext: Float64Array;
  /** sqrt(ᾱ_t). */
  readonly sqrtAlphasCumprod: Float64Array;
  /** sqrt(1 − ᾱ_t). */
  readonly sqrtOneMinusAlphasCumprod: Float64Array;
  /** ln(1 − ᾱ_t). */
  readonly logOneMinusAlphasCumprod: Float64Array;
  /** sqrt(1/ᾱ_t). */
  readonly sqrtRecipAlphasCumprod: Float64Array;
  /** sqrt(1/ᾱ_t − 1). */
  readonly sqrtRecipm1AlphasCumprod: Float64Array;
  /** Posterior variance β̃_t = β_t (1 − ᾱ_{t−1})/(1 − ᾱ_t) (β̃_0 = 0). */
  readonly posteriorVariance: Float64Array;
  /** ln([β̃_1, β̃_1, β̃_2, …, β̃_{N−1}]) — the log with the t = 0 entry clipped to β̃_1. */
  readonly posteriorLogVarianceClipped: Float64Array;
  /** c1_t = β_t sqrt(ᾱ_{t−1})/(1 − ᾱ_t), coefficient of x̂0 in the posterior mean. */
  readonly posteriorMeanCoef1: Float64Array;
  /** c2_t = (1 − ᾱ_{t−1}) sqrt(α_t)/(1 − ᾱ_t), coefficient of x_t in the posterior mean. */
  readonly posteriorMeanCoef2: Float64Array;

  /** @param betas β schedule, shape [N]; every value must lie in (0, 1] (asserted, §5.1). */
  constructor(betas: Float64Array | readonly number[]) {
    const b = Float64Array.from(betas);
    if (b.length < 1) throw new OptionError('betas', 'a non-empty schedule', []);
    for (let i = 0; i < b.length; i++) {
      if (!(b[i]! > 0 && b[i]! <= 1)) throw new OptionError(`betas[${i}]`, 'a value in (0, 1]', b[i]);
    }
    const N = b.length;
    this.numTimesteps = N;
    this.betas = b;
    this.alphas = mapArray(b, (v) => 1 - v);
    const ac = new Float64Array(N);
    let prod = 1;
    for (let t = 0; t < N; t++) {
      prod = t === 0 ? this.alphas[0]! : prod * this.alphas[t]!;
      ac[t] = prod;
    }
    this.alphasCumprod = ac;
    this.alphasCumprodPrev = mapArray(ac, (_, t) => (t === 0 ? 1 : ac[t - 1]!));
    this.alphasCumprodNext = mapArray(ac, (_, t) => (t === N - 1 ? 0 : ac[t + 1]!));
    this.sqrtAlphasCumprod = mapArray(ac, Math.sqrt);
    this.sqrtOneMinusAlphasCumprod = mapArray(ac, (v) => Math.sqrt(1 - v));
    this.logOneMinusAlphasCumprod = mapArray(ac, (v) => Math.log(1 - v));
    this.sqrtRecipAlphasCumprod = mapArray(ac, (v) => Math.sqrt(1 / v));
    this.sqrtRecipm1AlphasCumprod = mapArray(ac, (v) => Math.sqrt(1 / v - 1));
    const prev = this.alphasCumprodPrev;
    this.posteriorVariance = mapArray(b, (beta, t) => (beta * (1 - prev[t]!)) / (1 - ac[t]!));
    const pv = this.posteriorVariance;
    // With N = 1 the reference's `append(pv[1], pv[1:])` would index past the end; use pv[0].
    this.posteriorLogVarianceClipped = mapArray(pv, (v, t) => Math.log(t === 0 ? (N > 1 ? pv[1]! : v) : v));
    this.posteriorMeanCoef1 = mapArray(b, (beta, t) => (beta * Math.sqrt(prev[t]!)) / (1 - ac[t]!));
    this.posteriorMeanCoef2 = mapArray(b, (_, t) => ((1 - prev[t]!) * Math.sqrt(this.alphas[t]!)) / (1 - ac[t]!));
  }

  /** Build from a named schedule: `DiffusionSchedule.named('linear', 1000)`. */
  static named(name: BetaScheduleName, N: number): DiffusionSchedule {
    return new DiffusionSchedule(betaSchedule(name, N));
  }

  /**
   * Fixed model variance tables for `fixed-large` / `fixed-small` (REFERENCE_SPEC §5.2):
   * - `fixed-large`: variance `[β̃_1, β_1, β_2, …, β_{N−1}]`, log of the same;
   * - `fixed-small`: `β̃` with the clipped log `posteriorLogVarianceClipped`.
   * `learned-range` has no fixed table; use {@link learnedRangeLogVariance}.
   * @returns `{variance, logVariance}`, each shape [N].
   */
  fixedVariance(type: 'fixed-large' | 'fixed-small'): { variance: Float64Array; logVariance: Float64Array } {
    if (type === 'fixed-large') {
      const N = this.numTimesteps;
      const variance = mapArray(this.betas, (beta, t) => (t === 0 ? (N > 1 ? this.posteriorVariance[1]! : beta) : beta));
      return { variance, logVariance: mapArray(variance, Math.log) };
    }
    if (type === 'fixed-small') {
      return { variance: this.posteriorVariance, logVariance: this.posteriorLogVarianceClipped };
    }
    throw new OptionError('varianceType', '"fixed-large" or "fixed-small"', type);
  }

  /**
   * `LEARNED_RANGE` log variance for one element (REFERENCE_SPEC §5.9):
   * `frac = (v + 1)/2`, `logvar = frac·ln β_t + (1 − frac)·ln β̃_t(clipped)`.
   * @param v raw model output in [-1, 1] (the variance channel).
   */
  learnedRangeLogVariance(v: number, t: number): number {
    const frac = (v + 1) / 2;
    return frac * Math.log(this.betas[t]!) + (1 - frac) * this.posteriorLogVarianceClipped[t]!;
  }

  /** `q_sample` for one element (§5.3): `sqrt(ᾱ_t) x0 + sqrt(1 − ᾱ_t) ε`. */
  qSample(x0: number, t: number, eps: number): number {
    return this.sqrtAlphasCumprod[t]! * x0 + this.sqrtOneMinusAlphasCumprod[t]! * eps;
  }

  /** x̂0 from an ε prediction (§5.4): `sqrt(1/ᾱ_t) x_t − sqrt(1/ᾱ_t − 1) ε`. */
  predictXstartFromEps(xt: number, t: number, eps: number): number {
    return this.sqrtRecipAlphasCumprod[t]! * xt - this.sqrtRecipm1AlphasCumprod[t]! * eps;
  }

  /** ε from an x̂0 (inverse of {@link predictXstartFromEps}; used by DDIM §5.5). */
  predictEpsFromXstart(xt: number, t: number, x0: number): number {
    return (this.sqrtRecipAlphasCumprod[t]! * xt - x0) / this.sqrtRecipm1AlphasCumprod[t]!;
  }

  /**
   * Posterior q(x_{t−1} | x_t, x_0) for one element (§5.1, §5.4):
   * mean `c1_t x0 + c2_t x_t`, variance β̃_t, clipped log variance.
   */
  qPosterior(x0: number, xt: number, t: number): { mean: number; variance: number; logVariance: number } {
    return {
      mean: this.posteriorMeanCoef1[t]! * x0 + this.posteriorMeanCoef2[t]! * xt,
      variance: this.posteriorVariance[t]!,
      logVariance: this.posteriorLogVarianceClipped[t]!,
    };
  }

  /**
   * DDIM step coefficients (REFERENCE_SPEC §5.5) at timestep t:
   * `σ = η sqrt((1−ᾱ_{t−1})/(1−ᾱ_t)) sqrt(1 − ᾱ_t/ᾱ_{t−1})`,
   * `x_{t−1} = coefXstart·x̂0 + coefEps·ε̂ + 1[t≠0]·σ·z`.
   */
  ddimCoefficients(t: number, eta: number): { sigma: number; coefXstart: number; coefEps: number } {
    const ac = this.alphasCumprod[t]!;
    const acPrev = this.alphasCumprodPrev[t]!;
    const sigma = eta * Math.sqrt((1 - acPrev) / (1 - ac)) * Math.sqrt(1 - ac / acPrev);
    return { sigma, coefXstart: Math.sqrt(acPrev), coefEps: Math.sqrt(Math.max(0, 1 - acPrev - sigma * sigma)) };
  }

  /**
   * The VE noise level of timestep t, `σ_t = sqrt(1 − ᾱ_t)/sqrt(ᾱ_t)` (§5.6, §5.10; the
   * "consistent" sigma of the corrected Heun sampler, §5.7 Proposal).
   */
  veSigma(t: number): number {
    const ac = this.alphasCumprod[t]!;
    return Math.sqrt(1 - ac) / Math.sqrt(ac);
  }
}

/**
 * Timestep value handed to the model (REFERENCE_SPEC §5.2, §5.8).
 *
 * The model sees `timestepMap[k]·1000/N_original` when `rescale` (default true), else the
 * original index. For an unrespaced chain `timestepMap` is the identity. The reference computes
 * this in float32 (`t.float() * (1000.0 / N)`); pass `float32: true` to get that exact value.
 *
 * @param k respaced timestep index.
 * @param o.timestepMap respaced → original index (omit for the identity).
 * @param o.originalNumSteps N of the un-respaced schedule.
 */
export function modelTimestep(
  k: number,
  o: { originalNumSteps: number; timestepMap?: ArrayLike<number>; rescale?: boolean; float32?: boolean },
): number {
  const t = o.timestepMap ? o.timestepMap[k] : k;
  if (t === undefined) throw new OptionError('timestep', `an index below ${o.timestepMap?.length}`, k);
  if (o.rescale === false) return t;
  if (o.float32) return Math.fround(Math.fround(t) * Math.fround(1000 / o.originalNumSteps));
  return t * (1000 / o.originalNumSteps);
}

/**
 * `_scale_timesteps` of the un-respaced diffusion: `t·1000/N` when `rescale` (§5.2).
 * @param float32 reproduce the reference's float32 arithmetic.
 */
export function scaleTimesteps(t: number, N: number, rescale = true, float32 = false): number {
  return modelTimestep(t, { originalNumSteps: N, rescale, float32 });
}

/**
 * EDM-style output scaling coefficients (REFERENCE_SPEC §5.6), for σ of the (original-scale)
 * timestep and `σ_d = ½`. **faithful**: `c_skip = σ_d²/sqrt(σ_d² + σ²)` (the reference's square
 * root; EDM has `σ_d²/(σ_d² + σ²)`), `c_out = σ_d σ/sqrt(σ_d² + σ²)`;
 * `x̂0 = c_skip·x_t + c_out·out` with the raw VP input `x_t`.
 */
export function edmOutputScaling(sigma: number, sigmaData = 0.5): { cSkip: number; cOut: number } {
  const denom = Math.sqrt(sigmaData * sigmaData + sigma * sigma);
  return { cSkip: (sigmaData * sigmaData) / denom, cOut: (sigmaData * sigma) / denom };
}
