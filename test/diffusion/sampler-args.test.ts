import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_SAMPLER, formatSampler, parseSampler } from '../../src/diffusion/sampler-args.ts';
import { OptionError } from '../../src/util/errors.ts';

test('default sampler string (REFERENCE_SPEC §5.7): S_max before S_min, inf parses', () => {
  assert.deepEqual(parseSampler(DEFAULT_SAMPLER), {
    kind: 'heun',
    variant: 'faithful',
    sChurn: 80,
    sMax: Infinity,
    sMin: 0,
    sNoise: 1,
    sigmaMax: 1000,
    sigmaMin: 0.002,
    rho: 7,
    numSteps: 50,
  });
  const p = parseSampler('heun-40-50-0.05-1.003-80-0.002-7-18');
  assert.ok(p.kind === 'heun' && p.sMax === 50 && p.sMin === 0.05 && p.sNoise === 1.003);
});

test('other samplers', () => {
  assert.deepEqual(parseSampler('ddpm'), { kind: 'ddpm' });
  assert.deepEqual(parseSampler('ddim'), { kind: 'ddim', eta: 0 });
  assert.deepEqual(parseSampler('ddim-0.5'), { kind: 'ddim', eta: 0.5 });
  const c = parseSampler('heun2-0-inf-0-1-80-0.002-7-18');
  assert.ok(c.kind === 'heun' && c.variant === 'corrected' && c.sChurn === 0);
  assert.ok((parseSampler('heun-80-INF-0-1-1000-0.002-7-50') as { sMax: number }).sMax === Infinity);
  assert.ok((parseSampler('heun-80-Infinity-0-1-1e3-0.002-7-50') as { sigmaMax: number }).sigmaMax === 1000);
});

test('formatSampler round-trips', () => {
  for (const s of [DEFAULT_SAMPLER, 'heun2-0-inf-0-1-80-0.002-7-18', 'heun-40-50-0.05-1.003-80-0.002-7-18', 'ddpm', 'ddim', 'ddim-0.3']) {
    assert.equal(formatSampler(parseSampler(s)), s);
  }
});

test('errors name the bad field', () => {
  assert.throws(
    () => parseSampler('heun-80-inf-0-1-1000-0.002-7.5-50'),
    (e) => e instanceof OptionError && e.message === 'Expected an integer (in "heun-80-inf-0-1-1000-0.002-7.5-50") for sampler field rho but received "7.5"',
  );
  assert.throws(() => parseSampler('heun-80-inf-zero-1-1000-0.002-7-50'), /for sampler field S_min but received "zero"/);
  assert.throws(() => parseSampler('heun-80-inf-0-1-1000-0.002-7'), /8 "-"-separated fields/);
  assert.throws(() => parseSampler('heun-80-inf-0-1-1000-0.002-7-1'), /sampler field num_steps/);
  assert.throws(() => parseSampler('heun-80-inf-0-1-1000-0-7-50'), /sampler field sigma_min/);
  assert.throws(() => parseSampler('heun-80-inf-0-1-0.001-0.002-7-50'), /sampler field sigma_max/);
  assert.throws(() => parseSampler('heun--80-inf-0-1-1000-0.002-7-50'), OptionError);
  assert.throws(() => parseSampler('euler'), /Expected "ddpm", "ddim"/);
  assert.throws(() => parseSampler('ddim-x'), /sampler field eta/);
});
