import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, liveTensorCount, rand, tensor, tidy, type Tensor } from '../../src/engine/index.ts';
import { GaussianDiffusion } from '../../src/diffusion/gaussian-diffusion.ts';
import { collectStages, createSamplingScheme, type Stage } from '../../src/sampling/schemes.ts';
import { countStages, noiseSeed, planStages, sampleVideo, samplesToU8, stageLayout, type VideoDenoiser } from '../../src/sampling/pipeline.ts';
import { floatToU8 } from '../../src/media/frames.ts';
import { UNetVideoModel } from '../../src/model/unet.ts';

const B = 2;
const T = 12;
const C = 3;
const S = 4; // image side
/** Value the fake model predicts for frame f of video b (a constant image). */
const target = (b: number, f: number) => -0.9 + (1.6 * f) / T + 0.05 * b;

interface Call {
  frameIndices: number[][];
  obsMask: number[][];
  latentMask: number[][];
  /** x0[b][j] = first pixel of slot j. */
  x0: number[][];
}

/**
 * A model that predicts x0 = target(b, frame) for every slot (used with predict_xstart, so the
 * DDPM chain ends exactly on it) and records its inputs.
 */
function fakeModel(calls: Call[]): VideoDenoiser {
  return {
    forward(inp) {
      const [b, k] = inp.x.shape as [number, number];
      const fi = inp.frameIndices.toArray();
      const rows = (t: Tensor) => {
        const a = t.toArray();
        return Array.from({ length: b }, (_, i) => a.slice(i * k, (i + 1) * k));
      };
      const per = C * S * S;
      const x0 = inp.x0.toFloat32Array();
      calls.push({
        frameIndices: rows(inp.frameIndices),
        obsMask: rows(inp.obsMask),
        latentMask: rows(inp.latentMask),
        x0: Array.from({ length: b }, (_, i) => Array.from({ length: k }, (_, j) => x0[(i * k + j) * per]!)),
      });
      const out = new Float32Array(b * k * per);
      for (let i = 0; i < b; i++) for (let j = 0; j < k; j++) out.fill(target(i, fi[i * k + j]!), (i * k + j) * per, (i * k + j + 1) * per);
      return tensor(out, { shape: [b, k, C, S, S] });
    },
  };
}

function groundTruth(): Tensor {
  return tidy(() => rand([B, T, C, S, S], new Generator(7)).mul(2).sub(1));
}

test('sampleVideo: stage inputs are [obs, latent] positions, masks and current samples; latents written back (REFERENCE_SPEC §7.2)', () => {
  const before = liveTensorCount();
  const diffusion = new GaussianDiffusion({ predictXstart: true, timestepRespacing: '3' });
  for (const scheme of ['autoreg', 'hierarchy-2', 'long-range']) {
    const calls: Call[] = [];
    const videos = groundTruth();
    const gt = videos.toFloat32Array();
    const { samples, stages } = sampleVideo({ model: fakeModel(calls), diffusion, videos, nObs: 3, maxFrames: 6, stepSize: 3, scheme, sampler: 'ddpm', generator: new Generator(1) });
    const want = collectStages(createSamplingScheme(scheme, { videoLength: T, numObs: 3, maxFrames: 6, stepSize: 3, batchSize: B }));
    assert.deepEqual(stages, want, scheme);
    assert.deepEqual(samples.shape, [B, T, C, S, S]);
    assert.equal(calls.length, 3 * stages.length); // ddpm: one call per respaced step
    const got = samples.toFloat32Array();
    const frame = T * 0 + C * S * S;
    // Observed frames are the ground truth, bit for bit; generated ones the model's x0.
    for (let b = 0; b < B; b++) {
      for (let f = 0; f < T; f++) {
        const off = (b * T + f) * frame;
        if (f < 3) assert.deepEqual(got.subarray(off, off + frame), gt.subarray(off, off + frame), `${scheme} video ${b} frame ${f}`);
        else for (let p = 0; p < frame; p++) assert.ok(Math.abs(got[off + p]! - target(b, f)) < 1e-5, `${scheme} video ${b} frame ${f}: ${got[off + p]} vs ${target(b, f)}`);
      }
    }
    // Each stage's calls see [obs, latent] indices, the prefix masks and the samples so far.
    const done = new Set([0, 1, 2]);
    stages.forEach((st, s) => {
      const c = calls[3 * s]!;
      for (let b = 0; b < B; b++) {
        assert.deepEqual(c.frameIndices[b], [...st.obs[b]!, ...st.latent[b]!]);
        const nObs = st.obs[b]!.length;
        assert.deepEqual(c.obsMask[b], c.frameIndices[b]!.map((_, j) => (j < nObs ? 1 : 0)));
        assert.deepEqual(c.latentMask[b], c.frameIndices[b]!.map((_, j) => (j < nObs ? 0 : 1)));
        st.obs[b]!.forEach((f, j) => {
          assert.ok(done.has(f));
          const expected = f < 3 ? gt[(b * T + f) * frame]! : target(b, f);
          assert.ok(Math.abs(c.x0[b]![j]! - expected) < 1e-5, `${scheme} stage ${s} obs frame ${f}`);
        });
      }
      for (const f of st.latent[0]!) done.add(f);
    });
    videos.dispose();
    samples.dispose();
  }
  assert.equal(liveTensorCount(), before);
});

test('sampleVideo with the U-Net: deterministic given the generator, observed frames exact, finite output', () => {
  const model = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2, channelMult: [1, 2], attentionResolutions: '' });
  const diffusion = new GaussianDiffusion({ timestepRespacing: '2' });
  const videos = tidy(() => rand([1, 6, 3, 32, 32], new Generator(3)).mul(2).sub(1));
  const run = (seed: number) =>
    sampleVideo({ model, diffusion, videos, nObs: 2, maxFrames: 6, stepSize: 4, scheme: 'autoreg', sampler: 'ddpm', generator: new Generator(seed) }).samples;
  const a = run(5);
  const b = run(5);
  const c = run(6);
  const av = a.toFloat32Array();
  assert.deepEqual(av, b.toFloat32Array());
  assert.notDeepEqual(av, c.toFloat32Array());
  assert.ok(av.every((v) => Number.isFinite(v) && v >= -1.0001 && v <= 1.0001));
  const gt = videos.toFloat32Array();
  const n = 2 * 3 * 32 * 32;
  assert.deepEqual(av.subarray(0, n), gt.subarray(0, n));
  for (const t of [a, b, c, videos]) t.dispose();
  model.dispose();
});

test('adaptive schemes need an embedder; with one the observed frames are chosen per video', () => {
  const diffusion = new GaussianDiffusion({ predictXstart: true, timestepRespacing: '2' });
  const videos = groundTruth();
  assert.throws(
    () => sampleVideo({ model: fakeModel([]), diffusion, videos, nObs: 4, maxFrames: 6, stepSize: 3, scheme: 'adaptive-autoreg', sampler: 'ddpm' }),
    /embed/i,
  );
  // Embedding = mean pixel value of the frame: farthest-point selection over frame means.
  const embedFrames = (frames: Tensor) => {
    const m = frames.mean([1, 2, 3]).toFloat32Array();
    return Array.from(m, (v) => Float32Array.of(v));
  };
  const calls: Call[] = [];
  const { samples, stages } = sampleVideo({ model: fakeModel(calls), diffusion, videos, nObs: 4, maxFrames: 6, stepSize: 3, scheme: 'adaptive-autoreg', sampler: 'ddpm', embedFrames });
  assert.equal(stages.length, countStages({ scheme: 'adaptive-autoreg', T, nObs: 4, maxFrames: 6, stepSize: 3 }));
  for (const st of stages) for (let b = 0; b < B; b++) {
    assert.equal(st.obs[b]!.length, 3);
    assert.equal(st.obs[b]![0], Math.min(...st.latent[b]!) - 1); // the most recent frame is forced first
  }
  samples.dispose();
  videos.dispose();
});

test('stageLayout rejects unequal per-video counts and out-of-range frames', () => {
  const ok: Stage = { step: 0, obs: [[0, 1], [1, 0]], latent: [[2], [3]] };
  assert.deepEqual(stageLayout(ok, 4), { frameIndices: [[0, 1, 2], [1, 0, 3]], nObs: 2, nLatent: 1 });
  assert.throws(() => stageLayout({ step: 1, obs: [[0], [0, 1]], latent: [[2], [3]] }, 4), /equal counts/);
  assert.throws(() => stageLayout({ step: 2, obs: [[0]], latent: [[4]] }, 4), /outside/);
});

test('planStages and countStages match the schemes (golden hierarchy-2, §7.3)', () => {
  const st = planStages({ scheme: 'hierarchy-2', T: 50, nObs: 10, maxFrames: 10, stepSize: 5 });
  assert.equal(st.length, 8);
  assert.deepEqual(st[0]!.obs[0], [0, 2, 4, 7, 9]);
  assert.deepEqual(st[0]!.latent[0], [10, 19, 29, 39, 49]);
  assert.equal(countStages({ scheme: 'adaptive-hierarchy-2', T: 50, nObs: 10, maxFrames: 10, stepSize: 5 }), 8);
  assert.equal(countStages({ scheme: 'autoreg', T: 50, nObs: 10, maxFrames: 10, stepSize: 5 }), 8);
  assert.throws(() => planStages({ scheme: 'adaptive-autoreg', T: 50, nObs: 10, maxFrames: 10 }), /embed/i);
});

test('samplesToU8 is floor((clamp(x,-1,1)+1)/2·255) per video', () => {
  const vals = [-2, -1, -0.99999, -0.5, 0, 1 / 255, 0.3, 0.99, 1, 3, 2 / 255 - 1, 254 / 255 * 2 - 1];
  const x = tensor(Float32Array.from([...vals, ...vals.map((v) => -v)]), { shape: [2, vals.length, 1, 1, 1] });
  const u = samplesToU8(x);
  assert.equal(u.length, 2);
  assert.deepEqual(Array.from(u[0]!), vals.map(floatToU8));
  assert.deepEqual(Array.from(u[1]!), vals.map((v) => floatToU8(-v)));
  x.dispose();
});

test('noiseSeed depends on (indices, sample_idx, seed) and is a safe integer', () => {
  const a = noiseSeed([0, 1], 0);
  assert.equal(a, noiseSeed([0, 1], 0));
  assert.notEqual(a, noiseSeed([0, 1], 1));
  assert.notEqual(a, noiseSeed([1, 2], 0));
  assert.notEqual(a, noiseSeed([0, 1], 0, 1));
  for (const s of [a, noiseSeed([5], 3, 9)]) assert.ok(Number.isSafeInteger(s) && s >= 0);
});
