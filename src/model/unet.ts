/**
 * The FDM video U-Net (REFERENCE_SPEC §4): per-frame 2-D ResBlocks with scale-shift time
 * conditioning and factorized temporal/spatial attention with relative positions. Parameter names
 * equal the reference's state-dict keys (§12), so reference checkpoints load directly.
 */
import { arange, blockedConvChain, cat, conv1x1Add, conv2d, conv3x3Blocked, interpolate, linear, tensor, tidy, unblockAdd, zeros, type Tensor } from '../engine/index.ts';
import { Conv2d, Dropout, GroupNorm, Linear, Module, ModuleList, Sequential, SiLU } from '../nn/index.ts';
import { attentionRates, resolveUNetConfig, type UNetConfig } from './config.ts';
import { FactorizedAttentionBlock, relativePositionFeatures, relativeTermsOf, type TemporalContext } from './attention.ts';

/**
 * Sinusoidal timestep embedding, cosines first (§4.2). Shape: `[N]` → `[N, dim]`.
 * f_k = exp(−ln(10000)·k/half), k = 0…half−1; zero-padded by one column when dim is odd.
 */
export function timestepEmbedding(t: Tensor, dim: number, maxPeriod = 10000): Tensor {
  return tidy(() => {
    const half = Math.floor(dim / 2);
    const freqs = arange(0, half, 1, { dtype: 'float32', device: t.device }).mul(-Math.log(maxPeriod) / half).exp();
    const args = t.to({ dtype: 'float32' }).unsqueeze(1).mul(freqs.unsqueeze(0));
    const parts = [args.cos(), args.sin()];
    if (dim % 2 === 1) parts.push(args.narrow(1, 0, 1).mul(0));
    return cat(parts, 1);
  });
}

/** ResBlock (§4.2). Shape: x `[N, C_in, H, W]`, emb `[N, E]` → `[N, C_out, H, W]`. */
export class ResBlock extends Module {
  readonly inLayers: Sequential;
  readonly embLayers: Sequential;
  readonly outNorm: GroupNorm;
  readonly outDropout: Dropout;
  readonly outConv: Conv2d;
  readonly skip: Conv2d | null; // 1×1, when the channel count changes

  constructor(
    readonly cIn: number,
    readonly cOut: number,
    embDim: number,
    dropout: number,
    readonly useScaleShiftNorm: boolean,
    device?: string,
  ) {
    super();
    this.inLayers = this.registerModule('in_layers', new Sequential(new GroupNorm(32, cIn, 1e-5, { device }), new SiLU(), new Conv2d(cIn, cOut, 3, { padding: 1, device })));
    this.embLayers = this.registerModule('emb_layers', new Sequential(new SiLU(), new Linear(embDim, useScaleShiftNorm ? 2 * cOut : cOut, { device })));
    this.outNorm = new GroupNorm(32, cOut, 1e-5, { device });
    this.outDropout = new Dropout(dropout);
    this.outConv = new Conv2d(cOut, cOut, 3, { padding: 1, device, zeroInit: true });
    this.registerModule('out_layers', new Sequential(this.outNorm, new SiLU(), this.outDropout, this.outConv));
    this.skip = cIn === cOut ? null : this.registerModule('skip_connection', new Conv2d(cIn, cOut, 1, { device }));
  }

  /**
   * x `[N, C_in, H, W]`, emb `[N, E]` → `[N, C_out, H, W]`. `embOut` is emb_layers(emb) `[N, 2C|C]`
   * when the caller already has it (`EmbeddingTerms` computes every ResBlock's at once). x may come
   * as the two halves of a skip connection's concatenation `[h, skip]` (`SkipPair`): the blocked
   * chain then reads them in place, anything else concatenates them first.
   */
  forward(input: Tensor | SkipPair, emb: Tensor, embOut?: Tensor): Tensor {
    return tidy(() => {
      // GN → SiLU → conv, with the normalisation and SiLU fused (GroupNorm.forwardAct).
      const [inNorm, , inConv] = this.inLayers.layers as [GroupNorm, SiLU, Conv2d];
      const e = embOut ?? this.embLayers.forward(emb); // [N, 2C|C]
      if (this.useScaleShiftNorm && blockedInput(input, this.cIn, this.cOut)) return this.#forwardBlocked(input, e);
      const x = input instanceof Array ? cat(input, 1) : input;
      let h = inConv.forward(inNorm.forwardAct(x, { silu: true }));
      if (this.useScaleShiftNorm) {
        const [scale, shift] = e.chunk(2, 1) as [Tensor, Tensor];
        h = this.outNorm.forwardAct(h, { scale, shift, silu: true });
      } else {
        h = this.outNorm.forwardAct(h.add(e.unsqueeze(2).unsqueeze(3)), { silu: true });
      }
      h = this.outConv.forward(this.outDropout.forward(h));
      return (this.skip ? this.skip.forward(x) : x).add(h);
    });
  }

  /**
   * The same computation with the activations between the two normalisations and convolutions in
   * oneDNN's blocked layout (`blockedConvChain`): the normalisations write what the Winograd
   * convolutions read, and the residual addition reads their output — no layout reorders.
   */
  #forwardBlocked(x: Tensor | SkipPair, e: Tensor): Tensor {
    const [inNorm, , inConv] = this.inLayers.layers as [GroupNorm, SiLU, Conv2d];
    const [scale, shift] = e.chunk(2, 1) as [Tensor, Tensor];
    const normed = x instanceof Array ? inNorm.forwardActPair(x[0], x[1], { silu: true }) : inNorm.forwardAct(x, { silu: true, layout: 'plain-to-blocked' });
    let h = conv3x3Blocked(normed, inConv.param('weight'), inConv.maybeParam('bias'));
    h = this.outNorm.forwardAct(h, { scale, shift, silu: true, layout: 'blocked' });
    h = conv3x3Blocked(this.outDropout.forward(h), this.outConv.param('weight'), this.outConv.maybeParam('bias'));
    return unblockAdd(h, this.#residual(x));
  }

  /** skip_connection(x) (or x itself), for x given whole or as a skip pair. */
  #residual(x: Tensor | SkipPair): Tensor {
    if (!(x instanceof Array)) return this.skip ? this.skip.forward(x) : x;
    const skip = this.skip;
    if (!skip) return cat(x, 1);
    // A 1×1 convolution of [a, b] is W_a·a + W_b·b + bias: two products, the second adding the first.
    return tidy(() => {
      const [a, b] = x;
      const [N, C1, H, W] = a.shape as [number, number, number, number];
      const w = skip.param('weight'); // [O, C1 + C2, 1, 1]
      const first = conv2d(a, w.narrow(1, 0, C1), skip.maybeParam('bias'));
      const rows = (t: Tensor) => t.reshape([N, t.shape[1]!, H * W]);
      const wb = w.narrow(1, C1, b.shape[1]!).reshape([w.shape[0]!, b.shape[1]!, 1]);
      return conv1x1Add(rows(b), wb, null, rows(first)).reshape([N, w.shape[0]!, H, W]);
    });
  }
}

/** The two halves of a skip connection's concatenation `cat([h, skip], 1)`, each `[N, C_i, H, W]`. */
export type SkipPair = [Tensor, Tensor];

/** Can x (whole, or a skip pair whose halves have channel counts in multiples of 16) take the blocked chain? */
function blockedInput(x: Tensor | SkipPair, cIn: number, cOut: number): boolean {
  if (!(x instanceof Array)) return blockedConvChain(x, cIn, cOut);
  const [a, b] = x;
  return blockedConvChain(a, cIn, cOut) && a.shape[1]! % 16 === 0 && b.shape[1]! % 16 === 0 && b.dtype === a.dtype && b.device === a.device;
}

/**
 * The emb_layers outputs (SiLU → Linear, §4.2) of many ResBlocks from one product: every block
 * reads the same time embedding, so their weights are stacked and multiplied once — one SiLU and
 * one matrix product instead of three small operators per block, whose fixed costs exceed their
 * arithmetic (≈ 0.1 ms each against microseconds of work). Shape: emb `[N, E]` → per block
 * `[N, 2C|C]`, column ranges of one `[N, ΣC]` matrix.
 */
export class EmbeddingTerms {
  private constructor(
    /** Every block's output side by side, `[N, ΣC]`. */
    readonly all: Tensor,
    readonly columns: Map<ResBlock, { start: number; width: number }>,
  ) {}

  /**
   * Computes the outputs of `blocks` for emb `[N, E]`; with `repeat` > 1 each row serves `repeat`
   * consecutive rows of the result (`[N·repeat, ΣC]`): the video U-Net's frames share their video's
   * embedding, so the product runs once per video rather than once per frame.
   */
  static of(blocks: ResBlock[], emb: Tensor, repeat = 1, owner?: Module): EmbeddingTerms {
    const columns = new Map<ResBlock, { start: number; width: number }>();
    let start = 0;
    const lins = blocks.map((b) => {
      const lin = b.embLayers.layers[1] as Linear;
      const width = lin.param('weight').shape[0]!;
      columns.set(b, { start, width });
      start += width;
      return lin;
    });
    const all = tidy(() => {
      // The concatenated weights are kept by `owner` between no-grad calls (sampling).
      const joined = (name: 'weight' | 'bias') => {
        const parts = lins.map((l) => l.param(name));
        return owner ? owner.derived(`emb_layers.${name}`, parts, () => cat(parts, 0)) : cat(parts, 0);
      };
      const w = joined('weight'); // [ΣC, E]
      const bias = joined('bias');
      const perRow = linear(emb.silu(), w, bias); // [N, ΣC]
      if (repeat === 1) return perRow;
      const [n, width] = perRow.shape as [number, number];
      return perRow.unsqueeze(1).expand([n, repeat, width]).reshape([n * repeat, width]);
    });
    return new EmbeddingTerms(all, columns);
  }

  /** The same terms for the rows in `index` (int64 `[N']`); `span`: those rows are start…start+length−1 (a view then). */
  rows(index: Tensor, span?: { start: number; length: number }): EmbeddingTerms {
    return new EmbeddingTerms(span ? this.all.narrow(0, span.start, span.length) : this.all.indexSelect(0, index), this.columns);
  }

  /** Block b's emb_layers output `[N, 2C|C]` (a view), or undefined for a block not included. */
  get(b: ResBlock): Tensor | undefined {
    const c = this.columns.get(b);
    return c ? this.all.narrow(1, c.start, c.width) : undefined;
  }
}

/** Strided 3×3 convolution halving H and W (§4.2). Parameter `op`. */
export class Downsample extends Module {
  readonly op: Conv2d;
  constructor(channels: number, device?: string) {
    super();
    this.op = this.registerModule('op', new Conv2d(channels, channels, 3, { stride: 2, padding: 1, device }));
  }
  forward(x: Tensor): Tensor {
    return this.op.forward(x);
  }
}

/** Nearest ×2 upsampling then a 3×3 convolution (§4.2). Parameter `conv`. */
export class Upsample extends Module {
  readonly conv: Conv2d;
  constructor(channels: number, device?: string) {
    super();
    this.conv = this.registerModule('conv', new Conv2d(channels, channels, 3, { padding: 1, device }));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.conv.forward(interpolate(x, { scale: 2, mode: 'nearest' })));
  }
}

type BlockLayer = ResBlock | FactorizedAttentionBlock | Downsample | Upsample | Conv2d;

/**
 * Where a forward pass stops computing frames whose output nobody reads: the last temporal
 * attention (frames are independent from there on) projects only the rows `rows` keeps, and
 * `embedding` then gives the per-frame time embedding of those frames.
 */
export interface FrameCut {
  /** The rows (frames) still wanted of a `[N, …]` tensor: `[N', …]`. */
  rows(t: Tensor): Tensor;
  /** Called once the features are cut: the time embedding (and precomputed terms) of the kept frames. */
  embedding(): { emb: Tensor; embTerms?: EmbeddingTerms };
}

/** A block of the U-Net: its layers get the time embedding / temporal context they need. */
export class UNetBlock extends Module {
  readonly layers: BlockLayer[] = [];

  add(layer: BlockLayer): this {
    this.registerModule(String(this.layers.length), layer);
    this.layers.push(layer);
    return this;
  }

  /**
   * x `[N, C, H, W]`, emb `[N, E]` → `[N', C', H', W']`. With `cut`, the attention layer at index
   * `cut.layer` runs its temporal half on all N frames but projects only the frames
   * `cut.apply.rows` keeps (N' ≤ N); its spatial half and every later layer see those frames only.
   * `embTerms` holds the ResBlocks' emb_layers outputs when precomputed (`EmbeddingTerms`).
   */
  forward(x: Tensor | SkipPair, emb: Tensor, ctx: TemporalContext, cut?: { layer: number; apply: FrameCut }, embTerms?: EmbeddingTerms): Tensor {
    return tidy(() => {
      let e = emb;
      let terms = embTerms;
      // A skip pair goes whole to a leading ResBlock (which reads it in place), else concatenated.
      const head = this.layers[0];
      const pairToHead = x instanceof Array && head instanceof ResBlock;
      let h: Tensor = pairToHead ? head.forward(x, e, terms?.get(head)) : x instanceof Array ? cat(x, 1) : x;
      this.layers.forEach((l, i) => {
        if (i === 0 && pairToHead) return;
        if (l instanceof ResBlock) h = l.forward(h, e, terms?.get(l));
        else if (l instanceof FactorizedAttentionBlock) {
          if (cut && cut.layer === i) {
            h = l.temporalAttention.temporal(h, ctx, cut.apply.rows);
            ({ emb: e, embTerms: terms } = cut.apply.embedding());
            h = l.spatialAttention.spatial(h);
          } else h = l.forward(h, ctx);
        } else h = l.forward(h);
      });
      return h === x ? x.clone() : h;
    });
  }
}

/** Inputs of one forward pass (§4.1). */
export interface UNetInputs {
  /** Noisy video `[B, T, C, H, W]`. */
  x: Tensor;
  /** Clean video `[B, T, C, H, W]`; only observed frames are used. */
  x0: Tensor;
  /** Diffusion time per video `[B]` (already rescaled to the 1000-step scale when configured). */
  timesteps: Tensor;
  /** Frame positions `[B, T]` (only differences matter). */
  frameIndices: Tensor;
  /** Observed-frame mask `[B, T]` or `[B, T, 1, 1, 1]`, values in {0, 1}. */
  obsMask: Tensor;
  /** Latent-frame mask, same shape as obsMask. */
  latentMask: Tensor;
  /**
   * Frames whose output the caller reads, `[B, T]` (nonzero = read); default all. The others come
   * back as zeros: after the last temporal attention every layer treats frames independently, so
   * those layers run only on the frames read (samplers overwrite observed frames, losses mask
   * them — the work on them there is wasted). The frames read are computed exactly as without it.
   */
  outputMask?: Tensor;
}

/**
 * The video U-Net. Forward: `UNetInputs` → `[B, T, C_out, H, W]` (C_out = C, or 2C with learned sigma).
 */
export class UNetVideoModel extends Module {
  readonly config: UNetConfig;
  readonly timeEmbed: Sequential;
  readonly inputBlocks: ModuleList<UNetBlock>;
  readonly middleBlock: UNetBlock;
  readonly outputBlocks: ModuleList<UNetBlock>;
  readonly out: Sequential;
  readonly outChannels: number;
  readonly embDim: number;
  /**
   * The last temporal attention in forward order, as (index into [...inputBlocks, middleBlock,
   * ...outputBlocks], layer index in that block); null without attention. Frames are independent
   * after it, which `UNetInputs.outputMask` exploits.
   */
  readonly #lastTemporal: { block: number; layer: number } | null;
  /** Every attention block, in forward order. */
  readonly #attentionBlocks: FactorizedAttentionBlock[] = [];
  /** Every ResBlock, in forward order. */
  readonly #resBlocks: ResBlock[] = [];

  constructor(partial: Partial<UNetConfig> = {}, opts: { device?: string } = {}) {
    super();
    const cfg = resolveUNetConfig(partial);
    this.config = cfg;
    const device = opts.device;
    const mc = cfg.modelChannels;
    const E = 4 * mc;
    this.embDim = E;
    this.outChannels = cfg.learnSigma ? 2 * cfg.inChannels : cfg.inChannels;
    const rates = attentionRates(cfg);
    const mult = cfg.channelMult!;
    const headsUp = cfg.numHeadsUpsample === -1 ? cfg.numHeads : cfg.numHeadsUpsample;

    this.timeEmbed = this.registerModule('time_embed', new Sequential(new Linear(mc, E, { device }), new SiLU(), new Linear(E, E, { device })));

    this.inputBlocks = this.registerModule('input_blocks', new ModuleList<UNetBlock>());
    this.inputBlocks.push(new UNetBlock().add(new Conv2d(cfg.inChannels + 1, mc, 3, { padding: 1, device })));
    const skipChannels = [mc];
    let ch = mc;
    let ds = 1;
    mult.forEach((m, level) => {
      for (let r = 0; r < cfg.numResBlocks; r++) {
        const block = new UNetBlock().add(new ResBlock(ch, m * mc, E, cfg.dropout, cfg.useScaleShiftNorm, device));
        ch = m * mc;
        if (rates.has(ds)) block.add(new FactorizedAttentionBlock(ch, cfg.numHeads, E, device));
        this.inputBlocks.push(block);
        skipChannels.push(ch);
      }
      if (level !== mult.length - 1) {
        this.inputBlocks.push(new UNetBlock().add(new Downsample(ch, device)));
        skipChannels.push(ch);
        ds *= 2;
      }
    });

    this.middleBlock = this.registerModule(
      'middle_block',
      new UNetBlock()
        .add(new ResBlock(ch, ch, E, cfg.dropout, cfg.useScaleShiftNorm, device))
        .add(new FactorizedAttentionBlock(ch, cfg.numHeads, E, device))
        .add(new ResBlock(ch, ch, E, cfg.dropout, cfg.useScaleShiftNorm, device)),
    );

    this.outputBlocks = this.registerModule('output_blocks', new ModuleList<UNetBlock>());
    for (let level = mult.length - 1; level >= 0; level--) {
      const m = mult[level]!;
      for (let r = 0; r <= cfg.numResBlocks; r++) {
        const skip = skipChannels.pop()!;
        const block = new UNetBlock().add(new ResBlock(ch + skip, m * mc, E, cfg.dropout, cfg.useScaleShiftNorm, device));
        ch = m * mc;
        if (rates.has(ds)) block.add(new FactorizedAttentionBlock(ch, headsUp, E, device));
        if (level > 0 && r === cfg.numResBlocks) {
          block.add(new Upsample(ch, device));
          ds /= 2;
        }
        this.outputBlocks.push(block);
      }
    }

    this.out = this.registerModule(
      'out',
      new Sequential(new GroupNorm(32, ch, 1e-5, { device }), new SiLU(), new Conv2d(mc, this.outChannels, 3, { padding: 1, device, zeroInit: true })),
    );

    let last: { block: number; layer: number } | null = null;
    this.#blocksInOrder().forEach((b, block) =>
      b.layers.forEach((l, layer) => {
        if (l instanceof FactorizedAttentionBlock) {
          last = { block, layer };
          this.#attentionBlocks.push(l);
        }
        if (l instanceof ResBlock) this.#resBlocks.push(l);
      }),
    );
    this.#lastTemporal = last;
  }

  #blocksInOrder(): UNetBlock[] {
    return [...this.inputBlocks.items, this.middleBlock, ...this.outputBlocks.items];
  }

  /**
   * Indices (int64 `[N']`, into the B·T flattened frames) of the frames to carry past the last
   * temporal attention, or null to carry all of them (no mask, every frame read, or none read —
   * then the full pass keeps every parameter in the graph). `span`: the indices are one
   * contiguous run (e.g. one video's latent frames), so the cut can be a view instead of a copy.
   */
  #framesToKeep(outputMask: Tensor | undefined, B: number, T: number): { index: Tensor; span: { start: number; length: number } | null } | null {
    if (!outputMask || !this.#lastTemporal) return null;
    const m = outputMask.reshape([B * T]).toFloat32Array();
    const keep: number[] = [];
    m.forEach((v, i) => {
      if (v !== 0) keep.push(i);
    });
    if (keep.length === 0 || keep.length === B * T) return null;
    const contiguous = keep[keep.length - 1]! - keep[0]! === keep.length - 1;
    return {
      index: tensor(Int32Array.from(keep), { dtype: 'int64', device: outputMask.device }),
      span: contiguous ? { start: keep[0]!, length: keep.length } : null,
    };
  }

  /** Forward pass (§4.1). Returns `[B, T, C_out, H, W]`. */
  forward(inp: UNetInputs): Tensor {
    return tidy(() => {
      const [B, T, C, H, W] = inp.x.shape as [number, number, number, number, number];
      const obs = inp.obsMask.reshape([B, T, 1, 1, 1]).to({ dtype: inp.x.dtype });
      const lat = inp.latentMask.reshape([B, T, 1, 1, 1]).to({ dtype: inp.x.dtype });
      // Observed frames are replaced by their clean values; an indicator channel marks them.
      const xIn = inp.x.mul(obs.rsub(1)).add(inp.x0.mul(obs));
      const indicator = obs.expand([B, T, 1, H, W]);
      const h0 = cat([xIn, indicator], 2).reshape([B * T, C + 1, H, W]);

      // (casts are no-ops for float32; they let a float64 model run in float64 throughout)
      const embVideo = this.timeEmbed.forward(timestepEmbedding(inp.timesteps, this.config.modelChannels).to({ dtype: inp.x.dtype, copy: false })); // [B, E]
      const emb = embVideo.unsqueeze(1).expand([B, T, this.embDim]).reshape([B * T, this.embDim]);

      // Frames may attend to each other only within the same group: (observed ∪ latent) or unused.
      const m = obs.add(lat).clamp(0, 1).reshape([B, T]);
      const same = m.unsqueeze(2).eq(m.unsqueeze(1)); // [B, T, T]
      const maskBias = zeros([B, 1, T, T], { device: inp.x.device, dtype: inp.x.dtype }).maskedFill(same.logicalNot().reshape([B, 1, T, T]), -Infinity);
      const phi = relativePositionFeatures(inp.frameIndices).to({ dtype: inp.x.dtype, copy: false });
      // Every temporal layer's relative-position terms at once (they depend on φ and t only).
      const terms = relativeTermsOf(this.#attentionBlocks, phi, embVideo, this);
      const ctx: TemporalContext = { B, T, phi, emb: embVideo, maskBias, terms };

      // After the last temporal attention only the frames in `keep` are carried on (outputMask).
      const kept = this.#framesToKeep(inp.outputMask, B, T);
      const keep = kept?.index ?? null;
      // Every ResBlock's emb_layers output at once; made here, like the narrowed copies, because
      // they outlive the block that cuts.
      let embTerms = EmbeddingTerms.of(this.#resBlocks, embVideo, T, this);
      // A contiguous run of frames (one video) is cut as a view instead of a copy.
      const span = kept?.span ?? null;
      const pick = (t: Tensor): Tensor => (span ? t.narrow(0, span.start, span.length) : t.indexSelect(0, keep!));
      const embKept = keep ? pick(emb) : null;
      const termsKept = keep ? embTerms.rows(keep, span ?? undefined) : null;
      let narrowed = false;
      let e = emb;
      const cutAt = keep ? this.#lastTemporal : null;
      const cut: FrameCut = {
        rows: pick,
        embedding: () => {
          narrowed = true;
          e = embKept!;
          embTerms = termsKept!;
          return { emb: e, embTerms };
        },
      };
      const run = (block: UNetBlock, index: number, x: Tensor | SkipPair): Tensor =>
        block.forward(x, e, ctx, cutAt?.block === index ? { layer: cutAt.layer, apply: cut } : undefined, embTerms);

      // Skip connections remember whether they were taken before or after the narrowing.
      const skips: { h: Tensor; narrowed: boolean }[] = [];
      let h = h0;
      let index = 0;
      for (const block of this.inputBlocks.items) {
        h = run(block, index++, h);
        skips.push({ h, narrowed });
      }
      h = run(this.middleBlock, index++, h);
      for (const block of this.outputBlocks.items) {
        const s = skips.pop()!;
        h = run(block, index++, [h, narrowed && !s.narrowed ? pick(s.h) : s.h]);
      }
      // Under autocast the last convolution runs in bf16/fp16; losses and samplers see the input's type.
      const [outNorm, , outConv] = this.out.layers as [GroupNorm, SiLU, Conv2d];
      let out = outConv.forward(outNorm.forwardAct(h, { silu: true })).to({ dtype: inp.x.dtype, copy: false });
      if (narrowed) out = zeros([B * T, this.outChannels, H, W], { device: out.device, dtype: out.dtype }).indexCopy(0, keep!, out);
      return out.reshape([B, T, this.outChannels, H, W]);
    });
  }
}

export { resolveUNetConfig };
