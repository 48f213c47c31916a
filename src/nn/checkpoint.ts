/**
 * Checkpoints as safetensors files (REFERENCE_SPEC §6.7 proposal: "safetensors-like weights + JSON
 * config/step", parameter names identical to the reference module paths).
 *
 * A checkpoint is a map of named tensors plus a string → string metadata map; it is written
 * atomically (temporary sibling + rename) and read back bit-exactly, in any dtype the engine has.
 * Files are plain safetensors, so Python's `safetensors.torch.load_file` opens them.
 *
 * Conventions used by the helpers below:
 * - module weights: the module's state-dict names (`input_blocks.1.0.in_layers.2.weight`);
 * - optimiser state: `<param>.exp_avg`, `<param>.exp_avg_sq`, with the JSON scalars (lr, betas,
 *   eps, weight decay, step counts) in metadata key `flexvid.optimizer`.
 */
import { fromBytes, type Tensor } from '../engine/index.ts';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.ts';
import type { RawTensor } from '../io/raw-tensor.ts';
import { FileFormatError } from '../util/errors.ts';
import type { Module } from './module.ts';
import type { AdamW, AdamWScalars } from './optim.ts';

/** Metadata key holding the optimiser's JSON scalars. */
export const OPTIMIZER_METADATA_KEY = 'flexvid.optimizer';

/** A tensor's bytes (copied to CPU, C order) as an engine-independent {@link RawTensor}. */
export function tensorToRaw(t: Tensor): RawTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: t.toBytes() };
}

/** A new tensor holding a {@link RawTensor}'s values (on `device`, default CPU). */
export function rawToTensor(r: RawTensor, device?: string): Tensor {
  const t = fromBytes(r.data, r.shape, r.dtype);
  if (device === undefined || device === 'cpu') return t;
  const moved = t.to({ device });
  t.dispose();
  return moved;
}

/**
 * Save named tensors and optional metadata to `path` atomically.
 * @param tensors  name → tensor (Map or plain object); tensors are copied, not consumed
 */
export function saveTensors(path: string, tensors: Map<string, Tensor> | Record<string, Tensor>, metadata?: Record<string, string>): void {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const raw: Record<string, RawTensor> = {};
  for (const [name, t] of entries) {
    Object.defineProperty(raw, name, { value: tensorToRaw(t), enumerable: true, writable: true, configurable: true });
  }
  saveSafetensors(path, raw, metadata);
}

/** Tensors and metadata read from a checkpoint (the caller owns the tensors). */
export interface LoadedTensors {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

/**
 * Load a checkpoint written by {@link saveTensors} (or any safetensors file).
 * @param opts.device  place the tensors on this device (default CPU)
 * @param opts.names   load only these names (FileFormatError if one is missing)
 */
export function loadTensors(path: string, opts: { device?: string; names?: readonly string[] } = {}): LoadedTensors {
  const { tensors, metadata } = loadSafetensors(path, opts.names ? { names: opts.names } : {});
  const out = new Map<string, Tensor>();
  try {
    for (const [name, r] of Object.entries(tensors)) out.set(name, rawToTensor(r, opts.device));
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return { tensors: out, metadata };
}

/** Save `module.stateDict()` (parameters and buffers) with optional metadata. */
export function saveModule(path: string, module: Module, metadata?: Record<string, string>): void {
  saveTensors(path, module.stateDict(), metadata);
}

/**
 * Load weights saved by {@link saveModule} into `module` (strict by default: missing, unexpected
 * and mismatched names are reported together). Returns the file's metadata.
 */
export function loadModule(path: string, module: Module, opts: { strict?: boolean } = {}): Record<string, string> {
  const { tensors, metadata } = loadTensors(path);
  try {
    module.loadStateDict(tensors, opts);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
  return metadata;
}

/** Save an AdamW optimiser's state (tensors + JSON scalars in metadata) with extra metadata. */
export function saveOptimizer(path: string, opt: AdamW, metadata: Record<string, string> = {}): void {
  const { tensors, scalars } = opt.stateDict();
  saveTensors(path, tensors, { ...metadata, [OPTIMIZER_METADATA_KEY]: JSON.stringify(scalars) });
}

/** Restore an optimiser saved by {@link saveOptimizer}. Returns the file's metadata. */
export function loadOptimizer(path: string, opt: AdamW): Record<string, string> {
  const { tensors, metadata } = loadTensors(path);
  try {
    const json = metadata[OPTIMIZER_METADATA_KEY];
    if (json === undefined) throw new FileFormatError(path, `no optimiser state (metadata key ${OPTIMIZER_METADATA_KEY} is missing)`);
    let scalars: AdamWScalars;
    try {
      scalars = JSON.parse(json) as AdamWScalars;
    } catch (e) {
      throw new FileFormatError(path, `metadata ${OPTIMIZER_METADATA_KEY} is not JSON (${(e as Error).message})`);
    }
    opt.loadStateDict({ tensors, scalars });
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
  return metadata;
}
