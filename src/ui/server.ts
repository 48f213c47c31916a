/**
 * `flexvid ui`: a local dashboard over run folders (issue 10 §2, §4). A `node:http` server with a
 * JSON API, the page's static assets (uPlot served from node_modules, nothing from the network)
 * and the run folders' media.
 *
 * | route | answer |
 * |---|---|
 * | `GET /` | the page |
 * | `GET /static/<asset>` | page script/styles, uPlot |
 * | `GET /api/projects` | `[{name, runs, running}]` |
 * | `GET /api/runs?project=P` | `[RunSummary]`, newest first |
 * | `GET /api/run?id=R` | `{summary, config, previews, checkpoints, keys}` |
 * | `GET /api/metrics?run=A&run=B&key=loss&points=2000&smooth=0.6&x=step` | `{series: [{run, key, x, y, s?, total}]}` (≤ `points` per series) |
 * | `GET /api/results?project=P` | `[ResultRow]` |
 * | `GET /api/summaries` | `[SummaryInfo]` |
 * | `GET /api/diff?a=A&b=B` | `{a, b, rows: [{key, a?, b?}], same}` |
 * | `GET /files/<path>` | a file below the root (media, json, csv, txt, html); ranges for video |
 *
 * Security (issue 10 §4): binds 127.0.0.1 unless a host is given; only GET/HEAD; files are served
 * only from below the root (no `..`, no dot-files, no symlinks leading out, only known file
 * types); requests whose `Host` is not a loopback name are refused while bound to loopback (DNS
 * rebinding); run-folder HTML is served with a sandboxing CSP so nothing in it runs; the server
 * itself only parses JSON/CSV/text from run folders and never executes anything from them.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { fileVersion, MetricsStore, type XAxis } from './metrics-store.ts';
import { DEFAULT_STALE_MS, diffConfigs, listCheckpoints, listPreviews, resolveLayout, RunIndex, runDir, type UiLayout } from './runs.ts';
import { listResults, listSummaries } from './results.ts';
import { OptionError } from '../util/errors.ts';

/** Options of {@link startUiServer}. */
export interface UiServerOptions {
  /** Folder holding `checkpoints/`, `results/`, `summarized/` (or a checkpoints folder itself). */
  root: string;
  /** Port (default 6006; 0 = any free port). */
  port?: number;
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** A `running` heartbeat older than this (from another host) counts as crashed (default 10 min). */
  staleMs?: number;
  /** Memory budget for parsed metric columns, MiB (default 1024). */
  cacheMb?: number;
  /** Parse the newest runs' metrics in the background after start (default true). */
  preload?: boolean;
  /** Threads parsing large metric files (default: cores − 1, at most 4; 0 = parse on the server thread). */
  parseWorkers?: number;
  /** Default and maximum points per series. */
  defaultPoints?: number;
  maxPoints?: number;
}

/** A running dashboard server. */
export interface UiServer {
  server: http.Server;
  /** `http://<host>:<port>/`. */
  url: string;
  port: number;
  layout: UiLayout;
  /** Resolves when the background preload of recent runs is over (with the number of runs parsed). */
  preloaded: Promise<number>;
  close(): Promise<void>;
}

const STATIC_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'static');
const requireHere = createRequire(import.meta.url);

/** The page's assets: name → [file, content type]. */
function staticAssets(): Map<string, [string, string]> {
  const uplotDir = path.dirname(requireHere.resolve('uplot/dist/uPlot.iife.min.js'));
  return new Map([
    ['index.html', [path.join(STATIC_DIR, 'index.html'), 'text/html; charset=utf-8']],
    ['app.js', [path.join(STATIC_DIR, 'app.js'), 'text/javascript; charset=utf-8']],
    ['style.css', [path.join(STATIC_DIR, 'style.css'), 'text/css; charset=utf-8']],
    ['uPlot.iife.min.js', [path.join(uplotDir, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8']],
    ['uPlot.min.css', [path.join(uplotDir, 'uPlot.min.css'), 'text/css; charset=utf-8']],
  ]);
}

/** Content types of the files `/files/` serves; other types are refused. */
export const FILE_TYPES: Record<string, string> = {
  '.gif': 'image/gif',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
  '.json': 'application/json; charset=utf-8',
  '.jsonl': 'text/plain; charset=utf-8',
  '.csv': 'text/csv; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
};

/** CSP of the page: only this server, no inline script. */
const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
/** CSP of files from run folders: sandboxed, no script at all, same-server media only. */
const FILE_CSP = "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'";

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Resolve a `/files/` path below `root`: percent-decoded `/`-separated segments, none empty, `.`,
 * `..`, starting with `.` or containing `\` or NUL; the real path (symlinks followed) must stay
 * below the real root. Returns the real file path, or throws HttpError 400/403/404.
 */
export function resolveUnderRoot(root: string, urlPath: string): string {
  let segments: string[];
  try {
    segments = urlPath.split('/').map((s) => decodeURIComponent(s));
  } catch {
    throw new HttpError(400, 'bad percent-encoding');
  }
  if (segments.length === 0 || segments.some((s) => s === '' || s === '.' || s === '..' || s.startsWith('.') || /[\\\0]/.test(s) || s.includes('/'))) {
    throw new HttpError(403, 'path not allowed');
  }
  const joined = path.join(root, ...segments);
  if (!joined.startsWith(root + path.sep)) throw new HttpError(403, 'path not allowed');
  let real: string;
  try {
    real = fs.realpathSync(joined);
  } catch {
    throw new HttpError(404, 'not found');
  }
  if (!real.startsWith(root + path.sep)) throw new HttpError(403, 'path not allowed');
  return real;
}

/** Whether a host name or address is this machine's loopback. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function hostName(header: string | undefined): string {
  if (!header) return '';
  if (header.startsWith('[')) return header.slice(0, header.indexOf(']') + 1);
  return header.replace(/:\d+$/, '');
}

function sendJson(res: http.ServerResponse, req: http.IncomingMessage, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': body.length,
    'Cache-Control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}

function intParam(u: URL, name: string, def: number, min: number, max: number): number {
  const v = u.searchParams.get(name);
  if (v === null || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new HttpError(400, `${name} must be a number`);
  return Math.min(max, Math.max(min, Math.floor(n)));
}

/** Values of a repeated or comma-separated query parameter. */
function listParam(u: URL, name: string): string[] {
  return u.searchParams
    .getAll(name)
    .flatMap((v) => v.split(','))
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Serve a file with ETag/Last-Modified revalidation and single byte ranges (for video seeking). */
function serveFile(req: http.IncomingMessage, res: http.ServerResponse, file: string, type: string, extraHeaders: Record<string, string> = {}): void {
  const st = fs.statSync(file);
  if (!st.isFile()) throw new HttpError(404, 'not a file');
  const etag = `"${st.size.toString(36)}-${Math.floor(st.mtimeMs).toString(36)}"`;
  const headers: Record<string, string | number> = {
    'Content-Type': type,
    ETag: etag,
    'Last-Modified': st.mtime.toUTCString(),
    'Cache-Control': 'no-cache',
    'Accept-Ranges': 'bytes',
    ...extraHeaders,
  };
  if (req.headers['if-none-match'] === etag) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  let start = 0;
  let end = st.size - 1;
  let status = 200;
  const range = req.headers.range;
  if (range) {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (m && (m[1] !== '' || m[2] !== '')) {
      if (m[1] === '') {
        start = Math.max(0, st.size - Number(m[2]));
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(end, Number(m[2]));
      }
      if (start > end || start >= st.size) {
        res.writeHead(416, { 'Content-Range': `bytes */${st.size}` });
        res.end();
        return;
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${end}/${st.size}`;
    }
  }
  headers['Content-Length'] = st.size === 0 ? 0 : end - start + 1;
  res.writeHead(status, headers);
  if (req.method === 'HEAD' || st.size === 0) {
    res.end();
    return;
  }
  const stream = fs.createReadStream(file, { start, end });
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

/** Build the request handler (exported for tests that want no socket). */
export function createHandler(opts: UiServerOptions & { boundToLoopback: boolean }): {
  handler: http.RequestListener;
  layout: UiLayout;
  /** Parse the newest runs in the background; resolves with the number parsed. */
  preload: () => Promise<number>;
  close: () => Promise<void>;
} {
  const layout = resolveLayout(opts.root);
  const index = new RunIndex(layout, { staleMs: opts.staleMs ?? DEFAULT_STALE_MS });
  const workers = opts.parseWorkers ?? Math.min(4, Math.max(1, os.availableParallelism() - 1));
  const store = new MetricsStore((opts.cacheMb ?? 1024) * (1 << 20), { workers });
  const assets = staticAssets();
  const defaultPoints = opts.defaultPoints ?? 2000;
  const maxPoints = opts.maxPoints ?? 20000;

  const projectOfRun = (id: string): string | null => {
    const dir = runDir(layout, id);
    if (!dir) return null;
    return index.summary(id)?.project ?? null;
  };

  const requireRun = (id: string | null): string => {
    if (!id) throw new HttpError(400, 'missing run id');
    const dir = runDir(layout, id);
    if (!dir) throw new HttpError(404, `no run ${JSON.stringify(id)}`);
    return dir;
  };

  const api = async (u: URL, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const route = u.pathname.slice('/api/'.length);
    const project = u.searchParams.get('project') ?? undefined;
    switch (route) {
      case 'projects':
        return sendJson(res, req, 200, index.projects());
      case 'runs':
        return sendJson(res, req, 200, index.list(project));
      case 'run': {
        const id = u.searchParams.get('id');
        const dir = requireRun(id);
        const summary = index.summary(id!);
        const metrics = path.join(dir, 'metrics.jsonl');
        // Exact keys when the columns are already parsed; else those seen at the file's ends.
        const keys = store.knownKeys(metrics) ?? summary!.keys;
        return sendJson(res, req, 200, { summary, config: index.config(id!), previews: listPreviews(layout, dir), checkpoints: listCheckpoints(dir), keys });
      }
      case 'metrics': {
        const runs = listParam(u, 'run');
        const keys = listParam(u, 'key');
        if (runs.length === 0 || keys.length === 0) throw new HttpError(400, 'give at least one run= and one key=');
        if (runs.length * keys.length > 5000) throw new HttpError(400, 'too many series in one request (at most 5000)');
        const points = intParam(u, 'points', defaultPoints, 2, maxPoints);
        const smoothText = u.searchParams.get('smooth');
        const smooth = smoothText === null || smoothText === '' ? 0 : Number(smoothText);
        if (!(smooth >= 0 && smooth < 1)) throw new HttpError(400, 'smooth must be in [0, 1)');
        const x = (u.searchParams.get('x') ?? 'step') as XAxis;
        if (x !== 'step' && x !== 'wall' && x !== 'relative') throw new HttpError(400, 'x must be step, wall or relative');
        const files = runs.map((r) => path.join(requireRun(r), 'metrics.jsonl'));
        const versions = files.map((f) => fileVersion(f));
        // Runs not parsed yet are read in parallel (on the parse workers).
        await Promise.all(files.map((f, i) => (store.isCurrent(f, versions[i]) ? null : store.columns(f, false, versions[i]))));
        const series = [];
        for (let i = 0; i < runs.length; i++) {
          for (const key of keys) series.push({ run: runs[i], key, ...(await store.series(files[i]!, key, { points, smooth, x }, versions[i])) });
        }
        const allKeys: Record<string, string[]> = {};
        for (let i = 0; i < runs.length; i++) allKeys[runs[i]!] = await store.keys(files[i]!, versions[i]);
        return sendJson(res, req, 200, { points, smooth, x, series, keys: allKeys });
      }
      case 'results':
        return sendJson(res, req, 200, listResults(layout, projectOfRun, project));
      case 'summaries':
        return sendJson(res, req, 200, listSummaries(layout));
      case 'diff': {
        const a = u.searchParams.get('a');
        const b = u.searchParams.get('b');
        requireRun(a);
        requireRun(b);
        const ca = index.config(a!);
        const cb = index.config(b!);
        if (!ca || !cb) throw new HttpError(404, `no config.json in ${!ca ? a : b}`);
        return sendJson(res, req, 200, { a, b, ...diffConfigs(ca, cb, { includeIdentity: u.searchParams.get('all') === '1' }) });
      }
      default:
        throw new HttpError(404, 'no such API route');
    }
  };

  const handler: http.RequestListener = (req, res) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    const fail = (e: unknown) => {
      const status = e instanceof HttpError ? e.status : 500;
      const message = e instanceof Error ? e.message : String(e);
      if (!res.headersSent) sendJson(res, req, status, { error: message });
      else res.destroy();
    };
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        throw new HttpError(405, 'only GET and HEAD');
      }
      if (opts.boundToLoopback && !isLoopbackHost(hostName(req.headers.host))) throw new HttpError(403, 'Host header must name this machine (loopback)');
      const u = new URL(req.url ?? '/', 'http://localhost');
      const p = u.pathname;
      if (p === '/' || p === '/index.html') {
        const [file, type] = assets.get('index.html')!;
        return serveFile(req, res, file, type, { 'Content-Security-Policy': PAGE_CSP });
      }
      if (p.startsWith('/static/')) {
        const a = assets.get(p.slice('/static/'.length));
        if (!a) throw new HttpError(404, 'no such asset');
        return serveFile(req, res, a[0], a[1]);
      }
      if (p.startsWith('/api/')) {
        api(u, req, res).catch(fail);
        return;
      }
      if (p.startsWith('/files/')) {
        // Use the raw path (before URL normalisation, which would resolve `..`/`%2e%2e`).
        const rawPath = (req.url ?? '').split('?')[0]!.slice('/files/'.length);
        const file = resolveUnderRoot(layout.root, rawPath);
        const type = FILE_TYPES[path.extname(file).toLowerCase()];
        if (!type) throw new HttpError(403, 'file type not served');
        const extra: Record<string, string> = { 'Content-Security-Policy': FILE_CSP };
        return serveFile(req, res, file, type, extra);
      }
      if (p === '/favicon.ico') {
        res.writeHead(204);
        res.end();
        return;
      }
      throw new HttpError(404, 'not found');
    } catch (e) {
      fail(e);
    }
  };
  let closed = false;
  const preload = async () => {
    // Newest activity first; the store stops at 3/4 of its budget.
    const runs = index.list().sort((a, b) => (b.updatedAt ?? '').localeCompare(a.updatedAt ?? ''));
    const files = runs.map((r) => path.join(runDir(layout, r.id)!, 'metrics.jsonl')).filter((f) => fs.existsSync(f));
    return store.preload(files, () => closed);
  };
  return {
    handler,
    layout,
    preload,
    close: () => {
      closed = true;
      return store.close();
    },
  };
}

/** Start the dashboard server; resolves once it listens. */
export async function startUiServer(opts: UiServerOptions): Promise<UiServer> {
  const host = opts.host ?? '127.0.0.1';
  const boundToLoopback = isLoopbackHost(host);
  const { handler, layout, close, preload } = createHandler({ ...opts, boundToLoopback });
  const server = http.createServer(handler);
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      void close();
      if (e.code === 'EADDRINUSE') reject(new OptionError('--port', 'a free port (this one is in use; 0 picks any)', opts.port ?? 6006));
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND') reject(new OptionError('--host', 'an address of this machine', host));
      else reject(e);
    });
    server.listen(opts.port ?? 6006, host.replace(/^\[(.*)\]$/, '$1'), () => {
      server.removeAllListeners('error');
      server.on('error', (e) => process.stderr.write(`flexvid ui: server error: ${e.message}\n`));
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const preloaded = opts.preload === false ? Promise.resolve(0) : preload().catch(() => 0);
  const shown = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return {
    server,
    url: `http://${shown === '0.0.0.0' ? '127.0.0.1' : shown}:${port}/`,
    port,
    layout,
    preloaded,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => void close().then(resolve));
      }),
  };
}
