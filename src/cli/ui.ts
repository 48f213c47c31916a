/**
 * Dashboard commands (docs/ui.md, issue 10):
 *
 *   flexvid ui [--port 6006] [--root .] [--host 127.0.0.1]     local web dashboard over run folders
 *   flexvid tensorboard-export [--root .] [RUN-ID...]            event files from existing metrics.jsonl
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { OptionError } from '../util/errors.ts';
import { isLoopbackHost, startUiServer } from '../ui/server.ts';
import { discoverRunIds, resolveLayout } from '../ui/runs.ts';
import { exportTensorBoard } from '../io/tensorboard.ts';

function intArg(flag: string, min: number, max: number) {
  return (value: string): number => {
    const v = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || v < min || v > max) throw new OptionError(flag, `an integer in [${min}, ${max}]`, value);
    return v;
  };
}

function numArg(flag: string, min: number) {
  return (value: string): number => {
    const v = Number(value);
    if (value.trim() === '' || !Number.isFinite(v) || v < min) throw new OptionError(flag, `a number ≥ ${min}`, value);
    return v;
  };
}

function checkRoot(root: string): string {
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new OptionError('--root', 'an existing folder (holding checkpoints/, results/, summarized/)', root);
  return root;
}

export function register(program: Command): void {
  program
    .command('ui')
    .description('Local dashboard: projects, runs, live metric charts, previews, evaluation results, config diffs')
    .option('--port <n>', 'port to listen on (0 = any free port)', intArg('--port', 0, 65535), 6006)
    .option('--root <dir>', 'folder holding checkpoints/, results/ and summarized/ (or a checkpoints folder)', '.')
    .option('--host <addr>', 'interface to bind; anything but loopback exposes the dashboard to the network', '127.0.0.1')
    .option('--stale-minutes <m>', 'a running heartbeat from another host older than this counts as crashed', numArg('--stale-minutes', 0), 10)
    .option('--cache-mb <n>', 'memory for parsed metric columns (MiB)', intArg('--cache-mb', 16, 1 << 20), 1024)
    .option('--parse-workers <n>', 'threads parsing large metrics.jsonl files (default: cores − 1, at most 4; 0 = none)', intArg('--parse-workers', 0, 64))
    .option('--no-preload', 'do not parse the most recent runs in the background at start')
    .action(async (o: { port: number; root: string; host: string; staleMinutes: number; cacheMb: number; parseWorkers?: number; preload: boolean }) => {
      checkRoot(o.root);
      const ui = await startUiServer({
        root: o.root,
        port: o.port,
        host: o.host,
        staleMs: o.staleMinutes * 60_000,
        cacheMb: o.cacheMb,
        parseWorkers: o.parseWorkers,
        preload: o.preload,
      });
      const runs = discoverRunIds(ui.layout).length;
      process.stdout.write(`flexvid ui: ${runs} run${runs === 1 ? '' : 's'} under ${ui.layout.checkpoints}\n`);
      if (!isLoopbackHost(o.host)) process.stdout.write(`flexvid ui: listening on ${o.host} — reachable from other machines; anyone who can connect can read the files under ${ui.layout.root}\n`);
      process.stdout.write(`flexvid ui: open ${ui.url}  (Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void ui.close().then(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });

  program
    .command('tensorboard-export')
    .description('Write TensorBoard event files from the metrics.jsonl of existing runs (for runs trained without --tensorboard)')
    .argument('[run-ids...]', 'run ids (default: every run under the root)')
    .option('--root <dir>', 'folder holding checkpoints/ (or a checkpoints folder)', '.')
    .option('--force', 'also export runs that already have event files written during training', false)
    .action((ids: string[], o: { root: string; force: boolean }) => {
      checkRoot(o.root);
      const layout = resolveLayout(o.root);
      const all = discoverRunIds(layout);
      const chosen = ids.length ? ids : all;
      for (const id of chosen) {
        if (!all.includes(id)) throw new OptionError('run id', `a run under ${layout.checkpoints}`, id);
        const r = exportTensorBoard(path.join(layout.checkpoints, ...id.split('/')), { force: o.force });
        process.stdout.write(r ? `${id}: ${r.records} records → ${path.relative(process.cwd(), r.file)}\n` : `${id}: skipped (no metrics.jsonl, or event files from training exist; --force to add an export)\n`);
      }
      process.stdout.write(`view with: tensorboard --logdir ${path.relative(process.cwd(), layout.checkpoints) || '.'}\n`);
    });
}
