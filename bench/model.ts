/**
 * Model benchmark (issue 4): a training step (forward + backward + AdamW, autoregressive masks)
 * and one sampling stage (the default Heun string: 46 steps, 10 frames with 5 observed / 20 with
 * 10; the model finishes only the latent frames, see UNetInputs.outputMask) for the Balls config (32², ch 64, 1 res-block, batch 2 × 10 frames) and
 * the Maze config (64², ch 128, 1 res-block, 1 video × 20 frames). When PyTorch is importable the
 * same computations run in bench/pytorch/model_peer.py (the spec-derived U-Net), alternating with
 * ours so both see the same load; the ratio is the median of per-repetition ratios.
 *
 * Usage: npm run bench -- model [--cases balls-train,balls-sample,maze-train,maze-sample] [--reps 3] [--warmup 3] [--threads 2] [--no-pytorch]
 *        [--amp bf16]                     (forward passes under bf16 autocast, ours and the peer's)
 *        [--profile] [--profile-shapes]   (print an operator profile of one step per case, to stderr)
 *        [--per-rep]                      (print every repetition's times and ratio, to stderr)
 *        [--peer-layout spec|reference]   (the peer's attention: einsums written from the spec (default), or
 *                                          the reference implementation's operation order; equal results)
 *        [--same-work]                    (do exactly the reference's work: every frame through the whole
 *                                          U-Net and the Heun sampler's discarded warm-up call)
 *        [--videos N]                     (videos per sampling stage, default 1; `flexvid sample` and the
 *                                          reference's sampling script batch 8)
 *        [--peer-malloc flexvid|default]  (the peer's glibc allocator: flexvid's settings (default; see
 *                                          FLEXVID_MALLOC_ENV — its fastest, steadiest timing) or glibc's own)
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as E from '../src/engine/index.ts';
import { AdamW, setInitSeed } from '../src/nn/index.ts';
import { UNetVideoModel } from '../src/model/unet.ts';
import { forwardGflopPerFrame, frameTailGflopPerFrame } from '../src/model/flops.ts';
import { GaussianDiffusion } from '../src/diffusion/gaussian-diffusion.ts';
import { sampleHeun } from '../src/diffusion/samplers.ts';
import { parseSampler, DEFAULT_SAMPLER, type HeunSamplerArgs } from '../src/diffusion/sampler-args.ts';
import { planHeun } from '../src/diffusion/heun-plan.ts';
import { FLEXVID_MALLOC_ENV, findPython, median, Peer } from './lib/peer.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const PEAK_GFLOPS_PER_CORE = 190; // 2 AVX-512 FMA units × 16 fp32 lanes × 2 × ~3 GHz (issue 4's figure: ≈380 for 2 cores)

const CONFIGS = {
  balls: { imageSize: 32, modelChannels: 64, numResBlocks: 1, B: 2, T: 10, nObs: 5 },
  maze: { imageSize: 64, modelChannels: 128, numResBlocks: 1, B: 1, T: 20, nObs: 10 },
} as const;

interface Bench {
  flops: number;
  step(): void;
  dispose(): void;
}

/**
 * `sameWork`: the reference's exact work — every frame to the end, and the Heun sampler's discarded
 * warm-up call. Exported for in-process A/B scripts (build a case, alternate a switch step by step).
 */
export function setup(caseName: string, amp: 'off' | 'bf16', sameWork: boolean, videos: number): Bench {
  const [name, kind] = caseName.split('-') as ['balls' | 'maze', 'train' | 'sample'];
  const c = CONFIGS[name];
  setInitSeed(0);
  const model = new UNetVideoModel({ imageSize: c.imageSize, modelChannels: c.modelChannels, numResBlocks: c.numResBlocks });
  const diffusion = new GaussianDiffusion();
  const B = kind === 'train' ? c.B : videos;
  const g = new E.Generator(0);
  const keepT = (t: E.Tensor) => E.keep(t);
  const x0 = keepT(E.randn([B, c.T, 3, c.imageSize, c.imageSize], g));
  const obsArr = new Float32Array(B * c.T).map((_, i) => (i % c.T < c.nObs ? 1 : 0));
  const obs = keepT(E.tensor(obsArr, { shape: [B, c.T] }));
  const lat = keepT(obs.rsub(1));
  const fi = keepT(E.arange(0, c.T, 1, { dtype: 'float32' }).unsqueeze(0).expand([B, c.T]).contiguous());
  // As the training loop and the sampling pipeline do: outputs only for the frames losses and samplers read.
  const outputMask = sameWork ? undefined : lat;
  const modelFn = (x: E.Tensor, ts: E.Tensor) => model.forward({ x, x0, timesteps: ts, frameIndices: fi, obsMask: obs, latentMask: lat, outputMask });
  // FLOPs actually run: the frame-independent tail only for the latent frames unless sameWork.
  const skipped = sameWork ? 0 : B * c.nObs;
  const fwdFlops = (forwardGflopPerFrame(model.config, c.T) * B * c.T - frameTailGflopPerFrame(model.config, c.T) * skipped) * 1e9;
  const cleanup = () => {
    for (const t of [x0, obs, lat, fi]) t.dispose();
  };
  if (kind === 'train') {
    const opt = new AdamW(model, { lr: 1e-4, weightDecay: 0 });
    return {
      flops: 3 * fwdFlops,
      step() {
        E.tidy(() => {
          const t = Array.from({ length: B }, () => Math.floor(Math.random() * 1000));
          const noise = E.randn(x0.shape, g);
          const l = E.withAmp(amp, 'cpu', () => diffusion.trainingLosses(modelFn, x0, t, { noise, latentMask: lat, evalMask: lat }));
          l.loss.mean().backward();
          opt.step();
          opt.zeroGrad();
        });
      },
      dispose() {
        opt.dispose();
        model.dispose();
        cleanup();
      },
    };
  }
  model.eval();
  const args = parseSampler(DEFAULT_SAMPLER) as HeunSamplerArgs;
  return {
    flops: (planHeun(diffusion.schedule.alphasCumprod, args).steps.length + (sameWork ? 1 : 0)) * fwdFlops, // one model call per step
    step() {
      E.tidy(() => E.inferenceMode(() => E.withAmp(amp, 'cpu', () => sampleHeun(diffusion, modelFn, args, { x0, obsMask: obs, generator: g, warmupCall: sameWork }))));
    },
    dispose() {
      model.dispose();
      cleanup();
    },
  };
}

function flag(args: string[], name: string, dflt: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
}

export async function run(args: string[]): Promise<void> {
  const cases = flag(args, 'cases', 'balls-train,balls-sample,maze-train,maze-sample').split(',');
  const reps = Number(flag(args, 'reps', '3'));
  const warmup = Number(flag(args, 'warmup', '3'));
  const threads = Number(flag(args, 'threads', '2'));
  const amp = flag(args, 'amp', 'off');
  if (amp !== 'off' && amp !== 'bf16') throw new Error(`--amp: expected off or bf16, got ${amp}`);
  const videos = Number(flag(args, 'videos', '1'));
  if (!Number.isInteger(videos) || videos < 1) throw new Error(`--videos: expected a positive integer, got ${flag(args, 'videos', '1')}`);
  const peerLayout = flag(args, 'peer-layout', 'spec');
  if (peerLayout !== 'spec' && peerLayout !== 'reference') throw new Error(`--peer-layout: expected spec or reference, got ${peerLayout}`);
  const peerMalloc = flag(args, 'peer-malloc', 'flexvid');
  if (peerMalloc !== 'flexvid' && peerMalloc !== 'default') throw new Error(`--peer-malloc: expected flexvid or default, got ${peerMalloc}`);
  E.setNumThreads(threads);
  const python = args.includes('--no-pytorch') ? null : findPython();
  // The reference's stage: one model call per Heun step plus its discarded warm-up call.
  const referenceCalls = planHeun(new GaussianDiffusion().schedule.alphasCumprod, parseSampler(DEFAULT_SAMPLER) as HeunSamplerArgs).steps.length + 1;
  const peerArgs = ['--amp', amp, '--layout', peerLayout, '--sample-calls', String(referenceCalls), '--videos', String(videos)];
  const peer = python ? new Peer(python, path.join(here, 'pytorch', 'model_peer.py'), threads, peerArgs, peerMalloc === 'flexvid' ? FLEXVID_MALLOC_ENV : {}) : null;
  const torchInfo = peer ? await peer.next() : null;
  const rows: { case: string; ms: number; gflops: number; pct_peak: number; pytorch_ms?: number; ratio_vs_pytorch?: number }[] = [];
  for (const name of cases) {
    const b = setup(name, amp, args.includes('--same-work'), videos);
    if (peer) await peer.request({ cmd: 'setup', case: name });
    // Warm-up: the first steps grow the heap to its working size (page faults) on both sides.
    for (let w = 0; w < warmup; w++) b.step();
    if (args.includes('--profile') || args.includes('--profile-shapes')) {
      b.step();
      const p = E.profile(() => b.step(), { shapes: args.includes('--profile-shapes') });
      process.stderr.write(`${name} profile:\n${E.formatProfile(p.rows, p.wallMs, 40)}\n`);
    }
    if (peer) for (let w = 0; w < warmup; w++) await peer.request({ cmd: 'step' });
    const ours: number[] = [];
    const theirs: number[] = [];
    const ratios: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      b.step();
      const ms = performance.now() - t0;
      ours.push(ms);
      if (peer) {
        const p = (await peer.request({ cmd: 'step' })) as { ms: number };
        theirs.push(p.ms);
        ratios.push(ms / p.ms);
        if (args.includes('--per-rep')) process.stderr.write(`${name} rep ${r + 1}: ${ms.toFixed(0)} / ${p.ms.toFixed(0)} ms = ${(ms / p.ms).toFixed(3)}\n`);
      }
    }
    b.dispose();
    const ms = median(ours);
    const gflops = b.flops / 1e6 / ms;
    const row: (typeof rows)[number] = { case: `${name}${name.endsWith('-sample') && videos !== 1 ? `-x${videos}` : ''}${amp === 'off' ? '' : `-${amp}`}${args.includes('--same-work') ? '-same-work' : ''}`, ms: Math.round(ms), gflops: Number(gflops.toFixed(1)), pct_peak: Number(((100 * gflops) / (PEAK_GFLOPS_PER_CORE * threads)).toFixed(1)) };
    if (peer) {
      row.pytorch_ms = Math.round(median(theirs));
      row.ratio_vs_pytorch = Number(median(ratios).toFixed(3));
    }
    rows.push(row);
    process.stderr.write(`${name}: ${row.ms} ms${peer ? ` (PyTorch ${row.pytorch_ms} ms, ratio ${row.ratio_vs_pytorch})` : ''}\n`);
  }
  peer?.close();
  console.log(`model benchmark — ${threads} thread(s)${amp === 'off' ? '' : `, ${amp} autocast`}, libtorch ${E.torchVersion()}${torchInfo ? `, PyTorch peer ${torchInfo.torch} (${peerLayout} attention layout, ${peerMalloc === 'flexvid' ? "flexvid's allocator settings" : "glibc's default allocator"})` : ', no PyTorch peer'}`);
  console.log(`${'case'.padEnd(18)} ${'ms'.padStart(8)} ${'GFLOP/s'.padStart(8)} ${'% peak'.padStart(7)} ${'PyTorch ms'.padStart(11)} ${'ratio'.padStart(6)}`);
  for (const r of rows) {
    console.log(`${r.case.padEnd(18)} ${String(r.ms).padStart(8)} ${String(r.gflops).padStart(8)} ${String(r.pct_peak).padStart(7)} ${String(r.pytorch_ms ?? '-').padStart(11)} ${String(r.ratio_vs_pytorch ?? '-').padStart(6)}`);
  }
  console.log(JSON.stringify({ bench: 'model', threads, results: rows }));
}
