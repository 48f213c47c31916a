/**
 * `flexvid minade --eval-dir DIR` (REFERENCE_SPEC §8.4, `scripts/video_minade.py` as of c6f25f7):
 * bouncing-ball trajectory metrics of sampled videos against the ground truth.
 *
 * T, n_obs, config, frame range and split come from the eval dir's identifier; the dataset from
 * its `model_config.json`; samples from `samples/sample_<i:04d>-<k>.npy` for every
 * `k` in `--sample-indices`. Non-stationary balls shift the blue channel of the detection kernels
 * by `window start / T_total` (Spaced: `(lo + i·spacing)/T_total`, Chunked: `(lo + i·T)/T_total`).
 * Writes `minADE-<N>.txt`, `color-acc-<N>.txt`, `trans-kl-<N>.txt` (`%.18e`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openFrameSource } from '../data/datasets.ts';
import { ChunkedView, SpacedView } from '../data/views.ts';
import { evaluateBallVideos, u8VideoToFloat, type BallMetrics, type FloatVideo } from '../metrics/ball-tracks.ts';
import { metricFileNames, writeMetricFile } from '../metrics/results.ts';
import { samplePath } from '../sampling/naming.ts';
import { FileFormatError, FlexvidError, OptionError } from '../util/errors.ts';
import { openEvalDataset, readEvalDir, readSampleFile, type Reporting } from './common.ts';

/** Options of {@link runMinade}. */
export interface MinadeOptions extends Reporting {
  evalDir: string;
  /** Number of test videos N (default: the count of consecutive sample files from index 0). */
  numVideos?: number;
  /** Balls per video (default 2). */
  nBalls?: number;
  /** Seeds per video (default [0]). */
  sampleIndices?: number[];
}

/** What {@link runMinade} computed and wrote. */
export interface MinadeResult extends BallMetrics {
  numVideos: number;
  files: { minADE: string; colorAcc: string; transKl: string };
}

/** Number of consecutive data indices 0, 1, … that have a sample file for every seed. */
export function countSampledVideos(evalDir: string, seeds: readonly number[]): number {
  let n = 0;
  while (seeds.every((k) => fs.existsSync(samplePath(evalDir, n, k)))) n++;
  return n;
}

/** Compute and write the §8.4 metrics of an eval dir. */
export async function runMinade(o: MinadeOptions): Promise<MinadeResult> {
  const info = readEvalDir(o.evalDir);
  const seeds = o.sampleIndices ?? [0];
  if (seeds.length === 0) throw new OptionError('--sample-indices', 'at least one sample index', seeds);
  const nBalls = o.nBalls ?? 2;
  if (!(Number.isSafeInteger(nBalls) && nBalls >= 1)) throw new OptionError('--n-balls', 'an integer ≥ 1', nBalls);
  const N = o.numVideos ?? countSampledVideos(o.evalDir, seeds);
  if (!(Number.isSafeInteger(N) && N >= 1)) {
    throw new OptionError('--num-videos', `an integer ≥ 1 (no complete sample set found in ${path.join(o.evalDir, 'samples')})`, N);
  }
  const f = info.fields;
  const { info: ds, dataset } = await openEvalDataset(info.dataset, f, { nData: N, nDataFlag: '--num-videos' });
  if (N > dataset.length) throw new OptionError('--num-videos', `at most the ${dataset.length} items of the evaluation dataset`, N);

  let blueShifts: number[] | undefined;
  if (ds.family === 'balls-nonstationary') {
    if (!(dataset instanceof SpacedView || dataset instanceof ChunkedView)) {
      throw new FlexvidError(`non-stationary balls: the colour shift needs a Spaced or Chunked evaluation view, not ${f.evalDatasetConfig}`);
    }
    const totalFrames = (await openFrameSource(ds)).frameCount(dataset.split);
    blueShifts = Array.from({ length: N }, (_, i) => dataset.startOf(i) / totalFrames); // (lo + i·spacing)/T_total or (lo + i·T)/T_total
  }

  const gt: FloatVideo[] = [];
  const samples: FloatVideo[][] = [];
  for (let i = 0; i < N; i++) {
    const item = dataset.get(i);
    const [T, C, H, W] = item.shape as [number, number, number, number];
    if (C !== 3) throw new FlexvidError(`${info.dataset}: ball metrics need RGB frames, found ${C} channels`);
    gt.push({ data: item.frames, T, H, W });
    samples.push(
      seeds.map((k) => {
        const file = samplePath(o.evalDir, i, k);
        if (!fs.existsSync(file)) throw new FileFormatError(file, 'missing');
        const s = readSampleFile(file);
        if (s.T !== T || s.C !== 3 || s.H !== H || s.W !== W) throw new FileFormatError(file, `shape [${s.T}, ${s.C}, ${s.H}, ${s.W}] differs from the ground truth [${T}, 3, ${H}, ${W}]`);
        return u8VideoToFloat(s.data, s.T, s.H, s.W);
      }),
    );
  }
  const m = evaluateBallVideos(gt, samples, { nObs: f.nObs, nBalls, blueShifts });
  const files = {
    minADE: path.join(o.evalDir, metricFileNames.minAde(N)),
    colorAcc: path.join(o.evalDir, metricFileNames.colorAcc(N)),
    transKl: path.join(o.evalDir, metricFileNames.transKl(N)),
  };
  writeMetricFile(files.minADE, m.minADE);
  writeMetricFile(files.colorAcc, m.colorAccuracy);
  writeMetricFile(files.transKl, m.transKL);
  o.log?.(`minADE ${m.minADE}\ncolor-acc ${m.colorAccuracy}\ntrans-kl ${m.transKL}`);
  return { ...m, numVideos: N, files };
}
