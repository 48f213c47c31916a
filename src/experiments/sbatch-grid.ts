/**
 * `flexvid cluster sbatch-grid`: the exact sbatch commands of a results grid (checkpoints ×
 * sampling schemes), each cell a job array over `--start-index/--stop-index` shards
 * (examples/slurm/sample-array.sbatch) followed, when metrics are asked for, by a dependent job
 * on the cell's evaluation folder (examples/slurm/metrics.sbatch). The evaluation folders are
 * resolved here exactly as `flexvid sample` resolves them (REFERENCE_SPEC §7.5), so the metric
 * jobs find the samples. REFERENCE_SPEC §9.3 (the reference's SLURM sample scripts are missing).
 */
import { DEFAULT_SAMPLER } from '../diffusion/sampler-args.ts';
import { OptionError } from '../util/errors.ts';
import { readCheckpointDescription, resolveEvalSettings } from './sample-run.ts';

export interface SbatchGridOptions {
  /** Checkpoint files (model or EMA safetensors). */
  checkpoints: string[];
  /** Sampling schemes (autoreg, hierarchy-2, …). */
  schemes: string[];
  /** Dataset items sampled per cell: indices 0 … numVideos−1. */
  numVideos: number;
  /** Array tasks per cell (default 10, at most numVideos). */
  shards?: number;
  nObs?: number;
  T?: number;
  maxFrames?: number;
  sampler?: string;
  timestepRespacing?: string;
  resultsDir?: string;
  /** Metrics run after each cell's array: fvd, kvd, minade, video (none when empty). */
  metrics?: string[];
  /** Further `flexvid sample` flags, passed through. */
  sampleFlags?: string[];
  /** Further sbatch flags (partition, account, …) for every job. */
  sbatchFlags?: string[];
  script?: string;
  metricsScript?: string;
}

export interface GridCell {
  checkpoint: string;
  scheme: string;
  evalDir: string;
  /** `jid=$(sbatch --parsable --array=… sample-array.sbatch …)` */
  sample: string;
  /** `sbatch --dependency=afterok:$jid metrics.sbatch …`, or null without metrics. */
  metrics: string | null;
}

const METRICS = ['fvd', 'kvd', 'minade', 'video'];

/** Quote for POSIX shells (only when needed). */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_\-.,/:=@%+]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Cells of the grid with their commands (reads each checkpoint's description, not its weights). */
export function sbatchGrid(o: SbatchGridOptions): GridCell[] {
  if (o.checkpoints.length === 0) throw new OptionError('<checkpoints>', 'at least one checkpoint', o.checkpoints);
  if (o.schemes.length === 0) throw new OptionError('--schemes', 'at least one sampling scheme', o.schemes);
  if (!(Number.isSafeInteger(o.numVideos) && o.numVideos >= 1)) throw new OptionError('--num-videos', 'a positive integer', o.numVideos);
  const shards = Math.min(o.shards ?? 10, o.numVideos);
  if (!(Number.isSafeInteger(shards) && shards >= 1)) throw new OptionError('--shards', 'a positive integer', o.shards);
  const metrics = o.metrics ?? [];
  for (const m of metrics) if (!METRICS.includes(m)) throw new OptionError('--metrics', `a comma-separated subset of ${METRICS.join(', ')}`, m);
  const sampler = o.sampler ?? DEFAULT_SAMPLER;
  const script = o.script ?? 'examples/slurm/sample-array.sbatch';
  const metricsScript = o.metricsScript ?? 'examples/slurm/metrics.sbatch';
  const extra = (o.sbatchFlags ?? []).map(shellQuote);
  const cells: GridCell[] = [];
  for (const checkpoint of o.checkpoints) {
    const meta = readCheckpointDescription(checkpoint);
    for (const scheme of o.schemes) {
      const s = resolveEvalSettings({
        checkpoint,
        meta,
        scheme,
        nObs: o.nObs,
        T: o.T,
        maxFrames: o.maxFrames,
        sampler,
        timestepRespacing: o.timestepRespacing ?? '',
        resultsDir: o.resultsDir,
        device: 'cpu',
      });
      // Pass the resolved values so the jobs write exactly into s.evalDir.
      const flags = ['--T', String(s.T), '--n-obs', String(s.nObs), '--max-frames', String(s.maxFrames), '--sampler', sampler];
      if (o.timestepRespacing) flags.push('--timestep-respacing', o.timestepRespacing);
      if (o.resultsDir) flags.push('--results-dir', o.resultsDir);
      flags.push(...(o.sampleFlags ?? []));
      const name = `flexvid-${scheme}`;
      const sample = ['jid=$(sbatch --parsable', `--array=0-${shards - 1}`, `--job-name=${shellQuote(name)}`, ...extra, shellQuote(script), shellQuote(checkpoint), shellQuote(scheme), String(o.numVideos), ...flags.map(shellQuote)].join(' ') + ')';
      const metricsCmd =
        metrics.length === 0
          ? null
          : ['sbatch', '--dependency=afterok:${jid%%;*}', `--job-name=${shellQuote(`${name}-metrics`)}`, ...extra, shellQuote(metricsScript), shellQuote(s.evalDir), String(o.numVideos), metrics.join(',')].join(' ');
      cells.push({ checkpoint, scheme, evalDir: s.evalDir, sample, metrics: metricsCmd });
    }
  }
  return cells;
}

/** The grid as a bash script (what the command prints). */
export function sbatchGridScript(o: SbatchGridOptions): string {
  const cells = sbatchGrid(o);
  const shards = Math.min(o.shards ?? 10, o.numVideos);
  const lines = [
    '#!/bin/bash',
    `# flexvid results grid: ${o.checkpoints.length} checkpoint(s) × ${o.schemes.length} scheme(s), items 0…${o.numVideos - 1} in ${shards} shard(s) each`,
    '# run from the project root (checkpoints/, results/ and the dataset as on the compute nodes)',
    'set -euo pipefail',
  ];
  for (const c of cells) {
    lines.push('', `# ${c.checkpoint} × ${c.scheme} → ${c.evalDir}`, c.sample);
    if (c.metrics) lines.push(c.metrics);
  }
  return lines.join('\n') + '\n';
}
