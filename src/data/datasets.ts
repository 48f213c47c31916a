/**
 * Dataset factories: from a registry name (or folder) to a view over its frames
 * (REFERENCE_SPEC §2.4 "Which dataset is used where", §3.1 for training).
 *
 * - {@link getTrainDataset}: the Continuous (stride-1) view of the train stream that training
 *   iterates (in order for `streaming_*` names, shuffled otherwise — the sampler's business).
 * - {@link getEvalDataset}: the evaluation view chosen by family and `config` (§2.4 table), on the
 *   test stream unless `train` is set.
 * - {@link getTestDataset}: the intent of the reference's broken `get_test_dataset` (corrected,
 *   §10.1 item 3): Chunked/Spaced over the whole test stream.
 */
import { OptionError } from '../util/errors.ts';
import { PlaicraftClipSource, PlaicraftStore, type PlaicraftOptions } from './plaicraft.ts';
import { resolveDataset, type DatasetInfo } from './registry.ts';
import { VideoStore, type FrameSource, type VideoStoreOptions } from './video-store.ts';
import { ChunkedView, ContinuousView, SpacedView, type FrameRange, type WindowDataset } from './views.ts';

/** Options for opening a dataset's frames. */
export interface SourceOptions extends VideoStoreOptions {
  /** PLAICraft players and settings (ignored for npy datasets). */
  plaicraft?: PlaicraftOptions;
}

/** Open the frames of a resolved dataset (a {@link VideoStore} or a {@link PlaicraftStore}). */
export async function openFrameSource(info: DatasetInfo, opts: SourceOptions = {}): Promise<FrameSource> {
  if (info.family === 'plaicraft') return PlaicraftStore.open(info.path, opts.plaicraft);
  return VideoStore.open(info.path, opts);
}

/** Options of {@link getTrainDataset}. */
export interface TrainDatasetOptions extends SourceOptions {
  /** Window length (default: the registry's T). */
  T?: number;
  frameRange?: FrameRange;
  restartIndex?: number;
}

/** The Continuous view of the train stream used for training (§3.1 step 1). */
export async function getTrainDataset(name: string, opts: TrainDatasetOptions = {}): Promise<{ info: DatasetInfo; dataset: ContinuousView }> {
  const info = resolveDataset(name);
  const source = await openFrameSource(info, opts);
  const dataset = new ContinuousView(source, { T: opts.T ?? info.T, split: 'train', frameRange: opts.frameRange, restartIndex: opts.restartIndex });
  return { info, dataset };
}

/** Evaluation dataset configuration (`--eval_dataset_config`). */
export type EvalConfig = 'default' | 'continuous' | 'chunked';

/** Options of {@link getEvalDataset}. */
export interface EvalDatasetOptions extends SourceOptions {
  /** Window length (default: the registry's T). */
  T?: number;
  /** Use the train stream (default false: test stream). */
  train?: boolean;
  config?: EvalConfig;
  /** Number of windows for Spaced views. */
  nData?: number;
  frameRange?: FrameRange;
  /** [c6f25f7] PLAICraft: a flat folder of batch_*.pt files forming one clip. */
  customClipPath?: string;
}

/**
 * The evaluation view (§2.4): by family and `config`
 *
 * | family | continuous | chunked | default |
 * |---|---|---|---|
 * | balls stationary | Continuous | Chunked | Chunked |
 * | balls non-stationary | Continuous | Chunked | Spaced(nData) |
 * | maze, user npy | Continuous | Chunked | Chunked |
 * | PLAICraft | Continuous | Chunked | Spaced (PLAICraft rule) or the custom clip |
 *
 * `frameRange` applies to every view (as in c6f25f7); the test stream is used unless `train`.
 */
export async function getEvalDataset(name: string, opts: EvalDatasetOptions = {}): Promise<{ info: DatasetInfo; dataset: WindowDataset }> {
  const info = resolveDataset(name);
  const T = opts.T ?? info.T;
  const config = opts.config ?? 'default';
  if (!['default', 'continuous', 'chunked'].includes(config)) {
    throw new OptionError('eval_dataset_config', 'default | continuous | chunked', config);
  }
  const split = opts.train ? 'train' : 'test';
  const frameRange = opts.frameRange ?? [0, null];
  if (info.family === 'plaicraft' && opts.customClipPath !== undefined && config === 'default') {
    const clip = new PlaicraftClipSource(opts.customClipPath, opts.plaicraft?.float16 ?? true);
    return { info, dataset: new ContinuousView(clip, { T, split, frameRange }) };
  }
  const source = await openFrameSource(info, opts);
  const base = { T, split, frameRange } as const;
  if (config === 'continuous') return { info, dataset: new ContinuousView(source, base) };
  if (config === 'chunked') return { info, dataset: new ChunkedView(source, base) };
  const spaced = info.family === 'balls-nonstationary' || info.family === 'plaicraft';
  if (!spaced) return { info, dataset: new ChunkedView(source, base) };
  if (opts.nData === undefined) throw new OptionError('nData', `a number of windows (the default evaluation view of ${info.name} is Spaced)`, undefined);
  const flavour = info.family === 'plaicraft' ? 'plaicraft' : 'npy';
  return { info, dataset: new SpacedView(source, { ...base, nData: opts.nData, flavour }) };
}

/**
 * What the reference's `get_test_dataset` meant (corrected, §10.1 item 3): stationary balls and
 * maze → Chunked; non-stationary balls → Spaced(nData); PLAICraft → Spaced(nData); test stream,
 * whole range.
 */
export async function getTestDataset(name: string, opts: { T?: number; nData?: number } & SourceOptions = {}): Promise<{ info: DatasetInfo; dataset: WindowDataset }> {
  return getEvalDataset(name, { ...opts, config: 'default', train: false, frameRange: [0, null] });
}
