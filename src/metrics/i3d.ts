/**
 * Inception-v1 I3D (Carreira & Zisserman 2017), RGB stream, Kinetics-400 — the network of FVD/KVD
 * (REFERENCE_SPEC §8.2 step 5, §8.3; ANCHORS §5), on the engine.
 *
 * Parameter names are those of the commonly used PyTorch port (VideoGPT / TATS `InceptionI3d(400)`,
 * derived from piergiaj/pytorch-i3d), so the state dict of `i3d_pretrained_400.pt` — the TF-Hub
 * `deepmind/i3d-kinetics-400/1` weights converted by TATS' `convert_tf_pretrained.py` — loads by name:
 *
 * ```
 * Conv3d_1a_7x7.conv3d.weight [64, 3, 7, 7, 7]      Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var} [64]
 * Conv3d_2b_1x1.conv3d.weight [64, 64, 1, 1, 1]     Conv3d_2c_3x3.conv3d.weight [192, 64, 3, 3, 3]
 * Mixed_3b.{b0,b1a,b1b,b2a,b2b,b3b}.conv3d.weight   (+ .bn.*)        … Mixed_5c.*
 * logits.conv3d.weight [400, 1024, 1, 1, 1]         logits.conv3d.bias [400]
 * ```
 *
 * Layers: Conv3d_1a_7x7 (7³, stride 2) → MaxPool3d_2a_3x3 (1×3×3, stride 1×2×2) → Conv3d_2b_1x1 →
 * Conv3d_2c_3x3 → MaxPool3d_3a_3x3 (1×3×3, stride 1×2×2) → Mixed_3b, Mixed_3c → MaxPool3d_4a_3x3
 * (3³, stride 2) → Mixed_4b…4f → MaxPool3d_5a_2x2 (2³, stride 2) → Mixed_5b, Mixed_5c → AvgPool
 * (2×7×7, stride 1, valid) → dropout (identity at inference) → logits (1³ conv with bias) → mean over
 * time. Every conv/pool uses TensorFlow "SAME" padding computed from the input size (front = ⌊p/2⌋);
 * unit convolutions have no bias and are followed by inference batch norm and ReLU. The batch norm is
 * folded into the convolution weights once (in float64), which saves a pass over every activation and
 * changes results only at float32 rounding level.
 *
 * Two presets ({@link I3D_VARIANTS}):
 * - `tfhub` (default): what the TF-Hub graph of the reference computes — batch-norm ε = 1e-3 (Sonnet's
 *   default) and TF1 `resize_bilinear` (no corner alignment, no half-pixel centres).
 * - `tats`: what the PyTorch port computes — ε = 1e-5 and `F.interpolate(bilinear, align_corners=False)`
 *   (half-pixel centres); reproduces TATS / common_metrics_on_video_quality numbers.
 *
 * Short clips (extension): the graph needs ≥ 9 frames (the time axis shrinks 8× before the 2-frame
 * average pool); shorter clips are padded in time by repeating their last frame ({@link I3D_MIN_FRAMES}).
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import {
  atenCall,
  cat,
  conv3d,
  Generator,
  inferenceMode,
  interpolate,
  keep,
  noGrad,
  tidy,
  maxPool3d,
  avgPool3d,
  ones,
  pad,
  randn,
  rand,
  tensor,
  zeros,
  type DType,
  type Tensor,
} from '../engine/index.ts';
import { Module } from '../nn/module.ts';
import { saveTensors } from '../nn/checkpoint.ts';
import { FlexvidError, OptionError } from '../util/errors.ts';
import { readWeightFile, disposeWeights } from './weights-file.ts';

/** Shortest clip the network accepts; shorter clips are padded by repeating the last frame. */
export const I3D_MIN_FRAMES = 9;
/** Frame side the network sees (every frame is resized to 224 × 224). */
export const I3D_RESOLUTION = 224;
/** Number of Kinetics-400 classes = feature dimension. */
export const I3D_CLASSES = 400;

/** How frames are resized to 224 × 224. */
export type I3DResize = 'tf1' | 'torch';

/** Numerical settings of the network. */
export interface I3DConfig {
  /** Batch-norm epsilon (1e-3 TF-Hub graph, 1e-5 VideoGPT/TATS port). */
  bnEps: number;
  /** `tf1`: TF1 `resize_bilinear` (reference); `torch`: `F.interpolate(bilinear, align_corners=False)`. */
  resize: I3DResize;
}

/** Named presets: `tfhub` reproduces the reference's TF graph, `tats` the PyTorch port. */
export const I3D_VARIANTS = {
  tfhub: { bnEps: 1e-3, resize: 'tf1' },
  tats: { bnEps: 1e-5, resize: 'torch' },
} as const satisfies Record<string, I3DConfig>;
export type I3DVariant = keyof typeof I3D_VARIANTS;

/** Options of the I3D constructor. */
export interface I3DOptions {
  /** Preset (default `tfhub`); `bnEps` / `resize` override it. */
  variant?: I3DVariant;
  bnEps?: number;
  resize?: I3DResize;
  /**
   * Divide every channel count by this (rounded up). 1 (default) is the real network; larger values
   * give a structurally identical miniature for tests (its weights are not loadable from real files).
   */
  widthDivisor?: number;
  /** Random initialisation from this generator (tests, benchmarks); default zeros (to be loaded). */
  init?: Generator;
}

type Triple = [number, number, number];

/** TF "SAME" padding of one axis (the PyTorch port's `compute_pad`): total, split ⌊p/2⌋ front. */
function samePad(size: number, kernel: number, stride: number): [number, number] {
  const p = size % stride === 0 ? Math.max(kernel - stride, 0) : Math.max(kernel - (size % stride), 0);
  const front = Math.floor(p / 2);
  return [front, p - front];
}

/** Zero-pad `[N, C, T, H, W]` with per-axis (front, back) pairs; null when nothing to pad. */
function padsFor(x: Tensor, kernel: Triple, stride: Triple): { symmetric: Triple | null; asym: number[] | null } {
  const [t, h, w] = [x.size(2), x.size(3), x.size(4)];
  const pt = samePad(t, kernel[0], stride[0]);
  const ph = samePad(h, kernel[1], stride[1]);
  const pw = samePad(w, kernel[2], stride[2]);
  if (pt[0] === pt[1] && ph[0] === ph[1] && pw[0] === pw[1]) return { symmetric: [pt[0], ph[0], pw[0]], asym: null };
  return { symmetric: null, asym: [pw[0], pw[1], ph[0], ph[1], pt[0], pt[1]] };
}

function initTensor(shape: number[], init: Generator | undefined, kind: 'he' | 'lecun' | 'small' | 'gamma' | 'var'): Tensor {
  if (!init) return kind === 'gamma' || kind === 'var' ? ones(shape) : zeros(shape);
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  switch (kind) {
    case 'he': {
      const r = randn(shape, init);
      const s = r.mul(Math.sqrt(2 / fanIn));
      r.dispose();
      return s;
    }
    case 'lecun': {
      const r = randn(shape, init);
      const s = r.mul(Math.sqrt(1 / fanIn));
      r.dispose();
      return s;
    }
    case 'small': {
      const r = randn(shape, init);
      const s = r.mul(0.1);
      r.dispose();
      return s;
    }
    case 'gamma':
    case 'var': {
      const r = rand(shape, init);
      const lo = kind === 'gamma' ? 0.8 : 0.5;
      const s = r.mul(kind === 'gamma' ? 0.4 : 1).add(lo);
      r.dispose();
      return s;
    }
  }
}

/** `nn.Conv3d` parameters (weight `[O, I, kt, kh, kw]`, optional bias). */
class ConvParams extends Module {
  constructor(inC: number, outC: number, kernel: Triple, bias: boolean, init: Generator | undefined, logits: boolean) {
    super();
    this.registerParameter('weight', initTensor([outC, inC, ...kernel], init, logits ? 'lecun' : 'he'));
    if (bias) this.registerParameter('bias', initTensor([outC], init, 'small'));
  }
}

/** `nn.BatchNorm3d` parameters and running statistics (buffers). */
class BatchNormParams extends Module {
  constructor(c: number, init: Generator | undefined) {
    super();
    this.registerParameter('weight', initTensor([c], init, 'gamma'));
    this.registerParameter('bias', initTensor([c], init, 'small'));
    this.registerBuffer('running_mean', initTensor([c], init, 'small'));
    this.registerBuffer('running_var', initTensor([c], init, 'var'));
  }
}

/** The port's `Unit3D`: SAME-padded conv (no bias) → batch norm → ReLU; or the logits conv. */
class Unit3D extends Module {
  readonly outChannels: number;
  constructor(
    inC: number,
    outC: number,
    readonly kernel: Triple,
    readonly stride: Triple,
    init: Generator | undefined,
    readonly kind: 'unit' | 'logits' = 'unit',
  ) {
    super();
    this.outChannels = outC;
    this.registerModule('conv3d', new ConvParams(inC, outC, kernel, kind === 'logits', init, kind === 'logits'));
    if (kind === 'unit') this.registerModule('bn', new BatchNormParams(outC, init));
  }

  #fused: { weight: Tensor; bias: Tensor; eps: number } | null = null;

  /**
   * Convolution weights with the inference batch norm folded in (computed once in float64):
   * `W' = W·γ/√(σ² + ε)`, `b' = β − μ·γ/√(σ² + ε)` — one pass over the activations instead of two.
   */
  #folded(eps: number): { weight: Tensor; bias: Tensor } {
    if (this.#fused && this.#fused.eps === eps) return this.#fused;
    this.clearFolded();
    const conv = this.child('conv3d');
    const bn = this.child('bn');
    const { weight, bias } = noGrad(() =>
      tidy(() => {
        const scale = bn.param('weight').double().div(bn.buffer('running_var').double().add(eps).sqrt());
        const w = conv.param('weight').double().mul(scale.reshape([-1, 1, 1, 1, 1])).float();
        const b = bn.param('bias').double().sub(bn.buffer('running_mean').double().mul(scale)).float();
        return { weight: w, bias: b };
      }),
    );
    this.#fused = { weight: keep(weight), bias: keep(bias), eps };
    return this.#fused;
  }

  /** Drop the folded weights (after loading or moving parameters). */
  clearFolded(): void {
    this.#fused?.weight.dispose();
    this.#fused?.bias.dispose();
    this.#fused = null;
  }

  /** `[N, C, T, H, W]` → `[N, O, T', H', W']` (input not consumed). */
  forward(x: Tensor, bnEps: number): Tensor {
    const conv = this.child('conv3d');
    const { weight, bias } = this.kind === 'logits' ? { weight: conv.param('weight'), bias: conv.param('bias') } : this.#folded(bnEps);
    const { symmetric, asym } = padsFor(x, this.kernel, this.stride);
    let y: Tensor;
    if (asym) {
      using padded = pad(x, asym);
      y = conv3d(padded, weight, bias, { stride: this.stride });
    } else {
      y = conv3d(x, weight, bias, { stride: this.stride, padding: symmetric! });
    }
    if (this.kind === 'unit') atenCall('relu_', y).dispose(); // in place; drop the duplicate handle
    return y;
  }
}

/**
 * The port's `MaxPool3dSamePadding`: SAME max pooling. The port zero-pads (TF ignores padded cells);
 * the two agree because every pooled tensor follows a ReLU (non-negative).
 */
function maxPoolSame(x: Tensor, kernel: Triple, stride: Triple): Tensor {
  const { symmetric, asym } = padsFor(x, kernel, stride);
  if (asym) {
    using padded = pad(x, asym);
    return maxPool3d(padded, kernel, { stride });
  }
  return maxPool3d(x, kernel, { stride, padding: symmetric! });
}

/** Branch widths of an Inception module: [b0, b1a, b1b, b2a, b2b, b3b]. */
type InceptionWidths = [number, number, number, number, number, number];

/** The port's `InceptionModule`: four branches concatenated on channels. */
class InceptionModule extends Module {
  readonly outChannels: number;
  constructor(inC: number, w: InceptionWidths, init: Generator | undefined) {
    super();
    const one: Triple = [1, 1, 1];
    const three: Triple = [3, 3, 3];
    this.registerModule('b0', new Unit3D(inC, w[0], one, one, init));
    this.registerModule('b1a', new Unit3D(inC, w[1], one, one, init));
    this.registerModule('b1b', new Unit3D(w[1], w[2], three, one, init));
    this.registerModule('b2a', new Unit3D(inC, w[3], one, one, init));
    this.registerModule('b2b', new Unit3D(w[3], w[4], three, one, init));
    this.registerModule('b3b', new Unit3D(inC, w[5], one, one, init));
    this.outChannels = w[0] + w[2] + w[4] + w[5];
  }

  forward(x: Tensor, eps: number): Tensor {
    const u = (n: string) => this.child<Unit3D>(n);
    using b0 = u('b0').forward(x, eps);
    using a1 = u('b1a').forward(x, eps);
    using b1 = u('b1b').forward(a1, eps);
    using a2 = u('b2a').forward(x, eps);
    using b2 = u('b2b').forward(a2, eps);
    using p3 = maxPoolSame(x, [3, 3, 3], [1, 1, 1]);
    using b3 = u('b3b').forward(p3, eps);
    return cat([b0, b1, b2, b3], 1);
  }
}

/** Layer list of InceptionI3d (names of the port's end points). */
type Layer = { name: string; kind: 'unit'; kernel: Triple; stride: Triple; out: number } | { name: string; kind: 'pool'; kernel: Triple; stride: Triple } | { name: string; kind: 'mixed'; widths: InceptionWidths };

const LAYERS: readonly Layer[] = [
  { name: 'Conv3d_1a_7x7', kind: 'unit', kernel: [7, 7, 7], stride: [2, 2, 2], out: 64 },
  { name: 'MaxPool3d_2a_3x3', kind: 'pool', kernel: [1, 3, 3], stride: [1, 2, 2] },
  { name: 'Conv3d_2b_1x1', kind: 'unit', kernel: [1, 1, 1], stride: [1, 1, 1], out: 64 },
  { name: 'Conv3d_2c_3x3', kind: 'unit', kernel: [3, 3, 3], stride: [1, 1, 1], out: 192 },
  { name: 'MaxPool3d_3a_3x3', kind: 'pool', kernel: [1, 3, 3], stride: [1, 2, 2] },
  { name: 'Mixed_3b', kind: 'mixed', widths: [64, 96, 128, 16, 32, 32] },
  { name: 'Mixed_3c', kind: 'mixed', widths: [128, 128, 192, 32, 96, 64] },
  { name: 'MaxPool3d_4a_3x3', kind: 'pool', kernel: [3, 3, 3], stride: [2, 2, 2] },
  { name: 'Mixed_4b', kind: 'mixed', widths: [192, 96, 208, 16, 48, 64] },
  { name: 'Mixed_4c', kind: 'mixed', widths: [160, 112, 224, 24, 64, 64] },
  { name: 'Mixed_4d', kind: 'mixed', widths: [128, 128, 256, 24, 64, 64] },
  { name: 'Mixed_4e', kind: 'mixed', widths: [112, 144, 288, 32, 64, 64] },
  { name: 'Mixed_4f', kind: 'mixed', widths: [256, 160, 320, 32, 128, 128] },
  { name: 'MaxPool3d_5a_2x2', kind: 'pool', kernel: [2, 2, 2], stride: [2, 2, 2] },
  { name: 'Mixed_5b', kind: 'mixed', widths: [256, 160, 320, 32, 128, 128] },
  { name: 'Mixed_5c', kind: 'mixed', widths: [384, 192, 384, 48, 128, 128] },
];

/** Layout of a video batch given to {@link I3D.features}. */
export type VideoLayout = 'BTHWC' | 'BTCHW';

/** Options of {@link I3D.features}. */
export interface I3DFeatureOptions {
  /** Videos per forward pass (default 8). Rows are never padded; the last chunk is just smaller. */
  batchSize?: number;
  /** Input layout; inferred when unambiguous (exactly one of dims 2 and 4 equals 3). */
  layout?: VideoLayout;
  /** Called after each chunk with (videos done, total). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * InceptionI3d (RGB, 400 classes) with the PyTorch port's parameter names. Build with
 * {@link loadI3D} (weights from a file) or {@link I3D.random} (tests); compute FVD features with
 * {@link I3D.features}.
 */
export class I3D extends Module {
  readonly config: I3DConfig;
  readonly widthDivisor: number;

  constructor(opts: I3DOptions = {}) {
    super();
    const preset = I3D_VARIANTS[opts.variant ?? 'tfhub'];
    if (!preset) throw new OptionError('I3D variant', Object.keys(I3D_VARIANTS).join(' | '), opts.variant);
    this.config = { bnEps: opts.bnEps ?? preset.bnEps, resize: opts.resize ?? preset.resize };
    const div = opts.widthDivisor ?? 1;
    if (!Number.isInteger(div) || div < 1) throw new OptionError('widthDivisor', 'a positive integer', div);
    this.widthDivisor = div;
    const w = (c: number) => Math.ceil(c / div);
    let c = 3;
    for (const l of LAYERS) {
      if (l.kind === 'unit') {
        this.registerModule(l.name, new Unit3D(c, w(l.out), l.kernel, l.stride, opts.init));
        c = w(l.out);
      } else if (l.kind === 'mixed') {
        const m = this.registerModule(l.name, new InceptionModule(c, l.widths.map(w) as InceptionWidths, opts.init));
        c = m.outChannels;
      }
    }
    this.registerModule('logits', new Unit3D(c, I3D_CLASSES, [1, 1, 1], [1, 1, 1], opts.init, 'logits'));
    this.eval();
  }

  /** A network with random weights from `seed` (tests and benchmarks; features are meaningless). */
  static random(seed: number, opts: Omit<I3DOptions, 'init'> = {}): I3D {
    return new I3D({ ...opts, init: new Generator(seed) });
  }

  /** Device of the parameters. */
  get device(): string {
    return this.child<Unit3D>('logits').child('conv3d').param('weight').device;
  }

  #clearFolded(): void {
    for (const [, m] of this.namedModules()) if (m instanceof Unit3D) m.clearFolded();
  }

  override loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    this.#clearFolded();
    return super.loadStateDict(state, opts);
  }

  override to(opts: { device?: string; dtype?: DType }): this {
    this.#clearFolded();
    return super.to(opts);
  }

  override dispose(): void {
    this.#clearFolded();
    super.dispose();
  }

  /**
   * The network on preprocessed clips: `[B, 3, T, 224, 224]` float32 in [-1, 1] (T ≥ 9) →
   * logits averaged over time `[B, 400]` (REFERENCE_SPEC §8.2 step 5; TF tensor
   * `RGB/inception_i3d/Mean:0`). Input not consumed.
   */
  forward(x: Tensor): Tensor {
    if (x.ndim !== 5 || x.size(1) !== 3) throw new OptionError('I3D input', '[B, 3, T, H, W]', x.shape);
    if (x.size(2) < I3D_MIN_FRAMES) throw new OptionError('I3D input frames', `at least ${I3D_MIN_FRAMES} (features() pads shorter clips)`, x.size(2));
    const eps = this.config.bnEps;
    let h = x;
    const step = (next: Tensor) => {
      if (h !== x) h.dispose();
      h = next;
    };
    for (const l of LAYERS) {
      if (l.kind === 'pool') step(maxPoolSame(h, l.kernel, l.stride));
      else if (l.kind === 'unit') step(this.child<Unit3D>(l.name).forward(h, eps));
      else step(this.child<InceptionModule>(l.name).forward(h, eps));
    }
    if (h.size(3) < 7 || h.size(4) < 7) throw new OptionError('I3D input size', 'frames of at least 193 × 193 (features() resizes to 224)', x.shape);
    step(avgPool3d(h, [2, 7, 7], { stride: [1, 1, 1] }));
    // Dropout is the identity at inference.
    step(this.child<Unit3D>('logits').forward(h, eps)); // [B, 400, T', H', W'] (H' = W' = 1 at 224²)
    using flat = h.flatten(3); // spatial squeeze
    const mean = flat.mean([2, 3]);
    step(mean);
    return h;
  }

  /**
   * FVD features of videos with values in [0, 255] (uint8 or float): `[B, T, H, W, 3]` or
   * `[B, T, 3, H, W]` → `[B, 400]` float32 on the CPU (caller owns it). Each frame is resized to
   * 224 × 224 ({@link I3DConfig.resize}), scaled to `2x/255 − 1`, clips shorter than
   * {@link I3D_MIN_FRAMES} are padded by repeating the last frame, and videos are processed in
   * chunks of `batchSize` without padding rows (REFERENCE_SPEC §8.2 steps 4–5).
   */
  features(videos: Tensor, opts: I3DFeatureOptions = {}): Tensor {
    if (videos.ndim !== 5) throw new OptionError('videos', '[B, T, H, W, 3] or [B, T, 3, H, W]', videos.shape);
    const layout = opts.layout ?? inferLayout(videos.shape);
    const batchSize = opts.batchSize ?? 8;
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new OptionError('batchSize', 'a positive integer', batchSize);
    const B = videos.size(0);
    const device = this.device;
    const parts: Tensor[] = [];
    try {
      for (let s = 0; s < B; s += batchSize) {
        const n = Math.min(batchSize, B - s);
        const part = inferenceMode(() => {
          using chunk = videos.narrow(0, s, n);
          using x = preprocessI3D(chunk, layout, this.config.resize, device);
          using y = this.forward(x);
          return y.to({ device: 'cpu', dtype: 'float32' });
        });
        parts.push(part);
        opts.onProgress?.(s + n, B);
      }
      if (parts.length === 1) return parts.pop()!;
      return cat(parts, 0);
    } finally {
      for (const p of parts) p.dispose();
    }
  }
}

function inferLayout(shape: readonly number[]): VideoLayout {
  const last = shape[4] === 3;
  const mid = shape[2] === 3;
  if (last && !mid) return 'BTHWC';
  if (mid && !last) return 'BTCHW';
  throw new OptionError('video layout', "'BTHWC' or 'BTCHW' (cannot tell from the shape; pass layout)", shape);
}

/** TF1 legacy `resize_bilinear` source indices and weights for one axis (as `resizeBilinearTF1`). */
function tf1Axis(inSize: number, outSize: number): { lower: number[]; upper: number[]; lerp: Float32Array } {
  const f = Math.fround;
  const scale = f(inSize / outSize);
  const lower: number[] = [];
  const upper: number[] = [];
  const lerp = new Float32Array(outSize);
  for (let o = 0; o < outSize; o++) {
    const pos = f(o * scale);
    const fl = Math.floor(pos);
    lower.push(Math.max(fl, 0));
    upper.push(Math.min(Math.ceil(pos), inSize - 1));
    lerp[o] = f(pos - fl);
  }
  return { lower, upper, lerp };
}

/**
 * TF1 `tf.image.resize_bilinear(align_corners=False)` of `[N, H, W]` float32 to `[N, outH, outW]`,
 * with TF's float32 operation order (`top = tl + (tr − tl)·x_lerp`, then vertically), so results
 * equal `resizeBilinearTF1` bit for bit on the CPU.
 */
export function resizeBilinearTF1Tensor(x: Tensor, outH: number, outW: number): Tensor {
  const [, H, W] = x.shape as [number, number, number];
  const device = x.device;
  const idx = (v: number[]) => tensor(BigInt64Array.from(v, BigInt), { device });
  const xs = tf1Axis(W, outW);
  const ys = tf1Axis(H, outH);
  using xl = idx(xs.lower);
  using xu = idx(xs.upper);
  using lx = tensor(xs.lerp, { device });
  using yl = idx(ys.lower);
  using yu = idx(ys.upper);
  using ly0 = tensor(ys.lerp, { device, shape: [outH, 1] });
  using left = x.indexSelect(2, xl);
  using right = x.indexSelect(2, xu);
  using dx = right.sub(left);
  using dxl = dx.mul(lx);
  using rows = left.add(dxl); // [N, H, outW]
  using top = rows.indexSelect(1, yl);
  using bottom = rows.indexSelect(1, yu);
  using dy = bottom.sub(top);
  using dyl = dy.mul(ly0);
  return top.add(dyl);
}

/**
 * Preprocess videos for the network: `[B, T, H, W, 3]` / `[B, T, 3, H, W]` in [0, 255] →
 * `[B, 3, max(T, 9), 224, 224]` float32 in [-1, 1] on `device` (REFERENCE_SPEC §8.2 step 5).
 */
export function preprocessI3D(videos: Tensor, layout: VideoLayout, resize: I3DResize, device = 'cpu'): Tensor {
  const [B, T] = videos.shape as [number, number];
  const [H, W] = layout === 'BTHWC' ? [videos.size(2), videos.size(3)] : [videos.size(3), videos.size(4)];
  if ((layout === 'BTHWC' ? videos.size(4) : videos.size(2)) !== 3) throw new OptionError('videos channels', '3 (RGB)', videos.shape);
  if (T < 1 || H < 1 || W < 1) throw new OptionError('videos', 'non-empty clips', videos.shape);
  using onDev = videos.to({ device, dtype: 'float32' });
  using perm = layout === 'BTHWC' ? onDev.permute([0, 1, 4, 2, 3]) : null;
  using chw = (perm ?? onDev).contiguous(); // [B, T, 3, H, W]
  let clip: Tensor = chw;
  if (T < I3D_MIN_FRAMES) {
    using last = chw.narrow(1, T - 1, 1);
    using rep = last.expand([B, I3D_MIN_FRAMES - T, 3, H, W]);
    clip = cat([chw, rep], 1);
  }
  const Tp = clip.size(1);
  try {
    let resized: Tensor;
    if (H === I3D_RESOLUTION && W === I3D_RESOLUTION) {
      resized = clip.reshape([B * Tp, 3, H, W]);
    } else if (resize === 'tf1') {
      using planes = clip.reshape([B * Tp * 3, H, W]);
      resized = resizeBilinearTF1Tensor(planes, I3D_RESOLUTION, I3D_RESOLUTION);
    } else {
      using frames = clip.reshape([B * Tp, 3, H, W]);
      resized = interpolate(frames, { size: [I3D_RESOLUTION, I3D_RESOLUTION], mode: 'bilinear', alignCorners: false });
    }
    using r5 = resized.reshape([B, Tp, 3, I3D_RESOLUTION, I3D_RESOLUTION]);
    resized.dispose();
    using two = r5.mul(2);
    using scaled = two.div(255);
    using shifted = scaled.sub(1);
    using ct = shifted.permute([0, 2, 1, 3, 4]);
    return ct.contiguous();
  } finally {
    if (clip !== chw) clip.dispose();
  }
}

/** Environment variable naming the I3D weights file. */
export const I3D_WEIGHTS_ENV = 'FLEXVID_I3D_WEIGHTS';
/** Places searched (relative to the working directory) when no path is given. */
export const I3D_DEFAULT_PATHS = ['weights/i3d_pretrained_400.safetensors', 'weights/i3d_pretrained_400.pt'] as const;

/** Raised when no I3D weights file can be found; the message says what to download and where. */
export class I3DWeightsMissingError extends FlexvidError {}

/** The instructions printed when the weights are missing (also in docs/fvd.md). */
export function i3dWeightsHelp(): string {
  return [
    'FVD/KVD need the Kinetics-400 I3D network (TF-Hub deepmind/i3d-kinetics-400/1, as converted to PyTorch by VideoGPT/TATS).',
    'Download i3d_pretrained_400.pt (about 50 MB) from one of:',
    '  - https://github.com/songweige/TATS (file tats/fvd/i3d_pretrained_400.pt)',
    '  - https://github.com/JunyaoHu/common_metrics_on_video_quality (file fvd/videogpt/i3d_pretrained_400.pt)',
    '  - https://drive.google.com/uc?id=1mQK8KD8G6UWRa5t87SRMm5PVXtlpneJT (VideoGPT\'s download)',
    `and put it at ${I3D_DEFAULT_PATHS[1]} (or pass --i3d-weights PATH, or set ${I3D_WEIGHTS_ENV}=PATH).`,
    `Optionally convert it once: flexvid fvd convert-weights ${I3D_DEFAULT_PATHS[1]} --out ${I3D_DEFAULT_PATHS[0]}`,
    "StyleGAN-V's i3d_torchscript.pt is a TorchScript archive and cannot be read directly; see docs/fvd.md for converting it.",
  ].join('\n');
}

/**
 * The weights file to use: `explicit` (a flag), else `$FLEXVID_I3D_WEIGHTS`, else the first of
 * {@link I3D_DEFAULT_PATHS} that exists.
 * @throws I3DWeightsMissingError naming what to download and where to put it.
 */
export function resolveI3DWeightsPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  const given = explicit ?? (env[I3D_WEIGHTS_ENV] || undefined);
  if (given !== undefined) {
    if (!fs.existsSync(given)) {
      const src = explicit !== undefined ? '--i3d-weights' : `$${I3D_WEIGHTS_ENV}`;
      throw new I3DWeightsMissingError(`I3D weights file ${given} (from ${src}) does not exist.\n${i3dWeightsHelp()}`);
    }
    return given;
  }
  for (const p of I3D_DEFAULT_PATHS) if (fs.existsSync(p)) return p;
  throw new I3DWeightsMissingError(`No I3D weights found (no --i3d-weights, no $${I3D_WEIGHTS_ENV}, none of ${I3D_DEFAULT_PATHS.join(', ')}).\n${i3dWeightsHelp()}`);
}

/** Options of {@link loadI3D}. */
export interface LoadI3DOptions {
  variant?: I3DVariant;
  bnEps?: number;
  resize?: I3DResize;
  /** Device to run on (default cpu). */
  device?: string;
}

/**
 * Build the network and load weights from a safetensors or `torch.save` state dict with the port's
 * names (`i3d_pretrained_400.pt` or its conversion). `path` defaults to {@link resolveI3DWeightsPath}.
 * @throws I3DWeightsMissingError, FileFormatError, StateDictError (names listed).
 */
export function loadI3D(path?: string, opts: LoadI3DOptions = {}): I3D {
  const file = resolveI3DWeightsPath(path);
  let weights: Map<string, Tensor>;
  try {
    weights = readWeightFile(file);
  } catch (e) {
    if (e instanceof FlexvidError && /TorchScript/.test(e.message)) {
      throw new FlexvidError(`${e.message}\nflexvid reads the state dict i3d_pretrained_400.pt, not StyleGAN-V's TorchScript export; see docs/fvd.md.\n${i3dWeightsHelp()}`);
    }
    throw e;
  }
  const net = new I3D({ variant: opts.variant, bnEps: opts.bnEps, resize: opts.resize });
  try {
    net.loadStateDict(weights);
  } catch (e) {
    net.dispose();
    throw e;
  } finally {
    disposeWeights(weights);
  }
  if (opts.device && opts.device !== 'cpu') net.to({ device: opts.device });
  return net;
}

/**
 * Convert an I3D weights file (e.g. `i3d_pretrained_400.pt`) to safetensors after checking that it
 * loads into the network (every name and shape). Returns the tensor and parameter counts.
 */
export function convertI3DWeights(input: string, output: string): { tensors: number; parameters: number } {
  const net = loadI3D(input);
  try {
    const sd = net.stateDict();
    saveTensors(output, sd, { 'flexvid.network': 'InceptionI3d-400 (VideoGPT/TATS names)', 'flexvid.source': nodePath.basename(input) });
    return { tensors: sd.size, parameters: net.numParameters() };
  } finally {
    net.dispose();
  }
}
