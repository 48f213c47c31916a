/**
 * `flexvid fvd` / `flexvid kvd` on a tiny results folder (REFERENCE_SPEC §8.2, §8.3) with a
 * random-weight miniature I3D (hidden `--i3d-random SEED/DIV`): identical real and generated
 * videos give FVD ≈ 0, KVD equals the MMD of the cached features, existing files are reported and
 * not recomputed, the feature cache is reused, and errors (missing weights, wrong shapes, too few
 * samples) say what is wrong.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../../src/cli/main.ts';
import { writeNpy } from '../../src/data/npy.ts';
import { loadTensors } from '../../src/nn/checkpoint.ts';
import { evaluateVideoMetrics, modelToU8 } from '../../src/metrics/fvd-eval.ts';
import { FVD_ROUND_TRIP_TABLE } from '../../src/metrics/fvd-input.ts';
import { kvdFromFeatures } from '../../src/metrics/mmd.ts';
import { readMetricFile } from '../../src/metrics/results.ts';
import { I3D } from '../../src/metrics/i3d.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-fvd-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

const T = 6; // shorter than I3D's 9 frames: exercises the time padding
const H = 16;
const N = 4;

/** Levels on which the dataset's float mapping and the samples' round trip agree (most of them). */
const AGREE = Array.from({ length: 256 }, (_, v) => v).filter((v) => modelToU8(Math.fround(2 * (v / 255) - 1)) === FVD_ROUND_TRIP_TABLE[v]);

/** A uint8 dataset folder (family npy: default eval view = Chunked windows of T frames). */
function makeDataset(root: string): Uint8Array[] {
  fs.mkdirSync(path.join(root, 'train/0'), { recursive: true });
  fs.mkdirSync(path.join(root, 'test/0'), { recursive: true });
  fs.writeFileSync(path.join(root, 'config.json'), JSON.stringify({ T_total: 30, chunk_size: 30, resolution: H, seed: 0, dtype: 'uint8' }));
  let s = 12345;
  const rnd = () => (s = (Math.imul(1103515245, s) + 12345) >>> 0) / 2 ** 32;
  const chunk = (split: string) => {
    const data = Uint8Array.from({ length: 30 * H * H * 3 }, () => AGREE[Math.floor(rnd() * AGREE.length)]!);
    writeNpy(path.join(root, split, '0', '0.npy'), { dtype: '|u1', shape: [30, H, H, 3], data });
    return data;
  };
  chunk('train');
  const test = chunk('test');
  // Window i = frames [i·T, (i+1)·T) of the test stream, as [T, 3, H, W].
  return Array.from({ length: N + 1 }, (_, i) => {
    const v = new Uint8Array(T * 3 * H * H);
    for (let t = 0; t < T; t++)
      for (let y = 0; y < H; y++)
        for (let x = 0; x < H; x++)
          for (let c = 0; c < 3; c++) v[((t * 3 + c) * H + y) * H + x] = test[(((i * T + t) * H + y) * H + x) * 3 + c]!;
    return v;
  });
}

const dataset = path.join(tmp, 'datasets', 'tiny');
const windows = makeDataset(dataset);
const evalDir = path.join(tmp, 'results', 'run1', `ema_0.9999_000100_heun`, `autoreg_4_${T}_2_default_0_None_test`);
fs.mkdirSync(path.join(evalDir, 'samples'), { recursive: true });
fs.writeFileSync(path.join(evalDir, 'model_config.json'), JSON.stringify({ dataset, T, max_frames: 4, image_size: H }));
for (let i = 0; i < N; i++) {
  writeNpy(path.join(evalDir, 'samples', `sample_${String(i).padStart(4, '0')}-0.npy`), { dtype: '|u1', shape: [T, 3, H, H], data: windows[i]! });
}

/** Run the CLI in-process, capturing stdout and stderr. */
async function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  // Only strings are captured: the test runner's own (binary) reports must pass through.
  process.stdout.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? (out.push(s), true) : ow(s, ...rest))) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array, ...rest: never[]) => (typeof s === 'string' ? (err.push(s), true) : ew(s, ...rest))) as typeof process.stderr.write;
  try {
    const code = await main(args);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    process.stdout.write = ow;
    process.stderr.write = ew;
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function features(file: string): Float32Array {
  const { tensors } = loadTensors(file);
  const t = tensors.get('features')!;
  const a = t.toFloat32Array();
  t.dispose();
  return a;
}

test('fvd --kvd on identical real and generated videos: FVD ≈ 0, KVD = MMD of the features', async () => {
  const r = await cli(['fvd', '--eval-dir', evalDir, '--i3d-random', '3/16', '--batch-size', '3', '--kvd', '--quiet']);
  assert.equal(r.code, 0, r.err);
  const fvdFile = path.join(evalDir, `fvd-${N}-0.txt`);
  const kvdFile = path.join(evalDir, `kvd-${N}-0.txt`);
  assert.match(fs.readFileSync(fvdFile, 'utf8'), /^-?\d\.\d{18}e[+-]\d\d\n$/);
  assert.match(r.out, new RegExp(`^fvd \\S+ \\(${fvdFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)\\nkvd `));
  const real = features(path.join(evalDir, 'features', `i3d-real-${N}.safetensors`));
  const gen = features(path.join(evalDir, 'features', `i3d-generated-${N}-0.safetensors`));
  assert.equal(real.length, N * 400);
  assert.deepEqual(real, gen); // same pixels, same network, batch 3 + 1 for both
  // tr Σ of the features sets the scale; with N ≪ 400 the covariance is rank-deficient and the
  // square-root term is only known to ~1e-6 relative (docs/metrics.md).
  let trace = 0;
  for (let j = 0; j < 400; j++) {
    let m = 0;
    for (let i = 0; i < N; i++) m += real[i * 400 + j]! / N;
    for (let i = 0; i < N; i++) trace += (real[i * 400 + j]! - m) ** 2 / (N - 1);
  }
  const fvd = readMetricFile(fvdFile);
  assert.ok(trace > 1e-3 && Math.abs(fvd) < 1e-5 * trace, `fvd ${fvd}, tr Σ ${trace}`);
  const rows = { data: Float64Array.from(real), n: N, d: 400 };
  assert.equal(readMetricFile(kvdFile), kvdFromFeatures(rows, rows));

  // The features do not depend on the batch: a second network pass with batch 1 agrees.
  const net = I3D.random(3, { widthDivisor: 16 });
  try {
    const again = await evaluateVideoMetrics({ evalDir, metrics: ['fvd'], numVideos: 3, batchSize: 1, network: () => net });
    const direct = readMetricFile(path.join(evalDir, 'fvd-3-0.txt'));
    assert.equal(again.fvd!.value, direct);
    assert.deepEqual(again.features, { real: 'computed', generated: 'computed' });
  } finally {
    net.dispose();
  }
});

test('existing results are printed, not recomputed; kvd reuses cached features', async () => {
  const fvdFile = path.join(evalDir, `fvd-${N}-0.txt`);
  const before = fs.statSync(fvdFile).mtimeMs;
  const r = await cli(['fvd', '--eval_dir', evalDir, '--i3d-random', '3/16', '--quiet']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /already computed/);
  assert.equal(fs.statSync(fvdFile).mtimeMs, before);

  fs.rmSync(path.join(evalDir, `kvd-${N}-0.txt`));
  const res = await evaluateVideoMetrics({
    evalDir,
    metrics: ['fvd', 'kvd'],
    network: () => {
      throw new Error('the network must not be needed');
    },
    networkId: 'random:3/16:tfhub',
  });
  assert.equal(res.fvd!.existed, true);
  assert.equal(res.kvd!.existed, false);
  assert.deepEqual(res.features, { real: 'cache', generated: 'cache' });
  const k = await cli(['kvd', '--eval-dir', evalDir, '--i3d-random', '3/16', '--quiet']);
  assert.equal(k.code, 0, k.err);
  assert.match(k.out, /^kvd .*already computed/);
});

test('errors: missing weights, too few samples, mismatched shapes', async () => {
  const cwd = process.cwd();
  process.chdir(tmp);
  try {
    const r = await cli(['fvd', '--eval-dir', evalDir, '--num-videos', '2'], { FLEXVID_I3D_WEIGHTS: undefined });
    assert.equal(r.code, 1);
    assert.match(r.err, /No I3D weights found/);
    assert.match(r.err, /i3d_pretrained_400\.pt/);
    assert.match(r.err, /put it at weights\/i3d_pretrained_400\.pt/);
    const bad = await cli(['fvd', '--eval-dir', evalDir, '--num-videos', '2', '--i3d-weights', 'missing.pt', '--no-cache']);
    assert.equal(bad.code, 1);
    assert.match(bad.err, /missing\.pt \(from --i3d-weights\) does not exist/);
    // Existing results print without any weights.
    const done = await cli(['fvd', '--eval-dir', evalDir, '--kvd'], { FLEXVID_I3D_WEIGHTS: undefined });
    assert.equal(done.code, 0, done.err);
    assert.match(done.out, /^fvd .*already computed\)\nkvd .*already computed\)\n$/);
  } finally {
    process.chdir(cwd);
  }
  const few = await cli(['fvd', '--eval-dir', evalDir, '--num-videos', '9', '--i3d-random', '1/16', '--quiet']);
  assert.equal(few.code, 1);
  assert.match(few.err, /sample_0004-0\.npy: missing: --num-videos 9 needs sample files 0…8 \(found 4\)/);
  const none = await cli(['kvd', '--eval-dir', evalDir, '--sample-idx', '5', '--i3d-random', '1/16', '--quiet']);
  assert.equal(none.code, 1);
  assert.match(none.err, /at least 2 videos \(found 0/);

  // Generated videos of another size than the dataset's.
  writeNpy(path.join(evalDir, 'samples', 'sample_0000-2.npy'), { dtype: '|u1', shape: [T, 3, 8, 8], data: new Uint8Array(T * 3 * 64) });
  writeNpy(path.join(evalDir, 'samples', 'sample_0001-2.npy'), { dtype: '|u1', shape: [T, 3, 8, 8], data: new Uint8Array(T * 3 * 64) });
  const shape = await cli(['fvd', '--eval-dir', evalDir, '--sample-idx', '2', '--i3d-random', '1/16', '--quiet']);
  assert.equal(shape.code, 1);
  assert.match(shape.err, /generated video shape \[6, 3, 8, 8\] differs from the real videos' \[6, 3, 16, 16\]/);
});
