/**
 * Library example: make a small colour-shifting balls stream, train a tiny model lifelong with
 * replay for a few steps, then continue a test video with the hierarchy-2 scheme and save a GIF.
 *
 *   node --import tsx examples/train-and-sample.ts [outDir] [steps]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  generateBalls,
  train,
  resolveTrainOptions,
  loadModelCheckpoint,
  getEvalDataset,
  sampleVideo,
  tidy,
  engine,
  videoFromFloatTCHW,
  markObserved,
  videoFrames,
  writeGif,
} from 'flexvid';

const out = path.resolve(process.argv[2] ?? 'flexvid-examples/train-and-sample');
const steps = Number(process.argv[3] ?? 20);
fs.mkdirSync(out, { recursive: true });

const data = path.join(out, 'balls');
await generateBalls({ out: data, frames: 600, chunkSize: 300, colorShift: true });

const run = await train(
  resolveTrainOptions([
    {
      dataset: `streaming_${data}`, // read the stream in order (lifelong)
      nSampleStm: 1, // one slot for the newest window …
      ltmSize: 100, // … the other replayed from a reservoir of 100 past windows
      batchSize: 2,
      T: 10,
      maxFrames: 10,
      numChannels: 32,
      numResBlocks: 1,
      numHeads: 2,
      maxSteps: steps,
      checkpointsDir: path.join(out, 'checkpoints'),
      runId: `example-${Date.now()}`,
    },
  ]),
);
console.log(`trained ${run.step} steps → ${run.runDir}`);

const { model, diffusion } = loadModelCheckpoint(path.join(run.runDir, `ema_0.9999_${String(run.step).padStart(6, '0')}.safetensors`));
const { dataset } = await getEvalDataset(data, { T: 20, config: 'chunked' });
const item = dataset.get(0);
tidy(() => {
  const videos = engine.tensor(item.frames, { shape: [1, ...item.shape] });
  const { samples } = sampleVideo({ model, diffusion, videos, nObs: 5, maxFrames: 10, scheme: 'hierarchy-2', sampler: 'heun-80-inf-0-1-1000-0.002-7-10' });
  const [, T, C, H, W] = samples.shape as number[];
  const v = markObserved(videoFromFloatTCHW(samples.select(0, 0).toFloat32Array(), T!, C!, H!, W!), [0, 1, 2, 3, 4]);
  writeGif(path.join(out, 'sample.gif'), videoFrames(v), W!, H!, { fps: 5 });
});
model.dispose();
console.log(`wrote ${path.join(out, 'sample.gif')}`);
