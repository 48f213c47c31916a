/**
 * FVD / KVD of an evaluation folder (REFERENCE_SPEC §8.2, §8.3): I3D features of the real videos
 * (the eval dataset named by `<eval_dir>/model_config.json` and the folder's identifier) and of the
 * generated ones (`samples/sample_<i:04d>-<k>.npy`), then the Fréchet distance and the polynomial
 * MMD, written to `fvd-<N>-<k>.txt` / `kvd-<N>-<k>.txt`.
 *
 * Differences from the reference (corrected): `batchSize` defaults to 8 (the reference crashes
 * without it, §10.4 #38); batches are never zero-padded (features do not depend on the batch, so
 * this changes nothing but time); clips shorter than 9 frames are padded by repeating the last
 * frame instead of failing; features are cached per eval folder (`features/i3d-*.safetensors`) so
 * FVD and KVD share one I3D pass.
 *
 * Latent datasets (real items with C ≠ 3, §8.2 step 3): every real window is decoded once by the
 * SDXL VAE into the shared cache `<decodeCacheDir>/<key>/sample_<i:04d>.npy` (uint8, `decodedCache`),
 * all N first in a random order (as the reference, so concurrent jobs spread the work), then read
 * back through the same `u8 → [-1, 1] → u8` round trip as the generated videos; the generated videos
 * must be `[T, 3, f·h, f·w]`. Corrected: the cache key starts with the dataset's name, and for evenly
 * spaced views (whose windows depend on N) ends with `_n<N>`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tensor, tidy } from '../engine/index.ts';
import { loadTensors, saveTensors } from '../nn/checkpoint.ts';
import { getEvalDataset, type EvalConfig } from '../data/datasets.ts';
import { SpacedView, type WindowDataset } from '../data/views.ts';
import { readNpy, readNpyHeader } from '../data/npy.ts';
import { parseEvalIdentifier, samplePath } from '../sampling/naming.ts';
import { FileFormatError, FlexvidError, OptionError } from '../util/errors.ts';
import { fvdFromFeatures } from './frechet.ts';
import { kvdFromFeatures } from './mmd.ts';
import { FVD_ROUND_TRIP_TABLE } from './fvd-input.ts';
import { metricFileNames, readMetricFile, writeMetricFile } from './results.ts';
import { I3D_CLASSES, type I3D } from './i3d.ts';
import { decodedCache, decodedCacheKey, decodedCachePath, decodedToUint8, decodeLatents, DEFAULT_DECODE_CACHE_DIR, type AutoencoderKL } from '../vae/index.ts';

/** The metrics this module computes. */
export type VideoMetric = 'fvd' | 'kvd';

/** Options of {@link evaluateVideoMetrics}. */
export interface VideoMetricOptions {
  /** The evaluation folder `…/<identifier>` holding `model_config.json` and `samples/`. */
  evalDir: string;
  /** Metrics to write. */
  metrics: readonly VideoMetric[];
  /** Number of videos N (default: the number of consecutive sample files `sample_0000-<k>.npy`, …). */
  numVideos?: number;
  /** I3D batch size (default 8). */
  batchSize?: number;
  /** Which seed's samples (k, default 0). */
  sampleIdx?: number;
  /** The network, created only when features are not cached (and disposed at the end). */
  network: () => I3D;
  /**
   * Identifies the network's weights and settings for the feature cache (e.g. the weights file's
   * path, size and time); a function is called only when features are needed. Omit to disable the
   * cache.
   */
  networkId?: string | (() => string);
  /** Dataset name overriding `model_config.json`'s `dataset` (tests, moved datasets). */
  dataset?: string;
  /**
   * Latent datasets: the VAE that decodes the real videos, created only when a video is not in the
   * decode cache yet (and disposed at the end).
   */
  vae?: () => AutoencoderKL;
  /** Root of the decoded-real-video cache (default `./tmp/plaicraft_decoded`, the reference's). */
  decodeCacheDir?: string;
  /** Frames per VAE decoder call (default 5, the reference's FVD `--decode_chunk_size`). */
  decodeChunkSize?: number;
  /** Progress: phase, videos done, total. */
  onProgress?: (phase: 'decode' | 'real' | 'generated', done: number, total: number) => void;
  onWarning?: (message: string) => void;
}

/** One metric's outcome. */
export interface MetricOutcome {
  value: number;
  file: string;
  /** True when the file existed already and was only read. */
  existed: boolean;
}

/** Result of {@link evaluateVideoMetrics}. */
export interface VideoMetricResult {
  numVideos: number;
  sampleIdx: number;
  fvd?: MetricOutcome;
  kvd?: MetricOutcome;
  /** Where features came from (undefined when every metric file existed). */
  features?: { real: 'cache' | 'computed'; generated: 'cache' | 'computed' };
}

function checkInt(name: string, v: number | undefined, min: number): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < min)) throw new OptionError(name, `an integer ≥ ${min}`, v);
}

/** Number of consecutive sample files `sample_0000-k.npy`, `sample_0001-k.npy`, … in the folder. */
export function countSampleFiles(evalDir: string, sampleIdx: number): number {
  let n = 0;
  while (fs.existsSync(samplePath(evalDir, n, sampleIdx))) n++;
  return n;
}

/** `<evalDir>/model_config.json` (the training config written by sampling, §7.2 step 5). */
export function readModelConfig(evalDir: string): Record<string, unknown> {
  const file = path.join(evalDir, 'model_config.json');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileFormatError(file, code === 'ENOENT' ? 'missing (is this an evaluation folder written by `flexvid sample`?)' : `cannot read (${code})`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new FileFormatError(file, `invalid JSON (${(e as Error).message})`);
  }
}

/**
 * The reference's mapping of a model-space value back to uint8 before I3D (§8.2 step 4, faithful):
 * `trunc((x + 1)·255/2)` in float32 (clamped to [0, 255]).
 */
export function modelToU8(x: number): number {
  const f = Math.fround;
  const v = Math.trunc(f(f(f(x + 1) * 255) / 2));
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

interface CacheEntry {
  features: Float32Array;
}

function cacheFile(evalDir: string, which: string): string {
  return path.join(evalDir, 'features', `i3d-${which}.safetensors`);
}

function readCache(file: string, key: string, n: number): CacheEntry | null {
  if (!fs.existsSync(file)) return null;
  try {
    const { tensors, metadata } = loadTensors(file);
    try {
      const t = tensors.get('features');
      if (metadata['flexvid.key'] !== key || !t || t.shape.join(',') !== `${n},${I3D_CLASSES}`) return null;
      return { features: t.toFloat32Array() };
    } finally {
      for (const x of tensors.values()) x.dispose();
    }
  } catch {
    return null; // unreadable cache: recompute
  }
}

function writeCache(file: string, key: string, features: Float32Array, n: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  using t = tensor(features, { shape: [n, I3D_CLASSES] });
  saveTensors(file, { features: t }, { 'flexvid.key': key });
}

/** Stream videos (uint8 `[T, 3, H, W]` each) through I3D in chunks of `batchSize`. */
function computeFeatures(
  net: I3D,
  n: number,
  batchSize: number,
  video: (i: number) => { data: Uint8Array; shape: [number, number, number, number] },
  onProgress?: (done: number, total: number) => void,
): Float32Array {
  const out = new Float32Array(n * I3D_CLASSES);
  let shape0: string | undefined;
  for (let s = 0; s < n; s += batchSize) {
    const m = Math.min(batchSize, n - s);
    const vids = Array.from({ length: m }, (_, j) => video(s + j));
    const shape = vids[0]!.shape;
    for (const [j, v] of vids.entries()) {
      if (v.shape.join(',') !== shape.join(',')) throw new FlexvidError(`video ${s + j} has shape [${v.shape}] but video ${s} has [${shape}]`);
    }
    shape0 ??= shape.join(',');
    const per = vids[0]!.data.length;
    const batch = new Uint8Array(m * per);
    vids.forEach((v, j) => batch.set(v.data, j * per));
    using x = tensor(batch, { shape: [m, ...shape] });
    using f = net.features(x, { layout: 'BTCHW', batchSize });
    out.set(f.toFloat32Array(), s * I3D_CLASSES);
    onProgress?.(s + m, n);
  }
  return out;
}

/**
 * A stored uint8 video `[T, 3, H, W]` (a sample file or a decoded real video) through the
 * reference's float32 `u8 → [-1, 1] → u8` round trip (§8.2 step 4, faithful).
 */
function readRoundTrip(file: string): { data: Uint8Array; shape: [number, number, number, number] } {
  const a = readNpy(file);
  if (a.dtype !== '|u1' || a.shape.length !== 4 || a.shape[1] !== 3) {
    throw new FileFormatError(file, `expected a uint8 video [T, 3, H, W], found ${a.dtype} [${a.shape.join(', ')}]`);
  }
  const src = a.data as Uint8Array;
  const data = new Uint8Array(src.length);
  for (let j = 0; j < src.length; j++) data[j] = FVD_ROUND_TRIP_TABLE[src[j]!]!;
  return { data, shape: a.shape as [number, number, number, number] };
}

/**
 * Decode the first N real (latent) videos of `ds` into the cache `cache.dir/cache.key` (§8.2 step 3):
 * all of them first, in a random order (as the reference, so that concurrent jobs share the work),
 * each once under `decodedCache`'s lock; the VAE is created only when a video is missing. Checks
 * that the decoded videos have the generated videos' shape `genShape` — before decoding when the
 * VAE is needed, else from the cached files.
 */
async function decodeRealVideos(
  ds: WindowDataset,
  N: number,
  cache: { dir: string; key: string },
  genShape: readonly number[],
  genFile: string,
  datasetName: string,
  o: Pick<VideoMetricOptions, 'vae' | 'decodeChunkSize' | 'onProgress'>,
): Promise<void> {
  const chunkSize = o.decodeChunkSize ?? 5;
  checkInt('decode_chunk_size', chunkSize, 1);
  const [C, h, w] = ds.frameShape();
  const mismatch = (want: readonly number[], source: string) =>
    new FileFormatError(genFile, `generated video shape [${genShape.join(', ')}] differs from the decoded real videos' [${want.join(', ')}] (${source})`);
  let vae: AutoencoderKL | undefined;
  const getVae = (): AutoencoderKL => {
    if (vae) return vae;
    if (!o.vae) throw new FlexvidError(`dataset ${datasetName} holds ${C}-channel latents: FVD decodes them with the SDXL VAE (REFERENCE_SPEC §8.2 step 3); pass --vae PATH or set FLEXVID_VAE`);
    vae = o.vae();
    if (vae.config.latentChannels !== C) throw new FlexvidError(`dataset ${datasetName} has ${C}-channel frames but the VAE decodes ${vae.config.latentChannels}-channel latents`);
    const f = vae.downFactor;
    const want = [ds.T, vae.config.outChannels, h * f, w * f];
    if (genShape.join(', ') !== want.join(', ')) throw mismatch(want, `the VAE's decoding of dataset ${datasetName}'s ${C}×${h}×${w} latents`);
    return vae;
  };
  try {
    const file = (i: number) => decodedCachePath(cache.dir, cache.key, i);
    if (Array.from({ length: N }, (_, i) => i).some((i) => !fs.existsSync(file(i)))) getVae(); // errors before any decoding
    const order = Array.from({ length: N }, (_, i) => i);
    for (let i = N - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    let done = 0;
    for (const i of order) {
      if (!fs.existsSync(file(i))) {
        await decodedCache(cache.dir, cache.key, i, () => {
          const v = getVae();
          const item = ds.get(i);
          return tidy(() => {
            const u8 = decodedToUint8(decodeLatents(v, tensor(item.frames, { shape: [...item.shape] }), { chunkSize }));
            return { data: u8.toBytes(), shape: [...u8.shape] };
          });
        });
      }
      o.onProgress?.('decode', ++done, N);
    }
    for (let i = 0; i < N; i++) {
      const shape = readNpyHeader(file(i)).shape;
      if (shape.join(', ') !== genShape.join(', ')) throw mismatch(shape, `cached in ${file(i)}`);
    }
  } finally {
    vae?.dispose();
  }
}

/**
 * Compute (or read) FVD and/or KVD for an evaluation folder (REFERENCE_SPEC §8.2, §8.3).
 * Existing metric files are read and reported, not recomputed (§8.2 step 1).
 */
export async function evaluateVideoMetrics(o: VideoMetricOptions): Promise<VideoMetricResult> {
  const sampleIdx = o.sampleIdx ?? 0;
  const batchSize = o.batchSize ?? 8;
  checkInt('sample_idx', sampleIdx, 0);
  checkInt('batch_size', batchSize, 1);
  checkInt('num_videos', o.numVideos, 2);
  if (o.metrics.length === 0) throw new OptionError('metrics', 'at least one of fvd, kvd', o.metrics);
  if (!fs.existsSync(o.evalDir) || !fs.statSync(o.evalDir).isDirectory()) throw new OptionError('eval_dir', 'an existing evaluation folder', o.evalDir);

  const available = countSampleFiles(o.evalDir, sampleIdx);
  const N = o.numVideos ?? available;
  if (N < 2) {
    throw new OptionError('num_videos', `at least 2 videos (found ${available} consecutive files ${path.join(o.evalDir, 'samples', `sample_XXXX-${sampleIdx}.npy`)})`, N);
  }
  const result: VideoMetricResult = { numVideos: N, sampleIdx };
  const files = { fvd: path.join(o.evalDir, metricFileNames.fvd(N, sampleIdx)), kvd: path.join(o.evalDir, metricFileNames.kvd(N, sampleIdx)) };
  const todo = o.metrics.filter((m) => !fs.existsSync(files[m]));
  for (const m of o.metrics) if (!todo.includes(m)) result[m] = { value: readMetricFile(files[m]), file: files[m], existed: true };
  if (todo.length === 0) return result;
  if (available < N) {
    throw new FileFormatError(samplePath(o.evalDir, available, sampleIdx), `missing: --num-videos ${N} needs sample files 0…${N - 1} (found ${available})`);
  }

  // Real videos: the eval dataset of §8.2 step 2.
  const ident = parseEvalIdentifier(o.evalDir);
  const cfg = readModelConfig(o.evalDir);
  const datasetName = o.dataset ?? cfg.dataset;
  if (typeof datasetName !== 'string' || datasetName === '') {
    throw new FileFormatError(path.join(o.evalDir, 'model_config.json'), 'has no "dataset" name');
  }

  let net: I3D | undefined;
  const getNet = () => (net ??= o.network());
  const networkId = typeof o.networkId === 'function' ? o.networkId() : o.networkId;
  try {
    const genShape = readNpyHeader(samplePath(o.evalDir, 0, sampleIdx)).shape;
    const genKey = JSON.stringify({
      net: networkId,
      files: Array.from({ length: N }, (_, i) => {
        const st = fs.statSync(samplePath(o.evalDir, i, sampleIdx));
        return [st.size, Math.round(st.mtimeMs)];
      }),
    });
    const realKey = JSON.stringify({ net: networkId, dataset: datasetName, ident: path.basename(path.resolve(o.evalDir)) });
    const genCacheFile = cacheFile(o.evalDir, `generated-${N}-${sampleIdx}`);
    const realCacheFile = cacheFile(o.evalDir, `real-${N}`);
    const useCache = networkId !== undefined;
    let gen = useCache ? readCache(genCacheFile, genKey, N) : null;
    let real = useCache ? readCache(realCacheFile, realKey, N) : null;
    result.features = { real: real ? 'cache' : 'computed', generated: gen ? 'cache' : 'computed' };

    // Open and check the real videos before any I3D work (§8.2 step 2).
    let dataset: WindowDataset | undefined;
    let decoded: { dir: string; key: string } | undefined;
    if (!real) {
      dataset = (
        await getEvalDataset(datasetName, {
          T: ident.T,
          train: ident.evalOnTrain,
          config: ident.evalDatasetConfig as EvalConfig,
          nData: N,
          frameRange: [ident.lowerFrameRange, ident.upperFrameRange],
        })
      ).dataset;
      const [C, H, W] = dataset.frameShape();
      if (dataset.length < N) throw new OptionError('num_videos', `at most the ${dataset.length} videos of the eval dataset ${datasetName}`, N);
      if (C === 3) {
        const want = [dataset.T, 3, H, W].join(', ');
        if (genShape.join(', ') !== want) {
          throw new FileFormatError(samplePath(o.evalDir, 0, sampleIdx), `generated video shape [${genShape.join(', ')}] differs from the real videos' [${want}]`);
        }
      } else {
        // Latents (§8.2 step 3): decode every real video once into the shared cache.
        let key = decodedCacheKey({
          dataset: datasetName,
          T: ident.T,
          config: ident.evalDatasetConfig,
          lower: ident.lowerFrameRange,
          upper: ident.upperFrameRange,
          evalOnTrain: ident.evalOnTrain,
        });
        if (dataset instanceof SpacedView) key += `_n${N}`; // corrected: spaced windows depend on N
        decoded = { dir: o.decodeCacheDir ?? DEFAULT_DECODE_CACHE_DIR, key };
        await decodeRealVideos(dataset, N, decoded, genShape, samplePath(o.evalDir, 0, sampleIdx), datasetName, o);
      }
    }

    if (!gen) {
      const features = computeFeatures(
        getNet(),
        N,
        batchSize,
        (i) => readRoundTrip(samplePath(o.evalDir, i, sampleIdx)),
        (d, t) => o.onProgress?.('generated', d, t),
      );
      gen = { features };
      if (useCache) writeCache(genCacheFile, genKey, features, N);
    }

    if (!real) {
      const ds = dataset!;
      const features = computeFeatures(
        getNet(),
        N,
        batchSize,
        (i) => {
          if (decoded) return readRoundTrip(decodedCachePath(decoded.dir, decoded.key, i));
          const item = ds.get(i);
          const data = new Uint8Array(item.frames.length);
          for (let j = 0; j < data.length; j++) data[j] = modelToU8(item.frames[j]!);
          return { data, shape: item.shape as [number, number, number, number] };
        },
        (d, t) => o.onProgress?.('real', d, t),
      );
      real = { features };
      if (useCache) writeCache(realCacheFile, realKey, features, N);
    }

    const R = { data: Float64Array.from(real.features), n: N, d: I3D_CLASSES };
    const G = { data: Float64Array.from(gen.features), n: N, d: I3D_CLASSES };
    for (const m of todo) {
      const value = m === 'fvd' ? fvdFromFeatures(R, G, { onWarning: o.onWarning }) : kvdFromFeatures(R, G);
      writeMetricFile(files[m], value);
      result[m] = { value, file: files[m], existed: false };
    }
    return result;
  } finally {
    net?.dispose();
  }
}
