/**
 * Parameter names of published VAE weight files → flexvid's `AutoencoderKL` names (which are the
 * current diffusers names), and the architecture read back from the tensor shapes.
 *
 * Accepted layouts:
 * - **diffusers** (`diffusion_pytorch_model.safetensors`, e.g. `madebyollin/sdxl-vae-fp16-fix`):
 *   `encoder.down_blocks.0.resnets.0.norm1.weight`, `encoder.mid_block.attentions.0.to_q.weight`, …
 *   taken as they are;
 * - **diffusers, older attention names** (files saved before diffusers 0.14):
 *   `…attentions.0.{query,key,value,proj_attn}` → `…attentions.0.{to_q,to_k,to_v,to_out.0}`;
 * - **original / LDM** (`sdxl_vae.safetensors`, or a full Stable Diffusion checkpoint with the VAE
 *   under `first_stage_model.`): `encoder.down.{i}.block.{j}` → `encoder.down_blocks.{i}.resnets.{j}`,
 *   `encoder.down.{i}.downsample` → `…downsamplers.0`, `decoder.up.{i}` → `decoder.up_blocks.{L−1−i}`
 *   (the LDM decoder numbers its levels from the lowest resolution up), `…upsample` →
 *   `…upsamplers.0`, `mid.block_{1,2}` → `mid_block.resnets.{0,1}`, `mid.attn_1.{norm,q,k,v,proj_out}`
 *   → `mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}` (1×1-convolution weights
 *   `[C, C, 1, 1]` reshaped to linear `[C, C]`), `nin_shortcut` → `conv_shortcut`,
 *   `norm_out` → `conv_norm_out`. Training-only `loss.*` entries are dropped.
 */
import type { Tensor } from '../engine/index.ts';
import { FileFormatError } from '../util/errors.ts';
import { validateVaeConfig, type AutoencoderKLConfig } from './config.ts';

/** Which naming a weight file used. */
export type VaeWeightLayout = 'diffusers' | 'diffusers-legacy-attention' | 'ldm';

const LEGACY_ATTENTION: Record<string, string> = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' };
const LDM_ATTENTION: Record<string, string> = { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' };

/** The layout of a set of names (null when none matches). */
export function detectVaeLayout(names: Iterable<string>): VaeWeightLayout | null {
  let diffusers = false;
  let legacy = false;
  let ldm = false;
  for (const n of names) {
    if (/^(encoder|decoder)\.(down|up|mid)\.(\d+\.|block_|attn_)/.test(n)) ldm = true;
    else if (/^(encoder|decoder)\.mid_block\.attentions\.0\.(query|key|value|proj_attn)\./.test(n)) legacy = true;
    else if (/^(encoder|decoder)\.(conv_in|down_blocks|up_blocks|mid_block)\./.test(n)) diffusers = true;
  }
  return ldm ? 'ldm' : legacy ? 'diffusers-legacy-attention' : diffusers ? 'diffusers' : null;
}

/** Rename one LDM name (`levels`: number of resolution levels). Returns null for entries to drop. */
export function ldmToDiffusersName(name: string, levels: number): string | null {
  if (name.startsWith('loss.')) return null;
  let n = name;
  n = n.replace(/^(encoder|decoder)\.mid\.block_(\d)\./, (_m, part: string, k: string) => `${part}.mid_block.resnets.${Number(k) - 1}.`);
  n = n.replace(/^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\./, (_m, part: string, p: string) => `${part}.mid_block.attentions.0.${LDM_ATTENTION[p]}.`);
  n = n.replace(/^encoder\.down\.(\d+)\.block\.(\d+)\./, 'encoder.down_blocks.$1.resnets.$2.');
  n = n.replace(/^encoder\.down\.(\d+)\.downsample\./, 'encoder.down_blocks.$1.downsamplers.0.');
  n = n.replace(/^decoder\.up\.(\d+)\.block\.(\d+)\./, (_m, i: string, j: string) => `decoder.up_blocks.${levels - 1 - Number(i)}.resnets.${j}.`);
  n = n.replace(/^decoder\.up\.(\d+)\.upsample\./, (_m, i: string) => `decoder.up_blocks.${levels - 1 - Number(i)}.upsamplers.0.`);
  n = n.replace('.nin_shortcut.', '.conv_shortcut.');
  n = n.replace(/^(encoder|decoder)\.norm_out\./, '$1.conv_norm_out.');
  return n;
}

/**
 * Rename the tensors of a weight file to flexvid/diffusers names (see the module comment).
 * Takes ownership of `weights`: dropped and reshaped tensors are disposed; the returned map owns
 * the rest. Throws FileFormatError naming `file` when no known layout matches.
 */
export function toDiffusersNames(weights: Map<string, Tensor>, file: string): { weights: Map<string, Tensor>; layout: VaeWeightLayout } {
  let src = weights;
  // A full Stable Diffusion checkpoint: keep only the VAE.
  if ([...src.keys()].some((k) => k.startsWith('first_stage_model.'))) {
    const only = new Map<string, Tensor>();
    for (const [k, t] of src) {
      if (k.startsWith('first_stage_model.')) only.set(k.slice('first_stage_model.'.length), t);
      else t.dispose();
    }
    src = only;
  }
  const layout = detectVaeLayout(src.keys());
  if (layout === null) {
    for (const t of src.values()) t.dispose();
    throw new FileFormatError(file, 'does not hold AutoencoderKL weights (no encoder.conv_in / encoder.down_blocks / encoder.down entries)');
  }
  if (layout === 'diffusers') return { weights: src, layout };
  const out = new Map<string, Tensor>();
  if (layout === 'diffusers-legacy-attention') {
    for (const [k, t] of src) {
      out.set(k.replace(/(\.mid_block\.attentions\.0\.)(query|key|value|proj_attn)\./, (_m, pre: string, p: string) => `${pre}${LEGACY_ATTENTION[p]}.`), t);
    }
    return { weights: out, layout };
  }
  let levels = 0;
  for (const k of src.keys()) {
    const m = /^decoder\.up\.(\d+)\./.exec(k);
    if (m) levels = Math.max(levels, Number(m[1]) + 1);
  }
  for (const [k, t] of src) {
    const n = ldmToDiffusersName(k, levels);
    if (n === null) {
      t.dispose();
      continue;
    }
    if (/\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(n) && t.ndim === 4) {
      out.set(n, t.reshape([t.size(0), t.size(1)]));
      t.dispose();
    } else {
      out.set(n, t);
    }
  }
  return { weights: out, layout };
}

/**
 * The architecture implied by diffusers-named tensor shapes. GroupNorm groups and the scaling
 * factor cannot be read from shapes: they come from `defaults` (SDXL: 32 and 0.13025).
 */
export function inferVaeConfig(
  shapes: Map<string, { shape: readonly number[] }>,
  file: string,
  defaults: { normNumGroups: number; scalingFactor: number },
): AutoencoderKLConfig {
  const shape = (k: string): readonly number[] => {
    const t = shapes.get(k);
    if (!t) throw new FileFormatError(file, `has no ${k} (not a complete AutoencoderKL)`);
    return t.shape;
  };
  const boc: number[] = [];
  while (shapes.has(`encoder.down_blocks.${boc.length}.resnets.0.conv1.weight`)) boc.push(shape(`encoder.down_blocks.${boc.length}.resnets.0.conv1.weight`)[0]!);
  if (boc.length === 0) shape('encoder.down_blocks.0.resnets.0.conv1.weight');
  let layers = 0;
  while (shapes.has(`encoder.down_blocks.0.resnets.${layers}.conv1.weight`)) layers++;
  const cfg: AutoencoderKLConfig = {
    inChannels: shape('encoder.conv_in.weight')[1]!,
    outChannels: shape('decoder.conv_out.weight')[0]!,
    blockOutChannels: boc,
    layersPerBlock: layers,
    latentChannels: shape('decoder.conv_in.weight')[1]!,
    normNumGroups: defaults.normNumGroups,
    scalingFactor: defaults.scalingFactor,
    useQuantConv: shapes.has('quant_conv.weight'),
    usePostQuantConv: shapes.has('post_quant_conv.weight'),
    midBlockAddAttention: shapes.has('encoder.mid_block.attentions.0.to_q.weight'),
  };
  try {
    return validateVaeConfig(cfg);
  } catch (e) {
    throw new FileFormatError(file, `implies an invalid VAE configuration: ${(e as Error).message}`);
  }
}
