import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { DiffusionSchedule } from '../../src/diffusion/schedule.ts';
import { pyRound, respacedFromSpec, respaceSchedule, spaceTimesteps } from '../../src/diffusion/respace.ts';
import { OptionError } from '../../src/util/errors.ts';

const fx = JSON.parse(fs.readFileSync(new URL('../fixtures/diffusion/diffusion-fixtures.json', import.meta.url), 'utf8'));

test('respacing goldens (REFERENCE_SPEC §5.8, §11.5)', () => {
  const ddim = spaceTimesteps(1000, 'ddim50');
  assert.equal(ddim.length, 50);
  assert.deepEqual(ddim.slice(0, 3), [0, 20, 40]);
  assert.equal(ddim[49], 980);
  assert.deepEqual(spaceTimesteps(1000, '10'), [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]);
  const three = spaceTimesteps(300, '10,15,20');
  assert.deepEqual(three.slice(0, 12), [0, 11, 22, 33, 44, 55, 66, 77, 88, 99, 100, 107]);
  assert.equal(three.length, 45);
  assert.deepEqual(spaceTimesteps(7, ''), [0, 1, 2, 3, 4, 5, 6]);
});

test('spaceTimesteps and respaced betas match the Python model (make-diffusion-fixtures.py)', () => {
  for (const r of fx.respacing) {
    const base = DiffusionSchedule.named('linear', r.N);
    const label = `N=${r.N} spec=${JSON.stringify(r.spec)}`;
    if (r.error) {
      assert.throws(() => spaceTimesteps(r.N, r.spec, base.alphasCumprod), OptionError, label);
      continue;
    }
    assert.deepEqual(spaceTimesteps(r.N, r.spec, base.alphasCumprod), r.keep, label);
    const { schedule, timestepMap } = respacedFromSpec(base, r.spec);
    assert.deepEqual(Array.from(timestepMap), r.keep);
    r.betasHead.forEach((b: number, i: number) => assert.ok(Math.abs(schedule.betas[i]! - b) <= 1e-15 * Math.max(b, 1e-300) + 1e-18, label));
    const last = schedule.betas[schedule.numTimesteps - 1]!;
    assert.ok(Math.abs(last - r.betasLast) <= 1e-14 * r.betasLast, label);
  }
});

test('the respaced chain keeps ᾱ at the kept indices', () => {
  const base = DiffusionSchedule.named('cosine', 1000);
  const { schedule, timestepMap, originalNumSteps } = respaceSchedule(base, spaceTimesteps(1000, '25,10'));
  assert.equal(originalNumSteps, 1000);
  timestepMap.forEach((orig, k) => {
    const a = schedule.alphasCumprod[k]!;
    const b = base.alphasCumprod[orig]!;
    // 1 − β' loses relative precision once ᾱ is tiny (β' → 1): compare absolutely there.
    assert.ok(Math.abs(a - b) <= Math.max(1e-12 * b, 1e-15), `k=${k}: ${a} vs ${b}`);
  });
});

test('comma sections: half-to-even rounding of the accumulated position (faithful)', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, 2.4999, 2.5001, -0.5, -1.5].map((x) => pyRound(x) + 0), [0, 2, 2, 4, 2, 3, 0, -2]);
  // L = 6, c = 3: positions 0, 2.5, 5 → Python round(2.5) = 2 (Math.round would give 3)
  assert.deepEqual(spaceTimesteps(6, '3'), [0, 2, 5]);
  // first N mod n sections are one longer: N = 10, "2,2,2" → sizes 4, 3, 3
  assert.deepEqual(spaceTimesteps(10, '2,2,2'), [0, 3, 4, 6, 7, 9]);
  // c ≤ 1 takes just the first step of its section
  assert.deepEqual(spaceTimesteps(10, '1,1'), [0, 5]);
});

test('edm respacing keeps the faithful +1 (§10.3 #29)', () => {
  const base = DiffusionSchedule.named('linear', 1000);
  const keep = spaceTimesteps(1000, 'edm-18-0.002-80-7', base.alphasCumprod);
  assert.equal(keep[0], 1); // σ_min 0.002 is nearest to σ'_0, kept as index 0 + 1
  assert.ok(!keep.includes(0));
});

test('respacing errors name the option', () => {
  assert.throws(() => spaceTimesteps(1000, 'ddim600'), /timestep_respacing/);
  assert.throws(() => spaceTimesteps(10, '11'), /Expected at most 10 steps in section 0 for timestep_respacing but received "11"/);
  assert.throws(() => spaceTimesteps(10, '3,x'), /integer section count/);
  assert.throws(() => spaceTimesteps(10, 'ddimx'), OptionError);
  assert.throws(() => spaceTimesteps(1000, 'edm-18-0.002-80-7'), /alphasCumprod/);
  assert.throws(() => spaceTimesteps(1000, 'edm-18-0.002-80', new Float64Array(1000)), /edm-<num_steps>/);
  assert.throws(() => respaceSchedule(DiffusionSchedule.named('linear', 100), [100, 200]), /at least one kept timestep/);
});
