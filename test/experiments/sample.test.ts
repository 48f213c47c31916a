import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { spawn } from 'node:child_process';
import { readNpy } from '../../src/data/npy.ts';
import { getEvalDataset } from '../../src/data/datasets.ts';
import { readPng } from '../../src/media/png.ts';
import { evalIdentifier, parseEvalIdentifier, samplePath } from '../../src/sampling/naming.ts';
import { runSampling } from '../../src/experiments/sample-run.ts';
import { claimOutput, claimPath } from '../../src/sampling/claims.ts';
import { main } from '../../src/cli/main.ts';
import { LpipsNet, lpipsEmbedder } from '../../src/metrics/lpips.ts';
import { saveTensors } from '../../src/nn/checkpoint.ts';
import { itemU8, makeBalls, makeCheckpoint, REPO, rmTmp, tmpDir } from './helpers.ts';

let dir = '';
let data = '';
let ckpt = '';
let results = '';
const fast = { sampler: 'ddpm', timestepRespacing: '2', device: 'cpu' } as const;
const id = 'autoreg_8_10_6_default_0_None_test'; // T omitted → the folder dataset's T = 10

before(async () => {
  dir = tmpDir('sample');
  data = await makeBalls(dir);
  ckpt = makeCheckpoint(dir, data);
  results = path.join(dir, 'results');
});
after(() => rmTmp(dir));

test('results naming round trip: identifier with the resolved T, model folder from the checkpoint path (§7.5, §10.3 #35)', async () => {
  const lines: string[] = [];
  const r = await runSampling({ ...fast, checkpoint: ckpt, stopIndex: 2, samplingScheme: 'autoreg', nObs: 6, batchSize: 2, resultsDir: results, log: (l) => lines.push(l) });
  assert.equal(r.identifier, id); // T omitted: the dataset's T is written, not "None"
  assert.equal(r.evalDir, path.join(results, 'run1', 'ema_0.9999_000010_ddpm_respace2', id));
  const f = parseEvalIdentifier(r.evalDir);
  assert.deepEqual(f, { scheme: 'autoreg', maxFrames: 8, T: 10, nObs: 6, evalDatasetConfig: 'default', lowerFrameRange: 0, upperFrameRange: null, evalOnTrain: false });
  assert.equal(evalIdentifier(f), id);
  assert.deepEqual(r.written, [0, 1]);
  const cfg = JSON.parse(fs.readFileSync(path.join(r.evalDir, 'model_config.json'), 'utf8'));
  assert.equal(cfg.dataset, data);
  assert.equal(cfg.max_frames, 8);
  assert.equal(cfg.timestep_respacing, '2');
  assert.equal(cfg.use_ddim, false);
  assert.equal(cfg.diffusion_space_kwargs.enable_decoding, true);
  assert.ok(fs.readFileSync(path.join(r.evalDir, 'model_config.json'), 'utf8').includes('\n    "dataset"')); // indent 4
});

test('sample files are T×3×H×W uint8 whose observed frames equal the ground truth exactly; finished samples are skipped', async () => {
  const evalDir = path.join(results, 'run1', 'ema_0.9999_000010_ddpm_respace2', id);
  const { dataset } = await getEvalDataset(data, { T: 10 });
  for (const i of [0, 1]) {
    const a = readNpy(samplePath(evalDir, i, 0));
    assert.equal(a.dtype, '|u1');
    assert.deepEqual(a.shape, [10, 3, 32, 32]);
    const gt = itemU8(dataset, i);
    const nObs = 6 * 3 * 32 * 32;
    assert.deepEqual(Array.from((a.data as Uint8Array).subarray(0, nObs)), Array.from(gt.subarray(0, nObs)));
  }
  const mtime = fs.statSync(samplePath(evalDir, 0, 0)).mtimeMs;
  const lines: string[] = [];
  const r = await runSampling({ ...fast, checkpoint: ckpt, stopIndex: 2, samplingScheme: 'autoreg', nObs: 6, resultsDir: results, log: (l) => lines.push(l) });
  assert.deepEqual(r.written, []);
  assert.deepEqual(r.existing, [0, 1]);
  assert.ok(lines.some((l) => l.startsWith('Nothing to do')), lines.join('\n'));
  assert.equal(fs.statSync(samplePath(evalDir, 0, 0)).mtimeMs, mtime);
  // A second seed (--sample-idx 1) is new work with different noise; the observed prefix is the same.
  const r2 = await runSampling({ ...fast, checkpoint: ckpt, startIndex: 1, stopIndex: 2, samplingScheme: 'autoreg', nObs: 6, sampleIdx: 1, resultsDir: results });
  assert.deepEqual(r2.written, [1]);
  const s0 = readNpy(samplePath(evalDir, 1, 0)).data as Uint8Array;
  const s1 = readNpy(samplePath(evalDir, 1, 1)).data as Uint8Array;
  assert.deepEqual(s0.subarray(0, 6 * 3072), s1.subarray(0, 6 * 3072));
  assert.notDeepEqual(s0.subarray(6 * 3072), s1.subarray(6 * 3072));
});

test('claims: a live claim blocks, a claim of a dead process is taken over, an existing output wins', () => {
  const out = path.join(dir, 'claims', 'x.npy');
  const c = claimOutput(out);
  assert.ok(typeof c === 'object');
  assert.equal(claimOutput(out), 'claimed'); // our own live pid holds it
  c.release();
  assert.ok(!fs.existsSync(claimPath(out)));
  fs.writeFileSync(claimPath(out), JSON.stringify({ pid: 2 ** 22 + 12345, host: os.hostname(), time: '' }));
  const c2 = claimOutput(out);
  assert.ok(typeof c2 === 'object', 'stale claim taken over');
  c2.release();
  fs.writeFileSync(out, 'done');
  assert.equal(claimOutput(out), 'exists');
});

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'src/cli/main.ts'), ...args], {
      cwd: REPO,
      env: { ...process.env, FLEXVID_THREADS: '1', FLEXVID_QUIET: '1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (stderr += b));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

test('two concurrent `flexvid sample` processes with overlapping shards produce every sample exactly once', async () => {
  const res = path.join(dir, 'results-concurrent');
  const common = [ckpt, '--sampling_scheme', 'autoreg', '--n-obs', '6', '--batch-size', '2', '--sampler', 'ddpm', '--timestep_respacing', '2', '--device', 'cpu', '--results-dir', res];
  const [a, b] = await Promise.all([runCli(['sample', ...common, '--start-index', '0', '--stop-index', '3']), runCli(['sample', ...common, '--start_index', '1', '--stop_index', '4'])]);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(b.code, 0, b.stderr);
  const written = (out: string) => {
    const m = /wrote \d+ samples to \S+ \(([\d, ]+)\)/.exec(out);
    return m ? m[1]!.split(', ').map(Number) : [];
  };
  const wa = written(a.stdout);
  const wb = written(b.stdout);
  assert.deepEqual([...wa, ...wb].sort((x, y) => x - y), [0, 1, 2, 3], `${a.stdout}\n${b.stdout}`);
  const evalDir = path.join(res, 'run1', 'ema_0.9999_000010_ddpm_respace2', id);
  const files = fs.readdirSync(path.join(evalDir, 'samples')).sort();
  assert.deepEqual(files, [0, 1, 2, 3].map((i) => `sample_000${i}-0.npy`)); // no claim or temp files left
  assert.ok(fs.existsSync(path.join(evalDir, 'model_config.json')));
  assert.ok(!fs.existsSync(path.join(evalDir, 'model_config.json.lock')));
});

test('--just-visualise writes only the schedule PNG', async () => {
  const res = path.join(dir, 'results-vis');
  const code = await main(['sample', ckpt, '--stop-index', '1', '--sampling-scheme', 'hierarchy-2', '--n-obs', '2', '--T', '8', '--max-frames', '4', '--just-visualise', '--results-dir', res, '--sampler', 'ddpm']);
  assert.equal(code, 0);
  const evalDir = path.join(res, 'run1', 'ema_0.9999_000010_ddpm', 'hierarchy-2_4_8_2_default_0_None_test');
  const png = readPng(path.join(evalDir, 'schedule.png'));
  assert.ok(png.width > 8 && png.height > 8);
  assert.ok(!fs.existsSync(path.join(evalDir, 'samples')));
  assert.ok(!fs.existsSync(path.join(evalDir, 'model_config.json')));
});

test('adaptive schemes: without LPIPS a clear error naming --lpips-weights; with an embedder they sample', async () => {
  const errs: string[] = [];
  const origWrite = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (errs.push(String(s)), true)) as typeof process.stderr.write;
  let code: number;
  try {
    code = await main(['sample', ckpt, '--stop-index', '1', '--sampling-scheme', 'adaptive-autoreg', '--n-obs', '4', '--results-dir', path.join(dir, 'results-adaptive'), '--lpips-weights', path.join(dir, 'missing-lpips.safetensors'), '--sampler', 'ddpm']);
  } finally {
    process.stderr.write = origWrite;
  }
  assert.equal(code, 1);
  assert.match(errs.join(''), /--lpips-weights/);
  assert.match(errs.join(''), /FLEXVID_LPIPS_WEIGHTS/);
  const r = await runSampling({
    ...fast,
    checkpoint: ckpt,
    stopIndex: 2,
    samplingScheme: 'adaptive-autoreg',
    nObs: 6,
    maxFrames: 8,
    maxLatentFrames: 4,
    resultsDir: path.join(dir, 'results-adaptive'),
    embedFrames: (frames) => Array.from(frames.mean([1, 2, 3]).toFloat32Array(), (v) => Float32Array.of(v)),
  });
  assert.deepEqual(r.written, [0, 1]);
  assert.equal(path.basename(r.evalDir), 'adaptive-autoreg_8_10_6_default_0_None_test');
});

test('adaptive-autoreg end to end with LPIPS: --lpips-weights FILE (random AlexNet/LPIPS weights) equals the embedder passed directly', async () => {
  const net = LpipsNet.random(0);
  const weights = path.join(dir, 'lpips-random.safetensors');
  saveTensors(weights, net.stateDict());
  const common = { ...fast, checkpoint: ckpt, stopIndex: 2, batchSize: 2, samplingScheme: 'adaptive-autoreg', nObs: 3, maxFrames: 6, maxLatentFrames: 3 } as const;
  const fromFile = await runSampling({ ...common, resultsDir: path.join(dir, 'results-lpips-file'), lpipsWeights: weights });
  const embedder = lpipsEmbedder(net);
  let calls = 0;
  const direct = await runSampling({
    ...common,
    resultsDir: path.join(dir, 'results-lpips-direct'),
    embedFrames: (frames) => (calls++, embedder.embed(frames)),
  });
  embedder.dispose();
  assert.ok(calls > 0, 'the adaptive scheme embeds frames');
  assert.deepEqual(fromFile.written, [0, 1]);
  assert.equal(path.basename(fromFile.evalDir), 'adaptive-autoreg_6_10_3_default_0_None_test');
  for (const i of [0, 1]) {
    const a = readNpy(samplePath(fromFile.evalDir, i, 0));
    assert.deepEqual(a.shape, [10, 3, 32, 32]);
    assert.deepEqual(a.data, readNpy(samplePath(direct.evalDir, i, 0)).data);
  }
  // The CLI passes --lpips-weights through.
  const res = path.join(dir, 'results-lpips-cli');
  const code = await main(['sample', ckpt, '--stop-index', '2', '--batch-size', '2', '--sampling-scheme', 'adaptive-autoreg', '--n-obs', '3', '--max-frames', '6', '--max-latent-frames', '3', '--sampler', 'ddpm', '--timestep-respacing', '2', '--device', 'cpu', '--results-dir', res, '--lpips-weights', weights, '--quiet']);
  assert.equal(code, 0);
  const cliDir = path.join(res, 'run1', 'ema_0.9999_000010_ddpm_respace2', 'adaptive-autoreg_6_10_3_default_0_None_test');
  assert.deepEqual(readNpy(samplePath(cliDir, 0, 0)).data, readNpy(samplePath(fromFile.evalDir, 0, 0)).data);
});

test('flag errors name the flag', async () => {
  await assert.rejects(runSampling({ ...fast, checkpoint: ckpt, stopIndex: 99, samplingScheme: 'autoreg', nObs: 4, resultsDir: results }), /--stop-index/);
  await assert.rejects(runSampling({ ...fast, checkpoint: ckpt, stopIndex: 1, samplingScheme: 'zigzag', resultsDir: results }), /--sampling-scheme/);
  await assert.rejects(runSampling({ ...fast, checkpoint: ckpt, stopIndex: 1, samplingScheme: 'autoreg', nObs: 11, resultsDir: results }), /--n-obs/);
  await assert.rejects(runSampling({ ...fast, checkpoint: ckpt, stopIndex: 1, samplingScheme: 'autoreg', nObs: 4, optimality: 'random-t', resultsDir: results }), /optimal_schedule\.json/);
});
