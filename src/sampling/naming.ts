/**
 * Results naming for sampling runs (REFERENCE_SPEC §7.5, ARCHITECTURE §3):
 *
 * ```
 * results/<run-id>/<checkpoint-stem>_<sampler>[_respace<R>]/<identifier>/samples/sample_<idx:04d>-<seed>.npy
 * ```
 * with `identifier = <scheme>_<K>_<T>_<n_obs>_<config>_<lo>_<hi>_<train|test>`. Downstream tools
 * (metrics, collection) recover the settings by parsing the identifier, so scheme names and dataset
 * configs never contain `_`.
 */
import * as path from 'node:path';
import { OptionError } from '../util/errors.ts';

/** The settings encoded in an evaluation identifier (§7.5). */
export interface EvalIdentifierFields {
  /** Sampling scheme name, e.g. `autoreg` (no `_`). */
  scheme: string;
  /** K = `--max_frames`. */
  maxFrames: number;
  /** Video length T. Required (the reference writes `None` when omitted and then cannot parse it, §10.3 #35). */
  T: number;
  /** Observed leading frames. */
  nObs: number;
  /** `--eval_dataset_config`: `default`, `continuous` or `chunked`. */
  evalDatasetConfig: string;
  /** `--lower_frame_range`. */
  lowerFrameRange: number;
  /** `--upper_frame_range`; null = None (to the end). */
  upperFrameRange: number | null;
  /** Sampled from the training stream (`train`) or the test split (`test`). */
  evalOnTrain: boolean;
}

function checkInt(name: string, v: unknown, min = 0): number {
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= min)) throw new OptionError(name, `an integer ≥ ${min}`, v);
  return v;
}

function checkToken(name: string, v: string): string {
  if (v === '' || v.includes('_') || v.includes('/')) throw new OptionError(name, 'a non-empty name without "_" or "/"', v);
  return v;
}

/**
 * Build the evaluation identifier (§7.5).
 * @example evalIdentifier({ scheme: 'autoreg', maxFrames: 10, T: 50, nObs: 10, evalDatasetConfig: 'default',
 *   lowerFrameRange: 0, upperFrameRange: null, evalOnTrain: false }) // 'autoreg_10_50_10_default_0_None_test'
 */
export function evalIdentifier(f: EvalIdentifierFields): string {
  return [
    checkToken('sampling_scheme', f.scheme),
    checkInt('max_frames', f.maxFrames, 1),
    checkInt('T', f.T, 1),
    checkInt('n_obs', f.nObs),
    checkToken('eval_dataset_config', f.evalDatasetConfig),
    checkInt('lower_frame_range', f.lowerFrameRange),
    f.upperFrameRange === null ? 'None' : checkInt('upper_frame_range', f.upperFrameRange),
    f.evalOnTrain ? 'train' : 'test',
  ].join('_');
}

/**
 * Parse an identifier (or a path whose last component is one) back into its fields (§7.5).
 * @throws OptionError naming the field that does not parse.
 */
export function parseEvalIdentifier(identifier: string): EvalIdentifierFields {
  const base = path.basename(identifier.replace(/[\\/]+$/, ''));
  const parts = base.split('_');
  if (parts.length !== 8) {
    throw new OptionError('eval identifier', '8 "_"-separated fields <scheme>_<K>_<T>_<n_obs>_<config>_<lo>_<hi>_<train|test>', base);
  }
  const int = (name: string, s: string): number => {
    if (!/^\d+$/.test(s)) throw new OptionError(`eval identifier field ${name}`, `an integer (in "${base}")`, s);
    return Number(s);
  };
  const split = parts[7]!;
  if (split !== 'train' && split !== 'test') throw new OptionError('eval identifier field split', `"train" or "test" (in "${base}")`, split);
  return {
    scheme: parts[0]!,
    maxFrames: int('max_frames', parts[1]!),
    T: int('T', parts[2]!),
    nObs: int('n_obs', parts[3]!),
    evalDatasetConfig: parts[4]!,
    lowerFrameRange: int('lower_frame_range', parts[5]!),
    upperFrameRange: parts[6] === 'None' ? null : int('upper_frame_range', parts[6]!),
    evalOnTrain: split === 'train',
  };
}

/** Options naming a model's results folder. */
export interface ModelResultsOptions {
  /** Checkpoint file, e.g. `checkpoints/abc123/ema_0.9999_050000.safetensors`. */
  checkpointPath: string;
  /** The sampler string exactly as given (`--sampler`). */
  sampler: string;
  /** `--timestep_respacing`; empty/undefined = none. */
  timestepRespacing?: string;
  /** Training step stored in the checkpoint; required when the stem ends with `latest`. */
  step?: number;
  /** Root folder, default `results`. */
  resultsRoot?: string;
}

/** Python `Path(p).stem`: the file name without its last suffix. */
function stem(file: string): string {
  return path.parse(file).name;
}

/**
 * `<checkpoint-stem>[_<step>]_<sampler>[_respace<R>]` (§7.5): `_<step>` is appended when the stem
 * ends with `latest`, so "latest" checkpoints of different steps do not collide.
 */
export function checkpointResultsName(o: ModelResultsOptions): string {
  let name = stem(o.checkpointPath);
  if (name.endsWith('latest')) {
    if (o.step === undefined) throw new OptionError('step', 'the checkpoint step (the file name ends with "latest")', undefined);
    name += `_${checkInt('step', o.step)}`;
  }
  name += `_${o.sampler}`;
  if (o.timestepRespacing) name += `_respace${o.timestepRespacing}`;
  return name;
}

/**
 * Model results path (§7.5): `<root>/<components after the first component containing
 * "checkpoint", minus the file name>/<checkpointResultsName>`.
 * @example modelResultsPath({ checkpointPath: 'checkpoints/abc123/ema_0.9999_050000.pt', sampler: 'heun-80-inf-0-1-1000-0.002-7-50' })
 *   // 'results/abc123/ema_0.9999_050000_heun-80-inf-0-1-1000-0.002-7-50'
 */
export function modelResultsPath(o: ModelResultsOptions): string {
  const parts = path.normalize(o.checkpointPath).split(/[\\/]+/).filter((p) => p !== '');
  const i = parts.findIndex((p) => p.includes('checkpoint'));
  if (i < 0) {
    throw new OptionError('checkpoint_path', 'a path with a folder named like "checkpoints" (or pass --eval-dir)', o.checkpointPath);
  }
  const middle = parts.slice(i + 1, -1);
  return path.join(o.resultsRoot ?? 'results', ...middle, checkpointResultsName(o));
}

/**
 * The evaluation folder (§7.2 step 3): `<evalDir or model results path>/<identifier>`, or with a
 * custom clip ([c6f25f7]) `<model results path>/<second-to-last component of the clip path>/<identifier>`.
 */
export function evalDirectory(o: ModelResultsOptions & { identifier: string; evalDir?: string; customClipPath?: string }): string {
  if (o.evalDir) return path.join(o.evalDir, o.identifier);
  const root = modelResultsPath(o);
  if (o.customClipPath) {
    const parts = path.normalize(o.customClipPath).split(/[\\/]+/).filter((p) => p !== '');
    if (parts.length < 2) throw new OptionError('custom_clip_path', 'a path with at least two components', o.customClipPath);
    return path.join(root, parts[parts.length - 2]!, o.identifier);
  }
  return path.join(root, o.identifier);
}

/** `sample_<idx:04d>-<sampleIdx>.npy` (§7.2 step 6). */
export function sampleFileName(index: number, sampleIdx: number): string {
  checkInt('index', index);
  checkInt('sample_idx', sampleIdx);
  return `sample_${String(index).padStart(4, '0')}-${sampleIdx}.npy`;
}

/** Parse a sample file name; null when it is not one. */
export function parseSampleFileName(name: string): { index: number; sampleIdx: number } | null {
  const m = /^sample_(\d{4,})-(\d+)\.npy$/.exec(path.basename(name));
  return m ? { index: Number(m[1]), sampleIdx: Number(m[2]) } : null;
}

/** `<evalDir>/samples/sample_<idx:04d>-<sampleIdx>.npy`. */
export function samplePath(evalDir: string, index: number, sampleIdx: number): string {
  return path.join(evalDir, 'samples', sampleFileName(index, sampleIdx));
}
