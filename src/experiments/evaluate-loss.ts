/**
 * `flexvid loss CHECKPOINT` (REFERENCE_SPEC §8.5, `scripts/video_loss.py` of c6f25f7): the
 * teacher-forced validation loss of a checkpoint on the evaluation dataset.
 *
 * For every batch of ground-truth videos the `autoreg` scheme's stages are walked over the
 * **ground truth** (no sampling); per stage the training loss is computed on the stage's frames with
 * `latent_mask = eval_mask = the latent part`, at `trials` independent timesteps drawn from the
 * model's schedule sampler, each multiplied by the sampler's weight and averaged over the trials.
 * Per video the stages are combined weighted by their number of latent frames
 * (`Σ loss·n_lat / Σ n_lat`); the result is the mean over videos, written to
 * `<eval dir>/loss-<trials>.txt` (`%.18e`).
 */
import * as path from 'node:path';
import { arange, Generator, inferenceMode, randn, tensor, tidy, withAmp } from '../engine/index.ts';
import { createScheduleSampler } from '../diffusion/schedule-sampler.ts';
import { DEFAULT_SAMPLER } from '../diffusion/sampler-args.ts';
import { metricFileNames, writeMetricFile } from '../metrics/results.ts';
import { loadModelCheckpoint } from '../training/checkpoint.ts';
import { collectStages, createSamplingScheme } from '../sampling/schemes.ts';
import { stageLayout, stageModelFn } from '../sampling/pipeline.ts';
import { NumpyRandomState } from '../util/mt19937.ts';
import { FlexvidError, OptionError } from '../util/errors.ts';
import { noProgress, openEvalDataset } from './common.ts';
import { loadBatch, readCheckpointDescription, resolveEvalSettings, type EvalRunOptions } from './sample-run.ts';

/** Options of {@link runLoss} (§8.5 flags). */
export interface LossOptions extends EvalRunOptions {
  /**
   * Output directory, used as is (as the reference). Default: the eval dir `flexvid sample` would
   * use for the `autoreg` scheme with the same flags.
   */
  evalDir?: string;
  /** Only names the results folder when `evalDir` is not given (the reference only sets use_ddim). */
  sampler?: string;
  /** Accepted for compatibility (unused, as in the reference). */
  decodeChunkSize?: number;
  /** Noise levels per stage (default 10). */
  trials?: number;
  /** Seed of the timestep draws and the noise (default 0). */
  seed?: number;
  /** Schedule sampler name (default: the checkpoint's `--schedule-sampler`, else uniform). */
  scheduleSampler?: string;
}

/** What {@link runLoss} computed. */
export interface LossResult {
  loss: number;
  /** Per-video losses, in index order. */
  perVideo: number[];
  file: string;
}

/** Compute and write the validation loss (§8.5). */
export async function runLoss(o: LossOptions): Promise<LossResult> {
  const progress = o.progress ?? noProgress;
  const trials = o.trials ?? 10;
  if (!(Number.isSafeInteger(trials) && trials >= 1)) throw new OptionError('--trials', 'an integer ≥ 1', trials);
  const start = o.startIndex ?? 0;
  if (!(Number.isSafeInteger(start) && start >= 0)) throw new OptionError('--start-index', 'an integer ≥ 0', start);
  const stop = o.stopIndex;
  if (!(Number.isSafeInteger(stop) && stop > start)) throw new OptionError('--stop-index', `an integer > --start-index (${start})`, stop);
  const batchSize = o.batchSize ?? 8;
  if (!(Number.isSafeInteger(batchSize) && batchSize >= 1)) throw new OptionError('--batch-size', 'an integer ≥ 1', batchSize);
  const timestepRespacing = o.timestepRespacing ?? '';
  const meta = readCheckpointDescription(o.checkpoint);
  const s = resolveEvalSettings({ ...o, evalDir: undefined, meta, scheme: 'autoreg', sampler: o.sampler ?? DEFAULT_SAMPLER, timestepRespacing });
  const outDir = o.evalDir ?? s.evalDir;
  const { dataset } = await openEvalDataset(
    s.datasetName,
    { T: s.T, evalDatasetConfig: o.evalDatasetConfig ?? 'default', lowerFrameRange: o.lowerFrameRange ?? 0, upperFrameRange: o.upperFrameRange ?? null, evalOnTrain: o.evalOnTrain ?? false },
    { nData: o.numSampledVideos ?? stop - start, nDataFlag: '--num-sampled-videos' },
  );
  if (stop > dataset.length) throw new OptionError('--stop-index', `at most the ${dataset.length} items of the evaluation dataset`, stop);
  const samplerName = o.scheduleSampler ?? (typeof meta.config.train?.scheduleSampler === 'string' ? (meta.config.train.scheduleSampler as string) : 'uniform');
  const loaded = loadModelCheckpoint(o.checkpoint, { device: s.device, timestepRespacing });
  const diffusion = loaded.diffusion;
  const scheduleSampler = createScheduleSampler(samplerName, diffusion.schedule);
  const rng = new NumpyRandomState(o.seed ?? 0);
  const generator = new Generator(o.seed ?? 0, s.device.startsWith('cuda') ? s.device : 'cpu');
  const stagesPerVideo = collectStages(createSamplingScheme('autoreg', { videoLength: s.T, numObs: s.nObs, maxFrames: s.maxFrames, stepSize: s.stepSize, batchSize: 1 })).length;
  if (stagesPerVideo === 0) throw new FlexvidError(`nothing to evaluate: n_obs = ${s.nObs} already covers T = ${s.T}`);
  const perVideo: number[] = [];
  const bar = progress('loss', (stop - start) * stagesPerVideo, 'stages');
  try {
    for (let b0 = start; b0 < stop; b0 += batchSize) {
      const indices = Array.from({ length: Math.min(batchSize, stop - b0) }, (_, k) => b0 + k);
      const B = indices.length;
      const num = new Float64Array(B);
      const den = new Float64Array(B);
      tidy(() =>
        inferenceMode(() => withAmp(o.amp ?? 'off', s.device, () => {
          const videos = loadBatch(dataset, indices, s.device);
          const scheme = createSamplingScheme('autoreg', { videoLength: s.T, numObs: s.nObs, maxFrames: s.maxFrames, stepSize: s.stepSize, batchSize: B });
          for (const stage of scheme) {
            const lay = stageLayout(stage, s.T);
            const stageLoss = tidy(() => {
              const k = lay.nObs + lay.nLatent;
              const fi = tensor(Float64Array.from(lay.frameIndices.flat()), { shape: [B, k], dtype: 'int64', device: s.device });
              const bi = arange(0, B, 1, { dtype: 'int64', device: s.device }).reshape([B, 1]);
              const x = videos.index([bi, fi]);
              const maskData = new Float32Array(B * k);
              for (let b = 0; b < B; b++) for (let j = 0; j < k; j++) maskData[b * k + j] = j < lay.nObs ? 1 : 0;
              const obsMask = tensor(maskData, { shape: [B, k], device: s.device });
              const latentMask = obsMask.rsub(1);
              const modelFn = stageModelFn(loaded.model, { x0: x, frameIndices: fi, obsMask, latentMask });
              const acc = new Float64Array(B);
              for (let trial = 0; trial < trials; trial++) {
                const draw = scheduleSampler.sample(B, rng);
                const noise = randn(x.shape, generator, { device: s.device });
                const losses = diffusion.trainingLosses(modelFn, x, draw.t, { noise, latentMask, evalMask: latentMask });
                const l = losses.loss.toFloat64Array();
                for (let b = 0; b < B; b++) acc[b]! += l[b]! * Math.fround(draw.weights[b]!);
              }
              return Array.from(acc, (v) => v / trials);
            });
            for (let b = 0; b < B; b++) {
              num[b]! += stageLoss[b]! * lay.nLatent;
              den[b]! += lay.nLatent;
            }
            bar.update(perVideo.length * stagesPerVideo + (stage.step + 1) * B, `videos ${indices[0]}…${indices[B - 1]}`);
          }
        })),
      );
      for (let b = 0; b < B; b++) perVideo.push(num[b]! / den[b]!);
    }
  } finally {
    bar.stop();
    loaded.model.dispose();
  }
  const loss = perVideo.reduce((a, v) => a + v, 0) / perVideo.length;
  if (!Number.isFinite(loss)) throw new FlexvidError(`validation loss is not finite (${loss})`);
  const file = path.join(outDir, metricFileNames.loss(trials));
  writeMetricFile(file, loss);
  o.log?.(`loss ${loss} (${perVideo.length} videos, ${trials} trials per stage) → ${file}`);
  return { loss, perVideo, file };
}
