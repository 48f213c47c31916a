/**
 * Fixtures for the evaluation tests: a small bouncing-balls dataset, a tiny checkpoint in the
 * `checkpoints/<run>/ema_<rate>_<step>.safetensors` layout, and hand-made evaluation folders.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateBalls } from '../../src/data/balls-generate.ts';
import { UNetVideoModel } from '../../src/model/unet.ts';
import { DEFAULT_DIFFUSION_CONFIG } from '../../src/diffusion/gaussian-diffusion.ts';
import { saveWeights, type CheckpointMeta } from '../../src/training/checkpoint.ts';
import { writeNpy } from '../../src/data/npy.ts';
import { floatToU8 } from '../../src/media/frames.ts';
import type { WindowDataset } from '../../src/data/views.ts';
import { samplePath } from '../../src/sampling/naming.ts';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A fresh temporary folder (removed by the caller with `rmTmp`). */
export function tmpDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `flexvid-${tag}-`));
}

export function rmTmp(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** A bouncing-balls dataset folder (train and test streams of `frames` frames, 32 × 32). */
export async function makeBalls(dir: string, o: { frames?: number; chunkSize?: number; colorShift?: boolean } = {}): Promise<string> {
  const out = path.join(dir, o.colorShift ? 'ball_nstn' : 'ball_stn');
  await generateBalls({ out, frames: o.frames ?? 200, chunkSize: o.chunkSize ?? 100, resolution: 32, workers: 1, colorShift: o.colorShift });
  return out;
}

/** The tiny U-Net used by every test (fast on a CPU; output layer zero-initialised). */
export const TINY_MODEL = { imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2, channelMult: [1, 2], attentionResolutions: '' };

/**
 * Write `<dir>/checkpoints/run1/ema_0.9999_000010.safetensors` for `dataset` (T = 8, K = 8).
 * A freshly initialised model predicts ε = 0 exactly (zero-initialised output convolution).
 */
export function makeCheckpoint(dir: string, dataset: string, o: { maxFrames?: number; T?: number; run?: string } = {}): string {
  const model = new UNetVideoModel(TINY_MODEL);
  const file = path.join(dir, 'checkpoints', o.run ?? 'run1', 'ema_0.9999_000010.safetensors');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const meta: CheckpointMeta = {
    config: {
      model: model.config,
      diffusion: { ...DEFAULT_DIFFUSION_CONFIG },
      dataset,
      T: o.T ?? 8,
      maxFrames: o.maxFrames ?? 8,
      diffusionSpace: 'pixel',
      train: { dataset, T: o.T ?? 8, maxFrames: o.maxFrames ?? 8, scheduleSampler: 'uniform', batchSize: 2 },
    },
    step: 10,
    kind: 'ema_0.9999',
  };
  saveWeights(file, model.stateDict(), meta);
  model.dispose();
  return file;
}

/** uint8 `[T, C, H, W]` of a dataset item, converted like samples are saved. */
export function itemU8(dataset: WindowDataset, i: number): Uint8Array {
  return Uint8Array.from(dataset.get(i).frames, floatToU8);
}

/** Create an eval dir by hand: model_config.json naming `dataset`, and optional sample files. */
export function makeEvalDir(root: string, identifier: string, dataset: string): string {
  const dir = path.join(root, 'results', 'run1', 'ema_0.9999_000010_ddpm', identifier);
  fs.mkdirSync(path.join(dir, 'samples'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'model_config.json'), JSON.stringify({ dataset, T: 8, max_frames: 8 }, null, 4));
  return dir;
}

/** Write `samples/sample_<i>-<k>.npy` holding `data` (uint8 `[T, 3, H, W]`). */
export function writeSample(evalDir: string, i: number, k: number, data: Uint8Array, T: number, H = 32, W = 32): void {
  writeNpy(samplePath(evalDir, i, k), { dtype: '|u1', shape: [T, 3, H, W], data });
}
