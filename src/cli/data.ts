/**
 * `flexvid data …`: make, import, inspect and preview datasets (docs/data.md).
 *
 *   flexvid data balls --out DIR [--color-shift] [--frames N] [--chunk-size K] [--resolution R]
 *                      [--seed S] [--num-balls n] [--dtype uint8|float32|float64] [--workers W]
 *   flexvid data import-zip ZIP --out DIR
 *   flexvid data from-video FILE... --out DIR [--resolution 64] [--fps 20] [--chunk-size 1000]
 *                      [--test FILE | --test-fraction 0.1]
 *                      [--latent --vae PATH [--vae-dtype auto] [--device auto] [--encode-chunk-size 20] [--posterior sample]]
 *   flexvid data info DIR [--T 10]
 *   flexvid data preview DIR [--split test] [--start 0] [--frames 50] --out clip.gif
 *
 * The reference's snake_case flags of `datasets/ball.py` (`--save_dir`, `--T_total`,
 * `--chunk_size`, `--num_balls`, `--color_shift`) are accepted as hidden aliases.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { OptionError } from '../util/errors.ts';
import type { DType } from '../engine/index.ts';
import { startProgress, type Progress } from './progress.ts';
import { generateBalls } from '../data/balls-generate.ts';
import { importZip } from '../data/import-zip.ts';
import { datasetFromVideo } from '../data/from-video.ts';
import { STORE_DTYPES, type Split, type StoreDtype } from '../data/layout.ts';
import { defaultWorkerCount } from '../data/worker-pool.ts';
import { describeDataset, formatDatasetInfo, previewDataset } from '../data/inspect.ts';
import { intArg, numArg } from './args.ts';

/** Commander parser for integer flags: reports the flag name on bad input. */


/** First defined value (kebab-case flag, then its snake_case alias). */
function pick<T>(...vals: (T | undefined)[]): T | undefined {
  return vals.find((v) => v !== undefined);
}

/** Hidden snake_case alias of a flag. */
function alias(flags: string, parse?: (v: string) => unknown): Option {
  const o = new Option(flags).hideHelp();
  if (parse) o.argParser(parse);
  return o;
}

/**
 * The VAE frame encoder of `from-video --latent` (REFERENCE_SPEC §5.11). The engine and the VAE are
 * imported only here, so the other `flexvid data` commands do not load libtorch.
 */
async function latentEncoder(o: { vae?: string; vaeDtype?: string; device?: string; encodeChunkSize?: number; posterior?: string }) {
  const E = await import('../engine/index.ts');
  const V = await import('../vae/index.ts');
  const device = o.device === undefined || o.device === 'auto' ? (E.cudaAvailable() ? 'cuda' : 'cpu') : o.device;
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) throw new OptionError('--device', 'cpu, cuda, cuda:N or auto', o.device);
  const vae = V.loadVae(o.vae, { device, dtype: (o.vaeDtype ?? 'auto') as DType | 'auto' });
  return V.vaeFrameEncoder(vae, { chunkSize: o.encodeChunkSize, posterior: (o.posterior ?? 'sample') as 'sample' | 'mean' });
}

/** Registers `flexvid data …`. */
export function register(program: Command): void {
  const data = program.command('data').description('make, import, inspect and preview video datasets');

  data
    .command('balls')
    .description('generate the bouncing-balls streams (train and test) of REFERENCE_SPEC §1.1')
    .option('--out <dir>', 'output folder (e.g. datasets/ball_stn; the non-stationary stream belongs in datasets/ball_nstn)')
    .option('--color-shift', 'non-stationary variant: blue drifts from 0 to 1 over the stream')
    .option('--frames <n>', 'frames per stream, train and test each (default 1000000)', intArg('--frames', 1))
    .option('--chunk-size <k>', 'frames per chunk file; must divide --frames (default 1000)', intArg('--chunk-size', 1))
    .option('--resolution <px>', 'image side in pixels (default 32)', intArg('--resolution', 1))
    .option('--seed <s>', 'RNG seed, also the split sub-folder name (default 0)', intArg('--seed', 0))
    .option('--num-balls <n>', 'number of balls (default 2)', intArg('--num-balls', 1))
    .addOption(new Option('--dtype <type>', 'stored element type (uint8 = round(255·x))').choices([...STORE_DTYPES]).default('uint8'))
    .option('--workers <n>', `render threads (default: cores = ${defaultWorkerCount()})`, intArg('--workers', 1))
    .option('--quiet', 'no progress output')
    .addOption(alias('--save_dir <dir>'))
    .addOption(alias('--save_path <dir>'))
    .addOption(alias('--T_total <n>', intArg('--T_total', 1)))
    .addOption(alias('--chunk_size <k>', intArg('--chunk_size', 1)))
    .addOption(alias('--num_balls <n>', intArg('--num_balls', 1)))
    .addOption(alias('--color_shift'))
    .action(async (o) => {
      const out = pick<string>(o.out, o.save_dir, o.save_path);
      if (out === undefined) throw new OptionError('--out', 'an output folder', undefined);
      const frames = pick<number>(o.frames, o.T_total) ?? 1_000_000;
      // The bar starts with the first progress report, so option errors print nothing else.
      let bar: Progress | undefined;
      try {
        const r = await generateBalls({
          out,
          frames,
          chunkSize: pick(o.chunkSize, o.chunk_size),
          resolution: o.resolution,
          seed: o.seed,
          numBalls: pick(o.numBalls, o.num_balls),
          colorShift: Boolean(o.colorShift || o.color_shift),
          dtype: o.dtype as StoreDtype,
          workers: o.workers,
          onProgress: (done, total) => {
            bar ??= startProgress(`balls ${path.basename(out)}`, total, { unit: 'frames', quiet: o.quiet });
            bar.update(done);
          },
        });
        bar?.stop();
        bar = undefined;
        process.stdout.write(
          `wrote ${out}: ${r.frames} frames per stream, ${r.renderedChunks} chunks rendered` +
            (r.keptChunks ? `, ${r.keptChunks} kept from an earlier run` : '') +
            '\n',
        );
      } finally {
        bar?.stop();
      }
    });

  data
    .command('import-zip')
    .description('import a dataset zip (e.g. the Windows-maze screensaver) into a dataset folder, fixing the reference layout')
    .argument('<zip>', 'zip archive made by zip_dataset.py')
    .requiredOption('--out <dir>', 'output dataset folder (e.g. datasets/windows_maze)')
    .option('--quiet', 'no progress output')
    .action((zip: string, o) => {
      const size = fs.existsSync(zip) ? fs.statSync(zip).size : 0;
      const bar = startProgress('import', Math.max(1, Math.round(size / 2 ** 20)), { unit: 'MiB', quiet: o.quiet });
      try {
        const r = importZip(zip, o.out, { onProgress: (b) => bar.update(Math.round(b / 2 ** 20)) });
        process.stdout.write(`imported ${r.files} files into ${r.out} (${r.kind})` + (r.skipped ? `, skipped ${r.skipped}` : '') + '\n');
        if (r.movedToSeedFolder) process.stdout.write('moved <split>/<k>.npy chunks to <split>/0/<k>.npy\n');
        for (const f of r.configFixes) process.stdout.write(`config.json fixed: ${f}\n`);
      } finally {
        bar.stop();
      }
    });

  data
    .command('from-video')
    .description('make a dataset from your own video files (ffmpeg: centre square crop, scale, fps): uint8 frames, or SDXL-VAE latents with --latent')
    .argument('<files...>', 'input videos of the train stream, concatenated in order')
    .requiredOption('--out <dir>', 'output dataset folder')
    .option('--resolution <px>', 'frame side in pixels (default 64)', intArg('--resolution', 1))
    .option('--fps <n>', 'frames per second (default 20)', numArg('--fps'))
    .option('--chunk-size <k>', 'frames per chunk file (default 1000)', intArg('--chunk-size', 1))
    .option('--test <file>', 'a separate video for the test stream')
    .option('--test-fraction <f>', 'fraction of chunks moved to the test stream when no --test (default 0.1)', numArg('--test-fraction'))
    .option('--scale-flags <name>', 'ffmpeg scaler (default area)')
    .option('--overwrite', 'replace a dataset already in --out')
    .option('--latent', 'encode the frames with the SDXL VAE into a latent dataset (docs/latent.md; default --resolution 256)')
    .option('--vae <path>', 'VAE weights (diffusion_pytorch_model.safetensors or its folder) for --latent; default $FLEXVID_VAE')
    .addOption(new Option('--vae-dtype <dtype>', 'VAE compute dtype (auto: float16 on CUDA, float32 on the CPU)').choices(['auto', 'float32', 'bfloat16', 'float16']))
    .option('--device <dev>', 'device of the VAE: cpu, cuda, cuda:N or auto (default auto)')
    .option('--encode-chunk-size <n>', 'frames per VAE call (default 20)', intArg('--encode-chunk-size', 1))
    .addOption(new Option('--posterior <mode>', 'latent = a posterior sample (the reference) or its mean').choices(['sample', 'mean']))
    .option('--quiet', 'no progress output')
    .action(async (files: string[], o) => {
      let bar: Progress | undefined;
      try {
        const latent = o.latent ? await latentEncoder(o) : undefined;
        if (!o.latent) {
          for (const flag of ['vae', 'vaeDtype', 'device', 'encodeChunkSize', 'posterior'] as const) {
            if (o[flag] !== undefined) throw new OptionError('--latent', `the --latent flag with --${flag.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`, 'no --latent');
          }
        }
        const r = await datasetFromVideo({
          latent,
          inputs: files,
          out: o.out,
          resolution: o.resolution ?? (latent ? 256 : undefined),
          fps: o.fps,
          chunkSize: o.chunkSize,
          test: o.test,
          testFraction: o.testFraction,
          scaleFlags: o.scaleFlags,
          overwrite: Boolean(o.overwrite),
          onProgress: (done, expected) => {
            bar ??= startProgress(latent ? 'decode+encode' : 'decode', Math.max(1, expected), { unit: 'frames', quiet: o.quiet });
            bar.update(done);
          },
        });
        process.stdout.write(
          `wrote ${r.out}: ${latent ? 'latent dataset, ' : ''}train ${r.trainFrames} frames, test ${r.testFrames} frames` +
            (r.droppedFrames ? ` (dropped ${r.droppedFrames} frames of incomplete last chunks)` : '') +
            '\n',
        );
      } finally {
        bar?.stop();
      }
    });

  data
    .command('info')
    .description('describe a dataset folder or registry name: frames, chunks, resolution, dtype, view lengths')
    .argument('<dataset>', 'dataset folder or name (ball_stn, wmaze, …)')
    .option('--T <n>', 'window length for the view lengths (default: the registry value)', intArg('--T', 1))
    .option('--json', 'print JSON')
    .action(async (dataset: string, o) => {
      const info = await describeDataset(dataset, { T: o.T });
      process.stdout.write(o.json ? JSON.stringify(info, null, 2) + '\n' : formatDatasetInfo(info));
    });

  data
    .command('preview')
    .description('write frames of a dataset stream as an animated GIF')
    .argument('<dataset>', 'dataset folder or name')
    .addOption(new Option('--split <split>', 'stream to show').choices(['train', 'test']).default('test'))
    .option('--start <n>', 'first frame (default 0)', intArg('--start', 0))
    .option('--frames <k>', 'number of frames (default 50)', intArg('--frames', 1))
    .option('--fps <n>', 'GIF frame rate (default 10)', numArg('--fps'))
    .option('--scale <s>', 'nearest-neighbour upscaling factor (default 1)', intArg('--scale', 1))
    .requiredOption('--out <file>', 'output .gif')
    .action(async (dataset: string, o) => {
      const r = await previewDataset(dataset, {
        split: o.split as Split,
        start: o.start ?? 0,
        frames: o.frames ?? 50,
        fps: o.fps ?? 10,
        scale: o.scale ?? 1,
        out: o.out,
      });
      process.stdout.write(`wrote ${o.out}: frames ${r.start}…${r.start + r.frames - 1} of the ${o.split} stream (${r.width}×${r.height})\n`);
    });
}
