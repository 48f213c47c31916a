/**
 * The decoded-ground-truth cache of FVD on latent datasets (REFERENCE_SPEC §8.2 step 3, §9.4):
 * each real video is decoded by the VAE once and kept as a uint8 `.npy` file
 * `<dir>/<key>/sample_{idx:04d}.npy` (`[T, 3, H, W]`), shared by every job that evaluates the same
 * windows.
 *
 * Concurrent jobs: the file is produced under the lock `<file>.lock` (created exclusively; one
 * hour timeout, as the reference's `Protect(…, 3600)`), re-checked after the lock is taken, and
 * written atomically (temporary file + rename), so a reader either finds a complete file or none,
 * and every video is decoded once. A lock whose owner died (same host) or that is older than the
 * timeout is broken.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readNpy, writeNpy } from '../data/npy.ts';
import { FileFormatError, FlexvidError } from '../util/errors.ts';

/** A decoded video: `[T, C, H, W]` uint8. */
export interface DecodedVideo {
  data: Uint8Array;
  shape: number[];
}

/** The reference's default cache folder (`--decode_cache_dir`). */
export const DEFAULT_DECODE_CACHE_DIR = './tmp/plaicraft_decoded';

/**
 * Sub-folder name of a set of evaluation windows: the reference's
 * `<T>_<config>_<lower>_<upper>_<eval_on_train>` (Python spellings `None`, `True`, `False`),
 * prefixed with the dataset's name when given (corrected: the reference's key omits the dataset,
 * so two latent datasets would share cached videos).
 */
export function decodedCacheKey(o: { T: number; config: string; lower: number; upper: number | null; evalOnTrain: boolean; dataset?: string }): string {
  const ref = `${o.T}_${o.config}_${o.lower}_${o.upper === null ? 'None' : o.upper}_${o.evalOnTrain ? 'True' : 'False'}`;
  if (o.dataset === undefined) return ref;
  const name = path.basename(path.resolve(o.dataset)).replace(/[^\w.-]+/g, '_');
  return `${name}_${ref}`;
}

/** `<dir>/<key>/sample_{idx:04d}.npy`. */
export function decodedCachePath(dir: string, key: string, idx: number): string {
  return path.join(dir, key, `sample_${String(idx).padStart(4, '0')}.npy`);
}

/** Options of {@link decodedCache}. */
export interface DecodedCacheOptions {
  /** Give up waiting for another job's lock after this long (default 1 h, as the reference). */
  timeoutMs?: number;
  /** Break locks older than this (default: the timeout). */
  staleMs?: number;
  /** Poll interval while waiting (default 100 ms). */
  pollMs?: number;
}

function readCached(file: string): DecodedVideo {
  const a = readNpy(file);
  if (a.dtype !== '|u1') throw new FileFormatError(file, `decoded-video cache holds ${a.dtype}, expected uint8 (remove the file to decode again)`);
  return { data: a.data as Uint8Array, shape: a.shape };
}

interface Owner {
  host: string;
  pid: number;
}

function lockIsStale(lock: string, staleMs: number): boolean {
  try {
    const st = fs.statSync(lock);
    if (Date.now() - st.mtimeMs > staleMs) return true;
    const o = JSON.parse(fs.readFileSync(lock, 'utf8')) as Owner;
    if (o.host !== os.hostname() || o.pid === process.pid) return false;
    try {
      process.kill(o.pid, 0);
      return false;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'ESRCH';
    }
  } catch {
    return false; // vanished or half-written: look again next round
  }
}

let breakCounter = 0;

/** Remove a stale lock without removing a fresh one that replaced it meanwhile. */
function breakLock(lock: string, staleMs: number): void {
  const aside = `${lock}.stale.${process.pid}.${breakCounter++}`;
  try {
    fs.renameSync(lock, aside);
  } catch {
    return;
  }
  if (!lockIsStale(aside, staleMs)) {
    // Not the stale lock any more (a live owner took it in between): put it back.
    try {
      fs.linkSync(aside, lock);
    } catch {
      /* another owner holds the lock now */
    }
  }
  fs.rmSync(aside, { force: true });
}

/**
 * The decoded video `idx` of the window set `key`: read from `<dir>/<key>/sample_{idx:04d}.npy` when
 * present, otherwise computed by `compute` (e.g. `decodedToUint8(decodeLatents(vae, latents))`) and
 * stored, under a lock so that concurrent jobs decode it once (see the module comment).
 * @returns the video and whether it came from the cache
 * @throws FlexvidError when another job holds the lock past the timeout
 */
export async function decodedCache(
  dir: string,
  key: string,
  idx: number,
  compute: () => DecodedVideo | Promise<DecodedVideo>,
  o: DecodedCacheOptions = {},
): Promise<DecodedVideo & { fromCache: boolean }> {
  if (!Number.isSafeInteger(idx) || idx < 0) throw new RangeError(`decodedCache: bad index ${idx}`);
  const file = decodedCachePath(dir, key, idx);
  if (fs.existsSync(file)) return { ...readCached(file), fromCache: true };
  const timeout = o.timeoutMs ?? 3_600_000;
  const stale = o.staleMs ?? timeout;
  const poll = o.pollMs ?? 100;
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const lock = `${file}.lock`;
  const mine = JSON.stringify({ host: os.hostname(), pid: process.pid, time: new Date().toISOString() });
  const start = Date.now();
  for (;;) {
    let fd: number | undefined;
    try {
      fd = fs.openSync(lock, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (fd !== undefined) {
      fs.writeSync(fd, mine);
      fs.closeSync(fd);
      break;
    }
    if (fs.existsSync(file)) return { ...readCached(file), fromCache: true };
    if (lockIsStale(lock, stale)) {
      breakLock(lock, stale);
      continue;
    }
    if (Date.now() - start > timeout) {
      throw new FlexvidError(`${lock}: another job has been decoding ${path.basename(file)} for over ${Math.round(timeout / 1000)} s; remove the lock file if that job is gone`);
    }
    await new Promise((r) => setTimeout(r, poll));
  }
  try {
    // Another job may have finished between our existence check and taking the lock.
    if (fs.existsSync(file)) return { ...readCached(file), fromCache: true };
    const v = await compute();
    const n = v.shape.reduce((a, b) => a * b, 1);
    if (!(v.data instanceof Uint8Array) || v.data.length !== n) {
      throw new RangeError(`decodedCache: compute() returned ${v.data?.length} bytes for shape [${v.shape.join(', ')}] (uint8 expected)`);
    }
    writeNpy(file, { dtype: '|u1', shape: [...v.shape], data: v.data });
    return { data: v.data, shape: [...v.shape], fromCache: false };
  } finally {
    try {
      if (fs.readFileSync(lock, 'utf8') === mine) fs.rmSync(lock, { force: true });
    } catch {
      /* already gone */
    }
  }
}
