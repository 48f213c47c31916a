/**
 * Atomic file writes: write to a temporary name in the same folder, fsync, rename.
 * A reader (or a crash) never sees a half-written file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

let counter = 0;

/** Temporary sibling name, unique per process and call. */
export function tempSibling(target: string): string {
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${counter++}.tmp`);
}

/** Write `data` to `target` atomically (parent folders are created). */
export function writeFileAtomic(target: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  fs.mkdirSync(path.dirname(target), { recursive: true });
  const tmp = tempSibling(target);
  const fd = fs.openSync(tmp, 'w');
  try {
    if (typeof data === 'string' || data instanceof Uint8Array) {
      fs.writeSync(fd, data as never);
    } else {
      for (const part of data) fs.writeSync(fd, part);
    }
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, target);
}

/** Write JSON (2-space indent, trailing newline) atomically. */
export function writeJsonAtomic(target: string, value: unknown, indent = 2): void {
  writeFileAtomic(target, JSON.stringify(value, null, indent) + '\n');
}
