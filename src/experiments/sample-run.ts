/**
 * `flexvid sample CHECKPOINT` (REFERENCE_SPEC §7.1–§7.2, §7.5): sample long videos for a range of
 * evaluation items into
 *
 * ```
 * <results>/<run-id>/<ckpt-stem>_<sampler>[_respace<R>]/<scheme>_<K>_<T>_<n_obs>_<config>_<lo>_<hi>_<split>/
 *   model_config.json                  written once (under a lock)
 *   samples/sample_<i:04d>-<k>.npy      uint8 [T, 3, H, W]
 * ```
 *
 * Latent checkpoints (`diffusion_space = latent`, §5.11) sample in latent space and write the
 * pixels the SDXL VAE decodes from the final latents (`--vae`, else `$FLEXVID_VAE`): uint8
 * `[T, 3, f·h, f·w]`. Every frame decodes on its own, so decoding the finished video once equals
 * the reference's decoding of each stage's output and of the observed ground truth (§7.2).
 *
 * Shards (`--start-index/--stop-index`) may run as concurrent processes on the same folder: each
 * sample is claimed with an exclusive claim file before it is produced and written atomically
 * (`sampling/claims.ts`), so nothing is produced twice and finished samples are skipped.
 * Claimed samples are grouped into batches of `--batch-size` videos that share every stage.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Generator, tensor, tidy, type AmpMode, type DType, type Tensor } from '../engine/index.ts';
import { writeNpy } from '../data/npy.ts';
import { resolveDataset } from '../data/registry.ts';
import type { WindowDataset } from '../data/views.ts';
import type { EvalConfig } from '../data/datasets.ts';
import { parseSampler, DEFAULT_SAMPLER } from '../diffusion/sampler-args.ts';
import { readSafetensorsHeader } from '../io/safetensors.ts';
import { loadModelCheckpoint, readCheckpointMeta, type CheckpointMeta } from '../training/checkpoint.ts';
import { snake } from '../training/options.ts';
import { evalDirectory, evalIdentifier, samplePath } from '../sampling/naming.ts';
import { isAdaptiveScheme, loadOptimalSchedule, SCHEME_NAMES, type OptimalSchedule } from '../sampling/schemes.ts';
import { countStages, noiseSeed, planStages, sampleVideo, samplesToU8, type FrameEmbedder } from '../sampling/pipeline.ts';
import { claimOutput, withFileLock, type Claim } from '../sampling/claims.ts';
import { writeSchedulePicture } from '../sampling/schedule-picture.ts';
import { writeJsonAtomic } from '../util/fs-atomic.ts';
import { FileFormatError, OptionError } from '../util/errors.ts';
import { decodeLatents, loadVae, resolveVaeDtype, resolveVaePath, type AutoencoderKL } from '../vae/index.ts';
import { loadFrameEmbedder, MODEL_CONFIG_FILE, noProgress, openEvalDataset, resolveDevice, type ProgressFactory, type Reporting } from './common.ts';

/** `--optimality` choices (§7.1). */
export const OPTIMALITY_CHOICES = ['linspace-t', 'random-t', 'linspace-t-force-nearby', 'random-t-force-nearby'] as const;

/** Options `sample` and `loss` share: which checkpoint, which items of which view, how to run the model. */
export interface EvalRunOptions extends Reporting {
  /** A `model…`/`ema_…` checkpoint file. */
  checkpoint: string;
  /** First dataset item (default 0). */
  startIndex?: number;
  /** One past the last item (required). */
  stopIndex: number;
  /** `n_data` of spaced evaluation views (default stop − start). */
  numSampledVideos?: number;
  /** Videos per batch (default 8). */
  batchSize?: number;
  /** Observed leading frames (default 36). */
  nObs?: number;
  /** Video length (default: the dataset's T; the resolved value goes into the identifier). */
  T?: number;
  /** K (default: the checkpoint's max_frames). */
  maxFrames?: number;
  /** S (default ⌊K/2⌋). */
  maxLatentFrames?: number;
  /** Sampler string (default the reference's Heun string). */
  sampler?: string;
  /** Use the train stream. */
  evalOnTrain?: boolean;
  /** §5.8 respacing of the sampling chain (default ""). */
  timestepRespacing?: string;
  /** cpu, cuda, cuda:N, auto (default auto). */
  device?: string;
  /** Mixed precision of the model calls (default off; see sampleVideo). */
  amp?: AmpMode;
  evalDatasetConfig?: EvalConfig;
  lowerFrameRange?: number;
  upperFrameRange?: number | null;
  /** Frames per VAE decoder call for latent models (default 10, the reference's `--decode_chunk_size`). */
  decodeChunkSize?: number;
  /** Root of the results tree (default `results`). */
  resultsDir?: string;
  /** Base seed of the noise (default 0). */
  seed?: number;
}

/** Options of {@link runSampling}: every flag of `video_sample.py` (§7.1) plus flexvid's own. */
export interface SampleRunOptions extends EvalRunOptions {
  /** One of §7.3's schemes. */
  samplingScheme: string;
  /** Overrides the model results folder (the identifier is still appended). */
  evalDir?: string;
  /** Stored in model_config.json only. */
  useDdim?: boolean;
  /** Clamp x̂0 (default true; forced false for latent models). */
  clipDenoised?: boolean;
  /** File-name suffix k; also seeds the noise (§10.3 #36). */
  sampleIdx?: number;
  /** `--optimality`: use `optimal_schedule.json` of the eval dir. */
  optimality?: string;
  /** `--vae`: the SDXL VAE weights (file or folder) for latent models (else `$FLEXVID_VAE`). */
  vaePath?: string;
  /** `--vae-dtype` (default auto: float16 on CUDA, float32 on the CPU). */
  vaeDtype?: DType | 'auto';
  /** Library use / tests: a VAE instead of loading `vaePath` (not disposed by {@link runSampling}). */
  vae?: AutoencoderKL;
  /** Only write the stage-schedule picture `<eval dir>/schedule.png`. */
  justVisualise?: boolean;
  /** LPIPS weights for adaptive schemes (else `$FLEXVID_LPIPS_WEIGHTS`). */
  lpipsWeights?: string;
  /** [c6f25f7] PLAICraft custom clip folder. */
  customClipPath?: string;
  /** Test hook / library use: an embedder instead of loading LPIPS. */
  embedFrames?: FrameEmbedder;
}

/** What {@link runSampling} did. */
export interface SampleRunReport {
  evalDir: string;
  identifier: string;
  /** Items written by this process. */
  written: number[];
  /** Items already present. */
  existing: number[];
  /** Items skipped because another live process had claimed them. */
  claimedElsewhere: number[];
  /** `--just-visualise`: the picture written. */
  schedulePicture?: string;
}

function checkInt(flag: string, v: unknown, min: number): number {
  if (!(typeof v === 'number' && Number.isSafeInteger(v) && v >= min)) throw new OptionError(flag, `an integer ≥ ${min}`, v);
  return v;
}

/** The VAE must decode the model's latent channels. */
function checkVaeChannels(vae: AutoencoderKL, channels: number): void {
  if (vae.config.latentChannels !== channels) {
    throw new OptionError('--vae', `a VAE with ${channels} latent channels (the model's input)`, `${vae.config.latentChannels} latent channels`);
  }
}

/** {@link decodeLatents} with a progress display over frames. */
function decodeWithProgress(vae: AutoencoderKL, latents: Tensor, chunkSize: number, progress: ProgressFactory, label: string): Tensor {
  let bar: ReturnType<typeof progress> | undefined;
  try {
    return decodeLatents(vae, latents, { chunkSize, onProgress: (done, total) => (bar ??= progress(label, total, 'frames')).update(done) });
  } finally {
    bar?.stop();
  }
}

/** Read a checkpoint's description without loading its weights. */
export function readCheckpointDescription(file: string): CheckpointMeta {
  if (!fs.existsSync(file)) throw new FileFormatError(file, 'checkpoint not found');
  return readCheckpointMeta(file, readSafetensorsHeader(file).metadata);
}

/**
 * The `model_config.json` of a sampling run (§7.5): the checkpoint's training options flattened
 * to the reference's snake_case keys (`dataset`, `T`, `max_frames`, `image_size`, …), plus
 * `use_ddim`, `timestep_respacing`, `diffusion_space_kwargs.enable_decoding = true`, and the full
 * flexvid checkpoint config under `flexvid_checkpoint_config`.
 */
export function modelConfigJson(meta: CheckpointMeta, o: { useDdim: boolean; timestepRespacing: string; checkpoint: string; sampler: string }): Record<string, unknown> {
  const flat: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(meta.config.train ?? {})) flat[snake(k)] = v;
  return {
    ...flat,
    dataset: meta.config.dataset,
    T: meta.config.T,
    max_frames: meta.config.maxFrames,
    diffusion_space: meta.config.diffusionSpace,
    image_size: meta.config.model.imageSize,
    in_channels: meta.config.model.inChannels,
    diffusion_space_kwargs: { enable_decoding: true },
    use_ddim: o.useDdim,
    timestep_respacing: o.timestepRespacing,
    flexvid_checkpoint_config: meta.config,
    flexvid_checkpoint: { file: o.checkpoint, step: meta.step, kind: meta.kind, sampler: o.sampler },
  };
}

/** Write `model_config.json` once, under `model_config.json.lock` (§7.2 step 5). */
export async function writeModelConfigOnce(evalDir: string, config: Record<string, unknown>): Promise<boolean> {
  const file = path.join(evalDir, MODEL_CONFIG_FILE);
  if (fs.existsSync(file)) return false;
  return withFileLock(`${file}.lock`, () => {
    if (fs.existsSync(file)) return false;
    writeJsonAtomic(file, config, 4);
    return true;
  });
}

/** Resolved settings shared by the sampling and loss commands. */
export interface ResolvedEvalSettings {
  meta: CheckpointMeta;
  device: string;
  T: number;
  maxFrames: number;
  stepSize: number;
  nObs: number;
  identifier: string;
  evalDir: string;
  datasetName: string;
}

/** Resolve T, K, S, the identifier and the eval dir like §7.2 steps 1–3. */
export function resolveEvalSettings(o: {
  checkpoint: string;
  meta: CheckpointMeta;
  scheme: string;
  nObs?: number;
  T?: number;
  maxFrames?: number;
  maxLatentFrames?: number;
  sampler: string;
  timestepRespacing: string;
  evalOnTrain?: boolean;
  evalDatasetConfig?: string;
  lowerFrameRange?: number;
  upperFrameRange?: number | null;
  evalDir?: string;
  resultsDir?: string;
  customClipPath?: string;
  device?: string;
}): ResolvedEvalSettings {
  const meta = o.meta;
  const datasetName = meta.config.dataset;
  const T = o.T ?? resolveDataset(datasetName).T; // §10.3 #35: the resolved T goes into the identifier
  checkInt('--T', T, 1);
  const maxFrames = checkInt('--max-frames', o.maxFrames ?? meta.config.maxFrames, 1);
  const stepSize = checkInt('--max-latent-frames', o.maxLatentFrames ?? Math.floor(maxFrames / 2), 1);
  if (stepSize > maxFrames) throw new OptionError('--max-latent-frames', `at most --max-frames (${maxFrames})`, stepSize);
  const nObs = checkInt('--n-obs', o.nObs ?? 36, 0);
  if (nObs > T) throw new OptionError('--n-obs', `at most T (${T})`, nObs);
  const lo = checkInt('--lower-frame-range', o.lowerFrameRange ?? 0, 0);
  const hi = o.upperFrameRange ?? null;
  if (hi !== null) checkInt('--upper-frame-range', hi, lo + 1);
  const identifier = evalIdentifier({
    scheme: o.scheme,
    maxFrames,
    T,
    nObs,
    evalDatasetConfig: o.evalDatasetConfig ?? 'default',
    lowerFrameRange: lo,
    upperFrameRange: hi,
    evalOnTrain: o.evalOnTrain ?? false,
  });
  const evalDir = evalDirectory({
    checkpointPath: o.checkpoint,
    sampler: o.sampler,
    timestepRespacing: o.timestepRespacing,
    step: meta.step,
    resultsRoot: o.resultsDir,
    identifier,
    evalDir: o.evalDir,
    customClipPath: o.customClipPath,
  });
  return { meta, device: resolveDevice(o.device), T, maxFrames, stepSize, nObs, identifier, evalDir, datasetName };
}

/** Read the `--optimality` schedule: `optimal_schedule.json` in the eval dir, else in `--eval-dir`. */
function optimalScheduleFor(optimality: string, evalDir: string, evalRoot?: string): OptimalSchedule {
  if (!(OPTIMALITY_CHOICES as readonly string[]).includes(optimality)) throw new OptionError('--optimality', `one of ${OPTIMALITY_CHOICES.join(', ')}`, optimality);
  const candidates = [path.join(evalDir, 'optimal_schedule.json'), ...(evalRoot ? [path.join(evalRoot, 'optimal_schedule.json')] : [])];
  const file = candidates.find((f) => fs.existsSync(f));
  if (!file) {
    throw new FileFormatError(candidates[0]!, `--optimality ${optimality} needs an optimal schedule (JSON {"<stage>": [observed frames]}; the reference's optimal_schedule.pt must be converted)`);
  }
  return loadOptimalSchedule(file);
}

/** Stack dataset items `indices` into a `[B, T, C, H, W]` tensor on `device`. */
export function loadBatch(dataset: WindowDataset, indices: readonly number[], device: string): Tensor {
  const items = indices.map((i) => dataset.get(i));
  const shape = items[0]!.shape;
  const per = items[0]!.frames.length;
  const data = new Float32Array(per * items.length);
  items.forEach((it, b) => data.set(it.frames, b * per));
  return tensor(data, { shape: [items.length, ...shape], device });
}

/**
 * Run `flexvid sample` (REFERENCE_SPEC §7.2). See the module comment for the files.
 * Prints through `log` / `progress` only.
 */
export async function runSampling(o: SampleRunOptions): Promise<SampleRunReport> {
  const log = o.log ?? (() => {});
  const progress = o.progress ?? noProgress;
  const sampler = o.sampler ?? DEFAULT_SAMPLER;
  const samplerArgs = parseSampler(sampler);
  const timestepRespacing = o.timestepRespacing ?? '';
  const scheme = o.samplingScheme;
  if (!(SCHEME_NAMES as readonly string[]).includes(scheme)) throw new OptionError('--sampling-scheme', `one of ${SCHEME_NAMES.join(', ')}`, scheme);
  const start = checkInt('--start-index', o.startIndex ?? 0, 0);
  const stop = checkInt('--stop-index', o.stopIndex, start + 1);
  const batchSize = checkInt('--batch-size', o.batchSize ?? 8, 1);
  const sampleIdx = checkInt('--sample-idx', o.sampleIdx ?? 0, 0);
  const nData = o.numSampledVideos ?? stop - start;
  checkInt('--num-sampled-videos', nData, 1);

  const meta = readCheckpointDescription(o.checkpoint);
  const s = resolveEvalSettings({ ...o, meta, scheme, sampler, timestepRespacing });
  const latent = meta.config.diffusionSpace === 'latent';
  const clipDenoised = latent ? false : (o.clipDenoised ?? true);
  const optimal = o.optimality ? optimalScheduleFor(o.optimality, s.evalDir, o.evalDir) : undefined;
  const adaptive = isAdaptiveScheme(scheme);
  const needDataset = !o.justVisualise || adaptive;
  const opened = needDataset
    ? await openEvalDataset(
        s.datasetName,
        { T: s.T, evalDatasetConfig: o.evalDatasetConfig ?? 'default', lowerFrameRange: o.lowerFrameRange ?? 0, upperFrameRange: o.upperFrameRange ?? null, evalOnTrain: o.evalOnTrain ?? false },
        { nData, nDataFlag: '--num-sampled-videos', customClipPath: o.customClipPath },
      )
    : undefined;
  const dataset = opened?.dataset;
  if (dataset && stop > dataset.length) throw new OptionError('--stop-index', `at most the ${dataset.length} items of the evaluation dataset`, stop);
  const ownEmbedder = adaptive && !o.embedFrames ? await loadFrameEmbedder(o.lpipsWeights, { device: s.device }) : undefined;
  const embedFrames = adaptive ? (o.embedFrames ?? ownEmbedder) : undefined;
  try {
    log(`Inferring using the sampling scheme ${scheme} (T=${s.T}, n_obs=${s.nObs}, K=${s.maxFrames}, S=${s.stepSize}) into ${s.evalDir}`);

    if (o.justVisualise) {
      const videos = adaptive ? loadBatch(dataset!, [start], s.device) : undefined;
      try {
        const stages = planStages({ scheme, T: s.T, nObs: s.nObs, maxFrames: s.maxFrames, stepSize: s.stepSize, optimalSchedule: optimal, videos, embedFrames, onWarning: log });
        const file = path.join(s.evalDir, 'schedule.png');
        writeSchedulePicture(file, stages, { videoLength: s.T, numObs: s.nObs, title: `${scheme} T=${s.T} n_obs=${s.nObs} K=${s.maxFrames} S=${s.stepSize}` });
        log(`wrote ${file} (${stages.length} stages)`);
        return { evalDir: s.evalDir, identifier: s.identifier, written: [], existing: [], claimedElsewhere: [], schedulePicture: file };
      } finally {
        videos?.dispose();
      }
    }

    const [C, H, W] = dataset!.frameShape();
    const mc = meta.config.model;
    if (C !== mc.inChannels || H !== mc.imageSize || W !== mc.imageSize) {
      throw new OptionError('dataset frames', `${mc.inChannels}×${mc.imageSize}×${mc.imageSize} (the model's input)`, `${C}×${H}×${W} (${s.datasetName})`);
    }
    // Latent models (§5.11, §7.2): the VAE decodes the sampled latents. Its weights and dtype are
    // checked before anything is written; it is loaded once there is work to do.
    const decodeChunkSize = checkInt('--decode-chunk-size', o.decodeChunkSize ?? 10, 1);
    if (latent && o.vae) checkVaeChannels(o.vae, C);
    if (latent && !o.vae) {
      resolveVaePath(o.vaePath);
      resolveVaeDtype(s.device, o.vaeDtype);
    }

    const samplesDir = path.join(s.evalDir, 'samples');
    fs.mkdirSync(samplesDir, { recursive: true });
    await writeModelConfigOnce(s.evalDir, modelConfigJson(meta, { useDdim: o.useDdim ?? false, timestepRespacing, checkpoint: o.checkpoint, sampler }));

    const report: SampleRunReport = { evalDir: s.evalDir, identifier: s.identifier, written: [], existing: [], claimedElsewhere: [] };
    const todo: number[] = [];
    for (let i = start; i < stop; i++) (fs.existsSync(samplePath(s.evalDir, i, sampleIdx)) ? report.existing : todo).push(i);
    if (todo.length === 0) {
      log(`Nothing to do: all ${stop - start} samples of [${start}, ${stop}) exist in ${samplesDir}`);
      return report;
    }

    const loaded = loadModelCheckpoint(o.checkpoint, { device: s.device, timestepRespacing });
    const nStages = countStages({ scheme, T: s.T, nObs: s.nObs, maxFrames: s.maxFrames, stepSize: s.stepSize });
    const genDevice = s.device.startsWith('cuda') ? s.device : 'cpu';
    const held: Claim[] = [];
    let vae: AutoencoderKL | undefined;
    let ownVae = false;
    let batchNo = 0;
    const runBatch = (claims: Claim[], indices: number[]): void => {
      batchNo++;
      const label = `sample ${indices[0]}…${indices[indices.length - 1]} (batch ${batchNo})`;
      let bar: ReturnType<typeof progress> | undefined;
      try {
        tidy(() => {
          const videos = loadBatch(dataset!, indices, s.device);
          const generator = new Generator(noiseSeed(indices, sampleIdx, o.seed ?? 0), genDevice);
          const { samples } = sampleVideo({
            model: loaded.model,
            diffusion: loaded.diffusion,
            videos,
            nObs: s.nObs,
            maxFrames: s.maxFrames,
            stepSize: s.stepSize,
            scheme,
            sampler: samplerArgs,
            clipDenoised,
            amp: o.amp ?? 'off',
            generator,
            embedFrames,
            optimalSchedule: optimal,
            onWarning: log,
            onStep: (stage, i, total) => {
              bar ??= progress(label, nStages * total, 'steps');
              bar.update(stage * total + i + 1, `stage ${stage + 1}/${nStages}`);
            },
          });
          // Latent models: decode the final latents [B, T, 4, h, w] → pixels [B, T, 3, f·h, f·w].
          const pixels = vae ? decodeWithProgress(vae, samples, decodeChunkSize, progress, `decode ${label}`) : samples;
          const bytes = samplesToU8(pixels);
          const shape = pixels.shape.slice(1);
          indices.forEach((idx, b) => {
            writeNpy(samplePath(s.evalDir, idx, sampleIdx), { dtype: '|u1', shape, data: bytes[b]! });
            claims[b]!.release();
            report.written.push(idx);
          });
        });
      } finally {
        bar?.stop();
      }
    };
    try {
      if (latent) {
        vae = o.vae ?? loadVae(o.vaePath, { device: s.device, dtype: o.vaeDtype ?? 'auto' });
        ownVae = !o.vae;
        checkVaeChannels(vae, C);
      }
      let pending: { index: number; claim: Claim }[] = [];
      const flush = () => {
        if (pending.length === 0) return;
        const batch = pending;
        pending = [];
        runBatch(
          batch.map((p) => p.claim),
          batch.map((p) => p.index),
        );
      };
      for (const i of todo) {
        const c = claimOutput(samplePath(s.evalDir, i, sampleIdx));
        if (c === 'exists') report.existing.push(i);
        else if (c === 'claimed') report.claimedElsewhere.push(i);
        else {
          held.push(c);
          pending.push({ index: i, claim: c });
          if (pending.length === batchSize) flush();
        }
      }
      flush();
    } finally {
      for (const c of held) c.release();
      loaded.model.dispose();
      if (ownVae) vae?.dispose();
    }
    report.existing.sort((a, b) => a - b);
    log(
      `wrote ${report.written.length} samples to ${samplesDir}` +
        (report.written.length ? ` (${report.written.join(', ')})` : '') +
        (report.existing.length ? `; ${report.existing.length} already existed` : '') +
        (report.claimedElsewhere.length ? `; ${report.claimedElsewhere.length} are being sampled by other processes (${report.claimedElsewhere.join(', ')})` : ''),
    );
    return report;
  } finally {
    ownEmbedder?.dispose();
  }
}
