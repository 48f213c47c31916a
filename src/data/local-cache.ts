/**
 * `DATA_ROOT` local copies of dataset files (REFERENCE_SPEC §2.5, §9.4).
 *
 * When the environment variable `DATA_ROOT` is set (and non-empty), a dataset at the relative
 * path `datasets/ball_stn` is read from `DATA_ROOT/datasets/ball_stn`, and every chunk file is
 * copied there from the shared location on first access. The copy is made under a lock file
 * `<file>.lock` (created with O_EXCL), written to a temporary name and renamed into place, so
 * any number of processes (on one or several machines sharing `DATA_ROOT`) can start at once:
 * exactly one copies, the others wait for the file to appear. A lock left by a dead process on
 * this host is removed at once; a lock from another host is considered stale after `staleMs`.
 *
 * Unlike the reference, no lock files are created when `DATA_ROOT` is unset (corrected, §10.1 item 14).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileFormatError } from '../util/errors.ts';
import { tempSibling } from '../util/fs-atomic.ts';

/** The `DATA_ROOT` environment variable, or null when unset/empty. */
export function envDataRoot(): string | null {
  const v = process.env.DATA_ROOT;
  return v !== undefined && v !== '' ? v : null;
}

/**
 * Where the local copy of `source` lives under `dataRoot`: relative paths are appended as they
 * are (`datasets/x` → `<dataRoot>/datasets/x`); absolute paths keep their full path below
 * `dataRoot` (`/data/x` → `<dataRoot>/data/x`). A path already inside `dataRoot` maps to itself.
 */
export function localMirrorPath(source: string, dataRoot: string): string {
  const rootAbs = path.resolve(dataRoot);
  const abs = path.resolve(source);
  if (abs === rootAbs || abs.startsWith(rootAbs + path.sep)) return abs;
  const rel = path.isAbsolute(source) ? path.relative(path.parse(abs).root, abs) : path.normalize(source);
  return path.join(rootAbs, rel);
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Block the thread for `ms` milliseconds. */
function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

/** True when the lock's owner is known to be gone (same host, process no longer running). */
function lockOwnerDead(lock: string): boolean {
  try {
    const [host, pidText] = fs.readFileSync(lock, 'utf8').trim().split(/\s+/);
    const pid = Number(pidText);
    if (host !== os.hostname() || !Number.isInteger(pid) || pid <= 0) return false;
    if (pid === process.pid) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'ESRCH';
    }
  } catch {
    return false;
  }
}

/** Options of {@link ensureLocalCopy}. */
export interface LocalCopyOptions {
  /** Give up waiting for another process's lock after this long (default 10 minutes). */
  timeoutMs?: number;
  /** A lock older than this is broken (default 10 minutes). */
  staleMs?: number;
}

/**
 * Make sure `dest` exists, copying it from `source` under the lock `<dest>.lock` if needed.
 * Safe with concurrent processes; never leaves a partial `dest`.
 */
export function ensureLocalCopy(source: string, dest: string, opts: LocalCopyOptions = {}): void {
  if (fs.existsSync(dest)) return;
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const staleMs = opts.staleMs ?? 600_000;
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  const lock = `${dest}.lock`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let fd: number;
    try {
      fd = fs.openSync(lock, 'wx');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      if (fs.existsSync(dest)) return; // another process has finished the copy
      let age = 0;
      try {
        age = Date.now() - fs.statSync(lock).mtimeMs;
      } catch {
        continue; // the lock vanished in between: try again
      }
      if (age > staleMs || lockOwnerDead(lock)) {
        fs.rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new FileFormatError(dest, `timed out after ${timeoutMs} ms waiting for the lock ${lock} held by another process`);
      }
      sleepSync(50);
      continue;
    }
    try {
      fs.writeSync(fd, `${os.hostname()} ${process.pid}\n`);
      if (!fs.existsSync(dest)) {
        if (!fs.existsSync(source)) throw new FileFormatError(source, 'missing (needed for the DATA_ROOT local copy)');
        const tmp = tempSibling(dest);
        try {
          fs.copyFileSync(source, tmp);
          const t = fs.openSync(tmp, 'r+');
          fs.fsyncSync(t);
          fs.closeSync(t);
          fs.renameSync(tmp, dest);
        } catch (e) {
          fs.rmSync(tmp, { force: true });
          throw e;
        }
      }
    } finally {
      fs.closeSync(fd);
      fs.rmSync(lock, { force: true });
    }
    return;
  }
}
