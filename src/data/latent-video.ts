/**
 * Latent video datasets: a user's video encoded by a VAE into the same chunked layout as pixel
 * datasets (REFERENCE_SPEC §5.11, ARCHITECTURE §3), so that higher-resolution streams fit the model.
 *
 * ```
 * <root>/config.json            { T_total, chunk_size, resolution: R/f, dtype: "float32",
 *                                 space: "latent", pixel_resolution: R, latent: {…VAE…}, … }
 * <root>/<split>/0/<k>.npy      float32 (chunk_size, R/f, R/f, C): stored x = (z + 1)/2
 * ```
 *
 * `z` are the model-space latents (VAE posterior × scaling factor 0.13025). They are stored with
 * the float-frame convention of the layout (readers map every float chunk value x to 2x − 1), so
 * every existing reader — `VideoStore`, the views, the training loader — returns `z` itself
 * (to float32 rounding, ~1e-7) with no special case; `config.space = "latent"` marks the dataset
 * for tools that must decode it (videos, FVD).
 *
 * The engine-free part lives here (the data layer does not depend on the engine); the VAE side is
 * a {@link FrameEncoder} built by `src/vae/frame-encoder.ts`.
 */
import { FileFormatError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';
import { encodeNpyHeader } from './npy.ts';
import { chunkPath, readDatasetConfig, type DatasetConfig, type Split } from './layout.ts';

/** Value of `config.space` for latent datasets. */
export const LATENT_SPACE = 'latent';

/** Encodes RGB frames to latents for `datasetFromVideo({ latent })`. */
export interface FrameEncoder {
  /** Spatial downsampling factor (8 for SDXL): the frame side must be a multiple. */
  readonly factor: number;
  /** Latent channels (4). */
  readonly channels: number;
  /** Frames per `encode` call (at most). */
  readonly batchFrames: number;
  /**
   * Encode `n` RGB24 frames `(n, R, R, 3)` uint8 → model-space latents, channel-last
   * `(n, R/f, R/f, C)` float32.
   */
  encode(rgb: Uint8Array, n: number, R: number): Float32Array;
  /** Facts recorded in `config.json` under `latent` (VAE file, scaling factor, posterior mode, …). */
  describe(): Record<string, unknown>;
}

/** The stored value of a model-space latent (readers apply x ↦ 2x − 1). */
export function latentToStored(z: number): number {
  return (z + 1) / 2;
}

/**
 * Writes a stream of RGB24 frames as latent chunks `(K, R/f, R/f, C)` float32, encoding
 * `encoder.batchFrames` frames at a time (never past the end of the current chunk, so the frames
 * of an incomplete last chunk are not encoded). Same interface as the uint8 chunk writer.
 */
export class LatentChunkWriter {
  private readonly frameBytes: number;
  private readonly latentLen: number;
  private readonly h: number;
  private readonly pix: Uint8Array;
  private pixFill = 0;
  private readonly lat: Float32Array;
  private latFrames = 0;
  chunks = 0;

  constructor(
    private readonly out: string,
    private readonly split: Split,
    private readonly K: number,
    private readonly R: number,
    private readonly encoder: FrameEncoder,
  ) {
    this.frameBytes = R * R * 3;
    this.h = R / encoder.factor;
    this.latentLen = this.h * this.h * encoder.channels;
    this.pix = new Uint8Array(Math.min(Math.max(1, encoder.batchFrames), K) * this.frameBytes);
    this.lat = new Float32Array(K * this.latentLen);
  }

  /** Frames to collect before the next encode call. */
  private target(): number {
    return Math.min(this.pix.length / this.frameBytes, this.K - this.latFrames);
  }

  /** Append bytes of whole or partial frames. */
  push(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) {
      const want = this.target() * this.frameBytes;
      const n = Math.min(bytes.length - off, want - this.pixFill);
      this.pix.set(bytes.subarray(off, off + n), this.pixFill);
      this.pixFill += n;
      off += n;
      if (this.pixFill === want) this.encodeBatch();
    }
  }

  private encodeBatch(): void {
    const n = this.pixFill / this.frameBytes;
    const z = this.encoder.encode(this.pix.subarray(0, this.pixFill), n, this.R);
    if (z.length !== n * this.latentLen) {
      throw new RangeError(`frame encoder returned ${z.length} values for ${n} frames (expected ${n * this.latentLen})`);
    }
    const base = this.latFrames * this.latentLen;
    for (let i = 0; i < z.length; i++) this.lat[base + i] = (z[i]! + 1) / 2;
    this.latFrames += n;
    this.pixFill = 0;
    if (this.latFrames === this.K) this.flush();
  }

  private flush(): void {
    const header = encodeNpyHeader('<f4', [this.K, this.h, this.h, this.encoder.channels]);
    writeFileAtomic(chunkPath(this.out, this.split, 0, this.chunks), [header, new Uint8Array(this.lat.buffer, this.lat.byteOffset, this.lat.byteLength)]);
    this.chunks++;
    this.latFrames = 0;
  }

  /** Frames of the incomplete last chunk (dropped). */
  get leftover(): number {
    return this.latFrames + Math.floor(this.pixFill / this.frameBytes);
  }
}

/** The `config.json` fields of a latent dataset made from `R`-pixel frames. */
export function latentConfigFields(encoder: FrameEncoder, R: number): Record<string, unknown> {
  return {
    resolution: R / encoder.factor,
    dtype: 'float32',
    space: LATENT_SPACE,
    pixel_resolution: R,
    value_encoding: 'stored x = (latent + 1) / 2; readers map x to 2x - 1 (the float-frame convention), giving the scaled latents',
    latent: encoder.describe(),
  };
}

/** True when a dataset config describes a latent dataset. */
export function isLatentDataset(cfg: DatasetConfig): boolean {
  return cfg.space === LATENT_SPACE;
}

/** What a latent dataset folder records about its VAE (null for pixel datasets). */
export interface LatentDatasetInfo {
  /** Frame side of the encoded video in pixels. */
  pixelResolution: number;
  /** Latent side. */
  resolution: number;
  /** The encoder's facts (`vae_file`, `scaling_factor`, `posterior`, …). */
  latent: Record<string, unknown>;
}

/** Read a dataset folder's latent facts; null when it is a pixel dataset. */
export function readLatentDatasetInfo(root: string): LatentDatasetInfo | null {
  const cfg = readDatasetConfig(root);
  if (!isLatentDataset(cfg)) return null;
  const px = cfg.pixel_resolution;
  if (typeof px !== 'number' || typeof cfg.resolution !== 'number') {
    throw new FileFormatError(`${root}/config.json`, 'latent dataset without pixel_resolution / resolution');
  }
  return { pixelResolution: px, resolution: cfg.resolution, latent: (cfg.latent as Record<string, unknown> | undefined) ?? {} };
}
