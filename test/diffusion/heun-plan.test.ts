import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { DiffusionSchedule } from '../../src/diffusion/schedule.ts';
import { respacedFromSpec } from '../../src/diffusion/respace.ts';
import { parseSampler, type HeunSamplerArgs } from '../../src/diffusion/sampler-args.ts';
import {
  consistentSigmas,
  edmTargetSigmas,
  faithfulHeunTimesteps,
  karrasSigmas,
  planCorrectedHeun,
  planFaithfulHeun,
  planHeun,
  runHeunPlan,
  sigma2timestep,
  timestep2sigma,
  veSigmaTable,
  type HeunPlan,
  type PlanDenoiser,
} from '../../src/diffusion/heun-plan.ts';

const fx = JSON.parse(fs.readFileSync(new URL('../fixtures/diffusion/diffusion-fixtures.json', import.meta.url), 'utf8'));
const linear = DiffusionSchedule.named('linear', 1000);
const heun = (s: string): HeunSamplerArgs => parseSampler(s) as HeunSamplerArgs;

function close(actual: number, expected: number, rel: number, msg?: string): void {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${msg ?? ''} ${actual} vs ${expected}`);
}

const GOLDEN = [
  825, 818, 810, 802, 794, 786, 778, 769, 760, 751, 741, 731, 721, 710, 699, 688, 676, 663, 650, 636, 622, 607, 591, 574,
  557, 538, 518, 496, 473, 447, 420, 390, 357, 321, 281, 238, 194, 151, 112, 79, 54, 35, 21, 12, 6, 2, 0,
];

test('faithful timestep selection golden (REFERENCE_SPEC §5.7 step 3)', () => {
  const ts = faithfulHeunTimesteps(linear.alphasCumprod, heun('heun-80-inf-0-1-1000-0.002-7-50'));
  assert.equal(ts.length, 47);
  assert.deepEqual(ts, GOLDEN);
  const targets = edmTargetSigmas(50, 0.002, 1000, 7, true);
  assert.equal(targets.length, 51);
  close(targets[49]!, 0.002, 1e-12);
  assert.ok(targets[50]! > 8.6e-4 && targets[50]! < 8.8e-4); // the extrapolated extra step
});

test('VE sigma table with the leading zero (§5.7 step 4)', () => {
  const table = veSigmaTable(linear.alphasCumprod);
  assert.equal(table.length, 1001);
  assert.equal(table[0], 0);
  close(table[825]!, 31.3484, 2e-6);
  close(table[866]!, 44.5007, 2e-6);
  close(table[1000]!, 157.407, 2e-6);
  assert.equal(timestep2sigma(table, 0), 0);
  assert.equal(timestep2sigma(table, 825), table[825]);
  assert.equal(sigma2timestep(table, table[825]! * Math.SQRT2), 866);
  assert.equal(sigma2timestep(table, 1e9), 1000);
});

test('faithful plan: churn triples, one model call per step plus the warm-up', () => {
  const plan = planFaithfulHeun(linear.alphasCumprod, heun('heun-80-inf-0-1-1000-0.002-7-50'));
  const first = plan.steps[0]!;
  assert.deepEqual([first.tCur, first.tHat, first.tNext], [825, 866, 818]);
  assert.deepEqual([plan.steps[1]!.tCur, plan.steps[1]!.tHat, plan.steps[1]!.tNext], [818, 859, 810]);
  const last = plan.steps[plan.steps.length - 1]!;
  assert.deepEqual([last.tCur, last.tHat, last.tNext], [2, 4, 0]);
  assert.equal(plan.steps.length, 46);
  assert.equal(plan.modelCalls, 47);
  assert.ok(plan.warmupCall);
  assert.equal(plan.initialT, 825);
  close(plan.initialSigma, 31.3484, 2e-6);
  for (const s of plan.steps) {
    assert.equal(s.gamma, Math.SQRT2 - 1);
    close(s.noiseStd, Math.sqrt(s.sigmaHat ** 2 - s.sigmaCur ** 2), 1e-12);
    assert.equal(s.secondOrder, s.tNext > 0 ? 'reuse' : 'none');
  }
  assert.equal(last.sigmaNext, 0);
});

test('faithful plans match the Python model for other settings and a respaced chain', () => {
  for (const h of fx.heun) {
    const [c, smax, smin, noise, sigMax, sigMin, rho, n] = h.args;
    const a = heun(`heun-${c}-${smax}-${smin}-${noise}-${sigMax}-${sigMin}-${rho}-${n}`);
    const ac = h.respacing ? respacedFromSpec(linear, h.respacing).schedule.alphasCumprod : linear.alphasCumprod;
    assert.equal(ac.length, h.N);
    const plan = planFaithfulHeun(ac, a);
    assert.deepEqual(plan.timesteps, h.timesteps);
    assert.equal(plan.steps.length, h.steps.length);
    plan.steps.forEach((s, i) => {
      const [tc, th, tn, sc, sh, sn, g] = h.steps[i];
      assert.deepEqual([s.tCur, s.tHat, s.tNext], [tc, th, tn], `step ${i}`);
      close(s.sigmaCur, sc, 1e-13);
      close(s.sigmaHat, sh, 1e-13);
      close(s.sigmaNext, sn, 1e-13);
      assert.equal(s.gamma, g);
    });
  }
});

test('karrasSigmas: Eq. 5 endpoints, descending, trailing zero', () => {
  const s = karrasSigmas(10, 0.002, 80, 7);
  assert.equal(s.length, 11);
  close(s[0]!, 80, 1e-14);
  close(s[9]!, 0.002, 1e-12);
  assert.equal(s[10], 0);
  for (let i = 1; i < 10; i++) assert.ok(s[i]! < s[i - 1]!);
  // midpoint in σ^{1/ρ} space
  const mid = karrasSigmas(3, 0.002, 80, 7)[1]!;
  close(mid, ((80 ** (1 / 7) + 0.002 ** (1 / 7)) / 2) ** 7, 1e-12);
  assert.deepEqual(Array.from(karrasSigmas(1, 0.5, 2)), [2, 0]);
  assert.throws(() => karrasSigmas(0, 0.1, 1), /Expected an integer ≥ 1 for n/);
  assert.throws(() => karrasSigmas(5, 0, 1), /sigmaMin/);
});

test('corrected plan: one consistent sigma, model at the sigma’s own index, real Heun evaluations', () => {
  const a = heun('heun2-80-inf-0-1-1000-0.002-7-50');
  const plan = planCorrectedHeun(linear.alphasCumprod, a);
  const sig = consistentSigmas(linear.alphasCumprod);
  assert.equal(plan.variant, 'corrected');
  assert.equal(plan.warmupCall, false);
  assert.equal(plan.initialT, 999); // σ_max = 1000 clamps to σ_999 ≈ 157
  assert.equal(plan.initialSigma, sig[999]);
  let calls = 0;
  plan.steps.forEach((s, i) => {
    assert.equal(s.sigmaCur, sig[s.tCur]);
    assert.equal(s.sigmaHat, sig[s.tHat]);
    assert.ok(s.tHat >= s.tCur);
    assert.ok(s.tHat <= 999);
    if (i + 1 < plan.steps.length) {
      assert.equal(s.tNext, plan.steps[i + 1]!.tCur);
      assert.equal(s.sigmaNext, sig[s.tNext]);
      assert.equal(s.secondOrder, 'evaluate');
    } else {
      assert.equal(s.sigmaNext, 0);
      assert.equal(s.secondOrder, 'none');
    }
    calls += s.secondOrder === 'evaluate' ? 2 : 1;
  });
  assert.equal(plan.modelCalls, calls);
  assert.equal(plan.modelCalls, 2 * plan.steps.length - 1);
  assert.equal(planHeun(linear.alphasCumprod, a).variant, 'corrected');
  assert.equal(planHeun(linear.alphasCumprod, heun('heun-80-inf-0-1-1000-0.002-7-50')).variant, 'faithful');
});

/** Exact denoiser of 1-D Gaussian data N(0, sd²) in VE form: D(x; σ) = x·sd²/(sd² + σ²). */
const SD = 0.5;
const gaussD: PlanDenoiser = (x, _t, sigma) => Float64Array.from(x, (v) => (v * SD * SD) / (SD * SD + sigma * sigma));

/** Relative error of a deterministic plan against the exact probability-flow ODE on Gaussian data. */
function odeError(plan: HeunPlan): number {
  const out = runHeunPlan(plan, Float64Array.of(1), gaussD, () => 0)[0]!;
  const s0 = plan.initialSigma;
  const last = plan.steps[plan.steps.length - 1]!;
  // exact flow x(σ) ∝ sqrt(sd² + σ²) down to the last σ̂, then the final (exact) denoising step
  const exact = ((s0 * Math.sqrt((SD * SD + last.sigmaHat ** 2) / (SD * SD + s0 * s0))) * SD * SD) / (SD * SD + last.sigmaHat ** 2);
  return Math.abs(out - exact) / exact;
}

function asEuler(plan: HeunPlan): HeunPlan {
  return { ...plan, steps: plan.steps.map((s) => ({ ...s, secondOrder: s.secondOrder === 'none' ? 'none' : 'reuse' })) };
}

test('corrected Heun is second order on Gaussian data; the faithful correction is plain Euler', () => {
  const p50 = planCorrectedHeun(linear.alphasCumprod, heun('heun2-0-inf-0-1-1000-0.002-7-50'));
  const p18 = planCorrectedHeun(linear.alphasCumprod, heun('heun2-0-inf-0-1-1000-0.002-7-18'));
  const e50 = odeError(p50);
  const e18 = odeError(p18);
  assert.ok(e50 < 0.01, `heun error ${e50}`);
  assert.ok(e18 / e50 > 4, `second order: ${e18} / ${e50}`); // ≈ (50/18)² for a 2nd-order method
  const eu50 = odeError(asEuler(p50));
  const eu18 = odeError(asEuler(p18));
  assert.ok(eu50 > 3 * e50);
  assert.ok(eu18 / eu50 < 4, `first order: ${eu18} / ${eu50}`);
  // faithful 'reuse' correction: numerically the Euler step (d' = d algebraically)
  const f = planFaithfulHeun(linear.alphasCumprod, heun('heun-0-inf-0-1-1000-0.002-7-50'));
  const withReuse = runHeunPlan(f, Float64Array.of(0.7), gaussD, () => 0)[0]!;
  const noCorrection = runHeunPlan({ ...f, steps: f.steps.map((s) => ({ ...s, secondOrder: 'none' as const })) }, Float64Array.of(0.7), gaussD, () => 0)[0]!;
  close(withReuse, noCorrection, 1e-12);
});

test('runHeunPlan: warm-up call, churn noise, final output = last denoised value', () => {
  const plan = planFaithfulHeun(linear.alphasCumprod, heun('heun-80-inf-0-1-1000-0.002-7-50'));
  const calls: [number, number][] = [];
  let lastDenoised = NaN;
  const D: PlanDenoiser = (x, t, sigma) => {
    calls.push([t, sigma]);
    const out = gaussD(x, t, sigma);
    lastDenoised = out[0]!;
    return out;
  };
  let draws = 0;
  const out = runHeunPlan(plan, Float64Array.of(0.3), D, () => (draws++, 0.1));
  assert.equal(calls.length, plan.modelCalls);
  assert.deepEqual(calls[0], [825, plan.initialSigma]); // discarded warm-up at (t0, σ0)
  assert.deepEqual(calls[1], [866, plan.steps[0]!.sigmaHat]);
  assert.equal(draws, plan.steps.filter((s) => s.noiseStd > 0).length);
  close(out[0]!, lastDenoised, 1e-12); // σ_next = 0: x = x̂ + (0 − σ̂)(x̂ − D)/σ̂ = D
});

test('faithful plan refuses churn that would leave the chain', () => {
  // Σ = [0, 0.1005, 1, 2, 3]: t0 = 3 has σ = 2, churned to 2.83 → nearest Σ[4], i.e. index N = 4.
  const tiny = [0.99, 0.5, 0.2, 0.1];
  assert.throws(() => planFaithfulHeun(tiny, heun('heun-80-inf-0-1-1000-0.002-7-50')), /churned timestep stays below the chain length 4/);
  assert.doesNotThrow(() => planFaithfulHeun(tiny, heun('heun-0-inf-0-1-1000-0.002-7-50')));
});
