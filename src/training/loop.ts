/**
 * The training loop (REFERENCE_SPEC §6): offline (shuffled windows) or lifelong (the stream read
 * in order, one new window per experience, reservoir replay), FDM masks, AdamW + EMA, periodic
 * logging, previews and checkpoints, and exact resume.
 *
 * Phases: Initialize → Data → Model → Optimiser → Resume → Train { fetch (prefetched), steps,
 * log, sample, save } → Finish. Offline vs lifelong differ only in the batch sampler.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  cudaAvailable,
  fromBytes,
  Generator,
  inferenceMode,
  keep,
  randn,
  setNumThreads,
  tensor,
  tidy,
  type Tensor,
} from '../engine/index.ts';
import { AdamW, EMA, gradNorm, clipGradNorm, loadModule, loadOptimizer, loadTensors, rateKey, saveOptimizer, setInitSeed } from '../nn/index.ts';
import { UNetVideoModel } from '../model/unet.ts';
import type { UNetConfig } from '../model/config.ts';
import { GaussianDiffusion, type DiffusionConfig } from '../diffusion/gaussian-diffusion.ts';
import { createScheduleSampler, LossSecondMomentSampler, type ScheduleSampler } from '../diffusion/schedule-sampler.ts';
import { parseSampler } from '../diffusion/sampler-args.ts';
import { sampleWith } from '../diffusion/samplers.ts';
import { resolveDataset, type DatasetInfo } from '../data/registry.ts';
import { configPath } from '../data/layout.ts';
import { readLatentDatasetInfo } from '../data/latent-video.ts';
import { ReplaySampler } from '../lifelong/replay-sampler.ts';
import { cpuHasNativeBf16, MixedPrecision } from './amp.ts';
import { ShuffleSampler } from '../lifelong/shuffle-sampler.ts';
import { planGather, prepareTrainingBatch, sampleLoggingMasks } from '../lifelong/masks.ts';
import { NumpyRandomState } from '../util/mt19937.ts';
import { FlexvidError, OptionError } from '../util/errors.ts';
import { writeJsonAtomic } from '../util/fs-atomic.ts';
import { markObserved, videoFrames, videoFromFloatTCHW } from '../media/frames.ts';
import { writeGif } from '../media/gif.ts';
import { WindowLoader, type LoadedWindows } from './loader.ts';
import { TensorBoardWriter } from '../io/tensorboard.ts';
import { checkpointFiles, completeCheckpointSteps, readCheckpointMeta, saveWeights, type CheckpointMeta, type ModelCheckpointConfig } from './checkpoint.ts';
import { diffusionConfigFromOptions, parseEmaRates, unetConfigFromOptions, validateTrainOptions, type TrainOptions } from './options.ts';
import { allGatherObjects, anyRank, averageGradients, barrier, broadcastObject, broadcastParameters } from '../engine/distributed.ts';
import { checkResumeWorldSize, joinRunGroup, leaveRunGroup, mergeMetricAccumulators, rankSeedOffset } from './distributed-run.ts';

/** What the loop reports as it goes (the CLI prints it; tests and the demo may listen). */
export interface TrainHooks {
  /** After each metric flush. */
  onLog?: (record: Record<string, number | string>) => void;
  /** After every optimisation step. */
  onStep?: (step: number, loss: number) => void;
  /** Messages (start-up summary, saves). */
  onMessage?: (text: string) => void;
  /** Once, before the first step: where the run is and how many steps it will take (null = unbounded). */
  onStart?: (info: { runId: string; runDir: string; step: number; totalSteps: number | null }) => void;
}

export interface TrainResult {
  runId: string;
  runDir: string;
  /** Steps taken in total (the next step index). */
  step: number;
  stoppedBecause: 'stream-end' | 'max-steps' | 'lr-anneal' | 'signal';
  /** Mean fraction of wall time spent waiting for data. */
  dataWaitFraction: number;
}

/** Short, readable run ids (8 base-36 characters). */
export function newRunId(): string {
  const n = randomBytes(6).readUIntBE(0, 6);
  return n.toString(36).padStart(8, '0').slice(-8);
}

interface Snapshot {
  /** Label of the checkpoint files. */
  step: number;
  /** Index of the next optimisation step. */
  nextStep: number;
  /** Data-sampler state before the batch in use was drawn. */
  samplerBefore: unknown;
  /** Optimisation steps already taken on that batch. */
  stepsOnBatch: number;
  maskRng: unknown;
  timestepRng: unknown;
  noiseGenerator: string;
  scheduleSampler: unknown;
  /** The first batch with ≥ max_frames frames, used for previews (window indices). */
  visIndices: number[] | null;
  /** Number of processes of the run (absent = 1); a resume must use the same. */
  worldSize?: number;
  /** Multi-process runs: every rank's own sampler and RNG states, in rank order. */
  ranks?: RankState[];
  /** log2 fp16 loss scale (--amp fp16). */
  lgLossScale?: number;
}

/** The per-rank part of a snapshot (each rank draws its own batch slots, noise, masks, timesteps). */
type RankState = Pick<Snapshot, 'samplerBefore' | 'maskRng' | 'timestepRng' | 'noiseGenerator'>;

/** Resolve dataset-dependent settings (§6.2 step 1) and validate everything up front. */
export function resolveRunSettings(o: TrainOptions): { info: DatasetInfo; T: number; model: UNetConfig; diffusion: DiffusionConfig; emaRates: number[] } {
  const info = resolveTrainDataset(o.dataset);
  validateTrainOptions(o, { streaming: info.streaming });
  if (o.diffusionSpace !== 'latent' && info.family !== 'plaicraft' && fs.existsSync(configPath(info.path)) && readLatentDatasetInfo(info.path)) {
    // A latent dataset (docs/latent.md §4) trained in pixel space would treat latents as pixels.
    throw new OptionError('--diffusion-space', `latent for the latent dataset ${info.path} (made by data from-video --latent)`, o.diffusionSpace);
  }
  const T = o.T === -1 ? info.T : o.T;
  if (!(T >= 1)) throw new OptionError('--T', 'a positive window length or -1', o.T);
  const model = unetConfigFromOptions(o, info.imageSize, o.diffusionSpace === 'latent' ? 4 : info.channels);
  const diffusion: DiffusionConfig = diffusionConfigFromOptions(o);
  new GaussianDiffusion(diffusion); // validates the combination (e.g. EDM scaling + respacing)
  parseSampler(o.sampleSampler);
  if ((o.maskingMode === 'autoregressive' || o.maskingMode === 'none') && o.padWithRandomFrames && T > o.maxFrames) {
    throw new OptionError('--max-frames', `≥ T = ${T} with --masking-mode=${o.maskingMode} and padding (all T frames are used)`, o.maxFrames);
  }
  return { info, T, model, diffusion, emaRates: parseEmaRates(o.emaRate) };
}

/**
 * `t` on `device` (the same tensor when it is already there). Host data bound for a GPU goes through
 * pinned memory so the copy is asynchronous (the CPU goes on preparing the step meanwhile).
 */
function onDevice(t: Tensor, device: string): Tensor {
  if (t.device === device || (device === 'cuda' && t.device.startsWith('cuda'))) return t;
  if (device.startsWith('cuda') && t.device === 'cpu') {
    using pinned = t.pinMemory();
    return pinned.to({ device, nonBlocking: true });
  }
  return t.to({ device });
}

/**
 * Resolve `--dataset`: a registry name, a folder, or `streaming_<folder>` to read a folder as a
 * lifelong stream.
 */
export function resolveTrainDataset(name: string): DatasetInfo {
  return resolveDataset(name);
}

function pickDevice(d: string): string {
  if (d === 'auto') return cudaAvailable() ? 'cuda' : 'cpu';
  if (d.startsWith('cuda') && !cudaAvailable()) throw new OptionError('--device', 'cpu (this libtorch has no CUDA device)', d);
  return d;
}

/** Run training to completion (or until stopped). */
export async function train(o: TrainOptions, hooks: TrainHooks = {}): Promise<TrainResult> {
  // ---------------------------------------------------------------- Initialize
  const settings = resolveRunSettings(o);
  const { info, T } = settings;
  if (o.threads > 0) setNumThreads(o.threads);
  const dist = joinRunGroup(o, pickDevice(o.device)); // one process unless launched with --nproc / torchrun / srun
  const device = dist.device;
  const amp = new MixedPrecision(o.amp, device, o.fp16ScaleGrowth);
  if (o.amp === 'bf16' && !device.startsWith('cuda') && !cpuHasNativeBf16()) {
    hooks.onMessage?.('warning: this CPU has no native bfloat16 (AVX-512 BF16 / AMX): --amp bf16 is emulated and slower than float32 here');
  }
  const resuming = o.resumeId !== '';
  const runId = o.resumeId || o.runId || broadcastObject(newRunId());
  const runDir = path.join(o.checkpointsDir, runId);
  if (resuming && !fs.existsSync(runDir)) throw new OptionError('--resume-id', `a run folder under ${o.checkpointsDir}/`, o.resumeId);
  if (!resuming && fs.existsSync(path.join(runDir, 'config.json'))) throw new OptionError('--run-id', 'a new run id (this run exists; use --resume-id to continue it)', runId);
  barrier(); // every rank has checked before rank 0 writes
  if (dist.main) fs.mkdirSync(path.join(runDir, 'samples'), { recursive: true });
  const project = o.project || process.env.FLEXVID_PROJECT || 'default';
  const ckptConfig: ModelCheckpointConfig = {
    model: settings.model,
    diffusion: settings.diffusion,
    dataset: o.dataset,
    T,
    maxFrames: o.maxFrames,
    diffusionSpace: o.diffusionSpace,
    train: { ...o, T, runId, project },
  };
  if (!resuming && dist.main) {
    writeJsonAtomic(path.join(runDir, 'config.json'), { ...o, T, runId, project, device, worldSize: dist.worldSize, imageSize: settings.model.imageSize, inChannels: settings.model.inChannels, model: settings.model, diffusion: settings.diffusion, createdAt: new Date().toISOString(), host: os.hostname() });
  }
  const status = (s: 'running' | 'finished' | 'crashed' | 'stopped', step: number, extra: Record<string, unknown> = {}) =>
    dist.main &&
    writeJsonAtomic(path.join(runDir, 'status.json'), { status: s, step, pid: process.pid, host: os.hostname(), updatedAt: new Date().toISOString(), ...extra });

  // ---------------------------------------------------------------- Data
  const workers = o.numWorkers === -1 ? Math.max(1, os.availableParallelism() - 1) : o.numWorkers;
  // The worker thread has its own registry: hand it the folder, which describes itself.
  const loader = await WindowLoader.open({ dataset: info.path, T }, workers);
  const streaming = info.streaming;
  const sampler: ReplaySampler | ShuffleSampler = streaming
    ? new ReplaySampler({ streamLength: loader.length, globalBatch: o.batchSize, nSequential: o.nSampleStm, bufferSize: o.ltmSize, seed: o.dataSeed, reservoir: o.reservoir, worldSize: dist.worldSize, rank: dist.rank })
    : new ShuffleSampler({ datasetLength: loader.length, globalBatch: o.batchSize, seed: o.dataSeed, worldSize: dist.worldSize, rank: dist.rank });

  // ---------------------------------------------------------------- Model
  setInitSeed(o.seed);
  const model = new UNetVideoModel(settings.model, { device });
  const diffusion = new GaussianDiffusion(settings.diffusion);
  const trainDiffusion = diffusion; // the loss uses the (possibly respaced) chain, as the reference
  const scheduleSampler: ScheduleSampler = createScheduleSampler(o.scheduleSampler, diffusion.schedule);

  // ---------------------------------------------------------------- Optimiser
  const opt = new AdamW(model, { lr: o.lr, weightDecay: o.weightDecay });
  const ema = new EMA(model, settings.emaRates);
  const rankSeed = o.seed + rankSeedOffset(dist.rank); // = o.seed on rank 0
  const maskRng = new NumpyRandomState(rankSeed + 2);
  const timestepRng = new NumpyRandomState(rankSeed + 3);
  const noiseGen = new Generator(rankSeed + 1);

  // ---------------------------------------------------------------- Resume
  let step = 0;
  let stepsOnBatch = 0;
  let visIndices: number[] | null = null;
  if (resuming) {
    const steps = completeCheckpointSteps(runDir);
    if (steps.length === 0) throw new OptionError('--resume-id', `a run with a complete checkpoint in ${runDir}`, o.resumeId);
    const label = steps[steps.length - 1]!;
    loadModule(path.join(runDir, checkpointFiles.model(label)), model);
    loadOptimizer(path.join(runDir, checkpointFiles.opt(label)), opt);
    for (const r of settings.emaRates) {
      const f = path.join(runDir, checkpointFiles.ema(rateKey(r), label));
      if (fs.existsSync(f)) {
        const { tensors } = loadTensors(f);
        ema.loadStateDict(r, tensors);
        for (const t of tensors.values()) t.dispose();
      } else {
        ema.resetFromParams(r);
      }
    }
    const snap = JSON.parse(fs.readFileSync(path.join(runDir, checkpointFiles.state(label)), 'utf8')) as Snapshot;
    checkResumeWorldSize(snap.worldSize ?? 1, dist.worldSize, runId);
    const mine: RankState = snap.ranks?.[dist.rank] ?? snap;
    step = snap.nextStep;
    sampler.setState(mine.samplerBefore as never);
    stepsOnBatch = snap.stepsOnBatch;
    maskRng.setState(mine.maskRng);
    timestepRng.setState(mine.timestepRng);
    noiseGen.setStateBytes(Buffer.from(mine.noiseGenerator, 'base64'));
    scheduleSampler.setState(snap.scheduleSampler);
    visIndices = snap.visIndices;
    if (snap.lgLossScale !== undefined) amp.lgLossScale = snap.lgLossScale;
    hooks.onMessage?.(`resuming run ${runId} at step ${step}`);
  } else if (o.resumeCheckpoint) {
    const meta = loadModule(o.resumeCheckpoint, model);
    step = readCheckpointMeta(o.resumeCheckpoint, meta).step;
    ema.resetFromParams();
    hooks.onMessage?.(`starting from ${o.resumeCheckpoint} (step ${step}); optimiser fresh, EMA = loaded weights`);
  }
  broadcastParameters(model); // all ranks start from rank 0's weights (no-op for one process)
  hooks.onMessage?.(
    `run ${runId} → ${runDir}\n  dataset ${info.name} (${streaming ? 'lifelong stream' : 'offline, shuffled'}), ${loader.length} windows of T=${T}, ` +
      `model ${(model.numParameters() / 1e6).toFixed(2)}M parameters on ${device}`,
  );

  // ---------------------------------------------------------------- Train
  let stopRequested = false;
  const onSignal = () => {
    stopRequested = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const metricsFile = path.join(runDir, 'metrics.jsonl');
  const tensorboard = o.tensorboard && dist.main ? new TensorBoardWriter(runDir) : null;
  const acc = new Map<string, { sum: number; n: number }>();
  const addMetric = (k: string, v: number) => {
    const a = acc.get(k) ?? { sum: 0, n: 0 };
    a.sum += v;
    a.n += 1;
    acc.set(k, a);
  };
  let waitMs = 0;
  let totalWaitMs = 0;
  const trainStart = performance.now();
  let lastFlush = performance.now();
  let stoppedBecause: TrainResult['stoppedBecause'] = 'stream-end';
  let currentPosition = 0;

  // The batch in use: the sampler state before it was drawn and the steps already taken on it.
  // A checkpoint stores exactly this, so a resumed run redraws the same batch and continues.
  let activeBefore: unknown = sampler.getState();
  let nextStep = step;

  const saveCheckpoint = (label: number) => {
    const own: RankState = { samplerBefore: activeBefore, maskRng: maskRng.getState(), timestepRng: timestepRng.getState(), noiseGenerator: Buffer.from(noiseGen.getStateBytes()).toString('base64') };
    const ranks = dist.worldSize > 1 ? allGatherObjects(own) : undefined; // collective: every rank saves at the same steps
    if (!dist.main) {
      barrier();
      return;
    }
    const meta: Omit<CheckpointMeta, 'kind'> = { config: ckptConfig, step: label };
    saveWeights(path.join(runDir, checkpointFiles.model(label)), model.stateDict(), { ...meta, kind: 'model' });
    for (const r of settings.emaRates) {
      saveWeights(path.join(runDir, checkpointFiles.ema(rateKey(r), label)), ema.moduleStateDict(model, r), { ...meta, kind: `ema_${rateKey(r)}` });
    }
    saveOptimizer(path.join(runDir, checkpointFiles.opt(label)), opt, { step: String(label) });
    const snap: Snapshot = {
      step: label,
      nextStep,
      samplerBefore: activeBefore,
      stepsOnBatch,
      maskRng: maskRng.getState(),
      timestepRng: timestepRng.getState(),
      noiseGenerator: Buffer.from(noiseGen.getStateBytes()).toString('base64'),
      scheduleSampler: scheduleSampler.getState(),
      visIndices,
      ...(ranks ? { worldSize: dist.worldSize, ranks } : {}),
      ...(amp.scaling ? { lgLossScale: amp.lgLossScale } : {}),
    };
    writeJsonAtomic(path.join(runDir, checkpointFiles.state(label)), snap); // last: marks the set complete
    hooks.onMessage?.(`saved checkpoint ${checkpointFiles.model(label)}`);
    barrier(); // the other ranks wait until the checkpoint is complete
  };

  /** Draw the next batch's indices and start reading it (prefetch). */
  const produce = (): { before: unknown; indices: number[]; position: number; data: Promise<LoadedWindows> } | null => {
    const before = sampler.getState();
    const b = sampler.nextBatch();
    if (!b) return null;
    const position = 'position' in b ? b.position : b.batchInEpoch;
    return { before, indices: b.indices, position, data: loader.fetch(b.indices) };
  };

  let visData: LoadedWindows | null = visIndices && dist.main ? await loader.fetch(visIndices) : null;
  const visualise = (stepNow: number) => {
    if (!visData || !dist.main) return;
    const t0 = performance.now();
    ema.withAveraged(model, settings.emaRates[0]!, () => {
      model.eval();
      try {
        tidy(() => previewSample(stepNow, visData!));
      } finally {
        model.train();
      }
    });
    addMetric('timing/sampling_time', (performance.now() - t0) / 1000);
  };
  const previewSample = (stepNow: number, vd: LoadedWindows) => {
    const [B, Tv, C, H, W] = vd.shape;
    const masks = sampleLoggingMasks(B, Tv, o.maxFrames);
    const plan = planGather(masks, { maxFrames: o.maxFrames, padWithRandomFrames: false });
    const frames = fromBytes(new Uint8Array(vd.frames.buffer, vd.frames.byteOffset, vd.frames.byteLength), [B * Tv, C, H, W], 'float32');
    const idx = Int32Array.from(plan.positions, (p, k) => Math.floor(k / plan.K) * Tv + p);
    const x0 = onDevice(frames.indexSelect(0, tensor(idx, { dtype: 'int64' })).reshape([B, plan.K, C, H, W]), device);
    const obs = tensor(plan.obs, { shape: [B, plan.K], device });
    const lat = tensor(plan.latent, { shape: [B, plan.K], device });
    const fi = tensor(Float32Array.from(plan.frameIndices), { shape: [B, plan.K], device });
    // the sampler overwrites observed frames: only the others' outputs are computed to the end
    const modelFn = (x: Tensor, ts: Tensor) => model.forward({ x, x0, timesteps: ts, frameIndices: fi, obsMask: obs, latentMask: lat, outputMask: obs.rsub(1) });
    const out = inferenceMode(() => sampleWith(parseSampler(o.sampleSampler), diffusion, modelFn, { x0, obsMask: obs, clipDenoised: true, generator: new Generator(0) }));
    let v = videoFromFloatTCHW(out.select(0, 0).toFloat32Array(), plan.K, C, H, W, 'logging');
    v = markObserved(v, Array.from({ length: masks.nObs }, (_, i) => i));
    writeGif(path.join(runDir, 'samples', `preview_${String(stepNow).padStart(6, '0')}.gif`), videoFrames(v), W, H, { fps: 5 });
  };

  status('running', step);
  const bounds = [o.maxSteps, o.lrAnnealSteps, streaming ? loader.length * o.stepsPerExperience : 0].filter((n) => n > 0);
  hooks.onStart?.({ runId, runDir, step, totalSteps: bounds.length ? Math.min(...bounds) : null });
  let current = produce();
  if (current && stepsOnBatch >= o.stepsPerExperience) {
    // resumed exactly at the end of a batch: it is done, move on
    current = produce();
    stepsOnBatch = 0;
  }
  try {
    outer: while (current) {
      if (o.lrAnnealSteps > 0 && step >= o.lrAnnealSteps) {
        stoppedBecause = 'lr-anneal';
        break;
      }
      if (o.maxSteps > 0 && step >= o.maxSteps) {
        stoppedBecause = 'max-steps';
        break;
      }
      const t0 = performance.now();
      const data = await current.data;
      const waited = performance.now() - t0;
      waitMs += waited;
      totalWaitMs += waited;
      currentPosition = current.position;
      activeBefore = current.before;
      const next = produce(); // read the next batch while this one trains
      if (visIndices === null && data.shape[1] >= o.maxFrames) {
        visIndices = current.indices;
        visData = data;
      }
      const [B, Tw, C, H, W] = data.shape;
      const frames = keep(fromBytes(new Uint8Array(data.frames.buffer, data.frames.byteOffset, data.frames.byteLength), [B * Tw, C, H, W], 'float32'));
      try {
        while (stepsOnBatch < o.stepsPerExperience) {
          const stepStart = performance.now();
          const lossValue = tidy(() => trainStep(frames, data, B, Tw, C, H, W));
          stepsOnBatch++;
          addMetric('timing/step_time', (performance.now() - stepStart) / 1000);
          hooks.onStep?.(step, lossValue);
          nextStep = step + 1;
          if (step % o.logInterval === 0) flush();
          if (step % o.saveInterval === 0) saveCheckpoint(step);
          if (step !== 0 && (step % o.sampleInterval === 0 || step === o.maxFrames)) visualise(step);
          step++;
          if (dist.worldSize > 1) stopRequested = anyRank(stopRequested); // all ranks stop at the same step
          if ((o.maxSteps > 0 && step >= o.maxSteps) || (o.lrAnnealSteps > 0 && step >= o.lrAnnealSteps) || stopRequested) {
            stoppedBecause = stopRequested ? 'signal' : o.maxSteps > 0 && step >= o.maxSteps ? 'max-steps' : 'lr-anneal';
            break outer;
          }
        }
      } finally {
        frames.dispose();
      }
      stepsOnBatch = 0;
      current = next;
      if (current) activeBefore = current.before;
      else activeBefore = sampler.getState();
    }
    flush();
    nextStep = step;
    saveCheckpoint(step);
    status(stoppedBecause === 'signal' ? 'stopped' : 'finished', step, { stoppedBecause });
  } catch (e) {
    status('crashed', step, { error: (e as Error).message });
    throw e;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await loader.close();
    tensorboard?.close();
    ema.dispose();
    opt.dispose();
    model.dispose();
    leaveRunGroup(dist);
  }
  const elapsed = performance.now() - trainStart;
  return { runId, runDir, step, stoppedBecause, dataWaitFraction: totalWaitMs / Math.max(1, elapsed) };

  // ------------------------------------------------------------------ helpers (closures)

  function flush(): void {
    const merged = mergeMetricAccumulators(acc); // global-batch averages (a collective with several processes)
    if (!dist.main) {
      acc.clear();
      waitMs = 0;
      lastFlush = performance.now();
      return;
    }
    const rec: Record<string, number | string> = { step, samples: (step + 1) * o.batchSize, time: new Date().toISOString() };
    for (const [k, a] of merged) rec[k] = a.sum / a.n;
    const elapsed = performance.now() - lastFlush;
    rec['data_wait_fraction'] = waitMs / Math.max(1, elapsed);
    rec['lr'] = opt.lr;
    rec['stream_position'] = currentPosition;
    if (sampler instanceof ReplaySampler) rec['replay_size'] = sampler.bufferContent.length;
    if (dist.worldSize > 1) rec['world_size'] = dist.worldSize;
    const st = rec['timing/step_time'];
    if (typeof st === 'number' && st > 0) rec['frames_per_s'] = (o.batchSize * o.maxFrames) / st;
    fs.appendFileSync(metricsFile, JSON.stringify(rec) + '\n');
    tensorboard?.addScalars(step, rec);
    acc.clear();
    waitMs = 0;
    lastFlush = performance.now();
    status('running', step);
    hooks.onLog?.(rec);
  }

  function trainStep(frames: Tensor, data: LoadedWindows, B: number, Tw: number, C: number, H: number, W: number): number {
    const plan = prepareTrainingBatch({ mode: o.maskingMode, B, T: Tw, maxFrames: o.maxFrames, padWithRandomFrames: o.padWithRandomFrames, rng: maskRng, absoluteIndexMap: data.absIndex });
    const K = plan.K;
    const idx = Int32Array.from(plan.positions, (p, k) => Math.floor(k / K) * Tw + p);
    const x = onDevice(frames.indexSelect(0, tensor(idx, { dtype: 'int64' })).reshape([B, K, C, H, W]), device);
    const obs = tensor(plan.obs, { shape: [B, K], device });
    const lat = tensor(plan.latent, { shape: [B, K], device });
    // Relative positions only matter through differences; shift by the batch minimum so float32 stays exact.
    let minIdx = Infinity;
    for (const v of plan.frameIndices) minIdx = Math.min(minIdx, v);
    const fi = tensor(Float32Array.from(plan.frameIndices, (v) => v - minIdx), { shape: [B, K], device });
    const { t, weights } = scheduleSampler.sample(B, timestepRng);
    const noise = onDevice(randn([B, K, C, H, W], noiseGen), device);
    const lossMask = o.padWithRandomFrames ? obs.rsub(1) : lat; // ⊇ lat, the eval mask
    // Frames outside the loss mask contribute nothing to any loss term: the model skips their last layers.
    const modelFn = (xt: Tensor, ts: Tensor) => model.forward({ x: xt, x0: x, timesteps: ts, frameIndices: fi, obsMask: obs, latentMask: lat, outputMask: lossMask });
    const losses = amp.forward(() => trainDiffusion.trainingLosses(modelFn, x, t, { noise, latentMask: lossMask, evalMask: lat }));
    const perVideo = losses.loss.toFloat64Array();
    const nan = perVideo.some((v) => Number.isNaN(v));
    if (dist.worldSize > 1 ? anyRank(nan) : nan) throw new FlexvidError(`Loss is nan at step ${step}${nan || dist.worldSize === 1 ? '' : ' (on another rank)'}.`);
    if (dist.worldSize > 1 && scheduleSampler instanceof LossSecondMomentSampler) {
      // as the reference's update_with_local_losses: every rank updates with all ranks' losses, rank-major
      const all = allGatherObjects({ t: Array.from(t), l: Array.from(perVideo) });
      scheduleSampler.updateWithAllLosses(all.flatMap((a) => a.t), all.flatMap((a) => a.l));
    } else {
      scheduleSampler.updateWithAllLosses(t, perVideo);
    }
    const w = tensor(Float32Array.from(weights), { device });
    const loss = losses.loss.mul(w).mean();
    // Log every term (× weights), mean and per quartile of t (§6.5 step 7).
    const N = diffusion.numTimesteps;
    const terms: [string, Tensor][] = [['loss', losses.loss], ['mse', losses.mse], ['eval-mse', losses.evalMse]];
    if (losses.vb) terms.push(['vb', losses.vb]);
    for (const [k, v] of terms) {
      const vals = v.detach().toFloat64Array();
      let s = 0;
      vals.forEach((val, b) => {
        const wv = val * weights[b]!;
        s += wv;
        addMetric(`${k}_q${Math.floor((4 * t[b]!) / N)}`, wv);
      });
      addMetric(k, s / vals.length);
    }
    amp.scaleLoss(loss).backward();
    averageGradients(model); // mean over ranks = gradient of the global-batch mean loss (no-op for one process)
    if (amp.scaling) addMetric('lg_loss_scale', amp.lgLossScale);
    if (!amp.unscaleGradients(model)) {
      // fp16 overflow: the reference skips the step (and its EMA update) and lowers the scale
      opt.zeroGrad();
      return loss.item();
    }
    const gn = o.clipGrad > 0 ? clipGradNorm(model, o.clipGrad) : gradNorm(model);
    addMetric('grad_norm', gn);
    if (o.lrAnnealSteps > 0) opt.setLr(o.lr * (1 - step / o.lrAnnealSteps));
    opt.step();
    opt.zeroGrad();
    ema.update();
    amp.afterStep();
    return loss.item();
  }
}
