/**
 * PLAICraft latent streams (REFERENCE_SPEC §2.6).
 *
 * Layout of a PLAICraft folder:
 * ```
 * global_database.db                                   SQLite, table session_metadata
 * <player_email>/<session_id>/encoded_video/batch_0000.pt, batch_0001.pt, …   torch.save files
 * ```
 * For each player of a split (in list order) the sessions with `player_name = <player>` and
 * `video = 1`, ordered by `start_time`, are concatenated into one virtual timeline; session `j`
 * contributes `⌊frame_count/3⌋` latent frames (30 fps video → 10 fps latents). Windows may span
 * session (and player) boundaries: that is how the reference defines the stream (§10.1 item 12).
 *
 * Batch files hold up to 100 consecutive latent frames: `quantized_latents` int8 `[n, C, h, w]`,
 * `min_vals`, `scales` (first axis n, any trailing shape broadcast against the latents).
 * `latent = float32(q)·scale + min`, rounded to float16 as the reference returns it, and handed
 * out as float32 (§10.1 item 13: cast before the model). Latents are not rescaled.
 *
 * Corrected vs the reference: player names are configurable (default train `Alex`, test `Kyrie`,
 * §10.1 item 11); `output_fps` is validated like the reference but has no effect.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { FileFormatError, OptionError } from '../util/errors.ts';
import { readTorchFile } from '../io/torch-pickle.ts';
import { isRawTensor, numberToFloat16Bits, toFloat64Array, float16BitsToNumber, type RawTensor } from '../io/raw-tensor.ts';
import { outputBuffer, type FrameBlock, type FrameSource, type Split } from './video-store.ts';

/** Latent frames per batch file. */
export const FRAMES_PER_BATCH = 100;
/** Video frames per latent frame (30 fps → 10 fps). */
export const VIDEO_FRAMES_PER_LATENT = 3;

/** One session on the virtual timeline. */
export interface PlaicraftSession {
  playerName: string;
  playerEmail: string;
  sessionId: string;
  startTime: unknown;
  /** Video frames recorded (`frame_count`). */
  frameCount: number;
  /** First global latent frame of the session. */
  start: number;
  /** One past its last global latent frame. */
  end: number;
  /** `<root>/<email>/<session>/encoded_video`. */
  dir: string;
}

/** Options of {@link PlaicraftStore.open}. */
export interface PlaicraftOptions {
  /** Players of the train stream, in timeline order (default `['Alex']`). */
  playersTrain?: string[];
  /** Players of the test stream (default `['Kyrie']`). */
  playersTest?: string[];
  /** Validated to lie in 1…10 like the reference; has no effect (§2.6). */
  outputFps?: number;
  /** Round dequantised latents to float16 like the reference (default true). */
  float16?: boolean;
  /** Budget of the decoded-batch cache in bytes (default 256 MiB). */
  cacheBytes?: number;
}

/** Minimal typing of the sql.js API used here. */
interface SqlJsDatabase {
  prepare(sql: string): {
    bind(values: unknown[]): void;
    step(): boolean;
    getAsObject(): Record<string, unknown>;
    free(): void;
  };
  close(): void;
}
interface SqlJsStatic {
  Database: new (data?: Uint8Array) => SqlJsDatabase;
}

let sqlJs: Promise<SqlJsStatic> | undefined;
/** Load sql.js (SQLite compiled to wasm) once. */
function loadSqlJs(): Promise<SqlJsStatic> {
  sqlJs ??= (createRequire(import.meta.url)('sql.js') as (cfg?: object) => Promise<SqlJsStatic>)();
  return sqlJs;
}

/**
 * Query the sessions of `players` (in list order; per player `video = 1` ordered by start time)
 * and lay them out on one timeline (§2.6).
 */
export async function readPlaicraftSessions(root: string, players: readonly string[]): Promise<PlaicraftSession[]> {
  const dbFile = path.join(root, 'global_database.db');
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(dbFile);
  } catch (e) {
    throw new FileFormatError(dbFile, `cannot read the PLAICraft database (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const SQL = await loadSqlJs();
  let db: SqlJsDatabase;
  try {
    db = new SQL.Database(bytes);
  } catch (e) {
    throw new FileFormatError(dbFile, `not a SQLite database (${(e as Error).message})`);
  }
  const sessions: PlaicraftSession[] = [];
  try {
    let start = 0;
    for (const player of players) {
      let stmt: ReturnType<SqlJsDatabase['prepare']>;
      try {
        stmt = db.prepare(
          'SELECT session_id, start_time, frame_count, player_email, player_name FROM session_metadata ' +
            'WHERE player_name = ? AND video = 1 ORDER BY start_time ASC',
        );
      } catch (e) {
        throw new FileFormatError(dbFile, `expected a session_metadata table with session_id, start_time, frame_count, player_email, player_name, video (${(e as Error).message})`);
      }
      try {
        stmt.bind([player]);
        while (stmt.step()) {
          const row = stmt.getAsObject();
          const frameCount = Number(row.frame_count);
          if (!Number.isFinite(frameCount) || frameCount < 0) {
            throw new FileFormatError(dbFile, `session ${String(row.session_id)} has frame_count ${String(row.frame_count)}`);
          }
          const n = Math.floor(frameCount / VIDEO_FRAMES_PER_LATENT);
          const email = String(row.player_email);
          const sessionId = String(row.session_id);
          sessions.push({
            playerName: player,
            playerEmail: email,
            sessionId,
            startTime: row.start_time,
            frameCount,
            start,
            end: start + n,
            dir: path.join(root, email, sessionId, 'encoded_video'),
          });
          start += n;
        }
      } finally {
        stmt.free();
      }
    }
  } finally {
    db.close();
  }
  return sessions;
}

/** A decoded batch file: `[n, C, h, w]` float32. */
interface DecodedBatch {
  data: Float32Array;
  n: number;
  frameShape: [number, number, number];
}

/** Element values of a tensor field of a batch file (FileFormatError when absent). */
function tensorField(obj: unknown, key: string, file: string): RawTensor {
  const v = obj instanceof Map ? obj.get(key) : typeof obj === 'object' && obj !== null ? (obj as Record<string, unknown>)[key] : undefined;
  if (!isRawTensor(v)) throw new FileFormatError(file, `expected a tensor "${key}" in the batch file`);
  return v;
}

/**
 * Dequantise one batch file (§2.6): `latent = float32(q)·scale + min` with `min_vals`/`scales`
 * broadcast over trailing axes; optionally rounded to float16.
 * @returns `[n, C, h, w]` float32.
 */
export function decodePlaicraftBatch(file: string, float16 = true): DecodedBatch {
  const obj = readTorchFile(file);
  const q = tensorField(obj, 'quantized_latents', file);
  const mins = tensorField(obj, 'min_vals', file);
  const scales = tensorField(obj, 'scales', file);
  if (q.shape.length !== 4) throw new FileFormatError(file, `quantized_latents has shape [${q.shape.join(', ')}], expected [n, C, h, w]`);
  const [n, C, h, w] = q.shape as [number, number, number, number];
  const qv = toFloat64Array(q);
  const mv = toFloat64Array(mins);
  const sv = toFloat64Array(scales);
  const stridesFor = (t: RawTensor, name: string): number[] => {
    const shape = [...t.shape];
    if (shape.length > 4 || shape[0] !== n) throw new FileFormatError(file, `${name} has shape [${t.shape.join(', ')}], expected first axis ${n}`);
    while (shape.length < 4) shape.push(1); // append singleton axes up to the latent rank
    const strides = [0, 0, 0, 0];
    let s = 1;
    for (let a = 3; a >= 0; a--) {
      if (shape[a] !== 1 && shape[a] !== q.shape[a]) {
        throw new FileFormatError(file, `${name} shape [${t.shape.join(', ')}] does not broadcast to [${q.shape.join(', ')}]`);
      }
      strides[a] = shape[a] === 1 ? 0 : s;
      s *= shape[a]!;
    }
    return strides;
  };
  const ms = stridesFor(mins, 'min_vals');
  const ss = stridesFor(scales, 'scales');
  const out = new Float32Array(n * C * h * w);
  let o = 0;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++, o++) {
          const mi = i * ms[0]! + c * ms[1]! + y * ms[2]! + x * ms[3]!;
          const si = i * ss[0]! + c * ss[1]! + y * ss[2]! + x * ss[3]!;
          const v = Math.fround(Math.fround(qv[o]! * sv[si]!) + mv[mi]!);
          out[o] = float16 ? float16BitsToNumber(numberToFloat16Bits(v)) : v;
        }
      }
    }
  }
  return { data: out, n, frameShape: [C, h, w] };
}

/** Check a player list option. */
function checkPlayers(name: string, v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0 || !v.every((p) => typeof p === 'string' && p !== '')) {
    throw new OptionError(name, 'a non-empty list of player names', v);
  }
  return v as string[];
}

/** A PLAICraft folder opened for reading: train/test timelines of dequantised latents. */
export class PlaicraftStore implements FrameSource {
  private readonly cache = new Map<string, DecodedBatch>();
  private cacheUsed = 0;
  private shape: [number, number, number] | undefined;

  private constructor(
    readonly root: string,
    private readonly timelines: Record<Split, PlaicraftSession[]>,
    private readonly float16: boolean,
    private readonly cacheBytes: number,
  ) {}

  /** Open a PLAICraft folder: reads the database and builds both timelines. */
  static async open(root: string, opts: PlaicraftOptions = {}): Promise<PlaicraftStore> {
    const train = checkPlayers('playersTrain', opts.playersTrain ?? ['Alex']);
    const test = checkPlayers('playersTest', opts.playersTest ?? ['Kyrie']);
    const fps = opts.outputFps ?? 10;
    if (!Number.isInteger(fps) || fps < 1 || fps > 10) throw new OptionError('outputFps', 'an integer in 1…10', fps);
    const timelines = {
      train: await readPlaicraftSessions(root, train),
      test: await readPlaicraftSessions(root, test),
    };
    return new PlaicraftStore(root, timelines, opts.float16 ?? true, opts.cacheBytes ?? 256 * 2 ** 20);
  }

  /** Sessions of a split in timeline order. */
  sessions(split: Split): readonly PlaicraftSession[] {
    return this.timelines[split];
  }

  frameCount(split: Split): number {
    const s = this.timelines[split];
    return s.length ? s[s.length - 1]!.end : 0;
  }

  frameShape(split: Split): [number, number, number] {
    if (!this.shape) {
      const first = this.timelines[split].find((s) => s.end > s.start) ?? this.timelines.train.find((s) => s.end > s.start);
      if (!first) throw new FileFormatError(path.join(this.root, 'global_database.db'), 'no sessions with frames for the requested players');
      this.shape = this.batch(first, 0).frameShape;
    }
    return this.shape;
  }

  /** Decoded batch file `b` of a session (LRU cached). */
  private batch(session: PlaicraftSession, b: number): DecodedBatch {
    const file = path.join(session.dir, `batch_${String(b).padStart(4, '0')}.pt`);
    const hit = this.cache.get(file);
    if (hit) {
      this.cache.delete(file);
      this.cache.set(file, hit);
      return hit;
    }
    if (!fs.existsSync(file)) throw new FileFormatError(file, `missing batch file (session ${session.sessionId} of ${session.playerName})`);
    const dec = decodePlaicraftBatch(file, this.float16);
    this.cache.set(file, dec);
    this.cacheUsed += dec.data.byteLength;
    while (this.cacheUsed > this.cacheBytes && this.cache.size > 1) {
      const [k, v] = this.cache.entries().next().value as [string, DecodedBatch];
      this.cache.delete(k);
      this.cacheUsed -= v.data.byteLength;
    }
    return dec;
  }

  /**
   * Latent frames `[start, start + count)` of a split's timeline, walking across sessions
   * (§2.6). Local frame `ℓ` of a session is in `batch_⌊ℓ/100⌋` at offset `ℓ mod 100`.
   * @returns `[count, C, h, w]` float32 (dequantised, not rescaled).
   */
  readFrames(split: Split, start: number, count: number, out?: Float32Array): FrameBlock {
    const total = this.frameCount(split);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 1 || start + count > total) {
      throw new OptionError('frame range', `a range inside [0, ${total}) of the ${split} timeline`, [start, start + count]);
    }
    const [C, h, w] = this.frameShape(split);
    const frameLen = C * h * w;
    const data = outputBuffer(count * frameLen, out);
    const sessions = this.timelines[split];
    // Binary search for the session holding `start`.
    let lo = 0;
    let hi = sessions.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sessions[mid]!.end <= start) lo = mid + 1;
      else hi = mid;
    }
    let t = start;
    for (let si = lo; t < start + count; si++) {
      const s = sessions[si]!;
      while (t < Math.min(s.end, start + count)) {
        const local = t - s.start;
        const b = Math.floor(local / FRAMES_PER_BATCH);
        const off = local % FRAMES_PER_BATCH;
        const dec = this.batch(s, b);
        if (dec.frameShape.join(',') !== [C, h, w].join(',')) {
          throw new FileFormatError(path.join(s.dir, `batch_${String(b).padStart(4, '0')}.pt`), `latents are [${dec.frameShape.join(', ')}] but earlier ones are [${C}, ${h}, ${w}]`);
        }
        const take = Math.min(dec.n - off, s.end - t, start + count - t);
        if (take <= 0) {
          throw new FileFormatError(path.join(s.dir, `batch_${String(b).padStart(4, '0')}.pt`), `holds ${dec.n} frames; frame ${off} is needed`);
        }
        data.set(dec.data.subarray(off * frameLen, (off + take) * frameLen), (t - start) * frameLen);
        t += take;
      }
    }
    return { data, shape: [count, C, h, w] };
  }
}

/**
 * [c6f25f7] `PlaicraftCustomDataset`: one clip from a flat folder of `batch_*.pt` files (sorted by
 * name; frame counts from the files). Both splits are the same clip (`setTest` is a no-op,
 * corrected §10.1 item 13).
 */
export class PlaicraftClipSource implements FrameSource {
  private readonly batches: DecodedBatch[];
  private readonly starts: number[] = [];
  private readonly total: number;

  constructor(
    readonly dir: string,
    float16 = true,
  ) {
    let names: string[];
    try {
      names = fs.readdirSync(dir).filter((n) => /^batch_.*\.pt$/.test(n)).sort();
    } catch (e) {
      throw new FileFormatError(dir, `cannot list clip folder (${(e as NodeJS.ErrnoException).code})`);
    }
    if (names.length === 0) throw new FileFormatError(dir, 'no batch_*.pt files in the clip folder');
    this.batches = names.map((n) => decodePlaicraftBatch(path.join(dir, n), float16));
    let t = 0;
    for (const b of this.batches) {
      this.starts.push(t);
      t += b.n;
    }
    this.total = t;
  }

  frameCount(_split: Split): number {
    return this.total;
  }

  frameShape(_split: Split): [number, number, number] {
    return this.batches[0]!.frameShape;
  }

  readFrames(_split: Split, start: number, count: number, out?: Float32Array): FrameBlock {
    if (!Number.isSafeInteger(start) || start < 0 || count < 1 || start + count > this.total) {
      throw new OptionError('frame range', `a range inside [0, ${this.total}) of the clip`, [start, start + count]);
    }
    const [C, h, w] = this.frameShape('train');
    const frameLen = C * h * w;
    const data = outputBuffer(count * frameLen, out);
    let t = start;
    let bi = this.starts.findIndex((s, i) => s <= t && t < s + this.batches[i]!.n);
    while (t < start + count) {
      const b = this.batches[bi]!;
      const off = t - this.starts[bi]!;
      const take = Math.min(b.n - off, start + count - t);
      data.set(b.data.subarray(off * frameLen, (off + take) * frameLen), (t - start) * frameLen);
      t += take;
      bi++;
    }
    return { data, shape: [count, C, h, w] };
  }
}
