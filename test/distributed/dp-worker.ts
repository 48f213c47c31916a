/**
 * Worker of the data-parallel equality test (two-process.test.ts): a few steps of a tiny video
 * U-Net on fixed global batches, once with plain SGD and once with AdamW. With WORLD_SIZE=N
 * (and RANK, MASTER_PORT) each process takes its contiguous slice of every global batch and the
 * gradients are averaged over c10d; without, one process takes the whole batch. Writes the final
 * parameters (float32, in `parameters()` order) to `$OUT.<sgd|adamw>.rank<r>`.
 */
import * as fs from 'node:fs';
import { Generator, noGrad, randn, tensor, tidy } from '../../src/engine/index.ts';
import { averageGradients, broadcastParameters, destroyDistributed, initDistributed, launchEnv, rank, worldSize } from '../../src/engine/distributed.ts';
import { AdamW, setInitSeed } from '../../src/nn/index.ts';
import { UNetVideoModel } from '../../src/model/unet.ts';

const env = launchEnv();
if (env) initDistributed({ rank: env.rank, worldSize: env.worldSize, masterAddr: env.masterAddr, masterPort: env.masterPort, timeoutMs: 120_000 });
const out = process.env.OUT;
if (!out) throw new Error('OUT not set');
const B = 4;
const steps = 3;
const [T, C, H] = [4, 3, 32];
const r = rank();
const local = B / worldSize();

for (const optimizer of ['sgd', 'adamw'] as const) {
  // Each rank initialises with its own seed: the broadcast from rank 0 must make them equal.
  setInitSeed(100 + r);
  const model = new UNetVideoModel({ imageSize: H, modelChannels: 32, channelMult: [1, 2], numResBlocks: 1, numHeads: 2, attentionResolutions: '16' });
  broadcastParameters(model);
  const opt = new AdamW(model, { lr: 1e-4, weightDecay: 0.01 });
  const gen = new Generator(7); // the same global data on every rank
  for (let s = 0; s < steps; s++) {
    tidy(() => {
      const x = randn([B, T, C, H, H], gen).narrow(0, r * local, local);
      const noise = randn([B, T, C, H, H], gen).narrow(0, r * local, local);
      const ts = tensor(Float32Array.from({ length: local }, (_, b) => 100 + 37 * (r * local + b) + 11 * s));
      const obs = tensor(Float32Array.from({ length: local * T }, (_, k) => (k % T < 2 ? 1 : 0)), { shape: [local, T] });
      const fi = tensor(Float32Array.from({ length: local * T }, (_, k) => k % T), { shape: [local, T] });
      const xt = x.mul(0.8).add(noise.mul(0.6));
      const pred = model.forward({ x: xt, x0: x, timesteps: ts, frameIndices: fi, obsMask: obs, latentMask: obs.rsub(1) });
      pred.sub(noise).square().mean().backward(); // mean over the local batch
      averageGradients(model); // → gradient of the global-batch mean
      if (optimizer === 'adamw') {
        opt.step();
      } else {
        noGrad(() => {
          for (const p of model.parameters()) {
            const g = p.grad;
            if (g) p.sub_(g, 0.05);
            g?.dispose();
          }
        });
      }
      opt.zeroGrad();
    });
  }
  const parts = model.parameters().map((p) => p.detach().reshape([-1]).toFloat32Array());
  const flat = new Float32Array(parts.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of parts) {
    flat.set(a, off);
    off += a.length;
  }
  fs.writeFileSync(`${out}.${optimizer}.rank${r}`, Buffer.from(flat.buffer));
  opt.dispose();
  model.dispose();
}
destroyDistributed();
