/**
 * Shared plumbing of the evaluation commands (REFERENCE_SPEC §7–§8): reading an evaluation
 * directory back (identifier fields, `model_config.json`, sample files), opening its dataset,
 * picking a device, loading the LPIPS embedder for adaptive schemes, and the progress/log sinks
 * the CLI passes in (this layer prints nothing itself).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cudaAvailable } from '../engine/index.ts';
import { getEvalDataset, type EvalConfig } from '../data/datasets.ts';
import type { DatasetInfo } from '../data/registry.ts';
import type { WindowDataset } from '../data/views.ts';
import { readNpy } from '../data/npy.ts';
import { parseEvalIdentifier, type EvalIdentifierFields } from '../sampling/naming.ts';
import type { FrameEmbedder } from '../sampling/pipeline.ts';
import { FileFormatError, FlexvidError, OptionError } from '../util/errors.ts';
import { StateDictError } from '../nn/module.ts';
import { loadLpipsEmbedder, LpipsWeightsMissingError, LPIPS_WEIGHTS_ENV, type LpipsEmbedder } from '../metrics/lpips.ts';

/** A progress display for `total` units (the CLI passes one built on `startProgress`). */
export interface ProgressHandle {
  update(value: number, extra?: string): void;
  stop(): void;
}

/** Factory of progress displays. */
export type ProgressFactory = (label: string, total: number, unit?: string) => ProgressHandle;

/** Output hooks of the experiment functions. */
export interface Reporting {
  /** Informational lines (default: ignored). */
  log?: (line: string) => void;
  /** Progress displays (default: none). */
  progress?: ProgressFactory;
}

export const noProgress: ProgressFactory = () => ({ update() {}, stop() {} });

/** `auto`/undefined → `cuda` when available, else `cpu`; anything else is passed through. */
export function resolveDevice(device?: string): string {
  if (device === undefined || device === '' || device === 'auto') return cudaAvailable() ? 'cuda' : 'cpu';
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) throw new OptionError('--device', 'cpu, cuda, cuda:N or auto', device);
  return device;
}

/** File name of the sampling run's config inside an eval dir (§7.2 step 5). */
export const MODEL_CONFIG_FILE = 'model_config.json';

/** `<evalDir>/model_config.json`, parsed. */
export function readModelConfig(evalDir: string): Record<string, unknown> {
  const file = path.join(evalDir, MODEL_CONFIG_FILE);
  if (!fs.existsSync(file)) throw new FileFormatError(file, 'missing (run flexvid sample for this eval dir first)');
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new FileFormatError(file, `not valid JSON (${(e as Error).message})`);
  }
}

/** The dataset name recorded in a model config (flat `dataset`, or the nested flexvid config). */
export function datasetOfConfig(cfg: Record<string, unknown>, file = MODEL_CONFIG_FILE): string {
  const nested = cfg.flexvid_checkpoint_config as { dataset?: unknown } | undefined;
  const name = typeof cfg.dataset === 'string' ? cfg.dataset : typeof nested?.dataset === 'string' ? nested.dataset : undefined;
  if (!name) throw new FileFormatError(file, 'no "dataset" entry');
  return name;
}

/** What the downstream scripts recover from an eval dir (§8 preamble). */
export interface EvalDirInfo {
  dir: string;
  fields: EvalIdentifierFields;
  config: Record<string, unknown>;
  dataset: string;
}

/** Parse an eval dir's identifier and read its `model_config.json`. */
export function readEvalDir(evalDir: string): EvalDirInfo {
  if (!fs.existsSync(evalDir) || !fs.statSync(evalDir).isDirectory()) throw new OptionError('--eval-dir', 'an existing evaluation directory', evalDir);
  const fields = parseEvalIdentifier(evalDir);
  const config = readModelConfig(evalDir);
  return { dir: evalDir, fields, config, dataset: datasetOfConfig(config, path.join(evalDir, MODEL_CONFIG_FILE)) };
}

/**
 * The evaluation dataset of an eval dir, opened exactly as sampling opened it (§7.2 step 4):
 * `T`, config, frame range and split from the identifier. `nData` sets the number of windows of
 * Spaced views; `nDataFlag` names the flag to ask for when it is needed but missing.
 */
export async function openEvalDataset(
  dataset: string,
  f: Pick<EvalIdentifierFields, 'T' | 'evalDatasetConfig' | 'lowerFrameRange' | 'upperFrameRange' | 'evalOnTrain'>,
  o: { nData?: number; nDataFlag?: string; customClipPath?: string } = {},
): Promise<{ info: DatasetInfo; dataset: WindowDataset }> {
  try {
    return await getEvalDataset(dataset, {
      T: f.T,
      train: f.evalOnTrain,
      config: f.evalDatasetConfig as EvalConfig,
      nData: o.nData,
      frameRange: [f.lowerFrameRange, f.upperFrameRange],
      customClipPath: o.customClipPath,
    });
  } catch (e) {
    if (e instanceof OptionError && e.option === 'nData' && o.nData === undefined) {
      throw new OptionError(o.nDataFlag ?? '--num-videos', `a number of videos (the default evaluation view of ${dataset} is evenly spaced)`, undefined);
    }
    throw e;
  }
}

/** A stored sample: uint8 `[T, C, H, W]`. */
export interface SampleFile {
  data: Uint8Array;
  T: number;
  C: number;
  H: number;
  W: number;
}

/** Read `samples/sample_<i>-<k>.npy` (uint8 `[T, C, H, W]`, §7.2). */
export function readSampleFile(file: string): SampleFile {
  const a = readNpy(file);
  if (a.dtype !== '|u1' || a.shape.length !== 4) throw new FileFormatError(file, `expected a uint8 [T, C, H, W] array, found ${a.dtype} [${a.shape.join(', ')}]`);
  const [T, C, H, W] = a.shape as [number, number, number, number];
  return { data: a.data as Uint8Array, T, C, H, W };
}

/** Parse a comma/space separated integer list (`--sample-indices 0,1,2`). */
export function parseIntList(flag: string, v: string | readonly string[] | readonly number[]): number[] {
  const parts = (Array.isArray(v) ? v : [v]).flatMap((s) => String(s).split(/[,\s]+/)).filter((s) => s !== '');
  const out = parts.map((s) => {
    if (!/^\d+$/.test(s)) throw new OptionError(flag, 'non-negative integers separated by commas or spaces', v);
    return Number(s);
  });
  if (out.length === 0) throw new OptionError(flag, 'at least one integer', v);
  return out;
}

/** A frame embedder that holds a network: call `dispose()` when sampling is done. */
export type DisposableFrameEmbedder = FrameEmbedder & { dispose(): void };

/**
 * Load the LPIPS frame embedder for adaptive schemes (REFERENCE_SPEC §7.3) with
 * `loadLpipsEmbedder` (`src/metrics/lpips.ts`): weights from `weightsPath` (`--lpips-weights`),
 * else `$FLEXVID_LPIPS_WEIGHTS`, else `weights/lpips_alex.{safetensors,pt}`; the network on `device`
 * (default CPU). Unlike the reference, the network is created once per run.
 * @throws FlexvidError naming `--lpips-weights` / `FLEXVID_LPIPS_WEIGHTS` when the weights are
 *   missing or do not fit.
 */
export async function loadFrameEmbedder(weightsPath?: string, o: { device?: string } = {}): Promise<DisposableFrameEmbedder> {
  const hint =
    'adaptive sampling schemes need the LPIPS (AlexNet v0.1) frame embedder: pass its weights with --lpips-weights FILE ' +
    `or set ${LPIPS_WEIGHTS_ENV}`;
  let embedder: LpipsEmbedder;
  try {
    embedder = loadLpipsEmbedder(weightsPath || undefined, { device: o.device });
  } catch (e) {
    if (e instanceof LpipsWeightsMissingError || e instanceof StateDictError || e instanceof FileFormatError) {
      throw new FlexvidError(`${hint}. ${(e as Error).message}`);
    }
    throw e;
  }
  const embed = ((frames) => embedder.embed(frames)) as DisposableFrameEmbedder;
  embed.dispose = () => embedder.dispose();
  return embed;
}
