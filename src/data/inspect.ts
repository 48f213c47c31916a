/**
 * Inspecting datasets: `flexvid data info` (what is in a folder, view lengths for a window
 * length T, §2.3) and `flexvid data preview` (a GIF of a stretch of a stream).
 */
import { FileFormatError, OptionError } from '../util/errors.ts';
import { writeGif } from '../media/gif.ts';
import { resolveDataset, type DatasetFamily } from './registry.ts';
import { PlaicraftStore } from './plaicraft.ts';
import { VideoStore } from './video-store.ts';
import type { Split } from './layout.ts';

/** Per-split facts printed by `data info`. */
export interface SplitSummary {
  split: Split;
  frames: number;
  chunks?: number;
  sessions?: number;
  /** `[C, H, W]`. */
  frameShape: [number, number, number];
  dtype: string;
  /** Items of each view for window length T (Continuous `frames − T + 1`, Chunked `⌊frames/T⌋`). */
  views: { continuous: number; chunked: number };
}

/** What `data info` reports. */
export interface DatasetSummary {
  name: string;
  path: string;
  family: DatasetFamily;
  T: number;
  chunkSize?: number;
  config?: Record<string, unknown>;
  splits: SplitSummary[];
  /** Problems found (a missing split, …); the rest is still reported. */
  problems: string[];
}

/** Describe a dataset (validating every chunk header of npy datasets). */
export async function describeDataset(nameOrPath: string, opts: { T?: number } = {}): Promise<DatasetSummary> {
  const info = resolveDataset(nameOrPath);
  const T = opts.T ?? info.T;
  const views = (frames: number) => ({ continuous: Math.max(0, frames - T + 1), chunked: Math.floor(frames / T) });
  const summary: DatasetSummary = { name: info.name, path: info.path, family: info.family, T, splits: [], problems: [] };
  if (info.family === 'plaicraft') {
    const store = await PlaicraftStore.open(info.path);
    for (const split of ['train', 'test'] as Split[]) {
      try {
        const frames = store.frameCount(split);
        summary.splits.push({
          split,
          frames,
          sessions: store.sessions(split).length,
          frameShape: frames > 0 ? store.frameShape(split) : [0, 0, 0],
          dtype: 'int8 latents (dequantised)',
          views: views(frames),
        });
      } catch (e) {
        summary.problems.push((e as Error).message);
      }
    }
    return summary;
  }
  const store = VideoStore.open(info.path, { dataRoot: null });
  summary.chunkSize = store.chunkSize;
  summary.config = store.config;
  for (const split of ['train', 'test'] as Split[]) {
    try {
      store.validate([split]);
      const s = store.info(split);
      summary.splits.push({
        split,
        frames: s.frames,
        chunks: s.chunks,
        frameShape: [s.channels, s.height, s.width],
        dtype: s.dtype,
        views: views(s.frames),
      });
    } catch (e) {
      summary.problems.push((e as Error).message);
    }
  }
  return summary;
}

/** Human-readable form of {@link describeDataset}'s result. */
export function formatDatasetInfo(s: DatasetSummary): string {
  const lines = [`${s.name}  (${s.family})`, `  folder      ${s.path}`];
  if (s.chunkSize !== undefined) lines.push(`  chunk size  ${s.chunkSize} frames`);
  for (const sp of s.splits) {
    const [C, H, W] = sp.frameShape;
    const parts = sp.chunks !== undefined ? `${sp.chunks} chunks` : `${sp.sessions} sessions`;
    lines.push(
      `  ${sp.split.padEnd(5)}       ${sp.frames} frames, ${parts}, ${W}×${H}×${C} ${sp.dtype}; ` +
        `T=${s.T}: continuous ${sp.views.continuous} windows, chunked ${sp.views.chunked}`,
    );
  }
  for (const p of s.problems) lines.push(`  problem     ${p}`);
  return lines.join('\n') + '\n';
}

/** Options of {@link previewDataset}. */
export interface PreviewOptions {
  split: Split;
  start: number;
  frames: number;
  out: string;
  fps?: number;
  /** Nearest-neighbour upscaling factor. */
  scale?: number;
}

/**
 * Write frames `[start, start + frames)` of a stream as a GIF (RGB npy datasets only).
 * @returns the range actually written (clamped to the stream) and the GIF size.
 */
export async function previewDataset(
  nameOrPath: string,
  opts: PreviewOptions,
): Promise<{ start: number; frames: number; width: number; height: number }> {
  const info = resolveDataset(nameOrPath);
  if (info.family === 'plaicraft') throw new OptionError('dataset', 'an RGB dataset (PLAICraft latents cannot be shown directly)', nameOrPath);
  const store = VideoStore.open(info.path);
  const total = store.frameCount(opts.split);
  if (opts.start >= total) throw new OptionError('--start', `a frame below ${total} (the ${opts.split} stream length)`, opts.start);
  const count = Math.min(opts.frames, total - opts.start);
  const block = store.readFrames(opts.split, opts.start, count);
  const [, C, H, W] = block.shape;
  if (C !== 3 && C !== 1) throw new FileFormatError(info.path, `frames have ${C} channels; preview needs 1 or 3`);
  const s = opts.scale ?? 1;
  const frames: Uint8Array[] = [];
  for (let t = 0; t < count; t++) {
    const rgb = new Uint8Array(H * s * W * s * 3);
    for (let y = 0; y < H * s; y++) {
      for (let x = 0; x < W * s; x++) {
        const p = Math.floor(y / s) * W + Math.floor(x / s);
        for (let c = 0; c < 3; c++) {
          const v = block.data[(t * C + (C === 1 ? 0 : c)) * H * W + p]!;
          rgb[(y * W * s + x) * 3 + c] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
        }
      }
    }
    frames.push(rgb);
  }
  writeGif(opts.out, frames, W * s, H * s, { fps: opts.fps ?? 10 });
  return { start: opts.start, frames: count, width: W * s, height: H * s };
}
