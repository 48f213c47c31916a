/**
 * Training data loader: reads the windows of a batch, either in a worker thread (so reading
 * overlaps the synchronous libtorch compute of the previous step) or inline.
 */
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../data/worker-pool.ts';
import { getTrainDataset } from '../data/datasets.ts';
import type { ContinuousView } from '../data/views.ts';

export interface LoaderInit {
  dataset: string;
  T: number;
}

/** Frames of B windows `[B, T, C, H, W]` (flat) and their absolute frame indices `[B, T]`. */
export interface LoadedWindows {
  frames: Float32Array;
  absIndex: Float64Array;
  shape: [number, number, number, number, number];
}

/** Read and concatenate windows `indices` of a view. */
export function readBatch(dataset: ContinuousView, indices: readonly number[]): LoadedWindows {
  const [C, H, W] = dataset.frameShape();
  const T = dataset.T;
  const per = T * C * H * W;
  const frames = new Float32Array(indices.length * per);
  const absIndex = new Float64Array(indices.length * T);
  indices.forEach((i, b) => {
    const w = dataset.get(i);
    frames.set(w.frames, b * per);
    for (let t = 0; t < T; t++) absIndex[b * T + t] = w.indices[t]!;
  });
  return { frames, absIndex, shape: [indices.length, T, C, H, W] };
}

export class WindowLoader {
  private worker: Worker | null = null;
  private inline: ContinuousView | null = null;
  private pending = new Map<number, { resolve: (v: LoadedWindows) => void; reject: (e: Error) => void }>();
  private nextId = 0;

  private constructor(readonly length: number, readonly frameShape: [number, number, number]) {}

  /**
   * Open the train stream of `dataset` with windows of `T` frames.
   * `workers` > 0 reads in a worker thread; 0 reads inline.
   */
  static async open(init: LoaderInit, workers: number): Promise<WindowLoader> {
    const { dataset } = await getTrainDataset(init.dataset, { T: init.T });
    const loader = new WindowLoader(dataset.length, dataset.frameShape());
    if (workers <= 0) {
      loader.inline = dataset;
      return loader;
    }
    const w = startModuleWorker(new URL('./loader-worker.ts', import.meta.url));
    loader.worker = w;
    await new Promise<void>((resolve, reject) => {
      const onMsg = (m: { ok: boolean; init?: boolean; error?: string }) => {
        if (m.init || !m.ok) {
          w.off('message', onMsg);
          if (m.ok) resolve();
          else reject(new Error(m.error));
        }
      };
      w.on('message', onMsg);
      w.once('error', reject);
      w.postMessage({ init });
    });
    w.on('message', (m: { ok: boolean; id: number; error?: string } & LoadedWindows) => {
      const p = loader.pending.get(m.id);
      if (!p) return;
      loader.pending.delete(m.id);
      if (m.ok) p.resolve({ frames: m.frames, absIndex: m.absIndex, shape: m.shape });
      else p.reject(new Error(m.error));
    });
    w.on('error', (e) => {
      for (const p of loader.pending.values()) p.reject(e);
      loader.pending.clear();
    });
    return loader;
  }

  /** Start reading windows `indices`; resolves when their frames are in memory. */
  fetch(indices: readonly number[]): Promise<LoadedWindows> {
    if (this.inline) {
      try {
        return Promise.resolve(readBatch(this.inline, indices));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker!.postMessage({ id, indices: [...indices] });
    });
  }

  async close(): Promise<void> {
    if (this.worker) await this.worker.terminate();
    this.worker = null;
  }
}
