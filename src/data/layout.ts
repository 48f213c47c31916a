/**
 * The on-disk layout of a chunked video dataset (REFERENCE_SPEC §1.1.2, ARCHITECTURE §3):
 *
 * ```
 * <root>/config.json            { T_total, chunk_size, … }
 * <root>/train/<seed>/<k>.npy   frames [k·chunk_size, (k+1)·chunk_size), shape (chunk_size, H, W, C)
 * <root>/test/<seed>/<k>.npy
 * ```
 *
 * flexvid writes `dtype` and `format_version` into the config as well, and `T_total_test` when
 * the test stream has a different length from the train stream (imported/converted videos).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileFormatError } from '../util/errors.ts';
import type { NpyDtype } from './npy.ts';

/** Version of the layout written by flexvid (readers accept files without it: reference data). */
export const FORMAT_VERSION = 1;

/** The two streams of a dataset. */
export type Split = 'train' | 'test';
export const SPLITS: readonly Split[] = ['train', 'test'];

/** Element types flexvid writes for frames. */
export type StoreDtype = 'uint8' | 'float32' | 'float64';
export const STORE_DTYPES: readonly StoreDtype[] = ['uint8', 'float32', 'float64'];
/** `.npy` descr of each frame dtype. */
export const NPY_OF_DTYPE: Record<StoreDtype, NpyDtype> = { uint8: '|u1', float32: '<f4', float64: '<f8' };

/** The fields of `config.json` readers rely on (other keys are kept as they are). */
export interface DatasetConfig {
  /** Frames in the train stream (and in the test stream unless `T_total_test` is set). */
  T_total: number;
  /** Frames per chunk file; divides `T_total`. */
  chunk_size: number;
  /** Frames in the test stream, when different from `T_total` (flexvid extension). */
  T_total_test?: number;
  resolution?: number;
  seed?: number;
  dtype?: StoreDtype;
  format_version?: number;
  [key: string]: unknown;
}

/** `<root>/config.json`. */
export function configPath(root: string): string {
  return path.join(root, 'config.json');
}

/** `<root>/<split>/<seed>`. */
export function splitDir(root: string, split: Split, seed: number): string {
  return path.join(root, split, String(seed));
}

/** `<root>/<split>/<seed>/<k>.npy`. */
export function chunkPath(root: string, split: Split, seed: number, k: number): string {
  return path.join(splitDir(root, split, seed), `${k}.npy`);
}

function positiveInt(file: string, cfg: Record<string, unknown>, key: string, optional: boolean): number | undefined {
  const v = cfg[key];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
    throw new FileFormatError(file, `expected a positive integer for "${key}" but found ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Parse and check a dataset `config.json`: `T_total` and `chunk_size` positive integers with
 * `chunk_size | T_total` (likewise `T_total_test` when present). Errors name the file and field.
 */
export function parseDatasetConfig(text: string, file: string): DatasetConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(file, `invalid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new FileFormatError(file, 'expected a JSON object with T_total and chunk_size');
  }
  const cfg = raw as Record<string, unknown>;
  const total = positiveInt(file, cfg, 'T_total', false)!;
  const chunk = positiveInt(file, cfg, 'chunk_size', false)!;
  if (total % chunk !== 0) {
    throw new FileFormatError(file, `chunk_size ${chunk} does not divide T_total ${total}`);
  }
  const totalTest = positiveInt(file, cfg, 'T_total_test', true);
  if (totalTest !== undefined && totalTest % chunk !== 0) {
    throw new FileFormatError(file, `chunk_size ${chunk} does not divide T_total_test ${totalTest}`);
  }
  positiveInt(file, cfg, 'resolution', true);
  if (cfg.dtype !== undefined && !STORE_DTYPES.includes(cfg.dtype as StoreDtype)) {
    throw new FileFormatError(file, `expected dtype to be one of ${STORE_DTYPES.join(', ')} but found ${JSON.stringify(cfg.dtype)}`);
  }
  return cfg as DatasetConfig;
}

/** Read `<root>/config.json` (see {@link parseDatasetConfig}). A missing file is a FileFormatError. */
export function readDatasetConfig(root: string): DatasetConfig {
  const file = configPath(root);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileFormatError(file, code === 'ENOENT' ? 'missing dataset config (is this a dataset folder?)' : `cannot read (${code})`);
  }
  return parseDatasetConfig(text, file);
}

/** Frames of a split's stream according to the config. */
export function splitFrames(cfg: DatasetConfig, split: Split): number {
  return split === 'test' && cfg.T_total_test !== undefined ? cfg.T_total_test : cfg.T_total;
}

/** Remove temporary files (`.<name>.<pid>.<n>.tmp`) an interrupted atomic write left in `dir`. */
export function removeStaleTemps(dir: string): number {
  let removed = 0;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (/^\..+\.\d+\.\d+\.tmp$/.test(name)) {
      const m = /\.(\d+)\.\d+\.tmp$/.exec(name)!;
      if (Number(m[1]) === process.pid) continue; // our own write in progress
      fs.rmSync(path.join(dir, name), { force: true });
      removed++;
    }
  }
  return removed;
}
