/**
 * Sampling and evaluation commands (docs/evaluation.md):
 *
 *   flexvid sample CHECKPOINT --stop-index N --sampling-scheme S [...]   REFERENCE_SPEC §7
 *   flexvid video  --eval-dir DIR [--do-n 1 --n-seeds 1 --format gif]    §8.1
 *   flexvid loss   CHECKPOINT --stop-index N [--trials 10 ...]            §8.5
 *   flexvid minade --eval-dir DIR [--num-videos N --sample-indices 0,1]  §8.4
 *   flexvid collect --run-ids A B --eval-dir-suffix P --metric-prefixes fvd- [...]  §8.6
 *
 * Flags are kebab-case; the reference scripts' snake_case spellings (`--stop_index`,
 * `--sampling_scheme`, `--wandb_ids`, …) are accepted as hidden aliases. Boolean flags take an
 * optional value (`--clip-denoised false`, `--use-ddim`, yes/true/t/y/1, no/false/f/n/0).
 */
import type { AmpMode } from '../engine/index.ts';
import { Option, type Command } from 'commander';
import { OptionError } from '../util/errors.ts';
import { parseBool } from '../training/options.ts';
import { startProgress } from './progress.ts';
import type { ProgressFactory } from '../experiments/common.ts';
import { parseIntList } from '../experiments/common.ts';
import { OPTIMALITY_CHOICES, runSampling, type EvalRunOptions } from '../experiments/sample-run.ts';
import { makeVideo, VIDEO_FORMATS } from '../experiments/make-video.ts';
import { runLoss } from '../experiments/evaluate-loss.ts';
import { runMinade } from '../experiments/minade.ts';
import { collectResults } from '../experiments/collect.ts';
import { SCHEME_NAMES } from '../sampling/schemes.ts';
import { DEFAULT_SAMPLER } from '../diffusion/sampler-args.ts';
import type { EvalConfig } from '../data/datasets.ts';
import { VAE_ENV } from '../vae/index.ts';
import { addFlag, intArg, numArg, type FlagSpec } from './args.ts';

/** `--vae-dtype` choices. */
export const VAE_DTYPES = ['auto', 'float32', 'bfloat16', 'float16'] as const;

function camel(kebab: string): string {
  return kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Integer flag parser reporting the flag name. */


function boolArg(flag: string) {
  return (value: string): boolean => parseBool(flag, value);
}

/** `None`/`none`/`null` → null, else an integer (for `--upper-frame-range`). */
function optionalIntArg(flag: string) {
  const int = intArg(flag, 0);
  return (value: string): number | null => (/^(none|null)$/i.test(value.trim()) ? null : int(value));
}

function required<T>(flag: string, v: T | undefined, what = 'a value'): T {
  if (v === undefined || v === null) throw new OptionError(flag, `${what} (required)`, v);
  return v;
}

/** Split list flags given as `a b c` and/or `a,b,c`. */
function listOf(v: string[] | string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  return (Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s !== '');
}

function reporting(quiet: boolean | undefined): { log: (l: string) => void; progress: ProgressFactory } {
  return {
    log: (l) => process.stdout.write(l + '\n'),
    progress: (label, total, unit) => startProgress(label, total, { unit, quiet: Boolean(quiet) }),
  };
}

/** `--vae`, `--vae-dtype` of the commands that decode latents (docs/latent.md). */
function vaeFlags(): FlagSpec[] {
  return [
    { name: 'vae', arg: '<path>', help: `SDXL VAE weights (file or folder) for latent models (default $${VAE_ENV})` },
    { name: 'vae-dtype', arg: '<dtype>', help: 'VAE dtype: auto (float16 on CUDA, float32 on the CPU), float32, bfloat16, float16', choices: VAE_DTYPES, default: 'auto' },
  ];
}

/** Flags shared by `sample` and `loss` (§7.1, §8.5). */
function addCommonEvalFlags(cmd: Command): void {
  const flags: FlagSpec[] = [
    { name: 'start-index', arg: '<n>', help: 'first dataset item', parse: intArg('--start-index', 0), default: 0 },
    { name: 'stop-index', arg: '<n>', help: 'one past the last dataset item (required)', parse: intArg('--stop-index', 1) },
    { name: 'num-sampled-videos', arg: '<n>', help: 'windows of evenly spaced evaluation views (default stop − start)', parse: intArg('--num-sampled-videos', 1) },
    { name: 'batch-size', arg: '<n>', help: 'videos per batch', parse: intArg('--batch-size', 1), default: 8 },
    { name: 'n-obs', arg: '<n>', help: 'observed leading frames', parse: intArg('--n-obs', 0), default: 36 },
    { name: 'T', arg: '<n>', help: "video length (default: the dataset's T)", parse: intArg('--T', 1) },
    { name: 'max-frames', arg: '<k>', help: "frames per stage K (default: the checkpoint's max_frames)", parse: intArg('--max-frames', 1) },
    { name: 'max-latent-frames', arg: '<s>', help: 'frames generated per stage (default ⌊K/2⌋)', parse: intArg('--max-latent-frames', 1) },
    { name: 'sampler', arg: '<str>', help: 'ddpm, ddim[-eta], heun-<8 fields>, heun2-<8 fields>', default: DEFAULT_SAMPLER },
    { name: 'eval-on-train', arg: '[bool]', help: 'use the train stream instead of the test stream', parse: boolArg('--eval-on-train'), default: false },
    { name: 'timestep-respacing', arg: '<spec>', help: 'respace the sampling chain ("" = all steps, "50", "ddim25", …)', default: '' },
    { name: 'device', arg: '<dev>', help: 'cpu, cuda, cuda:N or auto', default: 'auto' },
    { name: 'amp', arg: '<mode>', help: 'mixed precision of the model calls: off, bf16 (CPU with AVX-512 BF16/AMX, or CUDA), fp16 (CUDA)', choices: ['off', 'bf16', 'fp16'], default: 'off' },
    { name: 'eval-dataset-config', arg: '<cfg>', help: 'evaluation view', choices: ['default', 'continuous', 'chunked'], default: 'default' },
    { name: 'lower-frame-range', arg: '<n>', help: 'first frame of the stream range', parse: intArg('--lower-frame-range', 0), default: 0 },
    { name: 'upper-frame-range', arg: '<n>', help: 'end of the stream range (default: the end)', parse: optionalIntArg('--upper-frame-range') },
    { name: 'decode-chunk-size', arg: '<n>', help: 'frames per VAE decoder call (latent models)', parse: intArg('--decode-chunk-size', 1), default: 10 },
    { name: 'results-dir', arg: '<dir>', help: 'root of the results tree', default: 'results' },
    { name: 'seed', arg: '<n>', help: 'base seed of the noise', parse: intArg('--seed', 0), default: 0 },
    { name: 'quiet', arg: '', help: 'no progress bars' },
  ];
  for (const f of flags) addFlag(cmd, f);
}

/** Registers `flexvid sample`, `video`, `loss`, `minade` and `collect`. */
/** The options of the flags {@link addCommonEvalFlags} adds, read back from commander's values. */
function commonEvalOptions(checkpoint: string, o: Record<string, unknown>): EvalRunOptions {
  return {
    ...reporting(o.quiet as boolean | undefined),
    checkpoint,
    startIndex: o.startIndex as number,
    stopIndex: required('--stop-index', o.stopIndex as number | undefined),
    numSampledVideos: o.numSampledVideos as number | undefined,
    batchSize: o.batchSize as number,
    nObs: o.nObs as number,
    T: o.T as number | undefined,
    maxFrames: o.maxFrames as number | undefined,
    maxLatentFrames: o.maxLatentFrames as number | undefined,
    sampler: o.sampler as string,
    evalOnTrain: o.evalOnTrain as boolean,
    timestepRespacing: o.timestepRespacing as string,
    device: o.device as string,
    amp: o.amp as AmpMode,
    evalDatasetConfig: o.evalDatasetConfig as EvalConfig,
    lowerFrameRange: o.lowerFrameRange as number,
    upperFrameRange: (o.upperFrameRange as number | undefined) ?? null,
    decodeChunkSize: o.decodeChunkSize as number,
    resultsDir: o.resultsDir as string,
    seed: o.seed as number,
  };
}

export function register(program: Command): void {
  const sample = program
    .command('sample')
    .description('sample long videos from a checkpoint into results/<run>/<ckpt>_<sampler>/<identifier>/samples (REFERENCE_SPEC §7)')
    .argument('<checkpoint>', 'a model<step>.safetensors or ema_<rate>_<step>.safetensors file');
  addCommonEvalFlags(sample);
  const sampleFlags: FlagSpec[] = [
    { name: 'sampling-scheme', arg: '<name>', help: 'sampling scheme (required)', choices: SCHEME_NAMES },
    { name: 'eval-dir', arg: '<dir>', help: 'use this folder instead of the model results folder (the identifier is still appended)' },
    { name: 'use-ddim', arg: '[bool]', help: 'recorded in model_config.json only (as the reference)', parse: boolArg('--use-ddim'), default: false },
    { name: 'clip-denoised', arg: '[bool]', help: 'clamp the denoised estimate to [-1, 1] (forced false for latent models)', parse: boolArg('--clip-denoised'), default: true },
    { name: 'sample-idx', arg: '<k>', help: 'sample file suffix k; also seeds the noise', parse: intArg('--sample-idx', 0), default: 0 },
    { name: 'optimality', arg: '<kind>', help: 'condition on the frames of <eval dir>/optimal_schedule.json', choices: OPTIMALITY_CHOICES },
    { name: 'just-visualise', arg: '', help: 'only write the stage-schedule picture <eval dir>/schedule.png' },
    { name: 'lpips-weights', arg: '<file>', help: 'LPIPS weights for adaptive schemes (default $FLEXVID_LPIPS_WEIGHTS)' },
    { name: 'custom-clip-path', arg: '<dir>', help: 'PLAICraft: a folder of batch_*.pt latents forming one clip' },
    ...vaeFlags(),
  ];
  for (const f of sampleFlags) addFlag(sample, f);
  addFlag(sample, { name: 'just-visualize', arg: '', help: 'alias of --just-visualise' });
  sample.action(async (checkpoint: string, o) => {
    await runSampling({
      ...commonEvalOptions(checkpoint, o),
      samplingScheme: required('--sampling-scheme', o.samplingScheme as string | undefined, `one of ${SCHEME_NAMES.join(', ')}`),
      evalDir: o.evalDir,
      useDdim: o.useDdim,
      clipDenoised: o.clipDenoised,
      sampleIdx: o.sampleIdx,
      optimality: o.optimality,
      justVisualise: Boolean(o.justVisualise || o.justVisualize),
      lpipsWeights: o.lpipsWeights,
      customClipPath: o.customClipPath,
      vaePath: o.vae,
      vaeDtype: o.vaeDtype,
    });
  });

  const video = program
    .command('video')
    .description('grid video of samples beside the ground truth: <eval dir>/videos/<do_n>_<n_seeds>.<fmt> (REFERENCE_SPEC §8.1)');
  const videoFlags: FlagSpec[] = [
    { name: 'eval-dir', arg: '<dir>', help: 'evaluation directory (required)' },
    { name: 'num-sampled-videos', arg: '<n>', help: 'windows of evenly spaced evaluation views', parse: intArg('--num-sampled-videos', 1) },
    { name: 'out-dir', arg: '<dir>', help: 'output root (default: the eval dir)' },
    { name: 'add-gt', arg: '[bool]', help: 'ground truth above the samples', parse: boolArg('--add-gt'), default: true },
    { name: 'do-n', arg: '<n>', help: 'data indices shown side by side', parse: intArg('--do-n', 1), default: 1 },
    { name: 'start-idx', arg: '<n>', help: 'first data index', parse: intArg('--start-idx', 0), default: 0 },
    { name: 'n-seeds', arg: '<n>', help: 'samples per data index, stacked vertically', parse: intArg('--n-seeds', 1), default: 1 },
    { name: 'format', arg: '<fmt>', help: 'output format', choices: VIDEO_FORMATS, default: 'gif' },
    { name: 'fps', arg: '<n>', help: 'frames per second', parse: numArg('--fps'), default: 10 },
    { name: 'decode-chunk-size', arg: '<n>', help: 'frames per VAE decoder call (latent ground truth)', parse: intArg('--decode-chunk-size', 1), default: 10 },
    { name: 'custom-clip-path', arg: '<dir>', help: 'PLAICraft custom clip folder' },
    { name: 'device', arg: '<dev>', help: 'where the VAE decodes latent ground truth: cpu, cuda, cuda:N or auto', default: 'auto' },
    ...vaeFlags(),
  ];
  for (const f of videoFlags) addFlag(video, f);
  video.action(async (o) => {
    await makeVideo({
      ...reporting(false),
      evalDir: required('--eval-dir', o.evalDir as string | undefined),
      numSampledVideos: o.numSampledVideos,
      outDir: o.outDir,
      addGt: o.addGt,
      doN: o.doN,
      startIdx: o.startIdx,
      nSeeds: o.nSeeds,
      format: o.format,
      fps: o.fps,
      customClipPath: o.customClipPath,
      decodeChunkSize: o.decodeChunkSize,
      device: o.device,
      vaePath: o.vae,
      vaeDtype: o.vaeDtype,
    });
  });

  const loss = program
    .command('loss')
    .description('teacher-forced validation loss of a checkpoint → <eval dir>/loss-<trials>.txt (REFERENCE_SPEC §8.5)')
    .argument('<checkpoint>', 'a model or EMA checkpoint');
  addCommonEvalFlags(loss);
  const lossFlags: FlagSpec[] = [
    { name: 'eval-dir', arg: '<dir>', help: 'output directory, used as is (default: the autoreg eval dir of these flags)' },
    { name: 'trials', arg: '<n>', help: 'noise levels per stage', parse: intArg('--trials', 1), default: 10 },
    { name: 'schedule-sampler', arg: '<name>', help: "timestep sampler (default: the checkpoint's)" },
  ];
  for (const f of lossFlags) addFlag(loss, f);
  loss.action(async (checkpoint: string, o) => {
    await runLoss({
      ...commonEvalOptions(checkpoint, o),
      evalDir: o.evalDir,
      trials: o.trials,
      scheduleSampler: o.scheduleSampler,
    });
  });

  const minade = program
    .command('minade')
    .description('bouncing-ball minADE, colour accuracy and transition KL of an eval dir (REFERENCE_SPEC §8.4)');
  const minadeFlags: FlagSpec[] = [
    { name: 'eval-dir', arg: '<dir>', help: 'evaluation directory (required)' },
    { name: 'num-videos', arg: '<n>', help: 'test videos (default: consecutive sample files from index 0)', parse: intArg('--num-videos', 1) },
    { name: 'n-balls', arg: '<n>', help: 'balls per video', parse: intArg('--n-balls', 1), default: 2 },
    { name: 'sample-indices', arg: '<k...>', help: 'seeds per video, e.g. 0,1,2 or 0 1 2 (default 0)' },
  ];
  for (const f of minadeFlags) addFlag(minade, f);
  minade.action(async (o) => {
    await runMinade({
      ...reporting(false),
      evalDir: required('--eval-dir', o.evalDir as string | undefined),
      numVideos: o.numVideos,
      nBalls: o.nBalls,
      sampleIndices: o.sampleIndices ? parseIntList('--sample-indices', o.sampleIndices as string[]) : undefined,
    });
  });

  const collect = program
    .command('collect')
    .description('collect metric files of runs into summarized/<name>/{summary.csv, final.csv, summary.gif, report.html} (REFERENCE_SPEC §8.6)');
  const collectFlags: FlagSpec[] = [
    { name: 'run-ids', arg: '<ids...>', help: 'run ids (folders under the results root); required' },
    { name: 'wandb-ids', arg: '<ids...>', help: 'alias of --run-ids' },
    { name: 'nicknames', arg: '<names...>', help: 'one per run (default config_<i>)' },
    { name: 'eval-dir-suffix', arg: '<path>', help: 'path below <results>/<run-id>/ to scan (required)' },
    { name: 'metric-prefixes', arg: '<prefixes...>', help: 'metric file name prefixes, e.g. fvd- minADE- (required)' },
    { name: 'output-dir', arg: '<name>', help: 'summary folder name', default: 'ball' },
    { name: 'video-name', arg: '<file>', help: 'video in <eval dir>/videos/ to copy and stack, e.g. 1_1.gif' },
    { name: 'results-dir', arg: '<dir>', help: 'results root', default: 'results' },
    { name: 'summarized-dir', arg: '<dir>', help: 'summaries root', default: 'summarized' },
  ];
  for (const f of collectFlags) addFlag(collect, f);
  collect.action(async (o) => {
    const runIds = listOf(o.runIds) ?? listOf(o.wandbIds);
    await collectResults({
      ...reporting(false),
      runIds: required('--run-ids', runIds, 'one or more run ids'),
      nicknames: listOf(o.nicknames),
      evalDirSuffix: required('--eval-dir-suffix', o.evalDirSuffix as string | undefined),
      metricPrefixes: required('--metric-prefixes', listOf(o.metricPrefixes), 'one or more prefixes'),
      outputDir: o.outputDir,
      videoName: o.videoName,
      resultsDir: o.resultsDir,
      summarizedDir: o.summarizedDir,
    });
  });
}
