/**
 * Sampling benchmark (issue 6): time to sample
 * - one 45-frame Balls video (32², ch 64, 1 res-block) from 5 observed frames with hierarchy-2
 *   and the default Heun string (K = 10, S = 5);
 * - one 300-frame 64² video batch of 4 (ch 128, 1 res-block, K = 20, S = 10, autoreg; 36 observed)
 *   — long: pass `--cases balls` to skip it;
 * and I3D feature throughput (see `npm run bench -- sample-i3d` for details).
 *
 * Usage: npm run bench -- sample [--cases balls,maze,i3d] [--sampler heun-80-inf-0-1-1000-0.002-7-50]
 * Random weights: the cost of sampling does not depend on them.
 */
import * as E from '../src/engine/index.ts';
import { setInitSeed } from '../src/nn/index.ts';
import { UNetVideoModel } from '../src/model/unet.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { DEFAULT_SAMPLER } from '../src/diffusion/sampler-args.ts';
import { sampleVideo, countStages } from '../src/sampling/pipeline.ts';
import { I3D } from '../src/metrics/i3d.ts';

function flag(args: string[], name: string, dflt: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
}

function longVideo(name: string, cfg: { imageSize: number; modelChannels: number; B: number; T: number; nObs: number; K: number; scheme: string }, sampler: string) {
  setInitSeed(0);
  const model = new UNetVideoModel({ imageSize: cfg.imageSize, modelChannels: cfg.modelChannels, numResBlocks: 1 });
  model.eval();
  // Zero-initialised output layers would make sampling trivially cheap to reason about but not to
  // run; random weights everywhere keep the arithmetic realistic.
  E.noGrad(() => {
    for (const p of model.parameters()) if (p.ndim > 1) p.normal_(0, 0.02, new E.Generator(1));
  });
  const diffusion = new GaussianDiffusion();
  const stages = countStages({ scheme: cfg.scheme, T: cfg.T, nObs: cfg.nObs, maxFrames: cfg.K });
  const t0 = performance.now();
  E.tidy(() => {
    const videos = E.randn([cfg.B, cfg.T, 3, cfg.imageSize, cfg.imageSize], new E.Generator(0)).clamp(-1, 1);
    sampleVideo({ model, diffusion, videos, nObs: cfg.nObs, maxFrames: cfg.K, scheme: cfg.scheme, sampler, generator: new E.Generator(2) });
  });
  const ms = performance.now() - t0;
  model.dispose();
  return { case: name, ms: Math.round(ms), stages, seconds_per_stage: Number((ms / 1000 / stages).toFixed(2)) };
}

export async function run(args: string[]): Promise<void> {
  const cases = flag(args, 'cases', 'balls,maze,i3d').split(',');
  const sampler = flag(args, 'sampler', DEFAULT_SAMPLER);
  const rows: Record<string, number | string>[] = [];
  if (cases.includes('balls')) {
    rows.push(longVideo('balls 45 frames from 5, hierarchy-2, 1 video', { imageSize: 32, modelChannels: 64, B: 1, T: 50, nObs: 5, K: 10, scheme: 'hierarchy-2' }, sampler));
    process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`);
  }
  if (cases.includes('maze')) {
    rows.push(longVideo('64² 300 frames, autoreg, batch 4', { imageSize: 64, modelChannels: 128, B: 4, T: 300, nObs: 36, K: 20, scheme: 'autoreg' }, sampler));
    process.stderr.write(`${JSON.stringify(rows.at(-1))}\n`);
  }
  if (cases.includes('i3d')) {
    const net = I3D.random(0);
    const B = 4;
    E.tidy(() => {
      const videos = E.randint(0, 256, [B, 16, 64, 64, 3], new E.Generator(1), { dtype: 'uint8' });
      net.features(videos, { batchSize: B }); // warm-up (folds batch norms)
      const t0 = performance.now();
      net.features(videos, { batchSize: B });
      const ms = performance.now() - t0;
      rows.push({ case: 'I3D features, 16-frame 64² clips, batch 4', ms: Math.round(ms), videos_per_s: Number(((1000 * B) / ms).toFixed(3)) });
    });
    net.dispose?.();
  }
  console.log(`sample benchmark — ${E.getNumThreads()} thread(s), sampler ${sampler}`);
  for (const r of rows) console.log(`${String(r.case).padEnd(48)} ${String(r.ms).padStart(10)} ms  ${r.seconds_per_stage !== undefined ? `${r.seconds_per_stage} s/stage (${r.stages} stages)` : `${r.videos_per_s} videos/s`}`);
  console.log(JSON.stringify({ bench: 'sample', threads: E.getNumThreads(), results: rows }));
}
