/**
 * Animated GIF writer (REFERENCE_SPEC §8.1 `videos/<do_n>_<n_seeds>.gif`, §8.6 `summary.gif`),
 * built on `gifenc`'s LZW encoder.
 *
 * Palettes: when the whole video uses at most 256 distinct colours (rendered bouncing balls with
 * red borders, labelled summaries of such videos, test patterns) one exact global palette is
 * written, so the GIF decodes back to the input bytes. Otherwise each frame gets its own local
 * palette: exact when that frame has ≤ 256 colours, else quantised by gifenc (PnnQuant, RGB565),
 * which is lossy — as any GIF of natural video is.
 *
 * Timing: the reference writes GIFs with the imaging library's default frame timing; we default to
 * 10 fps (100 ms per frame, the imageio default), configurable through `fps`.
 */
import { createRequire } from 'node:module';
import { OptionError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';

/** The part of gifenc's API we use (the package ships no type declarations). */
interface GifencEncoder {
  writeFrame(
    index: Uint8Array,
    width: number,
    height: number,
    opts: { palette?: number[][]; delay?: number; repeat?: number; first?: boolean },
  ): void;
  finish(): void;
  bytes(): Uint8Array;
}
interface Gifenc {
  GIFEncoder(opts?: { auto?: boolean; initialCapacity?: number }): GifencEncoder;
  quantize(rgba: Uint8Array, maxColors: number, opts?: { format?: string }): number[][];
  applyPalette(rgba: Uint8Array, palette: number[][], format?: string): Uint8Array;
}

let gifencModule: Gifenc | undefined;
function gifenc(): Gifenc {
  // gifenc is CommonJS with no ESM named exports; load it through require.
  gifencModule ??= createRequire(import.meta.url)('gifenc') as Gifenc;
  return gifencModule;
}

/** Options of {@link encodeGif} / {@link writeGif}. */
export interface GifOptions {
  /** Frames per second (default 10). The GIF stores delays in 1/100 s, so e.g. 30 fps → 30 ms. */
  fps?: number;
  /** Loop forever (default true); false writes no NETSCAPE loop block (play once). */
  loop?: boolean;
}

/** Exact palette builder over 24-bit colours; gives up once more than `max` colours are seen. */
class ExactPalette {
  /** colour → index + 1 (0 = not seen). 32 MiB, allocated once per encode. */
  private readonly slot = new Uint16Array(1 << 24);
  readonly colors: number[] = [];

  constructor(private readonly max = 256) {}

  /** Add every pixel of `rgb`; returns false (and stops) when the palette would overflow. */
  add(rgb: Uint8Array): boolean {
    for (let i = 0; i < rgb.length; i += 3) {
      const key = (rgb[i]! << 16) | (rgb[i + 1]! << 8) | rgb[i + 2]!;
      if (this.slot[key] === 0) {
        if (this.colors.length === this.max) return false;
        this.colors.push(key);
        this.slot[key] = this.colors.length;
      }
    }
    return true;
  }

  /** Forget all colours (keeps the table allocation). */
  clear(): void {
    for (const key of this.colors) this.slot[key] = 0;
    this.colors.length = 0;
  }

  /** Index bitmap of one frame (every colour must have been added). */
  indices(rgb: Uint8Array): Uint8Array {
    const out = new Uint8Array(rgb.length / 3);
    for (let i = 0, p = 0; i < rgb.length; i += 3, p++) {
      out[p] = this.slot[(rgb[i]! << 16) | (rgb[i + 1]! << 8) | rgb[i + 2]!]! - 1;
    }
    return out;
  }

  /** The palette as gifenc expects it: `[[r, g, b], …]`. */
  table(): number[][] {
    return this.colors.map((k) => [(k >> 16) & 255, (k >> 8) & 255, k & 255]);
  }
}

function rgbToRgba(rgb: Uint8Array): Uint8Array {
  const out = new Uint8Array((rgb.length / 3) * 4);
  for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
    out[j] = rgb[i]!;
    out[j + 1] = rgb[i + 1]!;
    out[j + 2] = rgb[i + 2]!;
    out[j + 3] = 255;
  }
  return out;
}

function checkFrames(frames: readonly Uint8Array[], width: number, height: number): void {
  if (!Number.isInteger(width) || width < 1 || width > 65535) throw new OptionError('width', 'an integer in [1, 65535]', width);
  if (!Number.isInteger(height) || height < 1 || height > 65535) throw new OptionError('height', 'an integer in [1, 65535]', height);
  if (frames.length === 0) throw new OptionError('frames', 'at least one frame', 0);
  const n = width * height * 3;
  frames.forEach((f, i) => {
    if (f.length !== n) throw new OptionError(`frames[${i}].length`, `width·height·3 = ${n}`, f.length);
  });
}

/**
 * Encode RGB frames (each `H × W × 3` bytes, row-major) as an animated GIF89a.
 * Shape: `frames[t]` is `[height, width, 3]` uint8.
 */
export function encodeGif(frames: readonly Uint8Array[], width: number, height: number, opts: GifOptions = {}): Uint8Array {
  checkFrames(frames, width, height);
  const fps = opts.fps ?? 10;
  if (!(fps > 0) || !Number.isFinite(fps)) throw new OptionError('fps', 'a positive number', fps);
  const delay = 1000 / fps; // gifenc rounds to 1/100 s
  const repeat = opts.loop === false ? -1 : 0;
  const { GIFEncoder, quantize, applyPalette } = gifenc();
  const enc = GIFEncoder({ initialCapacity: Math.max(4096, frames.length * width * height) });

  const pal = new ExactPalette();
  const globalOk = frames.every((f) => pal.add(f));
  if (globalOk) {
    // One exact global palette (given with the first frame only).
    const table = pal.table();
    frames.forEach((f, t) => enc.writeFrame(pal.indices(f), width, height, t === 0 ? { palette: table, delay, repeat } : { delay }));
  } else {
    frames.forEach((f) => {
      pal.clear();
      let table: number[][];
      let index: Uint8Array;
      if (pal.add(f)) {
        table = pal.table();
        index = pal.indices(f);
      } else {
        const rgba = rgbToRgba(f);
        table = quantize(rgba, 256, { format: 'rgb565' });
        index = applyPalette(rgba, table, 'rgb565');
      }
      enc.writeFrame(index, width, height, { palette: table, delay, repeat });
    });
  }
  enc.finish();
  return enc.bytes();
}

/** Encode with {@link encodeGif} and write `path` atomically (parent folders are created). */
export function writeGif(path: string, frames: readonly Uint8Array[], width: number, height: number, opts: GifOptions = {}): void {
  writeFileAtomic(path, encodeGif(frames, width, height, opts));
}
