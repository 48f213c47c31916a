/**
 * Library example: inspect a bouncing-balls stream with the dataset views and score "predictions"
 * with the ball-tracking metrics (minADE, colour accuracy, transition KL). Here the prediction is
 * the ground truth shifted by one frame — a poor model of motion, so minADE > 0.
 *
 *   node --import tsx examples/stream-metrics.ts [outDir]
 */
import * as path from 'node:path';
import { generateBalls, getEvalDataset, evaluateBallVideos } from 'flexvid';

const out = path.resolve(process.argv[2] ?? 'flexvid-examples/stream-metrics');
const data = path.join(out, 'balls');
await generateBalls({ out: data, frames: 400, chunkSize: 200 });

const { dataset } = await getEvalDataset(data, { T: 21, config: 'chunked' });
console.log(`${dataset.length} chunked test windows of ${dataset.T} frames`);
const gt = [];
const shifted = [];
for (let i = 0; i < 3; i++) {
  const w = dataset.get(i);
  const [T, C, H, W] = w.shape as [number, number, number, number];
  const frame = C * H * W;
  gt.push({ data: w.frames.subarray(0, (T - 1) * frame), T: T - 1, H, W });
  shifted.push([{ data: w.frames.subarray(frame), T: T - 1, H, W }]);
}
const m = evaluateBallVideos(gt, shifted, { nObs: 5 });
console.log(`minADE ${m.minADE.toFixed(3)}  colour accuracy ${m.colorAccuracy.toFixed(3)}  transition KL ${m.transKL.toFixed(3)}`);
