import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import {
  betaSchedule,
  DiffusionSchedule,
  discretizedGaussianLogLikelihood,
  edmOutputScaling,
  modelTimestep,
  normalKl,
  npLinspace,
  scaleTimesteps,
  vbTermBits,
} from '../../src/diffusion/schedule.ts';
import { OptionError } from '../../src/util/errors.ts';

const fx = JSON.parse(fs.readFileSync(new URL('../fixtures/diffusion/diffusion-fixtures.json', import.meta.url), 'utf8'));

function close(actual: number, expected: number, rel: number, msg?: string): void {
  const tol = rel * Math.max(Math.abs(expected), 1e-300);
  assert.ok(Math.abs(actual - expected) <= tol, `${msg ?? ''} ${actual} vs ${expected} (rel ${rel})`);
}

test('linear schedule golden values (REFERENCE_SPEC §5.1, §11.5)', () => {
  const s = DiffusionSchedule.named('linear', 1000);
  assert.equal(s.alphasCumprod[0], 0.9999);
  close(s.alphasCumprod[999]!, 4.0358e-5, 1e-4);
  assert.equal(s.betas[0], 0.0001);
  assert.equal(s.betas[999], 0.02);
});

test('all derived tables match NumPy float64 (make-diffusion-fixtures.py)', () => {
  for (const f of fx.tables) {
    const s = DiffusionSchedule.named(f.name, f.N);
    const large = s.fixedVariance('fixed-large');
    const small = s.fixedVariance('fixed-small');
    assert.equal(small.variance, s.posteriorVariance);
    for (const [key, expected] of Object.entries(f.values as Record<string, number[]>)) {
      const table = key === 'fixedLargeLogVariance' ? large.logVariance : (s as unknown as Record<string, Float64Array>)[key]!;
      (f.idx as number[]).forEach((t, j) => {
        const e = expected[j]!;
        // Linear β and ᾱ use the same operations in the same order: bit-identical. (Cosine goes
        // through libm's cos, which may differ in the last bit.)
        if (f.name === 'linear' && (key === 'betas' || key === 'alphasCumprod')) assert.equal(table[t], e, `${f.name}${f.N} ${key}[${t}]`);
        else close(table[t]!, e, 1e-13, `${f.name}${f.N} ${key}[${t}]`);
      });
    }
  }
});

test('posterior coefficients satisfy the Gaussian-product closed form', () => {
  const s = DiffusionSchedule.named('cosine', 200);
  for (let t = 1; t < 200; t++) {
    const ab = s.alphasCumprodPrev[t]!;
    const beta = s.betas[t]!;
    const alpha = s.alphas[t]!;
    const varTilde = 1 / (1 / (1 - ab) + alpha / beta);
    close(s.posteriorVariance[t]!, varTilde, 1e-10);
    close(s.posteriorMeanCoef1[t]!, (varTilde * Math.sqrt(ab)) / (1 - ab), 1e-10);
    close(s.posteriorMeanCoef2[t]!, (varTilde * Math.sqrt(alpha)) / beta, 1e-10);
  }
  assert.equal(s.posteriorLogVarianceClipped[0], Math.log(s.posteriorVariance[1]!));
});

test('forward/inverse helpers are consistent', () => {
  const s = DiffusionSchedule.named('linear', 1000);
  for (const t of [0, 17, 500, 999]) {
    const x0 = 0.3;
    const eps = -1.7;
    const xt = s.qSample(x0, t, eps);
    close(s.predictXstartFromEps(xt, t, eps), x0, 1e-9);
    close(s.predictEpsFromXstart(xt, t, x0), eps, 1e-9);
    const q = s.qPosterior(x0, xt, t);
    close(q.mean, s.posteriorMeanCoef1[t]! * x0 + s.posteriorMeanCoef2[t]! * xt, 1e-15);
  }
  // learned range interpolates between ln β and the clipped ln β̃ (§5.9)
  close(s.learnedRangeLogVariance(1, 10), Math.log(s.betas[10]!), 1e-15);
  close(s.learnedRangeLogVariance(-1, 10), s.posteriorLogVarianceClipped[10]!, 1e-15);
  // DDIM: η = 0 is deterministic; η = 1 has the posterior variance (§5.5)
  assert.equal(s.ddimCoefficients(300, 0).sigma, 0);
  close(s.ddimCoefficients(300, 0).coefEps, Math.sqrt(1 - s.alphasCumprodPrev[300]!), 1e-15);
  close(s.ddimCoefficients(300, 1).sigma ** 2, s.posteriorVariance[300]!, 1e-9);
  close(s.veSigma(824), 31.3484, 1e-5);
});

test('timestep scaling for the model (§5.2, §5.8)', () => {
  assert.equal(scaleTimesteps(999, 1000), 999);
  assert.equal(scaleTimesteps(3, 4), 750);
  assert.equal(scaleTimesteps(7, 30, false), 7);
  assert.equal(modelTimestep(2, { originalNumSteps: 1000, timestepMap: [0, 20, 40] }), 40);
  assert.equal(modelTimestep(1, { originalNumSteps: 300, timestepMap: [0, 11, 22] }), 11 * (1000 / 300));
  assert.equal(modelTimestep(1, { originalNumSteps: 300, timestepMap: [0, 11], float32: true }), Math.fround(11 * Math.fround(1000 / 300)));
  assert.throws(() => modelTimestep(5, { originalNumSteps: 10, timestepMap: [0, 1] }), OptionError);
});

test('option errors name the field', () => {
  assert.throws(() => betaSchedule('quadratic' as never, 10), /noise_schedule/);
  assert.throws(() => betaSchedule('linear', 0), /diffusion_steps/);
  assert.throws(() => new DiffusionSchedule([0.1, 1.5]), /Expected a value in \(0, 1\] for betas\[1\] but received 1\.5/);
  assert.throws(() => DiffusionSchedule.named('linear', 10), /betas\[/); // β_end = 2 with N = 10
});

test('npLinspace matches NumPy conventions', () => {
  assert.deepEqual(Array.from(npLinspace(0, 1, 5)), [0, 0.25, 0.5, 0.75, 1]);
  assert.deepEqual(Array.from(npLinspace(3, 7, 1)), [3]);
  assert.equal(npLinspace(0, 1, 0).length, 0);
  assert.equal(npLinspace(10, 49.999, 5)[4], 49.999);
});

test('EDM output scaling keeps the faithful square root (§5.6)', () => {
  const a = edmOutputScaling(0);
  assert.equal(a.cSkip, 0.5); // σ_d²/sqrt(σ_d²) = σ_d, not 1
  assert.equal(a.cOut, 0);
  const b = edmOutputScaling(2);
  close(b.cSkip, 0.25 / Math.sqrt(4.25), 1e-15);
  close(b.cOut, 1 / Math.sqrt(4.25), 1e-15);
});

test('KL and discretised log-likelihood match torch (improved-diffusion formulas)', () => {
  const L = fx.likelihood;
  for (let i = 0; i < L.x.length; i++) {
    close(discretizedGaussianLogLikelihood(L.x[i], L.mean[i], L.logScale[i]), L.logProb[i], 1e-12, `ll ${i}`);
    close(normalKl(L.mean[i], L.lv1[i], L.m2[i], L.lv2[i]), L.kl[i], 1e-12, `kl ${i}`);
  }
});

test('discretised likelihood: the 256 bins of 8-bit data carry total probability 1', () => {
  for (const [mean, logScale] of [[0, Math.log(0.1)], [0.5, Math.log(0.3)], [-0.9, Math.log(0.02)]] as const) {
    let total = 0;
    for (let k = 0; k < 256; k++) total += Math.exp(discretizedGaussianLogLikelihood((2 * k) / 255 - 1, mean, logScale));
    close(total, 1, 1e-9);
  }
  assert.equal(normalKl(0.3, -1, 0.3, -1), 0);
  close(normalKl(0, 0, 1, Math.log(4)), 0.5 * (-1 + Math.log(4) + 0.25 + 0.25), 1e-15);
  // vb term: t = 0 → decoder NLL in bits; t > 0 → KL in bits
  close(vbTermBits(0, 0.2, 0, 0, 0.2, Math.log(0.01)), -discretizedGaussianLogLikelihood(0.2, 0.2, 0.5 * Math.log(0.01)) / Math.LN2, 1e-15);
  close(vbTermBits(3, 0, 0.1, -2, 0.3, -1), normalKl(0.1, -2, 0.3, -1) / Math.LN2, 1e-15);
});
