/**
 * The end-to-end demo (`npm run demo`, `flexvid demo`): a small colour-shifting bouncing-balls
 * stream, a small model trained lifelong with reservoir replay, long videos sampled from the test
 * stream with two schemes, GIF/MP4 with ground truth, loss / minADE / ColorKL, and a report.
 * Everything lands under one folder (default `flexvid-demo/`) that can be deleted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateBalls } from '../data/balls-generate.ts';
import { resolveTrainOptions } from '../training/options.ts';
import { train } from '../training/loop.ts';
import { checkpointFiles } from '../training/checkpoint.ts';
import { runSampling } from './sample-run.ts';
import { makeVideo } from './make-video.ts';
import { runLoss } from './evaluate-loss.ts';
import { runMinade } from './minade.ts';
import { renderReport, type ChartSpec, type ReportContents } from './report-html.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';
import type { ProgressFactory } from './common.ts';

export interface DemoOptions {
  /** Folder for everything the demo writes (default `flexvid-demo`). */
  root?: string;
  /** Reduced size for CI: a few training steps and one short video. */
  small?: boolean;
  /** Training steps (default 300; small: 4). */
  steps?: number;
  /** Frames per stream of the generated dataset (default 4000; small: 600). */
  frames?: number;
  log?: (line: string) => void;
  progress?: ProgressFactory;
}

export interface DemoResult {
  root: string;
  report: string;
  runDir: string;
  evalDirs: Record<string, string>;
  metrics: Record<string, Record<string, number>>;
  videos: string[];
}

/** Run the whole demo. */
export async function runDemo(o: DemoOptions = {}): Promise<DemoResult> {
  const root = path.resolve(o.root ?? 'flexvid-demo');
  const small = o.small ?? false;
  const log = o.log ?? (() => {});
  const t0 = Date.now();
  const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(0)} s`;
  fs.mkdirSync(root, { recursive: true });

  // 1. Data: a colour-shifting stream (blue drifts 0 → 1 over the stream).
  const frames = o.frames ?? (small ? 600 : 4000);
  const data = path.join(root, 'datasets', 'ball_nstn');
  log(`[1/5] generating ${frames} frames of colour-shifting bouncing balls (train and test) → ${data}`);
  const genBar = o.progress?.('balls', 2 * frames, 'frames');
  await generateBalls({ out: data, frames, chunkSize: small ? 300 : 1000, colorShift: true, onProgress: (done) => genBar?.update(done) });
  genBar?.stop();

  // 2. Lifelong training with reservoir replay: each step = the newest window + a replayed one.
  const steps = o.steps ?? (small ? 4 : 300);
  const runId = 'demo';
  const ckptDir = path.join(root, 'checkpoints');
  fs.rmSync(path.join(ckptDir, runId), { recursive: true, force: true });
  const opts = resolveTrainOptions([
    {
      dataset: `streaming_${data}`,
      T: 10,
      maxFrames: 10,
      numChannels: 32,
      numResBlocks: 1,
      numHeads: 2,
      batchSize: 2,
      nSampleStm: 1,
      ltmSize: 500,
      lr: 1e-3,
      weightDecay: 1e-5,
      emaRate: '0.98',
      logInterval: small ? 1 : 20,
      saveInterval: 100000,
      sampleInterval: small ? 100000 : 200,
      sampleSampler: 'heun-80-inf-0-1-1000-0.002-7-15',
      maxSteps: steps,
      runId,
      checkpointsDir: ckptDir,
      numWorkers: 1,
    },
  ]);
  log(`[2/5] training a ${'2.1'}M-parameter model lifelong with replay for ${steps} steps (${elapsed()})`);
  const bar = o.progress?.('train', steps, 'steps');
  const result = await train(opts, {
    onStep: (s, loss) => bar?.update(s + 1, `loss ${loss.toFixed(4)}`),
    onMessage: (m) => log(`      ${m}`),
  });
  bar?.stop();
  const ckpt = path.join(result.runDir, checkpointFiles.ema('0.98', result.step));

  // 3. Long videos from the test stream with two schemes.
  const T = small ? 15 : 25; // evenly spaced test windows: T must divide frames / nVideos
  const nObs = 5;
  const nVideos = small ? 1 : 4;
  const sampler = small ? 'heun-80-inf-0-1-1000-0.002-7-5' : 'heun-80-inf-0-1-1000-0.002-7-25';
  const resultsDir = path.join(root, 'results');
  const evalDirs: Record<string, string> = {};
  const videos: string[] = [];
  const metrics: Record<string, Record<string, number>> = {};
  for (const scheme of ['autoreg', 'hierarchy-2']) {
    log(`[3/5] sampling ${nVideos} video(s) of ${T} frames from ${nObs} observed frames with ${scheme} (${elapsed()})`);
    const rep = await runSampling({
      checkpoint: ckpt,
      stopIndex: nVideos,
      numSampledVideos: nVideos,
      samplingScheme: scheme,
      batchSize: nVideos,
      nObs,
      T,
      maxFrames: 10,
      sampler,
      resultsDir,
      device: 'cpu',
      progress: o.progress,
    });
    evalDirs[scheme] = rep.evalDir;
    // 4. Videos: ground truth above each sample, observed frames in red.
    for (const format of ['gif', 'mp4'] as const) {
      const v = await makeVideo({ evalDir: rep.evalDir, numSampledVideos: nVideos, doN: nVideos, nSeeds: 1, format, fps: 5 });
      videos.push(v.file);
    }
    // 5. Metrics.
    log(`[4/5] metrics for ${scheme}: test loss, minADE, ColorKL (${elapsed()})`);
    const ball = await runMinade({ evalDir: rep.evalDir, numVideos: nVideos, sampleIndices: [0] });
    metrics[scheme] = { minADE: ball.minADE, 'color-acc': ball.colorAccuracy, 'trans-kl': ball.transKL };
  }
  const loss = await runLoss({
    checkpoint: ckpt,
    stopIndex: nVideos,
    numSampledVideos: nVideos,
    nObs,
    T,
    maxFrames: 10,
    trials: small ? 1 : 4,
    evalDir: evalDirs['autoreg'],
    resultsDir,
    device: 'cpu',
  });
  for (const m of Object.values(metrics)) m.loss = loss.loss;

  // Report: metrics table, training curve, the videos.
  log(`[5/5] writing the report (${elapsed()})`);
  const summaryDir = path.join(root, 'summarized', 'demo');
  fs.mkdirSync(summaryDir, { recursive: true });
  const rel = (p: string) => path.relative(summaryDir, p);
  const curve = fs
    .readFileSync(path.join(result.runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((r) => typeof r.loss === 'number');
  const charts: ChartSpec[] = [
    { title: 'training loss (lifelong stream with replay)', xLabel: 'step', yLabel: 'loss', series: [{ name: 'loss', points: curve.map((r) => ({ x: r.step, y: r.loss })) }] },
  ];
  const schemes = Object.keys(metrics);
  const columns = ['scheme', 'loss', 'minADE', 'color-acc', 'trans-kl'];
  const contents: ReportContents = {
    title: 'flexvid demo — lifelong learning on colour-shifting bouncing balls',
    notes: [
      `dataset: ${frames} frames per stream (${data}); run: ${result.runDir} (${result.step} steps, lifelong with reservoir replay, 1 live + 1 replayed window per step)`,
      `sampling: ${nVideos} test videos of ${T} frames from ${nObs} observed frames, sampler ${sampler}; red borders mark observed frames; top row = ground truth`,
      `total time ${elapsed()}`,
    ],
    tables: [{ caption: 'metrics (lower is better except color-acc)', table: { columns, rows: schemes.map((s) => [s, ...columns.slice(1).map((c) => metrics[s]![c]!)]) } }],
    charts,
    videos: videos.filter((v) => v.endsWith('.gif')).map((v, i) => ({ label: schemes[i] ?? v, src: rel(v) })),
  };
  const report = path.join(summaryDir, 'report.html');
  writeFileAtomic(report, renderReport(contents));
  const csv = [columns.join(','), ...schemes.map((s) => [s, ...columns.slice(1).map((c) => String(metrics[s]![c]))].join(','))].join('\n') + '\n';
  writeFileAtomic(path.join(summaryDir, 'summary.csv'), csv);
  log(`done in ${elapsed()}. Open ${report}`);
  return { root, report, runDir: result.runDir, evalDirs, metrics, videos };
}
