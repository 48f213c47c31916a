/**
 * `flexvid cluster`: helpers for running flexvid on a SLURM cluster (docs/distributed.md).
 *
 *   flexvid cluster sbatch-grid <checkpoints...> --schemes autoreg,hierarchy-2 --num-videos 100 --shards 10 --metrics fvd,minade
 *
 * prints a bash script of sbatch commands: per checkpoint × scheme a job array of sampling shards
 * (examples/slurm/sample-array.sbatch) and a dependent metrics job (examples/slurm/metrics.sbatch).
 */
import type { Command } from 'commander';
import { OptionError } from '../util/errors.ts';
import { sbatchGridScript } from '../experiments/sbatch-grid.ts';

function intArg(flag: string, min = 1) {
  return (value: string): number => {
    const v = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(v) || v < min) throw new OptionError(flag, `an integer ≥ ${min}`, value);
    return v;
  };
}

const list = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const words = (v: string | undefined): string[] => (v ?? '').split(/\s+/).filter(Boolean);

export function register(program: Command): void {
  const cluster = program.command('cluster').description('SLURM helpers: job templates in examples/slurm/, sbatch commands for results grids');
  cluster
    .command('sbatch-grid')
    .description('print the sbatch commands of a results grid (checkpoints × sampling schemes): sampling job arrays over --start-index/--stop-index shards, then metric jobs')
    .argument('<checkpoints...>', 'model or EMA checkpoints (checkpoints/<run>/ema_<rate>_<step>.safetensors)')
    .requiredOption('--schemes <names>', 'comma-separated sampling schemes, e.g. autoreg,hierarchy-2')
    .requiredOption('--num-videos <n>', 'dataset items 0 … n−1 sampled per cell', intArg('--num-videos'))
    .option('--shards <n>', 'array tasks per cell (default 10)', intArg('--shards'))
    .option('--n-obs <n>', 'observed frames (default 36)', intArg('--n-obs', 0))
    .option('--T <n>', "video length (default: the dataset's T)", intArg('--T'))
    .option('--max-frames <k>', "frames per stage (default: the checkpoint's)", intArg('--max-frames'))
    .option('--sampler <str>', 'sampler string (default the Heun sampler)')
    .option('--timestep-respacing <spec>', 'respacing of the sampling chain')
    .option('--results-dir <dir>', 'results root (default results)')
    .option('--metrics <names>', 'comma-separated metrics after sampling: fvd, kvd, minade, video (default none)')
    .option('--sample-flags <flags>', 'further flexvid sample flags, space-separated (e.g. "--batch-size 16")')
    .option('--sbatch-flags <flags>', 'further sbatch flags for every job, space-separated (e.g. "--partition=gpu --account=abc")')
    .option('--script <file>', 'sampling array script (default examples/slurm/sample-array.sbatch)')
    .option('--metrics-script <file>', 'metrics script (default examples/slurm/metrics.sbatch)')
    .action((checkpoints: string[], o: Record<string, string | number | undefined>) => {
      process.stdout.write(
        sbatchGridScript({
          checkpoints,
          schemes: list(o.schemes as string),
          numVideos: o.numVideos as number,
          shards: o.shards as number | undefined,
          nObs: o.nObs as number | undefined,
          T: o.T as number | undefined,
          maxFrames: o.maxFrames as number | undefined,
          sampler: o.sampler as string | undefined,
          timestepRespacing: o.timestepRespacing as string | undefined,
          resultsDir: o.resultsDir as string | undefined,
          metrics: list(o.metrics as string | undefined),
          sampleFlags: words(o.sampleFlags as string | undefined),
          sbatchFlags: words(o.sbatchFlags as string | undefined),
          script: o.script as string | undefined,
          metricsScript: o.metricsScript as string | undefined,
        }),
      );
    });
}
