/**
 * Engine benchmark (issue 2): training steps timed in flexvid and, in the same run, in PyTorch
 * (bench/pytorch/engine_peer.py, when `python3 -c 'import torch'` works), at 1 and 2 threads.
 *
 * Cases (each step = zero grads, forward, backward, AdamW step):
 * - `conv`: two 64→64 3×3 convolutions (SiLU between) on x `[20, 64, 32, 32]`;
 * - `attn-temporal`: 4-head self-attention (qkv projection, softmax(qkᵀ/√d)v, output projection)
 *   over 2560 sequences of 10 tokens × 128 channels;
 * - `attn-spatial`: the same over 20 sequences of 256 tokens.
 *
 * Usage: npm run bench -- engine [--threads 1,2] [--reps 10] [--warmup 3] [--cases conv,attn-temporal,attn-spatial] [--no-pytorch]
 * flexvid and PyTorch steps alternate (PyTorch runs in a persistent `engine_peer.py --serve` process), so
 * both see the same machine load; the ratio is the median of the per-step ratios, and the
 * best-of ratio compares the fastest step of each (least sensitive to other load on the machine).
 * Prints a table, then one JSON line `{"bench","threads","results":[{case,threads,ms,gflops,pytorch_ms?,ratio_vs_pytorch?,ratio_best?}]}`.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as E from '../src/engine/index.ts';
import { AdamW } from '../src/nn/index.ts';
import { findPython, median, Peer } from './lib/peer.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

interface Case {
  name: string;
  /** Floating-point operations of one training step (matmul/conv work only). */
  flops: number;
  /** Build the tensors and return a step function and a disposer. */
  setup(): { step(): void; dispose(): void };
}

function param(shape: number[], g: E.Generator, scale: number): E.Tensor {
  return E.tidy(() => E.keep(E.randn(shape, g).mul(scale).requiresGrad_()));
}

/** Two 64→64 3×3 convolutions on [20, 64, 32, 32]. */
const convCase: Case = {
  name: 'conv',
  // forward 2 convs; backward: conv2 dX + dW, conv1 dW (x needs no gradient)
  flops: 5 * 2 * 20 * 64 * 32 * 32 * 64 * 9,
  setup() {
    const g = new E.Generator(0);
    const x = E.keep(E.randn([20, 64, 32, 32], g));
    const ps = [param([64, 64, 3, 3], g, 0.04), param([64], g, 0.01), param([64, 64, 3, 3], g, 0.04), param([64], g, 0.01)];
    const [w1, b1, w2, b2] = ps as [E.Tensor, E.Tensor, E.Tensor, E.Tensor];
    const opt = new AdamW(ps, { lr: 1e-4, weightDecay: 0 });
    return {
      step() {
        opt.zeroGrad();
        E.tidy(() => {
          const h = E.conv2d(x, w1, b1, { padding: 1 }).silu();
          const y = E.conv2d(h, w2, b2, { padding: 1 });
          y.square().mean().backward();
        });
        opt.step();
      },
      dispose() {
        opt.dispose();
        E.disposeAll([x, ps]);
      },
    };
  },
};

/** Multi-head self-attention y = Wo · attention(split(Wqkv x)) over x `[B, L, C]`. */
function attention(x: E.Tensor, wqkv: E.Tensor, bqkv: E.Tensor, wo: E.Tensor, bo: E.Tensor, heads: number): E.Tensor {
  const [B, L, C] = x.shape as [number, number, number];
  const qkv = E.linear(x, wqkv, bqkv).reshape([B, L, 3, heads, C / heads]).permute([2, 0, 3, 1, 4]);
  const [q, k, v] = qkv.unbind(0) as [E.Tensor, E.Tensor, E.Tensor];
  const o = E.scaledDotProductAttention(q, k, v).transpose(1, 2).reshape([B, L, C]);
  return E.linear(o, wo, bo);
}

function attentionCase(name: string, B: number, L: number, C = 128, heads = 4): Case {
  const d = C / heads;
  return {
    name,
    // qkv: fwd + dW; QKᵀ and AV: fwd 2, bwd 4; output projection: fwd + dX + dW
    flops: 2 * (2 * B * L * C * 3 * C) + 6 * (2 * B * heads * L * L * d) + 3 * (2 * B * L * C * C),
    setup() {
      const g = new E.Generator(1);
      const x = E.keep(E.randn([B, L, C], g));
      const ps = [param([3 * C, C], g, 1 / Math.sqrt(C)), param([3 * C], g, 0.01), param([C, C], g, 1 / Math.sqrt(C)), param([C], g, 0.01)];
      const [wqkv, bqkv, wo, bo] = ps as [E.Tensor, E.Tensor, E.Tensor, E.Tensor];
      const opt = new AdamW(ps, { lr: 1e-4, weightDecay: 0 });
      return {
        step() {
          opt.zeroGrad();
          E.tidy(() => attention(x, wqkv, bqkv, wo, bo, heads).square().mean().backward());
          opt.step();
        },
        dispose() {
          opt.dispose();
          E.disposeAll([x, ps]);
        },
      };
    },
  };
}

const CASES: Case[] = [convCase, attentionCase('attn-temporal', 2560, 10), attentionCase('attn-spatial', 20, 256)];

interface Row {
  case: string;
  threads: number;
  ms: number;
  gflops: number;
  pytorch_ms?: number;
  ratio_vs_pytorch?: number;
  /** min(flexvid ms) / min(PyTorch ms): the least load-sensitive comparison on a busy machine. */
  ratio_best?: number;
}

/**
 * Time one case: warm-up, then `reps` rounds that each run one flexvid step and (with a peer) one
 * PyTorch step back to back, so both see the same machine load. ms = median; ratio = median of
 * the per-round ratios.
 */
async function timeCase(c: Case, threads: number, reps: number, warmup: number, peer: Peer | null): Promise<Row> {
  const { step, dispose } = c.setup();
  try {
    if (peer) await peer.request({ cmd: 'setup', case: c.name });
    for (let i = 0; i < warmup; i++) {
      step();
      if (peer) await peer.request({ cmd: 'step' });
    }
    const ours: number[] = [];
    const theirs: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t0 = performance.now();
      step();
      ours.push(performance.now() - t0);
      if (peer) theirs.push((await peer.request({ cmd: 'step' })).ms as number);
    }
    const ms = median(ours);
    const row: Row = { case: c.name, threads, ms: round(ms), gflops: round(c.flops / ms / 1e6) };
    if (peer) {
      row.pytorch_ms = round(median(theirs));
      row.ratio_vs_pytorch = round(median(ours.map((o, i) => o / theirs[i]!)), 3);
      row.ratio_best = round(Math.min(...ours) / Math.min(...theirs), 3);
    }
    return row;
  } finally {
    dispose();
  }
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`--${name}=`));
  return eq?.slice(name.length + 3);
}

export async function run(args: string[]): Promise<void> {
  const threadsList = (option(args, 'threads') ?? '1,2').split(',').map(Number);
  const reps = Number(option(args, 'reps') ?? 10);
  const warmup = Number(option(args, 'warmup') ?? 3);
  const wanted = (option(args, 'cases') ?? CASES.map((c) => c.name).join(',')).split(',');
  const cases = CASES.filter((c) => wanted.includes(c.name));
  const unknown = wanted.filter((w) => !CASES.some((c) => c.name === w));
  if (unknown.length) throw new Error(`unknown case(s) ${unknown.join(', ')}; available: ${CASES.map((c) => c.name).join(', ')}`);
  const python = args.includes('--no-pytorch') ? null : findPython();

  console.log(`flexvid engine benchmark — libtorch ${E.torchVersion()}; median of ${reps} steps after ${warmup} warm-up`);
  const results: Row[] = [];
  const previous = E.getNumThreads();
  try {
    for (const threads of threadsList) {
      E.setNumThreads(threads);
      let peer: Peer | null = null;
      if (python) {
        peer = new Peer(python, path.join(here, 'pytorch', 'engine_peer.py'), threads);
        try {
          const hello = await peer.next();
          if (threads === threadsList[0]) console.log(`PyTorch peer: ${python} bench/pytorch/engine_peer.py (torch ${hello.torch}), steps alternating with flexvid's`);
        } catch (e) {
          console.log(`PyTorch peer failed: ${(e as Error).message}`);
          peer = null;
        }
      } else if (threads === threadsList[0]) {
        console.log('PyTorch peer: not run (no python3 that can import torch, or --no-pytorch)');
      }
      try {
        for (const c of cases) results.push(await timeCase(c, threads, reps, warmup, peer));
      } finally {
        peer?.close();
      }
    }
  } finally {
    E.setNumThreads(previous);
  }

  const header = ['case', 'threads', 'ms/step', 'GFLOP/s', 'PyTorch ms', 'ratio', 'best-of ratio'];
  const rows = results.map((r) => [
    r.case,
    String(r.threads),
    r.ms.toFixed(1),
    r.gflops.toFixed(1),
    r.pytorch_ms?.toFixed(1) ?? '—',
    r.ratio_vs_pytorch?.toFixed(3) ?? '—',
    r.ratio_best?.toFixed(3) ?? '—',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  console.log('');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
  console.log('');
  console.log(JSON.stringify({ bench: 'engine', threads: threadsList, results }));
}

function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
