/**
 * Worker thread of the training data loader: opens the train view once, then answers
 * `{id, indices}` requests with the windows' frames (transferred, not copied).
 */
import { parentPort } from 'node:worker_threads';
import { getTrainDataset } from '../data/datasets.ts';
import type { ContinuousView } from '../data/views.ts';
import { readBatch, type LoaderInit } from './loader.ts';

let dataset: ContinuousView | null = null;

parentPort!.on('message', async (msg: { init?: LoaderInit; id?: number; indices?: number[] }) => {
  try {
    if (msg.init) {
      dataset = (await getTrainDataset(msg.init.dataset, { T: msg.init.T })).dataset;
      parentPort!.postMessage({ ok: true, init: true });
      return;
    }
    const batch = readBatch(dataset!, msg.indices!);
    parentPort!.postMessage({ ok: true, id: msg.id, ...batch }, [batch.frames.buffer as ArrayBuffer, batch.absIndex.buffer as ArrayBuffer]);
  } catch (e) {
    parentPort!.postMessage({ ok: false, id: msg.id, error: (e as Error).message });
  }
});
