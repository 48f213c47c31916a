/**
 * Reading the reference implementation's PyTorch checkpoints and replay state
 * (REFERENCE_SPEC §6.7, §3.2).
 *
 * Run directory `checkpoints/<run_id>/`:
 * - `model{step:06d}.pt`            `{state_dict, config, step}` (training weights)
 * - `ema_{rate}_{step:06d}.pt`      same structure with EMA weights (`rate` = the float's text)
 * - `opt{step:06d}.pt`              optimiser state only (not imported)
 * - `replay_state.pt`               `{next_index: int, buffer_indices: list[int]}`
 *
 * Parameter names are kept verbatim: our modules use the reference module paths (§12), so the
 * name mapping is the identity.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { FileFormatError } from '../util/errors.ts';
import { isRawTensor, type RawTensor } from './raw-tensor.ts';
import { readTorchFile, writeTorchFile } from './torch-pickle.ts';

/** Content of a reference model / EMA checkpoint. */
export interface ReferenceCheckpoint {
  /** Parameter name (reference module path, §12) → tensor. */
  stateDict: Record<string, RawTensor>;
  /** Training arguments stored with the weights (empty object when absent). */
  config: Record<string, unknown>;
  /** Training step: the file's `step` field, else the number parsed from the file name, else 0. */
  step: number;
}

/** What a reference checkpoint file name says about its content. */
export type ReferenceCheckpointName =
  | { kind: 'model'; step: number }
  | { kind: 'ema'; rate: string; step: number }
  | { kind: 'opt'; step: number };

/**
 * Parse a reference checkpoint file name (`model000100.pt`, `ema_0.9999_000100.pt`,
 * `opt000100.pt`); null for anything else (including `replay_state.pt`).
 */
export function parseReferenceCheckpointName(fileName: string): ReferenceCheckpointName | null {
  const base = nodePath.basename(fileName);
  let m = /^model(\d+)\.pt$/.exec(base);
  if (m) return { kind: 'model', step: Number(m[1]) };
  m = /^opt(\d+)\.pt$/.exec(base);
  if (m) return { kind: 'opt', step: Number(m[1]) };
  m = /^ema_(.+)_(\d+)\.pt$/.exec(base);
  if (m) return { kind: 'ema', rate: m[1]!, step: Number(m[2]) };
  return null;
}

/**
 * Step parsed from a `--resume_checkpoint` path like the reference does: the digits of
 * `…model<digits>.pt`, 0 when the name does not match (§6.7).
 */
export function parseResumeStep(path: string): number {
  const m = /model(\d+)\.pt$/.exec(nodePath.basename(path));
  return m ? Number(m[1]) : 0;
}

/**
 * Read a reference `model*.pt` / `ema_*.pt` checkpoint.
 * The file must hold a dict with a `state_dict` of tensors; `config` may be a dict or an
 * `argparse.Namespace` (both become a plain object); `step` falls back to the file name.
 * @throws FileFormatError naming the file when the structure is different.
 */
export function readReferenceCheckpoint(path: string): ReferenceCheckpoint {
  const content = readTorchFile(path);
  if (!isPlainObject(content)) throw new FileFormatError(path, 'expected a dict with state_dict/config/step at the top level');
  // Some tools save the bare state dict; accept it too (every value a tensor).
  const sd = 'state_dict' in content ? content.state_dict : Object.values(content).every(isRawTensor) ? content : undefined;
  if (!isPlainObject(sd)) throw new FileFormatError(path, 'no state_dict (dict of tensors) found');
  const stateDict: Record<string, RawTensor> = {};
  for (const [k, v] of Object.entries(sd)) {
    if (!isRawTensor(v)) throw new FileFormatError(path, `state_dict entry ${JSON.stringify(k)} is not a tensor`);
    Object.defineProperty(stateDict, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  const cfg = sd === content ? {} : (content.config ?? {});
  if (!isPlainObject(cfg)) throw new FileFormatError(path, 'config must be a dict (or argparse.Namespace)');
  const rawStep = sd === content ? undefined : content.step;
  let step: number;
  if (rawStep === undefined || rawStep === null) {
    const parsed = parseReferenceCheckpointName(path);
    step = parsed ? parsed.step : 0;
  } else if (Number.isSafeInteger(rawStep) && (rawStep as number) >= 0) {
    step = rawStep as number;
  } else {
    throw new FileFormatError(path, `step must be a non-negative integer, got ${String(rawStep)}`);
  }
  return { stateDict, config: cfg, step };
}

/** The model checkpoint with the highest step in a reference run directory (§6.7 resume rule). */
export function findLatestReferenceCheckpoint(runDir: string): { path: string; step: number } | null {
  let best: { path: string; step: number } | null = null;
  for (const f of fs.readdirSync(runDir)) {
    const p = parseReferenceCheckpointName(f);
    if (p?.kind === 'model' && (!best || p.step > best.step)) best = { path: nodePath.join(runDir, f), step: p.step };
  }
  return best;
}

/** EMA checkpoint paths for one step, keyed by the rate text (e.g. "0.9999"). */
export function findReferenceEmaCheckpoints(runDir: string, step: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(runDir)) {
    const p = parseReferenceCheckpointName(f);
    if (p?.kind === 'ema' && p.step === step) out[p.rate] = nodePath.join(runDir, f);
  }
  return out;
}

/** Content of the reference `replay_state.pt` (§3.2). */
export interface ReferenceReplayState {
  /** First stream position to process after resuming. */
  next_index: number;
  /** Reservoir content (stream positions). */
  buffer_indices: number[];
}

/** Read and validate `replay_state.pt`. */
export function readReferenceReplayState(path: string): ReferenceReplayState {
  const v = readTorchFile(path);
  if (!isPlainObject(v)) throw new FileFormatError(path, 'expected a dict {next_index, buffer_indices}');
  const { next_index, buffer_indices } = v;
  if (!Number.isSafeInteger(next_index) || (next_index as number) < 0) throw new FileFormatError(path, `next_index must be a non-negative integer, got ${String(next_index)}`);
  if (!Array.isArray(buffer_indices) || !buffer_indices.every((x) => Number.isSafeInteger(x) && (x as number) >= 0)) {
    throw new FileFormatError(path, 'buffer_indices must be a list of non-negative integers');
  }
  return { next_index: next_index as number, buffer_indices: [...(buffer_indices as number[])] };
}

/** Write `replay_state.pt` in the reference format (readable by `torch.load`), atomically. */
export function writeReferenceReplayState(path: string, state: ReferenceReplayState): void {
  writeTorchFile(path, { next_index: state.next_index, buffer_indices: [...state.buffer_indices] });
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Map) && !(x instanceof Set) && !(x instanceof Uint8Array) && !isRawTensor(x);
}
