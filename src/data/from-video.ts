/**
 * Turn ordinary video files into a chunked flexvid dataset (uint8), so that a model can learn
 * from the user's own stream. The counterpart of the reference's `mp4_to_npy.py` (§1.2), with its
 * layout fixed: chunks go to `<split>/0/<k>.npy` and `T_total` counts the frames written.
 *
 * Decoding uses ffmpeg (`@ffmpeg-installer/ffmpeg`): `fps=<fps>`, a centred square crop of side
 * `min(width, height)`, a scale to `resolution²` (area filter by default), then raw RGB24 frames
 * on a pipe. Several input files are concatenated into one stream. The test stream is either a
 * separate video (`test`) or the last `testFraction` of the chunks. A final partial chunk is
 * dropped (reported).
 *
 * With `latent` (a VAE {@link FrameEncoder}, `flexvid data from-video --latent --vae PATH`) the
 * frames are encoded into a latent dataset in the same layout (`src/data/latent-video.ts`,
 * REFERENCE_SPEC §5.11): chunks of float32 latents `(K, R/f, R/f, C)`, `resolution` = the latent side.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { FileFormatError, OptionError } from '../util/errors.ts';
import { writeFileAtomic, writeJsonAtomic } from '../util/fs-atomic.ts';
import { encodeNpyHeader } from './npy.ts';
import { FORMAT_VERSION, chunkPath, configPath, splitDir, type Split } from './layout.ts';
import { VideoStore } from './video-store.ts';
import { LatentChunkWriter, latentConfigFields, type FrameEncoder } from './latent-video.ts';

/** Path of the bundled ffmpeg binary. */
export function ffmpegPath(): string {
  const mod = createRequire(import.meta.url)('@ffmpeg-installer/ffmpeg') as { path: string };
  return mod.path;
}

/** Options of {@link datasetFromVideo}. */
export interface FromVideoOptions {
  /** Input videos of the train stream, concatenated in order. */
  inputs: string[];
  /** Output dataset folder. */
  out: string;
  /** Frame side in pixels (default 64). */
  resolution?: number;
  /** Frames per second to sample (default 20). */
  fps?: number;
  /** Frames per chunk file (default 1000). */
  chunkSize?: number;
  /** A separate video for the test stream. */
  test?: string;
  /** Fraction of the train chunks moved to the test stream when no `test` video (default 0.1; 0 = none). */
  testFraction?: number;
  /** ffmpeg scaling algorithm (default 'area'). */
  scaleFlags?: string;
  /** Replace an existing dataset in `out`. */
  overwrite?: boolean;
  /** Frames decoded so far and the expected total (from the container durations; 0 if unknown). */
  onProgress?: (frames: number, expected: number) => void;
  /** Encode the frames with this VAE encoder into a latent dataset (`--latent --vae PATH`). */
  latent?: FrameEncoder;
}

/** What {@link datasetFromVideo} wrote. */
export interface FromVideoReport {
  out: string;
  trainFrames: number;
  testFrames: number;
  /** Frames dropped at the end of each stream (incomplete last chunk). */
  droppedFrames: number;
}

/** Writes a stream of RGB24 frames as uint8 chunks `(K, R, R, 3)`. */
class ChunkWriter {
  private buf: Uint8Array;
  private fill = 0;
  chunks = 0;

  constructor(
    private readonly out: string,
    private readonly split: Split,
    private readonly K: number,
    private readonly R: number,
  ) {
    this.buf = new Uint8Array(K * R * R * 3);
  }

  /** Append bytes of whole or partial frames. */
  push(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) {
      const n = Math.min(bytes.length - off, this.buf.length - this.fill);
      this.buf.set(bytes.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
      if (this.fill === this.buf.length) this.flush();
    }
  }

  private flush(): void {
    const header = encodeNpyHeader('|u1', [this.K, this.R, this.R, 3]);
    writeFileAtomic(chunkPath(this.out, this.split, 0, this.chunks), [header, this.buf]);
    this.chunks++;
    this.fill = 0;
  }

  /** Frames left over in the partial last chunk (dropped). */
  get leftover(): number {
    return Math.floor(this.fill / (this.R * this.R * 3));
  }
}

/** Decode one video through ffmpeg into `sink`; resolves with the number of frames. */
function decodeVideo(
  file: string,
  opts: { fps: number; resolution: number; scaleFlags: string },
  sink: (bytes: Uint8Array) => void,
  onFrames: (frames: number) => void,
): Promise<number> {
  const R = opts.resolution;
  const frameBytes = R * R * 3;
  const vf = `fps=${opts.fps},crop='min(iw,ih)':'min(iw,ih)',scale=${R}:${R}:flags=${opts.scaleFlags}`;
  const args = ['-hide_banner', '-nostdin', '-nostats', '-i', file, '-an', '-vf', vf, '-pix_fmt', 'rgb24', '-f', 'rawvideo', 'pipe:1'];
  return new Promise((resolve, reject) => {
    const proc = spawn(ffmpegPath(), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let bytes = 0;
    let stderr = '';
    let sinkError: Error | null = null;
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (stderr.length > 65536) stderr = stderr.slice(-32768);
    });
    proc.stdout.on('data', (d: Buffer) => {
      if (sinkError) return;
      try {
        sink(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      } catch (e) {
        sinkError = e as Error;
        proc.kill();
        return;
      }
      bytes += d.byteLength;
      onFrames(Math.floor(bytes / frameBytes));
    });
    proc.on('error', (e) => reject(new FileFormatError(file, `cannot run ffmpeg (${e.message})`)));
    proc.on('close', (code) => {
      if (sinkError) return reject(sinkError);
      if (code !== 0) {
        const last = stderr.trim().split('\n').slice(-3).join(' | ');
        return reject(new FileFormatError(file, `ffmpeg could not decode the video (exit ${code}: ${last})`));
      }
      resolve(Math.floor(bytes / frameBytes));
    });
  });
}

/** Expected frames of a video at `fps` from its container duration (0 when unknown). */
export function probeFrames(file: string, fps: number): number {
  const r = spawnSync(ffmpegPath(), ['-hide_banner', '-nostdin', '-i', file], { encoding: 'utf8' });
  const m = /Duration: (\d+):(\d+):(\d+(?:\.\d+)?)/.exec(r.stderr ?? '');
  return m ? Math.round((Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3])) * fps) : 0;
}

function positiveInt(flag: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new OptionError(flag, 'a positive integer', v);
  return v;
}

/** Build a uint8 chunked dataset from video files (see the module comment). */
export async function datasetFromVideo(opts: FromVideoOptions): Promise<FromVideoReport> {
  const R = positiveInt('--resolution', opts.resolution ?? 64);
  if (opts.latent && R % opts.latent.factor !== 0) {
    throw new OptionError('--resolution', `a multiple of ${opts.latent.factor} (the VAE's downsampling factor)`, R);
  }
  const fps = opts.fps ?? 20;
  if (!(typeof fps === 'number' && fps > 0 && Number.isFinite(fps))) throw new OptionError('--fps', 'a positive number', fps);
  const K = positiveInt('--chunk-size', opts.chunkSize ?? 1000);
  const scaleFlags = opts.scaleFlags ?? 'area';
  if (!/^[a-z_+]+$/.test(scaleFlags)) throw new OptionError('--scale-flags', 'an ffmpeg scaler name such as area or bilinear', scaleFlags);
  if (opts.inputs.length === 0) throw new OptionError('FILE', 'at least one input video', opts.inputs);
  for (const f of [...opts.inputs, ...(opts.test ? [opts.test] : [])]) {
    if (!fs.existsSync(f)) throw new OptionError('FILE', 'an existing video file', f);
  }
  const fraction = opts.test ? 0 : (opts.testFraction ?? 0.1);
  if (!(fraction >= 0 && fraction < 1)) throw new OptionError('--test-fraction', 'a number in [0, 1)', fraction);
  if (opts.test && opts.testFraction !== undefined && opts.testFraction > 0) {
    throw new OptionError('--test-fraction', 'no value when --test gives the test video', opts.testFraction);
  }
  if (fs.existsSync(configPath(opts.out))) {
    if (!opts.overwrite) throw new OptionError('--out', 'a folder without a dataset (or pass --overwrite)', opts.out);
    fs.rmSync(configPath(opts.out), { force: true });
  }
  // Chunks of an earlier (failed or replaced) conversion must not mix with the new ones.
  for (const s of ['train', 'test'] as Split[]) fs.rmSync(path.join(opts.out, s), { recursive: true, force: true });
  fs.mkdirSync(splitDir(opts.out, 'train', 0), { recursive: true });

  const dec = { fps, resolution: R, scaleFlags };
  let done = 0;
  const expected = [...opts.inputs, ...(opts.test ? [opts.test] : [])].reduce((n, f) => n + probeFrames(f, fps), 0);
  const progress = (_file: string, base: number) => (frames: number) => opts.onProgress?.(base + frames, Math.max(expected, base + frames));

  // Train stream: every input, concatenated.
  const writer = (split: Split) => (opts.latent ? new LatentChunkWriter(opts.out, split, K, R, opts.latent) : new ChunkWriter(opts.out, split, K, R));
  const train = writer('train');
  for (const f of opts.inputs) {
    done += await decodeVideo(f, dec, (b) => train.push(b), progress(f, done));
  }
  let dropped = train.leftover;
  let trainChunks = train.chunks;
  let testChunks = 0;

  if (opts.test) {
    fs.mkdirSync(splitDir(opts.out, 'test', 0), { recursive: true });
    const test = writer('test');
    done += await decodeVideo(opts.test, dec, (b) => test.push(b), progress(opts.test, done));
    dropped += test.leftover;
    testChunks = test.chunks;
  } else if (fraction > 0) {
    // Move the last chunks of the train stream to the test stream.
    testChunks = Math.max(1, Math.round(trainChunks * fraction));
    if (trainChunks - testChunks < 1) {
      throw new FileFormatError(opts.inputs.join(', '), `only ${trainChunks} chunk(s) of ${K} frames were decoded: too short to split off a test stream (use a smaller --chunk-size or --test-fraction 0)`);
    }
    fs.mkdirSync(splitDir(opts.out, 'test', 0), { recursive: true });
    for (let j = 0; j < testChunks; j++) {
      fs.renameSync(chunkPath(opts.out, 'train', 0, trainChunks - testChunks + j), chunkPath(opts.out, 'test', 0, j));
    }
    trainChunks -= testChunks;
  }
  if (trainChunks === 0) {
    throw new FileFormatError(opts.inputs.join(', '), `decoded ${done} frames: fewer than one chunk of ${K} frames`);
  }
  if ((opts.test || fraction > 0) && testChunks === 0) {
    throw new FileFormatError(opts.test ?? opts.inputs.join(', '), `the test stream has fewer than ${K} frames (one chunk)`);
  }

  const config: Record<string, unknown> = {
    save_dir: opts.out,
    T_total: trainChunks * K,
    ...(testChunks > 0 ? { T_total_test: testChunks * K } : {}),
    chunk_size: K,
    resolution: R,
    seed: 0,
    dtype: 'uint8',
    format_version: FORMAT_VERSION,
    fps,
    sources: { train: opts.inputs.map((f) => path.resolve(f)), test: opts.test ? path.resolve(opts.test) : fraction > 0 ? `last ${fraction} of train` : null },
    dropped_frames: dropped,
    ...(opts.latent ? latentConfigFields(opts.latent, R) : {}),
  };
  writeJsonAtomic(configPath(opts.out), config);
  VideoStore.open(opts.out, { dataRoot: null }).validate(testChunks > 0 ? ['train', 'test'] : ['train']);
  return { out: opts.out, trainFrames: trainChunks * K, testFrames: testChunks * K, droppedFrames: dropped };
}
