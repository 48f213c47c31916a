/**
 * Worker thread of {@link ParsePool} (src/ui/metrics-store.ts): parses a `metrics.jsonl` from a
 * byte offset and sends the columns back as transferred buffers, so that big files never block
 * the server's event loop.
 *
 * Job `{ id, file, offset, ino }` → `{ ok: true, id, ...PackedColumns }` or `{ ok: false, id, error }`.
 */
import { parentPort } from 'node:worker_threads';
import { packColumns, readMetricsFile, RunColumns } from './metrics-store.ts';

parentPort!.on('message', (job: { id: number; file: string; offset: number; ino: number }) => {
  try {
    const base = new RunColumns();
    base.offset = job.offset;
    base.ino = job.ino;
    const cols = readMetricsFile(job.file, base);
    const packed = packColumns(cols, cols !== base);
    parentPort!.postMessage({ ok: true, id: job.id, ...packed }, [packed.step.buffer as ArrayBuffer, packed.time.buffer as ArrayBuffer, ...packed.cols.map(([, a]) => a.buffer as ArrayBuffer)]);
  } catch (e) {
    parentPort!.postMessage({ ok: false, id: job.id, error: (e as Error).message });
  }
});
