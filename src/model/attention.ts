/**
 * Factorized attention of the FDM video U-Net (REFERENCE_SPEC §4.3): temporal attention with a
 * relative-position network (RPE) on q, k and v, masked between frame groups, then spatial
 * attention. Both add their output to the *normalised* input (`y = GN(x) + proj_out(o)`), a
 * reference quirk kept so reference weights load and behave identically.
 *
 * Layout notes (why the code looks the way it does): the U-Net keeps features as
 * `[B·T, C, H, W]`. Temporal attention attends over T for each of the H·W positions; its
 * relative-position terms depend on (video, query frame, key frame) only, so they are
 * contracted with q/k/v by batched matmuls over (video, head, frame) whose inner dimension is
 * the H·W positions — large GEMMs instead of many tiny per-position products, and the
 * `[B, T, T, C]` RPE tensors are never broadcast over positions.
 */
import { batchedMatmul, cat, conv1d, conv1x1Add, fusableAttention, fusedChannelAttention, fusedTemporalAttention, groupNormFrames, keep, linear, stack, tidy, type Tensor } from '../engine/index.ts';
import { Linear, Module, GroupNorm } from '../nn/index.ts';

/**
 * Debugging/inspection hook: while `attentionProbe.temporal` is an array, every temporal
 * attention layer appends a copy of its probabilities `[B, heads, H·W, T(query), T(key)]`.
 * The caller owns (and disposes) the captured tensors.
 */
export const attentionProbe: { temporal: Tensor[] | null } = { temporal: null };

/** Per-(query, key) relative-position features φ(Δ) = (ln(1+max(Δ,0)), ln(1+max(−Δ,0)), 1[Δ=0]). Shape: `[B, T]` → `[B, T, T, 3]`. */
export function relativePositionFeatures(frameIndices: Tensor): Tensor {
  return tidy(() => {
    const f = frameIndices.to({ dtype: 'float32' });
    const T = f.size(1);
    // Δ_ij = f_i − f_j (i = query, j = key)
    const delta = f.unsqueeze(2).sub(f.unsqueeze(1)); // [B, T, T]
    const pos = delta.clampMin(0).log1p();
    const neg = delta.neg().clampMin(0).log1p();
    const zero = delta.eq(0).to({ dtype: 'float32' });
    return cat([pos.unsqueeze(3), neg.unsqueeze(3), zero.unsqueeze(3)], 3).reshape([f.size(0), T, T, 3]);
  });
}

/** Softmax over the last dimension in float32 whatever the logits' type (bf16/fp16 under autocast). */
function softmax32(logits: Tensor): Tensor {
  return (logits.dtype === 'float64' ? logits : logits.to({ dtype: 'float32', copy: false })).softmax(-1);
}

/**
 * The RPE network for one of q, k, v: R_ij = out(SiLU(embed_distances(φ(Δ_ij)) + embed_diffusion_time(emb_i))).
 * Parameter names: `rpe_net.{embed_distances, embed_diffusion_time, out}`.
 */
class RpeNet extends Module {
  readonly embedDistances: Linear;
  readonly embedDiffusionTime: Linear;
  readonly out: Linear;

  constructor(channels: number, embDim: number, device?: string) {
    super();
    this.embedDistances = this.registerModule('embed_distances', new Linear(3, channels, { device }));
    this.embedDiffusionTime = this.registerModule('embed_diffusion_time', new Linear(embDim, channels, { device }));
    this.out = this.registerModule('out', new Linear(channels, channels, { device, zeroInit: true }));
  }

  /** φ `[B, T, T, 3]`, per-video embedding `[B, E]` → R `[B, T, T, C]`. */
  forward(phi: Tensor, emb: Tensor): Tensor {
    return tidy(() => {
      const d = this.embedDistances.forward(phi); // [B, T, T, C]
      const e = this.embedDiffusionTime.forward(emb); // [B, C]; all frames of a video share t
      const z = d.add(e.unsqueeze(1).unsqueeze(1));
      return this.out.forward(z.silu());
    });
  }
}

class RpeWrapper extends Module {
  readonly net: RpeNet;
  constructor(channels: number, embDim: number, device?: string) {
    super();
    this.net = this.registerModule('rpe_net', new RpeNet(channels, embDim, device));
  }
}

/** The relative-position terms R^k, R^q, R^v of one temporal attention layer, each `[B, T, T, C]`. */
export interface RelativeTerms {
  k: Tensor;
  q: Tensor;
  v: Tensor;
}

/** Inputs shared by every temporal attention layer of one forward pass. */
export interface TemporalContext {
  B: number;
  T: number;
  /** φ(Δ) `[B, T, T, 3]`. */
  phi: Tensor;
  /** Per-video time embedding `[B, E]`. */
  emb: Tensor;
  /** Additive mask `[B, 1, T, T]`: 0 where frame groups match, −∞ elsewhere; null = no mask. */
  maskBias: Tensor | null;
  /** The layers' relative-position terms computed ahead (`relativeTermsOf`); a layer not in it computes its own. */
  terms?: Map<FactorizedAttentionBlock, RelativeTerms>;
}

/**
 * One attention layer (`qkv`, `proj_out`, `norm`) over sequences. Parameter names match the
 * reference: `qkv.{weight,bias}` (C→3C, q|k|v blocks, head-major), `proj_out` (zero-init), `norm`.
 */
class AttentionLayer extends Module {
  readonly norm: GroupNorm;
  readonly qkv: Linear;
  readonly projOut: Linear;
  readonly rpe: { q: RpeWrapper; k: RpeWrapper; v: RpeWrapper } | null;

  constructor(
    readonly channels: number,
    readonly heads: number,
    withRpe: boolean,
    embDim: number,
    device?: string,
  ) {
    super();
    if (channels % heads !== 0) throw new RangeError(`attention: ${channels} channels not divisible by ${heads} heads`);
    this.norm = this.registerModule('norm', new GroupNorm(32, channels, 1e-5, { device }));
    this.qkv = this.registerModule('qkv', new Linear(channels, 3 * channels, { device }));
    this.projOut = this.registerModule('proj_out', new Linear(channels, channels, { device, zeroInit: true }));
    this.rpe = withRpe
      ? {
          q: this.registerModule('rpe_q', new RpeWrapper(channels, embDim, device)),
          k: this.registerModule('rpe_k', new RpeWrapper(channels, embDim, device)),
          v: this.registerModule('rpe_v', new RpeWrapper(channels, embDim, device)),
        }
      : null;
  }

  /**
   * A projection (`qkv` or `proj_out`) applied to channel-major rows: x `[N, Cin, L]` → `[N, Cout, L]`.
   * Written as a 1×1 convolution so that activations never need transposing to `[N, L, C]`, and
   * because oneDNN's convolution beats the BLAS GEMM of a linear layer here (≈ 40 % faster forward
   * + backward for the qkv projections of the Balls config).
   */
  #project(x: Tensor, layer: Linear): Tensor {
    const w = layer.param('weight');
    return conv1d(x, w.view([w.size(0), w.size(1), 1]), layer.param('bias'));
  }

  /** The output projection plus the residual r `[N, C, L]` (one pass where fused). */
  #projectOut(o: Tensor, r: Tensor): Tensor {
    const w = this.projOut.param('weight');
    return conv1x1Add(o, w.view([w.size(0), w.size(1), 1]), this.projOut.param('bias'), r);
  }

  /**
   * Spatial attention. Shape: h `[N, C, H, W]` → `[N, C, H, W]`; attends over the H·W positions
   * of each of the N frames, no mask, no RPE.
   */
  spatial(h: Tensor): Tensor {
    return tidy(() => {
      const [N, C, H, W] = h.shape as [number, number, number, number];
      const L = H * W;
      const nh = this.heads;
      const d = C / nh;
      const xn = this.norm.forward(h).reshape([N, C, L]); // GN over (channels-in-group × L) per frame
      const qkvRows = this.#project(xn, this.qkv); // [N, 3C, L], channel = part·C + head·d + e
      // One fused operator where built (attention matrices stay in cache, q/k/v read in place).
      const fused = fusedChannelAttention(qkvRows, nh, 1 / Math.sqrt(d));
      if (fused) return this.#projectOut(fused, xn).view([N, C, H, W]); // residual on GN(x)
      const qkv = qkvRows.view([N, 3, nh, d, L]);
      // unbind, not three selects: its backward stacks the three gradients into one tensor, where
      // each select's backward fills a zero tensor of qkv's full size and the three are summed.
      const [qs, ks, vs] = qkv.unbind(1) as [Tensor, Tensor, Tensor];
      // Scale q, not the logits: [N·nh, L, d] is L/d times smaller than [N·nh, L, L], in both passes.
      const q = qs.transpose(2, 3).mul(1 / Math.sqrt(d)).reshape([N * nh, L, d]);
      const k = ks.reshape([N * nh, d, L]);
      const v = vs.transpose(2, 3).reshape([N * nh, L, d]);
      const attn = softmax32(batchedMatmul(q, k)); // [N·nh, L(query), L(key)]
      const o = batchedMatmul(attn, v).view([N, nh, L, d]).transpose(2, 3).reshape([N, C, L]);
      const y = this.#projectOut(o, xn); // residual on GN(x)
      return y.view([N, C, H, W]);
    });
  }

  /** This layer's relative-position terms: computed ahead in `ctx.terms`, or here; null without RPE. */
  relativeTerms(ctx: TemporalContext): RelativeTerms | null {
    if (!this.rpe) return null;
    const ahead = this.owner ? ctx.terms?.get(this.owner) : undefined;
    if (ahead) return ahead;
    return { k: this.rpe.k.net.forward(ctx.phi, ctx.emb), q: this.rpe.q.net.forward(ctx.phi, ctx.emb), v: this.rpe.v.net.forward(ctx.phi, ctx.emb) };
  }

  /** The block this (temporal) layer belongs to: the key of its terms in `TemporalContext.terms`. */
  owner: FactorizedAttentionBlock | null = null;

  /**
   * Temporal attention with RPE and frame-group mask. Shape: h `[B·T, C, H, W]` → same; attends
   * over the T frames of each video at each position (§4.3 steps 1–7). With `rows`, only the
   * frames it picks are projected and returned (`[N', C, H, W]`): every frame still serves as key
   * and value, but outputs nobody reads are not computed.
   */
  temporal(h: Tensor, ctx: TemporalContext, rows?: (t: Tensor) => Tensor): Tensor {
    return tidy(() => {
      const { B, T } = ctx;
      const [, C, H, W] = h.shape as [number, number, number, number];
      const P = H * W;
      const nh = this.heads;
      const d = C / nh;
      const scale = 1 / Math.sqrt(d);
      if (!attentionProbe.temporal && fusableAttention(h)) {
        // The fused kernel works in the features' own frame-major layout: no permutes at all.
        // GroupNorm per (video, pixel) over (channels-in-group × T), in place: [B·T, C, P]
        const xnF = groupNormFrames(h.reshape([B, T, C, P]), this.norm.numGroups, this.norm.param('weight'), this.norm.param('bias'), this.norm.eps).view([B * T, C, P]);
        const qkvF = this.#project(xnF, this.qkv); // [B·T, 3C, P]
        const o = fusedTemporalAttention(qkvF, this.relativeTerms(ctx), ctx.maskBias?.reshape([B, T, T]) ?? null, B, nh, scale);
        if (o) {
          const [oRows, xRows] = rows ? [rows(o), rows(xnF)] : [o, xnF];
          return this.#projectOut(oRows, xRows).view([oRows.size(0), C, H, W]); // residual on GN(x)
        }
      }
      // rows (b, p) of sequences over t, channel-major: [B·P, C, T]
      const x = h.reshape([B, T, C, P]).permute([0, 3, 2, 1]).reshape([B * P, C, T]);
      const xn = this.norm.forward(x); // per (b, p) row over (channels-in-group × T); float32 under autocast; the residual of step 7
      const qkv = this.#project(xn, this.qkv); // [B·P, 3C, T]
      // Work in layout [B, nh, T, P, d]: batched GEMMs over (b, h, frame) with P as the long side.
      const parts = qkv.view([B, P, 3, nh, d, T]).permute([2, 0, 3, 5, 1, 4]); // [3, B, nh, T, P, d]
      const [qs, ks, vs] = parts.unbind(0) as [Tensor, Tensor, Tensor]; // (unbind: see spatial())
      const q = qs.mul(scale).contiguous(); // scaled queries (§4.3 step 3)
      const k = ks.contiguous();
      const v = vs.contiguous();
      const BH = B * nh;

      // Main term A_ij = q_i·k_j, batched over (b, h, p): [B·nh·P, T, d] layouts.
      const qp = q.permute([0, 1, 3, 2, 4]).reshape([BH * P, T, d]);
      const kp = k.permute([0, 1, 3, 2, 4]).reshape([BH * P, T, d]);
      let logits = batchedMatmul(qp, kp.transpose(1, 2)).view([B, nh, P, T, T]);

      const terms = this.relativeTerms(ctx);
      if (terms) {
        const rk = terms.k; // [B, T(i), T(j), C]
        const rq = terms.q;
        // term1[b,h,p,i,j] = Σ_e q[b,h,i,p,e]·Rk[b,i,j,h,e]: batch (b,h,i), [P, d] @ [d, T]
        const rkT = rk.view([B, T, T, nh, d]).permute([0, 3, 1, 4, 2]).reshape([BH * T, d, T]);
        const t1 = batchedMatmul(q.view([BH * T, P, d]), rkT).view([B, nh, T, P, T]).permute([0, 1, 3, 2, 4]); // [B,nh,P,i,j]
        // term2[b,h,p,i,j] = Σ_e (scale·k[b,h,j,p,e])·Rq[b,j,i,h,e]: batch (b,h,j), [P, d] @ [d, T(i)]
        const rqT = rq.view([B, T, T, nh, d]).permute([0, 3, 1, 4, 2]).reshape([BH * T, d, T]);
        const t2 = batchedMatmul(k.view([BH * T, P, d]), rqT).mul_(scale).view([B, nh, T, P, T]).permute([0, 1, 3, 4, 2]); // [B,nh,P,i(j→i),j]
        logits = logits.add(t1).add_(t2);
      }
      if (ctx.maskBias) logits = logits.add(ctx.maskBias.view([B, 1, 1, T, T]));
      const attn = softmax32(logits); // [B, nh, P, T(i), T(j)]
      if (attentionProbe.temporal) attentionProbe.temporal.push(keep(attn.clone()));

      // o_i = Σ_j a_ij v_j (+ Σ_j a_ij Rv_ij)
      const vp = v.permute([0, 1, 3, 2, 4]).reshape([BH * P, T, d]);
      let o = batchedMatmul(attn.reshape([BH * P, T, T]), vp).view([B, nh, P, T, d]);
      if (terms) {
        const rv = terms.v; // [B, T(i), T(j), C]
        const rvB = rv.view([B, T, T, nh, d]).permute([0, 3, 1, 2, 4]).reshape([BH * T, T, d]); // (b,h,i): [T(j), d]
        const aB = attn.permute([0, 1, 3, 2, 4]).reshape([BH * T, P, T]); // (b,h,i): [P, T(j)]
        const o2 = batchedMatmul(aB, rvB).view([B, nh, T, P, d]).permute([0, 1, 3, 2, 4]);
        o = o.add(o2);
      }
      // merge heads → [B·P, C, T] (channel = h·d + e), project, residual on the normalised input
      const merged = o.permute([0, 2, 1, 4, 3]).reshape([B * P, C, T]);
      const y = this.#projectOut(merged, xn).view([B, P, C, T]).permute([0, 3, 2, 1]).reshape([B * T, C, H, W]);
      return rows ? rows(y) : y;
    });
  }
}

/** Temporal (with RPE) then spatial attention over `[B·T, C, H, W]` features (§4.3). */
export class FactorizedAttentionBlock extends Module {
  readonly temporalAttention: AttentionLayer;
  readonly spatialAttention: AttentionLayer;

  constructor(channels: number, heads: number, embDim: number, device?: string) {
    super();
    this.spatialAttention = this.registerModule('spatial_attention', new AttentionLayer(channels, heads, false, embDim, device));
    this.temporalAttention = this.registerModule('temporal_attention', new AttentionLayer(channels, heads, true, embDim, device));
    this.temporalAttention.owner = this;
  }

  /** The three relative-position networks of the temporal attention (k, q, v order). */
  get rpeNets(): RpeNet[] {
    const r = this.temporalAttention.rpe!;
    return [r.k.net, r.q.net, r.v.net];
  }

  forward(h: Tensor, ctx: TemporalContext): Tensor {
    return tidy(() => this.spatialAttention.spatial(this.temporalAttention.temporal(h, ctx)));
  }
}

/**
 * The relative-position terms of many temporal attention layers in a handful of operators
 * (REFERENCE_SPEC §4.3, RPE network). Every network reads the same φ(Δ) and time embedding, so
 * their layers are stacked: one product for all first layers, one for all time embeddings, one
 * SiLU, and one batched product for all output layers — instead of a dozen small operators per
 * network (21 networks in the Balls model), whose fixed costs made the terms ≈ 10 % of a sampling
 * forward pass. Layers are grouped by width. Shapes: φ `[B, T, T, 3]`, emb `[B, E]` → per block
 * `{k, q, v}`, each `[B, T, T, C]`.
 */
export function relativeTermsOf(blocks: FactorizedAttentionBlock[], phi: Tensor, emb: Tensor, owner?: Module): Map<FactorizedAttentionBlock, RelativeTerms> {
  const out = new Map<FactorizedAttentionBlock, RelativeTerms>();
  const byWidth = new Map<number, FactorizedAttentionBlock[]>();
  for (const b of blocks) {
    if (!b.temporalAttention.rpe) continue;
    const c = b.temporalAttention.channels;
    byWidth.set(c, [...(byWidth.get(c) ?? []), b]);
  }
  const [B, T] = phi.shape as [number, number];
  for (const [C, group] of byWidth) {
    const terms = tidy(() => {
      const nets = group.flatMap((b) => b.rpeNets); // G = 3·layers networks
      const G = nets.length;
      // Stacked weights: kept by `owner` between no-grad calls (sampling), made afresh otherwise.
      const joined = (key: string, parts: Tensor[], join: () => Tensor) => (owner ? owner.derived(`rpe.${C}.${key}`, parts, join) : join());
      const w = (pick: (n: RpeNet) => Linear, name: 'weight' | 'bias', key: string) => {
        const parts = nets.map((n) => pick(n).param(name));
        return joined(`${key}.${name}`, parts, () => cat(parts, 0));
      };
      // z = embed_distances(φ) + embed_diffusion_time(emb), all networks side by side: [B, T·T, G·C]
      const d = linear(phi.reshape([B * T * T, 3]), w((n) => n.embedDistances, 'weight', 'distances'), w((n) => n.embedDistances, 'bias', 'distances'));
      const e = linear(emb, w((n) => n.embedDiffusionTime, 'weight', 'time'), w((n) => n.embedDiffusionTime, 'bias', 'time'));
      const z = d.view([B, T * T, G * C]).add(e.unsqueeze(1)).silu();
      // out: per network [B·T·T, C] @ W_gᵀ + b_g, as one batched product over the G networks
      const zg = z.view([B * T * T, G, C]).transpose(0, 1); // [G, B·T·T, C] (a view; the product reads it in place or copies)
      const outW = nets.map((n) => n.out.param('weight'));
      const outB = nets.map((n) => n.out.param('bias'));
      const wOut = joined('out.weight', outW, () => stack(outW, 0).transpose(1, 2)); // [G, C(in), C(out)]
      const bOut = joined('out.bias', outB, () => stack(outB, 0).unsqueeze(1)); // [G, 1, C]
      const r = batchedMatmul(zg.contiguous(), wOut).add(bOut); // [G, B·T·T, C]
      return r.unbind(0).map((t) => t.view([B, T, T, C]));
    });
    group.forEach((b, i) => out.set(b, { k: terms[3 * i]!, q: terms[3 * i + 1]!, v: terms[3 * i + 2]! }));
  }
  return out;
}
