/**
 * Long-video sampling (REFERENCE_SPEC §7.2 `sample_video`): generate every frame of a batch of
 * videos stage by stage, as a sampling scheme (§7.3) dictates, each stage one full diffusion chain
 * over at most K frames conditioned on frames that are already known.
 *
 * ```ts
 * const { samples, stages } = sampleVideo({
 *   model, diffusion, videos,            // videos: ground truth [B, T, C, H, W]; first nObs frames are kept
 *   nObs: 36, maxFrames: 20, scheme: 'hierarchy-2', sampler: 'heun-80-inf-0-1-1000-0.002-7-50',
 * });
 * const bytes = samplesToU8(samples);   // [B, T, C, H, W] uint8, floor((clamp(x,−1,1)+1)/2·255)
 * ```
 *
 * Every video of the batch shares the scheme's stages (non-adaptive schemes give the same lists to
 * all videos; adaptive ones may choose different observed frames per video, but always the same
 * number). Per stage: `frameIndices = [obs_b, lat_b]` (positions within the video), `x0` = the
 * current samples at those positions, `obsMask` = 1 on the obs part, `latentMask = 1 − obsMask`;
 * the sampler runs on the model closure `(x, t) → model.forward({x, x0, timesteps: t, …})`, and the
 * last `|lat_b|` output frames are written back to `samples[b, lat_b]`.
 *
 * This module is engine-level library code: it prints nothing (progress goes through callbacks)
 * and has no file I/O; `flexvid sample` (`src/experiments/sample-run.ts`) wraps it.
 */
import { adopt, arange, Generator, inferenceMode, keep, tensor, tidy, withAmp, zerosLike, type AmpMode, type Tensor } from '../engine/index.ts';
import type { GaussianDiffusion, ModelFn } from '../diffusion/gaussian-diffusion.ts';
import { parseSampler, DEFAULT_SAMPLER, type SamplerArgs } from '../diffusion/sampler-args.ts';
import { sampleWith } from '../diffusion/samplers.ts';
import { FlexvidError, OptionError } from '../util/errors.ts';
import {
  collectStages,
  createSamplingScheme,
  isAdaptiveScheme,
  type EmbedFn,
  type OptimalSchedule,
  type SchemeOptions,
  type Stage,
} from './schemes.ts';

/** The model interface `sampleVideo` needs (REFERENCE_SPEC §4.1); `UNetVideoModel` satisfies it. */
export interface VideoDenoiser {
  /** `x`, `x0`: `[B, K, C, H, W]`; `timesteps`: `[B]`; `frameIndices`: `[B, K]` int64; masks `[B, K]`. Returns `[B, K, C', H, W]`. */
  forward(inputs: { x: Tensor; x0: Tensor; timesteps: Tensor; frameIndices: Tensor; obsMask: Tensor; latentMask: Tensor; outputMask?: Tensor }): Tensor;
}

/**
 * Embeds frames for the adaptive schemes (§7.3, LPIPS): `frames` `[N, C, H, W]` in [-1, 1] →
 * one vector per frame whose squared Euclidean distances are the perceptual distances.
 */
export type FrameEmbedder = (frames: Tensor) => Float32Array[];

/** Options of {@link sampleVideo}. */
export interface SampleVideoOptions {
  model: VideoDenoiser;
  diffusion: GaussianDiffusion;
  /** Ground-truth videos `[B, T, C, H, W]` (float32, model space); only frames `< nObs` are read. */
  videos: Tensor;
  /** Leading observed frames n_obs (0 = unconditional start). */
  nObs: number;
  /** K: frames per stage (observed + latent), `--max_frames`. */
  maxFrames: number;
  /** S: frames generated per stage, `--max_latent_frames`; default ⌊K/2⌋. */
  stepSize?: number;
  /** Sampling scheme name (§7.3), e.g. `autoreg`, `hierarchy-2`, `adaptive-autoreg`. */
  scheme: string;
  /** Sampler string or parsed sampler (§5.7, §7.4); default the reference's Heun string. */
  sampler?: string | SamplerArgs;
  /** Clamp x̂0 to [-1, 1] (default true; false for latent models). */
  clipDenoised?: boolean;
  /** Mixed precision of the model calls: bf16 autocast (CPU with AVX-512 BF16/AMX, or CUDA), fp16 (CUDA). Default off. */
  amp?: AmpMode;
  /** Source of all sampler noise (reproducible sampling). */
  generator?: Generator;
  /** Frame embedder, required by the adaptive schemes. */
  embedFrames?: FrameEmbedder;
  /** `--optimality` schedule: stage → observed frames (non-adaptive schemes). */
  optimalSchedule?: OptimalSchedule;
  /** §10.3 #34 correction of the autoregressive schemes (default false = faithful). */
  correctedSchemes?: boolean;
  /** Called before each stage runs. */
  onStage?: (stage: Stage) => void;
  /** Called after every sampler step of every stage. */
  onStep?: (stage: number, step: number, stepsInStage: number) => void;
  /** Scheme warnings (missing optimal-schedule entries). */
  onWarning?: (message: string) => void;
}

/** Result of {@link sampleVideo}. */
export interface SampleVideoResult {
  /**
   * `[B, T, C, H, W]` float32 in model space: ground truth on frames `< nObs`, generated elsewhere.
   * Created in inference mode (fine for any read; not usable in autograd). The caller owns it
   * (or the enclosing `tidy` scope does).
   */
  samples: Tensor;
  /** The stages that were run, in order (per-video index lists). */
  stages: Stage[];
}

/** Per-stage model inputs as plain index lists (validated). */
export interface StageLayout {
  /** `[B][k]`: `[...obs_b, ...lat_b]`. */
  frameIndices: number[][];
  /** Observed frames per video (same for all videos). */
  nObs: number;
  /** Latent frames per video (same for all videos). */
  nLatent: number;
}

/**
 * Lay out one stage's model input (§7.2): per video `[obs_b, lat_b]`, all videos with the same
 * counts (the batch is one tensor). Throws when a video's lists have another length or an index
 * falls outside `[0, T)`.
 */
export function stageLayout(stage: Stage, T: number): StageLayout {
  const B = stage.obs.length;
  if (B === 0 || stage.latent.length !== B) throw new FlexvidError(`stage ${stage.step}: ${stage.obs.length} observed lists but ${stage.latent.length} latent lists`);
  const nObs = stage.obs[0]!.length;
  const nLatent = stage.latent[0]!.length;
  const frameIndices: number[][] = [];
  for (let b = 0; b < B; b++) {
    const obs = stage.obs[b]!;
    const lat = stage.latent[b]!;
    if (obs.length !== nObs || lat.length !== nLatent) {
      throw new FlexvidError(`stage ${stage.step}: video ${b} has ${obs.length}+${lat.length} frames but video 0 has ${nObs}+${nLatent}; a batch needs equal counts`);
    }
    const all = [...obs, ...lat];
    for (const f of all) if (!(Number.isInteger(f) && f >= 0 && f < T)) throw new FlexvidError(`stage ${stage.step}: frame index ${f} outside [0, ${T})`);
    frameIndices.push(all);
  }
  if (nLatent === 0) throw new FlexvidError(`stage ${stage.step}: no latent frames`);
  return { frameIndices, nObs, nLatent };
}

/** int64 `[rows, cols]` index tensor on `device`. */
function indexTensor(rows: number[][], device: string): Tensor {
  const flat = rows.flat();
  return tensor(Float64Array.from(flat), { shape: [rows.length, rows[0]?.length ?? 0], dtype: 'int64', device });
}

/** float32 `[B, k]` mask: 1 on the first `nOnes` slots of every row (or on the rest with `invert`). */
function prefixMask(B: number, k: number, nOnes: number, device: string, invert = false): Tensor {
  const m = new Float32Array(B * k);
  for (let b = 0; b < B; b++) for (let j = 0; j < k; j++) m[b * k + j] = (j < nOnes) !== invert ? 1 : 0;
  return tensor(m, { shape: [B, k], device });
}

/**
 * The model closure of one stage (§7.2): `(x, t) → model.forward({x, x0, timesteps: t,
 * frameIndices, obsMask, latentMask})`. Only the latent frames' outputs are asked for
 * (`outputMask`): every sampler overwrites the observed frames and the stage losses mask them, so
 * the model skips their frame-independent last layers.
 */
export function stageModelFn(model: VideoDenoiser, inputs: { x0: Tensor; frameIndices: Tensor; obsMask: Tensor; latentMask: Tensor }): ModelFn {
  return (x, t) =>
    model.forward({ x, x0: inputs.x0, timesteps: t, frameIndices: inputs.frameIndices, obsMask: inputs.obsMask, latentMask: inputs.latentMask, outputMask: inputs.latentMask });
}

/** Scheme options shared by {@link sampleVideo} and {@link planStages}. */
function schemeOptions(o: { T: number; nObs: number; maxFrames: number; stepSize?: number; batchSize: number; optimalSchedule?: OptimalSchedule; correctedSchemes?: boolean; onWarning?: (m: string) => void; embed?: EmbedFn }): SchemeOptions {
  return {
    videoLength: o.T,
    numObs: o.nObs,
    maxFrames: o.maxFrames,
    stepSize: o.stepSize,
    batchSize: o.batchSize,
    optimalSchedule: o.optimalSchedule,
    corrected: o.correctedSchemes,
    onWarning: o.onWarning,
    embed: o.embed,
  };
}

function missingEmbedder(scheme: string): OptionError {
  return new OptionError('embedFrames', `a frame embedder (LPIPS) for the adaptive scheme ${scheme}`, undefined);
}

/**
 * Generate videos stage by stage (REFERENCE_SPEC §7.2 `sample_video`). Runs in inference mode;
 * every intermediate tensor is freed. See the module comment for the per-stage model inputs.
 *
 * @returns `samples` `[B, T, C, H, W]` (observed frames bit-identical to `videos`) and the stages.
 */
export function sampleVideo(o: SampleVideoOptions): SampleVideoResult {
  const shape = o.videos.shape;
  if (shape.length !== 5) throw new OptionError('videos', 'a [B, T, C, H, W] tensor', shape);
  const [B, T] = shape as [number, number];
  const device = o.videos.device;
  const samplerArgs = typeof o.sampler === 'object' ? o.sampler : parseSampler(o.sampler ?? DEFAULT_SAMPLER);
  const clip = o.clipDenoised ?? true;
  if (isAdaptiveScheme(o.scheme) && !o.embedFrames) throw missingEmbedder(o.scheme);
  return inferenceMode(() => {
    const samples = keep(
      tidy(() => {
        const s = zerosLike(o.videos).to({ dtype: 'float32' });
        if (o.nObs > 0) s.narrow(1, 0, Math.min(o.nObs, T)).copy_(o.videos.narrow(1, 0, Math.min(o.nObs, T)));
        return s;
      }),
    );
    try {
      const embed: EmbedFn | undefined = o.embedFrames
        ? (b, frames) =>
            tidy(() => {
              const idx = tensor(Float64Array.from(frames), { dtype: 'int64', device });
              return o.embedFrames!(samples.select(0, b).indexSelect(0, idx));
            })
        : undefined;
      const scheme = createSamplingScheme(o.scheme, schemeOptions({ ...o, T, batchSize: B, embed }));
      const stages: Stage[] = [];
      for (const stage of scheme) {
        stages.push(stage);
        if (stages.length > 100_000) throw new FlexvidError(`${scheme.displayName}: more than 100000 stages`);
        o.onStage?.(stage);
        const lay = stageLayout(stage, T);
        tidy(() => {
          const k = lay.nObs + lay.nLatent;
          const fi = indexTensor(lay.frameIndices, device);
          const bi = arange(0, B, 1, { dtype: 'int64', device }).reshape([B, 1]);
          const x0 = samples.index([bi, fi]);
          const obsMask = prefixMask(B, k, lay.nObs, device);
          const latentMask = prefixMask(B, k, lay.nObs, device, true);
          const modelFn = stageModelFn(o.model, { x0, frameIndices: fi, obsMask, latentMask });
          const out = withAmp(o.amp ?? 'off', device, () =>
            sampleWith(samplerArgs, o.diffusion, modelFn, {
              x0,
              obsMask,
              clipDenoised: clip,
              generator: o.generator,
              onStep: o.onStep ? (i, total) => o.onStep!(stage.step, i, total) : undefined,
            }),
          );
          const latIdx = indexTensor(lay.frameIndices.map((r) => r.slice(lay.nObs)), device);
          samples.indexPut_([bi, latIdx], out.narrow(1, lay.nObs, lay.nLatent).to({ dtype: 'float32' }));
        });
      }
      return { samples: adopt(samples), stages };
    } catch (e) {
      samples.dispose();
      throw e;
    }
  });
}

/** Options of {@link planStages}. */
export interface PlanStagesOptions {
  scheme: string;
  T: number;
  nObs: number;
  maxFrames: number;
  stepSize?: number;
  batchSize?: number;
  optimalSchedule?: OptimalSchedule;
  correctedSchemes?: boolean;
  onWarning?: (message: string) => void;
  /**
   * Adaptive schemes only: the videos whose frames are embedded `[B, T, C, H, W]` (e.g. the ground
   * truth, to picture a schedule) and the embedder.
   */
  videos?: Tensor;
  embedFrames?: FrameEmbedder;
}

/**
 * The stages a scheme would run, without sampling (`--just-visualise`). Adaptive schemes choose
 * observed frames from frame content, so they need `videos` and `embedFrames` (their stages then
 * show what the scheme picks on those videos).
 */
export function planStages(o: PlanStagesOptions): Stage[] {
  let embed: EmbedFn | undefined;
  if (isAdaptiveScheme(o.scheme)) {
    if (!o.videos || !o.embedFrames) throw missingEmbedder(o.scheme);
    const videos = o.videos;
    const ef = o.embedFrames;
    embed = (b, frames) =>
      inferenceMode(() =>
        tidy(() => ef(videos.select(0, b).indexSelect(0, tensor(Float64Array.from(frames), { dtype: 'int64', device: videos.device })))),
      );
  }
  const batchSize = o.batchSize ?? (o.videos ? o.videos.size(0) : 1);
  return collectStages(createSamplingScheme(o.scheme, schemeOptions({ ...o, batchSize, embed })), 100_000);
}

/**
 * Number of stages of a scheme (for progress bars). Adaptive schemes choose their latent frames
 * exactly like their non-adaptive counterparts (`adaptive-autoreg` → `autoreg`,
 * `adaptive-hierarchy-N` → `hierarchy-N`), so the count is taken from those.
 */
export function countStages(o: { scheme: string; T: number; nObs: number; maxFrames: number; stepSize?: number; correctedSchemes?: boolean }): number {
  const base = o.scheme.replace(/^adaptive-/, '');
  return planStages({ ...o, scheme: base, batchSize: 1 }).length;
}

/**
 * Convert model-space videos to the stored sample format (§7.2): `floor((clamp(x,−1,1)+1)/2·255)`
 * computed in float32 (as the reference's tensors), uint8. `[B, T, C, H, W]` → one `Uint8Array`
 * of `T·C·H·W` bytes per video (C-order `[T, C, H, W]`).
 */
export function samplesToU8(samples: Tensor): Uint8Array[] {
  const [B] = samples.shape as [number];
  const bytes = tidy(() =>
    inferenceMode(() => samples.to({ dtype: 'float32' }).clamp(-1, 1).add(1).div(2).mul(255).floor().to({ dtype: 'uint8', device: 'cpu' }).toBytes()),
  );
  const per = bytes.length / B;
  return Array.from({ length: B }, (_, b) => bytes.slice(b * per, (b + 1) * per));
}

/**
 * Seed of the sampler noise for a batch (§10.3 #36 option): a 53-bit FNV-1a-style hash of
 * `(baseSeed, sampleIdx, data indices of the batch)`. With batch size 1 each file depends only on
 * `(index, sample_idx)`; with larger batches on the batch's indices, so re-running the same
 * command reproduces the same files and different `--sample-idx` values give different noise.
 */
export function noiseSeed(indices: readonly number[], sampleIdx: number, baseSeed = 0): number {
  let h = 0xcbf29ce484222325n;
  const mix = (v: number) => {
    let x = BigInt(Math.trunc(v)) & 0xffffffffffffffffn;
    for (let i = 0; i < 8; i++) {
      h ^= x & 0xffn;
      h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
      x >>= 8n;
    }
  };
  mix(baseSeed);
  mix(sampleIdx);
  mix(indices.length);
  for (const i of indices) mix(i);
  return Number(h & 0x1fffffffffffffn);
}
