/**
 * `flexvid collect` (REFERENCE_SPEC §8.6, `scripts/collect_results.py` as of c6f25f7): gather the
 * metric files of several runs into tables, a stacked video and an HTML report.
 *
 * For each run id: `<results>/<run-id>/<eval-dir-suffix>` is scanned recursively for files whose
 * name starts with one of the metric prefixes; each becomes the column named by its file name up
 * to the first `.` (columns ordered by first appearance, missing → NaN). Outputs in
 * `<summarized>/<output-dir>/`:
 *
 * | file | contents |
 * |---|---|
 * | `summary.csv` | `nickname, wandb, <metric columns…>`, one row per run (written under a lock) |
 * | `final.csv` | runs grouped by nickname without a `-s<k>` seed suffix (when the first nickname has one); per prefix the mean of every value in its columns and `<prefix>-err` = sample std / √n; other columns `<col>`, `<col>_err` |
 * | `gifs/<nickname>.<ext>` | copy of `<run>/<suffix>/videos/<video-name>` |
 * | `summary.gif` | those videos stacked with 2-px separators and nickname labels |
 * | `report.html` | tables, inline SVG charts (metric per run, and per checkpoint step when a run has several), the videos by relative path |
 *
 * CSV values are written like pandas: Python float repr, NaN as an empty cell.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeGif, gifFrameRate } from '../media/gif-read.ts';
import { writeGif } from '../media/gif.ts';
import { probeVideo } from '../media/mp4.ts';
import { stackWithLabels, videoFrames, type VideoU8 } from '../media/frames.ts';
import { metricColumnName, parseMetric } from '../metrics/results.ts';
import { withFileLock } from '../sampling/claims.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';
import { OptionError } from '../util/errors.ts';
import { renderReport, type ChartSpec, type ReportTable } from './report-html.ts';
import type { Reporting } from './common.ts';

/** Options of {@link collectResults} (§8.6 flags). */
export interface CollectOptions extends Reporting {
  /** Run ids (`--run-ids`, alias `--wandb-ids`): folders under the results root. */
  runIds: string[];
  /** One per run (default `config_<i>`). */
  nicknames?: string[];
  /** Path below `<results>/<run-id>/` to scan, e.g. `ema_0.9999_050000_heun-…/autoreg_20_300_36_default_0_None_test`. */
  evalDirSuffix: string;
  /** File-name prefixes of metric files, e.g. `fvd-`, `minADE-`. */
  metricPrefixes: string[];
  /** Name of the summary folder (default `ball`). */
  outputDir?: string;
  /** A file in `<run>/<suffix>/videos/` to copy and stack, e.g. `1_1.gif`. */
  videoName?: string;
  /** Results root (default `results`). */
  resultsDir?: string;
  /** Summaries root (default `summarized`). */
  summarizedDir?: string;
}

/** One metric file found for a run. */
export interface MetricFileEntry {
  column: string;
  file: string;
  value: number;
  /** Training step parsed from a `model<step>` / `ema_<rate>_<step>` path component, if any. */
  step: number | null;
}

/** What {@link collectResults} produced. */
export interface CollectResult {
  dir: string;
  summaryCsv: string;
  finalCsv: string;
  reportHtml: string;
  summaryGif?: string;
  videos: { nickname: string; file: string }[];
  columns: string[];
  /** `rows[r][c]` = value of column c for run r (NaN if missing). */
  values: number[][];
}

/** Python's `repr(float)`: shortest round-trip digits, exponent form when exp < −4 or ≥ 16. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [mant, expStr] = Math.abs(x).toExponential().split('e') as [string, string];
  const e = Number(expStr);
  const digits = mant.replace('.', '');
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? '-' : '+'}${String(Math.abs(e)).padStart(2, '0')}`;
  }
  if (e < 0) return `${sign}0.${'0'.repeat(-e - 1)}${digits}`;
  const int = digits.slice(0, e + 1).padEnd(e + 1, '0');
  const frac = digits.slice(e + 1) || '0';
  return `${sign}${int}.${frac}`;
}

function csvCell(v: string | number): string {
  if (typeof v === 'number') return Number.isNaN(v) ? '' : pyFloatRepr(v);
  return /[",\n\r]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** CSV text (header + rows, `\n` line ends). */
export function toCsv(columns: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  return [columns.map(csvCell).join(','), ...rows.map((r) => r.map(csvCell).join(','))].join('\n') + '\n';
}

/** Parse the CSVs written by {@link toCsv} (quoted cells supported). Empty cells of metric columns read as NaN. */
export function parseCsv(text: string): { columns: string[]; rows: string[][] } {
  const records: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      row.push(cell);
      cell = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(cell);
      records.push(row);
      row = [];
      cell = '';
    } else cell += ch;
  }
  if (cell !== '' || row.length) {
    row.push(cell);
    records.push(row);
  }
  const [columns = [], ...rows] = records;
  return { columns, rows };
}

const STEP_COMPONENT = /^(?:model|ema_[0-9.]+_|opt)(\d+)(?:_|$)|^.*latest_(\d+)(?:_|$)/;

/** Training step named by a results path component (`ema_0.9999_050000_heun-…` → 50000), if any. */
export function stepOfPath(rel: string): number | null {
  for (const part of rel.split(/[\\/]+/)) {
    const m = STEP_COMPONENT.exec(part);
    if (m) return Number(m[1] ?? m[2]);
  }
  return null;
}

/**
 * Scan `root` recursively (sorted, hidden entries and `samples/` skipped) for metric files whose
 * name starts with one of `prefixes` (§8.6).
 */
export function scanMetricFiles(root: string, prefixes: readonly string[], runRoot = root): MetricFileEntry[] {
  const out: MetricFileEntry[] = [];
  if (!fs.existsSync(root)) return out;
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (e.name.startsWith('.')) continue;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'samples') walk(p);
      } else if (e.isFile() && prefixes.some((pre) => e.name.startsWith(pre))) {
        let value = NaN;
        try {
          value = parseMetric(fs.readFileSync(p, 'utf8'), p);
        } catch {
          value = NaN;
        }
        out.push({ column: metricColumnName(e.name), file: p, value, step: stepOfPath(path.relative(runRoot, p)) });
      }
    }
  };
  if (fs.statSync(root).isDirectory()) walk(root);
  else if (prefixes.some((pre) => path.basename(root).startsWith(pre))) walk(path.dirname(root));
  return out;
}

/**
 * The same evaluation at every checkpoint of a run: when the suffix's first component names a
 * checkpoint's results folder (`ema_0.9999_050000_<sampler>…`, `model050000_…`), every sibling
 * folder that differs only in the step is scanned with the rest of the suffix. Entries carry the
 * step; used for the report's "metric vs training step" charts (the CSVs hold the suffix only).
 */
export function checkpointSeriesEntries(runRoot: string, suffix: string, prefixes: readonly string[]): MetricFileEntry[] {
  const parts = suffix.split(/[\\/]+/).filter((p) => p !== '' && p !== '.');
  const m = /^(model|ema_[0-9.]+_)(\d+)(_.*)?$/.exec(parts[0] ?? '');
  if (!m || !fs.existsSync(runRoot)) return [];
  const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const sibling = new RegExp(`^${esc(m[1]!)}(\\d+)${esc(m[3] ?? '')}$`);
  const out: MetricFileEntry[] = [];
  for (const name of fs.readdirSync(runRoot).sort()) {
    const sm = sibling.exec(name);
    if (!sm) continue;
    const step = Number(sm[1]);
    for (const e of scanMetricFiles(path.join(runRoot, name, ...parts.slice(1)), prefixes, runRoot)) out.push({ ...e, step });
  }
  return out;
}

/** Mean and standard error (sample std, ddof 1, over √n) of the finite values; NaN when undefined. */
export function meanAndStderr(values: readonly number[]): { mean: number; err: number; n: number } {
  const v = values.filter((x) => !Number.isNaN(x));
  const n = v.length;
  if (n === 0) return { mean: NaN, err: NaN, n };
  const mean = v.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, err: NaN, n };
  const ss = v.reduce((a, b) => a + (b - mean) ** 2, 0);
  return { mean, err: Math.sqrt(ss / (n - 1)) / Math.sqrt(n), n };
}

const SEED_SUFFIX = /-s\d+$/;

/**
 * `final.csv` (§8.6 c6f25f7): groups (by nickname without `-s<k>` when the first nickname has
 * that suffix, else every run alone); per prefix the pooled values of all its columns → `<prefix>`,
 * `<prefix>-err`; columns matching no prefix → `<col>`, `<col>_err`.
 */
export function finalTable(nicknames: readonly string[], columns: readonly string[], values: readonly (readonly number[])[], prefixes: readonly string[]): ReportTable {
  const grouped = nicknames.length > 0 && SEED_SUFFIX.test(nicknames[0]!);
  const groups = new Map<string, number[]>();
  nicknames.forEach((n, r) => {
    const key = grouped ? n.replace(SEED_SUFFIX, '') : n;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(r);
  });
  const others = columns.filter((c) => !prefixes.some((p) => c.startsWith(p)));
  const outCols = ['nickname', ...prefixes.flatMap((p) => [p, `${p}-err`]), ...others.flatMap((c) => [c, `${c}_err`])];
  const rows: (string | number)[][] = [];
  for (const [key, members] of groups) {
    const row: (string | number)[] = [key];
    for (const p of prefixes) {
      const cols = columns.map((c, i) => (c.startsWith(p) ? i : -1)).filter((i) => i >= 0);
      const s = meanAndStderr(members.flatMap((r) => cols.map((i) => values[r]![i]!)));
      row.push(s.mean, s.err);
    }
    for (const c of others) {
      const i = columns.indexOf(c);
      const s = meanAndStderr(members.map((r) => values[r]![i]!));
      row.push(s.mean, s.err);
    }
    rows.push(row);
  }
  return { columns: outCols, rows };
}

/** Decode a GIF or any ffmpeg-readable video into a {@link VideoU8} plus its frame rate. */
async function decodeVideo(file: string): Promise<{ video: VideoU8; fps: number }> {
  if (/\.gif$/i.test(file)) {
    const g = decodeGif(fs.readFileSync(file), file);
    const data = new Uint8Array(g.frameCount * g.width * g.height * 3);
    g.frames.forEach((f, t) => data.set(f, t * f.length));
    return { video: { data, T: g.frameCount, H: g.height, W: g.width }, fps: gifFrameRate(g, 5) };
  }
  const p = await probeVideo(file, { keepFrames: true });
  const data = new Uint8Array(p.frameCount * p.width * p.height * 3);
  p.frames!.forEach((f, t) => data.set(f, t * f.length));
  return { video: { data, T: p.frameCount, H: p.height, W: p.width }, fps: p.fps ?? 5 };
}

/** Run `flexvid collect` (§8.6). */
export async function collectResults(o: CollectOptions): Promise<CollectResult> {
  const log = o.log ?? (() => {});
  if (o.runIds.length === 0) throw new OptionError('--run-ids', 'at least one run id', o.runIds);
  if (o.metricPrefixes.length === 0) throw new OptionError('--metric-prefixes', 'at least one prefix', o.metricPrefixes);
  const nicknames = o.nicknames && o.nicknames.length ? o.nicknames : o.runIds.map((_, i) => `config_${i}`);
  if (nicknames.length !== o.runIds.length) throw new OptionError('--nicknames', `${o.runIds.length} nicknames (one per run id)`, nicknames);
  const resultsDir = o.resultsDir ?? 'results';
  const outName = o.outputDir ?? 'ball';
  const dir = path.join(o.summarizedDir ?? 'summarized', outName);
  fs.mkdirSync(dir, { recursive: true });

  // Scan.
  const columns: string[] = [];
  const perRun = o.runIds.map((id, r) => {
    const runRoot = path.join(resultsDir, id);
    const root = path.join(runRoot, o.evalDirSuffix);
    if (!fs.existsSync(root)) log(`warning: ${root} does not exist (run ${nicknames[r]})`);
    const entries = scanMetricFiles(root, o.metricPrefixes, runRoot);
    for (const e of entries) if (!columns.includes(e.column)) columns.push(e.column);
    return entries;
  });
  const values = perRun.map((entries) => {
    const byCol = new Map<string, number>();
    for (const e of entries) byCol.set(e.column, e.value);
    return columns.map((c) => byCol.get(c) ?? NaN);
  });
  values.forEach((row, r) => row.forEach((v, c) => Number.isNaN(v) && log(`warning: no value for ${columns[c]} in run ${o.runIds[r]} (${nicknames[r]})`)));

  // Tables.
  const summaryCols = ['nickname', 'wandb', ...columns];
  const summaryRows = o.runIds.map((id, r) => [nicknames[r]!, id, ...values[r]!]);
  const summaryCsv = path.join(dir, 'summary.csv');
  await withFileLock(`${summaryCsv}.lock`, () => writeFileAtomic(summaryCsv, toCsv(summaryCols, summaryRows)), { timeoutMs: 60_000 });
  const final = finalTable(nicknames, columns, values, o.metricPrefixes);
  const finalCsv = path.join(dir, 'final.csv');
  writeFileAtomic(finalCsv, toCsv(final.columns, final.rows));
  log(`wrote ${summaryCsv} and ${finalCsv} (${columns.length} metric columns, ${o.runIds.length} runs)`);

  // Videos.
  const videos: { nickname: string; file: string }[] = [];
  let summaryGif: string | undefined;
  if (o.videoName) {
    const ext = path.extname(o.videoName) || '.gif';
    const decoded: { video: VideoU8; fps: number; nickname: string }[] = [];
    for (let r = 0; r < o.runIds.length; r++) {
      const src = path.join(resultsDir, o.runIds[r]!, o.evalDirSuffix, 'videos', o.videoName);
      if (!fs.existsSync(src)) {
        log(`warning: ${src} does not exist (run ${nicknames[r]})`);
        continue;
      }
      const dst = path.join(dir, 'gifs', `${nicknames[r]}${ext}`);
      writeFileAtomic(dst, fs.readFileSync(src));
      videos.push({ nickname: nicknames[r]!, file: dst });
      decoded.push({ ...(await decodeVideo(dst)), nickname: nicknames[r]! });
    }
    if (decoded.length) {
      const stacked = stackWithLabels(
        decoded.map((d) => d.video),
        decoded.map((d) => d.nickname),
      );
      summaryGif = path.join(dir, 'summary.gif');
      writeGif(summaryGif, videoFrames(stacked), stacked.W, stacked.H, { fps: decoded[0]!.fps });
      log(`wrote ${summaryGif} (${decoded.length} runs, ${stacked.T} frames)`);
    }
  }

  // Report.
  const charts: ChartSpec[] = columns.map((c, ci) => ({
    title: c,
    xLabel: 'run',
    categories: nicknames.slice(),
    series: [{ name: c, points: values.map((row, r) => ({ x: r, y: row[ci]! })) }],
  }));
  // Prefix aggregates of final.csv with error bars.
  if (final.rows.length > 0 && final.rows.length < nicknames.length) {
    for (const p of o.metricPrefixes) {
      const j = final.columns.indexOf(p);
      charts.push({
        title: `${p} (mean ± s.e.)`,
        xLabel: 'group',
        categories: final.rows.map((r) => String(r[0])),
        series: [{ name: p, points: final.rows.map((r, i) => ({ x: i, y: r[j] as number, err: r[j + 1] as number })) }],
      });
    }
  }
  // Metric vs checkpoint step, for runs with several checkpoints evaluated the same way.
  const seriesEntries = o.runIds.map((id) => checkpointSeriesEntries(path.join(resultsDir, id), o.evalDirSuffix, o.metricPrefixes));
  for (const c of columns) {
    const series = seriesEntries
      .map((entries, r) => ({ name: nicknames[r]!, points: entries.filter((e) => e.column === c && e.step !== null).map((e) => ({ x: e.step!, y: e.value })) }))
      .filter((s) => new Set(s.points.map((p) => p.x)).size > 1);
    if (series.length) charts.push({ title: `${c} vs training step`, xLabel: 'training step', series, lines: true });
  }
  const rel = (f: string) => path.relative(dir, f).split(path.sep).join('/');
  const reportHtml = path.join(dir, 'report.html');
  writeFileAtomic(
    reportHtml,
    renderReport({
      title: `flexvid results: ${outName}`,
      notes: [`eval dir suffix: ${o.evalDirSuffix}`, `metric prefixes: ${o.metricPrefixes.join(', ')}`, `runs: ${o.runIds.map((id, r) => `${nicknames[r]} (${id})`).join(', ')}`],
      tables: [
        { caption: 'Summary', table: { columns: summaryCols, rows: summaryRows }, href: 'summary.csv' },
        { caption: 'Final (seeds pooled)', table: final, href: 'final.csv' },
      ],
      charts,
      videos: videos.map((v) => ({ label: v.nickname, src: rel(v.file) })),
      summaryVideo: summaryGif ? rel(summaryGif) : undefined,
    }),
  );
  log(`wrote ${reportHtml}`);
  if (columns.length === 0) log(`warning: no metric files starting with ${o.metricPrefixes.join(', ')} found under ${resultsDir}/<run>/${o.evalDirSuffix}`);
  return { dir, summaryCsv, finalCsv, reportHtml, summaryGif, videos, columns, values };
}
