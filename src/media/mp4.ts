/**
 * MP4 writing through the bundled ffmpeg binary (`@ffmpeg-installer/ffmpeg`), for
 * `videos/<do_n>_<n_seeds>.mp4` (REFERENCE_SPEC §8.1) and `npy_to_video`.
 *
 * The reference transcodes a temporary GIF with ffmpeg at 10 fps, `yuv420p`, fast-start, with
 * dimensions rounded down to even. We pipe the raw RGB frames straight into ffmpeg instead (no
 * palette loss from the intermediate GIF), encode H.264 with libx264 when the binary has it
 * (the bundled static build does) and otherwise fall back to MPEG-4 Part 2 (`mpeg4`, `-q:v 2`),
 * reporting the fallback in the result's `note`. Odd dimensions are rounded down to even by
 * cropping the last row/column (pixel-exact, where an ffmpeg scale filter would resample).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as nodePath from 'node:path';
import { FileFormatError, FlexvidError, OptionError } from '../util/errors.ts';
import { tempSibling } from '../util/fs-atomic.ts';

let cachedFfmpeg: string | undefined;

/** Path of the ffmpeg binary: `$FLEXVID_FFMPEG` if set, else the one from `@ffmpeg-installer/ffmpeg`. */
export function ffmpegPath(): string {
  if (process.env.FLEXVID_FFMPEG) return process.env.FLEXVID_FFMPEG;
  cachedFfmpeg ??= (createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path: string }).path;
  return cachedFfmpeg;
}

const encoderCache = new Map<string, Set<string>>();

/** Names of the video encoders the ffmpeg binary offers (from `ffmpeg -encoders`; cached). */
export function ffmpegEncoders(ffmpeg = ffmpegPath()): Set<string> {
  let set = encoderCache.get(ffmpeg);
  if (!set) {
    const r = spawnSync(ffmpeg, ['-hide_banner', '-encoders'], { encoding: 'utf8' });
    if (r.error) throw new FlexvidError(`cannot run ffmpeg at ${ffmpeg}: ${r.error.message}`);
    set = new Set<string>();
    for (const line of r.stdout.split('\n')) {
      const m = /^\s*V[.A-Z]{5}\s+(\S+)/.exec(line);
      if (m) set.add(m[1]!);
    }
    encoderCache.set(ffmpeg, set);
  }
  return set;
}

/** Options of {@link writeMp4}. */
export interface Mp4Options {
  /** Frames per second (default 10, REFERENCE_SPEC §8.1). */
  fps?: number;
  /** libx264 constant rate factor (default: ffmpeg's, 23). Ignored by the mpeg4 fallback. */
  crf?: number;
  /** `'auto'` (default): libx264 if available, else mpeg4. */
  codec?: 'auto' | 'libx264' | 'mpeg4';
}

/** What {@link writeMp4} did. */
export interface Mp4Result {
  codec: 'libx264' | 'mpeg4';
  /** Encoded size (input size rounded down to even). */
  width: number;
  height: number;
  /** Set when something differs from the request (fallback codec, cropping). */
  note?: string;
}

/** Run ffmpeg with `args`, feeding `input` chunks to stdin; resolves with stdout/stderr, rejects on non-zero exit. */
function runFfmpeg(args: string[], input: Iterable<Uint8Array> | null, collectStdout: boolean): Promise<{ stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(ffmpegPath(), args, { stdio: [input ? 'pipe' : 'ignore', collectStdout ? 'pipe' : 'ignore', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr!.on('data', (b: Buffer) => {
      err += b.toString();
      if (err.length > 1 << 20) err = err.slice(-(1 << 19)); // keep the tail only
    });
    child.on('error', (e) => reject(new FlexvidError(`cannot run ffmpeg: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout: Buffer.concat(out), stderr: err });
      else reject(new FlexvidError(`ffmpeg exited with code ${code}: ${err.trim().split('\n').slice(-5).join(' | ')}`));
    });
    if (input && child.stdin) {
      const stdin = child.stdin;
      stdin.on('error', () => {}); // EPIPE when ffmpeg fails early; the close handler reports it
      const it = input[Symbol.iterator]();
      const pump = () => {
        for (;;) {
          const n = it.next();
          if (n.done) {
            stdin.end();
            return;
          }
          if (!stdin.write(n.value)) {
            stdin.once('drain', pump);
            return;
          }
        }
      };
      pump();
    }
  });
}

/** Crop one `H × W × 3` frame to `h × w` (top-left corner). */
function cropFrame(f: Uint8Array, W: number, w: number, h: number): Uint8Array {
  if (w === W) return f.subarray(0, h * W * 3);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) out.set(f.subarray(y * W * 3, y * W * 3 + w * 3), y * w * 3);
  return out;
}

/**
 * Encode RGB frames (each `[height, width, 3]` uint8) as an H.264 (or MPEG-4 Part 2) MP4 with
 * `yuv420p` and `+faststart`, written atomically to `path`. REFERENCE_SPEC §8.1.
 */
export async function writeMp4(path: string, frames: readonly Uint8Array[], width: number, height: number, opts: Mp4Options = {}): Promise<Mp4Result> {
  const fps = opts.fps ?? 10;
  if (!(fps > 0) || !Number.isFinite(fps)) throw new OptionError('fps', 'a positive number', fps);
  if (frames.length === 0) throw new OptionError('frames', 'at least one frame', 0);
  frames.forEach((f, i) => {
    if (f.length !== width * height * 3) throw new OptionError(`frames[${i}].length`, `width·height·3 = ${width * height * 3}`, f.length);
  });
  const w = width & ~1;
  const h = height & ~1;
  if (w < 2 || h < 2) throw new OptionError('width/height', 'at least 2×2 pixels', `${width}×${height}`);
  const notes: string[] = [];
  if (w !== width || h !== height) notes.push(`cropped ${width}×${height} to even size ${w}×${h}`);

  const want = opts.codec ?? 'auto';
  const has264 = ffmpegEncoders().has('libx264');
  let codec: 'libx264' | 'mpeg4';
  if (want === 'mpeg4') codec = 'mpeg4';
  else if (has264) codec = 'libx264';
  else {
    if (want === 'libx264') throw new OptionError('codec', 'an encoder this ffmpeg has (mpeg4)', 'libx264');
    codec = 'mpeg4';
    notes.push('ffmpeg has no libx264; used mpeg4 (MPEG-4 Part 2) instead');
  }
  const codecArgs = codec === 'libx264' ? ['-c:v', 'libx264', ...(opts.crf !== undefined ? ['-crf', String(opts.crf)] : [])] : ['-c:v', 'mpeg4', '-q:v', '2'];

  fs.mkdirSync(nodePath.dirname(path), { recursive: true });
  const tmp = tempSibling(path);
  const args = [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${w}x${h}`, '-r', String(fps), '-i', 'pipe:0',
    '-an', ...codecArgs, '-pix_fmt', 'yuv420p', '-movflags', '+faststart', '-f', 'mp4', tmp,
  ];
  const chunks = frames.map((f) => cropFrame(f, width, w, h));
  try {
    await runFfmpeg(args, chunks, false);
    const fd = fs.openSync(tmp, 'r+');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, path);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  return { codec, width: w, height: h, ...(notes.length ? { note: notes.join('; ') } : {}) };
}

/** What {@link probeVideo} found. */
export interface VideoProbe {
  width: number;
  height: number;
  /** Number of decoded frames. */
  frameCount: number;
  /** Codec name of the first video stream as ffmpeg reports it (e.g. `h264`, `gif`). */
  codec: string;
  /** Nominal frame rate, if reported. */
  fps: number | null;
  /** Decoded frames (`[height, width, 3]` RGB), when `keepFrames` was set. */
  frames?: Uint8Array[];
}

/**
 * Inspect any video ffmpeg can read by decoding it to raw RGB (counts frames exactly; ffprobe is
 * not bundled). Intended for tests and small files: the whole decode is held in memory.
 */
export async function probeVideo(path: string, opts: { keepFrames?: boolean } = {}): Promise<VideoProbe> {
  if (!fs.existsSync(path)) throw new FileFormatError(path, 'no such file');
  const { stdout, stderr } = await runFfmpeg(['-hide_banner', '-i', path, '-map', '0:v:0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'], null, true);
  // The input section comes first in the log: "Stream #0:0(und): Video: h264 (High) (…), yuv420p(…), 64x48, … 10 fps, …".
  const m = /Stream #0:\d+[^:]*: Video: (\w+)(.*)/.exec(stderr);
  if (!m) throw new FileFormatError(path, 'no video stream found by ffmpeg');
  const size = /\b(\d{1,5})x(\d{1,5})\b/.exec(m[2]!);
  if (!size) throw new FileFormatError(path, `cannot read the frame size from: ${m[0]}`);
  const width = Number(size[1]);
  const height = Number(size[2]);
  const fpsMatch = /([\d.]+) fps/.exec(m[2]!);
  const frameBytes = width * height * 3;
  if (stdout.length % frameBytes !== 0) throw new FileFormatError(path, `decoded ${stdout.length} bytes, not a multiple of ${frameBytes}`);
  const frameCount = stdout.length / frameBytes;
  const probe: VideoProbe = { width, height, frameCount, codec: m[1]!, fps: fpsMatch ? Number(fpsMatch[1]) : null };
  if (opts.keepFrames) {
    const all = new Uint8Array(stdout.buffer, stdout.byteOffset, stdout.length);
    probe.frames = Array.from({ length: frameCount }, (_, t) => all.slice(t * frameBytes, (t + 1) * frameBytes));
  }
  return probe;
}
