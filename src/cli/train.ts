/**
 * `flexvid train`: every flag of the reference's training script (kebab-case; the reference's
 * snake_case spellings and `--flag=value` booleans are accepted), plus `--config run.json`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { TRAIN_FLAGS, kebab, resolveTrainOptions, type FlagSpec, type TrainOptions } from '../training/options.ts';
import { newRunId, resolveRunSettings, train } from '../training/loop.ts';
import { launchLocalWorkers } from '../training/launch.ts';
import { startProgress, type Progress } from './progress.ts';
import { checkResumeWorldSize, savedWorldSize } from '../training/distributed-run.ts';
import { distributedAvailable, distributedInfo, launchEnv } from '../engine/distributed.ts';
import { FileFormatError, FlexvidError, OptionError } from '../util/errors.ts';

const GROUP_TITLES: Record<FlagSpec['group'], string> = {
  data: 'data',
  stream: 'lifelong stream and masks',
  optim: 'optimisation',
  run: 'run control',
  model: 'model',
  diffusion: 'diffusion',
};

/** Add one commander option per flag; booleans take an optional value (`--flag`, `--flag=false`). */
export function addFlagOptions(cmd: Command, flags: readonly FlagSpec[]): void {
  for (const f of flags) {
    const name = kebab(f.key);
    const help = `${f.help}${f.unused ? ' [unused]' : ''} (${GROUP_TITLES[f.group]}; default ${JSON.stringify(f.default)})`;
    const opt =
      f.type === 'bool'
        ? new Option(`--${name} [bool]`, help)
        : new Option(`--${name} <${f.type === 'string' ? (f.choices ? f.choices.join('|') : 'value') : f.type}>`, help);
    if (f.type === 'bool') opt.preset('true');
    cmd.addOption(opt);
  }
}

/** Rewrite `--snake_case` flag names to kebab-case (only the flags we know). */
export function normaliseFlagNames(argv: string[], flags: readonly FlagSpec[]): string[] {
  const snakeToKebab = new Map<string, string>();
  for (const f of flags) snakeToKebab.set(f.key === 'T' ? 'T' : f.key.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase()), kebab(f.key));
  return argv.map((a) => {
    const m = /^--([A-Za-z0-9_]+)(=.*)?$/.exec(a);
    if (!m || !m[1]!.includes('_')) return a;
    const k = snakeToKebab.get(m[1]!);
    return k ? `--${k}${m[2] ?? ''}` : a;
  });
}

/** Commander's parsed values (camelCase keys) restricted to flags that were given. */
export function givenFlags(values: Record<string, unknown>, flags: readonly FlagSpec[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of flags) {
    const v = values[f.key === 'T' ? 'T' : f.key];
    if (v !== undefined) out[f.key] = v;
  }
  return out;
}

export function register(program: Command): void {
  const cmd = program
    .command('train')
    .description('Train a video diffusion model offline or lifelong (streaming_* datasets) with reservoir replay.')
    .option('--config <file>', 'JSON file of options (camelCase, kebab-case or snake_case keys); flags override it')
    .option('--dry-run', 'print the resolved configuration and exit')
    .option('--quiet', 'no progress output');
  addFlagOptions(cmd, TRAIN_FLAGS);
  cmd.addHelpText(
    'after',
    `
Examples:
  flexvid train --dataset streaming_ball_nstn --num-channels 64 --num-res-blocks 1 --batch-size 2 \\
      --max-frames 10 --n-sample-stm 1 --ltm-size 5000 --lr 1e-4 --weight-decay 1e-5
  flexvid train --resume-id <run-id> --dataset streaming_ball_nstn …   # continue exactly
  flexvid train --nproc 2 --batch-size 8 …     # 2 data-parallel processes (c10d; Gloo on CPU, NCCL on GPUs)
  torchrun --nproc-per-node 4 --no-python flexvid train …   # or srun: WORLD_SIZE/RANK (or SLURM_*) and MASTER_ADDR/PORT are read
Runs are written to checkpoints/<run-id>/ (config.json, model/ema/opt checkpoints, metrics.jsonl, samples/).`,
  );
  cmd.action(async (values: Record<string, unknown>) => {
    let fileOpts: Record<string, unknown> = {};
    if (typeof values.config === 'string') {
      try {
        fileOpts = JSON.parse(fs.readFileSync(values.config, 'utf8')) as Record<string, unknown>;
      } catch (e) {
        throw new FileFormatError(values.config, `not a readable JSON object of options (${(e as Error).message})`);
      }
    }
    const opts = resolveTrainOptions([fileOpts, givenFlags(values, TRAIN_FLAGS)]);
    const settings = resolveRunSettings(opts);
    const worker = launchEnv(); // set for the ranks of a multi-process run (--nproc children, torchrun, srun)
    const quiet = values.quiet === true || (worker !== null && worker.rank !== 0);
    if ((!quiet && process.env.FLEXVID_LAUNCHED !== '1') || values.dryRun) {
      process.stderr.write(`${JSON.stringify({ ...opts, T: settings.T, model: settings.model, diffusion: settings.diffusion }, null, 2)}\n`);
    }
    if (values.dryRun) return;
    if (opts.nproc > 1 && worker === null) {
      await launchTraining(opts, values.quiet === true);
      return;
    }
    let last = performance.now();
    let bar: Progress | null = null;
    let lastLoss = '';
    const result = await train(opts, {
      onMessage: (m) => !quiet && process.stderr.write(`${m}\n`),
      onStart: (info) => {
        if (!quiet && info.totalSteps !== null) {
          bar = startProgress('train', info.totalSteps, { unit: 'steps' });
          bar.update(info.step);
        }
      },
      onStep: (s, loss) => {
        lastLoss = loss.toExponential(3);
        bar?.update(s + 1, `loss ${lastLoss}`);
      },
      onLog: (r) => {
        if (quiet || bar) return;
        const now = performance.now();
        const parts = [`step ${r.step}`, `loss ${Number(r.loss).toExponential(3)}`];
        if (typeof r['timing/step_time'] === 'number') parts.push(`${(r['timing/step_time'] as number).toFixed(2)} s/step`);
        if (typeof r.stream_position === 'number') parts.push(`stream ${r.stream_position}`);
        if (typeof r.replay_size === 'number') parts.push(`replay ${r.replay_size}`);
        parts.push(`data wait ${(100 * Number(r.data_wait_fraction)).toFixed(1)}%`);
        process.stderr.write(`${parts.join(' | ')}  (+${((now - last) / 1000).toFixed(0)} s)\n`);
        last = now;
      },
    });
    if (worker === null || worker.rank === 0) process.stderr.write(`done: ${result.step} steps (${result.stoppedBecause}); run folder ${result.runDir}\n`);
  });
}

/** Preprocess argv for snake_case aliases; called by main before parsing. */
export function preprocessTrainArgv(argv: string[]): string[] {
  return normaliseFlagNames(argv, TRAIN_FLAGS);
}

/**
 * `--nproc N` without a launcher environment: check what can be checked once, then run N copies
 * of this command as the ranks of one c10d process group (src/training/launch.ts).
 */
async function launchTraining(opts: TrainOptions, quiet: boolean): Promise<void> {
  if (!distributedAvailable()) throw new OptionError('--nproc', `1: this build has no multi-process support (${distributedInfo().reason})`, opts.nproc);
  if (opts.batchSize % opts.nproc !== 0) throw new OptionError('--batch-size', `a multiple of --nproc ${opts.nproc} (the global batch is split evenly between processes)`, opts.batchSize);
  if (opts.resumeId) {
    const saved = savedWorldSize(path.join(opts.checkpointsDir, opts.resumeId));
    if (saved !== null) checkResumeWorldSize(saved, opts.nproc, opts.resumeId);
  }
  const runId = opts.resumeId || opts.runId || newRunId();
  const resolved: TrainOptions = opts.resumeId ? opts : { ...opts, runId };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-launch-'));
  const configFile = path.join(dir, 'train.json');
  fs.writeFileSync(configFile, JSON.stringify(resolved));
  const main = fileURLToPath(new URL('./main.ts', import.meta.url));
  const args = ['--import', import.meta.resolve('tsx'), main, 'train', '--config', configFile, ...(quiet ? ['--quiet'] : [])];
  if (!quiet) process.stderr.write(`starting ${opts.nproc} processes (global batch ${opts.batchSize} = ${opts.nproc} × ${opts.batchSize / opts.nproc}), run ${runId}\n`);
  try {
    const r = await launchLocalWorkers({
      nproc: opts.nproc,
      command: process.execPath,
      args,
      ...(opts.threads > 0 ? { threadsPerWorker: opts.threads } : {}),
      onMessage: (m) => process.stderr.write(`flexvid: ${m}\n`),
    });
    if (r.code !== 0) throw new FlexvidError(`multi-process training failed (exit per rank: ${r.exits.join(', ')})`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
