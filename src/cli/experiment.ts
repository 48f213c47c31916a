/**
 * `flexvid experiment <name>`: reproduction experiments that compose data generation, training,
 * evaluation and a report (docs/experiments.md).
 *
 *   flexvid experiment lifelong-balls [--steps N --frames N --methods offline,replay,no-replay …]
 *
 * Flags are kebab-case; snake_case spellings are accepted as hidden aliases.
 */
import type { Command } from 'commander';
import { OptionError } from '../util/errors.ts';
import { parseBool } from '../training/options.ts';
import { parseMethods, runLifelongBalls } from '../experiments/lifelong-balls.ts';
import { startProgress } from './progress.ts';
import { addFlag, intArg, numArg, type FlagSpec } from './args.ts';



export function register(program: Command): void {
  const experiment = program.command('experiment').description('reproduction experiments (data → training → evaluation → report); see docs/experiments.md');

  const lb = experiment
    .command('lifelong-balls')
    .description(
      'Colour-shifting bouncing balls: the same model trained offline, lifelong with reservoir replay and lifelong without replay ' +
        '(same gradient steps), evaluated on early and late test windows; writes <root>/summarized/lifelong-balls/{report.html,summary.csv}. ' +
        'Defaults take about 2 h on 2 CPU cores.',
    );
  const flags: FlagSpec[] = [
    { name: 'root', arg: '<dir>', help: 'folder for everything the experiment writes', default: 'flexvid-experiments/lifelong-balls' },
    { name: 'small', arg: '', help: 'tiny size for CI: 6 steps per method, 200 frames, loss on 2 windows, no sampling' },
    { name: 'steps', arg: '<n>', help: 'gradient steps per method (default 2000; --small 6)', parse: intArg('--steps', 1) },
    { name: 'frames', arg: '<n>', help: 'frames per stream (default: steps + K − 1, rounded up to a multiple of 10 that splits into chunks)', parse: intArg('--frames', 1) },
    { name: 'num-channels', arg: '<n>', help: 'U-Net base width, a multiple of 32 (default 32; paper 64 for Balls (O), ~192 for Balls (C))', parse: intArg('--num-channels', 1) },
    { name: 'num-res-blocks', arg: '<n>', help: 'ResBlocks per level (default 1)', parse: intArg('--num-res-blocks', 1) },
    { name: 'attention-resolutions', arg: '<list>', help: 'feature-map sides with attention (default 16,8)' },
    { name: 'batch-size', arg: '<n>', help: 'windows per step (default 2)', parse: intArg('--batch-size', 1) },
    { name: 'max-frames', arg: '<k>', help: 'K: frames per training window (default 10)', parse: intArg('--max-frames', 2) },
    { name: 'ltm-size', arg: '<n>', help: 'replay buffer capacity in windows (default 5 % of the stream windows)', parse: intArg('--ltm-size', 1) },
    { name: 'lr', arg: '<x>', help: 'learning rate (default 3e-4)', parse: numArg('--lr') },
    { name: 'weight-decay', arg: '<x>', help: 'AdamW weight decay (default 1e-5)', parse: numArg('--weight-decay') },
    { name: 'ema-rate', arg: '<x>', help: 'EMA rate of the evaluated weights (default 0.99)', parse: numArg('--ema-rate') },
    { name: 'seed', arg: '<n>', help: 'seed of initialisation, noise and data sampling (default 0)', parse: intArg('--seed', 0) },
    { name: 'methods', arg: '<list>', help: 'comma-separated subset of offline,replay,no-replay (default all)' },
    { name: 'segment', arg: '<fraction>', help: 'fraction of the test stream in the early and late segments (default 0.2)', parse: numArg('--segment') },
    { name: 'eval-windows', arg: '<n>', help: 'test windows per segment for the loss (default 40)', parse: intArg('--eval-windows', 1) },
    { name: 'trials', arg: '<n>', help: 'noise levels per window for the loss (default 10)', parse: intArg('--trials', 1) },
    { name: 'eval-videos', arg: '<n>', help: 'sampled videos per method and segment (default 4)', parse: intArg('--eval-videos', 1) },
    { name: 'sample-length', arg: '<n>', help: 'frames of each sampled video (default 30)', parse: intArg('--sample-length', 1) },
    { name: 'n-obs', arg: '<n>', help: 'observed frames of each sampled video (default K/2)', parse: intArg('--n-obs', 1) },
    { name: 'sampler', arg: '<str>', help: 'sampler of the evaluation videos (default heun-80-inf-0-1-1000-0.002-7-20)' },
    { name: 'skip-sampling', arg: '[bool]', help: 'loss only (no sampled videos, minADE or colour metrics)', parse: (v: string) => parseBool('--skip-sampling', v) },
    { name: 'device', arg: '<dev>', help: 'cpu, cuda, cuda:N or auto (default auto)' },
    { name: 'save-interval', arg: '<n>', help: 'steps between checkpoints; rerunning the same command resumes an interrupted run (default min(steps, 20000))', parse: intArg('--save-interval', 1) },
    { name: 'quiet', arg: '', help: 'no progress output' },
  ];
  for (const f of flags) addFlag(lb, f);
  lb.action(async (o: Record<string, unknown>) => {
    const quiet = o.quiet === true;
    const r = await runLifelongBalls({
      root: o.root as string,
      small: o.small === true,
      steps: o.steps as number | undefined,
      frames: o.frames as number | undefined,
      numChannels: o.numChannels as number | undefined,
      numResBlocks: o.numResBlocks as number | undefined,
      attentionResolutions: o.attentionResolutions as string | undefined,
      batchSize: o.batchSize as number | undefined,
      maxFrames: o.maxFrames as number | undefined,
      ltmSize: o.ltmSize as number | undefined,
      lr: o.lr as number | undefined,
      weightDecay: o.weightDecay as number | undefined,
      emaRate: o.emaRate as number | undefined,
      seed: o.seed as number | undefined,
      methods: o.methods === undefined ? undefined : parseMethods(o.methods as string),
      segment: o.segment as number | undefined,
      evalWindows: o.evalWindows as number | undefined,
      trials: o.trials as number | undefined,
      evalVideos: o.evalVideos as number | undefined,
      sampleLength: o.sampleLength as number | undefined,
      nObs: o.nObs as number | undefined,
      sampler: o.sampler as string | undefined,
      skipSampling: o.skipSampling === undefined ? undefined : (o.skipSampling as boolean),
      device: o.device as string | undefined,
      saveInterval: o.saveInterval as number | undefined,
      log: quiet ? undefined : (l) => process.stderr.write(`${l}\n`),
      progress: (label, total, unit) => {
        const p = startProgress(label, total, { unit, quiet });
        return { update: (v, extra) => p.update(v, extra), stop: () => p.stop() };
      },
    });
    const lines = r.results.map((x) => `  ${x.method.padEnd(9)} ${x.segment.padEnd(5)} loss ${x.loss.toExponential(3)} ± ${x.lossSe.toExponential(1)}` + (Number.isFinite(x.minADE) ? `  minADE ${x.minADE.toFixed(3)}  color-acc ${x.colorAcc.toFixed(3)}  trans-kl ${x.transKL.toFixed(3)}` : ''));
    process.stdout.write(`\nlifelong-balls finished in ${Math.round(r.seconds)} s\n${lines.join('\n')}\n  report   ${r.report}\n  csv      ${r.csv}\n`);
  });
}
