/**
 * Latent models through the evaluation commands (REFERENCE_SPEC §5.11, §7.2, §8.1, §8.2) with a
 * tiny random VAE (×2 downsampling) and a tiny latent U-Net: `flexvid sample` writes the decoded
 * pixels, `flexvid video` decodes latent ground truth, `flexvid fvd` decodes the real videos once
 * into the shared cache (a second run only reads it), and training refuses pixel space on a latent
 * dataset.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../../src/cli/main.ts';
import { readNpy, writeNpy } from '../../src/data/npy.ts';
import { getEvalDataset } from '../../src/data/datasets.ts';
import { tensor, tidy } from '../../src/engine/index.ts';
import { UNetVideoModel } from '../../src/model/unet.ts';
import { DEFAULT_DIFFUSION_CONFIG } from '../../src/diffusion/gaussian-diffusion.ts';
import { saveWeights, type CheckpointMeta } from '../../src/training/checkpoint.ts';
import { resolveRunSettings } from '../../src/training/loop.ts';
import { runSampling } from '../../src/experiments/sample-run.ts';
import { makeVideo } from '../../src/experiments/make-video.ts';
import { evaluateVideoMetrics } from '../../src/metrics/fvd-eval.ts';
import { I3D } from '../../src/metrics/i3d.ts';
import { readGif } from '../../src/media/gif-read.ts';
import { samplePath } from '../../src/sampling/naming.ts';
import { AutoencoderKL } from '../../src/vae/autoencoder-kl.ts';
import { TINY_VAE_CONFIG } from '../../src/vae/config.ts';
import { decodedCacheKey, decodedCachePath, decodedToUint8, decodeLatents, saveVae, VAE_ENV } from '../../src/vae/index.ts';
import { loadTensors } from '../../src/nn/checkpoint.ts';
import { tinyOptions } from '../training/helpers.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-vae-int-'));
const h = 16; // latent side (the tiny VAE decodes it to 32 × 32)
const T = 6;
const nObs = 2;
const fast = { sampler: 'ddpm', timestepRespacing: '2', device: 'cpu', T, nObs, maxFrames: 4, quiet: true } as const;
const dataset = path.join(tmp, 'datasets', 'tiny_latent');
const vaeFile = path.join(tmp, 'tiny-vae.safetensors');
let vae: AutoencoderKL;
let ckpt = '';
let savedEnv: string | undefined;

/**
 * A latent dataset folder as `data from-video --latent` writes it: float32 chunks (30, side, side, 4)
 * storing (z + 1)/2 for smooth latents z in [−0.8, 0.8].
 */
function makeLatentDataset(root: string, side: number): void {
  for (const [split, phase] of [['train', 0.3], ['test', 1.1]] as const) {
    fs.mkdirSync(path.join(root, split, '0'), { recursive: true });
    const data = Float32Array.from({ length: 30 * side * side * 4 }, (_, i) => (1 + 0.8 * Math.sin(0.013 * i + phase) * Math.cos(0.0021 * i)) / 2);
    writeNpy(path.join(root, split, '0', '0.npy'), { dtype: '<f4', shape: [30, side, side, 4], data });
  }
  fs.writeFileSync(
    path.join(root, 'config.json'),
    JSON.stringify({ T_total: 30, chunk_size: 30, resolution: side, pixel_resolution: 2 * side, dtype: 'float32', space: 'latent', latent: { scaling_factor: 0.13025 } }),
  );
}

/** A checkpoint of a tiny latent U-Net (4 channels, zero-initialised output) for `data`. */
function makeLatentCheckpoint(dir: string, data: string): string {
  const model = new UNetVideoModel({ imageSize: h, modelChannels: 32, numResBlocks: 1, numHeads: 2, channelMult: [1, 2], attentionResolutions: '', inChannels: 4 });
  const file = path.join(dir, 'checkpoints', 'latent1', 'ema_0.9999_000010.safetensors');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const meta: CheckpointMeta = {
    config: {
      model: model.config,
      diffusion: { ...DEFAULT_DIFFUSION_CONFIG },
      dataset: data,
      T: 8,
      maxFrames: 8,
      diffusionSpace: 'latent',
      train: { dataset: data, T: 8, maxFrames: 8, scheduleSampler: 'uniform', batchSize: 2, diffusionSpace: 'latent' },
    },
    step: 10,
    kind: 'ema_0.9999',
  };
  saveWeights(file, model.stateDict(), meta);
  model.dispose();
  return file;
}

/** The test's own decoding of real item `i`: uint8 `[T, 3, 2h, 2h]`. */
async function decodedItem(i: number): Promise<Uint8Array> {
  const { dataset: ds } = await getEvalDataset(dataset, { T });
  const item = ds.get(i);
  return tidy(() => decodedToUint8(decodeLatents(vae, tensor(item.frames, { shape: [...item.shape] }), { chunkSize: 4 })).toBytes());
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

before(() => {
  process.env.FLEXVID_QUIET = '1';
  savedEnv = process.env[VAE_ENV];
  delete process.env[VAE_ENV];
  makeLatentDataset(dataset, h);
  vae = AutoencoderKL.random(TINY_VAE_CONFIG, 5);
  saveVae(vaeFile, vae);
  ckpt = makeLatentCheckpoint(tmp, dataset);
});
after(() => {
  vae.dispose();
  delete process.env.FLEXVID_QUIET;
  if (savedEnv !== undefined) process.env[VAE_ENV] = savedEnv;
  fs.rmSync(tmp, { recursive: true, force: true });
});

const results = () => path.join(tmp, 'results');
const evalDirOf = () => path.join(results(), 'latent1', 'ema_0.9999_000010_ddpm_respace2', `autoreg_4_${T}_${nObs}_default_0_None_test`);

test('sample: a latent checkpoint writes decoded pixels [T, 3, 2h, 2h]; observed frames are the decoded ground truth', async () => {
  // Without weights nothing is written and the message says what to download and how to pass it.
  await assert.rejects(runSampling({ ...fast, checkpoint: ckpt, stopIndex: 2, samplingScheme: 'autoreg', resultsDir: results() }), (e: Error) => {
    assert.match(e.message, /--vae/);
    assert.match(e.message, new RegExp(VAE_ENV));
    assert.match(e.message, /sdxl-vae-fp16-fix/);
    return true;
  });
  assert.ok(!fs.existsSync(evalDirOf()), 'nothing written without the VAE');

  const r = await runSampling({ ...fast, checkpoint: ckpt, stopIndex: 2, batchSize: 2, samplingScheme: 'autoreg', resultsDir: results(), vae, decodeChunkSize: 5 });
  assert.equal(r.evalDir, evalDirOf());
  assert.deepEqual(r.written, [0, 1]);
  const cfg = JSON.parse(fs.readFileSync(path.join(r.evalDir, 'model_config.json'), 'utf8'));
  assert.equal(cfg.diffusion_space, 'latent');
  assert.equal(cfg.in_channels, 4);
  for (const i of [0, 1]) {
    const a = readNpy(samplePath(r.evalDir, i, 0));
    assert.equal(a.dtype, '|u1');
    assert.deepEqual(a.shape, [T, 3, 2 * h, 2 * h]);
    const got = a.data as Uint8Array;
    const gt = await decodedItem(i);
    const frame = 3 * 4 * h * h;
    // The observed prefix decodes the ground-truth latents (chunking may differ: ≤ 1 level).
    assert.ok(maxDiff(got.subarray(0, nObs * frame), gt.subarray(0, nObs * frame)) <= 1);
    // The generated frames are decoded latents too, but not the ground truth.
    assert.ok(maxDiff(got.subarray(nObs * frame), gt.subarray(nObs * frame)) > 1);
  }
});

test('sample --vae FILE through the CLI', async () => {
  const res = path.join(tmp, 'results-cli');
  const code = await main(['sample', ckpt, '--stop-index', '1', '--sampling-scheme', 'autoreg', '--n-obs', String(nObs), '--T', String(T), '--max-frames', '4', '--sampler', 'ddpm', '--timestep-respacing', '2', '--device', 'cpu', '--results-dir', res, '--vae', vaeFile, '--vae-dtype', 'float32', '--decode-chunk-size', '3', '--quiet']);
  assert.equal(code, 0);
  const file = samplePath(path.join(res, 'latent1', 'ema_0.9999_000010_ddpm_respace2', `autoreg_4_${T}_${nObs}_default_0_None_test`), 0, 0);
  assert.deepEqual(readNpy(file).shape, [T, 3, 2 * h, 2 * h]);
});

test('video: latent ground truth is decoded with the VAE before drawing', async () => {
  const evalDir = evalDirOf();
  assert.ok(fs.existsSync(samplePath(evalDir, 0, 0)), 'needs the sampling test');
  const r = await makeVideo({ evalDir, vae, doN: 2, nSeeds: 1, decodeChunkSize: 4 });
  assert.equal(r.width, 2 * 2 * h);
  assert.equal(r.height, 2 * 2 * h); // ground truth above one seed
  const g = readGif(r.file);
  assert.equal(g.frameCount, T);
  assert.equal(g.width, 4 * h);
  // Without weights: the VAE message.
  const errs: string[] = [];
  const ew = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? (errs.push(s), true) : ew(s, ...rest))) as typeof process.stderr.write;
  let code: number;
  try {
    code = await main(['video', '--eval-dir', evalDir, '--device', 'cpu']);
  } finally {
    process.stderr.write = ew;
  }
  assert.equal(code, 1);
  assert.match(errs.join(''), new RegExp(VAE_ENV));
  // Through the CLI with --vae.
  assert.equal(await main(['video', '--eval-dir', evalDir, '--vae', vaeFile, '--device', 'cpu', '--format', 'gif', '--out-dir', path.join(tmp, 'video-cli')]), 0);
  assert.equal(readGif(path.join(tmp, 'video-cli', 'videos', '1_1.gif')).width, 2 * h);
});

test('fvd: latent real videos are decoded once into the shared cache, read back like samples; a second run only reads the cache', async () => {
  const N = 3;
  // An eval folder whose samples are the test's own decoding of the real videos.
  const evalDir = path.join(tmp, 'results-fvd', 'run1', 'ema_0.9999_000010_ddpm', `autoreg_4_${T}_${nObs}_default_0_None_test`);
  fs.mkdirSync(path.join(evalDir, 'samples'), { recursive: true });
  fs.writeFileSync(path.join(evalDir, 'model_config.json'), JSON.stringify({ dataset, T, max_frames: 4 }));
  const decoded: Uint8Array[] = [];
  for (let i = 0; i < N; i++) {
    decoded.push(await decodedItem(i));
    writeNpy(samplePath(evalDir, i, 0), { dtype: '|u1', shape: [T, 3, 2 * h, 2 * h], data: decoded[i]! });
  }
  const cacheDir = path.join(tmp, 'decoded');
  const key = decodedCacheKey({ dataset, T, config: 'default', lower: 0, upper: null, evalOnTrain: false });
  assert.equal(key, `tiny_latent_${T}_default_0_None_False`);
  const net = () => I3D.random(3, { widthDivisor: 16 }); // evaluateVideoMetrics disposes it
  let vaeLoads = 0;
  const phases = new Set<string>();
  const first = await evaluateVideoMetrics({
    evalDir,
    metrics: ['fvd'],
    batchSize: 3,
    network: net,
    networkId: 'random:3/16:first',
    vae: () => (vaeLoads++, AutoencoderKL.random(TINY_VAE_CONFIG, 5)),
    decodeCacheDir: cacheDir,
    decodeChunkSize: 4,
    onProgress: (phase) => phases.add(phase),
  });
  assert.equal(vaeLoads, 1);
  assert.ok(phases.has('decode'));
  assert.deepEqual(first.features, { real: 'computed', generated: 'computed' });
  for (let i = 0; i < N; i++) {
    const c = readNpy(decodedCachePath(cacheDir, key, i));
    assert.equal(c.dtype, '|u1');
    assert.deepEqual(c.shape, [T, 3, 2 * h, 2 * h]);
    assert.ok(maxDiff(c.data as Uint8Array, decoded[i]!) <= 1);
  }
  assert.ok(!fs.existsSync(decodedCachePath(cacheDir, key, N)), 'only the N requested videos');
  // Same uint8 videos through the same round trip and network: the same features.
  const rows = (which: string) => {
    const { tensors } = loadTensors(path.join(evalDir, 'features', `i3d-${which}.safetensors`));
    const a = tensors.get('features')!.toFloat32Array();
    for (const t of tensors.values()) t.dispose();
    return a;
  };
  const real = rows('real-3');
  const gen = rows('generated-3-0');
  let worst = 0;
  for (let j = 0; j < real.length; j++) worst = Math.max(worst, Math.abs(real[j]! - gen[j]!));
  assert.ok(worst < 1e-3, `real vs generated features differ by ${worst}`);

  // Second run (new feature-cache id, so the real videos are needed again): the decode cache is
  // read, the VAE is never created, the cached files are not rewritten.
  const mtimes = Array.from({ length: N }, (_, i) => fs.statSync(decodedCachePath(cacheDir, key, i)).mtimeMs);
  fs.rmSync(path.join(evalDir, `fvd-${N}-0.txt`));
  const second = await evaluateVideoMetrics({
    evalDir,
    metrics: ['fvd'],
    batchSize: 3,
    network: net,
    networkId: 'random:3/16:second',
    vae: () => {
      throw new Error('the VAE must not be needed');
    },
    decodeCacheDir: cacheDir,
  });
  assert.deepEqual(second.features, { real: 'computed', generated: 'computed' });
  assert.equal(second.fvd!.value, first.fvd!.value);
  assert.deepEqual(Array.from({ length: N }, (_, i) => fs.statSync(decodedCachePath(cacheDir, key, i)).mtimeMs), mtimes);

  // Generated videos of the wrong size are refused before any decoding.
  const badDir = path.join(tmp, 'results-bad', 'run1', 'x_ddpm', `autoreg_4_${T}_${nObs}_default_0_None_test`);
  fs.mkdirSync(path.join(badDir, 'samples'), { recursive: true });
  fs.writeFileSync(path.join(badDir, 'model_config.json'), JSON.stringify({ dataset }));
  for (let i = 0; i < 2; i++) writeNpy(samplePath(badDir, i, 0), { dtype: '|u1', shape: [T, 3, h, h], data: new Uint8Array(T * 3 * h * h) });
  await assert.rejects(
    evaluateVideoMetrics({ evalDir: badDir, metrics: ['fvd'], network: net, vae: () => AutoencoderKL.random(TINY_VAE_CONFIG, 5), decodeCacheDir: path.join(tmp, 'decoded-bad') }),
    /differs from the decoded real videos/,
  );
  assert.ok(!fs.existsSync(path.join(tmp, 'decoded-bad', key, 'sample_0000.npy')));
});

test('fvd --vae --decode-cache-dir through the CLI', async () => {
  const evalDir = path.join(tmp, 'results-fvd', 'run1', 'ema_0.9999_000010_ddpm', `autoreg_4_${T}_${nObs}_default_0_None_test`);
  assert.ok(fs.existsSync(evalDir), 'needs the previous test');
  const cacheDir = path.join(tmp, 'decoded-cli');
  const out: string[] = [];
  const ow = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? (out.push(s), true) : ow(s, ...rest))) as typeof process.stdout.write;
  let code: number;
  try {
    code = await main(['fvd', '--eval-dir', evalDir, '--num-videos', '2', '--i3d-random', '3/16', '--no-cache', '--vae', vaeFile, '--decode_cache_dir', cacheDir, '--decode-chunk-size', '6', '--quiet']);
  } finally {
    process.stdout.write = ow;
  }
  assert.equal(code, 0);
  assert.match(out.join(''), /^fvd \S+/);
  const key = decodedCacheKey({ dataset, T, config: 'default', lower: 0, upper: null, evalOnTrain: false });
  assert.deepEqual(fs.readdirSync(path.join(cacheDir, key)).sort(), ['sample_0000.npy', 'sample_0001.npy']);
});

test('train: --diffusion-space pixel on a latent dataset is refused naming the flag', () => {
  const latent32 = path.join(tmp, 'datasets', 'latent32'); // a U-Net size (32) for the latent side
  makeLatentDataset(latent32, 32);
  assert.throws(() => resolveRunSettings(tinyOptions(latent32)), (e: Error) => /--diffusion-space/.test(e.message) && /latent/.test(e.message));
  const s = resolveRunSettings(tinyOptions(latent32, { diffusionSpace: 'latent' }));
  assert.equal(s.model.inChannels, 4);
  assert.equal(s.model.imageSize, 32);
});
