/**
 * `flexvid video --eval-dir DIR` (REFERENCE_SPEC §8.1, `scripts/video_make_mp4.py`): a grid video
 * of sampled videos beside their ground truth.
 *
 * Layout: for each data index `d` in `start_idx … start_idx + do_n − 1` a column
 * `[ground truth?, seed 0, seed 1, …]` stacked vertically; the columns side by side. Ground-truth
 * frames are all marked observed (red inset rectangle); in samples the first `n_obs` frames are.
 * Output: `<out_dir>/videos/<do_n>_<n_seeds>.<gif|mp4>`.
 *
 * Latent datasets (4-channel ground truth, §5.11): the ground truth is decoded with the SDXL VAE
 * (`--vae`, else `$FLEXVID_VAE`; `--decode-chunk-size` frames per call) and converted like samples,
 * `floor((clamp(x, −1, 1) + 1)/2 · 255)`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { composeGrid, firstFrames, markObserved, videoFrames, videoFromFloatTCHW, videoFromU8TCHW, type VideoU8 } from '../media/frames.ts';
import { writeGif } from '../media/gif.ts';
import { writeMp4 } from '../media/mp4.ts';
import { parseEvalIdentifier, samplePath } from '../sampling/naming.ts';
import { FileFormatError, FlexvidError, OptionError } from '../util/errors.ts';
import { tensor, tidy, type DType } from '../engine/index.ts';
import { decodedToUint8, decodeLatents, loadVae, type AutoencoderKL } from '../vae/index.ts';
import { openEvalDataset, readEvalDir, readSampleFile, resolveDevice, type Reporting } from './common.ts';

export const VIDEO_FORMATS = ['gif', 'mp4'] as const;
export type VideoFormat = (typeof VIDEO_FORMATS)[number];

/** Options of {@link makeVideo} (§8.1 flags). */
export interface MakeVideoOptions extends Reporting {
  /** Full eval directory `results/<id>/<model>_<sampler>/<identifier>`. */
  evalDir: string;
  /** `n_data` for evenly spaced evaluation views (needed when the view is Spaced). */
  numSampledVideos?: number;
  /** Output root (default: the eval dir). */
  outDir?: string;
  /** Put the ground truth above the samples (default true). */
  addGt?: boolean;
  /** Data indices shown (default 1). */
  doN?: number;
  /** First data index (default 0). */
  startIdx?: number;
  /** Seeds (sample files) per data index (default 1). */
  nSeeds?: number;
  /** `gif` (default) or `mp4`. */
  format?: string;
  /** Frames per second (default 10). */
  fps?: number;
  /** [c6f25f7] PLAICraft custom clip folder. */
  customClipPath?: string;
  /** Frames per VAE decoder call for latent ground truth (default 10). */
  decodeChunkSize?: number;
  /** Device of the VAE (cpu, cuda, cuda:N, auto; default auto). */
  device?: string;
  /** `--vae`: SDXL VAE weights for latent ground truth (else `$FLEXVID_VAE`). */
  vaePath?: string;
  /** `--vae-dtype` (default auto). */
  vaeDtype?: DType | 'auto';
  /** Library use / tests: a VAE instead of loading `vaePath` (not disposed by {@link makeVideo}). */
  vae?: AutoencoderKL;
}

/** What {@link makeVideo} wrote. */
export interface MakeVideoResult {
  file: string;
  width: number;
  height: number;
  frames: number;
  /** Seeds used per data index (sample_idx values). */
  seeds: number[][];
}

function intOpt(flag: string, v: number | undefined, def: number, min: number): number {
  const x = v ?? def;
  if (!(Number.isSafeInteger(x) && x >= min)) throw new OptionError(flag, `an integer ≥ ${min}`, x);
  return x;
}

/**
 * Load `n` seeds of data index `d` (§8.1): `sample_<d>-0`, `-1`, … until `n` were read; unreadable
 * files (permission errors) are skipped, a missing file aborts, at most 100 seeds are tried.
 */
function loadSeeds(evalDir: string, d: number, n: number): { videos: VideoU8[]; seeds: number[]; T: number } {
  const videos: VideoU8[] = [];
  const seeds: number[] = [];
  let T = -1;
  for (let k = 0; videos.length < n; k++) {
    if (k >= 100) throw new FlexvidError(`data index ${d}: tried 100 seeds but found only ${videos.length} readable sample files`);
    const file = samplePath(evalDir, d, k);
    if (!fs.existsSync(file)) throw new FileFormatError(file, `missing (needed for ${n} seeds of data index ${d})`);
    let s;
    try {
      s = readSampleFile(file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') continue;
      throw e;
    }
    videos.push(videoFromU8TCHW(s.data, s.T, s.C, s.H, s.W));
    seeds.push(k);
    T = s.T;
  }
  return { videos, seeds, T };
}

/** Latent ground truth `[T, C, h, w]` → decoded uint8 video `[T, 3, f·h, f·w]` (§8.1). */
function decodeGroundTruth(vae: AutoencoderKL, frames: Float32Array, shape: readonly number[], chunkSize: number): VideoU8 {
  return tidy(() => {
    const u8 = decodedToUint8(decodeLatents(vae, tensor(frames, { shape: [...shape] }), { chunkSize }));
    const [T, C, H, W] = u8.shape as [number, number, number, number];
    return videoFromU8TCHW(u8.toBytes(), T, C, H, W);
  });
}

/** Build and write the grid video (§8.1). */
export async function makeVideo(o: MakeVideoOptions): Promise<MakeVideoResult> {
  const format = (o.format ?? 'gif') as VideoFormat;
  if (!(VIDEO_FORMATS as readonly string[]).includes(format)) throw new OptionError('--format', `one of ${VIDEO_FORMATS.join(', ')} (Unknown format)`, o.format);
  const doN = intOpt('--do-n', o.doN, 1, 1);
  const startIdx = intOpt('--start-idx', o.startIdx, 0, 0);
  const nSeeds = intOpt('--n-seeds', o.nSeeds, 1, 1);
  const fps = o.fps ?? 10;
  if (!(fps > 0 && Number.isFinite(fps))) throw new OptionError('--fps', 'a positive number', fps);
  const addGt = o.addGt ?? true;
  const decodeChunkSize = intOpt('--decode-chunk-size', o.decodeChunkSize, 10, 1);
  if (!fs.existsSync(o.evalDir)) throw new OptionError('--eval-dir', 'an existing evaluation directory', o.evalDir);
  const fields = parseEvalIdentifier(o.evalDir);
  const nObs = fields.nObs;

  let gtSet: Awaited<ReturnType<typeof openEvalDataset>> | undefined;
  let datasetName = '';
  if (addGt) {
    const first = samplePath(o.evalDir, startIdx, 0);
    if (!fs.existsSync(first)) throw new FileFormatError(first, 'missing (its length sets T for the ground truth)');
    const gtT = readSampleFile(first).T;
    datasetName = readEvalDir(o.evalDir).dataset; // the ground truth needs model_config.json's dataset
    gtSet = await openEvalDataset(datasetName, { ...fields, T: gtT }, { nData: o.numSampledVideos, nDataFlag: '--num-sampled-videos', customClipPath: o.customClipPath });
  }

  const columns: VideoU8[][] = [];
  const seedsUsed: number[][] = [];
  let vae = o.vae; // loaded at the first latent ground truth
  const ownVae = () => vae !== undefined && vae !== o.vae;
  try {
    for (let d = startIdx; d < startIdx + doN; d++) {
      const column: VideoU8[] = [];
      if (gtSet) {
        if (d >= gtSet.dataset.length) throw new OptionError('--start-idx/--do-n', `data indices below ${gtSet.dataset.length}`, d);
        const item = gtSet.dataset.get(d);
        const [T, C, H, W] = item.shape as [number, number, number, number];
        let gt: VideoU8;
        if (C === 3 || C === 1) gt = videoFromFloatTCHW(item.frames, T, C, H, W);
        else {
          vae ??= loadVae(o.vaePath, { device: resolveDevice(o.device), dtype: o.vaeDtype ?? 'auto' });
          if (C !== vae.config.latentChannels) {
            throw new FlexvidError(`${datasetName}: ground truth has ${C} channels, neither RGB nor the VAE's ${vae.config.latentChannels} latent channels`);
          }
          gt = decodeGroundTruth(vae, item.frames, item.shape, decodeChunkSize);
        }
        markObserved(gt, firstFrames(T, T));
        column.push(gt);
      }
      const { videos, seeds } = loadSeeds(o.evalDir, d, nSeeds);
      for (const v of videos) markObserved(v, firstFrames(nObs, v.T));
      column.push(...videos);
      columns.push(column);
      seedsUsed.push(seeds);
    }
  } finally {
    if (ownVae()) vae!.dispose();
  }
  const T0 = columns[0]![0]!.T;
  for (const col of columns) for (const v of col) if (v.T !== T0) throw new FlexvidError(`all videos must have the same number of frames (found ${T0} and ${v.T})`);
  const grid = composeGrid(columns);
  const file = path.join(o.outDir ?? o.evalDir, 'videos', `${doN}_${nSeeds}.${format}`);
  if (format === 'gif') writeGif(file, videoFrames(grid), grid.W, grid.H, { fps });
  else {
    const r = await writeMp4(file, videoFrames(grid), grid.W, grid.H, { fps });
    if (r.note) o.log?.(`note: ${r.note}`);
  }
  o.log?.(`wrote ${file} (${grid.W}×${grid.H}, ${grid.T} frames${addGt ? ', ground truth on top' : ''})`);
  return { file, width: grid.W, height: grid.H, frames: grid.T, seeds: seedsUsed };
}
