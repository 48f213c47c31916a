/**
 * LPIPS (Zhang et al. 2018; AlexNet backbone, v0.1 linear weights) as an *embedding*: the frame
 * embedder of the adaptive sampling schemes (REFERENCE_SPEC §7.3, "LPIPS embedding").
 *
 * For a frame x in [-1, 1]: `x' = (x − shift)/scale` (LPIPS's ScalingLayer), AlexNet `features`
 * up to each of its five ReLUs (conv1 11×11/4 pad 2 → ReLU | maxpool 3/2 → conv2 5×5 pad 2 → ReLU |
 * maxpool 3/2 → conv3 → ReLU | conv4 → ReLU | conv5 → ReLU, 3×3 pad 1), and per layer ℓ with
 * `C_ℓ × H_ℓ × W_ℓ` features:
 *
 *   e_ℓ = √w_ℓ[c] · f / (‖f‖₂ over channels + 1e-10) / √(H_ℓ W_ℓ)      (flattened, concatenated)
 *
 * so `‖e(x) − e(y)‖² = Σ_ℓ mean_{h,w} Σ_c w_ℓ[c] (f̂_ℓ(x) − f̂_ℓ(y))²` — the LPIPS distance.
 * (Negative linear weights, which trained LPIPS never has, are clamped to 0.)
 *
 * Weights: torchvision AlexNet `features.{0,3,6,8,10}.{weight,bias}` plus LPIPS
 * `lin{0..4}.model.1.weight` (`[1, C, 1, 1]`), from one or more files (safetensors or torch.save zip);
 * the lpips package's own names (`net.slice{k}.{i}.*`, `scaling_layer.*`) are accepted too.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  cat,
  conv2d,
  Generator,
  inferenceMode,
  maxPool2d,
  randn,
  rand,
  tensor,
  zeros,
  type Tensor,
} from '../engine/index.ts';
import { Module, StateDictError } from '../nn/module.ts';
import { FlexvidError, OptionError } from '../util/errors.ts';
import { disposeWeights, readWeightFile } from './weights-file.ts';

/** Channels of the five AlexNet ReLU layers LPIPS uses. */
export const LPIPS_CHANNELS = [64, 192, 384, 256, 256] as const;
/** LPIPS ScalingLayer: `(x − shift) / scale` per RGB channel. */
export const LPIPS_SHIFT = [-0.03, -0.088, -0.188] as const;
export const LPIPS_SCALE = [0.458, 0.448, 0.45] as const;

/** AlexNet `features` convolutions: index in `features`, in/out channels, kernel, stride, padding. */
const CONVS = [
  { idx: 0, inC: 3, outC: 64, k: 11, stride: 4, pad: 2 },
  { idx: 3, inC: 64, outC: 192, k: 5, stride: 1, pad: 2 },
  { idx: 6, inC: 192, outC: 384, k: 3, stride: 1, pad: 1 },
  { idx: 8, inC: 384, outC: 256, k: 3, stride: 1, pad: 1 },
  { idx: 10, inC: 256, outC: 256, k: 3, stride: 1, pad: 1 },
] as const;

/** A module that only holds tensors (named like the PyTorch layer it stands for). */
class Params extends Module {
  constructor(tensors: Record<string, Tensor>) {
    super();
    for (const [k, t] of Object.entries(tensors)) this.registerParameter(k, t);
  }
}

/** A container whose children are named by string keys ("0", "3", …). */
class Container extends Module {
  constructor(children: Record<string, Module>) {
    super();
    for (const [k, m] of Object.entries(children)) this.registerModule(k, m);
  }
}

function scaled(t: Tensor, s: number, add = 0): Tensor {
  const a = t.mul(s);
  t.dispose();
  if (add === 0) return a;
  const b = a.add(add);
  a.dispose();
  return b;
}

/**
 * The LPIPS network: AlexNet features + five linear layers, with PyTorch names
 * (`features.0.weight`, …, `lin0.model.1.weight`, …). Build with {@link loadLpipsNet} or
 * {@link LpipsNet.random}.
 */
export class LpipsNet extends Module {
  constructor(init?: Generator) {
    super();
    const convs: Record<string, Module> = {};
    for (const c of CONVS) {
      const fanIn = c.inC * c.k * c.k;
      convs[String(c.idx)] = new Params({
        weight: init ? scaled(randn([c.outC, c.inC, c.k, c.k], init), Math.sqrt(2 / fanIn)) : zeros([c.outC, c.inC, c.k, c.k]),
        bias: init ? scaled(randn([c.outC], init), 0.1) : zeros([c.outC]),
      });
    }
    this.registerModule('features', new Container(convs));
    LPIPS_CHANNELS.forEach((C, k) => {
      const w = init ? scaled(rand([1, C, 1, 1], init), 0.2) : zeros([1, C, 1, 1]);
      this.registerModule(`lin${k}`, new Container({ model: new Container({ '1': new Params({ weight: w }) }) }));
    });
    this.eval();
  }

  /** Random weights from `seed` (tests; non-negative linear weights as in trained LPIPS). */
  static random(seed: number): LpipsNet {
    return new LpipsNet(new Generator(seed));
  }

  /** Device of the parameters. */
  get device(): string {
    return this.conv(0).param('weight').device;
  }

  private conv(idx: number): Module {
    return this.child('features').child(String(idx));
  }

  /** Linear weights of layer `k` as `[C]` (a view; do not dispose the network while using it). */
  linWeight(k: number): Tensor {
    return this.child(`lin${k}`).child('model').child('1').param('weight');
  }

  /**
   * The five AlexNet ReLU outputs for frames `[N, 3, H, W]` in [-1, 1] (after LPIPS's scaling
   * layer): `[N, C_ℓ, H_ℓ, W_ℓ]`, ℓ = 1…5. Input not consumed.
   */
  layers(frames: Tensor): Tensor[] {
    if (frames.ndim !== 4 || frames.size(1) !== 3) throw new OptionError('LPIPS frames', '[N, 3, H, W] in [-1, 1]', frames.shape);
    const device = frames.device;
    using shift = tensor(Float32Array.from(LPIPS_SHIFT), { shape: [1, 3, 1, 1], device });
    using scale = tensor(Float32Array.from(LPIPS_SCALE), { shape: [1, 3, 1, 1], device });
    using f32 = frames.to({ dtype: 'float32' });
    using centred = f32.sub(shift);
    let h: Tensor = centred.div(scale);
    const outs: Tensor[] = [];
    try {
      for (const c of CONVS) {
        if (c.idx === 3 || c.idx === 6) {
          h = maxPool2d(h, 3, { stride: 2 }); // h was the previous ReLU output (kept in outs)
        }
        const m = this.conv(c.idx);
        const y = conv2d(h, m.param('weight'), m.param('bias'), { stride: c.stride, padding: c.pad });
        if (!outs.includes(h)) h.dispose();
        const r = y.relu();
        y.dispose();
        outs.push(r);
        h = r;
      }
      return outs;
    } catch (e) {
      for (const t of outs) t.dispose();
      if (!outs.includes(h)) h.dispose();
      throw e;
    }
  }

  /**
   * The LPIPS embedding of frames `[N, 3, H, W]` in [-1, 1] as `[N, D]` float32 on the network's
   * device (REFERENCE_SPEC §7.3). Squared Euclidean distances between rows are LPIPS distances.
   */
  embedTensor(frames: Tensor): Tensor {
    return inferenceMode(() => {
      const feats = this.layers(frames);
      const parts: Tensor[] = [];
      try {
        feats.forEach((f, k) => {
          const [N, C, H, W] = f.shape as [number, number, number, number];
          using sq = f.square();
          using ss = sq.sum(1, true);
          using norm = ss.sqrt();
          using denom = norm.add(1e-10);
          using unit = f.div(denom);
          using w = this.linWeight(k).reshape([1, C, 1, 1]);
          using wpos = w.clampMin(0);
          using sw = wpos.sqrt();
          using weighted = unit.mul(sw);
          using e = weighted.div(Math.sqrt(H * W));
          parts.push(e.reshape([N, C * H * W]));
        });
        return cat(parts, 1);
      } finally {
        for (const t of [...feats, ...parts]) t.dispose();
      }
    });
  }
}

/** Frame embedder handed to the adaptive sampling schemes. */
export interface LpipsEmbedder {
  /** Embeddings of frames `[N, 3, H, W]` in [-1, 1], one `Float32Array` per frame. */
  embed(frames: Tensor): Float32Array[];
  readonly net: LpipsNet;
  /** Free the network. */
  dispose(): void;
}

/** An embedder over an existing network (processed in chunks of `chunk` frames, default 64). */
export function lpipsEmbedder(net: LpipsNet, opts: { chunk?: number } = {}): LpipsEmbedder {
  const chunk = opts.chunk ?? 64;
  return {
    net,
    embed(frames: Tensor): Float32Array[] {
      const N = frames.size(0);
      const out: Float32Array[] = [];
      const device = net.device;
      for (let s = 0; s < N; s += chunk) {
        const n = Math.min(chunk, N - s);
        using part = frames.narrow(0, s, n);
        using onDev = part.to({ device });
        using e = net.embedTensor(onDev);
        const D = e.size(1);
        const flat = e.toFloat32Array();
        for (let i = 0; i < n; i++) out.push(flat.slice(i * D, (i + 1) * D));
      }
      return out;
    },
    dispose() {
      net.dispose();
    },
  };
}

/** Environment variable naming the LPIPS weights file(s) (several joined with the path delimiter). */
export const LPIPS_WEIGHTS_ENV = 'FLEXVID_LPIPS_WEIGHTS';
/** Places searched (relative to the working directory) when no path is given. */
export const LPIPS_DEFAULT_PATHS = ['weights/lpips_alex.safetensors', 'weights/lpips_alex.pt'] as const;

/** Raised when no LPIPS weights can be found; the message says what to download. */
export class LpipsWeightsMissingError extends FlexvidError {}

/** What to download and how to convert it (also in docs/fvd.md). */
export function lpipsWeightsHelp(): string {
  return [
    'The adaptive sampling schemes need LPIPS (AlexNet, v0.1) weights:',
    '  - torchvision AlexNet: https://download.pytorch.org/models/alexnet-owt-7be5be79.pth (uses features.*)',
    '  - LPIPS linear layers: alex.pth from https://github.com/richzhang/PerceptualSimilarity (lpips/weights/v0.1/alex.pth)',
    'Both are legacy torch.save files; merge them once with PyTorch:',
    "  python -c \"import torch; sd={k:v for k,v in torch.load('alexnet-owt-7be5be79.pth').items() if k.startswith('features.')}; sd.update(torch.load('alex.pth')); torch.save(sd, 'weights/lpips_alex.pt')\"",
    `(or, with the lpips package: torch.save(lpips.LPIPS(net='alex').state_dict(), 'weights/lpips_alex.pt')).`,
    `Put the result at ${LPIPS_DEFAULT_PATHS[1]}, or pass --lpips-weights PATH, or set ${LPIPS_WEIGHTS_ENV}=PATH. See docs/fvd.md.`,
  ].join('\n');
}

/**
 * The weights file(s) to use: `explicit`, else `$FLEXVID_LPIPS_WEIGHTS` (several files joined with
 * `path.delimiter`), else the first existing {@link LPIPS_DEFAULT_PATHS}.
 * @throws LpipsWeightsMissingError naming what to download.
 */
export function resolveLpipsWeightsPaths(explicit?: string | readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const fromEnv = env[LPIPS_WEIGHTS_ENV] ? env[LPIPS_WEIGHTS_ENV]!.split(path.delimiter).filter((p) => p !== '') : undefined;
  const given = explicit === undefined ? fromEnv : typeof explicit === 'string' ? [explicit] : [...explicit];
  if (given !== undefined && given.length > 0) {
    for (const p of given) {
      if (!fs.existsSync(p)) {
        throw new LpipsWeightsMissingError(`LPIPS weights file ${p} (from ${explicit !== undefined ? '--lpips-weights' : `$${LPIPS_WEIGHTS_ENV}`}) does not exist.\n${lpipsWeightsHelp()}`);
      }
    }
    return given;
  }
  for (const p of LPIPS_DEFAULT_PATHS) if (fs.existsSync(p)) return [p];
  throw new LpipsWeightsMissingError(`No LPIPS weights found (no --lpips-weights, no $${LPIPS_WEIGHTS_ENV}, none of ${LPIPS_DEFAULT_PATHS.join(', ')}).\n${lpipsWeightsHelp()}`);
}

/** Map a state-dict name from torchvision / lpips conventions to ours; null = ignore. */
export function normalizeLpipsName(name: string): string | null {
  let m = /^net\.slice\d\.(\d+)\.(weight|bias)$/.exec(name);
  if (m) return `features.${m[1]}.${m[2]}`;
  m = /^lin(\d)\.model\.[01]\.weight$/.exec(name);
  if (m) return `lin${m[1]}.model.1.weight`;
  if (/^features\.\d+\.(weight|bias)$/.test(name)) return name;
  if (name.startsWith('scaling_layer.') || name.startsWith('classifier.')) return null;
  return name; // reported as unexpected by the strict load
}

/** Build the network from weight file(s) (see {@link resolveLpipsWeightsPaths}). */
export function loadLpipsNet(weights?: string | readonly string[], opts: { device?: string } = {}): LpipsNet {
  const files = resolveLpipsWeightsPaths(weights);
  const merged = new Map<string, Tensor>();
  try {
    for (const f of files) {
      const w = readWeightFile(f);
      for (const [k, t] of w) {
        const n = normalizeLpipsName(k);
        if (n === null) {
          t.dispose();
          continue;
        }
        merged.get(n)?.dispose();
        merged.set(n, t);
      }
    }
    const net = new LpipsNet();
    try {
      net.loadStateDict(merged);
    } catch (e) {
      net.dispose();
      if (e instanceof StateDictError) throw new StateDictError(`${e.message}\n(from ${files.join(', ')})\n${lpipsWeightsHelp()}`);
      throw e;
    }
    if (opts.device && opts.device !== 'cpu') net.to({ device: opts.device });
    return net;
  } finally {
    disposeWeights(merged);
  }
}

/**
 * The LPIPS embedder of REFERENCE_SPEC §7.3 from weight file(s) (default: `$FLEXVID_LPIPS_WEIGHTS`
 * or `weights/lpips_alex.{safetensors,pt}`). Unlike the reference, create it once and reuse it.
 */
export function loadLpipsEmbedder(weightsPath?: string | readonly string[], opts: { device?: string; chunk?: number } = {}): LpipsEmbedder {
  return lpipsEmbedder(loadLpipsNet(weightsPath, opts), { chunk: opts.chunk });
}
