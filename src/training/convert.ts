/**
 * Import reference PyTorch checkpoints (`model*.pt`, `ema_*.pt`; §6.7, §12): the state-dict
 * names are ours already, so conversion copies tensors and turns the stored training arguments
 * into a flexvid checkpoint config.
 */
import * as path from 'node:path';
import { readReferenceCheckpoint } from '../io/reference-checkpoint.ts';
import { saveSafetensors } from '../io/safetensors.ts';
import type { DiffusionConfig } from '../diffusion/gaussian-diffusion.ts';
import { resolveDataset } from '../data/registry.ts';
import { TRAIN_FLAGS, diffusionConfigFromOptions, resolveTrainOptions, snake, unetConfigFromOptions } from './options.ts';
import { CHECKPOINT_METADATA_KEY, type CheckpointMeta, type ModelCheckpointConfig } from './checkpoint.ts';
import { FileFormatError } from '../util/errors.ts';

/** flexvid checkpoint config from the reference's `config` dict (snake_case training args). */
export function configFromReference(ref: Record<string, unknown>, file = '<checkpoint>'): { config: ModelCheckpointConfig; ignored: string[] } {
  const known = new Map(TRAIN_FLAGS.map((f) => [snake(f.key), f.key]));
  const given: Record<string, unknown> = {};
  const ignored: string[] = [];
  for (const [k, v] of Object.entries(ref)) {
    if (known.has(k) && v !== null && v !== undefined) given[known.get(k)!] = v;
    else ignored.push(k);
  }
  let o;
  try {
    o = resolveTrainOptions([given]);
  } catch (e) {
    throw new FileFormatError(file, `its training config does not parse: ${(e as Error).message}`);
  }
  let imageSize = o.imageSize;
  let channels = o.inChannels;
  let T = o.T;
  try {
    const info = resolveDataset(o.dataset);
    imageSize = info.imageSize;
    T = T === -1 ? info.T : T;
    channels = o.diffusionSpace === 'latent' ? 4 : info.channels;
  } catch {
    // unknown dataset: keep the stored image_size / in_channels
  }
  const model = unetConfigFromOptions(o, imageSize, channels);
  const diffusion: DiffusionConfig = diffusionConfigFromOptions(o);
  return {
    config: { model, diffusion, dataset: o.dataset, T, maxFrames: o.maxFrames, diffusionSpace: o.diffusionSpace, train: { ...o, T } },
    ignored,
  };
}

/** Convert a reference checkpoint to `out` (safetensors with flexvid metadata). */
export function convertReferenceCheckpoint(file: string, out: string): { meta: CheckpointMeta; tensors: number; ignored: string[] } {
  const ref = readReferenceCheckpoint(file);
  const { config, ignored } = configFromReference(ref.config, file);
  const base = path.basename(file);
  const kind = base.startsWith('ema_') ? base.replace(/_\d+\.pt$/, '') : 'model';
  const meta: CheckpointMeta = { config, step: ref.step, kind };
  saveSafetensors(out, ref.stateDict, { [CHECKPOINT_METADATA_KEY]: JSON.stringify(meta), format: 'pt', source: base });
  return { meta, tensors: Object.keys(ref.stateDict).length, ignored };
}
