/**
 * Worker-thread entry of the balls generator: renders one chunk and writes it atomically.
 * Jobs come from `generateBalls` (balls-generate.ts) through `runPool` (worker-pool.ts).
 */
import { parentPort } from 'node:worker_threads';
import { renderChunkToFile, type RenderChunkJob } from './balls-generate.ts';

parentPort!.on('message', (job: RenderChunkJob) => {
  try {
    renderChunkToFile(job);
    parentPort!.postMessage({ ok: true, frames: job.count });
  } catch (e) {
    parentPort!.postMessage({ ok: false, error: e instanceof Error ? e.message : String(e) });
  }
});
