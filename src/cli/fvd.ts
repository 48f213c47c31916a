/**
 * `flexvid fvd …` / `flexvid kvd …`: Fréchet and kernel video distances of an evaluation folder
 * (REFERENCE_SPEC §8.2, §8.3; docs/fvd.md).
 *
 *   flexvid fvd --eval-dir DIR [--num-videos N] [--batch-size 8] [--sample-idx 0]
 *               [--i3d-weights PATH] [--i3d-variant tfhub|tats] [--device cpu|cuda] [--kvd] [--no-cache]
 *               [--vae PATH --decode-cache-dir ./tmp/plaicraft_decoded --decode-chunk-size 5]   (latent datasets)
 *   flexvid kvd --eval-dir DIR …   (same options; --fvd also writes the FVD)
 *   flexvid fvd convert-weights i3d_pretrained_400.pt [--out weights/i3d_pretrained_400.safetensors]
 *
 * The reference's snake_case flags (`--eval_dir`, `--num_videos`, `--batch_size`, `--sample_idx`)
 * are accepted as hidden aliases. The I3D weights come from `--i3d-weights`, `$FLEXVID_I3D_WEIGHTS`
 * or `weights/i3d_pretrained_400.{safetensors,pt}`; when missing, the error says what to download.
 * Latent datasets: the real videos are decoded once with the SDXL VAE (`--vae`, else `$FLEXVID_VAE`)
 * into `--decode-cache-dir` (docs/latent.md).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Option, type Command } from 'commander';
import { OptionError } from '../util/errors.ts';
import { formatMetric } from '../metrics/results.ts';
import { evaluateVideoMetrics, type VideoMetric } from '../metrics/fvd-eval.ts';
import { convertI3DWeights, I3D, I3D_DEFAULT_PATHS, I3D_VARIANTS, loadI3D, resolveI3DWeightsPath, type I3DVariant } from '../metrics/i3d.ts';
import { DEFAULT_DECODE_CACHE_DIR, loadVae, VAE_ENV } from '../vae/index.ts';
import type { DType } from '../engine/index.ts';
import { startProgress, type Progress } from './progress.ts';
import { intArg } from './args.ts';


function alias(flags: string, parse?: (v: string) => unknown): Option {
  const o = new Option(flags).hideHelp();
  if (parse) o.argParser(parse);
  return o;
}

/** Test-only `--i3d-random SEED[/DIVISOR]`: random weights (divisor shrinks every channel count). */
function parseRandomSpec(v: string): { seed: number; widthDivisor: number } {
  const m = /^(\d+)(?:\/(\d+))?$/.exec(v.trim());
  if (!m) throw new OptionError('--i3d-random', 'SEED or SEED/DIVISOR', v);
  return { seed: Number(m[1]), widthDivisor: m[2] ? Number(m[2]) : 1 };
}

interface MetricFlags {
  evalDir?: string;
  eval_dir?: string;
  numVideos?: number;
  num_videos?: number;
  batchSize?: number;
  batch_size?: number;
  sampleIdx?: number;
  sample_idx?: number;
  i3dWeights?: string;
  i3dVariant: I3DVariant;
  i3dRandom?: { seed: number; widthDivisor: number };
  device?: string;
  cache: boolean;
  quiet?: boolean;
  kvd?: boolean;
  fvd?: boolean;
  dataset?: string;
  vae?: string;
  vaeDtype: DType | 'auto';
  decodeCacheDir?: string;
  decode_cache_dir?: string;
  decodeChunkSize?: number;
  decode_chunk_size?: number;
}

function addMetricOptions(cmd: Command): Command {
  return cmd
    .option('--eval-dir <dir>', 'evaluation folder results/…/<identifier> (holds model_config.json and samples/)')
    .option('--num-videos <n>', 'number of videos N (default: all consecutive sample files)', intArg('--num-videos', 2))
    .option('--batch-size <n>', 'I3D batch size (default 8)', intArg('--batch-size', 1))
    .option('--sample-idx <k>', 'which seed\'s samples: samples/sample_<i>-<k>.npy (default 0)', intArg('--sample-idx', 0))
    .option('--i3d-weights <path>', `I3D state dict (.pt or .safetensors); default $FLEXVID_I3D_WEIGHTS or ${I3D_DEFAULT_PATHS.join(' / ')}`)
    .addOption(new Option('--i3d-variant <name>', 'tfhub: TF-Hub graph numerics (reference); tats: the PyTorch port').choices(Object.keys(I3D_VARIANTS)).default('tfhub'))
    .option('--device <device>', 'device for I3D: cpu or cuda[:i] (default cpu)')
    .option('--dataset <name>', 'dataset name or folder overriding model_config.json (e.g. after moving the dataset)')
    .option('--no-cache', 'do not read or write the feature cache <eval-dir>/features/')
    .option('--vae <path>', `latent datasets: SDXL VAE weights (file or folder) decoding the real videos (default $${VAE_ENV})`)
    .addOption(new Option('--vae-dtype <dtype>', 'VAE dtype (auto: float16 on CUDA, float32 on the CPU)').choices(['auto', 'float32', 'bfloat16', 'float16']).default('auto'))
    .option('--decode-cache-dir <dir>', `latent datasets: cache of the decoded real videos (default ${DEFAULT_DECODE_CACHE_DIR})`)
    .option('--decode-chunk-size <n>', 'latent datasets: frames per VAE decoder call (default 5)', intArg('--decode-chunk-size', 1))
    .option('--quiet', 'no progress output')
    .addOption(new Option('--i3d-random <seed[/div]>', 'tests only: random I3D weights').hideHelp().argParser(parseRandomSpec))
    .addOption(alias('--eval_dir <dir>'))
    .addOption(alias('--num_videos <n>', intArg('--num_videos', 2)))
    .addOption(alias('--batch_size <n>', intArg('--batch_size', 1)))
    .addOption(alias('--sample_idx <k>', intArg('--sample_idx', 0)))
    .addOption(alias('--decode_cache_dir <dir>'))
    .addOption(alias('--decode_chunk_size <n>', intArg('--decode_chunk_size', 1)));
}

async function runMetrics(o: MetricFlags, metrics: VideoMetric[]): Promise<void> {
  const evalDir = o.evalDir ?? o.eval_dir;
  if (evalDir === undefined) throw new OptionError('--eval-dir', 'an evaluation folder', undefined);
  const variant = o.i3dVariant;
  let network: () => I3D;
  let networkId: () => string;
  if (o.i3dRandom) {
    const r = o.i3dRandom;
    network = () => {
      const n = I3D.random(r.seed, { variant, widthDivisor: r.widthDivisor });
      if (o.device && o.device !== 'cpu') n.to({ device: o.device });
      return n;
    };
    networkId = () => `random:${r.seed}/${r.widthDivisor}:${variant}`;
  } else {
    // Resolved when features are needed (existing results print without weights); a missing file
    // is reported before any work, with what to download.
    let file: string | undefined;
    const weights = () => (file ??= resolveI3DWeightsPath(o.i3dWeights));
    network = () => loadI3D(weights(), { variant, device: o.device });
    networkId = () => {
      const st = fs.statSync(weights());
      return `${path.resolve(weights())}:${st.size}:${Math.round(st.mtimeMs)}:${variant}`;
    };
  }
  const bars = new Map<string, Progress>();
  try {
    const r = await evaluateVideoMetrics({
      evalDir,
      metrics,
      numVideos: o.numVideos ?? o.num_videos,
      batchSize: o.batchSize ?? o.batch_size,
      sampleIdx: o.sampleIdx ?? o.sample_idx,
      network,
      networkId: o.cache ? networkId : undefined,
      dataset: o.dataset,
      vae: () => loadVae(o.vae, { device: o.device ?? 'cpu', dtype: o.vaeDtype }),
      decodeCacheDir: o.decodeCacheDir ?? o.decode_cache_dir,
      decodeChunkSize: o.decodeChunkSize ?? o.decode_chunk_size,
      onProgress: (phase, done, total) => {
        let bar = bars.get(phase);
        if (!bar) {
          bar = startProgress(phase === 'decode' ? 'VAE decode real' : `I3D ${phase}`, total, { unit: 'videos', quiet: o.quiet });
          bars.set(phase, bar);
        }
        bar.update(done);
      },
      onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
    });
    for (const b of bars.values()) b.stop();
    bars.clear();
    for (const m of metrics) {
      const out = r[m]!;
      process.stdout.write(`${m} ${formatMetric(out.value)} (${out.file}${out.existed ? ', already computed' : ''})\n`);
    }
  } finally {
    for (const b of bars.values()) b.stop();
  }
}

/** Registers `flexvid fvd` (with `convert-weights`) and `flexvid kvd`. */
export function register(program: Command): void {
  const fvd = addMetricOptions(
    program.command('fvd').description('Fréchet video distance of an evaluation folder (I3D Kinetics-400 features; writes fvd-<N>-<k>.txt)'),
  )
    .option('--kvd', 'also write the KVD (kvd-<N>-<k>.txt) from the same features')
    .action(async (o: MetricFlags) => runMetrics(o, o.kvd ? ['fvd', 'kvd'] : ['fvd']));

  fvd
    .command('convert-weights')
    .description('check an I3D state dict (e.g. i3d_pretrained_400.pt) against the network and save it as safetensors')
    .argument('<input>', 'i3d_pretrained_400.pt (VideoGPT/TATS InceptionI3d(400) state dict) or a safetensors file')
    .option('--out <file>', `output safetensors file (default ${I3D_DEFAULT_PATHS[0]})`)
    .action((input: string, o: { out?: string }) => {
      if (!fs.existsSync(input)) throw new OptionError('<input>', 'an existing I3D weights file', input);
      const out = o.out ?? I3D_DEFAULT_PATHS[0];
      if (path.resolve(out) === path.resolve(input)) throw new OptionError('--out', 'a file other than the input', out);
      fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
      const r = convertI3DWeights(input, out);
      process.stdout.write(`wrote ${out}: ${r.tensors} tensors, ${r.parameters} parameters\n`);
    });

  addMetricOptions(
    program.command('kvd').description('kernel video distance (polynomial MMD of I3D features) of an evaluation folder (writes kvd-<N>-<k>.txt)'),
  )
    .option('--fvd', 'also write the FVD (fvd-<N>-<k>.txt) from the same features')
    .action(async (o: MetricFlags) => runMetrics(o, o.fvd ? ['fvd', 'kvd'] : ['kvd']));
}
