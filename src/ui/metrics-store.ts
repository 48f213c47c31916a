/**
 * Metric series of run folders for the dashboard (issue 10 §2): `metrics.jsonl` read into columns,
 * followed as it grows, and downsampled on the server.
 *
 * - A run's file is parsed once into columns (step and wall time as float64, every numeric field
 *   as float32 with NaN where a record lacks it) and then followed: only the bytes appended since
 *   the last read are parsed. A file that shrank (rewritten) is parsed again from the start.
 * - Lines are scanned straight from the bytes (flat objects of numbers/strings/null/bools, as the
 *   training loop writes; `NaN`/`Infinity` as Python's json writes them are accepted); anything
 *   else on a line falls back to `JSON.parse`. An incomplete last line (a writer mid-append) is
 *   left for the next read.
 * - Columns live in an LRU bounded by bytes (`cacheMb`); an evicted run is parsed again on demand.
 * - {@link downsampleSeries} returns at most `points` points per series (largest-triangle-three-
 *   buckets), optionally smoothed with TensorBoard's debiased exponential moving average computed
 *   on the full-resolution series first.
 */
import * as fs from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { startModuleWorker } from '../data/worker-pool.ts';

/** Parsed columns of one `metrics.jsonl`. */
export class RunColumns {
  /** Number of records. */
  n = 0;
  /** Bytes of the file consumed (complete lines only). */
  offset = 0;
  /** Identity of the file when last read (a new inode means it was replaced). */
  ino = 0;
  step: Float64Array = new Float64Array(1024);
  /** Seconds since the epoch (NaN when a record has no parseable `time`). */
  time: Float64Array = new Float64Array(1024);
  readonly cols = new Map<string, Float32Array>();
  /** Lines that could not be parsed at all. */
  badLines = 0;

  get capacity(): number {
    return this.step.length;
  }

  /** Approximate bytes held. */
  get bytes(): number {
    return this.capacity * (16 + 4 * this.cols.size);
  }

  keys(): string[] {
    return [...this.cols.keys()];
  }

  /** Make room for at least `cap` records (avoids repeated growing when the size is known). */
  reserve(cap: number): void {
    if (cap > this.capacity) this.grow(Math.ceil(cap));
  }

  private grow(cap = this.capacity * 2): void {
    const g64 = (a: Float64Array) => {
      const b = new Float64Array(cap);
      b.set(a);
      return b;
    };
    this.step = g64(this.step);
    this.time = g64(this.time);
    for (const [k, a] of this.cols) {
      const b = new Float32Array(cap).fill(NaN);
      b.set(a);
      this.cols.set(k, b);
    }
  }

  /** Start a record; returns its row index. */
  beginRow(): number {
    if (this.n === this.capacity) this.grow();
    this.step[this.n] = NaN;
    this.time[this.n] = NaN;
    return this.n;
  }

  set(row: number, key: string, v: number): void {
    let c = this.cols.get(key);
    if (!c) {
      c = new Float32Array(this.capacity).fill(NaN);
      this.cols.set(key, c);
    }
    c[row] = v;
  }

  /** Finish the row begun by {@link beginRow}; a row without a numeric step is dropped. */
  commitRow(row: number): void {
    if (Number.isNaN(this.step[row]!)) {
      for (const c of this.cols.values()) c[row] = NaN;
      this.badLines++;
      return;
    }
    this.n = row + 1;
  }

  /** Append the records of `other` (parsed from where this one stopped). */
  append(other: RunColumns): void {
    const n0 = this.n;
    this.reserve(n0 + other.n);
    this.step.set(other.step.subarray(0, other.n), n0);
    this.time.set(other.time.subarray(0, other.n), n0);
    for (const [k, a] of other.cols) {
      let c = this.cols.get(k);
      if (!c) {
        c = new Float32Array(this.capacity).fill(NaN);
        this.cols.set(k, c);
      }
      c.set(a.subarray(0, other.n), n0);
    }
    this.n = n0 + other.n;
    this.offset = other.offset;
    this.ino = other.ino;
    this.badLines += other.badLines;
  }

  /** Last value of every key (the most recent record that has it). */
  lastValues(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, c] of this.cols) {
      for (let i = this.n - 1; i >= 0; i--) {
        if (!Number.isNaN(c[i]!)) {
          out[k] = c[i]!;
          break;
        }
      }
    }
    return out;
  }
}

// ------------------------------------------------------------------------------ line scanner

const POW10 = Array.from({ length: 700 }, (_, i) => 10 ** (i - 350));
const decoder = new TextDecoder();

/**
 * Interned key strings by a hash of their bytes, so that scanning a line decodes no key text
 * (a key is decoded once per process). Buckets hold `[bytes, string]` pairs compared bytewise.
 */
const keyTable = new Map<number, [Uint8Array, string][]>();
let keyCount = 0;

function internKey(buf: Uint8Array, s: number, e: number, hash: number): string {
  const bucket = keyTable.get(hash);
  if (bucket !== undefined) {
    const len = e - s;
    for (let j = 0; j < bucket.length; j++) {
      const entry = bucket[j]!;
      const b = entry[0];
      if (b.length !== len) continue;
      let i = 0;
      while (i < len && b[i] === buf[s + i]) i++;
      if (i === len) return entry[1];
    }
  }
  const key = decoder.decode(buf.subarray(s, e));
  if (keyCount < 100_000) {
    if (bucket === undefined) keyTable.set(hash, [[buf.slice(s, e), key]]);
    else bucket.push([buf.slice(s, e), key]);
    keyCount++;
  }
  return key;
}

const WS = new Uint8Array(256);
WS[32] = WS[9] = WS[13] = 1;

/** Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fff…]Z` (fast path), else Date.parse. */
function parseIsoSeconds(buf: Uint8Array, s: number, e: number): number {
  if (e - s >= 20 && buf[s + 4] === 45 && buf[s + 7] === 45 && buf[s + 10] === 84 && buf[s + 13] === 58 && buf[s + 16] === 58 && buf[e - 1] === 90) {
    const d = (i: number) => buf[s + i]! - 48;
    const year = d(0) * 1000 + d(1) * 100 + d(2) * 10 + d(3);
    const ms = Date.UTC(year, d(5) * 10 + d(6) - 1, d(8) * 10 + d(9), d(11) * 10 + d(12), d(14) * 10 + d(15), d(17) * 10 + d(18));
    let fracMs = 0;
    if (buf[s + 19] === 46) {
      let digits = 0;
      let nd = 0;
      for (let i = s + 20; i < e - 1; i++) {
        const c = buf[i]! - 48;
        if (c < 0 || c > 9) return Date.parse(decoder.decode(buf.subarray(s, e))) / 1000;
        digits = digits * 10 + c;
        nd++;
      }
      fracMs = nd <= 3 ? digits * 10 ** (3 - nd) : digits / 10 ** (nd - 3);
    } else if (e - s !== 20) {
      return Date.parse(decoder.decode(buf.subarray(s, e))) / 1000;
    }
    if (Number.isFinite(ms)) return (ms + fracMs) / 1000;
  }
  return Date.parse(decoder.decode(buf.subarray(s, e))) / 1000;
}

/**
 * Scan one flat JSON object in `buf[s, e)` into `row`. Returns false when the line needs the
 * general parser (nested values, escapes in keys, …); the row is then left partly filled and the
 * caller re-does it.
 */
function scanLine(buf: Uint8Array, s: number, e: number, cols: RunColumns, row: number): boolean {
  let i = s;
  while (i < e && WS[buf[i]!]) i++;
  if (buf[i] !== 123) return false; // {
  i++;
  while (i < e && WS[buf[i]!]) i++;
  if (buf[i] === 125) return true; // {}
  for (;;) {
    while (i < e && WS[buf[i]!]) i++;
    if (buf[i] !== 34) return false;
    const ks = ++i;
    let hash = 0x811c9dc5;
    while (i < e) {
      const c = buf[i]!;
      if (c === 34) break;
      if (c === 92) return false; // escaped key
      hash = Math.imul(hash ^ c, 0x01000193);
      i++;
    }
    if (i >= e) return false;
    const key = internKey(buf, ks, i, hash);
    i++;
    while (i < e && WS[buf[i]!]) i++;
    if (buf[i] !== 58) return false; // :
    i++;
    while (i < e && WS[buf[i]!]) i++;
    const c = buf[i];
    if (c === 34) {
      // string value: only `time` is used
      const vs = ++i;
      while (i < e && buf[i] !== 34) {
        if (buf[i] === 92) i++; // skip escaped char
        i++;
      }
      if (i >= e) return false;
      if (key === 'time') cols.time[row] = parseIsoSeconds(buf, vs, i);
      i++;
    } else if (c === 123 || c === 91) {
      return false; // nested
    } else {
      // number, true/false/null, NaN, Infinity, -Infinity
      const vs = i;
      while (i < e) {
        const d = buf[i]!;
        if (d === 44 || d === 125 || WS[d]) break;
        i++;
      }
      const v = parseNumberToken(buf, vs, i);
      if (v === undefined) return false;
      if (v !== null) {
        if (key === 'step') cols.step[row] = v;
        else if (key === 'time') cols.time[row] = v > 1e11 ? v / 1000 : v;
        else cols.set(row, key, v);
      }
    }
    while (i < e && WS[buf[i]!]) i++;
    if (buf[i] === 44) {
      i++;
      continue;
    }
    return buf[i] === 125;
  }
}

/** Number of a JSON (or Python-json) scalar token; null for null/booleans-as-skip; undefined if not a scalar. */
function parseNumberToken(buf: Uint8Array, s: number, e: number): number | null | undefined {
  if (s >= e) return undefined;
  let i = s;
  let neg = false;
  if (buf[i] === 45) {
    neg = true;
    i++;
  }
  const c0 = buf[i]!;
  if (c0 >= 48 && c0 <= 57) {
    let mant = 0;
    let digits = 0;
    let exp10 = 0;
    while (i < e && buf[i]! >= 48 && buf[i]! <= 57) {
      if (digits < 17) {
        mant = mant * 10 + (buf[i]! - 48);
        if (mant !== 0) digits++;
      } else exp10++;
      i++;
    }
    if (buf[i] === 46) {
      i++;
      while (i < e && buf[i]! >= 48 && buf[i]! <= 57) {
        if (digits < 17) {
          mant = mant * 10 + (buf[i]! - 48);
          if (mant !== 0) digits++;
          exp10--;
        }
        i++;
      }
    }
    if (buf[i] === 101 || buf[i] === 69) {
      i++;
      let eneg = false;
      if (buf[i] === 43 || buf[i] === 45) {
        eneg = buf[i] === 45;
        i++;
      }
      let ev = 0;
      const es = i;
      while (i < e && buf[i]! >= 48 && buf[i]! <= 57) ev = ev * 10 + (buf[i++]! - 48);
      if (i === es) return undefined;
      exp10 += eneg ? -ev : ev;
    }
    if (i !== e) return undefined;
    let v: number;
    if (exp10 === 0) v = mant;
    else if (exp10 > 0 && exp10 <= 22) v = mant * POW10[exp10 + 350]!;
    else if (exp10 < 0 && exp10 >= -22) v = mant / POW10[-exp10 + 350]!;
    else v = exp10 + 350 >= 0 && exp10 + 350 < POW10.length ? mant * POW10[exp10 + 350]! : Number(decoder.decode(buf.subarray(s, e)));
    return neg ? -v : v;
  }
  const word = decoder.decode(buf.subarray(i, e));
  if (word === 'Infinity') return neg ? -Infinity : Infinity;
  if (neg) return undefined;
  if (word === 'NaN') return NaN;
  if (word === 'null' || word === 'true' || word === 'false') return null;
  return undefined;
}

/** General path for one line: JSON.parse (with Python's NaN/Infinity tolerated). */
function parseLineSlow(text: string, cols: RunColumns, row: number): void {
  let rec: unknown;
  try {
    rec = JSON.parse(text);
  } catch {
    try {
      rec = JSON.parse(text.replace(/\bNaN\b/g, 'null').replace(/-?\bInfinity\b/g, 'null'));
    } catch {
      return;
    }
  }
  if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) return;
  for (const [k, v] of Object.entries(rec as Record<string, unknown>)) {
    if (k === 'step') {
      if (typeof v === 'number') cols.step[row] = v;
    } else if (k === 'time') {
      if (typeof v === 'number') cols.time[row] = v > 1e11 ? v / 1000 : v;
      else if (typeof v === 'string') cols.time[row] = Date.parse(v) / 1000;
    } else if (typeof v === 'number') cols.set(row, k, v);
  }
}

/** Parse the complete lines of `buf` into `cols`; returns the number of bytes consumed. */
export function parseChunk(buf: Uint8Array, cols: RunColumns): number {
  let start = 0;
  for (;;) {
    const nl = buf.indexOf(10, start);
    if (nl < 0) return start;
    if (nl > start) {
      const row = cols.beginRow();
      if (!scanLine(buf, start, nl, cols, row)) {
        // reset the partly scanned row, then the general parser
        cols.step[row] = NaN;
        cols.time[row] = NaN;
        for (const c of cols.cols.values()) c[row] = NaN;
        parseLineSlow(decoder.decode(buf.subarray(start, nl)), cols, row);
      }
      if (nl - start > 1 || buf[start] !== 13) cols.commitRow(row);
    }
    start = nl + 1;
  }
}

/** Read what was appended to `file` since `cols.offset` (or everything, if the file was replaced). */
export function readMetricsFile(file: string, cols: RunColumns = new RunColumns()): RunColumns {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return cols;
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.ino !== cols.ino || st.size < cols.offset) {
      if (cols.offset !== 0) cols = new RunColumns();
      cols.ino = st.ino;
    }
    const CHUNK = 8 << 20;
    let buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(1, st.size - cols.offset)));
    let carry = 0; // bytes of an unfinished line at the start of buf
    let pos = cols.offset;
    while (pos < st.size) {
      const want = Math.min(buf.length - carry, st.size - pos);
      const got = fs.readSync(fd, buf, carry, want, pos);
      if (got <= 0) break;
      pos += got;
      const filled = carry + got;
      const before = cols.n;
      const used = parseChunk(buf.subarray(0, filled), cols);
      cols.offset += used;
      if (cols.n > before && used > 0) {
        // Size the columns for the whole file once (estimated from the lines seen so far).
        const estimate = cols.n + ((st.size - cols.offset) / used) * (cols.n - before) + 16;
        if (estimate > cols.capacity) cols.reserve(estimate * 1.1);
      }
      carry = filled - used;
      if (carry > 0) {
        if (carry === buf.length) {
          // one line longer than the buffer: grow
          const bigger = Buffer.allocUnsafe(buf.length * 2);
          buf.copy(bigger, 0, 0, carry);
          buf = bigger;
        } else {
          buf.copy(buf, 0, used, filled);
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return cols;
}

/** Columns as plain arrays of exactly `n` records (what a parse worker sends back). */
export interface PackedColumns {
  n: number;
  offset: number;
  ino: number;
  badLines: number;
  /** The file was replaced or shrank: these columns start from its beginning. */
  reset: boolean;
  step: Float64Array;
  time: Float64Array;
  cols: [string, Float32Array][];
}

export function packColumns(c: RunColumns, reset: boolean): PackedColumns {
  return {
    n: c.n,
    offset: c.offset,
    ino: c.ino,
    badLines: c.badLines,
    reset,
    step: c.step.slice(0, c.n),
    time: c.time.slice(0, c.n),
    cols: [...c.cols].map(([k, a]) => [k, a.slice(0, c.n)] as [string, Float32Array]),
  };
}

export function unpackColumns(p: PackedColumns): RunColumns {
  const c = new RunColumns();
  c.n = p.n;
  c.offset = p.offset;
  c.ino = p.ino;
  c.badLines = p.badLines;
  if (p.n > 0) {
    c.step = p.step;
    c.time = p.time;
    for (const [k, a] of p.cols) c.cols.set(k, a);
  }
  return c;
}

// ------------------------------------------------------------------------------ downsampling

/** A series ready to draw. */
export interface Series {
  x: number[];
  y: number[];
  /** Smoothed values at the same x (when smoothing was asked for). */
  s?: number[];
  /** Points in the full-resolution series (before downsampling). */
  total: number;
}

export type XAxis = 'step' | 'wall' | 'relative';

/**
 * Indices (ascending) of at most `threshold` points of `(x, y)` chosen by largest-triangle-three-
 * buckets (Steinarsson 2013): first and last always kept; every bucket contributes the point that
 * makes the largest triangle with the previous pick and the next bucket's mean.
 */
export function lttbIndices(x: ArrayLike<number>, y: ArrayLike<number>, threshold: number): Int32Array {
  const n = x.length;
  if (threshold >= n || threshold <= 0) return Int32Array.from({ length: n }, (_, i) => i);
  if (threshold === 1) return Int32Array.of(n - 1);
  if (threshold === 2) return Int32Array.of(0, n - 1);
  const out = new Int32Array(threshold);
  const every = (n - 2) / (threshold - 2);
  let a = 0;
  out[0] = 0;
  for (let b = 0; b < threshold - 2; b++) {
    const ns = Math.floor((b + 1) * every) + 1;
    const ne = Math.min(Math.floor((b + 2) * every) + 1, n);
    let ax = 0;
    let ay = 0;
    for (let j = ns; j < ne; j++) {
      ax += x[j]!;
      ay += y[j]!;
    }
    const len = ne - ns;
    ax /= len;
    ay /= len;
    const rs = Math.floor(b * every) + 1;
    const re = Math.floor((b + 1) * every) + 1;
    const px = x[a]!;
    const py = y[a]!;
    let best = -1;
    let pick = rs;
    for (let j = rs; j < re; j++) {
      const area = Math.abs((px - ax) * (y[j]! - py) - (px - x[j]!) * (ay - py));
      if (area > best) {
        best = area;
        pick = j;
      }
    }
    out[b + 1] = pick;
    a = pick;
  }
  out[threshold - 1] = n - 1;
  return out;
}

/** TensorBoard's smoothing: debiased EMA with weight `w` in [0, 1). */
export function smoothEma(y: ArrayLike<number>, w: number): Float64Array {
  const out = new Float64Array(y.length);
  let last = 0;
  let k = 0;
  for (let i = 0; i < y.length; i++) {
    const v = y[i]!;
    if (!Number.isFinite(v)) {
      out[i] = v;
      continue;
    }
    last = last * w + (1 - w) * v;
    k++;
    out[i] = w === 0 ? v : last / (1 - w ** k);
  }
  return out;
}

/** 7 significant digits (float32 precision) keep the JSON short. */
const short = (v: number) => (Number.isFinite(v) && v !== 0 ? Number(v.toPrecision(7)) : v);

/**
 * A resumed run logs again from its last checkpoint, so steps can go backwards. As TensorBoard
 * does, a record supersedes the earlier ones at the same or later steps. Compacts `x`/`y` in
 * place and returns the new length (x then strictly increasing).
 */
export function purgeRestarts(x: Float64Array, y: Float64Array, m: number): number {
  let k = 0;
  for (let i = 0; i < m; i++) {
    const xv = x[i]!;
    if (k > 0 && x[k - 1]! >= xv) {
      // binary search: the first kept index with x >= xv
      let lo = 0;
      let hi = k - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (x[mid]! >= xv) hi = mid;
        else lo = mid + 1;
      }
      k = lo;
    }
    x[k] = xv;
    y[k] = y[i]!;
    k++;
  }
  return k;
}

/**
 * One metric of one run as at most `points` points. Records that lack the metric (or have NaN/inf
 * or no usable x) are left out; `total` counts the points before downsampling.
 */
export function downsampleSeries(cols: RunColumns, key: string, opts: { points: number; smooth?: number; x?: XAxis }): Series {
  const c = cols.cols.get(key);
  if (!c) return { x: [], y: [], total: 0 };
  const xs = opts.x === 'wall' || opts.x === 'relative' ? cols.time : cols.step;
  const fx = new Float64Array(cols.n);
  const fy = new Float64Array(cols.n);
  let m = 0;
  for (let i = 0; i < cols.n; i++) {
    const v = c[i]!;
    const xv = xs[i]!;
    if (Number.isFinite(v) && Number.isFinite(xv)) {
      fx[m] = xv;
      fy[m] = v;
      m++;
    }
  }
  if (xs === cols.step) m = purgeRestarts(fx, fy, m);
  const X = fx.subarray(0, m);
  const Y = fy.subarray(0, m);
  if (opts.x === 'relative' && m > 0) {
    const t0 = X[0]!;
    for (let i = 0; i < m; i++) X[i] = (X[i]! - t0) / 3600;
  }
  const idx = lttbIndices(X, Y, Math.max(2, Math.floor(opts.points)));
  const S = opts.smooth && opts.smooth > 0 ? smoothEma(Y, Math.min(opts.smooth, 0.999)) : null;
  const out: Series = { x: new Array(idx.length), y: new Array(idx.length), total: m };
  if (S) out.s = new Array(idx.length);
  for (let j = 0; j < idx.length; j++) {
    const i = idx[j]!;
    out.x[j] = X[i]!;
    out.y[j] = short(Y[i]!);
    if (S) out.s![j] = short(S[i]!);
  }
  return out;
}

// ------------------------------------------------------------------------------ the store

/** Identity of a file's content for caching: size, mtime and inode. */
export function fileVersion(file: string): string | null {
  try {
    const st = fs.statSync(file);
    return `${st.size.toString(36)}-${Math.floor(st.mtimeMs).toString(36)}-${st.ino.toString(36)}`;
  } catch {
    return null;
  }
}

interface Entry {
  cols: RunColumns;
  version: string | null;
}

/** Files with more unread bytes than this are parsed on a worker thread. */
export const OFFLOAD_BYTES = 2 << 20;

/**
 * Worker threads that parse metric files (src/ui/parse-worker.ts). Falls back to parsing on the
 * calling thread when threads cannot be started.
 */
export class ParsePool {
  private workers: Worker[] = [];
  private idle: Worker[] = [];
  private queue: Job[] = [];
  /** Background jobs (preloading): run only when no foreground job waits. */
  private lowQueue: Job[] = [];
  private running = new Map<Worker, Job>();
  private nextId = 1;
  private broken = false;
  /** Jobs done on threads and on the calling thread (for tests and diagnostics). */
  readonly counts = { threads: 0, here: 0 };

  constructor(private readonly size: number) {}

  /** Parse `file` from `offset` (expecting inode `ino`) on a worker; `background` jobs yield to others. */
  parse(file: string, offset: number, ino: number, background = false): Promise<PackedColumns> {
    if (this.broken || this.size <= 0) {
      this.counts.here++;
      return Promise.resolve(parseHere(file, offset, ino));
    }
    return new Promise((resolve, reject) => {
      (background ? this.lowQueue : this.queue).push({ msg: { id: this.nextId++, file, offset, ino }, resolve, reject });
      this.pump();
    });
  }

  private start(): Worker | null {
    let w: Worker;
    try {
      w = startModuleWorker(new URL('./parse-worker.ts', import.meta.url));
    } catch {
      return null;
    }
    w.unref();
    w.on('message', (m: ({ ok: true; id: number } & PackedColumns) | { ok: false; id: number; error: string }) => {
      const job = this.running.get(w);
      if (!job || job.msg.id !== m.id) return;
      this.running.delete(w);
      this.idle.push(w);
      this.counts.threads++;
      if (m.ok) job.resolve(m);
      else job.reject(new Error(m.error));
      this.pump();
    });
    w.on('error', () => this.fail(w));
    w.on('exit', (code) => {
      if (code !== 0 && this.workers.includes(w)) this.fail(w); // not after close()
    });
    this.workers.push(w);
    return w;
  }

  /** A worker could not start or died: stop using threads and do its and all queued jobs here. */
  private fail(w: Worker | null): void {
    this.broken = true;
    const jobs: Job[] = [];
    if (w) {
      this.workers = this.workers.filter((x) => x !== w);
      this.idle = this.idle.filter((x) => x !== w);
      const job = this.running.get(w);
      this.running.delete(w);
      if (job) jobs.push(job);
    }
    jobs.push(...this.queue.splice(0), ...this.lowQueue.splice(0));
    for (const j of jobs) {
      this.counts.here++;
      try {
        j.resolve(parseHere(j.msg.file, j.msg.offset, j.msg.ino));
      } catch (e) {
        j.reject(e as Error);
      }
    }
  }

  private pump(): void {
    while (this.queue.length > 0 || this.lowQueue.length > 0) {
      let w = this.idle.pop();
      if (!w && this.workers.length < this.size) {
        w = this.start() ?? undefined;
        if (!w) return this.fail(null);
      }
      if (!w) return; // all busy
      const job = (this.queue.length > 0 ? this.queue : this.lowQueue).shift()!;
      this.running.set(w, job);
      w.postMessage(job.msg);
    }
  }

  async close(): Promise<void> {
    const ws = this.workers.splice(0);
    this.idle = [];
    this.broken = true; // later parses run in place
    const closed = new Error('metrics store closed');
    for (const j of [...this.running.values(), ...this.queue.splice(0), ...this.lowQueue.splice(0)]) j.reject(closed);
    this.running.clear();
    await Promise.all(ws.map((w) => w.terminate()));
  }
}

interface Job {
  msg: { id: number; file: string; offset: number; ino: number };
  resolve: (c: PackedColumns) => void;
  reject: (e: Error) => void;
}

function parseHere(file: string, offset: number, ino: number): PackedColumns {
  const base = new RunColumns();
  base.offset = offset;
  base.ino = ino;
  const cols = readMetricsFile(file, base);
  return packColumns(cols, cols !== base);
}

/**
 * Columns of many runs' metric files under a memory budget (LRU), plus a small cache of
 * downsampled answers keyed by file version so polling unchanged runs costs a `stat`. Large reads
 * go to worker threads (several files in parallel); small appends are parsed in place.
 */
export class MetricsStore {
  private readonly entries = new Map<string, Entry>();
  private readonly answers = new Map<string, Series>();
  /** Keys of files parsed at least once, by version (kept after eviction; small). */
  private readonly keySets = new Map<string, { version: string | null; keys: string[] }>();
  private readonly inflight = new Map<string, Promise<RunColumns>>();
  private readonly pool: ParsePool;
  private readonly maxAnswers: number;
  private bytes = 0;

  constructor(
    private readonly budgetBytes = 1024 << 20,
    opts: { workers?: number; maxAnswers?: number } = {},
  ) {
    this.pool = new ParsePool(opts.workers ?? 0);
    this.maxAnswers = opts.maxAnswers ?? 4000;
  }

  /**
   * Columns of `file`, brought up to date (appended lines parsed). `background`: a preload that
   * waits behind requests (and is skipped if the file is already being read).
   */
  async columns(file: string, background = false, version = fileVersion(file)): Promise<RunColumns> {
    const e = this.entries.get(file);
    if (e && e.version === version) {
      if (!background) this.touch(file, e);
      return e.cols;
    }
    let p = this.inflight.get(file);
    if (!p) {
      p = this.load(file, version, background).finally(() => this.inflight.delete(file));
      this.inflight.set(file, p);
    }
    return p;
  }

  /**
   * Parse `files` in the background, in order, one at a time, until the memory budget is
   * three-quarters used (so that opening the dashboard finds recent runs ready).
   */
  async preload(files: string[], shouldStop: () => boolean = () => false): Promise<number> {
    let done = 0;
    for (const f of files) {
      if (shouldStop() || this.bytes > this.budgetBytes * 0.75) break;
      if (this.isCurrent(f)) continue;
      try {
        await this.columns(f, true);
        done++;
      } catch {
        /* unreadable: skipped */
      }
    }
    return done;
  }

  private async load(file: string, version: string | null, background = false): Promise<RunColumns> {
    const e = this.entries.get(file);
    let st: fs.Stats | null = null;
    try {
      st = fs.statSync(file);
    } catch {
      /* missing: empty columns */
    }
    const sameFile = !!e && !!st && st.ino === e.cols.ino && st.size >= e.cols.offset;
    const from = sameFile ? e!.cols.offset : 0;
    let cols: RunColumns;
    if (st && st.size - from > OFFLOAD_BYTES) {
      let packed = await this.pool.parse(file, from, st.ino, background);
      const now = this.entries.get(file);
      if (!packed.reset && from > 0) {
        if (now && now.cols.offset === from && now.cols.ino === packed.ino) {
          now.cols.append(unpackColumns(packed));
          cols = now.cols;
        } else {
          packed = await this.pool.parse(file, 0, st.ino); // the base was evicted meanwhile
          cols = unpackColumns(packed);
        }
      } else cols = unpackColumns(packed);
    } else {
      cols = readMetricsFile(file, sameFile ? e!.cols : new RunColumns());
    }
    this.entries.delete(file);
    this.entries.set(file, { cols, version });
    this.recount();
    this.keySets.set(file, { version, keys: cols.keys() });
    this.evict(file);
    return cols;
  }

  private touch(file: string, e: Entry): void {
    this.entries.delete(file);
    this.entries.set(file, e);
  }

  private recount(): void {
    let b = 0;
    for (const e of this.entries.values()) b += e.cols.bytes;
    this.bytes = b;
  }

  /** Metric names of `file` (from the last parse when the file has not changed since). */
  async keys(file: string, version = fileVersion(file)): Promise<string[]> {
    return this.knownKeys(file, version) ?? (await this.columns(file, false, version)).keys();
  }

  /** Metric names of `file` if it was parsed and has not changed since; else null (no parsing). */
  knownKeys(file: string, version = fileVersion(file)): string[] | null {
    const k = this.keySets.get(file);
    return k && k.version === version ? k.keys : null;
  }

  /** Whether `file` is parsed and current (no read needed). */
  isCurrent(file: string, version = fileVersion(file)): boolean {
    const e = this.entries.get(file);
    return !!e && e.version === version;
  }

  private evict(keep: string): void {
    for (const [f, e] of this.entries) {
      if (this.bytes <= this.budgetBytes) break;
      if (f === keep) continue;
      this.entries.delete(f);
      this.bytes -= e.cols.bytes;
    }
  }

  /** A downsampled series, answered from the cache when the file has not changed. */
  async series(file: string, key: string, opts: { points: number; smooth?: number; x?: XAxis }, version = fileVersion(file)): Promise<Series> {
    const ck = `${file}\0${version}\0${key}\0${opts.points}\0${opts.smooth ?? 0}\0${opts.x ?? 'step'}`;
    const hit = this.answers.get(ck);
    if (hit) {
      this.answers.delete(ck);
      this.answers.set(ck, hit);
      return hit;
    }
    const s = downsampleSeries(await this.columns(file, false, version), key, opts);
    this.answers.set(ck, s);
    if (this.answers.size > this.maxAnswers) this.answers.delete(this.answers.keys().next().value!);
    return s;
  }

  /** Bytes of columns held. */
  get heldBytes(): number {
    return this.bytes;
  }

  /** Large parses done on worker threads / on this thread. */
  get parseCounts(): { threads: number; here: number } {
    return { ...this.pool.counts };
  }

  /** Stop the parse workers. */
  close(): Promise<void> {
    return this.pool.close();
  }
}
