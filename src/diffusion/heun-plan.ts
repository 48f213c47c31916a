/**
 * Step plans for the Heun/EDM sampler (REFERENCE_SPEC §5.7, §10.3 #28).
 *
 * All the discrete-time bookkeeping of the sampler — which timesteps are visited, their noise
 * levels, the churn, which model calls happen — is pure float64 math on the ᾱ table and is
 * computed here once, as a plan. A tensor sampler then only runs:
 *
 * ```
 * x = z · plan.initialSigma                      // (faithful: after one discarded call D(z, t0, σ0))
 * for (const s of plan.steps) {
 *   xHat = s.noiseStd > 0 ? x + s.noiseStd · z' : x            // increase noise temporarily
 *   d    = (xHat − D(xHat, s.tHat, s.sigmaHat)) / s.sigmaHat     // Euler step
 *   x    = xHat + (s.sigmaNext − s.sigmaHat) · d
 *   if (s.secondOrder !== 'none') {                               // 2nd-order correction
 *     D2 = s.secondOrder === 'reuse' ? (the D above) : D(x, s.tNext, s.sigmaNext)
 *     x  = xHat + (s.sigmaNext − s.sigmaHat) · (½·d + ½·(x − D2)/s.sigmaNext)
 *   }
 * }
 * ```
 * where `D(x, t, σ)` is the denoiser of §5.5 step 5: `x̂0` predicted by the model at (respaced)
 * index `t` from the VP input `x / sqrt(1 + σ²)`, observed frames overwritten with x0.
 * {@link runHeunPlan} is that loop on plain arrays (the executable reference for the tensor code).
 *
 * Two variants:
 * - **faithful** (`heun-…`, default): the reference algorithm, quirks included — timesteps picked
 *   with a different sigma (σ'_t = sqrt(1 − ᾱ_t²)/ᾱ_t) from the one used to denoise (Σ, shifted by
 *   one index), a discarded first model call, and a "second-order" correction that re-uses the first
 *   denoised value, so every step is an Euler step with churn (one model call per step).
 * - **corrected** (`heun2-…`): Karras et al. (2022) Algorithm 2 on the discrete chain — one
 *   consistent sigma σ_t = sqrt((1 − ᾱ_t)/ᾱ_t), the model queried at the index whose sigma is used,
 *   a ρ-schedule snapped to the chain's timesteps, and a real Heun correction (second model call at
 *   x_next), i.e. 2·steps − 1 model calls.
 */
import { OptionError } from '../util/errors.ts';
import type { HeunSamplerArgs } from './sampler-args.ts';

/**
 * Karras et al. (2022) ρ-schedule, Eq. 5: `n` noise levels from σ_max down to σ_min, then a
 * trailing 0 (k-diffusion `get_sigmas_karras`, with the endpoints set exactly). Pure; knows nothing
 * about samplers.
 * @returns Float64Array of length n + 1, descending, last element 0.
 * @example karrasSigmas(3, 0.002, 80, 7) // [80, ≈2.96, 0.002, 0]
 */
export function karrasSigmas(n: number, sigmaMin: number, sigmaMax: number, rho = 7): Float64Array {
  if (!Number.isInteger(n) || n < 1) throw new OptionError('n', 'an integer ≥ 1', n);
  if (!(sigmaMin > 0)) throw new OptionError('sigmaMin', 'a number > 0', sigmaMin);
  if (!(sigmaMax >= sigmaMin)) throw new OptionError('sigmaMax', `a number ≥ sigmaMin (${sigmaMin})`, sigmaMax);
  if (!(rho > 0)) throw new OptionError('rho', 'a number > 0', rho);
  const out = new Float64Array(n + 1);
  const minInv = Math.pow(sigmaMin, 1 / rho);
  const maxInv = Math.pow(sigmaMax, 1 / rho);
  for (let i = 0; i < n; i++) {
    const ramp = n === 1 ? 0 : i / (n - 1);
    out[i] = Math.pow(maxInv + ramp * (minInv - maxInv), rho);
  }
  // Exact endpoints (the power round trip can be off by an ulp).
  out[0] = sigmaMax;
  if (n > 1) out[n - 1] = sigmaMin;
  out[n] = 0;
  return out;
}

/**
 * The EDM target sigmas of the reference (§5.7 step 2, §5.8 `edm-…`):
 * `s_k = (σ_max^{1/ρ} + k/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ` for `k = 0…n−1`, plus — when
 * `extraStep` — the **faithful** extrapolated `k = n` (≈ 8.7e-4 with the defaults). No trailing 0.
 */
export function edmTargetSigmas(numSteps: number, sigmaMin: number, sigmaMax: number, rho: number, extraStep: boolean): Float64Array {
  const count = numSteps + (extraStep ? 1 : 0);
  const out = new Float64Array(count);
  const a = Math.pow(sigmaMax, 1 / rho);
  const b = Math.pow(sigmaMin, 1 / rho);
  for (let k = 0; k < count; k++) out[k] = Math.pow(a + (k / (numSteps - 1)) * (b - a), rho);
  return out;
}

/**
 * **faithful** step-selection sigmas (§5.7 step 1): `σ'_t = sqrt(1 − ᾱ_t²)/ᾱ_t`, t = 0…N−1.
 * (Not the VE sigma; a reference quirk, §10.3 #28.)
 */
export function stepSelectionSigmas(alphasCumprod: ArrayLike<number>): Float64Array {
  const out = new Float64Array(alphasCumprod.length);
  for (let t = 0; t < out.length; t++) {
    const a = alphasCumprod[t]!;
    out[t] = Math.sqrt(1 - a * a) / a;
  }
  return out;
}

/**
 * **faithful** VE sigma table with a leading zero (§5.7 step 4): `Σ[0] = 0`,
 * `Σ[k] = sqrt(1 − ᾱ_{k−1})/sqrt(ᾱ_{k−1})` for k = 1…N. Length N + 1; `Σ[k]` belongs to
 * diffusion index k − 1 (the reference's off-by-one).
 */
export function veSigmaTable(alphasCumprod: ArrayLike<number>): Float64Array {
  const out = new Float64Array(alphasCumprod.length + 1);
  for (let k = 1; k < out.length; k++) {
    const a = alphasCumprod[k - 1]!;
    out[k] = Math.sqrt(1 - a) / Math.sqrt(a);
  }
  return out;
}

/** Consistent VE sigmas σ_t = sqrt((1 − ᾱ_t)/ᾱ_t), t = 0…N−1 (corrected variant). */
export function consistentSigmas(alphasCumprod: ArrayLike<number>): Float64Array {
  const out = new Float64Array(alphasCumprod.length);
  for (let t = 0; t < out.length; t++) out[t] = Math.sqrt((1 - alphasCumprod[t]!) / alphasCumprod[t]!);
  return out;
}

/** `argmin_i |table[i] − x|`, first index on ties (like `np.argmin`). */
export function argminAbs(table: ArrayLike<number>, x: number): number {
  let best = 0;
  let bestD = Infinity;
  for (let i = 0; i < table.length; i++) {
    const d = Math.abs(table[i]! - x);
    if (d < bestD) {
      bestD = d;
      best = i;
    }
  }
  return best;
}

/** **faithful** `timestep2sigma(t)` (§5.7 step 4): 0 for t = 0, else Σ[t]. */
export function timestep2sigma(sigmaTable: ArrayLike<number>, t: number): number {
  if (t === 0) return 0;
  const v = sigmaTable[t];
  if (v === undefined) throw new OptionError('timestep', `an index in [0, ${sigmaTable.length})`, t);
  return v;
}

/** **faithful** `sigma2timestep(σ)` (§5.7 step 4): `argmin_k |Σ[k] − σ|` over k = 0…N. */
export function sigma2timestep(sigmaTable: ArrayLike<number>, sigma: number): number {
  return argminAbs(sigmaTable, sigma);
}

/**
 * **faithful** timestep selection (§5.7 steps 2–3): the num_steps + 1 EDM targets (the last
 * extrapolated one step beyond σ_min) followed by 0, each mapped to `argmin_t |σ'_t − s|`, keeping
 * first occurrences in order. Golden (linear N = 1000, defaults): 47 timesteps 825, 818, …, 2, 0.
 */
export function faithfulHeunTimesteps(alphasCumprod: ArrayLike<number>, a: Pick<HeunSamplerArgs, 'sigmaMin' | 'sigmaMax' | 'rho' | 'numSteps'>): number[] {
  const table = stepSelectionSigmas(alphasCumprod);
  const targets = [...edmTargetSigmas(a.numSteps, a.sigmaMin, a.sigmaMax, a.rho, true), 0];
  const out: number[] = [];
  for (const s of targets) {
    const t = argminAbs(table, s);
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

/** One step of a Heun plan (§5.7 step 7). All sigmas are VE noise levels (float64). */
export interface HeunStep {
  /** Timestep at the start of the step. */
  tCur: number;
  /** Timestep after churn; the first model call of the step is made at this (respaced) index. */
  tHat: number;
  /** Timestep at the end of the step (faithful: 0 for the last step; corrected: −1 = clean, σ = 0). */
  tNext: number;
  /** σ(t_cur). */
  sigmaCur: number;
  /** σ(t̂) ≥ σ_cur, the noise level the first model call is made at. */
  sigmaHat: number;
  /** σ(t_next); 0 for the final step. */
  sigmaNext: number;
  /** Churn factor γ (0 when σ_cur is outside [S_min, S_max]). */
  gamma: number;
  /** Std of the churn noise added before the model call: `sqrt(σ̂² − σ_cur²)·S_noise`; 0 when t̂ = t_cur. */
  noiseStd: number;
  /**
   * Second-order correction: `none` (final step to σ = 0), `reuse` (faithful: the slope is
   * recomputed from the first denoised value, algebraically an Euler step), `evaluate` (corrected:
   * second model call at `(x_next, tNext, sigmaNext)`).
   */
  secondOrder: 'none' | 'reuse' | 'evaluate';
}

/** A complete sampler plan. */
export interface HeunPlan {
  variant: 'faithful' | 'corrected';
  /** Visited timesteps (faithful: includes the final 0; corrected: snapped schedule, without the clean end). */
  timesteps: number[];
  /** σ of the first timestep: the start is `x = z · initialSigma`. */
  initialSigma: number;
  /** Timestep of the start. */
  initialT: number;
  /** faithful: one model call `D(z, initialT, initialSigma)` whose result is discarded (§5.7 step 6). */
  warmupCall: boolean;
  /** The steps, in order. */
  steps: HeunStep[];
  /** Total model calls, warm-up included. */
  modelCalls: number;
}

/** Churn factor γ of §5.7 step 7 / Karras Algorithm 2. */
function churnGamma(a: HeunSamplerArgs, sigmaCur: number): number {
  return a.sMin <= sigmaCur && sigmaCur <= a.sMax ? Math.min(a.sChurn / a.numSteps, Math.SQRT2 - 1) : 0;
}

/**
 * Plan the reference's Heun sampler, **faithful** variant (REFERENCE_SPEC §5.7 steps 1–8).
 * Golden (linear N = 1000, defaults): first step (t_cur, t̂, t_next) = (825, 866, 818), last (2, 4, 0);
 * Σ[825] = 31.3484, Σ[866] = 44.5007.
 * @param alphasCumprod ᾱ of the chain being sampled (respaced if respacing is on), shape [N].
 * @throws OptionError if churn would query the model at index N (out of the chain).
 */
export function planFaithfulHeun(alphasCumprod: ArrayLike<number>, a: HeunSamplerArgs): HeunPlan {
  const N = alphasCumprod.length;
  const table = veSigmaTable(alphasCumprod);
  const timesteps = faithfulHeunTimesteps(alphasCumprod, a);
  const sigma = (t: number): number => timestep2sigma(table, t);
  const steps: HeunStep[] = [];
  for (let i = 0; i + 1 < timesteps.length; i++) {
    const tCur = timesteps[i]!;
    const tNext = timesteps[i + 1]!;
    const sigmaCur = sigma(tCur);
    const gamma = churnGamma(a, sigmaCur);
    const tHat = sigma2timestep(table, sigmaCur * (1 + gamma));
    if (tHat >= N) {
      throw new OptionError('sampler', `settings whose churned timestep stays below the chain length ${N}`, `t_hat = ${tHat} at t_cur = ${tCur}`);
    }
    const sigmaHat = sigma(tHat);
    steps.push({
      tCur,
      tHat,
      tNext,
      sigmaCur,
      sigmaHat,
      sigmaNext: sigma(tNext),
      gamma,
      noiseStd: tHat === tCur ? 0 : Math.sqrt(sigmaHat * sigmaHat - sigmaCur * sigmaCur) * a.sNoise,
      secondOrder: tNext > 0 ? 'reuse' : 'none',
    });
  }
  const t0 = timesteps[0]!;
  return { variant: 'faithful', timesteps, initialT: t0, initialSigma: sigma(t0), warmupCall: true, steps, modelCalls: 1 + steps.length };
}

/** Index of the sigma (ascending table) nearest to `s` in log space, searched within [lo, N). */
function snapLog(sigmas: Float64Array, s: number, lo = 0): number {
  const ls = Math.log(s);
  let best = lo;
  let bestD = Infinity;
  for (let t = lo; t < sigmas.length; t++) {
    const d = Math.abs(Math.log(sigmas[t]!) - ls);
    if (d < bestD) {
      bestD = d;
      best = t;
    }
  }
  return best;
}

/**
 * Plan the **corrected** Heun sampler (REFERENCE_SPEC §5.7 Proposal; Karras et al. 2022,
 * Algorithm 2) on a discrete chain:
 * 1. σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) for every t — the same sigma for selection and denoising;
 * 2. `karrasSigmas(numSteps, σ_min, σ_max, ρ)` with σ_min/σ_max clamped to [σ_0, σ_{N−1}] (the
 *    range the model was trained on), each level snapped to the nearest timestep in log σ,
 *    first occurrences kept, then the clean end σ = 0;
 * 3. churn γ as in the reference, t̂ = nearest timestep ≥ t_cur to σ_cur(1 + γ), σ̂ = σ_{t̂};
 * 4. the model is queried at the index whose sigma is used, and again at (x_next, t_next) for the
 *    Heun correction whenever σ_next > 0. No warm-up call.
 */
export function planCorrectedHeun(alphasCumprod: ArrayLike<number>, a: HeunSamplerArgs): HeunPlan {
  const sigmas = consistentSigmas(alphasCumprod);
  const N = sigmas.length;
  const lo = sigmas[0]!;
  const hi = sigmas[N - 1]!;
  const sMax = Math.min(Math.max(a.sigmaMax, lo), hi);
  const sMin = Math.max(Math.min(a.sigmaMin, sMax), lo);
  const schedule = karrasSigmas(a.numSteps, sMin, sMax, a.rho);
  const timesteps: number[] = [];
  for (let i = 0; i < a.numSteps; i++) {
    const t = snapLog(sigmas, schedule[i]!);
    if (!timesteps.includes(t)) timesteps.push(t);
  }
  timesteps.sort((x, y) => y - x);
  const steps: HeunStep[] = [];
  let modelCalls = 0;
  for (let i = 0; i < timesteps.length; i++) {
    const tCur = timesteps[i]!;
    const tNext = i + 1 < timesteps.length ? timesteps[i + 1]! : -1;
    const sigmaCur = sigmas[tCur]!;
    const sigmaNext = tNext < 0 ? 0 : sigmas[tNext]!;
    const gamma = churnGamma(a, sigmaCur);
    const tHat = gamma > 0 ? snapLog(sigmas, sigmaCur * (1 + gamma), tCur) : tCur;
    const sigmaHat = sigmas[tHat]!;
    const secondOrder = sigmaNext > 0 ? 'evaluate' : 'none';
    modelCalls += secondOrder === 'evaluate' ? 2 : 1;
    steps.push({
      tCur,
      tHat,
      tNext,
      sigmaCur,
      sigmaHat,
      sigmaNext,
      gamma,
      noiseStd: tHat === tCur ? 0 : Math.sqrt(sigmaHat * sigmaHat - sigmaCur * sigmaCur) * a.sNoise,
      secondOrder,
    });
  }
  const t0 = timesteps[0]!;
  return { variant: 'corrected', timesteps, initialT: t0, initialSigma: sigmas[t0]!, warmupCall: false, steps, modelCalls };
}

/** Plan either variant according to `a.variant`. */
export function planHeun(alphasCumprod: ArrayLike<number>, a: HeunSamplerArgs): HeunPlan {
  return a.variant === 'corrected' ? planCorrectedHeun(alphasCumprod, a) : planFaithfulHeun(alphasCumprod, a);
}

/**
 * Denoiser contract of the plan loop (§5.7 step 5): given the VE-scaled state `x`, the model index
 * `t` and the noise level `sigma`, return x̂0 (same length). A tensor implementation scales the
 * input by `1/sqrt(1 + σ²)`, calls the model at `t` and overwrites observed frames.
 */
export type PlanDenoiser = (x: Float64Array, t: number, sigma: number) => Float64Array;

/**
 * Run a {@link HeunPlan} on plain float64 arrays — the executable reference for the tensor sampler.
 * @param z initial standard-normal noise, shape [n] (flattened).
 * @param normal standard-normal source for the churn noise.
 * @param onStep optional progress callback after each step.
 * @returns the final sample, shape [n].
 */
export function runHeunPlan(
  plan: HeunPlan,
  z: Float64Array,
  denoise: PlanDenoiser,
  normal: () => number,
  onStep?: (info: { i: number; step: HeunStep; x: Float64Array }) => void,
): Float64Array {
  const n = z.length;
  if (plan.warmupCall) denoise(Float64Array.from(z), plan.initialT, plan.initialSigma); // faithful: discarded
  let x = Float64Array.from(z, (v) => v * plan.initialSigma);
  plan.steps.forEach((s, i) => {
    const xHat = s.noiseStd > 0 ? Float64Array.from(x, (v) => v + s.noiseStd * normal()) : x;
    const den = denoise(xHat, s.tHat, s.sigmaHat);
    const d = new Float64Array(n);
    const next = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      d[j] = (xHat[j]! - den[j]!) / s.sigmaHat; // Euler step
      next[j] = xHat[j]! + (s.sigmaNext - s.sigmaHat) * d[j]!;
    }
    if (s.secondOrder !== 'none') {
      const den2 = s.secondOrder === 'reuse' ? den : denoise(next, s.tNext, s.sigmaNext); // Heun's method
      for (let j = 0; j < n; j++) {
        const dPrime = (next[j]! - den2[j]!) / s.sigmaNext;
        next[j] = xHat[j]! + (s.sigmaNext - s.sigmaHat) * (0.5 * d[j]! + 0.5 * dPrime);
      }
    }
    x = next;
    onStep?.({ i, step: s, x });
  });
  return x;
}
