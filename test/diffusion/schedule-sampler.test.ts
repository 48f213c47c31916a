import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { DiffusionSchedule, npLinspace } from '../../src/diffusion/schedule.ts';
import { erf, erfc, normalCdf, normalIntervalMass } from '../../src/diffusion/erf.ts';
import {
  choiceWithProbabilities,
  createScheduleSampler,
  EdmSampler,
  LossSecondMomentSampler,
  numpySum,
  UniformSampler,
} from '../../src/diffusion/schedule-sampler.ts';
import { NumpyRandomState } from '../../src/util/mt19937.ts';
import { OptionError } from '../../src/util/errors.ts';

const fx = JSON.parse(fs.readFileSync(new URL('../fixtures/diffusion/diffusion-fixtures.json', import.meta.url), 'utf8'));
const linear = DiffusionSchedule.named('linear', 1000);

function close(actual: number, expected: number, rel: number, msg?: string): void {
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${msg ?? ''} ${actual} vs ${expected}`);
}

test('erf / erfc agree with Python math.erf / math.erfc to ~1e-14', () => {
  for (const [x, e, c] of fx.erf as [number, number, number][]) {
    assert.ok(Math.abs(erf(x) - e) <= 1e-15 + 2e-15 * Math.abs(e), `erf(${x})`);
    if (c > 0) close(erfc(x), c, 2e-14, `erfc(${x})`);
    else assert.equal(erfc(x), 0);
  }
  assert.equal(erf(0), 0);
  assert.equal(erfc(Infinity), 0);
  assert.equal(erfc(-Infinity), 2);
  assert.ok(Number.isNaN(erf(NaN)));
  close(normalCdf(1.959963984540054), 0.975, 1e-14);
  assert.equal(normalCdf(0), 0.5);
  // upper-tail masses keep relative precision
  close(normalIntervalMass(8, Infinity, 0, 1), 0.5 * erfc(8 / Math.SQRT2), 1e-14);
  assert.equal(normalIntervalMass(-Infinity, Infinity, 3, 2), 1);
});

test('numpySum reproduces NumPy pairwise summation order', () => {
  const a = Float64Array.from({ length: 300 }, (_, i) => 1 / (i + 1) ** 1.3);
  let naive = 0;
  for (const v of a) naive += v;
  close(numpySum(a), naive, 1e-14);
  assert.equal(numpySum([1, 2, 3]), 6);
  assert.equal(numpySum([]), 0);
});

test('uniform sampler draws exactly what np.random.choice draws (seeded RandomState)', () => {
  const s = new UniformSampler(1000);
  const { t, weights } = s.sample(16, new NumpyRandomState(fx.sampling.uniformSeed));
  assert.deepEqual(Array.from(t), fx.sampling.uniformT);
  assert.ok(weights.every((w) => w === 1));
});

test('loss-second-moment: uniform warm-up, then sqrt(E[loss²]) weights mixed with 0.001 uniform', () => {
  const N = 1000;
  const s = new LossSecondMomentSampler(N);
  assert.ok(s.weights().every((w) => w === 1));
  // Same history as the fixture script: 12 losses per timestep from RandomState(7).rand().
  const rs = new NumpyRandomState(fx.sampling.lossSeed);
  const scale = npLinspace(0.1, 3.0, N);
  const ts: number[] = [];
  const losses: number[] = [];
  for (let t = 0; t < N; t++) for (let k = 0; k < 12; k++) ts.push(t);
  for (let i = 0; i < ts.length; i++) losses.push(rs.random() * scale[ts[i]!]!);
  s.updateWithAllLosses(ts.slice(0, 9000), losses.slice(0, 9000));
  assert.equal(s.warmedUp(), false); // timesteps ≥ 750 have fewer than 10
  s.updateWithAllLosses(ts.slice(9000), losses.slice(9000));
  assert.equal(s.warmedUp(), true);
  const w = s.weights();
  (fx.sampling.lossWeightsIdx as number[]).forEach((t, i) => close(w[t]!, fx.sampling.lossWeights[i], 1e-15, `w[${t}]`));
  const draw = s.sample(16, new NumpyRandomState(fx.sampling.lossDrawSeed));
  assert.deepEqual(Array.from(draw.t), fx.sampling.lossT);
  draw.weights.forEach((v, i) => close(v, fx.sampling.lossImportance[i], 1e-14));
  // state round trip through JSON
  const copy = new LossSecondMomentSampler(N);
  copy.setState(JSON.parse(JSON.stringify(s.getState())));
  assert.deepEqual(Array.from(copy.weights()), Array.from(w));
  assert.throws(() => copy.setState({ kind: 'uniform' }), OptionError);
  assert.throws(() => s.updateWithAllLosses([1000], [0.1]), /Expected an integer in \[0, 1000\) for t/);
});

test('edm sampler: Normal bucket masses in log σ, loss weights (1 + σ²)/σ²', () => {
  const s = createScheduleSampler('edm', linear) as EdmSampler;
  assert.equal(s.name, 'edm');
  const idx = fx.edm.idx as number[];
  idx.forEach((t, i) => {
    close(s.sigmas[t]!, fx.edm.sigma[i], 1e-15);
    close(s.probabilities[t]!, fx.edm.p[i], 1e-11, `p[${t}]`);
  });
  close(numpySum(s.probabilities), 1, 1e-12);
  const alt = createScheduleSampler('edm_0.5_2.0', linear) as EdmSampler;
  assert.equal(alt.name, 'edm_0.5_2.0');
  idx.forEach((t, i) => close(alt.probabilities[t]!, fx.edm.pAlt[i], 1e-11, `pAlt[${t}]`));
  const draw = s.sample(64, new NumpyRandomState(3));
  draw.t.forEach((t, i) => close(draw.weights[i]!, (1 + s.sigmas[t]! ** 2) / s.sigmas[t]! ** 2, 1e-15));
  const h = s.histograms();
  assert.equal(h.lossWeights.length, 1000);
});

test('choiceWithProbabilities validates p and searches right-sided', () => {
  const rng = { random: () => 0.5 };
  assert.deepEqual(Array.from(choiceWithProbabilities([0.5, 0.5], 2, rng)), [1, 1]); // cdf[0] = 0.5 ≤ u
  assert.deepEqual(Array.from(choiceWithProbabilities([0.25, 0.75], 1, { random: () => 0.2 })), [0]);
  assert.throws(() => choiceWithProbabilities([0.5, 0.6], 1, rng), /summing to 1/);
  assert.throws(() => choiceWithProbabilities([-0.5, 1.5], 1, rng), /p\[0\]/);
});

test('factory names and errors', () => {
  assert.equal(createScheduleSampler('uniform', linear).name, 'uniform');
  assert.equal(createScheduleSampler('loss-second-moment', linear).name, 'loss-second-moment');
  assert.throws(() => createScheduleSampler('edm_x_1', linear), /schedule_sampler P_mean/);
  assert.throws(() => createScheduleSampler('edm_1_0', linear), /P_std/);
  assert.throws(() => createScheduleSampler('importance', linear), /Expected "uniform", "loss-second-moment"/);
});
