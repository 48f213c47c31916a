/**
 * The VAE side of `flexvid data from-video --latent` (REFERENCE_SPEC §5.11 encode): a
 * {@link FrameEncoder} turning decoded RGB24 frames into model-space latents for
 * `datasetFromVideo` (`src/data/latent-video.ts` writes them).
 */
import { Generator, tensor, tidy } from '../engine/index.ts';
import type { FrameEncoder } from '../data/latent-video.ts';
import { configToDiffusers } from './config.ts';
import type { AutoencoderKL } from './autoencoder-kl.ts';
import { encodeFrames, vaeSource } from './latent-space.ts';

/** uint8 → `2·(v/255) − 1` as float32, exactly as the dataset readers convert pixels. */
const U8_TO_UNIT = (() => {
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = 2 * (v / 255) - 1;
  return t;
})();

/** RGB24 frames `(n, R, R, 3)` → `[n, 3, R, R]` float32 in [−1, 1] (the readers' pixel mapping). */
export function rgb24ToUnit(rgb: Uint8Array, n: number, R: number): Float32Array {
  const hw = R * R;
  const out = new Float32Array(n * 3 * hw);
  for (let f = 0; f < n; f++) {
    for (let p = 0; p < hw; p++) {
      const s = (f * hw + p) * 3;
      for (let c = 0; c < 3; c++) out[(f * 3 + c) * hw + p] = U8_TO_UNIT[rgb[s + c]!]!;
    }
  }
  return out;
}

/** Options of {@link vaeFrameEncoder}. */
export interface VaeFrameEncoderOptions {
  /** Frames per VAE call (default 20, the reference's `--enc_dec_chunk_size`). */
  chunkSize?: number;
  /** `'sample'` (default, REFERENCE_SPEC §5.11) or `'mean'`. */
  posterior?: 'sample' | 'mean';
  /** Seed of the posterior noise (default 0). */
  seed?: number;
}

/** A {@link FrameEncoder} over a loaded VAE (frames are moved to the VAE's device). */
export function vaeFrameEncoder(vae: AutoencoderKL, o: VaeFrameEncoderOptions = {}): FrameEncoder {
  const chunkSize = o.chunkSize ?? 20;
  const posterior = o.posterior ?? 'sample';
  const seed = o.seed ?? 0;
  const generator = new Generator(seed);
  const src = vaeSource(vae);
  return {
    factor: vae.downFactor,
    channels: vae.config.latentChannels,
    batchFrames: chunkSize,
    encode(rgb: Uint8Array, n: number, R: number): Float32Array {
      return tidy(() => {
        const x = tensor(rgb24ToUnit(rgb, n, R), { shape: [n, 3, R, R], device: vae.device });
        const z = encodeFrames(vae, x, { chunkSize, posterior, generator });
        return z.permute([0, 2, 3, 1]).contiguous().toFloat32Array();
      });
    },
    describe(): Record<string, unknown> {
      return {
        vae_file: src?.file ?? null,
        vae_layout: src?.layout ?? null,
        vae_config: configToDiffusers(vae.config),
        scaling_factor: vae.config.scalingFactor,
        down_factor: vae.downFactor,
        latent_channels: vae.config.latentChannels,
        posterior,
        posterior_seed: posterior === 'sample' ? seed : null,
        encode_chunk_size: chunkSize,
        vae_dtype: vae.dtype,
      };
    },
  };
}
