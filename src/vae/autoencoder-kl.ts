/**
 * The KL autoencoder of latent diffusion — the SDXL VAE architecture (REFERENCE_SPEC §5.11) — on
 * flexvid's engine, with the diffusers module tree so that `stateDict()` names are the diffusers
 * names (`encoder.down_blocks.0.resnets.0.norm1.weight`, `decoder.up_blocks.3.resnets.2.conv2.bias`,
 * `encoder.mid_block.attentions.0.to_q.weight`, `quant_conv.weight`, …).
 *
 * ```
 * encoder: conv_in → down_blocks[i] (layers_per_block ResnetBlock2D, then Downsample2D except
 *          the last level) → mid_block (ResNet, single-head attention, ResNet) → GroupNorm → SiLU
 *          → conv_out (2·latent channels: mean and log-variance)          → quant_conv (1×1)
 * decoder: post_quant_conv (1×1) → conv_in → mid_block → up_blocks[i] (layers_per_block + 1
 *          ResnetBlock2D, then nearest ×2 + conv except the last level) → GroupNorm → SiLU → conv_out
 * ```
 * - ResnetBlock2D: `x' = shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))))))`, GroupNorm eps
 *   1e-6, a 1×1 `conv_shortcut` when the channel count changes.
 * - Downsample2D: zero padding (left 0, right 1, top 0, bottom 1), then a 3×3 stride-2 convolution.
 * - Attention: GroupNorm, `to_q/to_k/to_v` linear maps over the `H·W` tokens, softmax(q kᵀ/√C) v,
 *   `to_out.0`, plus the input (one head of width C).
 * - Posterior: `mean, logvar = chunk(moments, 2)`, `logvar` clamped to [−30, 20], a sample is
 *   `mean + exp(logvar/2)·ε`.
 *
 * Parameters are frozen (the VAE is never trained here) and every public method runs without
 * autograd. The module is built directly in its dtype and device; float16 needs a device with
 * float16 kernels (CUDA; libtorch 1.13 has none on the CPU — use bfloat16 or float32 there).
 */
import {
  conv2d,
  empty,
  Generator,
  groupNorm,
  interpolate,
  linear,
  noGrad,
  ones,
  pad,
  randn,
  scaledDotProductAttention,
  zeros,
  type DType,
  type Tensor,
} from '../engine/index.ts';
import { Module } from '../nn/module.ts';
import { ModuleList } from '../nn/layers.ts';
import { OptionError } from '../util/errors.ts';
import { downFactor, validateVaeConfig, type AutoencoderKLConfig } from './config.ts';

/** How parameters are created: random (PyTorch's default initialisation) or uninitialised (to be loaded). */
export interface VaeInit {
  /** Generator of the random initialisation; null = uninitialised memory (weights are loaded next). */
  random: Generator | null;
  device?: string;
  dtype?: DType;
}

/** GroupNorm eps of every VAE norm (diffusers `resnet_eps`). */
const EPS = 1e-6;

function makeParam(shape: number[], kind: 'uniform' | 'ones' | 'zeros', fanIn: number, init: VaeInit): Tensor {
  const dtype = init.dtype ?? 'float32';
  const device = init.device ?? 'cpu';
  if (!init.random) return empty(shape, { dtype, device });
  let t: Tensor;
  if (kind === 'ones') t = ones(shape);
  else if (kind === 'zeros') t = zeros(shape);
  else {
    // kaiming_uniform_(a=√5) weights and U(±1/√fan_in) biases: both bounds are 1/√fan_in.
    const bound = 1 / Math.sqrt(fanIn);
    t = empty(shape);
    t.uniform_(-bound, bound, init.random);
  }
  if (dtype === 'float32' && device === 'cpu') return t;
  const moved = t.to({ dtype, device });
  t.dispose();
  return moved;
}

/** Base of the VAE's modules: registers frozen parameters. */
abstract class Frozen extends Module {
  protected addParam(name: string, t: Tensor): Tensor {
    const p = this.registerParameter(name, t);
    p.requiresGrad_(false);
    return p;
  }
}

class Conv extends Frozen {
  constructor(
    cin: number,
    cout: number,
    readonly k: number,
    init: VaeInit,
    readonly stride = 1,
    readonly padding = 0,
  ) {
    super();
    const fan = cin * k * k;
    this.addParam('weight', makeParam([cout, cin, k, k], 'uniform', fan, init));
    this.addParam('bias', makeParam([cout], 'uniform', fan, init));
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.param('weight'), this.param('bias'), { stride: this.stride, padding: this.padding });
  }
}

class Dense extends Frozen {
  constructor(cin: number, cout: number, init: VaeInit) {
    super();
    this.addParam('weight', makeParam([cout, cin], 'uniform', cin, init));
    this.addParam('bias', makeParam([cout], 'uniform', cin, init));
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.param('weight'), this.param('bias'));
  }
}

class Norm extends Frozen {
  constructor(
    readonly groups: number,
    channels: number,
    init: VaeInit,
  ) {
    super();
    this.addParam('weight', makeParam([channels], 'ones', 0, init));
    this.addParam('bias', makeParam([channels], 'zeros', 0, init));
  }

  forward(x: Tensor): Tensor {
    return groupNorm(x, this.groups, this.param('weight'), this.param('bias'), EPS);
  }
}

/** `f(x)` then dispose `x` — for chains that own their intermediate tensors. */
function step(x: Tensor, f: (x: Tensor) => Tensor, owned: boolean): Tensor {
  const y = f(x);
  if (owned) x.dispose();
  return y;
}

/** silu(norm(x)) with the intermediate freed. */
function normSilu(norm: Norm, x: Tensor): Tensor {
  const n = norm.forward(x);
  const s = n.silu();
  n.dispose();
  return s;
}

/** diffusers ResnetBlock2D without time embedding (`[N, cin, H, W]` → `[N, cout, H, W]`). */
export class ResnetBlock2D extends Frozen {
  readonly norm1: Norm;
  readonly conv1: Conv;
  readonly norm2: Norm;
  readonly conv2: Conv;
  readonly convShortcut: Conv | null;

  constructor(cin: number, cout: number, groups: number, init: VaeInit) {
    super();
    this.norm1 = this.registerModule('norm1', new Norm(groups, cin, init));
    this.conv1 = this.registerModule('conv1', new Conv(cin, cout, 3, init, 1, 1));
    this.norm2 = this.registerModule('norm2', new Norm(groups, cout, init));
    this.conv2 = this.registerModule('conv2', new Conv(cout, cout, 3, init, 1, 1));
    this.convShortcut = cin !== cout ? this.registerModule('conv_shortcut', new Conv(cin, cout, 1, init)) : null;
  }

  forward(x: Tensor): Tensor {
    let h = normSilu(this.norm1, x);
    h = step(h, (t) => this.conv1.forward(t), true);
    h = step(h, (t) => normSilu(this.norm2, t), true);
    h = step(h, (t) => this.conv2.forward(t), true);
    if (this.convShortcut) {
      const s = this.convShortcut.forward(x);
      h.add_(s);
      s.dispose();
    } else {
      h.add_(x);
    }
    return h;
  }
}

/** diffusers Attention as the VAE mid block uses it: one head of width C over the H·W positions, residual. */
export class VaeAttention extends Frozen {
  readonly groupNorm: Norm;
  readonly toQ: Dense;
  readonly toK: Dense;
  readonly toV: Dense;
  readonly toOut: Dense;

  constructor(channels: number, groups: number, init: VaeInit) {
    super();
    this.groupNorm = this.registerModule('group_norm', new Norm(groups, channels, init));
    this.toQ = this.registerModule('to_q', new Dense(channels, channels, init));
    this.toK = this.registerModule('to_k', new Dense(channels, channels, init));
    this.toV = this.registerModule('to_v', new Dense(channels, channels, init));
    const out = this.registerModule('to_out', new ModuleList<Dense>());
    this.toOut = out.push(new Dense(channels, channels, init)); // to_out.1 is a Dropout (no parameters)
  }

  /** `[N, C, H, W]` → `[N, C, H, W]`. */
  forward(x: Tensor): Tensor {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const n = this.groupNorm.forward(x);
    const tokens = n.flatten(2).transpose(1, 2); // [N, HW, C]
    n.dispose();
    const q = this.toQ.forward(tokens);
    const k = this.toK.forward(tokens);
    const v = this.toV.forward(tokens);
    tokens.dispose();
    const a = scaledDotProductAttention(q, k, v, null, 1 / Math.sqrt(C));
    q.dispose();
    k.dispose();
    v.dispose();
    const o = this.toOut.forward(a);
    a.dispose();
    const t = o.transpose(1, 2);
    const out = t.reshape([N, C, H, W]);
    t.dispose();
    o.dispose();
    out.add_(x);
    return out;
  }
}

/** UNetMidBlock2D of the VAE: ResNet, attention, ResNet. */
export class MidBlock extends Frozen {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<VaeAttention>;

  constructor(channels: number, groups: number, attention: boolean, init: VaeInit) {
    super();
    this.attentions = this.registerModule('attentions', new ModuleList<VaeAttention>(attention ? [new VaeAttention(channels, groups, init)] : []));
    this.resnets = this.registerModule('resnets', new ModuleList([new ResnetBlock2D(channels, channels, groups, init), new ResnetBlock2D(channels, channels, groups, init)]));
  }

  forward(x: Tensor): Tensor {
    let h = this.resnets.items[0]!.forward(x);
    for (const a of this.attentions.items) h = step(h, (t) => a.forward(t), true);
    return step(h, (t) => this.resnets.items[1]!.forward(t), true);
  }
}

/** Downsample2D(padding=0): pad (0, 1, 0, 1) with zeros, 3×3 convolution with stride 2. */
class Downsample extends Frozen {
  readonly conv: Conv;

  constructor(channels: number, init: VaeInit) {
    super();
    this.conv = this.registerModule('conv', new Conv(channels, channels, 3, init, 2, 0));
  }

  forward(x: Tensor): Tensor {
    const p = pad(x, [0, 1, 0, 1]);
    const y = this.conv.forward(p);
    p.dispose();
    return y;
  }
}

/** Upsample2D: nearest ×2, 3×3 convolution. */
class Upsample extends Frozen {
  readonly conv: Conv;

  constructor(channels: number, init: VaeInit) {
    super();
    this.conv = this.registerModule('conv', new Conv(channels, channels, 3, init, 1, 1));
  }

  forward(x: Tensor): Tensor {
    const u = interpolate(x, { scale: 2, mode: 'nearest' });
    const y = this.conv.forward(u);
    u.dispose();
    return y;
  }
}

/** DownEncoderBlock2D / UpDecoderBlock2D: ResNets, then an optional resampler. */
class ResampleBlock extends Frozen {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly resampler: Downsample | Upsample | null = null;

  constructor(cin: number, cout: number, layers: number, groups: number, resample: 'down' | 'up' | null, init: VaeInit) {
    super();
    this.resnets = this.registerModule('resnets', new ModuleList(Array.from({ length: layers }, (_, i) => new ResnetBlock2D(i === 0 ? cin : cout, cout, groups, init))));
    if (resample === 'down') this.resampler = this.registerModule('downsamplers', new ModuleList([new Downsample(cout, init)])).items[0]!;
    if (resample === 'up') this.resampler = this.registerModule('upsamplers', new ModuleList([new Upsample(cout, init)])).items[0]!;
  }

  forward(x: Tensor): Tensor {
    let h = x;
    for (const r of this.resnets.items) h = step(h, (t) => r.forward(t), h !== x);
    if (this.resampler) h = step(h, (t) => this.resampler!.forward(t), h !== x);
    return h === x ? x.clone() : h;
  }
}

/** The encoder: `[N, 3, H, W]` → `[N, 2·latent, H/f, W/f]` (before quant_conv). */
export class Encoder extends Frozen {
  readonly convIn: Conv;
  readonly downBlocks: ModuleList<ResampleBlock>;
  readonly midBlock: MidBlock;
  readonly convNormOut: Norm;
  readonly convOut: Conv;

  constructor(cfg: AutoencoderKLConfig, init: VaeInit) {
    super();
    const boc = cfg.blockOutChannels;
    const g = cfg.normNumGroups;
    this.convIn = this.registerModule('conv_in', new Conv(cfg.inChannels, boc[0]!, 3, init, 1, 1));
    this.downBlocks = this.registerModule('down_blocks', new ModuleList<ResampleBlock>());
    let out = boc[0]!;
    boc.forEach((c, i) => {
      const cin = out;
      out = c;
      this.downBlocks.push(new ResampleBlock(cin, out, cfg.layersPerBlock, g, i < boc.length - 1 ? 'down' : null, init));
    });
    this.midBlock = this.registerModule('mid_block', new MidBlock(boc.at(-1)!, g, cfg.midBlockAddAttention ?? true, init));
    this.convNormOut = this.registerModule('conv_norm_out', new Norm(g, boc.at(-1)!, init));
    this.convOut = this.registerModule('conv_out', new Conv(boc.at(-1)!, 2 * cfg.latentChannels, 3, init, 1, 1));
  }

  forward(x: Tensor): Tensor {
    let h = this.convIn.forward(x);
    for (const b of this.downBlocks.items) h = step(h, (t) => b.forward(t), true);
    h = step(h, (t) => this.midBlock.forward(t), true);
    h = step(h, (t) => normSilu(this.convNormOut, t), true);
    return step(h, (t) => this.convOut.forward(t), true);
  }
}

/** The decoder: `[N, latent, h, w]` (after post_quant_conv) → `[N, 3, h·f, w·f]`. */
export class Decoder extends Frozen {
  readonly convIn: Conv;
  readonly midBlock: MidBlock;
  readonly upBlocks: ModuleList<ResampleBlock>;
  readonly convNormOut: Norm;
  readonly convOut: Conv;

  constructor(cfg: AutoencoderKLConfig, init: VaeInit) {
    super();
    const boc = cfg.blockOutChannels;
    const rev = [...boc].reverse();
    const g = cfg.normNumGroups;
    this.convIn = this.registerModule('conv_in', new Conv(cfg.latentChannels, boc.at(-1)!, 3, init, 1, 1));
    this.midBlock = this.registerModule('mid_block', new MidBlock(boc.at(-1)!, g, cfg.midBlockAddAttention ?? true, init));
    this.upBlocks = this.registerModule('up_blocks', new ModuleList<ResampleBlock>());
    let out = rev[0]!;
    rev.forEach((c, i) => {
      const cin = out;
      out = c;
      this.upBlocks.push(new ResampleBlock(cin, out, cfg.layersPerBlock + 1, g, i < rev.length - 1 ? 'up' : null, init));
    });
    this.convNormOut = this.registerModule('conv_norm_out', new Norm(g, boc[0]!, init));
    this.convOut = this.registerModule('conv_out', new Conv(boc[0]!, cfg.outChannels, 3, init, 1, 1));
  }

  forward(z: Tensor): Tensor {
    let h = this.convIn.forward(z);
    h = step(h, (t) => this.midBlock.forward(t), true);
    for (const b of this.upBlocks.items) h = step(h, (t) => b.forward(t), true);
    h = step(h, (t) => normSilu(this.convNormOut, t), true);
    return step(h, (t) => this.convOut.forward(t), true);
  }
}

/** Mean and log-variance of the diagonal Gaussian posterior, `[N, C, h, w]` each. */
export interface Posterior {
  mean: Tensor;
  /** Clamped to [−30, 20]. */
  logvar: Tensor;
}

/** Options of {@link AutoencoderKL.random} / {@link AutoencoderKL.empty}. */
export interface VaePlacement {
  device?: string;
  dtype?: DType;
}

/**
 * diffusers `AutoencoderKL` (REFERENCE_SPEC §5.11). Images are `[N, 3, H, W]` in [−1, 1] with
 * `H, W` multiples of {@link downFactor}; latents `[N, latentChannels, H/f, W/f]` (unscaled: the
 * scaling factor is applied by `latent-space.ts`).
 */
export class AutoencoderKL extends Frozen {
  readonly config: AutoencoderKLConfig;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quantConv: Conv | null;
  readonly postQuantConv: Conv | null;
  readonly dtype: DType;
  readonly device: string;

  constructor(config: AutoencoderKLConfig, init: VaeInit) {
    super();
    this.config = validateVaeConfig({ ...config, blockOutChannels: [...config.blockOutChannels] });
    this.dtype = init.dtype ?? 'float32';
    this.device = init.device ?? 'cpu';
    if (!['float32', 'float16', 'bfloat16', 'float64'].includes(this.dtype)) throw new OptionError('VAE dtype', 'float32, float16, bfloat16 or float64', this.dtype);
    const lc = config.latentChannels;
    this.encoder = this.registerModule('encoder', new Encoder(this.config, init));
    this.decoder = this.registerModule('decoder', new Decoder(this.config, init));
    this.quantConv = config.useQuantConv ?? true ? this.registerModule('quant_conv', new Conv(2 * lc, 2 * lc, 1, init)) : null;
    this.postQuantConv = config.usePostQuantConv ?? true ? this.registerModule('post_quant_conv', new Conv(lc, lc, 1, init)) : null;
    this.eval();
  }

  /** A VAE with PyTorch's default random initialisation from `seed` (tests, demos). */
  static random(config: AutoencoderKLConfig, seed = 0, o: VaePlacement = {}): AutoencoderKL {
    return new AutoencoderKL(config, { random: new Generator(seed), device: o.device, dtype: o.dtype });
  }

  /** A VAE with uninitialised parameters, to be filled by `loadStateDict`. */
  static empty(config: AutoencoderKLConfig, o: VaePlacement = {}): AutoencoderKL {
    return new AutoencoderKL(config, { random: null, device: o.device, dtype: o.dtype });
  }

  /** Spatial downsampling factor image → latent (8 for SDXL). */
  get downFactor(): number {
    return downFactor(this.config);
  }

  /** `x` cast to this VAE's dtype and device (a new tensor; the caller disposes it). */
  private place(x: Tensor): Tensor {
    return x.dtype === this.dtype && x.device === this.device ? x.clone() : x.to({ dtype: this.dtype, device: this.device });
  }

  private checkImage(x: Tensor): void {
    const f = this.downFactor;
    if (x.ndim !== 4 || x.size(1) !== this.config.inChannels || x.size(2) % f !== 0 || x.size(3) % f !== 0) {
      throw new OptionError('VAE input', `[N, ${this.config.inChannels}, H, W] with H and W multiples of ${f}`, `[${x.shape.join(', ')}]`);
    }
  }

  /** Encoder moments (after quant_conv): `[N, 3, H, W]` → `[N, 2·latent, H/f, W/f]`, in the VAE dtype. */
  encodeMoments(x: Tensor): Tensor {
    this.checkImage(x);
    return noGrad(() => {
      let h = this.place(x);
      h = step(h, (t) => this.encoder.forward(t), true);
      if (this.quantConv) h = step(h, (t) => this.quantConv!.forward(t), true);
      return h;
    });
  }

  /** The posterior of `x`: mean and clamped log-variance, float32. */
  encode(x: Tensor): Posterior {
    const m = this.encodeMoments(x);
    return noGrad(() => posteriorOf(m, true));
  }

  /** Decode unscaled latents `[N, latent, h, w]` → images `[N, 3, h·f, w·f]` in the VAE dtype. */
  decode(z: Tensor): Tensor {
    if (z.ndim !== 4 || z.size(1) !== this.config.latentChannels) {
      throw new OptionError('VAE latents', `[N, ${this.config.latentChannels}, h, w]`, `[${z.shape.join(', ')}]`);
    }
    return noGrad(() => {
      let h = this.place(z);
      if (this.postQuantConv) h = step(h, (t) => this.postQuantConv!.forward(t), true);
      return step(h, (t) => this.decoder.forward(t), true);
    });
  }
}

/**
 * Split moments `[N, 2C, h, w]` into the posterior (float32; `logvar` clamped to [−30, 20]).
 * With `consume` the moments tensor is disposed.
 */
export function posteriorOf(moments: Tensor, consume = false): Posterior {
  const C = moments.size(1) / 2;
  const f = moments.float();
  if (consume) moments.dispose();
  const mean = f.narrow(1, 0, C).contiguous();
  const lv = f.narrow(1, C, C);
  const logvar = lv.clamp(-30, 20);
  lv.dispose();
  f.dispose();
  return { mean, logvar };
}

/**
 * A posterior sample `mean + exp(logvar/2)·ε` (float32), ε ~ N(0, 1) drawn from `generator` on its
 * device (CPU by default) in float32, as `torch.randn(mean.shape, generator=g)`.
 */
export function samplePosterior(p: Posterior, generator?: Generator): Tensor {
  return noGrad(() => {
    const eps0 = randn(p.mean.shape, generator, { device: generator?.device ?? 'cpu' });
    const eps = eps0.device === p.mean.device ? eps0 : eps0.to({ device: p.mean.device });
    if (eps !== eps0) eps0.dispose();
    const half = p.logvar.mul(0.5);
    const std = half.exp();
    half.dispose();
    eps.mul_(std);
    std.dispose();
    eps.add_(p.mean);
    return eps;
  });
}
