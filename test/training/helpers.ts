/** Shared fixtures for training tests: a tiny balls stream and tiny-model options. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateBalls } from '../../src/data/balls-generate.ts';
import { resolveTrainOptions, type TrainOptions } from '../../src/training/options.ts';

let cached: string | null = null;

/** A 400-frame colour-shifting balls stream (train + test), generated once per process. */
export async function tinyBalls(): Promise<string> {
  if (cached) return cached;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-train-'));
  await generateBalls({ out: path.join(dir, 'balls'), frames: 400, chunkSize: 100, colorShift: true, workers: 1 });
  cached = path.join(dir, 'balls');
  return cached;
}

/** Options for a ~2M-parameter model on 4-frame windows: a step takes well under a second. */
export function tinyOptions(dataset: string, extra: Partial<TrainOptions> = {}): TrainOptions {
  const ckpt = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-ckpt-'));
  return resolveTrainOptions([
    {
      dataset,
      T: 4,
      maxFrames: 4,
      numChannels: 32,
      numResBlocks: 1,
      numHeads: 2,
      batchSize: 2,
      diffusionSteps: 100,
      logInterval: 1,
      saveInterval: 1000,
      sampleInterval: 100000,
      numWorkers: 0,
      checkpointsDir: ckpt,
      threads: 2,
      ...extra,
    },
  ]);
}
