/**
 * One rank of bench/scale.ts: the Balls training step (forward + backward + gradient all-reduce +
 * AdamW) on this rank's share of the global batch, timed per step after a warm-up. Started by
 * the launcher with RANK / WORLD_SIZE / MASTER_* set (or alone). Rank 0 writes
 * {"ms": [...], "allreduceMs": [...]} to $SCALE_OUT.
 */
import * as fs from 'node:fs';
import * as E from '../../src/engine/index.ts';
import { averageGradients, barrier, broadcastParameters, destroyDistributed, initDistributed, launchEnv, rank, worldSize } from '../../src/engine/distributed.ts';
import { AdamW, setInitSeed } from '../../src/nn/index.ts';
import { UNetVideoModel } from '../../src/model/unet.ts';
import { GaussianDiffusion } from '../../src/diffusion/gaussian-diffusion.ts';

const CONFIGS = {
  balls: { imageSize: 32, modelChannels: 64, numResBlocks: 1, T: 10, nObs: 5 },
  small: { imageSize: 32, modelChannels: 32, numResBlocks: 1, T: 4, nObs: 2 },
} as const;

const cfg = CONFIGS[(process.env.SCALE_CONFIG ?? 'balls') as keyof typeof CONFIGS];
const globalBatch = Number(process.env.SCALE_BATCH ?? 4);
const steps = Number(process.env.SCALE_STEPS ?? 5);
const wantCuda = process.env.SCALE_DEVICE === 'cuda';
const env = launchEnv();
const device = wantCuda ? `cuda:${env?.localRank ?? 0}` : 'cpu';
if (env) initDistributed({ rank: env.rank, worldSize: env.worldSize, masterAddr: env.masterAddr, masterPort: env.masterPort, backend: wantCuda ? 'nccl' : 'gloo', timeoutMs: 600_000 });
const B = globalBatch / worldSize();
setInitSeed(0);
const model = new UNetVideoModel({ imageSize: cfg.imageSize, modelChannels: cfg.modelChannels, numResBlocks: cfg.numResBlocks }, { device });
broadcastParameters(model);
const diffusion = new GaussianDiffusion();
const opt = new AdamW(model, { lr: 1e-4 });
const g = new E.Generator(1 + rank(), wantCuda ? device : 'cpu');
const x0 = E.keep(E.randn([B, cfg.T, 3, cfg.imageSize, cfg.imageSize], g, { device }));
const obs = E.keep(E.tensor(Float32Array.from({ length: B * cfg.T }, (_, i) => (i % cfg.T < cfg.nObs ? 1 : 0)), { shape: [B, cfg.T], device }));
const lat = E.keep(obs.rsub(1));
const fi = E.keep(E.arange(0, cfg.T, 1, { dtype: 'float32', device }).unsqueeze(0).expand([B, cfg.T]).contiguous());
const modelFn = (x: E.Tensor, ts: E.Tensor) => model.forward({ x, x0, timesteps: ts, frameIndices: fi, obsMask: obs, latentMask: lat });
let reduceMs = 0;
let waitMs = 0;
const step = () =>
  E.tidy(() => {
    const t = Array.from({ length: B }, (_, b) => (137 * b + 11) % 1000);
    const noise = E.randn(x0.shape, g, { device });
    const l = diffusion.trainingLosses(modelFn, x0, t, { noise, latentMask: lat, evalMask: lat });
    l.loss.mean().backward();
    const w0 = performance.now();
    barrier(); // separates waiting for the slower rank from the all-reduce itself
    const r0 = performance.now();
    waitMs = r0 - w0;
    averageGradients(model);
    reduceMs = performance.now() - r0;
    opt.step();
    opt.zeroGrad();
    if (wantCuda) l.loss.sum().item(); // wait for the device
  });
step(); // warm-up
const ms: number[] = [];
const allreduceMs: number[] = [];
const skewMs: number[] = [];
for (let s = 0; s < steps; s++) {
  barrier();
  const t0 = performance.now();
  step();
  ms.push(performance.now() - t0);
  allreduceMs.push(reduceMs);
  skewMs.push(waitMs);
}
if (rank() === 0 && process.env.SCALE_OUT) fs.writeFileSync(process.env.SCALE_OUT, JSON.stringify({ ms, allreduceMs, skewMs, params: model.numParameters() }));
for (const t of [x0, obs, lat, fi]) t.dispose();
opt.dispose();
model.dispose();
destroyDistributed();
