/**
 * Analytic size and cost of the FDM U-Net, block by block (for `flexvid model info` and the
 * benchmarks' GFLOP/s). Counts multiply-adds as 2 FLOPs; elementwise work is ignored.
 */
import { attentionRates, resolveUNetConfig, type UNetConfig } from './config.ts';

export interface BlockCost {
  /** Reference module path (`input_blocks.4`). */
  name: string;
  /** What the block contains, e.g. "Res+Attn". */
  kind: string;
  /** Feature-map side (square inputs) and channels at the block output. */
  size: number;
  channels: number;
  params: number;
  /** Forward FLOPs per frame (attention costs for a window of T frames). */
  flopsPerFrame: number;
  /** The part of `flopsPerFrame` after the block's temporal attention (all of it for a block without one). */
  afterTemporalPerFrame: number;
}

const conv = (cin: number, cout: number, k: number, hw: number) => 2 * cin * cout * k * k * hw;

function resParams(a: number, b: number, E: number): number {
  return 2 * a + 9 * a * b + b + 2 * E * b + 2 * b + 2 * b + 9 * b * b + b + (a !== b ? a * b + b : 0);
}

function resFlops(a: number, b: number, E: number, hw: number): number {
  return conv(a, b, 3, hw) + conv(b, b, 3, hw) + (a !== b ? conv(a, b, 1, hw) : 0) + 2 * E * 2 * b;
}

function attnParams(c: number, E: number): number {
  return 11 * c * c + 3 * E * c + 30 * c;
}

const attnProjFlops = (c: number, hw: number) => 2 * c * 3 * c * hw + 2 * c * c * hw; // qkv + proj_out

/** Temporal attention (with RPE terms) FLOPs per frame for a window of T frames. */
function temporalAttnFlops(c: number, E: number, hw: number, T: number): number {
  return attnProjFlops(c, hw) + 5 * 2 * T * c * hw + 3 * 2 * T * (3 * c + E * c + c * c); // qk, 2 RPE logit terms, av, RPE-v; RPE nets per frame row
}

/** Spatial attention FLOPs per frame. */
function spatialAttnFlops(c: number, hw: number): number {
  return attnProjFlops(c, hw) + 2 * 2 * hw * hw * c;
}

/** Temporal (with RPE terms) + spatial attention FLOPs per frame for a window of T frames. */
function attnFlops(c: number, E: number, hw: number, T: number): number {
  return temporalAttnFlops(c, E, hw, T) + spatialAttnFlops(c, hw);
}

/** Per-block table of the model described by `cfg` (square `imageSize` frames, windows of T). */
export function modelCostTable(partial: Partial<UNetConfig>, T = 10): BlockCost[] {
  const cfg = resolveUNetConfig(partial);
  const mc = cfg.modelChannels;
  const E = 4 * mc;
  const rates = attentionRates(cfg);
  const mult = cfg.channelMult!;
  const out: BlockCost[] = [];
  let side = cfg.imageSize;
  const hw = () => side * side;
  out.push({ name: 'time_embed', kind: 'MLP', size: 0, channels: E, params: mc * E + E + E * E + E, flopsPerFrame: 0, afterTemporalPerFrame: 0 });
  out.push({ name: 'input_blocks.0', kind: 'Conv', size: side, channels: mc, params: 9 * (cfg.inChannels + 1) * mc + mc, flopsPerFrame: conv(cfg.inChannels + 1, mc, 3, hw()), afterTemporalPerFrame: conv(cfg.inChannels + 1, mc, 3, hw()) });
  const skips = [mc];
  let ch = mc;
  let ds = 1;
  let idx = 1;
  mult.forEach((m, level) => {
    for (let r = 0; r < cfg.numResBlocks; r++) {
      const b = m * mc;
      let params = resParams(ch, b, E);
      let flops = resFlops(ch, b, E, hw());
      let after = flops;
      let kind = 'Res';
      if (rates.has(ds)) {
        params += attnParams(b, E);
        flops += attnFlops(b, E, hw(), T);
        after = spatialAttnFlops(b, hw());
        kind += '+Attn';
      }
      ch = b;
      out.push({ name: `input_blocks.${idx++}`, kind, size: side, channels: ch, params, flopsPerFrame: flops, afterTemporalPerFrame: after });
      skips.push(ch);
    }
    if (level !== mult.length - 1) {
      side /= 2;
      out.push({ name: `input_blocks.${idx++}`, kind: 'Down', size: side, channels: ch, params: 9 * ch * ch + ch, flopsPerFrame: conv(ch, ch, 3, hw()), afterTemporalPerFrame: conv(ch, ch, 3, hw()) });
      skips.push(ch);
      ds *= 2;
    }
  });
  out.push({
    name: 'middle_block',
    kind: 'Res+Attn+Res',
    size: side,
    channels: ch,
    params: 2 * resParams(ch, ch, E) + attnParams(ch, E),
    flopsPerFrame: 2 * resFlops(ch, ch, E, hw()) + attnFlops(ch, E, hw(), T),
    afterTemporalPerFrame: spatialAttnFlops(ch, hw()) + resFlops(ch, ch, E, hw()),
  });
  idx = 0;
  for (let level = mult.length - 1; level >= 0; level--) {
    for (let r = 0; r <= cfg.numResBlocks; r++) {
      const b = mult[level]! * mc;
      const a = ch + skips.pop()!;
      let params = resParams(a, b, E);
      let flops = resFlops(a, b, E, hw());
      let after = flops;
      let kind = 'Res';
      ch = b;
      if (rates.has(ds)) {
        params += attnParams(b, E);
        flops += attnFlops(b, E, hw(), T);
        after = spatialAttnFlops(b, hw());
        kind += '+Attn';
      }
      if (level > 0 && r === cfg.numResBlocks) {
        params += 9 * ch * ch + ch;
        side *= 2;
        flops += conv(ch, ch, 3, hw());
        after += conv(ch, ch, 3, hw());
        kind += '+Up';
        ds /= 2;
      }
      out.push({ name: `output_blocks.${idx++}`, kind, size: side, channels: ch, params, flopsPerFrame: flops, afterTemporalPerFrame: after });
    }
  }
  const outC = cfg.learnSigma ? 2 * cfg.inChannels : cfg.inChannels;
  out.push({ name: 'out', kind: 'GN+Conv', size: side, channels: outC, params: 2 * mc + 9 * mc * outC + outC, flopsPerFrame: conv(mc, outC, 3, hw()), afterTemporalPerFrame: conv(mc, outC, 3, hw()) });
  return out;
}

/** Total forward GFLOP per frame. */
export function forwardGflopPerFrame(partial: Partial<UNetConfig>, T = 10): number {
  return modelCostTable(partial, T).reduce((s, b) => s + b.flopsPerFrame, 0) / 1e9;
}

/**
 * Forward GFLOP per frame after the last temporal attention: the frame-independent tail that the
 * U-Net runs only for the frames whose output is read (`UNetInputs.outputMask`). 0 without attention.
 */
export function frameTailGflopPerFrame(partial: Partial<UNetConfig>, T = 10): number {
  const table = modelCostTable(partial, T);
  const last = table.map((b) => b.kind.includes('Attn')).lastIndexOf(true);
  if (last < 0) return 0;
  return (table[last]!.afterTemporalPerFrame + table.slice(last + 1).reduce((s, b) => s + b.flopsPerFrame, 0)) / 1e9;
}
