/**
 * `flexvid data from-video --latent --vae PATH` end to end with a tiny randomly initialised VAE:
 * the latent dataset has the chunked layout, every reader returns the VAE's scaled latents of the
 * same frames as the pixel dataset, the training registry sees 4 channels at the latent size, and
 * decoding gives the frames back in shape. Errors: no weights, flags without --latent, sizes.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { main } from '../../src/cli/main.ts';
import { ffmpegPath } from '../../src/data/from-video.ts';
import { VideoStore } from '../../src/data/video-store.ts';
import { resolveDataset } from '../../src/data/registry.ts';
import { readLatentDatasetInfo } from '../../src/data/latent-video.ts';
import { readNpy } from '../../src/data/npy.ts';
import { tensor, tidy } from '../../src/engine/index.ts';
import { AutoencoderKL } from '../../src/vae/autoencoder-kl.ts';
import { TINY_VAE_CONFIG } from '../../src/vae/config.ts';
import { decodeLatents, encodeFrames, loadVae, saveVae, vaeDtypeSupported, VAE_ENV } from '../../src/vae/latent-space.ts';
import { maxAbsDiff } from './helpers.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-vae-cli-'));
let savedEnv: string | undefined;

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  // Only strings are captured: under `node --test` the runner reports through stdout as binary
  // (serialised) chunks, which must pass through while a command runs.
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? ((out += s), true) : ow(s, ...rest))) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? ((err += s), true) : ew(s, ...rest))) as typeof process.stderr.write;
  try {
    return { code: await main(argv), out, err };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
  }
}

const video = path.join(tmp, 'clip.mp4');
const vaeFile = path.join(tmp, 'tiny-vae.safetensors');

before(() => {
  process.env.FLEXVID_QUIET = '1';
  savedEnv = process.env[VAE_ENV];
  delete process.env[VAE_ENV];
  // 2 s of a moving test pattern at 10 fps.
  execFileSync(ffmpegPath(), ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=s=40x32:r=10:d=2', '-pix_fmt', 'yuv420p', video]);
  const vae = AutoencoderKL.random(TINY_VAE_CONFIG, 21);
  saveVae(vaeFile, vae);
  vae.dispose();
});
after(() => {
  delete process.env.FLEXVID_QUIET;
  if (savedEnv !== undefined) process.env[VAE_ENV] = savedEnv;
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('from-video --latent: a latent dataset whose frames are the VAE latents of the pixel dataset', async () => {
  const lat = path.join(tmp, 'latent');
  const px = path.join(tmp, 'pixels');
  const common = ['--resolution', '16', '--fps', '10', '--chunk-size', '5', '--test-fraction', '0.25'];
  const r = await run('data', 'from-video', video, '--out', lat, ...common, '--latent', '--vae', vaeFile, '--posterior', 'mean', '--encode-chunk-size', '3', '--device', 'cpu');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /latent dataset, train 15 frames, test 5 frames/);
  const p = await run('data', 'from-video', video, '--out', px, ...common);
  assert.equal(p.code, 0, p.err);

  const cfg = JSON.parse(fs.readFileSync(path.join(lat, 'config.json'), 'utf8'));
  assert.deepEqual([cfg.T_total, cfg.T_total_test, cfg.chunk_size, cfg.resolution, cfg.pixel_resolution, cfg.dtype, cfg.space], [15, 5, 5, 8, 16, 'float32', 'latent']);
  assert.equal(cfg.latent.scaling_factor, 0.13025);
  assert.equal(cfg.latent.posterior, 'mean');
  assert.equal(cfg.latent.vae_file, path.resolve(vaeFile));
  assert.deepEqual(readLatentDatasetInfo(lat)?.pixelResolution, 16);
  assert.equal(readLatentDatasetInfo(px), null);
  const chunk = readNpy(path.join(lat, 'train', '0', '2.npy'));
  assert.deepEqual([chunk.dtype, ...chunk.shape], ['<f4', 5, 8, 8, 4]);

  // The training registry: 4 channels at the latent size.
  const info = resolveDataset(lat);
  assert.deepEqual([info.channels, info.imageSize], [4, 8]);

  const vae = loadVae(vaeFile);
  const latStore = VideoStore.open(lat, { dataRoot: null });
  const pxStore = VideoStore.open(px, { dataRoot: null });
  for (const split of ['train', 'test'] as const) {
    const n = latStore.frameCount(split);
    const z = latStore.readFrames(split, 0, n);
    assert.deepEqual(z.shape, [n, 4, 8, 8]);
    const frames = pxStore.readFrames(split, 0, n);
    tidy(() => {
      const x = tensor(frames.data, { shape: frames.shape });
      const want = encodeFrames(vae, x, { posterior: 'mean' });
      assert.ok(maxAbsDiff(z.data, want.toFloat32Array()) < 1e-5, `${split}: ${maxAbsDiff(z.data, want.toFloat32Array())}`);
      // ... and decode back to frames of the pixel size.
      const back = decodeLatents(vae, tensor(z.data, { shape: [1, n, 4, 8, 8] }), { chunkSize: 4 });
      assert.deepEqual(back.shape, [1, n, 3, 16, 16]);
      assert.ok(maxAbsDiff(back.toFloat32Array(), decodeLatents(vae, want).toFloat32Array()) < 1e-4);
    });
  }
  vae.dispose();

  // Posterior samples (the default) are seeded: the same command gives the same dataset.
  const s1 = path.join(tmp, 's1');
  const s2 = path.join(tmp, 's2');
  for (const out of [s1, s2]) {
    const q = await run('data', 'from-video', video, '--out', out, ...common, '--latent', '--vae', vaeFile);
    assert.equal(q.code, 0, q.err);
  }
  assert.deepEqual(fs.readFileSync(path.join(s1, 'train', '0', '0.npy')), fs.readFileSync(path.join(s2, 'train', '0', '0.npy')));
  assert.notDeepEqual(fs.readFileSync(path.join(s1, 'train', '0', '0.npy')), fs.readFileSync(path.join(lat, 'train', '0', '0.npy')));
});

test('from-video --latent errors: missing weights, flags without --latent, resolution, dtype', async () => {
  const out = path.join(tmp, 'err');
  const noWeights = await run('data', 'from-video', video, '--out', out, '--latent', '--resolution', '16', '--chunk-size', '5');
  assert.equal(noWeights.code, 1);
  assert.match(noWeights.err, /no VAE weights given/);
  assert.match(noWeights.err, /diffusion_pytorch_model\.safetensors/);
  assert.match(noWeights.err, /--vae .* or set the environment variable FLEXVID_VAE/);
  assert.equal(fs.existsSync(path.join(out, 'config.json')), false);

  const missing = await run('data', 'from-video', video, '--out', out, '--latent', '--vae', path.join(tmp, 'none.safetensors'));
  assert.equal(missing.code, 1);
  assert.match(missing.err, /no VAE weights at .*none\.safetensors/);

  const stray = await run('data', 'from-video', video, '--out', out, '--vae', vaeFile);
  assert.equal(stray.code, 1);
  assert.match(stray.err, /--latent/);

  const odd = await run('data', 'from-video', video, '--out', out, '--latent', '--vae', vaeFile, '--resolution', '15');
  assert.equal(odd.code, 1);
  assert.match(odd.err, /multiple of 2 .* for --resolution/);

  const half = await run('data', 'from-video', video, '--out', out, '--latent', '--vae', vaeFile, '--resolution', '16', '--vae-dtype', 'float16', '--device', 'cpu');
  if (!vaeDtypeSupported('cpu', 'float16')) {
    assert.equal(half.code, 1);
    assert.match(half.err, /for --vae-dtype but received "float16"/);
  }
  const badDevice = await run('data', 'from-video', video, '--out', out, '--latent', '--vae', vaeFile, '--device', 'gpu');
  assert.equal(badDevice.code, 1);
  assert.match(badDevice.err, /--device/);

  // The environment variable stands in for --vae.
  process.env[VAE_ENV] = vaeFile;
  try {
    const viaEnv = await run('data', 'from-video', video, '--out', path.join(tmp, 'env'), '--latent', '--resolution', '8', '--fps', '10', '--chunk-size', '10', '--test-fraction', '0');
    assert.equal(viaEnv.code, 0, viaEnv.err);
    assert.deepEqual(VideoStore.open(path.join(tmp, 'env'), { dataRoot: null }).frameShape('train'), [4, 4, 4]);
  } finally {
    delete process.env[VAE_ENV];
  }
});
