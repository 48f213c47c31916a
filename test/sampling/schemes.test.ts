import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  collectStages,
  createSamplingScheme,
  farthestPointSelection,
  loadOptimalSchedule,
  SCHEME_NAMES,
  type SchemeOptions,
  type Stage,
} from '../../src/sampling/schemes.ts';
import { FileFormatError, FlexvidError, OptionError } from '../../src/util/errors.ts';

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

function run(name: string, o: SchemeOptions): Stage[] {
  return collectStages(createSamplingScheme(name, o));
}

/** Stages of video 0 as [obs, latent] pairs. */
function pairs(stages: Stage[]): [number[], number[]][] {
  return stages.map((s) => [s.obs[0]!, s.latent[0]!]);
}

const base = { videoLength: 50, numObs: 10, maxFrames: 10, stepSize: 5 };

test('autoreg golden trace (REFERENCE_SPEC §7.3)', () => {
  const p = pairs(run('autoreg', base));
  assert.equal(p.length, 8);
  assert.deepEqual(p[0], [range(5, 10), range(10, 15)]);
  assert.deepEqual(p[1], [range(10, 15), range(15, 20)]);
  assert.deepEqual(p[7]![1], range(45, 50));
});

test('long-range golden trace', () => {
  const p = pairs(run('long-range', base));
  assert.deepEqual(p[0], [[5, 6, 7, 8, 9], range(10, 15)]);
  assert.deepEqual(p[1], [[7, 8, 9, 13, 14], range(15, 20)]);
  assert.deepEqual(p[2], [[7, 8, 9, 18, 19], range(20, 25)]);
  assert.deepEqual(p[p.length - 1], [[7, 8, 9, 43, 44], range(45, 50)]);
});

test('hierarchy-2 golden trace', () => {
  assert.deepEqual(pairs(run('hierarchy-2', base)), [
    [[0, 2, 4, 7, 9], [10, 19, 29, 39, 49]],
    [[19, 29, 10, 9, 8], [11, 12, 13, 14, 15]],
    [[19, 29, 39, 15, 14], [16, 17, 18, 20, 21]],
    [[29, 39, 21, 20, 19], range(22, 27)],
    [[29, 39, 49, 26, 25], [27, 28, 30, 31, 32]],
    [[39, 49, 32, 31, 30], range(33, 38)],
    [[39, 49, 37, 36, 35], [38, 40, 41, 42, 43]],
    [[49, 43, 42, 41, 40], range(44, 49)],
  ]);
});

test('hierarchy-3 golden trace', () => {
  assert.deepEqual(pairs(run('hierarchy-3', base)), [
    [[0, 2, 4, 7, 9], [10, 19, 29, 39, 49]],
    [[19, 29, 39, 10, 9], [13, 16, 20, 23, 26]],
    [[39, 49, 29, 26, 23], [30, 33, 36, 40, 43]],
    [[49, 43, 40, 39, 36], [46]],
    [[13, 16, 19, 10, 9], [11, 12, 14, 15, 17]],
    [[19, 20, 23, 26, 17], [18, 21, 22, 24, 25]],
    [[29, 30, 33, 36, 26], [27, 28, 31, 32, 34]],
    [[36, 39, 40, 43, 34], [35, 37, 38, 41, 42]],
    [[46, 49, 43, 42, 41], [44, 45, 47, 48]],
  ]);
});

test('unconditional start golden traces (T=30, n_obs=0)', () => {
  const o = { videoLength: 30, numObs: 0, maxFrames: 10, stepSize: 5 };
  const a = pairs(run('autoreg', o));
  assert.deepEqual(a[0], [[], range(0, 10)]);
  assert.deepEqual(a[1], [range(5, 10), range(10, 15)]);
  assert.deepEqual(a[a.length - 1]![1], range(25, 30));
  assert.deepEqual(pairs(run('hierarchy-2', o)), [
    [[], [0, 3, 6, 9, 12, 16, 19, 22, 25, 29]],
    [[3, 6, 9, 0], [1, 2, 4, 5, 7]],
    [[9, 12, 16, 7, 6], [8, 10, 11, 13, 14]],
    [[16, 19, 22, 14, 13], [15, 17, 18, 20, 21]],
    [[25, 29, 22, 21, 20], [23, 24, 26, 27, 28]],
  ]);
});

interface TraceFixture {
  scheme: string;
  T: number;
  nObs: number;
  K: number;
  S: number;
  trace?: string;
  sha256?: string;
  stages?: number;
  error?: string;
}

const fixtures: TraceFixture[] = JSON.parse(
  fs.readFileSync(new URL('../fixtures/diffusion/scheme-traces.json', import.meta.url), 'utf8'),
);

const compact = (stages: Stage[]): string => stages.map((s) => `${s.obs[0]!.join(',')}/${s.latent[0]!.join(',')}`).join(';');

test(`${fixtures.length} traces match the Python model of the reference (make-scheme-traces.py)`, () => {
  let compared = 0;
  for (const f of fixtures) {
    const o = { videoLength: f.T, numObs: f.nObs, maxFrames: f.K, stepSize: f.S };
    const label = `${f.scheme} T=${f.T} n_obs=${f.nObs} K=${f.K} S=${f.S}`;
    if (f.error) {
      assert.throws(() => run(f.scheme, o), (e) => e instanceof FlexvidError, label);
      continue;
    }
    const text = compact(run(f.scheme, o));
    if (f.trace !== undefined) assert.equal(text, f.trace, label);
    else assert.equal(createHash('sha256').update(text).digest('hex'), f.sha256, label);
    compared++;
  }
  assert.ok(compared > 1000);
});

test('invariants over many (T, n_obs, K, S): obs ⊆ done, |obs|+|latent| ≤ K, every frame generated once', () => {
  let checked = 0;
  let skipped = 0;
  for (const name of ['autoreg', 'long-range', 'hierarchy-2', 'hierarchy-3', 'hierarchy-4', 'hierarchy-5']) {
    for (const T of [20, 37, 64, 100]) {
      for (const nObs of [0, 1, 5, 12]) {
        for (const K of [4, 7, 10, 16]) {
          for (const S of [2, 3, Math.floor(K / 2), K - 2]) {
            if (S < 2 || S > K - 2 || K > T || T - nObs < K) continue; // sane configurations
            // Hierarchy spacing `every` = ⌊x^e⌋ with x = (T − |obsFrames|)/(S − 1) is 0 when x < 1, and the
            // faithful walk then repeats a frame; such configurations are not sane either.
            if (name.startsWith('hierarchy') && T - (nObs === 0 ? K : nObs) < S - 1) continue;
            let stages: Stage[];
            try {
              stages = run(name, { videoLength: T, numObs: nObs, maxFrames: K, stepSize: S });
            } catch (e) {
              // Hierarchies with little context can hit the reference's own dead ends (crashes there too).
              assert.match((e as Error).message, /Cannot condition before and after|no frame left to generate/);
              skipped++;
              continue;
            }
            const done = new Set(range(0, nObs));
            const generated: number[] = [];
            for (const s of stages) {
              const obs = s.obs[0]!;
              const lat = s.latent[0]!;
              for (const i of obs) assert.ok(done.has(i), `${name} obs ${i} not done`);
              assert.ok(obs.length + lat.length <= K, `${name} stage too large`);
              assert.equal(new Set(lat).size, lat.length, `${name} duplicate latent`);
              for (const i of lat) {
                assert.ok(!done.has(i), `${name} T=${T} n=${nObs} K=${K} S=${S}: frame ${i} generated twice`);
                done.add(i);
                generated.push(i);
              }
            }
            assert.equal(done.size, T, `${name}: not all frames covered`);
            assert.deepEqual([...generated].sort((a, b) => a - b), range(nObs, T));
            checked++;
          }
        }
      }
    }
  }
  assert.ok(checked > 200 && skipped < checked / 5, `checked ${checked}, skipped ${skipped}`);
});

test('autoreg with K = S: faithful conditions on every done frame, corrected on none (§10.3 #34)', () => {
  const o = { videoLength: 20, numObs: 4, maxFrames: 4, stepSize: 4 };
  const faithful = pairs(run('autoreg', o));
  assert.deepEqual(faithful[0], [range(0, 4), range(4, 8)]);
  assert.deepEqual(faithful[1], [range(0, 8), range(8, 12)]);
  const corrected = pairs(run('autoreg', { ...o, corrected: true }));
  assert.deepEqual(corrected.map((p) => p[0]), [[], [], [], []]);
  assert.deepEqual(corrected.map((p) => p[1]), [range(4, 8), range(8, 12), range(12, 16), range(16, 20)]);
});

test('long-range with K − S = 1: faithful `[-0:]` conditions on all done frames; corrected on one', () => {
  const o = { videoLength: 12, numObs: 3, maxFrames: 4, stepSize: 3 };
  assert.deepEqual(pairs(run('long-range', o))[1]![0], range(0, 6));
  assert.deepEqual(pairs(run('long-range', { ...o, corrected: true }))[1]![0], [2]);
});

test('non-adaptive schemes replicate the lists for every video of the batch', () => {
  const stages = run('hierarchy-2', { ...base, batchSize: 3 });
  for (const s of stages) {
    assert.equal(s.obs.length, 3);
    assert.deepEqual(s.obs[1], s.obs[0]);
    assert.deepEqual(s.latent[2], s.latent[0]);
    assert.notEqual(s.obs[1], s.obs[0]); // independent copies
  }
});

test('optimal schedule overrides observed frames; missing steps warn and observe none', () => {
  const warnings: string[] = [];
  const stages = run('autoreg', { ...base, optimalSchedule: { '0': [0, 9], '2': [3] }, onWarning: (m) => warnings.push(m) });
  assert.deepEqual(stages[0]!.obs[0], [0, 9]);
  assert.deepEqual(stages[1]!.obs[0], []);
  assert.deepEqual(stages[2]!.obs[0], [3]);
  assert.deepEqual(stages[0]!.latent[0], range(10, 15));
  assert.equal(warnings.length, stages.length - 2);
  assert.throws(() => run('autoreg', { ...base, optimalSchedule: new Map([[0, [40]]]) }), /not generated yet/);
});

test('loadOptimalSchedule reads JSON and rejects malformed files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-opt-'));
  const good = path.join(dir, 'good.json');
  fs.writeFileSync(good, JSON.stringify({ 0: [1, 2], 3: [] }));
  assert.deepEqual(loadOptimalSchedule(good), { '0': [1, 2], '3': [] });
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ x: [1] }));
  assert.throws(() => loadOptimalSchedule(bad), FileFormatError);
  fs.writeFileSync(bad, '{');
  assert.throws(() => loadOptimalSchedule(bad), FileFormatError);
  fs.rmSync(dir, { recursive: true });
});

test('farthestPointSelection: hand-worked 1-D example', () => {
  const cands = [9, 8, 7, 3, 0];
  const emb = cands.map((c) => Float32Array.of(c));
  // start at 9; farthest from {9} is 0; farthest from {9, 0} is 3 (min dist 9 vs 7: 1, 8: 1 → 3 wins: min(36, 9) = 9).
  assert.deepEqual(farthestPointSelection(cands, emb, [9], 3), [9, 0, 3]);
  // ties → first candidate; never repeats, never more than the candidates
  assert.deepEqual(farthestPointSelection([1, 2], [Float32Array.of(0), Float32Array.of(0)], [1], 5), [1, 2]);
});

test('adaptive-autoreg: latent after the last done frame, per-video farthest-point observed frames', () => {
  const calls: [number, number[]][] = [];
  // Video 0 embeds frame i at i; video 1 at (i mod 3) so its choices differ.
  const embed = (b: number, frames: number[]): Float32Array[] => {
    calls.push([b, frames]);
    return frames.map((f) => Float32Array.of(b === 0 ? f : f % 3));
  };
  const stages = run('adaptive-autoreg', { videoLength: 20, numObs: 10, maxFrames: 6, stepSize: 3, batchSize: 2, embed });
  assert.deepEqual(stages[0]!.latent, [[10, 11, 12], [10, 11, 12]]);
  assert.deepEqual(stages[0]!.obs[0], [9, 0, 5]); // 9, farthest 0, then the midpoint-ish 5 (ties → first in 9…0 order)
  assert.equal(stages[0]!.obs[1]![0], 9);
  assert.equal(new Set(stages[0]!.obs[1]).size, 3);
  assert.deepEqual(calls[0], [0, range(0, 10).reverse()]);
  assert.throws(() => createSamplingScheme('adaptive-autoreg', base), OptionError);
});

test('adaptive-hierarchy-2: hierarchy latents, forced picks first', () => {
  const embed = (_b: number, frames: number[]): Float32Array[] => frames.map((f) => Float32Array.of(f));
  const stages = run('adaptive-hierarchy-2', { ...base, embed });
  const plain = run('hierarchy-2', base);
  assert.deepEqual(stages.map((s) => s.latent[0]), plain.map((s) => s.latent[0]));
  // Stage 1: latent 11…15; forced = before (10, 9) and after (19); then farthest from them.
  const obs1 = stages[1]!.obs[0]!;
  assert.deepEqual(obs1.slice(0, 3), [10, 9, 19]);
  assert.equal(obs1.length, 5);
  for (const s of stages) assert.ok(s.obs[0]!.length + s.latent[0]!.length <= 10);
});

test('scheme factory: names, display names and option errors', () => {
  const names = SCHEME_NAMES.map((n) => createSamplingScheme(n, { ...base, embed: () => [] }).displayName);
  assert.deepEqual(names, [
    'Autoregressive',
    'LongRangeAutoregressive',
    'Hierarchy-2',
    'Hierarchy-3',
    'Hierarchy-4',
    'Hierarchy-5',
    'AdaptiveAutoregressive',
    'AdaptiveHierarchy-2',
    'AdaptiveHierarchy-3',
  ]);
  for (const n of SCHEME_NAMES) assert.ok(!n.includes('_'));
  assert.throws(() => createSamplingScheme('hierarchy-9x', base), /Expected one of autoreg/);
  assert.throws(() => createSamplingScheme('autoreg', { ...base, stepSize: 11 }), /max_latent_frames/);
  assert.throws(() => createSamplingScheme('hierarchy-2', { ...base, stepSize: 1 }), OptionError);
  // default step size ⌊K/2⌋
  assert.deepEqual(run('autoreg', { videoLength: 20, numObs: 10, maxFrames: 8 })[0]!.latent[0], [10, 11, 12, 13]);
});
