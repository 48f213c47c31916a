/** `flexvid demo`: the whole pipeline end to end on a small bouncing-balls stream. */
import type { Command } from 'commander';
import { runDemo } from '../experiments/demo.ts';
import { startProgress } from './progress.ts';
import { OptionError } from '../util/errors.ts';

export function register(program: Command): void {
  program
    .command('demo')
    .description('Generate a colour-shifting balls stream, train lifelong with replay, sample with two schemes, render videos, compute metrics and write a report.')
    .option('--root <dir>', 'folder for everything the demo writes', 'flexvid-demo')
    .option('--small', 'reduced size (a few steps, one short video) for CI')
    .option('--steps <n>', 'training steps (default 300; --small: 4)')
    .option('--frames <n>', 'frames per generated stream (default 4000; --small: 600)')
    .action(async (o: { root: string; small?: boolean; steps?: string; frames?: string }) => {
      const num = (flag: string, v?: string) => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isInteger(n) || n < 1) throw new OptionError(flag, 'a positive integer', v);
        return n;
      };
      const r = await runDemo({
        root: o.root,
        small: o.small,
        steps: num('--steps', o.steps),
        frames: num('--frames', o.frames),
        log: (l) => process.stderr.write(`${l}\n`),
        progress: (label, total, unit) => {
          const p = startProgress(label, total, { unit });
          return { update: (v, extra) => p.update(v, extra), stop: () => p.stop() };
        },
      });
      process.stdout.write(`\nDemo finished. Look at:\n  report   ${r.report}\n  videos   ${r.videos.join('\n           ')}\n  run      ${r.runDir}\n`);
    });
}
