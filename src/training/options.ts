/**
 * Training options: every flag of the reference's `video_train.py` (REFERENCE_SPEC §6.1, §3.3)
 * plus flexvid's own, described once in a table that drives the CLI (`--help`, kebab-case with
 * snake_case aliases), `--config run.json` files and validation.
 */
import type { AmpMode } from '../engine/index.ts';
import { OptionError } from '../util/errors.ts';
import { resolveUNetConfig, type UNetConfig } from '../model/config.ts';
import type { DiffusionConfig } from '../diffusion/gaussian-diffusion.ts';

export type FlagType = 'int' | 'float' | 'string' | 'bool';

export interface FlagSpec {
  /** camelCase option name; the CLI flag is its kebab-case form, the alias its snake_case form. */
  key: string;
  type: FlagType;
  default: unknown;
  help: string;
  /** Allowed string values. */
  choices?: readonly string[];
  /** Accepted (stored in the config) but without effect, as in the reference (§10.2 item 26). */
  unused?: boolean;
  /** Rejected when set to a non-default value, with this reason (§10.2 item 25). */
  unsupported?: string;
  group: 'data' | 'stream' | 'optim' | 'run' | 'model' | 'diffusion';
}

export const TRAIN_FLAGS: readonly FlagSpec[] = [
  // data and stream
  { key: 'dataset', type: 'string', default: '', help: 'dataset name (ball_stn, streaming_ball_nstn, wmaze, …) or a dataset folder', group: 'data' },
  { key: 'T', type: 'int', default: -1, help: 'window length; -1 = the dataset default', group: 'data' },
  { key: 'dataSeed', type: 'int', default: 0, help: 'seed of the data sampler (shuffling / replay draws)', group: 'data' },
  { key: 'numWorkers', type: 'int', default: -1, help: 'data worker threads; -1 = cores - 1 (at least 1); 0 = load in the main thread', group: 'data' },
  { key: 'ltmSize', type: 'int', default: -1, help: 'replay buffer capacity (stream positions) for streaming datasets', group: 'stream' },
  { key: 'nSampleStm', type: 'int', default: -1, help: 'global batch slots holding the live window (streaming)', group: 'stream' },
  { key: 'stepsPerExperience', type: 'int', default: 1, help: 'optimiser steps per fetched batch (fresh noise each step)', group: 'stream' },
  { key: 'reservoir', type: 'string', default: 'faithful', choices: ['faithful', 'vitter'], help: 'reservoir rule: faithful = reference (U{0..i-1}), vitter = exact Algorithm R', group: 'stream' },
  { key: 'stmSize', type: 'int', default: -1, help: 'unused by the reference (accepted and stored)', unused: true, group: 'stream' },
  { key: 'nSampleLtm', type: 'int', default: 1, help: 'unused by the reference (accepted and stored)', unused: true, group: 'stream' },
  { key: 'saveReplayMem', type: 'bool', default: false, help: 'unused by the reference (accepted and stored)', unused: true, group: 'stream' },
  { key: 'attentiveEr', type: 'bool', default: false, help: 'unused by the reference (accepted and stored)', unused: true, group: 'stream' },
  { key: 'maskingMode', type: 'string', default: 'autoregressive', choices: ['autoregressive', 'none', 'flexible', 'autoflex'], help: 'which frames are observed/latent in training examples', group: 'stream' },
  { key: 'maxFrames', type: 'int', default: 20, help: 'K: frames per training example after masking', group: 'stream' },
  { key: 'padWithRandomFrames', type: 'bool', default: true, help: 'pad examples to --max-frames with random frames of the window', group: 'stream' },
  // optimisation
  { key: 'batchSize', type: 'int', default: 1, help: 'global batch size (windows per step)', group: 'optim' },
  { key: 'microbatch', type: 'int', default: -1, help: 'ignored, as in the reference (the whole batch is one pass)', unused: true, group: 'optim' },
  { key: 'lr', type: 'float', default: 1e-4, help: 'AdamW learning rate', group: 'optim' },
  { key: 'weightDecay', type: 'float', default: 0, help: 'AdamW decoupled weight decay', group: 'optim' },
  { key: 'lrAnnealSteps', type: 'int', default: 0, help: 'if > 0: decay lr linearly to 0 and stop at this step', group: 'optim' },
  { key: 'emaRate', type: 'string', default: '0.9999', help: 'comma-separated EMA rates', group: 'optim' },
  { key: 'clipGrad', type: 'float', default: 0, help: 'clip the global gradient norm to this value (0 = off)', group: 'optim' },
  { key: 'scheduleSampler', type: 'string', default: 'uniform', help: 'timestep sampler: uniform, loss-second-moment, edm, edm_<mean>_<std>', group: 'optim' },
  { key: 'useFp16', type: 'bool', default: false, help: 'the reference\'s fp16 switch (non-functional there): use --amp instead', unsupported: 'the reference fp16 mode is broken (§4.5); use --amp fp16 (CUDA, with its loss scaling) or --amp bf16', group: 'optim' },
  { key: 'fp16ScaleGrowth', type: 'float', default: 1e-3, help: 'log2 loss-scale growth per good step (--amp fp16)', group: 'optim' },
  { key: 'amp', type: 'string', default: 'off', choices: ['off', 'bf16', 'fp16'], help: 'mixed precision: bf16 autocast (CPU with AVX-512 BF16/AMX, or CUDA; no loss scaling), fp16 autocast with dynamic loss scaling (CUDA); weights, optimiser and EMA stay float32', group: 'optim' },
  // run control
  { key: 'logInterval', type: 'int', default: 10, help: 'steps between metric flushes', group: 'run' },
  { key: 'saveInterval', type: 'int', default: 100000, help: 'steps between checkpoints', group: 'run' },
  { key: 'sampleInterval', type: 'int', default: 50000, help: 'steps between preview samples (EMA model)', group: 'run' },
  { key: 'sampleSampler', type: 'string', default: 'heun-80-inf-0-1-1000-0.002-7-50', help: 'sampler for training-time previews', group: 'run' },
  { key: 'resumeId', type: 'string', default: '', help: 'run id to resume exactly (checkpoints/<id>/)', group: 'run' },
  { key: 'resumeCheckpoint', type: 'string', default: '', help: 'model checkpoint to start from (weights + step; fresh optimiser)', group: 'run' },
  { key: 'runId', type: 'string', default: '', help: 'id of a new run (default: generated)', group: 'run' },
  { key: 'checkpointsDir', type: 'string', default: 'checkpoints', help: 'folder holding run folders', group: 'run' },
  { key: 'maxSteps', type: 'int', default: 0, help: 'stop after this many steps (0 = until the stream ends / lr anneal)', group: 'run' },
  { key: 'seed', type: 'int', default: 0, help: 'seed of model init, noise, timesteps and masks', group: 'run' },
  { key: 'device', type: 'string', default: 'auto', help: 'cpu, cuda, cuda:N or auto (cuda when available)', group: 'run' },
  { key: 'threads', type: 'int', default: 0, help: 'intra-op threads (0 = the cores idle at start-up)', group: 'run' },
  { key: 'nproc', type: 'int', default: 1, help: 'data-parallel processes on this machine (c10d; the global batch is split); under torchrun/SLURM the launcher environment decides instead', group: 'run' },
  { key: 'distBackend', type: 'string', default: 'auto', choices: ['auto', 'gloo', 'nccl'], help: 'c10d backend of multi-process runs: auto = nccl on CUDA, gloo on CPU', group: 'run' },
  { key: 'project', type: 'string', default: '', help: 'project grouping runs (default $FLEXVID_PROJECT or "default")', group: 'run' },
  { key: 'tensorboard', type: 'bool', default: false, help: 'also write TensorBoard event files next to metrics.jsonl', group: 'run' },
  { key: 'diffusionSpace', type: 'string', default: 'pixel', choices: ['pixel', 'latent'], help: 'pixel or latent diffusion', group: 'run' },
  { key: 'encDecChunkSize', type: 'int', default: 20, help: 'VAE chunk size (latent space)', unused: true, group: 'run' },
  // model
  { key: 'imageSize', type: 'int', default: 64, help: 'overridden by the dataset registry', group: 'model' },
  { key: 'inChannels', type: 'int', default: 3, help: 'overridden: 3 pixels, 4 latents', group: 'model' },
  { key: 'numChannels', type: 'int', default: 128, help: 'U-Net base width', group: 'model' },
  { key: 'numResBlocks', type: 'int', default: 2, help: 'ResBlocks per level', group: 'model' },
  { key: 'numHeads', type: 'int', default: 4, help: 'attention heads', group: 'model' },
  { key: 'numHeadsUpsample', type: 'int', default: -1, help: 'heads in up blocks (-1 = --num-heads)', group: 'model' },
  { key: 'attentionResolutions', type: 'string', default: '16,8', help: 'feature-map sides with attention', group: 'model' },
  { key: 'dropout', type: 'float', default: 0, help: 'dropout in ResBlocks', group: 'model' },
  { key: 'learnSigma', type: 'bool', default: false, help: 'learned-range variance (2C outputs; fixed to split channels)', group: 'model' },
  { key: 'classCond', type: 'bool', default: false, help: 'accepted, no effect (as in the reference)', unused: true, group: 'model' },
  { key: 'useCheckpoint', type: 'bool', default: false, help: 'gradient checkpointing (accepted; no numerical effect)', unused: true, group: 'model' },
  { key: 'useScaleShiftNorm', type: 'bool', default: true, help: 'scale-shift time conditioning', group: 'model' },
  { key: 'useRpeNet', type: 'bool', default: true, help: 'relative-position network (false is broken in the reference)', unsupported: 'the reference lookup-table RPE (--use-rpe-net false) is broken (§4.3)', group: 'model' },
  // diffusion
  { key: 'diffusionSteps', type: 'int', default: 1000, help: 'diffusion steps N', group: 'diffusion' },
  { key: 'noiseSchedule', type: 'string', default: 'linear', choices: ['linear', 'cosine'], help: 'beta schedule', group: 'diffusion' },
  { key: 'timestepRespacing', type: 'string', default: '', help: 'respacing of the chain ("", ddimK, edm-…, a,b,c)', group: 'diffusion' },
  { key: 'sigmaSmall', type: 'bool', default: false, help: 'fixed-small variance', group: 'diffusion' },
  { key: 'useKl', type: 'bool', default: false, help: 'KL (variational bound) loss', group: 'diffusion' },
  { key: 'predictXstart', type: 'bool', default: false, help: 'predict x0 instead of epsilon', group: 'diffusion' },
  { key: 'rescaleTimesteps', type: 'bool', default: true, help: 'feed the model t*1000/N', group: 'diffusion' },
  { key: 'rescaleLearnedSigmas', type: 'bool', default: true, help: 'rescaled MSE', group: 'diffusion' },
  { key: 'useEdmScaling', type: 'bool', default: false, help: 'EDM-style output scaling', group: 'diffusion' },
];

export type TrainOptions = {
  dataset: string;
  T: number;
  dataSeed: number;
  numWorkers: number;
  ltmSize: number;
  nSampleStm: number;
  stepsPerExperience: number;
  reservoir: 'faithful' | 'vitter';
  stmSize: number;
  nSampleLtm: number;
  saveReplayMem: boolean;
  attentiveEr: boolean;
  maskingMode: 'autoregressive' | 'none' | 'flexible' | 'autoflex';
  maxFrames: number;
  padWithRandomFrames: boolean;
  batchSize: number;
  microbatch: number;
  lr: number;
  weightDecay: number;
  lrAnnealSteps: number;
  emaRate: string;
  clipGrad: number;
  scheduleSampler: string;
  useFp16: boolean;
  fp16ScaleGrowth: number;
  amp: AmpMode;
  logInterval: number;
  saveInterval: number;
  sampleInterval: number;
  sampleSampler: string;
  resumeId: string;
  resumeCheckpoint: string;
  runId: string;
  checkpointsDir: string;
  maxSteps: number;
  seed: number;
  device: string;
  threads: number;
  nproc: number;
  distBackend: 'auto' | 'gloo' | 'nccl';
  project: string;
  tensorboard: boolean;
  diffusionSpace: 'pixel' | 'latent';
  encDecChunkSize: number;
  imageSize: number;
  inChannels: number;
  numChannels: number;
  numResBlocks: number;
  numHeads: number;
  numHeadsUpsample: number;
  attentionResolutions: string;
  dropout: number;
  learnSigma: boolean;
  classCond: boolean;
  useCheckpoint: boolean;
  useScaleShiftNorm: boolean;
  useRpeNet: boolean;
  diffusionSteps: number;
  noiseSchedule: 'linear' | 'cosine';
  timestepRespacing: string;
  sigmaSmall: boolean;
  useKl: boolean;
  predictXstart: boolean;
  rescaleTimesteps: boolean;
  rescaleLearnedSigmas: boolean;
  useEdmScaling: boolean;
};

export function kebab(key: string): string {
  return key === 'T' ? 'T' : key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

export function snake(key: string): string {
  return key === 'T' ? 'T' : key.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());
}

/** Parse a boolean the way the reference does: yes/true/t/y/1 and no/false/f/n/0, any case. */
export function parseBool(flag: string, v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  const s = String(v).toLowerCase();
  if (['yes', 'true', 't', 'y', '1'].includes(s)) return true;
  if (['no', 'false', 'f', 'n', '0'].includes(s)) return false;
  throw new OptionError(flag, 'a boolean (yes/true/t/y/1 or no/false/f/n/0)', v);
}

/** Convert one raw value (CLI string, JSON value) to the flag's type, naming the flag on error. */
export function coerceFlag(spec: FlagSpec, v: unknown): unknown {
  const flag = `--${kebab(spec.key)}`;
  switch (spec.type) {
    case 'bool':
      return parseBool(flag, v);
    case 'int': {
      const n = typeof v === 'number' ? v : Number(String(v).trim());
      if (!Number.isSafeInteger(n)) throw new OptionError(flag, 'an integer', v);
      return n;
    }
    case 'float': {
      const n = typeof v === 'number' ? v : Number(String(v).trim());
      if (!Number.isFinite(n)) throw new OptionError(flag, 'a number', v);
      return n;
    }
    case 'string': {
      const s = String(v);
      if (spec.choices && !spec.choices.includes(s)) throw new OptionError(flag, `one of ${spec.choices.join(', ')}`, v);
      return s;
    }
  }
}

export function defaultTrainOptions(): TrainOptions {
  const o: Record<string, unknown> = {};
  for (const f of TRAIN_FLAGS) o[f.key] = f.default;
  return o as TrainOptions;
}

/**
 * Merge a JSON config (keys in camelCase, kebab-case or snake_case) and explicit overrides into
 * the defaults; unknown keys are refused with the list of valid ones.
 */
export function resolveTrainOptions(sources: Record<string, unknown>[]): TrainOptions {
  const o = defaultTrainOptions() as unknown as Record<string, unknown>;
  const byName = new Map<string, FlagSpec>();
  for (const f of TRAIN_FLAGS) {
    byName.set(f.key, f);
    byName.set(kebab(f.key), f);
    byName.set(snake(f.key), f);
  }
  for (const src of sources) {
    for (const [k, v] of Object.entries(src)) {
      if (v === undefined) continue;
      const spec = byName.get(k);
      if (!spec) throw new OptionError(`option "${k}"`, 'a known training option (see flexvid train --help)', v);
      o[spec.key] = coerceFlag(spec, v);
    }
  }
  return o as unknown as TrainOptions;
}

/** Parse `--ema-rate` ("0.9999,0.999") into numbers in [0, 1]. */
export function parseEmaRates(s: string): number[] {
  const rates = s.split(',').map((x) => x.trim()).filter(Boolean).map(Number);
  if (rates.length === 0 || rates.some((r) => !(r >= 0 && r <= 1))) throw new OptionError('--ema-rate', 'comma-separated numbers in [0, 1]', s);
  return rates;
}

/**
 * Refuse impossible or unsupported combinations up front (§10.2 items 17, 25), naming the flag.
 * Needs the stream length and the dataset's streaming flag (known after resolving the dataset).
 */
export function validateTrainOptions(o: TrainOptions, ctx: { streaming: boolean }): void {
  if (!o.dataset) throw new OptionError('--dataset', 'a dataset name or folder', o.dataset);
  for (const f of TRAIN_FLAGS) {
    if (f.unsupported && (o as unknown as Record<string, unknown>)[f.key] !== f.default) {
      throw new OptionError(`--${kebab(f.key)}`, `its default (${String(f.default)}): ${f.unsupported}`, (o as unknown as Record<string, unknown>)[f.key]);
    }
  }
  const positive: (keyof TrainOptions)[] = ['nproc', 'batchSize', 'maxFrames', 'stepsPerExperience', 'logInterval', 'saveInterval', 'sampleInterval', 'numChannels', 'numResBlocks', 'numHeads', 'diffusionSteps'];
  for (const k of positive) {
    const v = o[k] as number;
    if (!(Number.isInteger(v) && v > 0)) throw new OptionError(`--${kebab(k)}`, 'a positive integer', v);
  }
  if (o.lr < 0) throw new OptionError('--lr', 'a learning rate ≥ 0', o.lr);
  if (o.weightDecay < 0) throw new OptionError('--weight-decay', 'a value ≥ 0', o.weightDecay);
  if (o.clipGrad < 0) throw new OptionError('--clip-grad', 'a value ≥ 0 (0 = off)', o.clipGrad);
  if (o.maxSteps < 0) throw new OptionError('--max-steps', 'a value ≥ 0', o.maxSteps);
  if (o.lrAnnealSteps < 0) throw new OptionError('--lr-anneal-steps', 'a value ≥ 0', o.lrAnnealSteps);
  parseEmaRates(o.emaRate);
  if (ctx.streaming && o.nSampleStm < o.batchSize && o.ltmSize <= 0) {
    throw new OptionError(
      '--ltm-size',
      `a positive replay buffer size: with --n-sample-stm=${o.nSampleStm} < --batch-size=${o.batchSize} some batch slots replay past windows ` +
        `(use e.g. --n-sample-stm=1 --ltm-size=5000, or --n-sample-stm=${o.batchSize} for pure online training)`,
      o.ltmSize,
    );
  }
  if (o.resumeId && o.runId && o.resumeId !== o.runId) throw new OptionError('--run-id', `empty or equal to --resume-id (${o.resumeId})`, o.runId);
  if (o.resumeId && o.resumeCheckpoint) throw new OptionError('--resume-checkpoint', 'empty when --resume-id is given', o.resumeCheckpoint);
}

/** The U-Net configuration the options describe, for frames of `imageSize`² with `inChannels`. */
export function unetConfigFromOptions(o: TrainOptions, imageSize: number, inChannels: number): UNetConfig {
  return resolveUNetConfig({
    imageSize,
    inChannels,
    modelChannels: o.numChannels,
    numResBlocks: o.numResBlocks,
    attentionResolutions: o.attentionResolutions,
    numHeads: o.numHeads,
    numHeadsUpsample: o.numHeadsUpsample,
    dropout: o.dropout,
    learnSigma: o.learnSigma,
    useScaleShiftNorm: o.useScaleShiftNorm,
    useRpeNet: o.useRpeNet,
  });
}

/** The diffusion configuration the options describe (§5, §6.1). */
export function diffusionConfigFromOptions(o: TrainOptions): DiffusionConfig {
  return {
    diffusionSteps: o.diffusionSteps,
    noiseSchedule: o.noiseSchedule,
    timestepRespacing: o.timestepRespacing,
    predictXstart: o.predictXstart,
    sigmaSmall: o.sigmaSmall,
    learnSigma: o.learnSigma,
    useKl: o.useKl,
    rescaleTimesteps: o.rescaleTimesteps,
    rescaleLearnedSigmas: o.rescaleLearnedSigmas,
    useEdmScaling: o.useEdmScaling,
  };
}
