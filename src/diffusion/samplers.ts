/**
 * Samplers over video tensors: DDPM ancestral (§5.4), DDIM (§5.5, with the §10.3 fixes) and the
 * Heun/EDM sampler (§5.7, faithful by default, corrected as `heun2-…`). Each sampler is one
 * function owning its loop; observed frames are taken from `x0` and never altered.
 * Shapes: videos `[B, T, C, H, W]`, observed mask `[B, T]`.
 */
import { adopt, Generator, randn, tidy, keep, type Tensor } from '../engine/index.ts';
import { GaussianDiffusion, type ModelFn } from './gaussian-diffusion.ts';
import { planHeun, type HeunStep } from './heun-plan.ts';
import type { HeunSamplerArgs, SamplerArgs } from './sampler-args.ts';

export interface SampleOptions {
  /** Clean video holding the observed frames `[B, T, C, H, W]`. */
  x0: Tensor;
  /** 1 for observed frames `[B, T]` (or `[B, T, 1, 1, 1]`). */
  obsMask: Tensor;
  /** Clamp x̂0 to [-1, 1] (pixel space; off for latents). */
  clipDenoised?: boolean;
  /** Source of all noise (reproducible sampling). */
  generator?: Generator;
  /** Called after every step with (step index, total steps). */
  onStep?: (i: number, total: number) => void;
  /**
   * Heun (faithful): also make the reference's model call whose result it discards (§5.7 step 6).
   * Off by default — the model is deterministic at sampling time, so the samples are the same
   * without it; it exists to time exactly the reference's work.
   */
  warmupCall?: boolean;
}

/** Replace observed frames of `x` by those of `x0`: `(1 − obs)·x + obs·x0`. */
export function overwriteObserved(x: Tensor, x0: Tensor, obs: Tensor): Tensor {
  return tidy(() => {
    const [B, T] = x.shape as [number, number];
    const m = obs.reshape([B, T, 1, 1, 1]).to({ dtype: x.dtype, device: x.device });
    return x.mul(m.rsub(1)).add(x0.to({ dtype: x.dtype }).mul(m));
  });
}

function noiseLike(x: Tensor, g?: Generator): Tensor {
  return randn(x.shape, g, { dtype: 'float32', device: x.device }).to({ dtype: x.dtype, copy: false });
}

/** Ancestral sampling over every step of the (respaced) chain (§5.4). Returns float32 `[B, T, C, H, W]`. */
export function sampleDdpm(diffusion: GaussianDiffusion, model: ModelFn, o: SampleOptions): Tensor {
  const N = diffusion.numTimesteps;
  const B = o.x0.size(0);
  let x = keep(noiseLike(o.x0, o.generator));
  for (let k = N - 1; k >= 0; k--) {
    const next = tidy(() => {
      const t = new Array(B).fill(k);
      const { mean, logVariance } = diffusion.pMeanVariance(model, x, t, { clipDenoised: o.clipDenoised });
      let y = mean;
      if (k > 0) y = mean.add(logVariance.mul(0.5).exp().mul(noiseLike(x, o.generator)));
      return overwriteObserved(y, o.x0, o.obsMask);
    });
    x.dispose();
    x = keep(next);
    o.onStep?.(N - 1 - k, N);
  }
  return adopt(x);
}

/** DDIM sampling with η (§5.5; observed frames overwritten each step — §10.3 fix). */
export function sampleDdim(diffusion: GaussianDiffusion, model: ModelFn, o: SampleOptions & { eta?: number }): Tensor {
  const N = diffusion.numTimesteps;
  const B = o.x0.size(0);
  const eta = o.eta ?? 0;
  const s = diffusion.schedule;
  let x = keep(noiseLike(o.x0, o.generator));
  for (let k = N - 1; k >= 0; k--) {
    const next = tidy(() => {
      const t = new Array(B).fill(k);
      const { predXstart } = diffusion.pMeanVariance(model, x, t, { clipDenoised: o.clipDenoised });
      const eps = diffusion.predictEpsFromXstart(x, t, predXstart);
      const c = s.ddimCoefficients(k, eta);
      let y = predXstart.mul(c.coefXstart).add(eps.mul(c.coefEps));
      if (k > 0 && c.sigma > 0) y = y.add(noiseLike(x, o.generator).mul(c.sigma));
      return overwriteObserved(y, o.x0, o.obsMask);
    });
    x.dispose();
    x = keep(next);
    o.onStep?.(N - 1 - k, N);
  }
  return adopt(x);
}

/**
 * Heun/EDM sampler (§5.7). The plan (timesteps, sigmas, churn) comes from `planHeun`; here the
 * state is kept in float64 as in the reference and the model sees `x/sqrt(1+σ²)` in float32.
 * Faithful: Euler-with-churn steps (the "second order" reuses the first denoised value); the
 * reference's discarded warm-up call is skipped unless `o.warmupCall`. Corrected (`heun2-…`):
 * consistent sigmas and a second model evaluation.
 * Returns float32 `[B, T, C, H, W]` whose observed frames equal x0.
 */
export function sampleHeun(diffusion: GaussianDiffusion, model: ModelFn, args: HeunSamplerArgs, o: SampleOptions): Tensor {
  const plan = planHeun(diffusion.schedule.alphasCumprod, args);
  const B = o.x0.size(0);
  const x0 = o.x0;
  const denoise = (x: Tensor, t: number, sigma: number): Tensor =>
    tidy(() => {
      const xVp = x.mul(1 / Math.sqrt(1 + sigma * sigma)).to({ dtype: 'float32' });
      const { predXstart } = diffusion.pMeanVariance(model, xVp, new Array(B).fill(t), { clipDenoised: o.clipDenoised });
      return overwriteObserved(predXstart, x0, o.obsMask).to({ dtype: 'float64' });
    });
  const total = plan.steps.length;
  let x = keep(tidy(() => randn(x0.shape, o.generator, { dtype: 'float32', device: x0.device }).to({ dtype: 'float64' })));
  if (plan.warmupCall && o.warmupCall) denoise(x, plan.initialT, plan.initialSigma).dispose(); // the reference discards it
  {
    const scaled = x.mul(plan.initialSigma);
    x.dispose();
    x = keep(scaled);
  }
  plan.steps.forEach((step: HeunStep, i) => {
    const next = tidy(() => {
      const xHat = step.noiseStd > 0 ? x.add(noiseLike(x, o.generator).mul(step.noiseStd)) : x;
      const den = denoise(xHat, step.tHat, step.sigmaHat);
      const d = xHat.sub(den).div(step.sigmaHat);
      let xNext = xHat.add(d.mul(step.sigmaNext - step.sigmaHat));
      if (step.secondOrder === 'reuse') {
        // faithful: d' = (x_next − D_same)/σ_next, which equals d algebraically
        const dPrime = xNext.sub(den).div(step.sigmaNext);
        xNext = xHat.add(d.add(dPrime).mul(0.5 * (step.sigmaNext - step.sigmaHat)));
      } else if (step.secondOrder === 'evaluate') {
        const den2 = denoise(xNext, step.tNext, step.sigmaNext);
        const dPrime = xNext.sub(den2).div(step.sigmaNext);
        xNext = xHat.add(d.add(dPrime).mul(0.5 * (step.sigmaNext - step.sigmaHat)));
      } else if (step.sigmaNext === 0) {
        xNext = den; // the last step lands on the denoised estimate
      }
      return xNext;
    });
    if (next !== x) x.dispose();
    x = keep(next);
    o.onStep?.(i, total);
  });
  const out = tidy(() => overwriteObserved(x.to({ dtype: 'float32' }), x0, o.obsMask));
  x.dispose();
  return out;
}

/** Dispatch on a parsed sampler string (`parseSampler`). */
export function sampleWith(args: SamplerArgs, diffusion: GaussianDiffusion, model: ModelFn, o: SampleOptions): Tensor {
  switch (args.kind) {
    case 'ddpm':
      return sampleDdpm(diffusion, model, o);
    case 'ddim':
      return sampleDdim(diffusion, model, { ...o, eta: args.eta });
    case 'heun':
      return sampleHeun(diffusion, model, args, o);
  }
}
