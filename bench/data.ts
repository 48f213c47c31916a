/**
 * Data-layer benchmark: `npm run bench -- data [--frames 20000] [--windows 4000]`.
 *
 * Cases:
 * - bouncing-balls generation (REFERENCE_SPEC §1.1) of `--frames` frames per stream (train + test,
 *   32×32, uint8) with 1 and 2 render threads;
 * - for comparison, the same rendering done the reference's way (NumPy, one frame at a time) on
 *   2000 frames, when `/usr/bin/python3` with NumPy is available;
 * - store reads: windows per second of T = 10 and T = 20 windows, sequential (Continuous view
 *   order, as streaming training reads) and random starts (shuffled training), cold and warm cache.
 *
 * Prints a table, then one JSON line `{"bench":"data","threads":N,"results":[{case, ms, …}]}`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { generateBalls } from '../src/data/balls-generate.ts';
import { VideoStore } from '../src/data/video-store.ts';
import { ContinuousView } from '../src/data/views.ts';
import { NumpyRandomState } from '../src/util/mt19937.ts';
import { defaultWorkerCount } from '../src/data/worker-pool.ts';

interface Result {
  case: string;
  ms: number;
  rate?: string;
  ratio_vs_numpy?: number;
}

function flag(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : dflt;
}

/** Time the reference-style NumPy renderer (frame by frame) on `frames` frames; null without NumPy. */
function numpyRenderMs(frames: number): number | null {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), '../test/fixtures/data/make-balls.py');
  const code = [
    'import importlib.util, time, numpy as np',
    `spec = importlib.util.spec_from_file_location('mb', ${JSON.stringify(script)})`,
    'mb = importlib.util.module_from_spec(spec); spec.loader.exec_module(mb)',
    `np.random.seed(0); X, V, C = mb.simulate(${frames}, 2, False)`,
    't = time.perf_counter(); A = mb.render(X, C, 32); u = np.round(A * 255).astype(np.uint8)',
    'print((time.perf_counter() - t) * 1000)',
  ].join('\n');
  const r = spawnSync('/usr/bin/python3', ['-c', code], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const ms = Number(r.stdout.trim());
  return Number.isFinite(ms) ? ms : null;
}

export async function run(args: string[] = []): Promise<void> {
  const frames = flag(args, '--frames', 20000);
  const windows = flag(args, '--windows', 4000);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-bench-data-'));
  const results: Result[] = [];
  const threads = Math.min(2, defaultWorkerCount());
  try {
    // 1. Generation, 1 and 2 render threads (2 × frames rendered: train and test).
    for (const workers of [1, threads].filter((w, i, a) => a.indexOf(w) === i)) {
      const out = path.join(tmp, `balls-${workers}`);
      const t0 = performance.now();
      await generateBalls({ out, frames, chunkSize: 1000, workers });
      const ms = performance.now() - t0;
      results.push({ case: `generate ${2 * frames} frames 32x32 uint8, ${workers} thread${workers > 1 ? 's' : ''}`, ms, rate: `${((2 * frames) / (ms / 1000)).toFixed(0)} frames/s` });
    }
    // 2. Reference-style NumPy rendering for comparison (per frame).
    const npFrames = 2000;
    const npMs = numpyRenderMs(npFrames);
    if (npMs !== null) {
      const perFrameNumpy = npMs / npFrames;
      results.push({ case: `numpy reference render ${npFrames} frames (python3)`, ms: npMs, rate: `${(npFrames / (npMs / 1000)).toFixed(0)} frames/s` });
      for (const r of results.filter((x) => x.case.startsWith('generate'))) {
        r.ratio_vs_numpy = Number((perFrameNumpy / (r.ms / (2 * frames))).toFixed(2));
      }
    }
    // 3. Store reads.
    const root = path.join(tmp, 'balls-1');
    const rng = new NumpyRandomState(1);
    for (const T of [10, 20]) {
      for (const order of ['sequential', 'random'] as const) {
        for (const cache of ['cold', 'warm'] as const) {
          const store = VideoStore.open(root, { dataRoot: null });
          const view = new ContinuousView(store, { T });
          const n = Math.min(windows, view.length);
          const idx = Array.from({ length: n }, (_, i) => (order === 'sequential' ? i : rng.randint(0, view.length)));
          // Windows are assembled into one reused batch buffer of 8 windows, as a loader would.
          const [C, H, W] = view.frameShape();
          const win = T * C * H * W;
          const batch = new Float32Array(8 * win);
          if (cache === 'warm') for (const i of idx) view.getInto(i, batch.subarray(0, win));
          const t0 = performance.now();
          let sink = 0;
          idx.forEach((i, k) => {
            view.getInto(i, batch.subarray((k % 8) * win, (k % 8 + 1) * win));
            sink += batch[(k % 8) * win]!;
          });
          const ms = performance.now() - t0;
          if (Number.isNaN(sink)) throw new Error('bad read');
          results.push({ case: `read T=${T} ${order} ${cache} cache, ${n} windows`, ms, rate: `${(n / (ms / 1000)).toFixed(0)} windows/s` });
        }
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const width = Math.max(...results.map((r) => r.case.length));
  console.log(`${'case'.padEnd(width)}  ${'ms'.padStart(10)}  rate`);
  for (const r of results) {
    const ratio = r.ratio_vs_numpy !== undefined ? `  (${r.ratio_vs_numpy}× NumPy per frame)` : '';
    console.log(`${r.case.padEnd(width)}  ${r.ms.toFixed(1).padStart(10)}  ${r.rate ?? ''}${ratio}`);
  }
  console.log(
    JSON.stringify({
      bench: 'data',
      threads,
      results: results.map((r) => ({ case: r.case, ms: Number(r.ms.toFixed(2)), ...(r.ratio_vs_numpy !== undefined ? { ratio_vs_numpy: r.ratio_vs_numpy } : {}) })),
    }),
  );
}
