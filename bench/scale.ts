/**
 * Scale-out benchmark (issue 8): data-parallel training steps per second with 1 and 2 processes
 * on one machine, each process with one intra-op thread, over c10d (Gloo on CPU; NCCL with
 * `--device cuda` on a CUDA build). The step is the Balls training step of bench/model.ts
 * (32², ch 64, 1 res-block, T = 10) on a global batch of 4 split between the processes, plus the
 * bucketed gradient all-reduce (reported apart: `allreduce` = the collectives after a barrier,
 * `skew` = waiting at that barrier for the slower rank; PyTorch's DDP overlaps its all-reduce
 * with the backward pass, ours runs after it). When PyTorch is importable the same step runs under
 * DistributedDataParallel (bench/pytorch/scale_peer.py) right after ours, with the same number of
 * processes, so both see the same machine load.
 *
 * Usage: npm run bench -- scale [--config balls|small] [--batch 4] [--steps 5] [--nprocs 1,2] [--device cpu|cuda] [--no-pytorch]
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cudaAvailable, cudaDeviceCount, torchVersion } from '../src/engine/index.ts';
import { distributedInfo } from '../src/engine/distributed.ts';
import { launchLocalWorkers } from '../src/training/launch.ts';
import { findPython, median } from './lib/peer.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

function flag(args: string[], name: string, dflt: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
}

interface Row {
  case: string;
  ms: number;
  steps_per_s: number;
  allreduce_ms?: number;
  skew_ms?: number;
  speedup_vs_1proc?: number;
  pytorch_ms?: number;
  ratio_vs_pytorch?: number;
}

async function runRanks(nproc: number, command: string, args: string[], env: NodeJS.ProcessEnv): Promise<Record<string, unknown> | null> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-scale-'));
  const out = path.join(dir, 'result.json');
  try {
    const r = await launchLocalWorkers({ nproc, command, args: args.map((a) => (a === '$OUT' ? out : a)), env: { ...env, SCALE_OUT: out, FLEXVID_THREADS: '1', OMP_NUM_THREADS: '1', MKL_NUM_THREADS: '1' }, threadsPerWorker: 1 });
    if (r.code !== 0 || !fs.existsSync(out)) {
      process.stderr.write(`scale: ${path.basename(command)} with ${nproc} process(es) failed (exits ${r.exits.join(', ')})\n`);
      return null;
    }
    return JSON.parse(fs.readFileSync(out, 'utf8')) as Record<string, unknown>;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(args: string[]): Promise<void> {
  const config = flag(args, 'config', 'balls');
  const batch = Number(flag(args, 'batch', '4'));
  const steps = Number(flag(args, 'steps', '5'));
  const device = flag(args, 'device', 'cpu');
  let nprocs = flag(args, 'nprocs', '1,2').split(',').map(Number);
  if (!distributedInfo().gloo) {
    process.stderr.write(`scale: no c10d in this build (${distributedInfo().reason}); only 1 process\n`);
    nprocs = nprocs.filter((n) => n === 1);
  }
  if (device === 'cuda') {
    if (!cudaAvailable()) {
      console.log('scale benchmark: --device cuda skipped: this libtorch sees no CUDA device');
      console.log(JSON.stringify({ bench: 'scale', threads: 1, results: [], skipped: 'no CUDA device' }));
      return;
    }
    nprocs = nprocs.filter((n) => n === 1 || (n <= cudaDeviceCount() && distributedInfo().nccl));
  }
  const python = args.includes('--no-pytorch') ? null : findPython();
  const tsx = import.meta.resolve('tsx');
  const worker = path.join(here, 'lib', 'scale-worker.ts');
  const env = { SCALE_CONFIG: config, SCALE_BATCH: String(batch), SCALE_STEPS: String(steps), SCALE_DEVICE: device };
  const rows: Row[] = [];
  let torchV = '';
  let params = 0;
  for (const n of nprocs) {
    if (batch % n !== 0) continue;
    const ours = await runRanks(n, process.execPath, ['--import', tsx, worker], env);
    if (!ours) continue;
    params = Number(ours.params);
    const ms = median(ours.ms as number[]);
    const row: Row = { case: `${config}-${device}-${n}proc`, ms: Math.round(ms), steps_per_s: Number((1000 / ms).toFixed(3)) };
    if (n > 1) {
      row.allreduce_ms = Number(median(ours.allreduceMs as number[]).toFixed(1));
      row.skew_ms = Number(median(ours.skewMs as number[]).toFixed(1));
    }
    if (python) {
      const theirs = await runRanks(n, python, [path.join(here, 'pytorch', 'scale_peer.py'), '--config', config, '--batch', String(batch), '--steps', String(steps), '--device', device, '--threads', '1', '--out', '$OUT'], {});
      if (theirs) {
        torchV = String(theirs.torch);
        row.pytorch_ms = Math.round(median(theirs.ms as number[]));
        row.ratio_vs_pytorch = Number((ms / median(theirs.ms as number[])).toFixed(3));
      }
    }
    rows.push(row);
    process.stderr.write(`${row.case}: ${row.ms} ms/step, ${row.steps_per_s} steps/s${row.pytorch_ms ? ` (PyTorch DDP ${row.pytorch_ms} ms)` : ''}\n`);
  }
  const base = rows.find((r) => r.case.endsWith('-1proc'));
  for (const r of rows) if (base) r.speedup_vs_1proc = Number((base.ms / r.ms).toFixed(3));
  console.log(
    `scale benchmark — ${config} config (${(params / 1e6).toFixed(2)}M parameters), global batch ${batch}, 1 thread per process, ${device}, ` +
      `libtorch ${torchVersion()}${torchV ? `, PyTorch DDP peer ${torchV}` : ', no PyTorch peer'}; ${os.availableParallelism()} cores, load ${os.loadavg()[0]!.toFixed(1)}`,
  );
  console.log(`${'case'.padEnd(20)} ${'ms/step'.padStart(8)} ${'steps/s'.padStart(8)} ${'allreduce'.padStart(9)} ${'skew'.padStart(7)} ${'speedup'.padStart(8)} ${'PyTorch'.padStart(8)} ${'ratio'.padStart(6)}`);
  for (const r of rows) {
    console.log(
      `${r.case.padEnd(20)} ${String(r.ms).padStart(8)} ${String(r.steps_per_s).padStart(8)} ${String(r.allreduce_ms ?? '-').padStart(9)} ${String(r.skew_ms ?? '-').padStart(7)} ${String(r.speedup_vs_1proc ?? '-').padStart(8)} ${String(r.pytorch_ms ?? '-').padStart(8)} ${String(r.ratio_vs_pytorch ?? '-').padStart(6)}`,
    );
  }
  console.log(JSON.stringify({ bench: 'scale', threads: 1, results: rows }));
}
