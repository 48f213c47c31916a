#!/usr/bin/env node
/**
 * The `flexvid` command. Each area registers its subcommands from its own module;
 * this file only wires them together and turns errors into a message and a non-zero exit.
 */
import './env.ts';
import { Command, CommanderError } from 'commander';
import { FlexvidError } from '../util/errors.ts';
import { register as registerData } from './data.ts';
import { register as registerModel } from './model.ts';
import { register as registerTrain, preprocessTrainArgv } from './train.ts';
import { register as registerSample } from './sample.ts';
import { register as registerFvd } from './fvd.ts';
import { register as registerUi } from './ui.ts';
import { register as registerDemo } from './demo.ts';
import { register as registerCluster } from './cluster.ts';
import { register as registerExperiment } from './experiment.ts';

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('flexvid')
    .description('Flexible diffusion modeling of long videos and lifelong learning from a single video stream.')
    .showHelpAfterError()
    .exitOverride();
  registerData(program);
  registerModel(program);
  registerTrain(program);
  registerSample(program);
  registerFvd(program);
  registerUi(program);
  registerDemo(program);
  registerCluster(program);
  registerExperiment(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv[0] === 'train' ? preprocessTrainArgv(argv) : argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit with code 0; usage errors have already been printed.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (e instanceof FlexvidError) {
      process.stderr.write(`flexvid: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\/src\//, '/src/'));
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`flexvid: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
