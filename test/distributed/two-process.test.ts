/**
 * Data-parallel training over c10d (Gloo, loopback only): two processes on a split global batch
 * end with the parameters of one process on the whole batch; `flexvid train --nproc 2` writes
 * from rank 0 only and refuses a resume with another number of processes; the launcher stops
 * the other ranks when one fails; launcher environments are read as torchrun and SLURM set them.
 * Children run with one intra-op thread each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaAvailable, cudaDeviceCount } from '../../src/engine/index.ts';
import { allGatherObjects, anyRank, distributedAvailable, distributedInfo, firstHost, launchEnv, planBuckets } from '../../src/engine/distributed.ts';
import { freePort, launchLocalWorkers } from '../../src/training/launch.ts';
import { train } from '../../src/training/loop.ts';
import { resolveTrainOptions } from '../../src/training/options.ts';
import { completeCheckpointSteps } from '../../src/training/checkpoint.ts';
import { OptionError } from '../../src/util/errors.ts';
import { tinyBalls } from '../training/helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');
const tsx = import.meta.resolve('tsx');
const noGloo = distributedAvailable() ? false : `no c10d Gloo in this build: ${distributedInfo().reason}`;

interface Exit {
  code: number | null;
  output: string;
}

function run(args: string[], env: NodeJS.ProcessEnv): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', tsx, ...args], { cwd: root, env: { ...process.env, FLEXVID_THREADS: '1', ...env } });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function readF32(file: string): Float32Array {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('launcher environments: torchrun-style variables, SLURM fallback, none', () => {
  assert.equal(launchEnv({}), null);
  assert.equal(launchEnv({ WORLD_SIZE: '1', RANK: '0' }), null, 'a world of one is no job');
  assert.deepEqual(launchEnv({ WORLD_SIZE: '4', RANK: '3', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: 'node7', MASTER_PORT: '29555' }), {
    rank: 3,
    worldSize: 4,
    localRank: 1,
    localWorldSize: 2,
    masterAddr: 'node7',
    masterPort: 29555,
    source: 'env',
  });
  const srun = { SLURM_JOB_ID: '4242', SLURM_NTASKS: '8', SLURM_STEP_NUM_TASKS: '8', SLURM_PROCID: '5', SLURM_LOCALID: '1', SLURM_STEP_TASKS_PER_NODE: '4(x2)', SLURM_STEP_NODELIST: 'gpu[07-08]' };
  assert.deepEqual(launchEnv(srun), { rank: 5, worldSize: 8, localRank: 1, localWorldSize: 4, masterAddr: 'gpu07', masterPort: 24242, source: 'slurm' });
  assert.equal(launchEnv({ ...srun, MASTER_ADDR: 'login1', MASTER_PORT: '29400' })!.masterAddr, 'login1');
  assert.equal(launchEnv({ SLURM_NTASKS: '8', SLURM_PROCID: '0' }), null, 'the batch script itself (no srun step) is no job');
  assert.equal(launchEnv({ ...srun, WORLD_SIZE: '2', RANK: '1' })!.worldSize, 2, 'WORLD_SIZE/RANK take precedence');
  assert.deepEqual(['gpu[01-04,07],cpu3', 'node7', 'a1,b2', 'x[3]', ''].map(firstHost), ['gpu01', 'node7', 'a1', 'x3', null]);
  assert.throws(() => launchEnv({ WORLD_SIZE: '2' }), /RANK is not set/);
  assert.throws(() => launchEnv({ WORLD_SIZE: '2', RANK: '2' }), /not below the world size/);
});

test('gradient buckets: ~bucketBytes each, in order, never mixing dtypes', () => {
  const f = (numel: number, dtype: 'float32' | 'float64' = 'float32') => ({ numel, dtype, device: 'cpu' });
  // 100-byte buckets: 10 + 10 floats fit (80 bytes), the third would overflow; a large tensor gets its own
  assert.deepEqual(planBuckets([f(10), f(10), f(10), f(100), f(1), f(1, 'float64'), f(1, 'float64')], 100), [[0, 1], [2], [3], [4], [5, 6]]);
  assert.deepEqual(planBuckets([], 100), []);
  // one process: collectives are the identity
  assert.deepEqual(allGatherObjects({ a: 1 }), [{ a: 1 }]);
  assert.equal(anyRank(true), true);
});

test('two Gloo processes on a split global batch end with the parameters of one process on the whole batch', { skip: noGloo }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-dp-'));
  const worker = path.join(here, 'dp-worker.ts');
  const single = await run([worker], { OUT: path.join(dir, 'single') });
  assert.equal(single.code, 0, single.output);
  const port = String(await freePort());
  const env = (rank: number) => ({ OUT: path.join(dir, 'dp'), RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port });
  const [r0, r1] = await Promise.all([run([worker], env(0)), run([worker], env(1))]);
  assert.equal(r0.code, 0, r0.output);
  assert.equal(r1.code, 0, r1.output);
  for (const opt of ['sgd', 'adamw']) {
    const one = readF32(path.join(dir, `single.${opt}.rank0`));
    const a = readF32(path.join(dir, `dp.${opt}.rank0`));
    const b = readF32(path.join(dir, `dp.${opt}.rank1`));
    assert.ok(one.length > 100_000);
    assert.equal(maxAbsDiff(a, b), 0, `${opt}: both ranks hold identical parameters`);
    const d = maxAbsDiff(one, a);
    assert.ok(d < 1e-5, `${opt}: two processes vs one differ by ${d}`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test('flexvid train --nproc 2: rank 0 alone writes; resuming with another number of processes is refused', { skip: noGloo }, async () => {
  const data = await tinyBalls();
  const ckpt = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-dp-ckpt-'));
  // prettier-ignore
  const common = ['--dataset', `streaming_${data}`, '--T', '4', '--max-frames', '4', '--num-channels', '32', '--num-res-blocks', '1', '--num-heads', '2',
    '--batch-size', '2', '--diffusion-steps', '100', '--log-interval', '1', '--save-interval', '1000', '--sample-interval', '100000', '--num-workers', '0',
    '--checkpoints-dir', ckpt, '--n-sample-stm', '1', '--ltm-size', '50', '--quiet'];
  const main = path.join(root, 'src', 'cli', 'main.ts');
  const r = await run([main, 'train', ...common, '--max-steps', '2', '--nproc', '2', '--run-id', 'dp'], {});
  assert.equal(r.code, 0, r.output);
  const runDir = path.join(ckpt, 'dp');
  // one writer: one metrics line per flush, one checkpoint set per save, nothing unexpected
  const lines = fs.readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines.map((l) => l.step), [0, 1, 2], 'each flush written once');
  assert.equal(lines[0]!.world_size, 2);
  assert.deepEqual(completeCheckpointSteps(runDir), [0, 2]);
  const files = fs.readdirSync(runDir).sort();
  assert.deepEqual(files.filter((f) => !/^(model|ema_0\.9999_|opt|state)00000[02]\.(safetensors|json)$/.test(f)), ['config.json', 'metrics.jsonl', 'samples', 'status.json']);
  assert.equal(JSON.parse(fs.readFileSync(path.join(runDir, 'config.json'), 'utf8')).worldSize, 2);
  const state = JSON.parse(fs.readFileSync(path.join(runDir, 'state000002.json'), 'utf8')) as { worldSize: number; ranks: { samplerBefore: { config: { rank: number; localBatch: number } } }[] };
  assert.equal(state.worldSize, 2);
  assert.deepEqual(state.ranks.map((s) => [s.samplerBefore.config.rank, s.samplerBefore.config.localBatch]), [[0, 1], [1, 1]], 'each rank draws its half of the global batch');
  assert.equal(JSON.parse(fs.readFileSync(path.join(runDir, 'status.json'), 'utf8')).status, 'finished');

  // resume in one process (the loop's check) and with 4 processes (the launcher's check, before anything starts)
  const o = resolveTrainOptions([{ dataset: `streaming_${data}`, T: 4, maxFrames: 4, numChannels: 32, numResBlocks: 1, numHeads: 2, batchSize: 2, diffusionSteps: 100, numWorkers: 0, checkpointsDir: ckpt, nSampleStm: 1, ltmSize: 50, resumeId: 'dp', maxSteps: 3, threads: 1 }]);
  await assert.rejects(train(o), (e: unknown) => e instanceof OptionError && /--nproc/.test(e.message) && /trained with 2 processes/.test(e.message));
  const r4 = await run([main, 'train', ...common, '--batch-size', '4', '--max-steps', '3', '--nproc', '4', '--resume-id', 'dp'], {});
  assert.equal(r4.code, 1, r4.output);
  assert.match(r4.output, /--nproc/);
  assert.match(r4.output, /resume it with --nproc 2/);
  assert.deepEqual(completeCheckpointSteps(runDir), [0, 2], 'refused resumes leave the run untouched');
  fs.rmSync(ckpt, { recursive: true, force: true });
});

test('the launcher stops the other ranks when one fails and reports its exit code', async () => {
  const script = "if (process.env.RANK === '1') process.exit(3); setTimeout(() => {}, 60000);";
  const t0 = Date.now();
  const r = await launchLocalWorkers({ nproc: 2, command: process.execPath, args: ['-e', script], stdio: 'ignore' });
  assert.equal(r.code, 3);
  assert.equal(r.exits[1], 3);
  assert.equal(r.exits[0], 'SIGTERM');
  assert.ok(Date.now() - t0 < 30_000);
});

test('NCCL all-reduce across two processes (needs a CUDA libtorch built with FLEXVID_NCCL=1 and two GPUs)', {
  skip: !cudaAvailable() ? 'no CUDA device' : !distributedInfo().nccl ? 'addon built without NCCL' : cudaDeviceCount() < 2 ? 'NCCL needs one GPU per rank; this machine has one' : false,
}, async () => {
  const port = String(await freePort());
  const code = `
    import { tensor } from './src/engine/index.ts';
    import { initDistributed, allReduce, destroyDistributed, rank } from './src/engine/distributed.ts';
    initDistributed({ rank: Number(process.env.RANK), worldSize: 2, masterPort: Number(process.env.MASTER_PORT), backend: 'nccl', timeoutMs: 60000 });
    const t = tensor([rank() + 1, 10], { device: 'cuda:' + rank() });
    allReduce([t]);
    if (t.toArray().join(',') !== '3,20') process.exit(5);
    destroyDistributed();`;
  const file = path.join(root, `.nccl-check-${process.pid}.ts`);
  fs.writeFileSync(file, code);
  try {
    const env = (rank: number) => ({ RANK: String(rank), WORLD_SIZE: '2', MASTER_PORT: port });
    const [a, b] = await Promise.all([run([file], env(0)), run([file], env(1))]);
    assert.equal(a.code, 0, a.output);
    assert.equal(b.code, 0, b.output);
  } finally {
    fs.rmSync(file, { force: true });
  }
});
