/**
 * Cross-process coordination through the file system, for results folders shared by several
 * `flexvid sample` processes (REFERENCE_SPEC §7.2 steps 5–6, §9.4 `Protect`):
 *
 * - **Locks** ({@link withFileLock}): a lock file created exclusively (`O_CREAT | O_EXCL`) guards a
 *   short critical section such as writing `model_config.json` or `summary.csv`. Waiters poll; a
 *   lock whose owner process is gone (same host) or that is older than `staleMs` is broken.
 * - **Claims** ({@link claimOutput}): before producing an output file a process creates
 *   `.<name>.claim` next to it exclusively, re-checks that the output still does not exist, does
 *   the work, writes the output atomically and only then removes the claim. Another process
 *   either sees the output, or sees the claim and skips the item — so no item is produced twice.
 *   Claims of dead processes on the same host are taken over.
 *
 * All of this is synchronous except the lock wait; it works on local file systems and on NFS
 * versions with atomic exclusive create.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FlexvidError } from '../util/errors.ts';

/** What a lock or claim file records about its owner. */
export interface OwnerRecord {
  pid: number;
  host: string;
  /** ISO time of creation. */
  time: string;
}

function ownerRecord(): OwnerRecord {
  return { pid: process.pid, host: os.hostname(), time: new Date().toISOString() };
}

/** Create `file` exclusively with `content`; false when it already exists. */
export function createExclusive(file: string, content: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    fs.writeSync(fd, content);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

function readOwner(file: string): OwnerRecord | null {
  try {
    const r = JSON.parse(fs.readFileSync(file, 'utf8')) as OwnerRecord;
    return typeof r.pid === 'number' && typeof r.host === 'string' ? r : null;
  } catch {
    return null;
  }
}

/** True when `pid` names a live process on this machine. */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the owner of a lock/claim file is certainly gone: same host and the pid is not alive,
 * or (when `staleMs` is given) the file is older than that. Unreadable records count as stale only
 * by age.
 */
export function ownerIsGone(file: string, staleMs?: number): boolean {
  const rec = readOwner(file);
  if (rec && rec.host === os.hostname() && rec.pid !== process.pid && !pidAlive(rec.pid)) return true;
  if (staleMs !== undefined) {
    try {
      return Date.now() - fs.statSync(file).mtimeMs > staleMs;
    } catch {
      return false;
    }
  }
  return false;
}

let stealCounter = 0;

/**
 * Remove a stale lock/claim file without racing another process that replaces it meanwhile:
 * rename it aside, check it is still the stale one, delete it (or put a live one back).
 */
function breakStale(file: string, staleContent: string): void {
  const aside = `${file}.broken.${process.pid}.${stealCounter++}`;
  try {
    fs.renameSync(file, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  let content = '';
  try {
    content = fs.readFileSync(aside, 'utf8');
  } catch {
    /* gone */
  }
  if (content !== staleContent) {
    // We moved a fresh file that replaced the stale one: put it back unless yet another exists.
    try {
      fs.linkSync(aside, file);
    } catch {
      /* someone holds it again */
    }
  }
  fs.rmSync(aside, { force: true });
}

function contentOf(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Options of {@link withFileLock}. */
export interface LockOptions {
  /** Give up after this long (default 60 s, as the reference's `Protect`). */
  timeoutMs?: number;
  /** Break locks older than this (default: the timeout). */
  staleMs?: number;
  /** Poll interval (default 50 ms). */
  pollMs?: number;
}

/**
 * Run `fn` while holding the lock file `lockFile` (created exclusively, removed afterwards).
 * @throws FlexvidError when the lock cannot be taken within `timeoutMs`.
 */
export async function withFileLock<T>(lockFile: string, fn: () => T | Promise<T>, o: LockOptions = {}): Promise<T> {
  const timeout = o.timeoutMs ?? 60_000;
  const stale = o.staleMs ?? timeout;
  const poll = o.pollMs ?? 50;
  fs.mkdirSync(path.dirname(lockFile), { recursive: true });
  const start = Date.now();
  const mine = JSON.stringify(ownerRecord());
  for (;;) {
    if (createExclusive(lockFile, mine)) break;
    const content = contentOf(lockFile);
    if (content !== null && ownerIsGone(lockFile, stale)) {
      breakStale(lockFile, content);
      continue;
    }
    if (Date.now() - start > timeout) {
      throw new FlexvidError(`${lockFile}: could not take the lock within ${Math.round(timeout / 1000)} s (held by ${content ?? 'unknown'}); remove the file if its owner is gone`);
    }
    await new Promise((r) => setTimeout(r, poll));
  }
  try {
    return await fn();
  } finally {
    if (contentOf(lockFile) === mine) fs.rmSync(lockFile, { force: true });
  }
}

/** Path of the claim file of an output file: `<dir>/.<name>.claim`. */
export function claimPath(output: string): string {
  return path.join(path.dirname(output), `.${path.basename(output)}.claim`);
}

/** A held claim; release it after the output is written (or on failure). */
export interface Claim {
  output: string;
  file: string;
  release(): void;
}

/** Why {@link claimOutput} did not return a claim. */
export type ClaimRefusal = 'exists' | 'claimed';

/**
 * Try to claim the production of `output` (see the module comment). Returns the claim, or why not:
 * `'exists'` (the output is already there) or `'claimed'` (a live process works on it).
 */
export function claimOutput(output: string): Claim | ClaimRefusal {
  if (fs.existsSync(output)) return 'exists';
  const file = claimPath(output);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const mine = JSON.stringify(ownerRecord());
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createExclusive(file, mine)) {
      // The previous owner removes its claim only after writing the output: check again.
      if (fs.existsSync(output)) {
        fs.rmSync(file, { force: true });
        return 'exists';
      }
      let released = false;
      return {
        output,
        file,
        release() {
          if (released) return;
          released = true;
          if (contentOf(file) === mine) fs.rmSync(file, { force: true });
        },
      };
    }
    const content = contentOf(file);
    if (content === null) continue; // released meanwhile: try again
    if (!ownerIsGone(file)) return fs.existsSync(output) ? 'exists' : 'claimed';
    breakStale(file, content);
  }
  return fs.existsSync(output) ? 'exists' : 'claimed';
}
