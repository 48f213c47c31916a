/**
 * I3D feature throughput (FVD/KVD, REFERENCE_SPEC §8.2): videos per second for 16-frame 64² uint8
 * clips at batch 4 with random weights (the full Kinetics-400 network; weights do not change the
 * cost). Cases: the whole `features()` call (TF1 resize to 224², scaling, network), and its two parts.
 *
 *   npm run bench -- sample-i3d [--reps 3] [--device cpu|cuda] [--batch 4] [--frames 16] [--size 64]
 *
 * Prints a table, then as its last line `{"bench":"i3d","threads":N,"results":[{case, ms, videos_per_s}]}`
 * (ms per batch, median of the repetitions after one warm-up).
 */
import { getNumThreads, inferenceMode, randint, Generator } from '../src/engine/index.ts';
import { I3D, preprocessI3D } from '../src/metrics/i3d.ts';

function arg(args: string[], name: string, dflt: string): string {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1]! : dflt;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function run(args: string[] = []): Promise<void> {
  const reps = Number(arg(args, '--reps', '3'));
  const device = arg(args, '--device', 'cpu');
  const B = Number(arg(args, '--batch', '4'));
  const T = Number(arg(args, '--frames', '16'));
  const S = Number(arg(args, '--size', '64'));
  const net = I3D.random(0);
  if (device !== 'cpu') net.to({ device });
  using videos = randint(0, 256, [B, T, S, S, 3], new Generator(1), { dtype: 'uint8' });
  const time = (fn: () => void): number => {
    fn(); // warm-up (also folds the batch norms)
    const ms: number[] = [];
    for (let r = 0; r < reps; r++) {
      const t0 = performance.now();
      fn();
      ms.push(performance.now() - t0);
    }
    return median(ms);
  };
  const label = `${B}×${T}×${S}² ${device}`;
  const results: { case: string; ms: number; videos_per_s: number }[] = [];
  const add = (name: string, ms: number) => results.push({ case: `${name} ${label}`, ms: Math.round(ms * 10) / 10, videos_per_s: Math.round((B / (ms / 1000)) * 1000) / 1000 });

  add('features (resize+network)', time(() => net.features(videos, { batchSize: B }).dispose()));
  add('preprocess (TF1 resize 224², scale)', time(() => inferenceMode(() => preprocessI3D(videos, 'BTHWC', 'tf1', device).dispose())));
  const x = inferenceMode(() => preprocessI3D(videos, 'BTHWC', 'tf1', device));
  add('network forward', time(() => inferenceMode(() => net.forward(x).dispose())));
  x.dispose();
  net.dispose();

  const threads = getNumThreads();
  console.log(`I3D (Kinetics-400, ${Math.round(12.697264 * 100) / 100} M parameters) feature throughput, ${threads} threads, median of ${reps}`);
  console.log('case'.padEnd(52) + 'ms/batch'.padStart(12) + 'videos/s'.padStart(12));
  for (const r of results) console.log(r.case.padEnd(52) + r.ms.toFixed(1).padStart(12) + r.videos_per_s.toFixed(3).padStart(12));
  console.log(JSON.stringify({ bench: 'i3d', threads, results }));
}
