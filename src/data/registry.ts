/**
 * Dataset registry (REFERENCE_SPEC §2.1): names → folder, default window length T, image size
 * (which selects the U-Net configuration, §4.4), channels and family.
 *
 * Built-in names: `ball_stn`, `ball_nstn`, `wmaze`, `plaicraft`, and `streaming_<name>` for each
 * (streaming = iterate the train stream in order instead of shuffling). Users can register their
 * own folders with {@link registerDataset}, or give a folder path instead of a name.
 * Paths are relative to the working directory (the project root), like the reference's
 * `datasets/<folder>`; with `DATA_ROOT` set, chunk files are read through a local mirror
 * (see `local-cache.ts`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OptionError } from '../util/errors.ts';
import { readDatasetConfig } from './layout.ts';
import { readNpyHeader } from './npy.ts';

/** How a dataset's files are organised and which evaluation views apply (§2.4). */
export type DatasetFamily = 'balls-stationary' | 'balls-nonstationary' | 'maze' | 'plaicraft' | 'npy';

/** A resolved dataset. */
export interface DatasetInfo {
  /** The name asked for (or the folder path). */
  name: string;
  family: DatasetFamily;
  /** Folder (shared source location). */
  path: string;
  /** Default window length. */
  T: number;
  /** Image size used to choose the model configuration. */
  imageSize: number;
  /** Channels per frame (3 RGB; 4 for PLAICraft latents). */
  channels: number;
  /** True for `streaming_*` names: the train stream is read in order. */
  streaming: boolean;
}

/** Registry entry (without the per-lookup `name` / `streaming`). */
export interface DatasetSpec {
  family: DatasetFamily;
  path: string;
  T: number;
  imageSize: number;
  channels: number;
}

const BUILTIN: Record<string, DatasetSpec> = {
  ball_stn: { family: 'balls-stationary', path: 'datasets/ball_stn', T: 10, imageSize: 32, channels: 3 },
  ball_nstn: { family: 'balls-nonstationary', path: 'datasets/ball_nstn', T: 10, imageSize: 32, channels: 3 },
  wmaze: { family: 'maze', path: 'datasets/windows_maze', T: 20, imageSize: 64, channels: 3 },
  plaicraft: { family: 'plaicraft', path: 'datasets/plaicraft', T: 20, imageSize: 160, channels: 4 },
};

const user = new Map<string, DatasetSpec>();

/** Options of {@link registerDataset}. */
export interface RegisterOptions {
  /** Folder of the dataset (config.json + train/ + test/, or a PLAICraft folder). */
  path: string;
  /** Default window length. */
  T: number;
  /** Image size (frame side) used to choose the model configuration. */
  imageSize: number;
  /** Channels per frame (default 3). */
  channels?: number;
  /** Family (default 'npy': generic chunked stream, evaluated with Chunked windows). */
  family?: DatasetFamily;
}

/**
 * Register a user dataset under `name` (also reachable as `streaming_<name>`). Names may not
 * start with `streaming` and may not shadow a built-in name.
 */
export function registerDataset(name: string, opts: RegisterOptions): void {
  if (!/^[A-Za-z0-9][\w.-]*$/.test(name) || name.startsWith('streaming')) {
    throw new OptionError('dataset name', 'letters, digits, "_", "-", "." not starting with "streaming"', name);
  }
  if (name in BUILTIN) throw new OptionError('dataset name', 'a name that is not built in', name);
  for (const [key, v] of [['T', opts.T], ['imageSize', opts.imageSize], ['channels', opts.channels ?? 3]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new OptionError(key, 'a positive integer', v);
  }
  user.set(name, { family: opts.family ?? 'npy', path: opts.path, T: opts.T, imageSize: opts.imageSize, channels: opts.channels ?? 3 });
}

/** Remove a user registration (tests). */
export function unregisterDataset(name: string): void {
  user.delete(name);
}

/** All names that resolve without a folder lookup (built-in, user, and their streaming variants). */
export function listDatasets(): string[] {
  const base = [...Object.keys(BUILTIN), ...user.keys()];
  return [...base, ...base.map((n) => `streaming_${n}`)];
}

/** True when `name` denotes a streaming dataset (§2.1: the name starts with "streaming"). */
export function isStreamingName(name: string): boolean {
  return name.startsWith('streaming');
}

/** Describe a plain folder: image size and channels from config.json / chunk 0, T = 10. */
function describeFolder(dir: string): DatasetSpec {
  if (fs.existsSync(path.join(dir, 'global_database.db'))) {
    return { family: 'plaicraft', path: dir, T: 20, imageSize: 160, channels: 4 };
  }
  const cfg = readDatasetConfig(dir);
  let imageSize = typeof cfg.resolution === 'number' ? cfg.resolution : 0;
  let channels = 3;
  for (const sub of [path.join(dir, 'train', String(cfg.seed ?? 0)), path.join(dir, 'train')]) {
    const first = path.join(sub, '0.npy');
    if (fs.existsSync(first)) {
      const h = readNpyHeader(first);
      if (h.shape.length === 4) {
        imageSize = h.shape[1]!;
        channels = h.shape[3]!;
      }
      break;
    }
  }
  const family: DatasetFamily =
    typeof cfg.num_balls === 'number' ? (cfg.color_shift ? 'balls-nonstationary' : 'balls-stationary') : 'npy';
  return { family, path: dir, T: 10, imageSize: imageSize || 32, channels };
}

/**
 * Resolve a dataset name (built-in, registered, `streaming_` variant) or a folder path.
 * Unknown names that are not folders → OptionError listing the known names.
 */
export function resolveDataset(nameOrPath: string): DatasetInfo {
  const streaming = isStreamingName(nameOrPath);
  const base = streaming ? nameOrPath.replace(/^streaming_?/, '') : nameOrPath;
  const spec = BUILTIN[base] ?? user.get(base);
  if (spec) return { name: nameOrPath, streaming, ...spec };
  // `streaming_<folder>`: a dataset folder read as a lifelong stream.
  if (streaming && /^streaming_/.test(nameOrPath)) {
    const folder = nameOrPath.slice('streaming_'.length);
    if (fs.existsSync(folder) && fs.statSync(folder).isDirectory()) return { ...describeFolder(folder), name: nameOrPath, streaming: true };
  }
  // A folder given directly (no streaming prefix handling: the path is taken as is).
  if (fs.existsSync(nameOrPath) && fs.statSync(nameOrPath).isDirectory()) {
    return { name: nameOrPath, streaming: false, ...describeFolder(nameOrPath) };
  }
  throw new OptionError('dataset', `one of ${listDatasets().join(', ')} or a dataset folder`, nameOrPath);
}
