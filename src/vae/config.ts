/**
 * Configuration of the KL autoencoder (the SDXL VAE architecture, REFERENCE_SPEC §5.11), with the
 * published SDXL values and conversion from/to a diffusers `config.json`.
 *
 * The published `madebyollin/sdxl-vae-fp16-fix` (and `stabilityai/sdxl-vae`) `config.json`:
 * `in_channels 3, out_channels 3, down_block_types 4×DownEncoderBlock2D, up_block_types
 * 4×UpDecoderBlock2D, block_out_channels [128, 256, 512, 512], layers_per_block 2, act_fn silu,
 * latent_channels 4, norm_num_groups 32, sample_size 1024, scaling_factor 0.13025` —
 * 83,653,863 parameters (34,163,592 encoder, 49,490,179 decoder).
 */
import { FileFormatError, OptionError } from '../util/errors.ts';

/** Architecture and latent scaling of an `AutoencoderKL`. */
export interface AutoencoderKLConfig {
  /** Image channels in (3). */
  inChannels: number;
  /** Image channels out (3). */
  outChannels: number;
  /** Channels of each resolution level; the image is downsampled 2^(levels−1) times. */
  blockOutChannels: number[];
  /** ResNet blocks per encoder level (the decoder has one more per level). */
  layersPerBlock: number;
  /** Latent channels (4). */
  latentChannels: number;
  /** GroupNorm groups everywhere (32). */
  normNumGroups: number;
  /** Latents are multiplied by this after encoding and divided before decoding (0.13025 for SDXL). */
  scalingFactor: number;
  /** Training resolution of the published weights (informational). */
  sampleSize?: number;
  /** `quant_conv` after the encoder (default true). */
  useQuantConv?: boolean;
  /** `post_quant_conv` before the decoder (default true). */
  usePostQuantConv?: boolean;
  /** Attention in the mid blocks (default true). */
  midBlockAddAttention?: boolean;
}

/** The SDXL VAE (`madebyollin/sdxl-vae-fp16-fix`, REFERENCE_SPEC §5.11). */
export const SDXL_VAE_CONFIG: Readonly<AutoencoderKLConfig> = Object.freeze({
  inChannels: 3,
  outChannels: 3,
  blockOutChannels: [128, 256, 512, 512],
  layersPerBlock: 2,
  latentChannels: 4,
  normNumGroups: 32,
  scalingFactor: 0.13025,
  sampleSize: 1024,
});

/** The SDXL scaling factor (REFERENCE_SPEC §5.11). */
export const SDXL_SCALING_FACTOR = 0.13025;

/** A miniature VAE for tests and demos (downsampling ×2, 4 latent channels). */
export const TINY_VAE_CONFIG: Readonly<AutoencoderKLConfig> = Object.freeze({
  inChannels: 3,
  outChannels: 3,
  blockOutChannels: [32, 64],
  layersPerBlock: 1,
  latentChannels: 4,
  normNumGroups: 32,
  scalingFactor: SDXL_SCALING_FACTOR,
});

/** Spatial downsampling factor image → latent: 2^(levels − 1) (8 for SDXL). */
export function downFactor(cfg: AutoencoderKLConfig): number {
  return 2 ** (cfg.blockOutChannels.length - 1);
}

function positive(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new OptionError(name, 'a positive integer', v);
  return v;
}

/** Check a config (OptionError naming the field). Returns it. */
export function validateVaeConfig(cfg: AutoencoderKLConfig): AutoencoderKLConfig {
  positive('inChannels', cfg.inChannels);
  positive('outChannels', cfg.outChannels);
  positive('layersPerBlock', cfg.layersPerBlock);
  positive('latentChannels', cfg.latentChannels);
  const g = positive('normNumGroups', cfg.normNumGroups);
  if (!Array.isArray(cfg.blockOutChannels) || cfg.blockOutChannels.length < 1) {
    throw new OptionError('blockOutChannels', 'a non-empty list of channel counts', cfg.blockOutChannels);
  }
  for (const c of cfg.blockOutChannels) {
    positive('blockOutChannels', c);
    if (c % g !== 0) throw new OptionError('blockOutChannels', `channel counts divisible by normNumGroups = ${g}`, cfg.blockOutChannels);
  }
  if (!(typeof cfg.scalingFactor === 'number' && cfg.scalingFactor > 0 && Number.isFinite(cfg.scalingFactor))) {
    throw new OptionError('scalingFactor', 'a positive number', cfg.scalingFactor);
  }
  return cfg;
}

/**
 * Config from a diffusers `config.json` object (snake_case). Only the `AutoencoderKL` flavour this
 * engine implements is accepted: DownEncoderBlock2D/UpDecoderBlock2D blocks, `silu`, group norm.
 */
export function configFromDiffusers(json: Record<string, unknown>, file = 'config.json'): AutoencoderKLConfig {
  const cls = json._class_name;
  if (cls !== undefined && cls !== 'AutoencoderKL') throw new FileFormatError(file, `describes a ${String(cls)}, not an AutoencoderKL`);
  const boc = json.block_out_channels;
  if (!Array.isArray(boc) || boc.length === 0) throw new FileFormatError(file, 'block_out_channels is missing');
  const blocks = (key: string, want: string) => {
    const v = json[key];
    if (v === undefined) return;
    if (!Array.isArray(v) || v.length !== boc.length || v.some((b) => b !== want)) {
      throw new FileFormatError(file, `${key} must be ${boc.length}×${want} (found ${JSON.stringify(v)})`);
    }
  };
  blocks('down_block_types', 'DownEncoderBlock2D');
  blocks('up_block_types', 'UpDecoderBlock2D');
  if (json.act_fn !== undefined && json.act_fn !== 'silu') throw new FileFormatError(file, `act_fn ${JSON.stringify(json.act_fn)} is not supported (only silu)`);
  const num = (key: string, dflt: number) => {
    const v = json[key];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number') throw new FileFormatError(file, `${key} must be a number (found ${JSON.stringify(v)})`);
    return v;
  };
  const cfg: AutoencoderKLConfig = {
    inChannels: num('in_channels', 3),
    outChannels: num('out_channels', 3),
    blockOutChannels: boc as number[],
    layersPerBlock: num('layers_per_block', 1),
    latentChannels: num('latent_channels', 4),
    normNumGroups: num('norm_num_groups', 32),
    scalingFactor: num('scaling_factor', 0.18215),
    sampleSize: typeof json.sample_size === 'number' ? json.sample_size : undefined,
    useQuantConv: json.use_quant_conv === undefined ? true : Boolean(json.use_quant_conv),
    usePostQuantConv: json.use_post_quant_conv === undefined ? true : Boolean(json.use_post_quant_conv),
    midBlockAddAttention: json.mid_block_add_attention === undefined ? true : Boolean(json.mid_block_add_attention),
  };
  try {
    return validateVaeConfig(cfg);
  } catch (e) {
    throw new FileFormatError(file, (e as Error).message);
  }
}

/** The diffusers `config.json` object of a config (what `AutoencoderKL.from_pretrained` reads). */
export function configToDiffusers(cfg: AutoencoderKLConfig): Record<string, unknown> {
  const n = cfg.blockOutChannels.length;
  return {
    _class_name: 'AutoencoderKL',
    in_channels: cfg.inChannels,
    out_channels: cfg.outChannels,
    down_block_types: new Array(n).fill('DownEncoderBlock2D'),
    up_block_types: new Array(n).fill('UpDecoderBlock2D'),
    block_out_channels: [...cfg.blockOutChannels],
    layers_per_block: cfg.layersPerBlock,
    act_fn: 'silu',
    latent_channels: cfg.latentChannels,
    norm_num_groups: cfg.normNumGroups,
    ...(cfg.sampleSize !== undefined ? { sample_size: cfg.sampleSize } : {}),
    scaling_factor: cfg.scalingFactor,
    use_quant_conv: cfg.useQuantConv ?? true,
    use_post_quant_conv: cfg.usePostQuantConv ?? true,
    mid_block_add_attention: cfg.midBlockAddAttention ?? true,
  };
}
