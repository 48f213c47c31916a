/**
 * Standard layers with PyTorch's parameter names and default initialisations
 * (kaiming-uniform(a=√5) weights and U(±1/√fan_in) biases for Linear/Conv; ones/zeros for norms).
 */
import {
  conv2d,
  conv3d,
  dropout,
  empty,
  Generator,
  groupNorm,
  groupNormAct,
  groupNormActPair,
  type GroupNormActOptions,
  layerNorm,
  linear,
  noGrad,
  ones,
  tidy,
  zeros,
  type ConvOptions,
  type Tensor,
} from '../engine/index.ts';
import { Module } from './module.ts';

/** A module whose forward maps one tensor to one tensor. */
export interface Layer {
  forward(x: Tensor): Tensor;
}

let initGenerator = new Generator(0);

/** Re-seed the generator used for parameter initialisation (models built after are reproducible). */
export function setInitSeed(seed: number): void {
  initGenerator = new Generator(seed);
}

/** The generator used for parameter initialisation. */
export function getInitGenerator(): Generator {
  return initGenerator;
}

export interface InitOptions {
  device?: string;
  /** Initialise weights and biases to zero (the reference's `zero_module`). */
  zeroInit?: boolean;
}

/** A new tensor filled with U(-bound, bound) from the init generator. */
function uniformParam(shape: number[], bound: number, device?: string): Tensor {
  const t = empty(shape);
  noGrad(() => t.uniform_(-bound, bound, initGenerator));
  if (device === undefined || device === 'cpu') return t;
  const moved = t.to({ device });
  t.dispose();
  return moved;
}

function initWeightAndBias(m: Module & { registerParam(n: string, t: Tensor): Tensor }, wShape: number[], fanIn: number, bias: boolean, o: InitOptions): void {
  const bound = 1 / Math.sqrt(fanIn);
  if (o.zeroInit) {
    m.registerParam('weight', zeros(wShape, { device: o.device }));
    if (bias) m.registerParam('bias', zeros([wShape[0]!], { device: o.device }));
    return;
  }
  // kaiming_uniform_(a=√5): gain √(2/(1+5)), bound = gain·√(3/fan_in) = 1/√fan_in
  m.registerParam('weight', uniformParam(wShape, bound, o.device));
  if (bias) m.registerParam('bias', uniformParam([wShape[0]!], bound, o.device));
}

abstract class ParamModule extends Module {
  registerParam(n: string, t: Tensor): Tensor {
    return this.registerParameter(n, t);
  }
}

/** y = x Wᵀ + b. Shape: `[..., inFeatures]` → `[..., outFeatures]`. */
export class Linear extends ParamModule implements Layer {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    o: InitOptions & { bias?: boolean } = {},
  ) {
    super();
    initWeightAndBias(this, [outFeatures, inFeatures], inFeatures, o.bias ?? true, o);
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.param('weight'), this.maybeParam('bias'));
  }
}

export interface ConvLayerOptions extends InitOptions, ConvOptions {
  bias?: boolean;
}

/** 2-D convolution. Shape: `[N, C_in, H, W]` → `[N, C_out, H', W']`. */
export class Conv2d extends ParamModule implements Layer {
  readonly opts: ConvOptions;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    o: ConvLayerOptions = {},
  ) {
    super();
    const groups = o.groups ?? 1;
    this.opts = { stride: o.stride, padding: o.padding, dilation: o.dilation, groups };
    initWeightAndBias(this, [outChannels, inChannels / groups, kernelSize, kernelSize], (inChannels / groups) * kernelSize * kernelSize, o.bias ?? true, o);
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.param('weight'), this.maybeParam('bias'), this.opts);
  }
}

/** 3-D convolution. Shape: `[N, C_in, D, H, W]` → `[N, C_out, D', H', W']`. */
export class Conv3d extends ParamModule implements Layer {
  readonly opts: ConvOptions;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number | [number, number, number],
    o: ConvLayerOptions = {},
  ) {
    super();
    const groups = o.groups ?? 1;
    const k = typeof kernelSize === 'number' ? [kernelSize, kernelSize, kernelSize] : kernelSize;
    this.opts = { stride: o.stride, padding: o.padding, dilation: o.dilation, groups };
    initWeightAndBias(this, [outChannels, inChannels / groups, ...k], (inChannels / groups) * k[0] * k[1] * k[2], o.bias ?? true, o);
  }

  forward(x: Tensor): Tensor {
    return conv3d(x, this.param('weight'), this.maybeParam('bias'), this.opts);
  }
}

/** Group normalisation. Shape: `[N, C, *]` → same. */
export class GroupNorm extends ParamModule implements Layer {
  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    readonly eps = 1e-5,
    o: { device?: string } = {},
  ) {
    super();
    if (numChannels % numGroups !== 0) throw new RangeError(`GroupNorm: ${numChannels} channels are not divisible by ${numGroups} groups`);
    this.registerParam('weight', ones([numChannels], { device: o.device }));
    this.registerParam('bias', zeros([numChannels], { device: o.device }));
  }

  /**
   * Normalises in float32 whatever the input's type, as torch.autocast does for group_norm (and the
   * reference's GroupNorm32): under bf16/fp16 autocast the output is float32, and the next
   * convolution casts it down again. (libtorch 1.13's bf16 SiLU is also slower than float32's.)
   */
  forward(x: Tensor): Tensor {
    if (x.dtype === 'float32' || x.dtype === 'float64') return groupNorm(x, this.numGroups, this.param('weight'), this.param('bias'), this.eps);
    return tidy(() => groupNorm(x.to({ dtype: 'float32', copy: false }), this.numGroups, this.param('weight'), this.param('bias'), this.eps));
  }

  /**
   * This normalisation followed by an optional per-sample scale-shift and SiLU, fused into one
   * operator where possible (`groupNormAct`): `act((GN(x)·weight + bias)·(1 + scale) + shift)`.
   * Shapes: x `[N, C, *]`, scale/shift `[N, C]`. Computed in float32 for low-precision inputs, like forward.
   */
  forwardAct(x: Tensor, o: GroupNormActOptions = {}): Tensor {
    return tidy(() => {
      const wide = x.dtype === 'float32' || x.dtype === 'float64' ? x : x.to({ dtype: 'float32', copy: false });
      // (no operator call when the dtype already matches: this runs ≈ 30 times per U-Net forward)
      const cast = (t: Tensor | null | undefined) => (!t ? null : t.dtype === wide.dtype ? t : t.to({ dtype: wide.dtype, copy: false }));
      return groupNormAct(wide, this.numGroups, this.param('weight'), this.param('bias'), this.eps, { scale: cast(o.scale), shift: cast(o.shift), silu: o.silu, layout: o.layout });
    });
  }

  /**
   * `forwardAct(cat([a, b], 1), {…o, layout: 'plain-to-blocked'})` reading a and b in place
   * (`groupNormActPair`; float32, the blocked chain's shapes). Shapes: a `[N, C1, H, W]`,
   * b `[N, C2, H, W]` → `[N, (C1 + C2)/16, H, W, 16]`.
   */
  forwardActPair(a: Tensor, b: Tensor, o: Omit<GroupNormActOptions, 'layout'> = {}): Tensor {
    return groupNormActPair(a, b, this.numGroups, this.param('weight'), this.param('bias'), this.eps, o);
  }
}

/** Layer normalisation over the last dimension(s). */
export class LayerNorm extends ParamModule implements Layer {
  constructor(
    readonly normalizedShape: number[],
    readonly eps = 1e-5,
    o: { device?: string } = {},
  ) {
    super();
    this.registerParam('weight', ones(normalizedShape, { device: o.device }));
    this.registerParam('bias', zeros(normalizedShape, { device: o.device }));
  }

  forward(x: Tensor): Tensor {
    return layerNorm(x, this.normalizedShape, this.param('weight'), this.param('bias'), this.eps);
  }
}

export class Dropout extends Module implements Layer {
  constructor(readonly p = 0.5) {
    super();
  }

  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}

export class SiLU extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return x.silu();
  }
}

export class Identity extends Module implements Layer {
  forward(x: Tensor): Tensor {
    return x.clone();
  }
}

/** Applies its children in order; children are named "0", "1", … like PyTorch. */
export class Sequential extends Module implements Layer {
  readonly layers: (Module & Layer)[];

  constructor(...layers: (Module & Layer)[]) {
    super();
    this.layers = layers;
    layers.forEach((l, i) => this.registerModule(String(i), l));
  }

  forward(x: Tensor): Tensor {
    let h = x;
    for (const l of this.layers) {
      const next = l.forward(h);
      if (h !== x) h.dispose();
      h = next;
    }
    return h === x ? x.clone() : h;
  }
}

/** A list of modules named "0", "1", …; iterate `items`. */
export class ModuleList<M extends Module = Module> extends Module {
  readonly items: M[] = [];

  constructor(items: M[] = []) {
    super();
    for (const m of items) this.push(m);
  }

  push(m: M): M {
    this.registerModule(String(this.items.length), m);
    this.items.push(m);
    return m;
  }

  get length(): number {
    return this.items.length;
  }
}
