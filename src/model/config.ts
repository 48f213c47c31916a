/**
 * Model configuration of the FDM video U-Net (REFERENCE_SPEC §4.4, §6.1 flags). The config is
 * stored inside every checkpoint so that sampling needs no architecture flags.
 */
import { OptionError } from '../util/errors.ts';

export interface UNetConfig {
  /** Square frame side used to choose the channel multipliers (32, 64, 128, 160, 256). */
  imageSize: number;
  /** Channels of a frame (3 pixels, 4 latents). The model adds one observed-indicator channel. */
  inChannels: number;
  /** Base width `mc` (`--num_channels`). */
  modelChannels: number;
  /** ResBlocks per level (`--num_res_blocks`). */
  numResBlocks: number;
  /** Feature-map sides with attention, e.g. "16,8" (`--attention_resolutions`). */
  attentionResolutions: string;
  /** Attention heads in down/middle blocks. */
  numHeads: number;
  /** Heads in up blocks; −1 = same as numHeads. */
  numHeadsUpsample: number;
  dropout: number;
  /** Output 2C channels (learned variance). */
  learnSigma: boolean;
  /** Scale-shift conditioning in ResBlocks. */
  useScaleShiftNorm: boolean;
  /** RPE network (the only working RPE form; §4.3). */
  useRpeNet: boolean;
  /** Channel multipliers; derived from imageSize when undefined. */
  channelMult?: number[];
}

export const DEFAULT_UNET_CONFIG: UNetConfig = {
  imageSize: 32,
  inChannels: 3,
  modelChannels: 128,
  numResBlocks: 2,
  attentionResolutions: '16,8',
  numHeads: 4,
  numHeadsUpsample: -1,
  dropout: 0,
  learnSigma: false,
  useScaleShiftNorm: true,
  useRpeNet: true,
};

/** Channel multipliers by image size (§4.4). */
export function channelMultFor(imageSize: number): number[] {
  switch (imageSize) {
    case 256:
    case 160:
      return [1, 1, 2, 2, 4, 4];
    case 128:
      return [1, 1, 2, 3, 4];
    case 64:
      return [1, 2, 3, 4];
    case 32:
      return [1, 2, 2, 2];
    default:
      throw new OptionError('imageSize', 'one of 32, 64, 128, 160, 256 (unsupported image size)', imageSize);
  }
}

/** Downsample rates at which attention is inserted: ⌊imageSize / r⌋ for each listed side r. */
export function attentionRates(cfg: UNetConfig): Set<number> {
  const rates = new Set<number>();
  for (const part of cfg.attentionResolutions.split(',').map((s) => s.trim()).filter(Boolean)) {
    const r = Number(part);
    if (!Number.isInteger(r) || r <= 0) throw new OptionError('attentionResolutions', 'comma-separated positive integers', cfg.attentionResolutions);
    rates.add(Math.floor(cfg.imageSize / r));
  }
  return rates;
}

/** Fill defaults and validate; throws OptionError naming the bad field. */
export function resolveUNetConfig(partial: Partial<UNetConfig>): UNetConfig {
  const cfg: UNetConfig = { ...DEFAULT_UNET_CONFIG, ...partial };
  if (!cfg.useRpeNet) {
    // §4.3 / §10.2 item 25: the reference's lookup-table RPE refers to an undefined attribute.
    throw new OptionError('useRpeNet', 'true (the reference lookup-table RPE is broken and not supported)', cfg.useRpeNet);
  }
  for (const k of ['modelChannels', 'numResBlocks', 'numHeads', 'inChannels'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] <= 0) throw new OptionError(k, 'a positive integer', cfg[k]);
  }
  if (cfg.modelChannels % 32 !== 0) throw new OptionError('modelChannels', 'a multiple of 32 (GroupNorm uses 32 groups)', cfg.modelChannels);
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new OptionError('dropout', 'a number in [0, 1)', cfg.dropout);
  cfg.channelMult = cfg.channelMult ?? channelMultFor(cfg.imageSize);
  return cfg;
}
