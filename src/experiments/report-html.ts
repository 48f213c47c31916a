/**
 * A self-contained HTML report of collected results (`summarized/<name>/report.html`, ARCHITECTURE
 * §3): metric tables, inline SVG charts drawn here (no scripts, no network) and the runs' videos
 * embedded by relative path, so the file opens from disk next to `gifs/` and `summary.gif`.
 */

/** A table: column names and rows of cells (numbers are formatted, NaN shows as "—"). */
export interface ReportTable {
  columns: string[];
  rows: (string | number)[][];
}

/** One point of a chart series. */
export interface ChartPoint {
  /** Category index (categorical charts) or numeric x (step charts). */
  x: number;
  y: number;
  /** Half-length of an error bar. */
  err?: number;
}

/** One line/marker series of a chart. */
export interface ChartSeries {
  name: string;
  points: ChartPoint[];
}

/** A chart: categorical (`categories` set: x = category index) or numeric x. */
export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel?: string;
  categories?: string[];
  series: ChartSeries[];
  /** Join points of a series with lines (default: true for numeric x, false for categories). */
  lines?: boolean;
}

/** A video shown in the report. */
export interface ReportVideo {
  label: string;
  /** Path relative to the report. */
  src: string;
}

/** Contents of {@link renderReport}. */
export interface ReportContents {
  title: string;
  /** Lines shown under the title (settings, sources). */
  notes?: string[];
  tables: { caption: string; table: ReportTable; href?: string }[];
  charts: ChartSpec[];
  videos: ReportVideo[];
  /** The stacked, labelled video (relative path). */
  summaryVideo?: string;
}

/** The Set2 palette (ColorBrewer), as the reference's plots. */
export const PALETTE = ['#66c2a5', '#fc8d62', '#8da0cb', '#e78ac3', '#a6d854', '#ffd92f', '#e5c494', '#b3b3b3'];

/** Escape text for HTML/SVG. */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Escape a relative path for an attribute (each segment URI-encoded). */
function hrefOf(rel: string): string {
  return rel.split('/').map(encodeURIComponent).join('/');
}

/** Short, readable number formatting for tables and ticks. */
export function formatNumber(v: number): string {
  if (Number.isNaN(v)) return '—';
  if (!Number.isFinite(v)) return v > 0 ? '∞' : '−∞';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(3);
  return Number(v.toPrecision(5)).toString();
}

/** "Nice" tick values covering [lo, hi] (about `n` ticks). */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(Number.isFinite(lo) && Number.isFinite(hi))) return [];
  if (lo === hi) {
    const d = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  if (out[0]! > lo) out.unshift(Number((out[0]! - step).toPrecision(12)));
  if (out[out.length - 1]! < hi) out.push(Number((out[out.length - 1]! + step).toPrecision(12)));
  return out;
}

/**
 * Draw a chart as an inline SVG string (480 × 300 px): axes with nice ticks, one colour per
 * series, markers, optional lines and error bars, and a legend. Non-finite values are left out
 * (and counted in a note).
 */
export function renderChartSvg(c: ChartSpec): string {
  const W = 480;
  const H = 300;
  const m = { left: 64, right: 16, top: 28, bottom: 56 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const categorical = c.categories !== undefined;
  const lines = c.lines ?? !categorical;
  const finite = c.series.flatMap((s) => s.points.filter((p) => Number.isFinite(p.y) && Number.isFinite(p.x)));
  const dropped = c.series.reduce((n, s) => n + s.points.length, 0) - finite.length;
  const ys = finite.flatMap((p) => (p.err !== undefined && Number.isFinite(p.err) ? [p.y - p.err, p.y + p.err] : [p.y]));
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeHtml(c.title)}">`);
  parts.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${escapeHtml(c.title)}</text>`);
  if (finite.length === 0) {
    parts.push(`<text x="${W / 2}" y="${H / 2}" text-anchor="middle" font-size="12" fill="#888">no finite values</text></svg>`);
    return parts.join('');
  }
  const yt = niceTicks(Math.min(...ys), Math.max(...ys));
  const y0 = yt[0]!;
  const y1 = yt[yt.length - 1]!;
  const sy = (v: number) => m.top + ph - ((v - y0) / (y1 - y0 || 1)) * ph;
  let sx: (v: number) => number;
  let xt: { v: number; label: string }[];
  if (categorical) {
    const n = c.categories!.length;
    sx = (v) => m.left + ((v + 0.5) / Math.max(1, n)) * pw;
    xt = c.categories!.map((label, i) => ({ v: i, label }));
  } else {
    const xs = finite.map((p) => p.x);
    const ticks = niceTicks(Math.min(...xs), Math.max(...xs), 5);
    const x0 = ticks[0]!;
    const x1 = ticks[ticks.length - 1]!;
    sx = (v) => m.left + ((v - x0) / (x1 - x0 || 1)) * pw;
    xt = ticks.map((v) => ({ v, label: formatNumber(v) }));
  }
  // grid and axes
  for (const v of yt) {
    const y = sy(v).toFixed(1);
    parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    parts.push(`<text x="${m.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle" font-size="10">${escapeHtml(formatNumber(v))}</text>`);
  }
  parts.push(`<line x1="${m.left}" x2="${m.left}" y1="${m.top}" y2="${m.top + ph}" stroke="#444"/>`);
  parts.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${m.top + ph}" y2="${m.top + ph}" stroke="#444"/>`);
  for (const t of xt) {
    const x = sx(t.v).toFixed(1);
    parts.push(`<line x1="${x}" x2="${x}" y1="${m.top + ph}" y2="${m.top + ph + 4}" stroke="#444"/>`);
    const label = t.label.length > 14 ? t.label.slice(0, 13) + '…' : t.label;
    parts.push(`<text x="${x}" y="${m.top + ph + 16}" text-anchor="middle" font-size="10">${escapeHtml(label)}</text>`);
  }
  parts.push(`<text x="${m.left + pw / 2}" y="${H - 22}" text-anchor="middle" font-size="11">${escapeHtml(c.xLabel)}</text>`);
  if (c.yLabel) parts.push(`<text transform="translate(14 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="11">${escapeHtml(c.yLabel)}</text>`);
  // series
  c.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    const pts = s.points.filter((p) => Number.isFinite(p.y) && Number.isFinite(p.x)).sort((a, b) => a.x - b.x);
    const jitter = categorical && c.series.length > 1 ? ((i - (c.series.length - 1) / 2) * Math.min(10, pw / Math.max(1, c.categories!.length) / (c.series.length + 1))) : 0;
    if (lines && pts.length > 1) {
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${(sx(p.x) + jitter).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ')}"/>`);
    }
    for (const p of pts) {
      const x = (sx(p.x) + jitter).toFixed(1);
      if (p.err !== undefined && Number.isFinite(p.err) && p.err > 0) {
        const a = sy(p.y - p.err).toFixed(1);
        const b = sy(p.y + p.err).toFixed(1);
        parts.push(`<line x1="${x}" x2="${x}" y1="${a}" y2="${b}" stroke="${color}" stroke-width="1.5"/>`);
        parts.push(`<line x1="${Number(x) - 4}" x2="${Number(x) + 4}" y1="${a}" y2="${a}" stroke="${color}"/><line x1="${Number(x) - 4}" x2="${Number(x) + 4}" y1="${b}" y2="${b}" stroke="${color}"/>`);
      }
      parts.push(`<circle cx="${x}" cy="${sy(p.y).toFixed(1)}" r="4" fill="${color}" stroke="#333" stroke-width="0.5"><title>${escapeHtml(`${s.name}: ${formatNumber(p.y)}${p.err !== undefined && Number.isFinite(p.err) ? ` ± ${formatNumber(p.err)}` : ''}`)}</title></circle>`);
    }
  });
  // legend
  if (c.series.length > 1 || !categorical) {
    let lx = m.left;
    const ly = H - 6;
    c.series.forEach((s, i) => {
      const color = PALETTE[i % PALETTE.length]!;
      parts.push(`<circle cx="${lx + 5}" cy="${ly - 4}" r="4" fill="${color}"/><text x="${lx + 12}" y="${ly}" font-size="10">${escapeHtml(s.name)}</text>`);
      lx += 22 + 6 * s.name.length;
    });
  }
  if (dropped > 0) parts.push(`<text x="${W - 4}" y="${m.top - 4}" text-anchor="end" font-size="9" fill="#a33">${dropped} non-finite value(s) not shown</text>`);
  parts.push('</svg>');
  return parts.join('');
}

function renderTable(t: ReportTable): string {
  const head = t.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const body = t.rows
    .map((r) => `<tr>${r.map((v) => (typeof v === 'number' ? `<td class="num" title="${escapeHtml(String(v))}">${escapeHtml(formatNumber(v))}</td>` : `<td>${escapeHtml(v)}</td>`)).join('')}</tr>`)
    .join('\n');
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function isVideoFile(src: string): boolean {
  return /\.(mp4|webm|ogv)$/i.test(src);
}

function renderVideo(v: ReportVideo): string {
  const media = isVideoFile(v.src)
    ? `<video src="${hrefOf(v.src)}" controls loop muted autoplay playsinline></video>`
    : `<img src="${hrefOf(v.src)}" alt="${escapeHtml(v.label)}">`;
  return `<figure>${media}<figcaption>${escapeHtml(v.label)}</figcaption></figure>`;
}

/** The complete report as an HTML document (UTF-8, no external resources). */
export function renderReport(r: ReportContents): string {
  const css = `body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}.charts{display:flex;flex-wrap:wrap;gap:12px}
.charts svg{border:1px solid #e4e4e4}figure{display:inline-block;margin:6px 12px 6px 0;vertical-align:top}
figure img,figure video{image-rendering:pixelated;max-width:100%;border:1px solid #ddd}figcaption{font-size:12px;text-align:center}
.notes{color:#555;font-size:13px}`;
  const out: string[] = [];
  out.push('<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">', `<title>${escapeHtml(r.title)}</title>`, `<style>${css}</style>`, '</head>', '<body>');
  out.push(`<h1>${escapeHtml(r.title)}</h1>`);
  if (r.notes?.length) out.push(`<div class="notes">${r.notes.map((n) => `<div>${escapeHtml(n)}</div>`).join('')}</div>`);
  for (const t of r.tables) {
    out.push(`<h2>${escapeHtml(t.caption)}${t.href ? ` <small>(<a href="${hrefOf(t.href)}">${escapeHtml(t.href)}</a>)</small>` : ''}</h2>`);
    out.push(renderTable(t.table));
  }
  if (r.charts.length) {
    out.push('<h2>Charts</h2>', '<div class="charts">');
    for (const c of r.charts) out.push(renderChartSvg(c));
    out.push('</div>');
  }
  if (r.summaryVideo || r.videos.length) {
    out.push('<h2>Videos</h2>');
    if (r.summaryVideo) out.push(renderVideo({ label: 'all runs', src: r.summaryVideo }));
    out.push('<div>');
    for (const v of r.videos) out.push(renderVideo(v));
    out.push('</div>');
  }
  out.push(`<p class="notes">Generated by flexvid on ${escapeHtml(new Date().toISOString())}.</p>`, '</body>', '</html>', '');
  return out.join('\n');
}
