/**
 * Runs and projects, discovered from run folders alone (issue 10 §1): no database, nothing that
 * breaks when a folder is copied to another machine.
 *
 * A run is a folder under the checkpoints root holding `config.json`, `metrics.jsonl` or
 * `status.json` (`checkpoints/<run-id>/`, or one level deeper). Its project is `config.json`'s
 * `project` (else `default`); its status is `status.json`'s, where a `running` heartbeat is
 * reported as `crashed` when it cannot be alive (see {@link deriveStatus}).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Where the dashboard finds things, all below one root folder. */
export interface UiLayout {
  /** The root the server may read (realpath). */
  root: string;
  /** Folder of run folders: `<root>/checkpoints`, or the root itself when it holds run folders. */
  checkpoints: string;
  /** `<root>/results`. */
  results: string;
  /** `<root>/summarized`. */
  summarized: string;
}

/** Run-folder files that mark a folder as a run. */
const RUN_MARKERS = ['config.json', 'metrics.jsonl', 'status.json'];

function isRunDir(dir: string): boolean {
  return RUN_MARKERS.some((f) => fs.existsSync(path.join(dir, f)));
}

/** Resolve the folders of a root (see {@link UiLayout}). */
export function resolveLayout(root: string): UiLayout {
  const real = fs.realpathSync(root);
  const ck = path.join(real, 'checkpoints');
  const checkpoints = fs.existsSync(ck) && fs.statSync(ck).isDirectory() ? ck : real;
  return { root: real, checkpoints, results: path.join(real, 'results'), summarized: path.join(real, 'summarized') };
}

function listDirs(dir: string): string[] {
  try {
    return fs
      .readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && !d.name.startsWith('.'))
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}

/** Run ids (paths relative to the checkpoints folder, `/`-separated): depth 1, or 2 under a non-run folder. */
export function discoverRunIds(layout: UiLayout): string[] {
  const out: string[] = [];
  for (const a of listDirs(layout.checkpoints)) {
    if (layout.checkpoints === layout.root && (a === 'results' || a === 'summarized')) continue;
    const dir = path.join(layout.checkpoints, a);
    if (isRunDir(dir)) out.push(a);
    else for (const b of listDirs(dir)) if (isRunDir(path.join(dir, b))) out.push(`${a}/${b}`);
  }
  return out;
}

/** Run folder of a run id, or null when the id is malformed or names no run. */
export function runDir(layout: UiLayout, id: string): string | null {
  if (!/^[^/\\\0]+(\/[^/\\\0]+)?$/.test(id) || id.split('/').some((p) => p === '.' || p === '..' || p.startsWith('.'))) return null;
  const dir = path.join(layout.checkpoints, ...id.split('/'));
  return isRunDir(dir) ? dir : null;
}

// --------------------------------------------------------------------------------- status

export type RunStatus = 'running' | 'finished' | 'crashed' | 'stopped' | 'unknown';

/** The heartbeat file `status.json` as the training loop writes it. */
export interface Heartbeat {
  status?: string;
  step?: number;
  pid?: number;
  host?: string;
  updatedAt?: string;
  error?: string;
  stoppedBecause?: string;
}

/** Whether process `pid` exists on this machine. */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, not ours
  }
}

/** Staleness after which a `running` heartbeat from a process we cannot check counts as crashed. */
export const DEFAULT_STALE_MS = 10 * 60 * 1000;

/**
 * The status to show for a heartbeat:
 * - anything but `running` is shown as written (`finished`, `crashed`, `stopped`);
 * - `running` on this host: `crashed` when the pid is gone, else `running` (however old the
 *   heartbeat — the log interval may be long);
 * - `running` on another host (or without pid/host): `crashed` once `updatedAt` is older than
 *   `staleMs`, else `running`.
 * `detail` says why a run is reported crashed.
 */
export function deriveStatus(
  hb: Heartbeat | null,
  opts: { now?: number; host?: string; staleMs?: number; isAlive?: (pid: number) => boolean } = {},
): { status: RunStatus; detail?: string } {
  if (!hb || typeof hb.status !== 'string') return { status: 'unknown' };
  if (hb.status === 'finished' || hb.status === 'stopped') return { status: hb.status };
  if (hb.status === 'crashed') return { status: 'crashed', ...(hb.error ? { detail: hb.error } : {}) };
  if (hb.status !== 'running') return { status: 'unknown', detail: `status "${hb.status}"` };
  const now = opts.now ?? Date.now();
  const host = opts.host ?? os.hostname();
  const staleMs = opts.staleMs ?? DEFAULT_STALE_MS;
  const isAlive = opts.isAlive ?? pidAlive;
  const updated = hb.updatedAt ? Date.parse(hb.updatedAt) : NaN;
  const age = now - updated;
  if (hb.host === host && typeof hb.pid === 'number') {
    return isAlive(hb.pid) ? { status: 'running' } : { status: 'crashed', detail: `process ${hb.pid} is gone (no final heartbeat)` };
  }
  if (!Number.isFinite(age) || age > staleMs) {
    const mins = Number.isFinite(age) ? `${Math.round(age / 60000)} min` : 'an unknown time';
    return { status: 'crashed', detail: `no heartbeat for ${mins}${hb.host ? ` (host ${hb.host})` : ''}` };
  }
  return { status: 'running' };
}

// --------------------------------------------------------------------------------- reading

/** Parse a small JSON object file; null when missing or invalid (a run folder may be mid-write). */
export function readJsonObject(file: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** A preview sample of a run: `samples/preview_<step>.<gif|mp4|webm|png>`. */
export interface Preview {
  step: number;
  /** Path relative to the root (`/`-separated), for `/files/…`. */
  file: string;
}

export const PREVIEW_RE = /^preview_(\d+)\.(gif|mp4|webm|png)$/;

/** The previews of a run, by step. */
export function listPreviews(layout: UiLayout, dir: string): Preview[] {
  const samples = path.join(dir, 'samples');
  let names: string[];
  try {
    names = fs.readdirSync(samples);
  } catch {
    return [];
  }
  const out: Preview[] = [];
  for (const f of names) {
    const m = PREVIEW_RE.exec(f);
    if (m) out.push({ step: Number(m[1]), file: relToRoot(layout, path.join(samples, f)) });
  }
  return out.sort((a, b) => a.step - b.step || a.file.localeCompare(b.file));
}

/** Checkpoint weight files of a run, by step. */
export function listCheckpoints(dir: string): { step: number; files: string[] }[] {
  const bySteps = new Map<number, string[]>();
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  for (const f of names) {
    const m = /^(?:model|ema_[^_]+_)(\d+)\.(?:safetensors|pt)$/.exec(f);
    if (!m) continue;
    const step = Number(m[1]);
    bySteps.set(step, [...(bySteps.get(step) ?? []), f]);
  }
  return [...bySteps.entries()].sort((a, b) => a[0] - b[0]).map(([step, files]) => ({ step, files: files.sort() }));
}

/** `/`-separated path of `file` relative to the layout root. */
export function relToRoot(layout: UiLayout, file: string): string {
  return path.relative(layout.root, file).split(path.sep).join('/');
}

/** What the runs list shows of a run. */
export interface RunSummary {
  id: string;
  project: string;
  status: RunStatus;
  statusDetail?: string;
  /** Last step from the heartbeat (or the metrics). */
  step: number | null;
  updatedAt: string | null;
  createdAt: string | null;
  dataset: string | null;
  host: string | null;
  /** Changes whenever metrics.jsonl changes (size/mtime/inode), for polling clients. */
  version: string;
  /** Bytes of metrics.jsonl. */
  metricsBytes: number;
  previews: number;
  /** Metric names seen in the first and last lines of metrics.jsonl (the full set comes with the series). */
  keys: string[];
  /** The last logged record's numeric values. */
  last: Record<string, number>;
}

/**
 * Keys and last values of a metrics file from its first 16 KiB and last 64 KiB only (cheap
 * for any file size). Torn or invalid lines are skipped.
 */
export function peekMetrics(file: string): { keys: string[]; last: Record<string, number> } {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return { keys: [], last: {} };
  }
  try {
    const size = fs.fstatSync(fd).size;
    const read = (pos: number, len: number) => {
      const b = Buffer.alloc(len);
      const n = fs.readSync(fd, b, 0, len, pos);
      return b.subarray(0, n).toString('utf8');
    };
    const HEAD = 16 << 10;
    const TAIL = 64 << 10;
    const texts = size <= HEAD + TAIL ? [read(0, size)] : [read(0, HEAD), read(size - TAIL, TAIL)];
    const keys = new Set<string>();
    let last: Record<string, number> = {};
    texts.forEach((text, t) => {
      const lines = text.split('\n');
      if (texts.length === 2) {
        if (t === 0) lines.pop(); // cut at the end
        else lines.shift(); // cut at the start
      }
      for (const line of lines) {
        if (!line.trim()) continue;
        let rec: unknown;
        try {
          rec = JSON.parse(line);
        } catch {
          continue;
        }
        if (typeof rec !== 'object' || rec === null || Array.isArray(rec)) continue;
        const nums: Record<string, number> = {};
        for (const [k, v] of Object.entries(rec as Record<string, unknown>)) {
          if (typeof v === 'number' && k !== 'step') {
            keys.add(k);
            nums[k] = v;
          } else if (k === 'step' && typeof v === 'number') nums.step = v;
        }
        last = nums;
      }
    });
    return { keys: [...keys], last };
  } finally {
    fs.closeSync(fd);
  }
}

/** The project a run config belongs to. */
export function projectOf(config: Record<string, unknown> | null): string {
  const p = config?.project;
  return typeof p === 'string' && p !== '' ? p : 'default';
}

function stat(file: string): fs.Stats | null {
  try {
    return fs.statSync(file);
  } catch {
    return null;
  }
}

/** Summaries of runs (cheap: configs, heartbeats and stats; no metric parsing). */
export class RunIndex {
  private readonly configCache = new Map<string, { mtimeMs: number; config: Record<string, unknown> | null }>();
  private readonly peekCache = new Map<string, { version: string; peek: { keys: string[]; last: Record<string, number> } }>();

  constructor(
    readonly layout: UiLayout,
    private readonly statusOpts: { staleMs?: number } = {},
  ) {}

  /** `config.json` of a run (cached by mtime). */
  config(id: string): Record<string, unknown> | null {
    const dir = runDir(this.layout, id);
    if (!dir) return null;
    const file = path.join(dir, 'config.json');
    const st = stat(file);
    if (!st) return null;
    const hit = this.configCache.get(file);
    if (hit && hit.mtimeMs === st.mtimeMs) return hit.config;
    const config = readJsonObject(file);
    this.configCache.set(file, { mtimeMs: st.mtimeMs, config });
    return config;
  }

  summary(id: string): RunSummary | null {
    const dir = runDir(this.layout, id);
    if (!dir) return null;
    const config = this.config(id);
    const hb = readJsonObject(path.join(dir, 'status.json')) as Heartbeat | null;
    const st = deriveStatus(hb, this.statusOpts);
    const ms = stat(path.join(dir, 'metrics.jsonl'));
    let previews = 0;
    try {
      previews = fs.readdirSync(path.join(dir, 'samples')).filter((f) => PREVIEW_RE.test(f)).length;
    } catch {
      /* no samples folder */
    }
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    const version = ms ? `${ms.size.toString(36)}-${Math.floor(ms.mtimeMs).toString(36)}-${ms.ino.toString(36)}` : '0';
    const metricsFile = path.join(dir, 'metrics.jsonl');
    let peek = this.peekCache.get(metricsFile);
    if (!peek || peek.version !== version) {
      peek = { version, peek: ms ? peekMetrics(metricsFile) : { keys: [], last: {} } };
      this.peekCache.set(metricsFile, peek);
    }
    const lastStep = peek.peek.last.step;
    return {
      id,
      project: projectOf(config),
      status: st.status,
      ...(st.detail ? { statusDetail: st.detail } : {}),
      step: typeof hb?.step === 'number' ? hb.step : typeof lastStep === 'number' ? lastStep : null,
      updatedAt: str(hb?.updatedAt) ?? (ms ? ms.mtime.toISOString() : null),
      createdAt: str(config?.createdAt),
      dataset: str(config?.dataset),
      host: str(hb?.host) ?? str(config?.host),
      version,
      metricsBytes: ms?.size ?? 0,
      previews,
      keys: peek.peek.keys,
      last: peek.peek.last,
    };
  }

  /** All runs, optionally of one project, newest first. */
  list(project?: string): RunSummary[] {
    const out: RunSummary[] = [];
    for (const id of discoverRunIds(this.layout)) {
      const s = this.summary(id);
      if (s && (project === undefined || s.project === project)) out.push(s);
    }
    return out.sort((a, b) => (b.createdAt ?? '').localeCompare(a.createdAt ?? '') || a.id.localeCompare(b.id));
  }

  /** Projects with their run counts and latest activity (newest heartbeat or creation time). */
  projects(): { name: string; runs: number; running: number; latest: string | null }[] {
    const m = new Map<string, { name: string; runs: number; running: number; latest: string | null }>();
    for (const r of this.list()) {
      const p = m.get(r.project) ?? { name: r.project, runs: 0, running: 0, latest: null };
      p.runs++;
      if (r.status === 'running') p.running++;
      for (const t of [r.updatedAt, r.createdAt]) if (t && (p.latest === null || t > p.latest)) p.latest = t;
      m.set(r.project, p);
    }
    return [...m.values()].sort((a, b) => (a.name === 'default' ? -1 : b.name === 'default' ? 1 : a.name.localeCompare(b.name)));
  }
}

// --------------------------------------------------------------------------------- config diff

/** Flatten nested objects into dotted keys; arrays and scalars are leaves. */
export function flattenConfig(obj: Record<string, unknown>, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length > 0) flattenConfig(v as Record<string, unknown>, key, out);
    else out[key] = v;
  }
  return out;
}

/** Keys that differ between two runs by nature and are left out of diffs unless asked for. */
export const IDENTITY_KEYS = new Set(['runId', 'createdAt', 'host', 'resumeId']);

/** One differing config entry (`undefined` sides are missing in that config). */
export interface ConfigDiffRow {
  key: string;
  a?: unknown;
  b?: unknown;
}

/** The entries whose values differ between two configs (deep-equal compared as JSON), keys sorted. */
export function diffConfigs(a: Record<string, unknown>, b: Record<string, unknown>, opts: { includeIdentity?: boolean } = {}): { rows: ConfigDiffRow[]; same: number } {
  const fa = flattenConfig(a);
  const fb = flattenConfig(b);
  const keys = [...new Set([...Object.keys(fa), ...Object.keys(fb)])].sort();
  const rows: ConfigDiffRow[] = [];
  let same = 0;
  for (const key of keys) {
    if (!opts.includeIdentity && IDENTITY_KEYS.has(key)) continue;
    const inA = key in fa;
    const inB = key in fb;
    if (inA && inB && JSON.stringify(fa[key]) === JSON.stringify(fb[key])) {
      same++;
      continue;
    }
    rows.push({ key, ...(inA ? { a: fa[key] } : {}), ...(inB ? { b: fb[key] } : {}) });
  }
  return { rows, same };
}
