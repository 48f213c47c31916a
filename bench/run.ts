/**
 * Benchmark runner: `npm run bench -- <name> [args…]` imports `bench/<name>.ts` and calls its
 * exported `run(args)`. Without a (known) name it lists the available benchmarks.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

function available(): string[] {
  return fs
    .readdirSync(here)
    .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -3))
    .sort();
}

async function main(): Promise<number> {
  const [name, ...args] = process.argv.slice(2);
  const names = available();
  if (!name || !names.includes(name)) {
    if (name) console.error(`Unknown benchmark ${JSON.stringify(name)}.`);
    console.error(`Usage: npm run bench -- <name> [options]\nAvailable benchmarks: ${names.join(', ') || '(none)'}`);
    return name ? 1 : 0;
  }
  const mod = (await import(pathToFileURL(path.join(here, `${name}.ts`)).href)) as { run?: (args: string[]) => unknown };
  if (typeof mod.run !== 'function') {
    console.error(`bench/${name}.ts does not export run(args)`);
    return 1;
  }
  await mod.run(args);
  return 0;
}

process.exitCode = await main();
