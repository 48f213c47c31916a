/**
 * TensorBoard event files without TensorFlow (issue 10 §3): `--tensorboard` writes the scalars of
 * every metric flush to `events.out.tfevents.<time>.<host>` next to `metrics.jsonl`, so that
 * `tensorboard --logdir checkpoints` shows one run per run folder.
 *
 * Format (TFRecord of `tensorflow.Event` protobufs):
 * ```
 * record  = uint64 length (LE) · uint32 masked_crc32c(length bytes) · data · uint32 masked_crc32c(data)
 * masked  = ((crc >>> 15) | (crc << 17)) + 0xa282ead8   (mod 2^32)
 * Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 * Summary { repeated Value value = 1; }   Value { string tag = 1; float simple_value = 2; }
 * ```
 * The first event of a file carries `file_version: "brain.Event:2"` (TensorBoard then purges
 * events of steps ≥ a restarted step, which is what a resumed run wants).
 *
 * CRC32C (Castagnoli) and the few protobuf encodings needed are implemented here.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

// ---------------------------------------------------------------------------------- CRC32C

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`. `crc32c("123456789") === 0xe3069283`. */
export function crc32c(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC32C_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 and add 0xa282ead8 (mod 2^32). */
export function maskedCrc32c(data: Uint8Array): number {
  const c = crc32c(data);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord frame around `data`. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(data.length), true);
  dv.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  dv.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

// ---------------------------------------------------------------------------------- protobuf

/** Minimal protobuf writer: varints, fixed64 doubles, fixed32 floats, length-delimited fields. */
class ProtoWriter {
  private parts: number[] = [];

  private varint(v: bigint | number): void {
    let x = BigInt.asUintN(64, BigInt(v)); // negative int64 → two's complement, 10 bytes
    while (x >= 0x80n) {
      this.parts.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.parts.push(Number(x));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int64(field: number, v: number): this {
    this.tag(field, 0);
    this.varint(BigInt(Math.trunc(v)));
    return this;
  }

  double(field: number, v: number): this {
    this.tag(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.parts.push(...b);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(...b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.varint(b.length);
    for (let i = 0; i < b.length; i++) this.parts.push(b[i]!);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** A scalar of a summary. */
export interface ScalarValue {
  tag: string;
  value: number;
}

/** Encode `Event{wall_time, step, file_version}` or `Event{wall_time, step, summary{value{tag, simple_value}…}}`. */
export function encodeEvent(e: { wallTime: number; step: number; fileVersion?: string; scalars?: readonly ScalarValue[] }): Uint8Array {
  const w = new ProtoWriter().double(1, e.wallTime);
  if (e.step !== 0) w.int64(2, e.step); // proto3: a zero default is not written
  if (e.fileVersion !== undefined) w.string(3, e.fileVersion);
  if (e.scalars && e.scalars.length > 0) {
    const summary = new ProtoWriter();
    for (const s of e.scalars) summary.bytes(1, new ProtoWriter().string(1, s.tag).float(2, s.value).finish());
    w.bytes(5, summary.finish());
  }
  return w.finish();
}

// ---------------------------------------------------------------------------------- writer

/** Keys of a metrics record that are not scalars to plot against the step. */
const NON_SCALAR_KEYS = new Set(['step', 'time']);

/** Options of {@link TensorBoardWriter}. */
export interface TensorBoardWriterOptions {
  /** Host name in the file name (default `os.hostname()`). */
  host?: string;
  /** Creation time in seconds since the epoch, for the file name and the version event (default now). */
  wallTime?: number;
  /** Appended to the file name (e.g. `.export`); TensorBoard reads any name containing `tfevents`. */
  suffix?: string;
}

/** Seconds since the epoch of a record's `time` (ISO string or number), else `fallback`. */
function recordWallTime(record: Record<string, unknown>, fallback: number): number {
  const t = record.time;
  if (typeof t === 'number' && Number.isFinite(t)) return t > 1e11 ? t / 1000 : t;
  if (typeof t === 'string') {
    const ms = Date.parse(t);
    if (Number.isFinite(ms)) return ms / 1000;
  }
  return fallback;
}

/**
 * Writes TensorBoard scalar events for a run folder (issue 10 §3).
 *
 * @example
 * const tb = new TensorBoardWriter(runDir);            // creates runDir/events.out.tfevents.<t>.<host>
 * tb.addScalars(step, record);                          // the object appended to metrics.jsonl
 * tb.close();
 *
 * Every numeric field of the record except `step` and `time` becomes a scalar with the field's
 * name as tag (`loss`, `loss_q0`, `timing/step_time`, …); strings, booleans, nulls and nested
 * values are skipped. The wall time is the record's `time` when present. Writes are synchronous
 * and unbuffered: each call appends one complete record, so a crash loses nothing already logged.
 */
export class TensorBoardWriter {
  /** The event file being written. */
  readonly file: string;
  private fd: number | null;

  constructor(logDir: string, opts: TensorBoardWriterOptions = {}) {
    const wallTime = opts.wallTime ?? Date.now() / 1000;
    const host = (opts.host ?? os.hostname()).replace(/[\\/]/g, '_');
    fs.mkdirSync(logDir, { recursive: true });
    let name = `events.out.tfevents.${String(Math.floor(wallTime)).padStart(10, '0')}.${host}${opts.suffix ?? ''}`;
    // Two writers in the same second (a quick restart) must not append to each other's file.
    for (let i = 1; fs.existsSync(path.join(logDir, name)); i++) {
      name = `events.out.tfevents.${String(Math.floor(wallTime)).padStart(10, '0')}.${host}.${i}${opts.suffix ?? ''}`;
    }
    this.file = path.join(logDir, name);
    this.fd = fs.openSync(this.file, 'wx');
    this.write(encodeEvent({ wallTime, step: 0, fileVersion: 'brain.Event:2' }));
  }

  private write(event: Uint8Array): void {
    if (this.fd === null) throw new Error(`TensorBoardWriter: ${this.file} is closed`);
    fs.writeSync(this.fd, tfRecord(event));
  }

  /**
   * Log every numeric field of `record` at `step` (one event holding all values).
   * @param wallTime seconds since the epoch; default the record's `time`, else now.
   */
  addScalars(step: number, record: Record<string, unknown>, wallTime?: number): void {
    const scalars: ScalarValue[] = [];
    for (const [tag, v] of Object.entries(record)) {
      if (NON_SCALAR_KEYS.has(tag) || typeof v !== 'number') continue;
      scalars.push({ tag, value: v });
    }
    if (scalars.length === 0) return;
    this.write(encodeEvent({ wallTime: wallTime ?? recordWallTime(record, Date.now() / 1000), step, scalars }));
  }

  /** Log one scalar. */
  addScalar(tag: string, value: number, step: number, wallTime = Date.now() / 1000): void {
    this.write(encodeEvent({ wallTime, step, scalars: [{ tag, value }] }));
  }

  /** Force the file to disk. */
  flush(): void {
    if (this.fd !== null) fs.fsyncSync(this.fd);
  }

  /** Flush and close (idempotent). */
  close(): void {
    if (this.fd === null) return;
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = null;
  }
}

/** Suffix of event files written by {@link exportTensorBoard} (rewritten on each export). */
export const EXPORT_SUFFIX = '.export';

/** Event files in a folder (names containing `tfevents`). */
export function eventFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.includes('tfevents')).sort();
}

/**
 * Convert an existing run folder's `metrics.jsonl` into an event file (for runs trained without
 * `--tensorboard`). Replaces an earlier export of the same folder; skips folders that already have
 * event files written during training unless `force`. Returns the file written, or null when skipped.
 */
export function exportTensorBoard(runDir: string, opts: { force?: boolean; host?: string } = {}): { file: string; records: number } | null {
  const metrics = path.join(runDir, 'metrics.jsonl');
  if (!fs.existsSync(metrics)) return null;
  const existing = eventFiles(runDir);
  const live = existing.filter((f) => !f.endsWith(EXPORT_SUFFIX));
  if (live.length > 0 && !opts.force) return null;
  for (const f of existing) if (f.endsWith(EXPORT_SUFFIX)) fs.rmSync(path.join(runDir, f));
  const lines = fs.readFileSync(metrics, 'utf8').split('\n');
  let first: number | undefined;
  const records: Record<string, unknown>[] = [];
  for (const line of lines) {
    if (!line.trim()) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch {
      continue; // a torn last line of a crashed run
    }
    if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) continue;
    const r = rec as Record<string, unknown>;
    if (typeof r.step !== 'number') continue;
    first ??= recordWallTime(r, Date.now() / 1000);
    records.push(r);
  }
  const w = new TensorBoardWriter(runDir, { host: opts.host, wallTime: first, suffix: EXPORT_SUFFIX });
  try {
    for (const r of records) w.addScalars(r.step as number, r);
  } finally {
    w.close();
  }
  return { file: w.file, records: records.length };
}
