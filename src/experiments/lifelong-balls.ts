/**
 * `flexvid experiment lifelong-balls`: the lifelong paper's headline experiment (ANCHORS §1.1
 * Table 2/6, Balls (C)) at a size chosen by flags.
 *
 * One colour-shifting bouncing-balls dataset (blue drifts 0 → 1 over each stream, train and test)
 * and the same model (same initialisation, same seeds) trained three ways with the same number of
 * gradient steps:
 *
 * | method | `--dataset` | batch |
 * |---|---|---|
 * | `offline` | `<folder>` | windows drawn uniformly from the whole shuffled train stream |
 * | `replay` | `streaming_<folder>` | 1 live window (the stream read in order, one new window per step) + `B − 1` drawn from a reservoir buffer of `ltm-size` past windows |
 * | `no-replay` | `streaming_<folder>` | `B` copies of the live window |
 *
 * The stream holds about as many windows as there are steps, so the lifelong runs see every
 * window once, in order, and end on the bluest part of the stream. Each model (EMA weights) is
 * evaluated on evenly spaced test windows from the **early** part of the test stream (first
 * `segment` fraction: red/yellow/green balls with little blue) and the **late** part (last
 * `segment` fraction: bluish balls) with the teacher-forced validation loss (`runLoss`, §8.5: the
 * last K/2 frames of a K-frame window given the first K/2, `trials` noise levels, the same windows
 * and noise draws for every model so differences are paired) and, unless `skipSampling`, with
 * minADE / colour accuracy / transition KL (§8.4) of videos sampled autoregressively from
 * `nObs` observed frames. The paper's claim: replay ≈ offline, while without replay the early
 * colours are forgotten (test FVD 343.6 vs 5.7).
 *
 * Everything lands under `root` (default `flexvid-experiments/lifelong-balls`):
 * ```
 * datasets/ball_nstn_<frames>/            the generated streams
 * checkpoints/<method>/                   training runs (reused when already finished with the same settings)
 * results/<method>/loss_<segment>/        loss-<trials>.txt
 * results/<method>/…/<identifier>/        sampled videos, minADE files, videos/<n>_1.gif
 * summarized/lifelong-balls/report.html   tables, charts, videos
 * summarized/lifelong-balls/summary.csv   one row per method × segment
 * summarized/lifelong-balls/results.json  everything above plus settings, per-window losses and timings
 * ```
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { generateBalls } from '../data/balls-generate.ts';
import { rateKey } from '../nn/index.ts';
import { resolveTrainOptions, parseEmaRates } from '../training/options.ts';
import { train } from '../training/loop.ts';
import { checkpointFiles, completeCheckpointSteps } from '../training/checkpoint.ts';
import { parseSampler } from '../diffusion/sampler-args.ts';
import { FlexvidError, OptionError } from '../util/errors.ts';
import { writeFileAtomic, writeJsonAtomic } from '../util/fs-atomic.ts';
import { runSampling } from './sample-run.ts';
import { makeVideo } from './make-video.ts';
import { runLoss } from './evaluate-loss.ts';
import { runMinade } from './minade.ts';
import { formatNumber, renderReport, type ChartSpec, type ReportContents, type ReportVideo } from './report-html.ts';
import type { Reporting } from './common.ts';

/** The three training regimes compared. */
export const LIFELONG_METHODS = ['offline', 'replay', 'no-replay'] as const;
export type LifelongMethod = (typeof LIFELONG_METHODS)[number];

/** The two evaluation segments of the test stream. */
export const SEGMENTS = ['early', 'late'] as const;
export type Segment = (typeof SEGMENTS)[number];

/** Options of {@link runLifelongBalls}. Defaults are sized for ≈ 2 h on 2 CPU cores (docs/experiments.md). */
export interface LifelongBallsOptions extends Reporting {
  /** Folder for everything (default `flexvid-experiments/lifelong-balls`). */
  root?: string;
  /** Tiny size for tests/CI: 6 steps per method, a 200-frame stream, loss on 2 windows per segment, no sampling. */
  small?: boolean;
  /** Gradient steps per method (default 2000; small 6). */
  steps?: number;
  /** Frames per stream, train and test each (default: `steps + K − 1`, rounded up to a multiple of 10 that splits into chunks). */
  frames?: number;
  /** U-Net base width, a multiple of 32 (default 32; the paper's Balls (C) model: 192, Balls (O): 64). */
  numChannels?: number;
  /** ResBlocks per level (default 1, as the paper). */
  numResBlocks?: number;
  /** Feature-map sides with attention (default `16,8`, the reference default). */
  attentionResolutions?: string;
  /** Windows per step (default 2, as the paper). */
  batchSize?: number;
  /** Frames per training example K = window length (default 10, as the paper). */
  maxFrames?: number;
  /** Replay buffer capacity in windows (default: 5 % of the stream's windows, as the paper's 5 % buffer). */
  ltmSize?: number;
  /** AdamW learning rate (default 3e-4; the paper: 1e-4 over ~1M steps). */
  lr?: number;
  /** AdamW weight decay (default 1e-5, as the paper). */
  weightDecay?: number;
  /** EMA rate whose weights are evaluated (default 0.99). */
  emaRate?: number;
  /** Seed of the model initialisation, noise and data sampling (default 0; the same for every method). */
  seed?: number;
  /** Which methods to run (default all three). */
  methods?: LifelongMethod[];
  /** Fraction of the test stream in each evaluation segment (default 0.2). */
  segment?: number;
  /** Test windows per segment for the loss (default 40; small 2). */
  evalWindows?: number;
  /** Noise levels per window for the loss (default 10, as the paper; small 1). */
  trials?: number;
  /** Sampled videos per segment and method (default 4). */
  evalVideos?: number;
  /** Length of sampled videos (default 30). */
  sampleLength?: number;
  /** Observed leading frames of sampled videos (default 5, as the paper). */
  nObs?: number;
  /** Sampler of the evaluation videos (default EDM Heun with 20 steps). */
  sampler?: string;
  /** Skip sampling (loss only). Default false; small: true. */
  skipSampling?: boolean;
  /** cpu, cuda, cuda:N or auto (default auto). */
  device?: string;
  /** Steps between checkpoints, from which an interrupted run resumes (default min(steps, 20000)). */
  saveInterval?: number;
}

/** Metrics of one method on one segment. */
export interface SegmentResult {
  method: LifelongMethod;
  segment: Segment;
  /** `[lo, hi)` of the test stream. */
  frameRange: [number, number];
  /** Mean loss over the windows, and its standard error. */
  loss: number;
  lossSe: number;
  /** Per-window losses and the windows' first frames. */
  perWindow: number[];
  windowStarts: number[];
  /** Sampling metrics (NaN when skipped). */
  minADE: number;
  colorAcc: number;
  transKL: number;
  /** The GIF (samples under ground truth), when sampled. */
  video?: string;
}

/** One training run. */
export interface MethodRun {
  method: LifelongMethod;
  runDir: string;
  checkpoint: string;
  steps: number;
  trainSeconds: number;
  reused: boolean;
}

export interface LifelongBallsResult {
  root: string;
  report: string;
  csv: string;
  json: string;
  runs: MethodRun[];
  results: SegmentResult[];
  seconds: number;
}

/** Resolved settings (stored in results.json and the report). */
export interface ResolvedLifelongSettings {
  root: string;
  steps: number;
  frames: number;
  windows: number;
  chunkSize: number;
  numChannels: number;
  numResBlocks: number;
  attentionResolutions: string;
  batchSize: number;
  maxFrames: number;
  ltmSize: number;
  lr: number;
  weightDecay: number;
  emaRate: number;
  seed: number;
  methods: LifelongMethod[];
  segment: number;
  evalWindows: number;
  trials: number;
  evalVideos: number;
  sampleLength: number;
  nObs: number;
  sampler: string;
  skipSampling: boolean;
  device: string;
  saveInterval: number;
}

function posInt(flag: string, v: number): number {
  if (!(Number.isSafeInteger(v) && v >= 1)) throw new OptionError(flag, 'a positive integer', v);
  return v;
}

/**
 * Chunk size for a stream of `frames` frames: the whole stream when ≤ 1000 frames, else the
 * largest divisor in [100, 1000]; undefined when there is none (too many tiny chunk files).
 */
export function chunkSizeFor(frames: number): number | undefined {
  if (frames <= 1000) return frames;
  for (let c = 1000; c >= 100; c--) if (frames % c === 0) return c;
  return undefined;
}

/** Smallest stream length ≥ `min` that is a multiple of 10 and has a {@link chunkSizeFor}. */
export function defaultFrames(min: number): number {
  let f = Math.ceil(min / 10) * 10;
  while (chunkSizeFor(f) === undefined) f += 10;
  return f;
}

/** Parse `--methods offline,replay,no-replay`. */
export function parseMethods(v: string | readonly string[]): LifelongMethod[] {
  const parts = (Array.isArray(v) ? v : [v]).flatMap((s) => String(s).split(',')).map((s) => s.trim()).filter(Boolean);
  const out: LifelongMethod[] = [];
  for (const p of parts) {
    if (!(LIFELONG_METHODS as readonly string[]).includes(p)) throw new OptionError('--methods', `a comma-separated subset of ${LIFELONG_METHODS.join(', ')}`, v);
    if (!out.includes(p as LifelongMethod)) out.push(p as LifelongMethod);
  }
  if (out.length === 0) throw new OptionError('--methods', `at least one of ${LIFELONG_METHODS.join(', ')}`, v);
  return out;
}

/** Fill defaults and validate (throws OptionError naming the flag). */
export function resolveLifelongSettings(o: LifelongBallsOptions): ResolvedLifelongSettings {
  const small = o.small ?? false;
  const maxFrames = posInt('--max-frames', o.maxFrames ?? 10);
  if (maxFrames < 2) throw new OptionError('--max-frames', 'at least 2 (K/2 observed + K/2 predicted frames)', maxFrames);
  const steps = posInt('--steps', o.steps ?? (small ? 6 : 2000));
  const frames = posInt('--frames', o.frames ?? (small ? 200 : defaultFrames(steps + maxFrames - 1)));
  const chunkSize = chunkSizeFor(frames);
  if (chunkSize === undefined) throw new OptionError('--frames', 'at most 1000 or a number with a divisor between 100 and 1000 (the stream is written in chunks), e.g. a multiple of 100', frames);
  const windows = frames - maxFrames + 1;
  const methods = o.methods ?? [...LIFELONG_METHODS];
  if (methods.some((m) => m !== 'offline') && steps > windows) {
    throw new OptionError('--steps', `at most the ${windows} windows of the ${frames}-frame stream (lifelong runs read one new window per step; raise --frames)`, steps);
  }
  const numChannels = posInt('--num-channels', o.numChannels ?? 32);
  if (numChannels % 32 !== 0) throw new OptionError('--num-channels', 'a multiple of 32 (GroupNorm uses 32 groups)', numChannels);
  const batchSize = posInt('--batch-size', o.batchSize ?? 2);
  if (methods.includes('replay') && batchSize < 2) throw new OptionError('--batch-size', 'at least 2 for the replay method (1 live + replayed windows)', batchSize);
  const segment = o.segment ?? 0.2;
  if (!(segment > 0 && segment <= 0.5)) throw new OptionError('--segment', 'a fraction in (0, 0.5]', segment);
  const emaRate = o.emaRate ?? 0.99;
  parseEmaRates(String(emaRate));
  const lr = o.lr ?? 3e-4;
  if (!(lr > 0)) throw new OptionError('--lr', 'a positive learning rate', lr);
  const weightDecay = o.weightDecay ?? 1e-5;
  if (!(weightDecay >= 0)) throw new OptionError('--weight-decay', 'a value ≥ 0', weightDecay);
  const sampler = o.sampler ?? 'heun-80-inf-0-1-1000-0.002-7-20';
  parseSampler(sampler);
  const sampleLength = posInt('--sample-length', o.sampleLength ?? (small ? 10 : 30));
  const nObs = posInt('--n-obs', o.nObs ?? Math.floor(maxFrames / 2));
  if (nObs >= sampleLength) throw new OptionError('--n-obs', `less than --sample-length (${sampleLength})`, nObs);
  const seed = o.seed ?? 0;
  if (!(Number.isSafeInteger(seed) && seed >= 0)) throw new OptionError('--seed', 'an integer ≥ 0', seed);
  return {
    root: path.resolve(o.root ?? path.join('flexvid-experiments', 'lifelong-balls')),
    steps,
    frames,
    windows,
    chunkSize,
    numChannels,
    numResBlocks: posInt('--num-res-blocks', o.numResBlocks ?? 1),
    attentionResolutions: o.attentionResolutions ?? '16,8',
    batchSize,
    maxFrames,
    ltmSize: posInt('--ltm-size', o.ltmSize ?? Math.max(1, Math.round(0.05 * windows))),
    lr,
    weightDecay,
    emaRate,
    seed,
    methods,
    segment,
    evalWindows: posInt('--eval-windows', o.evalWindows ?? (small ? 2 : 40)),
    trials: posInt('--trials', o.trials ?? (small ? 1 : 10)),
    evalVideos: posInt('--eval-videos', o.evalVideos ?? (small ? 1 : 4)),
    sampleLength,
    nObs,
    sampler,
    skipSampling: o.skipSampling ?? small,
    device: o.device ?? 'auto',
    saveInterval: posInt('--save-interval', o.saveInterval ?? Math.min(steps, 20000)),
  };
}

/**
 * `[lo, hi)` of a segment such that `n` evenly spaced windows of `T` frames tile it exactly
 * (the Spaced view needs a spacing that is a multiple of T): the length is the largest multiple of
 * `n·T` not above `fraction · frames`.
 */
export function segmentRange(segment: Segment, frames: number, fraction: number, n: number, T: number, flag: string): [number, number] {
  const unit = n * T;
  const len = Math.floor((fraction * frames) / unit) * unit;
  if (len < unit) {
    throw new OptionError(flag, `at most ${Math.floor((fraction * frames) / T)} windows of ${T} frames in ${fraction} of the ${frames}-frame test stream (or raise --frames/--segment)`, n);
  }
  return segment === 'early' ? [0, len] : [frames - len, frames];
}

/** Training options of one method (REFERENCE_SPEC §3.2–§3.3 regimes). */
export function methodTrainOptions(method: LifelongMethod, s: ResolvedLifelongSettings, data: string, checkpointsDir: string): Record<string, unknown> {
  const regime: Record<string, unknown> =
    method === 'offline'
      ? { dataset: data }
      : method === 'replay'
        ? { dataset: `streaming_${data}`, nSampleStm: 1, ltmSize: s.ltmSize }
        : { dataset: `streaming_${data}`, nSampleStm: s.batchSize, ltmSize: 0 };
  return {
    ...regime,
    T: s.maxFrames,
    maxFrames: s.maxFrames,
    numChannels: s.numChannels,
    numResBlocks: s.numResBlocks,
    attentionResolutions: s.attentionResolutions,
    numHeads: 2,
    batchSize: s.batchSize,
    stepsPerExperience: 1,
    lr: s.lr,
    weightDecay: s.weightDecay,
    emaRate: String(s.emaRate),
    logInterval: Math.max(1, Math.floor(s.steps / 100)),
    saveInterval: s.saveInterval,
    sampleInterval: 10 * s.steps + 1,
    // The loop always previews once at step == max_frames; keep that cheap.
    sampleSampler: 'heun-80-inf-0-1-1000-0.002-7-3',
    maxSteps: s.steps,
    seed: s.seed,
    dataSeed: s.seed,
    device: s.device,
    runId: method,
    checkpointsDir,
    numWorkers: 1,
  };
}

const SIGNATURE_FILE = 'lifelong-balls.json';

interface RunSignature {
  /** The training options, JSON-encoded: a run is reused or resumed only when they are identical. */
  signature: string;
  steps: number;
  /** Training wall time so far (summed over resumed sessions). */
  trainSeconds: number;
  finished: boolean;
  /** Older files: set when finished. */
  finishedAt?: string;
}

function readSignature(file: string): RunSignature | null {
  if (!fs.existsSync(file)) return null;
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<RunSignature>;
    if (typeof v.signature !== 'string') return null;
    return { signature: v.signature, steps: Number(v.steps), trainSeconds: Number(v.trainSeconds) || 0, finished: v.finished ?? Boolean(v.finishedAt) };
  } catch {
    return null;
  }
}

/**
 * Train one method. A finished run with identical options is reused; an interrupted one (same
 * options, a complete checkpoint every `saveInterval` steps) is resumed exactly (`--resume-id`);
 * anything else is deleted and trained from scratch.
 */
async function trainMethod(method: LifelongMethod, s: ResolvedLifelongSettings, data: string, o: LifelongBallsOptions): Promise<MethodRun> {
  const ckptDir = path.join(s.root, 'checkpoints');
  const raw = methodTrainOptions(method, s, data, ckptDir);
  const runDir = path.join(ckptDir, method);
  const checkpoint = path.join(runDir, checkpointFiles.ema(rateKey(s.emaRate), s.steps));
  const sigFile = path.join(runDir, SIGNATURE_FILE);
  const signature = JSON.stringify(raw);
  const prev = readSignature(sigFile);
  let before = 0;
  let resume = false;
  if (prev && prev.signature === signature) {
    if (prev.finished && fs.existsSync(checkpoint)) {
      o.log?.(`      ${method}: reusing the finished run in ${runDir}`);
      return { method, runDir, checkpoint, steps: s.steps, trainSeconds: prev.trainSeconds, reused: true };
    }
    const done = completeCheckpointSteps(runDir);
    if (done.length > 0) {
      resume = true;
      before = prev.trainSeconds;
      o.log?.(`      ${method}: resuming the interrupted run in ${runDir} from step ${done[done.length - 1]}`);
    }
  }
  if (!resume) {
    // Settings changed (or nothing to resume): start over, dropping stale evaluation results too.
    fs.rmSync(runDir, { recursive: true, force: true });
    fs.rmSync(path.join(s.root, 'results', method), { recursive: true, force: true });
  }
  const opts = resolveTrainOptions([resume ? { ...raw, resumeId: method } : raw]);
  fs.mkdirSync(runDir, { recursive: true });
  const t0 = performance.now();
  const record = (finished: boolean) =>
    writeJsonAtomic(sigFile, { signature, steps: s.steps, trainSeconds: before + (performance.now() - t0) / 1000, finished } satisfies RunSignature);
  record(false);
  const bar = o.progress?.(`train ${method}`, s.steps, 'steps');
  const r = await train(opts, {
    onStep: (step, loss) => bar?.update(step + 1, `loss ${loss.toFixed(4)}`),
    onLog: () => record(false),
    onMessage: (m) => o.log?.(`      ${m.split('\n').join('\n      ')}`),
  });
  bar?.stop();
  if (r.step !== s.steps) {
    if (r.stoppedBecause === 'signal') throw new FlexvidError(`${method}: training stopped at step ${r.step}; run the same command again to resume`);
    throw new OptionError('--steps', `reachable by every method (${method} stopped at ${r.step}: ${r.stoppedBecause})`, s.steps);
  }
  record(true);
  return { method, runDir: r.runDir, checkpoint, steps: r.step, trainSeconds: before + (performance.now() - t0) / 1000, reused: false };
}

function meanSe(v: number[]): { mean: number; se: number } {
  const n = v.length;
  const mean = v.reduce((a, x) => a + x, 0) / n;
  if (n < 2) return { mean, se: NaN };
  const variance = v.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(variance / n) };
}

/** Training-loss curve of a run (from metrics.jsonl). */
function trainingCurve(runDir: string): { x: number; y: number }[] {
  const file = path.join(runDir, 'metrics.jsonl');
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((r) => typeof r.loss === 'number' && Number.isFinite(r.loss))
    .map((r) => ({ x: r.step, y: r.loss }));
}

/** CSV cell: Python-like float repr, NaN as an empty cell. */
function cell(v: number | string): string {
  if (typeof v === 'string') return v;
  return Number.isFinite(v) ? String(v) : '';
}

/** Run the whole experiment: data → three trainings → loss (and sampling) on early/late test windows → report. */
export async function runLifelongBalls(o: LifelongBallsOptions = {}): Promise<LifelongBallsResult> {
  const s = resolveLifelongSettings(o);
  const log = o.log ?? (() => {});
  const t0 = performance.now();
  const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(0)} s`;
  // Evaluation ranges first, so a bad combination fails before hours of training.
  const K = s.maxFrames;
  const lossRanges = Object.fromEntries(SEGMENTS.map((g) => [g, segmentRange(g, s.frames, s.segment, s.evalWindows, K, '--eval-windows')])) as Record<Segment, [number, number]>;
  const sampleRanges = s.skipSampling
    ? null
    : (Object.fromEntries(SEGMENTS.map((g) => [g, segmentRange(g, s.frames, s.segment, s.evalVideos, s.sampleLength, '--eval-videos')])) as Record<Segment, [number, number]>);
  fs.mkdirSync(s.root, { recursive: true });

  // 1. Data.
  const data = path.join(s.root, 'datasets', `ball_nstn_${s.frames}`);
  log(`[1/4] colour-shifting bouncing balls: ${s.frames} frames per stream (train and test) → ${data}`);
  await generateBalls({ out: data, frames: s.frames, chunkSize: s.chunkSize, colorShift: true, resolution: 32 });

  // 2. Training, the same number of steps for every method.
  const runs: MethodRun[] = [];
  for (const [i, method] of s.methods.entries()) {
    log(`[2/4] training ${method} (${i + 1}/${s.methods.length}): ${s.steps} steps, batch ${s.batchSize}, K ${K}${method === 'replay' ? `, replay buffer ${s.ltmSize} windows` : ''} (${elapsed()})`);
    runs.push(await trainMethod(method, s, data, o));
  }

  // 3. Evaluation on early and late test windows.
  const results: SegmentResult[] = [];
  const evalStart = performance.now();
  for (const run of runs) {
    for (const segment of SEGMENTS) {
      const [lo, hi] = lossRanges[segment];
      log(`[3/4] ${run.method}, ${segment} test windows [${lo}, ${hi}): loss on ${s.evalWindows} windows × ${s.trials} noise levels (${elapsed()})`);
      const loss = await runLoss({
        checkpoint: run.checkpoint,
        stopIndex: s.evalWindows,
        numSampledVideos: s.evalWindows,
        batchSize: 8,
        nObs: Math.floor(K / 2),
        T: K,
        maxFrames: K,
        trials: s.trials,
        seed: 0,
        lowerFrameRange: lo,
        upperFrameRange: hi,
        evalDir: path.join(s.root, 'results', run.method, `loss_${segment}`),
        device: s.device,
        progress: o.progress,
      });
      const spacing = (hi - lo) / s.evalWindows;
      const ms = meanSe(loss.perVideo);
      const r: SegmentResult = {
        method: run.method,
        segment,
        frameRange: [lo, hi],
        loss: ms.mean,
        lossSe: ms.se,
        perWindow: loss.perVideo,
        windowStarts: loss.perVideo.map((_, k) => lo + k * spacing),
        minADE: NaN,
        colorAcc: NaN,
        transKL: NaN,
      };
      if (sampleRanges) {
        const [slo, shi] = sampleRanges[segment];
        log(`[3/4] ${run.method}, ${segment}: sampling ${s.evalVideos} video(s) of ${s.sampleLength} frames from ${s.nObs} observed, test frames [${slo}, ${shi}) (${elapsed()})`);
        const rep = await runSampling({
          checkpoint: run.checkpoint,
          stopIndex: s.evalVideos,
          numSampledVideos: s.evalVideos,
          samplingScheme: 'autoreg',
          batchSize: s.evalVideos,
          nObs: s.nObs,
          T: s.sampleLength,
          maxFrames: K,
          sampler: s.sampler,
          lowerFrameRange: slo,
          upperFrameRange: shi,
          resultsDir: path.join(s.root, 'results'),
          device: s.device,
          progress: o.progress,
        });
        const m = await runMinade({ evalDir: rep.evalDir, numVideos: s.evalVideos, sampleIndices: [0] });
        r.minADE = m.minADE;
        r.colorAcc = m.colorAccuracy;
        r.transKL = m.transKL;
        const v = await makeVideo({ evalDir: rep.evalDir, numSampledVideos: s.evalVideos, doN: Math.min(s.evalVideos, 4), nSeeds: 1, format: 'gif', fps: 5 });
        r.video = v.file;
      }
      results.push(r);
    }
  }
  const evalSeconds = (performance.now() - evalStart) / 1000;

  // 4. Report.
  log(`[4/4] writing the report (${elapsed()})`);
  const seconds = (performance.now() - t0) / 1000;
  const out = writeLifelongReport(s, runs, results, { seconds, evalSeconds });
  log(`done in ${elapsed()}. Open ${out.report}`);
  return { root: s.root, ...out, runs, results, seconds };
}

/** Paired comparison of one method against offline on a segment: mean and SE of per-window differences. */
function pairedVsOffline(results: SegmentResult[], r: SegmentResult): { diff: number; se: number; ratio: number } {
  const base = results.find((x) => x.method === 'offline' && x.segment === r.segment);
  if (!base || base.perWindow.length !== r.perWindow.length) return { diff: NaN, se: NaN, ratio: NaN };
  const d = meanSe(r.perWindow.map((v, k) => v - base.perWindow[k]!));
  return { diff: d.mean, se: d.se, ratio: r.loss / base.loss };
}

/** Write report.html, summary.csv and results.json under `<root>/summarized/lifelong-balls/`. */
export function writeLifelongReport(
  s: ResolvedLifelongSettings,
  runs: MethodRun[],
  results: SegmentResult[],
  timing: { seconds: number; evalSeconds: number },
): { report: string; csv: string; json: string } {
  const dir = path.join(s.root, 'summarized', 'lifelong-balls');
  fs.mkdirSync(dir, { recursive: true });
  const rel = (p: string) => path.relative(dir, p).split(path.sep).join('/');
  const get = (m: LifelongMethod, g: Segment) => results.find((r) => r.method === m && r.segment === g);
  const methods = runs.map((r) => r.method);

  // summary.csv: one row per method × segment.
  const csvCols = ['method', 'segment', 'lo', 'hi', 'windows', 'loss', 'loss_se', 'loss_minus_offline', 'loss_minus_offline_se', 'minADE', 'color-acc', 'trans-kl', 'steps', 'train_s'];
  const csvRows = results.map((r) => {
    const run = runs.find((x) => x.method === r.method)!;
    const p = pairedVsOffline(results, r);
    return [r.method, r.segment, r.frameRange[0], r.frameRange[1], r.perWindow.length, r.loss, r.lossSe, p.diff, p.se, r.minADE, r.colorAcc, r.transKL, run.steps, run.trainSeconds].map(cell).join(',');
  });
  const csv = path.join(dir, 'summary.csv');
  writeFileAtomic(csv, [csvCols.join(','), ...csvRows].join('\n') + '\n');

  const json = path.join(dir, 'results.json');
  writeJsonAtomic(json, { settings: s, runs, results, timing });

  // Tables.
  const paired = (r: SegmentResult | undefined) => {
    if (!r || r.method === 'offline') return '—';
    const p = pairedVsOffline(results, r);
    return Number.isFinite(p.diff) ? `${formatNumber(p.diff)} ± ${formatNumber(p.se)}` : '—';
  };
  const lossTable = {
    columns: ['method', 'loss early', '± se', 'loss late', '± se', 'early / late', 'early − offline (paired, ± se)', 'late − offline (paired, ± se)', 'train s'],
    rows: methods.map((m) => {
      const e = get(m, 'early');
      const l = get(m, 'late');
      const run = runs.find((x) => x.method === m)!;
      return [m, e?.loss ?? NaN, e?.lossSe ?? NaN, l?.loss ?? NaN, l?.lossSe ?? NaN, e && l ? e.loss / l.loss : NaN, paired(e), paired(l), Math.round(run.trainSeconds)];
    }),
  };
  const tables: ReportContents['tables'] = [{ caption: 'teacher-forced test loss (lower is better), early vs late test windows', table: lossTable, href: rel(csv) }];
  if (!s.skipSampling) {
    tables.push({
      caption: `sampled videos: minADE (lower is better), colour accuracy (higher), transition KL (lower); ${s.evalVideos} video(s) per cell`,
      table: {
        columns: ['method', 'segment', 'minADE', 'color-acc', 'trans-kl'],
        rows: results.map((r) => [r.method, r.segment, r.minADE, r.colorAcc, r.transKL]),
      },
    });
  }

  // Charts.
  const segLabels = ['early', 'late'];
  const charts: ChartSpec[] = [
    {
      title: 'test loss, early vs late windows (mean ± se)',
      xLabel: `test segment (first / last ${Math.round(100 * s.segment)} %)`,
      yLabel: 'loss',
      categories: segLabels,
      series: methods.map((m) => ({
        name: m,
        points: SEGMENTS.map((g, i) => {
          const r = get(m, g);
          return { x: i, y: r?.loss ?? NaN, err: Number.isFinite(r?.lossSe ?? NaN) ? r!.lossSe : undefined };
        }),
      })),
    },
    {
      title: 'per-window test loss vs stream position',
      xLabel: 'window start / stream length (= blue shift)',
      yLabel: 'loss',
      lines: false,
      series: methods.map((m) => ({
        name: m,
        points: results.filter((r) => r.method === m).flatMap((r) => r.perWindow.map((y, k) => ({ x: r.windowStarts[k]! / s.frames, y }))),
      })),
    },
    {
      title: 'training loss (same steps for every method)',
      xLabel: 'step',
      yLabel: 'loss',
      series: runs.map((r) => ({ name: r.method, points: trainingCurve(r.runDir) })),
    },
  ];
  if (!s.skipSampling) {
    for (const [key, label] of [['minADE', 'minADE'], ['colorAcc', 'colour accuracy'], ['transKL', 'transition KL']] as const) {
      charts.push({
        title: `${label} of sampled videos, early vs late`,
        xLabel: 'test segment',
        yLabel: label,
        categories: segLabels,
        series: methods.map((m) => ({ name: m, points: SEGMENTS.map((g, i) => ({ x: i, y: get(m, g)?.[key] ?? NaN })) })),
      });
    }
  }
  const videos: ReportVideo[] = results.filter((r) => r.video).map((r) => ({ label: `${r.method} — ${r.segment} (top: ground truth)`, src: rel(r.video!) }));

  const fmtRange = (g: Segment) => {
    const r = results.find((x) => x.segment === g);
    return r ? `[${r.frameRange[0]}, ${r.frameRange[1]})` : '?';
  };
  const notes = [
    `stream: ${s.frames} frames per stream (train and test), blue shift = frame / ${s.frames}; ${s.windows} windows of K = ${s.maxFrames}`,
    `model: 32², ${s.numChannels} channels, ${s.numResBlocks} res-block(s), attention at ${s.attentionResolutions || 'none'}; batch ${s.batchSize}; lr ${s.lr}, weight decay ${s.weightDecay}; evaluated: EMA ${s.emaRate}`,
    `methods: offline = shuffled windows of the whole stream; replay = 1 live window + ${s.batchSize - 1} from a reservoir of ${s.ltmSize} windows; no-replay = ${s.batchSize} copies of the live window; every method ${s.steps} steps, seed ${s.seed}`,
    `loss: ${s.evalWindows} evenly spaced test windows per segment (early ${fmtRange('early')}, late ${fmtRange('late')}), last ${s.maxFrames - Math.floor(s.maxFrames / 2)} frames given the first ${Math.floor(s.maxFrames / 2)}, ${s.trials} noise levels each; the same windows and noise for every model (paired differences)`,
    s.skipSampling
      ? 'sampling: skipped'
      : `sampling: ${s.evalVideos} video(s) of ${s.sampleLength} frames per segment from ${s.nObs} observed frames, autoreg, sampler ${s.sampler}; red borders mark observed frames`,
    `time: ${Math.round(timing.seconds)} s in total (training ${runs.map((r) => `${r.method} ${Math.round(r.trainSeconds)} s${r.reused ? ' (reused)' : ''}`).join(', ')}; evaluation ${Math.round(timing.evalSeconds)} s)`,
    "paper (Balls (C), ANCHORS §1.1 Table 2): test loss offline 6.5e-5, lifelong ER 7.5e-5, no replay 2.3e-2; test FVD 5.9 / 5.7 / 343.6 — replay ≈ offline, no replay forgets the early colours",
  ];
  const contents: ReportContents = {
    title: 'lifelong vs offline training on colour-shifting bouncing balls',
    notes,
    tables,
    charts,
    videos,
  };
  const report = path.join(dir, 'report.html');
  writeFileAtomic(report, renderReport(contents));
  return { report, csv, json };
}
