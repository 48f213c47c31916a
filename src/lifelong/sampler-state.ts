/**
 * JSON persistence of sampler states (replay and shuffling samplers). States are plain JSON
 * objects with a `kind` tag; files are written atomically (REFERENCE_SPEC §3.2 proposal: the
 * training loop saves the sampler state next to each checkpoint).
 */
import * as fs from 'node:fs';
import { FileFormatError } from '../util/errors.ts';
import { writeJsonAtomic } from '../util/fs-atomic.ts';

/** Write a sampler state as JSON (atomic). */
export function writeSamplerStateJson(path: string, state: { kind: string }): void {
  writeJsonAtomic(path, state, 0);
}

/**
 * Read a sampler state JSON file and check its `kind` tag.
 * @throws FileFormatError naming the file (missing, not JSON, wrong kind).
 */
export function readSamplerStateJson(path: string, kind: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileFormatError(path, code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? (e as Error).message})`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(path, `not valid JSON (${(e as Error).message})`);
  }
  const k = typeof v === 'object' && v !== null ? (v as { kind?: unknown }).kind : undefined;
  if (k !== kind) throw new FileFormatError(path, `expected a ${kind} state, found kind ${JSON.stringify(k)}`);
  return v;
}
