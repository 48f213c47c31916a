import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, liveTensorCount, ones, randn, tensor, tidy, zeros, type Tensor } from '../../src/engine/index.ts';
import { GaussianDiffusion } from '../../src/diffusion/gaussian-diffusion.ts';
import { sampleDdim, sampleDdpm, sampleHeun, sampleWith } from '../../src/diffusion/samplers.ts';
import { parseSampler } from '../../src/diffusion/sampler-args.ts';

const close = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

test('q_sample and per-video coefficient lookup match the closed form', () => {
  const d = new GaussianDiffusion();
  tidy(() => {
    const x0 = ones([2, 1, 1, 1, 1]);
    const eps = ones([2, 1, 1, 1, 1]).mul(2);
    const xt = d.qSample(x0, [0, 999], eps).toArray();
    const ac = d.base.alphasCumprod;
    close(xt[0]!, Math.sqrt(ac[0]!) + 2 * Math.sqrt(1 - ac[0]!), 1e-6, 't=0');
    close(xt[1]!, Math.sqrt(ac[999]!) + 2 * Math.sqrt(1 - ac[999]!), 1e-6, 't=999');
    // model times are rescaled to the 1000-step scale
    assert.deepEqual(new GaussianDiffusion({ diffusionSteps: 500 }).modelTimesteps([0, 1, 499]).toArray(), [0, 2, 998]);
  });
});

test('training loss is the masked mean over all elements (masked entries count as zero)', () => {
  const d = new GaussianDiffusion();
  tidy(() => {
    const g = new Generator(0);
    const x = randn([2, 4, 3, 2, 2], g);
    const noise = randn([2, 4, 3, 2, 2], g);
    const zeroModel = (xt: Tensor) => xt.mul(0); // predicts ε = 0
    const latent = tensor([[0, 0, 1, 1], [1, 0, 0, 0]]);
    const evalM = tensor([[0, 0, 0, 1], [1, 0, 0, 0]]);
    const l = d.trainingLosses(zeroModel, x, [10, 500], { noise, latentMask: latent, evalMask: evalM });
    const n = noise.toArray();
    const per = (b: number, frames: number[]) => {
      let s = 0;
      for (const f of frames) for (let k = 0; k < 12; k++) s += n[b * 48 + f * 12 + k]! ** 2;
      return s / 48;
    };
    const mse = l.mse.toArray();
    close(mse[0]!, per(0, [2, 3]), 1e-5, 'mse0');
    close(mse[1]!, per(1, [0]), 1e-5, 'mse1');
    close(l.evalMse.toArray()[0]!, per(0, [3]), 1e-5, 'eval0');
    assert.deepEqual(l.loss.toArray(), mse);
  });
});

/** The ideal ε-predictor for data concentrated on one video x*: every sampler must return x*. */
function idealModel(d: GaussianDiffusion, xStar: Tensor) {
  const ac = d.base.alphasCumprod;
  const N = d.chain.originalNumSteps;
  return (xt: Tensor, modelT: Tensor) =>
    tidy(() => {
      const ts = modelT.toArray().map((v) => Math.round((v * N) / 1000));
      const sa = tensor(ts.map((t) => Math.sqrt(ac[t]!))).reshape([ts.length, 1, 1, 1, 1]);
      const s1 = tensor(ts.map((t) => Math.sqrt(1 - ac[t]!))).reshape([ts.length, 1, 1, 1, 1]);
      return xt.sub(xStar.mul(sa)).div(s1);
    });
}

test('samplers recover the single training video and never alter observed frames', () => {
  const d = new GaussianDiffusion();
  const before = liveTensorCount();
  tidy(() => {
    const g = new Generator(3);
    const xStar = randn([1, 4, 3, 4, 4], g).clamp(-1, 1);
    const x0 = randn([1, 4, 3, 4, 4], g); // observed content differs from x*
    const obs = tensor([[1, 0, 0, 1]]);
    const model = idealModel(d, xStar);
    const opts = { x0, obsMask: obs, generator: g, clipDenoised: true };
    for (const [name, out] of [
      ['heun', sampleHeun(d, model, parseSampler('heun-80-inf-0-1-1000-0.002-7-50') as never, opts)],
      ['heun2', sampleHeun(d, model, parseSampler('heun2-80-inf-0-1-1000-0.002-7-10') as never, opts)],
      ['ddim', sampleDdim(new GaussianDiffusion({ timestepRespacing: 'ddim20' }), idealModel(new GaussianDiffusion({ timestepRespacing: 'ddim20' }), xStar), opts)],
    ] as const) {
      const o = out.toArray();
      const xs = xStar.toArray();
      const x0a = x0.toArray();
      for (let f = 0; f < 4; f++) {
        for (let k = 0; k < 48; k++) {
          const i = f * 48 + k;
          if (f === 0 || f === 3) assert.equal(o[i], x0a[i], `${name}: observed frame ${f} altered`);
          else close(o[i]!, xs[i]!, 2e-3, `${name} latent frame ${f}`);
        }
      }
    }
  });
  assert.equal(liveTensorCount(), before);
});

test('seeded sampling is reproducible; ddpm runs the whole respaced chain', () => {
  const d = new GaussianDiffusion({ timestepRespacing: '10' });
  tidy(() => {
    const x0 = zeros([1, 2, 3, 4, 4]);
    const model = (xt: Tensor) => xt.mul(0.1);
    let steps = 0;
    const a = sampleDdpm(d, model, { x0, obsMask: tensor([[1, 0]]), generator: new Generator(7), onStep: () => steps++ }).toArray();
    const b = sampleWith(parseSampler('ddpm'), d, model, { x0, obsMask: tensor([[1, 0]]), generator: new Generator(7) }).toArray();
    assert.equal(steps, 10);
    assert.deepEqual(a, b);
  });
});

test('heun: the reference discards its warm-up call, so it is skipped; with warmupCall the same sample from one more call', () => {
  const d = new GaussianDiffusion();
  tidy(() => {
    const x0 = randn([1, 3, 3, 4, 4], new Generator(2));
    const counted = () => {
      const calls: number[] = [];
      return { calls, model: (xt: Tensor, t: Tensor) => (calls.push(t.toFloat32Array()[0]!), xt.mul(0.3).tanh()) };
    };
    const args = parseSampler('heun-80-inf-0-1-1000-0.002-7-50') as never;
    const a = counted();
    const b = counted();
    const sa = sampleHeun(d, a.model, args, { x0, obsMask: tensor([[1, 0, 0]]), generator: new Generator(9) }).toArray();
    const sb = sampleHeun(d, b.model, args, { x0, obsMask: tensor([[1, 0, 0]]), generator: new Generator(9), warmupCall: true }).toArray();
    assert.equal(a.calls.length, 46); // one call per step: 47 golden timesteps, 46 steps (§5.7)
    assert.equal(b.calls.length, 47);
    assert.equal(b.calls[0], 825); // the warm-up call at t_0 …
    assert.deepEqual(b.calls.slice(1), a.calls); // … then the same calls
    assert.deepEqual(sa, sb);
  });
});
