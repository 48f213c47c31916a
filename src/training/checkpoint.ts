/**
 * Run folders and checkpoints (ARCHITECTURE §3, REFERENCE_SPEC §6.7).
 *
 * ```
 * checkpoints/<run-id>/
 *   config.json                      resolved training options + model/diffusion config
 *   model<step:06d>.safetensors      weights; metadata "flexvid.checkpoint" = JSON {config, step}
 *   ema_<rate>_<step:06d>.safetensors  EMA weights for each rate (same metadata)
 *   opt<step:06d>.safetensors        AdamW state
 *   state<step:06d>.json             data sampler, RNG and schedule-sampler states (written last:
 *                                    a checkpoint set is complete only when this file exists)
 *   metrics.jsonl                    one JSON object per log flush
 *   status.json                      heartbeat {status, step, pid, updatedAt}
 *   samples/preview_<step:06d>.gif   training-time samples of the EMA model
 * ```
 * Parameter names inside the weight files are the reference's state-dict keys, so reference
 * checkpoints convert by copying tensors (`flexvid convert`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadTensors, saveTensors } from '../nn/checkpoint.ts';
import { UNetVideoModel } from '../model/unet.ts';
import type { UNetConfig } from '../model/config.ts';
import { GaussianDiffusion, type DiffusionConfig } from '../diffusion/gaussian-diffusion.ts';
import type { Tensor } from '../engine/index.ts';
import { FileFormatError } from '../util/errors.ts';
import { writeJsonAtomic } from '../util/fs-atomic.ts';

/** Metadata key of the JSON checkpoint description inside weight files. */
export const CHECKPOINT_METADATA_KEY = 'flexvid.checkpoint';

/** Everything needed to rebuild and use a trained model. */
export interface ModelCheckpointConfig {
  /** The model architecture. */
  model: UNetConfig;
  /** The diffusion process it was trained with. */
  diffusion: DiffusionConfig;
  /** Dataset name/folder, window length T and max_frames used in training. */
  dataset: string;
  T: number;
  maxFrames: number;
  /** 'pixel' or 'latent'. */
  diffusionSpace: 'pixel' | 'latent';
  /** All resolved training options (the reference's `config` dict, camelCase keys). */
  train: Record<string, unknown>;
}

export interface CheckpointMeta {
  config: ModelCheckpointConfig;
  step: number;
  /** 'model' or 'ema_<rate>'. */
  kind: string;
}

export function pad6(step: number): string {
  return String(step).padStart(6, '0');
}

export const checkpointFiles = {
  model: (step: number) => `model${pad6(step)}.safetensors`,
  ema: (rateKey: string, step: number) => `ema_${rateKey}_${pad6(step)}.safetensors`,
  opt: (step: number) => `opt${pad6(step)}.safetensors`,
  state: (step: number) => `state${pad6(step)}.json`,
};

/** Save model (or EMA) weights with their config and step. */
export function saveWeights(file: string, weights: Map<string, Tensor>, meta: CheckpointMeta): void {
  saveTensors(file, weights, { [CHECKPOINT_METADATA_KEY]: JSON.stringify(meta), format: 'pt' });
}

/** Read only the checkpoint description of a weight file. */
export function readCheckpointMeta(file: string, metadata: Record<string, string>): CheckpointMeta {
  const json = metadata[CHECKPOINT_METADATA_KEY];
  if (!json) throw new FileFormatError(file, `not a flexvid model checkpoint (metadata "${CHECKPOINT_METADATA_KEY}" missing; convert reference .pt files with flexvid convert)`);
  try {
    return JSON.parse(json) as CheckpointMeta;
  } catch (e) {
    throw new FileFormatError(file, `metadata "${CHECKPOINT_METADATA_KEY}" is not valid JSON (${(e as Error).message})`);
  }
}

/** A model and diffusion rebuilt from a checkpoint, weights loaded, in eval mode. */
export interface LoadedModel {
  model: UNetVideoModel;
  diffusion: GaussianDiffusion;
  meta: CheckpointMeta;
  file: string;
}

/**
 * Rebuild the model of a checkpoint (`model…` or `ema_…` safetensors file) and load its weights.
 * `overrides.timestepRespacing` changes the sampling chain (as `--timestep_respacing` does).
 */
export function loadModelCheckpoint(file: string, opts: { device?: string; timestepRespacing?: string } = {}): LoadedModel {
  if (!fs.existsSync(file)) throw new FileFormatError(file, 'checkpoint not found');
  const { tensors, metadata } = loadTensors(file, { device: opts.device });
  try {
    const meta = readCheckpointMeta(file, metadata);
    const model = new UNetVideoModel(meta.config.model, { device: opts.device });
    model.loadStateDict(tensors);
    model.eval();
    const diffusion = new GaussianDiffusion({
      ...meta.config.diffusion,
      ...(opts.timestepRespacing !== undefined ? { timestepRespacing: opts.timestepRespacing } : {}),
    });
    return { model, diffusion, meta, file };
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

/** Steps that have a complete checkpoint set (the state file is written last), ascending. */
export function completeCheckpointSteps(runDir: string): number[] {
  if (!fs.existsSync(runDir)) return [];
  const steps: number[] = [];
  for (const f of fs.readdirSync(runDir)) {
    const m = /^state(\d+)\.json$/.exec(f);
    if (m && fs.existsSync(path.join(runDir, checkpointFiles.model(Number(m[1]))))) steps.push(Number(m[1]));
  }
  return steps.sort((a, b) => a - b);
}

/** Write a JSON file atomically (re-exported for the training loop). */
export { writeJsonAtomic };
