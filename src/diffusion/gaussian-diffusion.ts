/**
 * Gaussian diffusion on video tensors (REFERENCE_SPEC §5.1–5.6, §5.9): forward noising, training
 * losses with latent/eval masks, and the reverse-process mean/variance used by every sampler.
 * The float64 schedule tables come from `schedule.ts` / `respace.ts`; here they are looked up per
 * video and broadcast over `[B, T, C, H, W]`.
 */
import { fromBytes, noGrad, tidy, type Tensor } from '../engine/index.ts';
import { OptionError } from '../util/errors.ts';
import { DiffusionSchedule, type BetaScheduleName } from './schedule.ts';
import { respacedFromSpec, type RespacedSchedule } from './respace.ts';

/** Diffusion flags of the reference (§6.1), stored with every checkpoint. */
export interface DiffusionConfig {
  diffusionSteps: number;
  noiseSchedule: BetaScheduleName;
  /** "" (all steps), "ddimK", "edm-…", or section counts "a,b,c" (§5.8). */
  timestepRespacing: string;
  /** Predict x0 instead of ε (START_X). */
  predictXstart: boolean;
  /** FIXED_SMALL instead of FIXED_LARGE variance. */
  sigmaSmall: boolean;
  /** LEARNED_RANGE variance (model outputs 2C channels; split on the channel axis, §5.9 fix). */
  learnSigma: boolean;
  /** (Rescaled) KL loss instead of MSE. */
  useKl: boolean;
  /** Feed the model t·1000/N (default true). */
  rescaleTimesteps: boolean;
  /** RESCALED_MSE when not using KL (identical to MSE for fixed variances). */
  rescaleLearnedSigmas: boolean;
  /** EDM-style output scaling inside the model (§5.6, faithful c_skip). */
  useEdmScaling: boolean;
}

export const DEFAULT_DIFFUSION_CONFIG: DiffusionConfig = {
  diffusionSteps: 1000,
  noiseSchedule: 'linear',
  timestepRespacing: '',
  predictXstart: false,
  sigmaSmall: false,
  learnSigma: false,
  useKl: false,
  rescaleTimesteps: true,
  rescaleLearnedSigmas: true,
  useEdmScaling: false,
};

/** A model call at given (respaced) model times: `(x [B,T,C,H,W], t [B] float) → output`. */
export type ModelFn = (x: Tensor, modelTimesteps: Tensor) => Tensor;

export interface TrainingLosses {
  /** Per-video loss `[B]` (mse, plus vb with learned variance; or the KL term). */
  loss: Tensor;
  /** Masked MSE over latent (training) slots `[B]`. */
  mse: Tensor;
  /** Masked MSE over the eval mask `[B]`. */
  evalMse: Tensor;
  /** Variational bound term `[B]` (learned variance / KL only). */
  vb?: Tensor;
}

export class GaussianDiffusion {
  readonly config: DiffusionConfig;
  /** Schedule of the original N-step chain. */
  readonly base: DiffusionSchedule;
  /** The (possibly respaced) chain that sampling and training index. */
  readonly chain: RespacedSchedule;
  /** Number of steps of the chain. */
  readonly numTimesteps: number;
  readonly #fixedLogVar: Float64Array;
  readonly #fixedVar: Float64Array;

  constructor(partial: Partial<DiffusionConfig> = {}) {
    const cfg = { ...DEFAULT_DIFFUSION_CONFIG, ...partial };
    if (!Number.isInteger(cfg.diffusionSteps) || cfg.diffusionSteps < 1) throw new OptionError('diffusion-steps', 'a positive integer', cfg.diffusionSteps);
    if (cfg.useEdmScaling && cfg.timestepRespacing !== '') {
      // §10.3 item 30: the reference indexes the un-respaced table and breaks.
      throw new OptionError('timestep-respacing', '"" when --use-edm-scaling is on (the reference breaks with respacing)', cfg.timestepRespacing);
    }
    this.config = cfg;
    this.base = DiffusionSchedule.named(cfg.noiseSchedule, cfg.diffusionSteps);
    this.chain = respacedFromSpec(this.base, cfg.timestepRespacing);
    this.numTimesteps = this.chain.schedule.numTimesteps;
    const fixed = this.chain.schedule.fixedVariance(cfg.sigmaSmall ? 'fixed-small' : 'fixed-large');
    this.#fixedLogVar = fixed.logVariance;
    this.#fixedVar = fixed.variance;
  }

  get schedule(): DiffusionSchedule {
    return this.chain.schedule;
  }

  /** Times handed to the model for chain indices `t`: original index (·1000/N if rescaling). Shape `[B]` float32. */
  modelTimesteps(t: ArrayLike<number>, device = 'cpu'): Tensor {
    const N = this.chain.originalNumSteps;
    const v = Float32Array.from(t as ArrayLike<number>, (k) => {
      const orig = this.chain.timestepMap[k]!;
      return this.config.rescaleTimesteps ? Math.fround(orig * (1000 / N)) : orig;
    });
    const cpu = fromBytes(new Uint8Array(v.buffer), [v.length], 'float32');
    if (device === 'cpu') return cpu;
    const moved = cpu.to({ device });
    cpu.dispose();
    return moved;
  }

  /** Per-video coefficient from a float64 table, as `[B, 1, 1, 1, 1]` float32 on `like`'s device. */
  coef(table: ArrayLike<number>, t: ArrayLike<number>, like: Tensor): Tensor {
    const v = Float32Array.from(t as ArrayLike<number>, (k) => table[k]!);
    const shape = [v.length, ...new Array(like.ndim - 1).fill(1)];
    const cpu = fromBytes(new Uint8Array(v.buffer), shape, 'float32');
    if (like.device === 'cpu' && like.dtype === 'float32') return cpu;
    const moved = cpu.to({ device: like.device, dtype: like.dtype });
    cpu.dispose();
    return moved;
  }

  /** q(x_t | x_0) sample: `sqrt(ᾱ_t) x0 + sqrt(1−ᾱ_t) ε` (§5.3). */
  qSample(x0: Tensor, t: ArrayLike<number>, noise: Tensor): Tensor {
    const s = this.schedule;
    return tidy(() => this.coef(s.sqrtAlphasCumprod, t, x0).mul(x0).add(this.coef(s.sqrtOneMinusAlphasCumprod, t, x0).mul(noise)));
  }

  /** x̂0 from ε̂ (§5.4). */
  predictXstartFromEps(x: Tensor, t: ArrayLike<number>, eps: Tensor): Tensor {
    const s = this.schedule;
    return tidy(() => this.coef(s.sqrtRecipAlphasCumprod, t, x).mul(x).sub(this.coef(s.sqrtRecipm1AlphasCumprod, t, x).mul(eps)));
  }

  /** ε̂ from x̂0 (§5.5). */
  predictEpsFromXstart(x: Tensor, t: ArrayLike<number>, x0: Tensor): Tensor {
    const s = this.schedule;
    return tidy(() => this.coef(s.sqrtRecipAlphasCumprod, t, x).mul(x).sub(x0).div(this.coef(s.sqrtRecipm1AlphasCumprod, t, x)));
  }

  /** Posterior q(x_{t−1}|x_t, x_0): mean and clipped log variance (§5.1). */
  qPosterior(x0: Tensor, x: Tensor, t: ArrayLike<number>): { mean: Tensor; logVariance: Tensor } {
    const s = this.schedule;
    return tidy(() => ({
      mean: this.coef(s.posteriorMeanCoef1, t, x).mul(x0).add(this.coef(s.posteriorMeanCoef2, t, x).mul(x)),
      logVariance: this.coef(s.posteriorLogVarianceClipped, t, x),
    }));
  }

  /**
   * Run the model and split/scale its output: `{eps-or-x0 output, variance values or null}`.
   * Applies the EDM output scaling when configured (§5.6, faithful).
   */
  modelOutput(model: ModelFn, x: Tensor, t: ArrayLike<number>): { out: Tensor; varValues: Tensor | null } {
    return tidy(() => {
      let raw = model(x, this.modelTimesteps(t, x.device));
      let varValues: Tensor | null = null;
      if (this.config.learnSigma) {
        const C = x.size(2);
        varValues = raw.narrow(2, C, C); // §5.9 fix: split on the channel axis
        raw = raw.narrow(2, 0, C);
      }
      if (this.config.useEdmScaling) raw = this.#edmScale(raw, x, t);
      return { out: raw, varValues };
    });
  }

  #edmScale(out: Tensor, x: Tensor, t: ArrayLike<number>): Tensor {
    // σ from the original-scale index; c_skip with the reference's square root (faithful quirk).
    const ac = this.base.alphasCumprod;
    const orig = Array.from(t as ArrayLike<number>, (k) => this.chain.timestepMap[k]!);
    const sigma = orig.map((i) => Math.sqrt(1 - ac[i]!) / Math.sqrt(ac[i]!));
    const sd = 0.5;
    const cSkip = sigma.map((s) => (sd * sd) / Math.sqrt(sd * sd + s * s));
    const cOut = sigma.map((s) => (sd * s) / Math.sqrt(sd * sd + s * s));
    const x0 = this.coef(cSkip, orig.map((_, i) => i), x).mul(x).add(this.coef(cOut, orig.map((_, i) => i), x).mul(out));
    if (this.config.predictXstart) return x0;
    const sa = orig.map((i) => Math.sqrt(ac[i]!));
    const s1a = orig.map((i) => Math.sqrt(1 - ac[i]!));
    const idx = orig.map((_, i) => i);
    return x.sub(this.coef(sa, idx, x).mul(x0)).div(this.coef(s1a, idx, x));
  }

  /** Model log variance for fixed or learned-range variance. */
  #logVariance(x: Tensor, t: ArrayLike<number>, varValues: Tensor | null): Tensor {
    if (!varValues) return this.coef(this.#fixedLogVar, t, x).expand(x.shape);
    const s = this.schedule;
    const minLog = this.coef(s.posteriorLogVarianceClipped, t, x);
    const maxLog = this.coef(Float64Array.from(s.betas, Math.log), t, x);
    const frac = varValues.add(1).div(2);
    return frac.mul(maxLog).add(frac.rsub(1).mul(minLog));
  }

  /**
   * Reverse-process mean and variance p(x_{t−1}|x_t) (§5.4). `clipDenoised` clamps x̂0 to [-1, 1].
   * Returns `{mean, logVariance, predXstart}`, all `[B, T, C, H, W]`.
   */
  pMeanVariance(model: ModelFn, x: Tensor, t: ArrayLike<number>, opts: { clipDenoised?: boolean } = {}): { mean: Tensor; logVariance: Tensor; predXstart: Tensor } {
    return tidy(() => {
      const { out, varValues } = this.modelOutput(model, x, t);
      // §10.3 item 32: detect NaN as well as ±∞.
      if (!out.isfinite().all().item()) throw new OptionError('model output', 'finite values (the model output contains NaN or inf)', 'non-finite');
      let predXstart = this.config.predictXstart ? out : this.predictXstartFromEps(x, t, out);
      if (opts.clipDenoised ?? true) predXstart = predXstart.clamp(-1, 1);
      const mean = this.qPosterior(predXstart, x, t).mean;
      return { mean, logVariance: this.#logVariance(x, t, varValues), predXstart };
    });
  }

  /**
   * Training losses (§5.3, §5.9). Masks are `[B, T]` or `[B, T, 1, 1, 1]`. MSE terms are means over
   * all T·C·H·W elements with masked entries counted as zero (faithful).
   */
  trainingLosses(model: ModelFn, xStart: Tensor, t: ArrayLike<number>, o: { noise: Tensor; latentMask: Tensor; evalMask: Tensor }): TrainingLosses {
    return tidy(() => {
      const [B, T] = xStart.shape as [number, number];
      const lm = o.latentMask.reshape([B, T, 1, 1, 1]).to({ dtype: xStart.dtype });
      const em = o.evalMask.reshape([B, T, 1, 1, 1]).to({ dtype: xStart.dtype });
      const xt = this.qSample(xStart, t, o.noise);
      if (this.config.useKl) {
        const vb = this.#vbTerm(model, xStart, xt, t, null, lm).mul(this.config.rescaleLearnedSigmas ? this.numTimesteps : 1);
        const zero = vb.mul(0);
        return { loss: vb, mse: zero, evalMse: zero.clone(), vb };
      }
      const { out, varValues } = this.modelOutput(model, xt, t);
      const target = this.config.predictXstart ? xStart : o.noise;
      const sq = target.sub(out).square();
      const mse = sq.mul(lm).mean([1, 2, 3, 4]);
      const evalMse = sq.mul(em).mean([1, 2, 3, 4]);
      if (!varValues) return { loss: mse, mse, evalMse };
      // Learned variance: vb on a stop-gradient mean (× N/1000 for RESCALED_MSE).
      const frozen = out.detach();
      let vb = this.#vbTerm(() => frozen, xStart, xt, t, varValues, lm, true);
      if (this.config.rescaleLearnedSigmas) vb = vb.mul(this.numTimesteps / 1000);
      return { loss: mse.add(vb), mse, evalMse, vb };
    });
  }

  /** Variational-bound term in bits/dim, per video (decoder NLL at t = 0, KL otherwise; §5.3). */
  #vbTerm(model: ModelFn, xStart: Tensor, xt: Tensor, t: ArrayLike<number>, varValues: Tensor | null, mask: Tensor, frozenOut = false): Tensor {
    return tidy(() => {
      let predXstart: Tensor;
      let logVar: Tensor;
      if (frozenOut) {
        const out = model(xt, this.modelTimesteps(t, xt.device));
        predXstart = this.config.predictXstart ? out : this.predictXstartFromEps(xt, t, out);
        logVar = this.#logVariance(xt, t, varValues);
      } else {
        const pm = this.pMeanVariance(model, xt, t, { clipDenoised: false });
        predXstart = pm.predXstart;
        logVar = pm.logVariance;
      }
      const mean = this.qPosterior(predXstart, xt, t).mean;
      const truth = this.qPosterior(xStart, xt, t);
      const kl = normalKlTensor(truth.mean, truth.logVariance, mean, logVar).mul(1 / Math.LN2);
      const nll = discretizedGaussianLogLikelihoodTensor(xStart, mean, logVar.mul(0.5)).neg().mul(1 / Math.LN2);
      const isZero = Float32Array.from(t as ArrayLike<number>, (k) => (k === 0 ? 1 : 0));
      const z = this.coef(isZero, Array.from(isZero, (_, i) => i), xStart);
      const term = nll.mul(z).add(kl.mul(z.rsub(1)));
      return term.mul(mask).mean([1, 2, 3, 4]);
    });
  }
}

/** KL(N(μ1, e^{lv1}) ‖ N(μ2, e^{lv2})) elementwise (§5.3). */
export function normalKlTensor(mean1: Tensor, logVar1: Tensor, mean2: Tensor, logVar2: Tensor): Tensor {
  return tidy(() =>
    logVar2.sub(logVar1).add(logVar1.sub(logVar2).exp()).add(mean1.sub(mean2).square().mul(logVar2.neg().exp())).sub(1).mul(0.5),
  );
}

/** Φ(x) ≈ ½(1 + tanh(sqrt(2/π)(x + 0.044715x³))) (§5.3). */
function approxCdf(x: Tensor): Tensor {
  return tidy(() => x.add(x.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI)).tanh().add(1).mul(0.5));
}

/** Log-likelihood of 8-bit data under a discretised Gaussian (bin half-width 1/255; §5.3). */
export function discretizedGaussianLogLikelihoodTensor(x: Tensor, mean: Tensor, logScale: Tensor): Tensor {
  return tidy(() => {
    const centered = x.sub(mean);
    const invStd = logScale.neg().exp();
    const cdfPlus = approxCdf(centered.add(1 / 255).mul(invStd));
    const cdfMin = approxCdf(centered.sub(1 / 255).mul(invStd));
    const logCdfPlus = cdfPlus.clampMin(1e-12).log();
    const logOneMinusCdfMin = cdfMin.rsub(1).clampMin(1e-12).log();
    const logProbs = cdfPlus.sub(cdfMin).clampMin(1e-12).log();
    const lo = x.lt(-0.999);
    const hi = x.gt(0.999);
    return logProbs.where(hi.logicalNot(), logOneMinusCdfMin).where(lo.logicalNot(), logCdfPlus);
  });
}

/** Run `fn` without building an autograd graph (samplers). */
export const withoutGrad = noGrad;
