/**
 * Training benchmark (issue 5): steady-state steps/s and frames/s of the Balls config
 * (32², ch 64, 1 res-block, K = 10, batch 2) on a lifelong stream with reservoir replay, and the
 * fraction of wall time spent waiting for data (target < 2%).
 *
 * Usage: npm run bench -- train [--steps 20] [--workers 1] [--channels 64]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateBalls } from '../src/data/balls-generate.ts';
import { resolveTrainOptions } from '../src/training/options.ts';
import { train } from '../src/training/loop.ts';
import { getNumThreads } from '../src/engine/index.ts';
import { median } from './lib/peer.ts';

function flag(args: string[], name: string, dflt: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
}

export async function run(args: string[]): Promise<void> {
  const steps = Number(flag(args, 'steps', '20'));
  const workers = Number(flag(args, 'workers', '1'));
  const channels = Number(flag(args, 'channels', '64'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-bench-train-'));
  await generateBalls({ out: path.join(dir, 'balls'), frames: 2000, chunkSize: 500, colorShift: true });
  const stepMs: number[] = [];
  let last = 0;
  const opts = resolveTrainOptions([
    {
      dataset: `streaming_${path.join(dir, 'balls')}`,
      T: 10,
      maxFrames: 10,
      numChannels: channels,
      numResBlocks: 1,
      batchSize: 2,
      nSampleStm: 1,
      ltmSize: 500,
      maxSteps: steps,
      logInterval: 1000,
      saveInterval: 1_000_000,
      sampleInterval: 1_000_000,
      numWorkers: workers,
      checkpointsDir: path.join(dir, 'checkpoints'),
    },
  ]);
  const t0 = performance.now();
  const r = await train(opts, {
    onStep: () => {
      const now = performance.now();
      if (last) stepMs.push(now - last);
      last = now;
    },
  });
  const wall = performance.now() - t0;
  const steady = stepMs.slice(Math.min(2, stepMs.length - 1)); // drop warm-up steps
  const ms = median(steady);
  const rows = [
    { case: `balls lifelong+replay ch${channels} (${workers ? 'worker thread' : 'inline'} loading)`, ms: Math.round(ms), steps_per_s: Number((1000 / ms).toFixed(3)), frames_per_s: Number(((1000 / ms) * 2 * 10).toFixed(1)), data_wait_pct: Number((100 * r.dataWaitFraction).toFixed(2)) },
  ];
  console.log(`train benchmark — ${getNumThreads()} thread(s), ${steps} steps, total ${(wall / 1000).toFixed(1)} s (incl. start-up and checkpoints)`);
  console.log(`${'case'.padEnd(48)} ${'ms/step'.padStart(8)} ${'steps/s'.padStart(8)} ${'frames/s'.padStart(9)} ${'data wait %'.padStart(12)}`);
  for (const row of rows) console.log(`${row.case.padEnd(48)} ${String(row.ms).padStart(8)} ${String(row.steps_per_s).padStart(8)} ${String(row.frames_per_s).padStart(9)} ${String(row.data_wait_pct).padStart(12)}`);
  console.log(JSON.stringify({ bench: 'train', threads: getNumThreads(), results: rows }));
  fs.rmSync(dir, { recursive: true, force: true });
}
