/**
 * Evaluation results and summaries for the dashboard (issue 10 §2), read from the results layout
 * (ARCHITECTURE §3, `src/sampling/naming.ts`, `src/metrics/results.ts`):
 *
 * ```
 * results/<run-id>/<ckpt-stem>_<sampler>[_respace<R>]/[<clip>/]<identifier>/
 *     model_config.json  samples/*.npy  videos/*.gif|mp4  fvd-N-k.txt  kvd-N-k.txt  minADE-N.txt
 *     color-acc-N.txt  trans-kl-N.txt  loss-K.txt
 * summarized/<name>/{summary.csv, final.csv, summary.gif, report.html}
 * ```
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { metricColumnName, parseMetric } from '../metrics/results.ts';
import { parseEvalIdentifier } from '../sampling/naming.ts';
import { projectOf, readJsonObject, relToRoot, type UiLayout } from './runs.ts';

/** One evaluation folder. */
export interface ResultRow {
  /** Path relative to the root, `/`-separated. */
  path: string;
  runId: string;
  project: string;
  /** `<ckpt-stem>_<sampler>[_respace<R>]`. */
  model: string;
  checkpoint: string;
  /** Training step of the checkpoint (trailing digits of its stem), if any. */
  step: number | null;
  sampler: string;
  respacing: string | null;
  /** Custom clip folder between the model folder and the identifier ([c6f25f7]). */
  clip: string | null;
  identifier: string;
  scheme: string | null;
  maxFrames: number | null;
  T: number | null;
  nObs: number | null;
  split: string | null;
  /** Metric column (file name up to its first `.`, as `summary.csv`) → value. */
  metrics: Record<string, number>;
  /** Videos (paths relative to the root). */
  videos: string[];
  /** Sample files in `samples/`. */
  samples: number;
  /** `model_config.json` (path relative to the root) when present. */
  modelConfig: string | null;
}

/** Metric result file names (`fvd-100-0.txt`, `minADE-10.txt`, `loss-10.txt`, …). */
export const METRIC_FILE_RE = /^[A-Za-z][A-Za-z_-]*?-\d+(?:-\d+)*\.txt$/;
const VIDEO_RE = /\.(gif|mp4|webm)$/i;
const SAMPLER_FOLDER_RE = /^(.+?)_((?:ddpm|ddim|heun2?)(?:-[^_]*)?)(?:_respace([^_]+))?$/;

/** Split `<ckpt-stem>_<sampler>[_respace<R>]` (§7.5); unknown shapes keep the whole name as checkpoint. */
export function parseModelFolder(name: string): { checkpoint: string; sampler: string; respacing: string | null; step: number | null } {
  const m = SAMPLER_FOLDER_RE.exec(name);
  const checkpoint = m ? m[1]! : name;
  const step = /(\d+)$/.exec(checkpoint);
  return { checkpoint, sampler: m ? m[2]! : '', respacing: m?.[3] ?? null, step: step ? Number(step[1]) : null };
}

function readdir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

function isEvalIdentifier(name: string): boolean {
  try {
    parseEvalIdentifier(name);
    return true;
  } catch {
    return false;
  }
}

/** Evaluation folders below the results root (identifier-named folders, or folders with metric files / samples). */
export function findEvalDirs(layout: UiLayout, maxDepth = 6): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    const entries = readdir(dir);
    const names = new Set(entries.map((e) => e.name));
    const isEval =
      depth >= 2 &&
      (isEvalIdentifier(path.basename(dir)) || names.has('model_config.json') || entries.some((e) => e.isFile() && METRIC_FILE_RE.test(e.name)));
    if (isEval) {
      out.push(dir);
      return;
    }
    if (depth >= maxDepth) return;
    for (const e of entries) {
      if (!e.isDirectory() || e.name.startsWith('.') || e.name === 'samples' || e.name === 'videos') continue;
      walk(path.join(dir, e.name), depth + 1);
    }
  };
  walk(layout.results, 0);
  return out.sort();
}

/** Read one evaluation folder. `projectOfRun` maps a run id to its project (from its config). */
export function readEvalDir(layout: UiLayout, dir: string, projectOfRun: (runId: string) => string | null): ResultRow {
  const rel = path.relative(layout.results, dir).split(path.sep);
  const identifier = rel[rel.length - 1]!;
  // The model folder is the component that looks like <stem>_<sampler>; else the parent.
  let j = rel.findIndex((p, i) => i > 0 && i < rel.length - 1 && SAMPLER_FOLDER_RE.test(p));
  if (j < 0) j = Math.max(1, rel.length - 2);
  const runId = rel.slice(0, j).join('/') || rel[0]!;
  const model = rel[j] ?? '';
  const clip = j < rel.length - 2 ? rel.slice(j + 1, -1).join('/') : null;
  const mf = parseModelFolder(model);
  let fields: ReturnType<typeof parseEvalIdentifier> | null = null;
  try {
    fields = parseEvalIdentifier(identifier);
  } catch {
    /* not a standard identifier */
  }
  const metrics: Record<string, number> = {};
  for (const e of readdir(dir)) {
    if (!e.isFile() || !METRIC_FILE_RE.test(e.name)) continue;
    try {
      metrics[metricColumnName(e.name)] = parseMetric(fs.readFileSync(path.join(dir, e.name), 'utf8'), e.name);
    } catch {
      /* not a number: not a metric file */
    }
  }
  const videos = readdir(path.join(dir, 'videos'))
    .filter((e) => e.isFile() && VIDEO_RE.test(e.name))
    .map((e) => relToRoot(layout, path.join(dir, 'videos', e.name)))
    .sort();
  const samples = readdir(path.join(dir, 'samples')).filter((e) => e.name.endsWith('.npy')).length;
  let project = projectOfRun(runId);
  if (project === null) {
    const cfg = readJsonObject(path.join(dir, 'model_config.json'));
    const train = (cfg?.train ?? (cfg?.flexvid_checkpoint_config as Record<string, unknown> | undefined)?.train) as Record<string, unknown> | undefined;
    project = projectOf(typeof cfg?.project === 'string' ? cfg : (train ?? null));
  }
  return {
    path: relToRoot(layout, dir),
    runId,
    project,
    model,
    checkpoint: mf.checkpoint,
    step: mf.step,
    sampler: mf.sampler,
    respacing: mf.respacing,
    clip,
    identifier,
    scheme: fields?.scheme ?? null,
    maxFrames: fields?.maxFrames ?? null,
    T: fields?.T ?? null,
    nObs: fields?.nObs ?? null,
    split: fields ? (fields.evalOnTrain ? 'train' : 'test') : null,
    metrics,
    videos,
    samples,
    modelConfig: fs.existsSync(path.join(dir, 'model_config.json')) ? relToRoot(layout, path.join(dir, 'model_config.json')) : null,
  };
}

/** Every evaluation folder, optionally of one project. */
export function listResults(layout: UiLayout, projectOfRun: (runId: string) => string | null, project?: string): ResultRow[] {
  const rows = findEvalDirs(layout).map((d) => readEvalDir(layout, d, projectOfRun));
  return project === undefined ? rows : rows.filter((r) => r.project === project);
}

// --------------------------------------------------------------------------------- summaries

/** A `summarized/<name>/` folder. */
export interface SummaryInfo {
  name: string;
  /** Files present (paths relative to the root). */
  csv: string | null;
  finalCsv: string | null;
  gif: string | null;
  report: string | null;
  /** summary.csv parsed: header + rows (strings). */
  table: { header: string[]; rows: string[][] } | null;
}

/** Parse CSV (RFC 4180 quoting) into rows of strings. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (q) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else q = false;
      } else cell += c;
    } else if (c === '"') q = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}

/** The summaries under `summarized/`. */
export function listSummaries(layout: UiLayout): SummaryInfo[] {
  const out: SummaryInfo[] = [];
  for (const e of readdir(layout.summarized)) {
    if (!e.isDirectory() || e.name.startsWith('.')) continue;
    const dir = path.join(layout.summarized, e.name);
    const has = (f: string) => (fs.existsSync(path.join(dir, f)) ? relToRoot(layout, path.join(dir, f)) : null);
    let table: SummaryInfo['table'] = null;
    const csv = has('summary.csv');
    if (csv) {
      const rows = parseCsv(fs.readFileSync(path.join(dir, 'summary.csv'), 'utf8')).filter((r) => r.length > 1 || r[0] !== '');
      if (rows.length > 0) table = { header: rows[0]!, rows: rows.slice(1) };
    }
    out.push({ name: e.name, csv, finalCsv: has('final.csv'), gif: has('summary.gif'), report: has('report.html'), table });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}
