/**
 * Latent space of latent video diffusion (REFERENCE_SPEC §5.11): loading the SDXL VAE, encoding
 * frames to scaled latents and decoding scaled latents to frames, in chunks of frames.
 *
 * ```ts
 * const vae = loadVae(opts.vae, { device });             // --vae PATH, else $FLEXVID_VAE
 * const px = decodeLatents(vae, latents, { chunkSize: 10, onProgress });
 * // latents [B, T, 4, h, w] (model space, ×0.13025) → px [B, T, 3, 8h, 8w] float32, ≈ [−1, 1]
 * const u8 = decodedToUint8(px);                         // floor((clamp(x, −1, 1) + 1)/2 · 255)
 * ```
 *
 * - Encode (§5.11): frames in [−1, 1] → posterior → a sample (default; `posterior: 'mean'` for the
 *   mean) → × scaling factor.
 * - Decode: ÷ scaling factor → VAE decoder, chunk by chunk, into one float32 result on the
 *   latents' device. The VAE itself runs in its own dtype (float16 on CUDA by default, as the
 *   reference; float32 on the CPU, where libtorch 1.13 has no float16 kernels).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  conv2d,
  empty,
  Generator,
  groupNorm,
  interpolate,
  noGrad,
  randn,
  scaledDotProductAttention,
  tidy,
  type DType,
  type Tensor,
} from '../engine/index.ts';
import { loadTensors, rawToTensor } from '../nn/checkpoint.ts';
import { saveTensors } from '../nn/checkpoint.ts';
import { StateDictError } from '../nn/module.ts';
import { isRawTensor } from '../io/raw-tensor.ts';
import { readTorchFile } from '../io/torch-pickle.ts';
import { FileFormatError, FlexvidError, OptionError } from '../util/errors.ts';
import { AutoencoderKL } from './autoencoder-kl.ts';
import { samplePosterior } from './autoencoder-kl.ts';
import { configFromDiffusers, configToDiffusers, SDXL_VAE_CONFIG, type AutoencoderKLConfig } from './config.ts';
import { inferVaeConfig, toDiffusersNames, type VaeWeightLayout } from './diffusers-names.ts';

/** Environment variable naming the VAE weights when `--vae` is not given. */
export const VAE_ENV = 'FLEXVID_VAE';
/** Where the reference's VAE is published. */
export const VAE_DOWNLOAD_URL = 'https://huggingface.co/madebyollin/sdxl-vae-fp16-fix';
/** The weight file to download from {@link VAE_DOWNLOAD_URL}. */
export const VAE_WEIGHT_FILE = 'diffusion_pytorch_model.safetensors';
/** safetensors metadata key holding a diffusers-style config JSON (written by {@link saveVae}). */
export const VAE_CONFIG_METADATA_KEY = 'flexvid.vae_config';

/** File names looked for when `--vae` names a folder, in order. */
const FOLDER_CANDIDATES = [
  VAE_WEIGHT_FILE,
  'diffusion_pytorch_model.fp16.safetensors',
  'sdxl_vae.safetensors',
  path.join('vae', VAE_WEIGHT_FILE),
  path.join('vae', 'diffusion_pytorch_model.fp16.safetensors'),
  'diffusion_pytorch_model.bin',
];

/** The VAE weights are needed and absent; the message says what to download and where to put it. */
export class VaeWeightsMissingError extends FlexvidError {
  constructor(readonly reason: string) {
    super(
      `${reason}. Latent diffusion (REFERENCE_SPEC §5.11) needs the SDXL VAE (fp16-fix): download ` +
        `${VAE_WEIGHT_FILE} (335 MB; config.json next to it is optional) from ${VAE_DOWNLOAD_URL}/tree/main, ` +
        `for example into ~/.cache/flexvid/sdxl-vae-fp16-fix/, then pass --vae ~/.cache/flexvid/sdxl-vae-fp16-fix/${VAE_WEIGHT_FILE} ` +
        `(the folder works too) or set the environment variable ${VAE_ENV} to that path`,
    );
  }
}

/**
 * The weight file to load: `given` (a file or a folder holding one of the published file names),
 * else `$FLEXVID_VAE`. Throws {@link VaeWeightsMissingError} when there is none.
 */
export function resolveVaePath(given?: string | null): string {
  const envValue = process.env[VAE_ENV];
  const p = given ?? (envValue !== undefined && envValue !== '' ? envValue : undefined);
  const via = given ? '--vae' : VAE_ENV;
  if (p === undefined) throw new VaeWeightsMissingError(`no VAE weights given (neither --vae nor ${VAE_ENV})`);
  if (!fs.existsSync(p)) throw new VaeWeightsMissingError(`no VAE weights at ${p} (from ${via})`);
  if (fs.statSync(p).isDirectory()) {
    for (const c of FOLDER_CANDIDATES) {
      const f = path.join(p, c);
      if (fs.existsSync(f) && fs.statSync(f).isFile()) return f;
    }
    throw new VaeWeightsMissingError(`the folder ${p} (from ${via}) holds no ${FOLDER_CANDIDATES.join(' / ')}`);
  }
  return p;
}

const dtypeSupport = new Map<string, boolean>();

/** Whether the VAE's operations have kernels for `dtype` on `device` (probed once with tiny tensors). */
export function vaeDtypeSupported(device: string, dtype: DType): boolean {
  const key = `${device}/${dtype}`;
  const known = dtypeSupport.get(key);
  if (known !== undefined) return known;
  let ok = true;
  try {
    noGrad(() =>
      tidy(() => {
        const x = randn([1, 4, 4, 4]).to({ dtype, device });
        const w = randn([4, 4, 3, 3]).to({ dtype, device });
        const y = interpolate(groupNorm(conv2d(x, w, null, { padding: 1 }), 2).silu(), { scale: 2, mode: 'nearest' });
        const t = y.flatten(2).transpose(1, 2);
        scaledDotProductAttention(t, t, t).sum().item();
      }),
    );
  } catch {
    ok = false;
  }
  dtypeSupport.set(key, ok);
  return ok;
}

/** `'auto'` → float16 on CUDA (the reference), float32 elsewhere; checks the device has the kernels. */
export function resolveVaeDtype(device: string, dtype: DType | 'auto' | undefined, flag = '--vae-dtype'): DType {
  const d: DType = dtype === undefined || dtype === 'auto' ? (device.startsWith('cuda') ? 'float16' : 'float32') : dtype;
  if (!['float32', 'float16', 'bfloat16'].includes(d)) throw new OptionError(flag, 'float32, float16, bfloat16 or auto', d);
  if (!vaeDtypeSupported(device, d)) {
    throw new OptionError(flag, `a dtype with ${device} kernels in this libtorch (${device === 'cpu' ? 'float32 or bfloat16 on the CPU' : 'float32'})`, d);
  }
  return d;
}

/** Options of {@link loadVae}. */
export interface LoadVaeOptions {
  /** Device of the VAE (default 'cpu'). */
  device?: string;
  /** Parameter/compute dtype; default 'auto' (float16 on CUDA, float32 on the CPU). */
  dtype?: DType | 'auto';
  /** Override the config (otherwise: the file's metadata, a diffusers config.json next to it, or the shapes). */
  config?: AutoencoderKLConfig;
}

/** Where a loaded VAE came from (recorded in latent datasets). */
export interface VaeSource {
  file: string;
  layout: VaeWeightLayout;
}

const sources = new WeakMap<AutoencoderKL, VaeSource>();

/** The file and layout a VAE was loaded from (undefined for random VAEs). */
export function vaeSource(vae: AutoencoderKL): VaeSource | undefined {
  return sources.get(vae);
}

/** Read every tensor of a safetensors or PyTorch (zip) weight file, CPU. */
function readWeights(file: string): { weights: Map<string, Tensor>; metadata: Record<string, string> } {
  if (!file.endsWith('.bin') && !file.endsWith('.pt') && !file.endsWith('.ckpt')) {
    const { tensors, metadata } = loadTensors(file);
    return { weights: tensors, metadata };
  }
  const value = readTorchFile(file);
  const top = value instanceof Map ? [...value.entries()] : value !== null && typeof value === 'object' ? Object.entries(value) : [];
  const inner = top.find(([k]) => k === 'state_dict');
  const entries = inner && inner[1] && typeof inner[1] === 'object' ? (inner[1] instanceof Map ? [...inner[1].entries()] : Object.entries(inner[1])) : top;
  const weights = new Map<string, Tensor>();
  for (const [k, v] of entries) if (isRawTensor(v)) weights.set(String(k), rawToTensor(v));
  if (weights.size === 0) throw new FileFormatError(file, 'holds no tensors');
  return { weights, metadata: {} };
}

/** A diffusers `config.json` next to the weight file, when it describes an AutoencoderKL. */
function siblingConfig(file: string): AutoencoderKLConfig | undefined {
  const cfgFile = path.join(path.dirname(file), 'config.json');
  if (!fs.existsSync(cfgFile)) return undefined;
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(fs.readFileSync(cfgFile, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (json._class_name !== 'AutoencoderKL' && !(Array.isArray(json.block_out_channels) && 'latent_channels' in json)) return undefined;
  return configFromDiffusers(json, cfgFile);
}

/**
 * Load the VAE (REFERENCE_SPEC §5.11) from `given` (`--vae`: a weight file or a folder), else from
 * `$FLEXVID_VAE`. Weight names are mapped from the diffusers, older diffusers and original LDM
 * layouts; the config comes from the file's metadata, a diffusers `config.json` next to it, or the
 * tensor shapes (with the SDXL norm groups 32 and scaling factor 0.13025).
 * @throws VaeWeightsMissingError when no weights are given or found (the message says what to download);
 *   FileFormatError when the file does not hold a matching AutoencoderKL.
 */
export function loadVae(given: string | undefined | null, o: LoadVaeOptions = {}): AutoencoderKL {
  const file = resolveVaePath(given);
  const device = o.device ?? 'cpu';
  const dtype = resolveVaeDtype(device, o.dtype);
  const read = readWeights(file);
  const { weights, layout } = toDiffusersNames(read.weights, file);
  try {
    let config = o.config;
    const meta = read.metadata[VAE_CONFIG_METADATA_KEY];
    if (!config && meta !== undefined) {
      try {
        config = configFromDiffusers(JSON.parse(meta) as Record<string, unknown>, `${file} (metadata ${VAE_CONFIG_METADATA_KEY})`);
      } catch (e) {
        throw e instanceof FileFormatError ? e : new FileFormatError(file, `metadata ${VAE_CONFIG_METADATA_KEY} is not JSON`);
      }
    }
    config ??= siblingConfig(file);
    config ??= inferVaeConfig(weights, file, { normNumGroups: SDXL_VAE_CONFIG.normNumGroups, scalingFactor: SDXL_VAE_CONFIG.scalingFactor });
    const vae = AutoencoderKL.empty(config, { device, dtype });
    try {
      vae.loadStateDict(weights);
    } catch (e) {
      vae.dispose();
      if (e instanceof StateDictError) throw new FileFormatError(file, `weights do not match the VAE configuration (${e.message})`);
      throw e;
    }
    sources.set(vae, { file: path.resolve(file), layout });
    return vae;
  } finally {
    for (const t of weights.values()) t.dispose();
  }
}

/**
 * Save a VAE as a diffusers-named safetensors file (loadable by diffusers as
 * `diffusion_pytorch_model.safetensors`), its config in metadata {@link VAE_CONFIG_METADATA_KEY}.
 */
export function saveVae(file: string, vae: AutoencoderKL, metadata: Record<string, string> = {}): void {
  saveTensors(file, vae.stateDict(), { format: 'pt', ...metadata, [VAE_CONFIG_METADATA_KEY]: JSON.stringify(configToDiffusers(vae.config)) });
}

/** Progress callback: frames done so far, frames in total. */
export type FrameProgress = (done: number, total: number) => void;

/** Options of {@link encodeFrames}. */
export interface EncodeOptions {
  /** Frames per VAE call (default 20, the reference's `--enc_dec_chunk_size`). */
  chunkSize?: number;
  /** `'sample'` (default, §5.11: a posterior sample) or `'mean'` (deterministic). */
  posterior?: 'sample' | 'mean';
  /** Noise source of the posterior samples (default a new Generator(0)). */
  generator?: Generator;
  onProgress?: FrameProgress;
}

function checkChunk(flag: string, v: number | undefined, dflt: number): number {
  const c = v ?? dflt;
  if (!Number.isSafeInteger(c) || c < 1) throw new OptionError(flag, 'a positive integer', c);
  return c;
}

/** Split `[..., C, H, W]` into leading dims and the frame count. */
function frameDims(t: Tensor, what: string, channels: number): { lead: number[]; n: number; H: number; W: number } {
  if (t.ndim < 4 || t.size(-3) !== channels) throw new OptionError(what, `[..., ${channels}, H, W] with at least one leading dimension`, `[${t.shape.join(', ')}]`);
  const lead = t.shape.slice(0, -3);
  return { lead, n: lead.reduce((a, b) => a * b, 1), H: t.size(-2), W: t.size(-1) };
}

/**
 * Encode frames (REFERENCE_SPEC §5.11): `[..., 3, H, W]` in [−1, 1] → scaled latents
 * `[..., C, H/f, W/f]` float32 (posterior sample or mean × scaling factor), on the frames' device,
 * `chunkSize` frames per VAE call.
 */
export function encodeFrames(vae: AutoencoderKL, frames: Tensor, o: EncodeOptions = {}): Tensor {
  const chunk = checkChunk('--encode-chunk-size', o.chunkSize, 20);
  const { lead, n, H, W } = frameDims(frames, 'frames', vae.config.inChannels);
  const f = vae.downFactor;
  const C = vae.config.latentChannels;
  const mode = o.posterior ?? 'sample';
  if (mode !== 'sample' && mode !== 'mean') throw new OptionError('--posterior', 'sample or mean', mode);
  const generator = o.generator ?? new Generator(0);
  const flat = frames.reshape([n, vae.config.inChannels, H, W]);
  const out = empty([n, C, H / f, W / f], { device: frames.device });
  try {
    for (let s = 0; s < n; s += chunk) {
      const k = Math.min(chunk, n - s);
      noGrad(() =>
        tidy(() => {
          const post = vae.encode(flat.narrow(0, s, k));
          const z = mode === 'mean' ? post.mean : samplePosterior(post, generator);
          z.mul_(vae.config.scalingFactor);
          out.narrow(0, s, k).copy_(z);
        }),
      );
      o.onProgress?.(s + k, n);
    }
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    flat.dispose();
  }
  const shaped = out.reshape([...lead, C, H / f, W / f]);
  out.dispose();
  return shaped;
}

/** Options of {@link decodeLatents}. */
export interface DecodeOptions {
  /** Frames per VAE call (default 10, the reference's sampling `--decode_chunk_size`; FVD uses 5). */
  chunkSize?: number;
  onProgress?: FrameProgress;
}

/**
 * Decode scaled latents (REFERENCE_SPEC §5.11): `[..., C, h, w]` (e.g. `[B, T, 4, h, w]`) →
 * frames `[..., 3, f·h, f·w]` float32 in the VAE's range (≈ [−1, 1], not clamped), on the latents'
 * device; latents are divided by the scaling factor and decoded `chunkSize` frames at a time.
 * Chunking does not change the result (each frame is decoded independently).
 */
export function decodeLatents(vae: AutoencoderKL, latents: Tensor, o: DecodeOptions = {}): Tensor {
  const chunk = checkChunk('--decode-chunk-size', o.chunkSize, 10);
  const { lead, n, H: h, W: w } = frameDims(latents, 'latents', vae.config.latentChannels);
  const f = vae.downFactor;
  const Cout = vae.config.outChannels;
  const flat = latents.reshape([n, vae.config.latentChannels, h, w]);
  const out = empty([n, Cout, h * f, w * f], { device: latents.device });
  try {
    for (let s = 0; s < n; s += chunk) {
      const k = Math.min(chunk, n - s);
      noGrad(() =>
        tidy(() => {
          const z = flat.narrow(0, s, k).float().div(vae.config.scalingFactor);
          out.narrow(0, s, k).copy_(vae.decode(z));
        }),
      );
      o.onProgress?.(s + k, n);
    }
  } catch (e) {
    out.dispose();
    throw e;
  } finally {
    flat.dispose();
  }
  const shaped = out.reshape([...lead, Cout, h * f, w * f]);
  out.dispose();
  return shaped;
}

/**
 * Decoded frames → uint8 as the reference stores samples and decoded ground truth
 * (REFERENCE_SPEC §7.2 step 6, §8.2 step 3): `floor((clamp(x, −1, 1) + 1)/2 · 255)` in float32.
 */
export function decodedToUint8(x: Tensor): Tensor {
  return tidy(() => x.float().clamp(-1, 1).add(1).div(2).mul(255).to({ dtype: 'uint8' }));
}
