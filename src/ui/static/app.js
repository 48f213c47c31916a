// flexvid dashboard page (issue 10 §2). Plain ES module, no build step; talks only to the server
// that served it (the page's CSP forbids anything else). uPlot is loaded as a global by index.html.
/* global uPlot */

const PALETTE = ['#3b6fd8', '#e8710a', '#1f9d55', '#d64545', '#8e5bd6', '#0f9fb4', '#c2527a', '#7a8b2a', '#b8860b', '#5b6b8c',
  '#2a9d8f', '#e76f51', '#6d597a', '#457b9d', '#bc6c25', '#9c6644'];
const POLL_MS = Number(new URLSearchParams(location.search).get('poll')) || 5000;
const POINTS = Number(new URLSearchParams(location.search).get('points')) || 2000;
const SECTION_ORDER = ['Losses', 'Optimisation', 'Throughput & data', 'Timing', 'Quartiles', 'Other'];

const $ = (sel) => document.querySelector(sel);
const h = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
};

async function api(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = (await r.json()).error || msg; } catch { /* not json */ }
    throw new Error(msg);
  }
  return r.json();
}
const qs = (params) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => u.append(k, x));
    else if (v !== undefined && v !== null) u.set(k, String(v));
  }
  return u.toString();
};
const fileUrl = (rel) => '/files/' + rel.split('/').map(encodeURIComponent).join('/');

function fmt(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (typeof v !== 'number') return String(v);
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e6 || a < 1e-3) return v.toExponential(3);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  return v.toPrecision(5).replace(/\.?0+$/, '');
}
/** Short axis labels: 3 significant digits, exponent form for tiny/huge values ("1.5e-4"). */
function fmtAxis(v) {
  if (v === null || v === undefined) return '';
  const a = Math.abs(v);
  if (a === 0) return '0';
  if (a >= 1e5 || a < 1e-3) return v.toExponential(2).replace(/\.?0+e/, 'e').replace('e+', 'e');
  return String(Number(v.toPrecision(4)));
}
/** Step-axis labels, consistent across one axis: "1,250" below 10k, "12.5k" / "2.5M" above. */
function fmtSteps(vals) {
  const max = Math.max(...vals.map((v) => Math.abs(v ?? 0)));
  const trim = (x) => String(Number(x.toPrecision(6)));
  if (max >= 1e7) return vals.map((v) => (v === null ? '' : trim(v / 1e6) + 'M'));
  if (max >= 1e4) return vals.map((v) => (v === null ? '' : trim(v / 1e3) + 'k'));
  return vals.map((v) => (v === null ? '' : Number.isInteger(v) ? v.toLocaleString('en-US') : trim(v)));
}
function ago(iso) {
  if (!iso) return '';
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(s)) return '';
  if (s < 60) return `${Math.max(0, Math.round(s))}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

// ------------------------------------------------------------------------------------ state

const state = {
  projects: [],
  project: null,
  runs: [], // summaries of the current project
  byId: new Map(),
  selected: new Set(),
  focus: null,
  tab: 'charts',
  smooth: 0.6,
  log: false,
  x: 'step',
  metricFilter: '',
  runFilter: '',
  colors: new Map(),
  runDetails: new Map(), // id -> {version, data}
  previewStep: null,
  results: [],
  resultSort: { col: 'step', dir: 1 },
  pickedResult: null,
  diffWith: null, // null = automatic (another selected run)
};

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (p.has('p')) state.project = p.get('p');
  if (p.has('r')) state.selected = new Set(p.get('r').split(',').filter(Boolean));
  if (p.has('f')) state.focus = p.get('f');
  if (p.has('t')) state.tab = p.get('t');
  if (p.has('s')) state.smooth = Math.min(0.99, Math.max(0, Number(p.get('s')) || 0));
  if (p.has('log')) state.log = p.get('log') === '1';
  if (p.has('x')) state.x = p.get('x');
  if (p.has('m')) state.metricFilter = p.get('m');
}
function writeHash() {
  const p = new URLSearchParams();
  if (state.project) p.set('p', state.project);
  p.set('r', [...state.selected].join(','));
  if (state.focus) p.set('f', state.focus);
  p.set('t', state.tab);
  p.set('s', String(state.smooth));
  if (state.log) p.set('log', '1');
  if (state.x !== 'step') p.set('x', state.x);
  if (state.metricFilter) p.set('m', state.metricFilter);
  history.replaceState(null, '', '#' + p.toString());
}

const colorOf = (id) => state.colors.get(id) || '#888';
function assignColors() {
  // Stable colours: by creation order within the project (new runs get new colours).
  const ordered = [...state.runs].sort((a, b) => (a.createdAt || '').localeCompare(b.createdAt || '') || a.id.localeCompare(b.id));
  ordered.forEach((r, i) => state.colors.set(r.id, PALETTE[i % PALETTE.length]));
}
const selectedRuns = () => state.runs.filter((r) => state.selected.has(r.id));

// ------------------------------------------------------------------------------------ live polling

const live = $('#live');
function setLive(ok, text) {
  live.className = 'live ' + (ok ? 'ok' : 'err');
  live.textContent = text;
}

/** Poll the server; `init` (page load, project switch) also picks a default selection and draws the tab. */
async function refresh(init = false) {
  try {
    const projects = await api('/api/projects');
    state.projects = projects;
    if (!state.project || !projects.some((p) => p.name === state.project)) {
      // The project with the most recent activity.
      state.project = projects.reduce((best, p) => (!best || (p.latest || '') > (best.latest || '') ? p : best), null)?.name ?? null;
    }
    const runs = state.project ? await api('/api/runs?' + qs({ project: state.project })) : [];
    const before = new Map(state.runs.map((r) => [r.id, r.version]));
    state.runs = runs;
    state.byId = new Map(state.runs.map((r) => [r.id, r]));
    assignColors();
    for (const id of [...state.selected]) if (!state.byId.has(id)) state.selected.delete(id);
    if (init && state.selected.size === 0) {
      // Default: every run of a small project, else the five newest.
      state.runs.slice(0, state.runs.length <= 10 ? state.runs.length : 5).forEach((r) => state.selected.add(r.id));
    }
    if (!state.focus || !state.byId.has(state.focus)) state.focus = selectedRuns()[0]?.id ?? state.runs[0]?.id ?? null;
    const changed = new Set(state.runs.filter((r) => before.get(r.id) !== r.version).map((r) => r.id));
    renderProjects();
    renderRuns();
    if (init) {
      writeHash();
      renderTab();
    } else onRunsChanged(changed);
    const running = state.runs.filter((r) => r.status === 'running').length;
    setLive(true, `${running ? `${running} running · ` : ''}updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    setLive(false, `disconnected (${e.message})`);
  }
}

function onRunsChanged(changed) {
  const sel = [...changed].filter((id) => state.selected.has(id));
  if (sel.length === 0) return;
  for (const id of sel) state.runDetails.delete(id);
  if (state.tab === 'charts') charts.refreshChanged(new Set(sel));
  else if (state.tab === 'media') renderMedia();
}

// ------------------------------------------------------------------------------------ header & sidebar

function renderProjects() {
  const nav = $('#projects');
  nav.replaceChildren(
    ...state.projects.map((p) =>
      h('button', {
        type: 'button',
        class: p.name === state.project ? 'active' : '',
        onclick: () => {
          if (p.name === state.project) return;
          state.project = p.name;
          state.selected.clear();
          state.focus = null;
          state.runs = [];
          charts.reset();
          refresh(true);
        },
      }, p.name, h('span', { class: 'count', text: String(p.runs) })),
    ),
  );
}

function statusBadge(r) {
  return h('span', { class: `badge ${r.status}`, title: r.statusDetail || `heartbeat ${ago(r.updatedAt)}` }, r.status);
}

function renderRuns() {
  const ul = $('#runs');
  let re = null;
  try { re = state.runFilter ? new RegExp(state.runFilter, 'i') : null; } catch { re = null; }
  const shown = state.runs.filter((r) => !re || re.test(r.id) || re.test(r.dataset || '') || re.test(r.status));
  $('#run-count').textContent = `${state.selected.size} of ${state.runs.length} shown`;
  if (state.runs.length === 0) {
    ul.replaceChildren(h('li', { class: 'empty-state' }, 'No runs in this folder yet. Start one with flexvid train.'));
    return;
  }
  ul.replaceChildren(
    ...shown.map((r) => {
      const box = h('input', {
        type: 'checkbox',
        'aria-label': `overlay ${r.id}`,
        onclick: (ev) => {
          ev.stopPropagation();
          if (box.checked) state.selected.add(r.id);
          else state.selected.delete(r.id);
          selectionChanged();
        },
      });
      box.checked = state.selected.has(r.id);
      const li = h(
        'li',
        {
          class: r.id === state.focus ? 'focus' : '',
          dataset: { run: r.id },
          title: `${r.id}\n${r.dataset || ''}\ncreated ${r.createdAt || '?'}`,
          onclick: (ev) => {
            if (ev.ctrlKey || ev.metaKey) {
              if (state.selected.has(r.id)) state.selected.delete(r.id);
              else state.selected.add(r.id);
            } else {
              state.selected = new Set([r.id]);
            }
            state.focus = r.id;
            selectionChanged();
          },
        },
        box,
        h('span', { class: 'swatch', style: `background:${colorOf(r.id)}` }),
        h('span', { class: 'name', text: r.id }),
        statusBadge(r),
        h('span', { class: 'sub', text: [r.dataset, r.step !== null ? `step ${fmt(r.step)}` : null, typeof r.last?.loss === 'number' ? `loss ${fmt(r.last.loss)}` : null].filter(Boolean).join(' · ') }),
      );
      return li;
    }),
  );
}

function selectionChanged() {
  if (state.focus && !state.byId.has(state.focus)) state.focus = null;
  renderRuns();
  writeHash();
  renderTab();
}

// ------------------------------------------------------------------------------------ tabs

function renderTab() {
  for (const b of document.querySelectorAll('.tabs button')) b.classList.toggle('active', b.dataset.tab === state.tab);
  for (const s of document.querySelectorAll('.tab')) s.hidden = s.id !== `tab-${state.tab}`;
  if (state.tab === 'charts') charts.render();
  else if (state.tab === 'media') renderMedia();
  else if (state.tab === 'eval') renderEval();
  else if (state.tab === 'config') renderConfig();
}

// ------------------------------------------------------------------------------------ charts

function sectionOf(key) {
  if (/_q\d$/.test(key)) return 'Quartiles';
  if (key.startsWith('timing/')) return 'Timing';
  if (/^(grad_norm|lr|param_norm)$/.test(key)) return 'Optimisation';
  if (/^(frames_per_s|data_wait_fraction|stream_position|replay_size|samples)$/.test(key)) return 'Throughput & data';
  if (/(loss|mse|vb|kl|nll)/i.test(key)) return 'Losses';
  return 'Other';
}
const KEY_ORDER = ['loss', 'mse', 'eval-mse', 'vb'];
const keyRank = (k) => (KEY_ORDER.includes(k) ? KEY_ORDER.indexOf(k) : 100);

const tooltip = $('#tooltip');

class Chart {
  constructor(key) {
    this.key = key;
    this.u = null;
    this.versions = new Map(); // run -> version drawn
    this.loading = false;
    this.visible = false;
    this.title = h('h4', {}, key, h('span', { class: 'muted' }));
    this.body = h('div');
    this.empty = h('div', { class: 'empty', text: 'loading…' });
    this.el = h('div', { class: 'chart', dataset: { key } }, this.title, this.body, this.empty);
  }

  needsLoad() {
    const runs = selectedRuns();
    if (runs.length !== this.versions.size) return true;
    return runs.some((r) => this.versions.get(r.id) !== r.version);
  }

  async load(force = false) {
    if (this.loading || (!force && !this.needsLoad())) return;
    const runs = selectedRuns();
    this.loading = true;
    let failed = false;
    try {
      if (runs.length === 0) {
        this.draw([], runs);
        return;
      }
      const res = await api('/api/metrics?' + qs({ run: runs.map((r) => r.id), key: this.key, points: POINTS, smooth: state.smooth || undefined, x: state.x }));
      this.draw(res.series, runs);
      this.versions = new Map(runs.map((r) => [r.id, r.version]));
    } catch (e) {
      failed = true;
      this.empty.hidden = false;
      this.empty.textContent = `error: ${e.message}`;
    } finally {
      this.loading = false;
    }
    if (!failed && this.visible && this.needsLoad()) setTimeout(() => this.load(), 0); // the selection changed meanwhile
  }

  draw(series, runs) {
    const withData = series.filter((s) => s.x.length > 0);
    const counts = {};
    for (const s of series) counts[s.run] = s.x.length;
    this.el.dataset.points = JSON.stringify(counts);
    this.title.lastChild.textContent = withData.length ? `${withData.reduce((n, s) => n + s.total, 0).toLocaleString('en-US')} logged · ${withData.length} run${withData.length > 1 ? 's' : ''}` : '';
    if (this.u) { this.u.destroy(); this.u = null; }
    if (withData.length === 0) {
      this.empty.hidden = false;
      this.empty.textContent = runs.length ? 'no data for the selected runs' : 'no run selected';
      return;
    }
    this.empty.hidden = true;
    const smooth = state.smooth > 0;
    const pos = (v) => (state.log && !(v > 0) ? null : v);
    const tables = withData.map((s) => (smooth ? [s.x, s.y.map(pos), s.s.map(pos)] : [s.x, s.y.map(pos)]));
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    const seriesOpts = [{ label: state.x }];
    this.seriesRuns = [null];
    for (const s of withData) {
      const c = colorOf(s.run);
      if (smooth) {
        seriesOpts.push({ label: `${s.run} (raw)`, stroke: c + '38', width: 1, points: { show: false } });
        this.seriesRuns.push({ run: s.run, raw: true });
      }
      seriesOpts.push({ label: s.run, stroke: c, width: 1.6, points: { show: false } });
      this.seriesRuns.push({ run: s.run, raw: false });
    }
    this.series = withData;
    const width = Math.max(200, this.el.clientWidth - 20);
    const xIsTime = state.x === 'wall';
    const opts = {
      width,
      height: 210,
      legend: { show: false },
      cursor: { sync: { key: 'flexvid' }, drag: { x: true, y: false, setScale: true }, points: { size: 6 } },
      scales: { x: { time: xIsTime }, y: state.log ? { distr: 3 } : {} },
      axes: [
        { stroke: '#6b7385', grid: { stroke: '#eef0f4', width: 1 }, ticks: { stroke: '#e3e6ec', width: 1 }, ...(xIsTime ? {} : { values: (u, vals) => fmtSteps(vals) }) },
        { stroke: '#6b7385', size: 62, grid: { stroke: '#eef0f4', width: 1 }, ticks: { stroke: '#e3e6ec', width: 1 }, values: (u, vals) => vals.map(fmtAxis) },
      ],
      series: seriesOpts,
      hooks: {
        setCursor: [(u) => this.tooltip(u)],
      },
    };
    this.u = new uPlot(opts, data, this.body);
    this.u.over.addEventListener('mouseleave', () => { tooltip.hidden = true; });
  }

  tooltip(u) {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.cursor.left < 0) { tooltip.hidden = true; return; }
    const xv = u.data[0][idx];
    const rows = [];
    for (let i = 1; i < u.series.length; i++) {
      const sr = this.seriesRuns[i];
      if (sr.raw) continue;
      const v = nearestDefined(u.data[i], idx);
      if (v === undefined) continue;
      const raw = state.smooth > 0 ? nearestDefined(u.data[i - 1], idx) : undefined;
      rows.push(h('div', {}, h('span', { class: 'sw', style: `background:${colorOf(sr.run)}` }), sr.run, h('span', { class: 'v', text: fmt(v) + (raw !== undefined ? ` (${fmt(raw)})` : '') })));
    }
    const xl = state.x === 'wall' ? new Date(xv * 1000).toLocaleString() : state.x === 'relative' ? `${fmt(xv)} h` : `step ${fmt(xv)}`;
    tooltip.replaceChildren(h('div', { class: 'strong', text: `${this.key} · ${xl}` }), ...rows);
    const rect = u.over.getBoundingClientRect();
    tooltip.hidden = false;
    const left = rect.left + u.cursor.left + 14;
    tooltip.style.left = Math.min(left, window.innerWidth - tooltip.offsetWidth - 8) + 'px';
    tooltip.style.top = rect.top + u.cursor.top + 14 + 'px';
  }

  resize() {
    if (this.u) this.u.setSize({ width: Math.max(200, this.el.clientWidth - 20), height: 210 });
  }

  destroy() {
    if (this.u) this.u.destroy();
    this.u = null;
  }
}

function nearestDefined(arr, idx) {
  // joined data has `undefined` where a run has no point at that x: look a few slots around
  for (let d = 0; d < 64; d++) {
    if (arr[idx - d] !== undefined && arr[idx - d] !== null) return arr[idx - d];
    if (arr[idx + d] !== undefined && arr[idx + d] !== null) return arr[idx + d];
  }
  return undefined;
}

const charts = {
  map: new Map(), // key -> Chart
  sectionsOpen: new Map([['Quartiles', false]]),
  observer: new IntersectionObserver((entries) => {
    for (const e of entries) {
      const c = charts.map.get(e.target.dataset.key);
      if (!c) continue;
      c.visible = e.isIntersecting;
      if (c.visible) c.load();
    }
  }, { rootMargin: '200px' }),

  keys() {
    const set = new Set();
    for (const r of selectedRuns()) for (const k of r.keys || []) set.add(k);
    for (const r of selectedRuns()) {
      const d = state.runDetails.get(r.id);
      if (d) for (const k of d.data.keys || []) set.add(k);
    }
    let re = null;
    try { re = state.metricFilter ? new RegExp(state.metricFilter, 'i') : null; } catch { re = null; }
    return [...set].filter((k) => !re || re.test(k)).sort((a, b) => keyRank(a) - keyRank(b) || a.localeCompare(b));
  },

  reset() {
    for (const c of this.map.values()) { this.observer.unobserve(c.el); c.destroy(); }
    this.map.clear();
    $('#charts').replaceChildren();
  },

  render() {
    const keys = this.keys();
    const root = $('#charts');
    if (state.runs.length === 0) {
      this.reset();
      root.replaceChildren(h('div', { class: 'empty-state' }, 'No runs found. Point flexvid ui at a folder with checkpoints/<run-id>/metrics.jsonl.'));
      return;
    }
    for (const [k, c] of this.map) if (!keys.includes(k)) { this.observer.unobserve(c.el); c.destroy(); this.map.delete(k); }
    const bySection = new Map();
    for (const k of keys) {
      const s = sectionOf(k);
      if (!bySection.has(s)) bySection.set(s, []);
      bySection.get(s).push(k);
    }
    const sections = [];
    for (const name of SECTION_ORDER) {
      const ks = bySection.get(name);
      if (!ks) continue;
      const grid = h('div', { class: 'chart-grid' });
      for (const k of ks) {
        let c = this.map.get(k);
        if (!c) { c = new Chart(k); this.map.set(k, c); }
        grid.append(c.el);
      }
      const det = h('details', { class: 'section', dataset: { section: name } }, h('summary', {}, name, h('span', { class: 'muted', text: `${ks.length}` })), grid);
      det.open = this.sectionsOpen.get(name) ?? true;
      det.addEventListener('toggle', () => {
        this.sectionsOpen.set(name, det.open);
        if (det.open) for (const k of ks) this.map.get(k)?.resize();
      });
      sections.push(det);
    }
    if (sections.length === 0) sections.push(h('div', { class: 'empty-state' }, selectedRuns().length ? 'No metrics match.' : 'Select runs on the left to plot them.'));
    root.replaceChildren(...sections);
    for (const c of this.map.values()) { this.observer.unobserve(c.el); this.observer.observe(c.el); }
    // charts already visible re-check their data
    for (const c of this.map.values()) if (c.visible) c.load();
    this.loadDetailsKeys();
  },

  refreshChanged() {
    for (const c of this.map.values()) if (c.visible) c.load();
    this.render();
  },

  reloadAll() {
    for (const c of this.map.values()) c.versions.clear();
    for (const c of this.map.values()) if (c.visible) c.load(true);
  },

  async loadDetailsKeys() {
    // The runs list knows the keys seen at the ends of each file; the run details know all once parsed.
    const missing = selectedRuns().filter((r) => !state.runDetails.has(r.id));
    if (missing.length === 0) return;
    await Promise.all(missing.map((r) => runDetails(r.id)));
    const before = [...this.map.keys()].join();
    if (this.keys().join() !== before) this.render();
  },
};

new ResizeObserver(() => { for (const c of charts.map.values()) c.resize(); }).observe($('#charts'));

async function runDetails(id) {
  const r = state.byId.get(id);
  const cached = state.runDetails.get(id);
  if (cached && r && cached.version === r.version && cached.previews === r.previews) return cached.data;
  const data = await api('/api/run?' + qs({ id }));
  state.runDetails.set(id, { version: r?.version, previews: r?.previews, data });
  return data;
}

// ------------------------------------------------------------------------------------ media

function mediaEl(rel, cls = 'media') {
  if (/\.(mp4|webm)$/i.test(rel)) return h('video', { class: cls, src: fileUrl(rel), controls: true, loop: true, muted: true, playsinline: true, preload: 'metadata' });
  return h('img', { class: cls, src: fileUrl(rel), alt: rel.split('/').pop(), loading: 'lazy' });
}

let previewTimer = null;
async function renderMedia() {
  const runs = selectedRuns();
  const details = await Promise.all(runs.map((r) => runDetails(r.id).catch(() => null)));
  const steps = [...new Set(details.flatMap((d) => (d ? d.previews.map((p) => p.step) : [])))].sort((a, b) => a - b);
  const slider = $('#preview-step');
  const box = $('#previews');
  if (steps.length === 0) {
    slider.max = '0';
    $('#preview-step-label').textContent = '';
    box.replaceChildren(h('div', { class: 'empty-state' }, runs.length ? 'No preview samples yet (written every --sample-interval steps).' : 'Select runs on the left.'));
  } else {
    slider.max = String(steps.length - 1);
    if (state.previewStep === null || !steps.includes(state.previewStep)) state.previewStep = steps[steps.length - 1];
    slider.value = String(steps.indexOf(state.previewStep));
    slider.dataset.steps = JSON.stringify(steps);
    $('#preview-step-label').textContent = `step ${fmt(state.previewStep)} (${steps.indexOf(state.previewStep) + 1} of ${steps.length})`;
    box.replaceChildren(
      ...runs.map((r, i) => {
        const d = details[i];
        const ps = d ? d.previews.filter((p) => p.step <= state.previewStep) : [];
        const p = ps[ps.length - 1];
        return h('div', { class: 'card', dataset: { run: r.id } },
          h('h4', {}, h('span', { class: 'swatch', style: `display:inline-block;width:10px;height:10px;border-radius:2px;background:${colorOf(r.id)}` }), r.id),
          p ? mediaEl(p.file) : h('div', { class: 'empty-state', text: 'no preview at or before this step' }),
          h('div', { class: 'cap', text: p ? `preview at step ${fmt(p.step)}` : '' }));
      }),
    );
  }
  // Film strip of the focused run.
  const focus = state.focus && state.selected.has(state.focus) ? state.focus : runs[0]?.id;
  const fd = focus ? details[runs.findIndex((r) => r.id === focus)] : null;
  const strip = $('#filmstrip');
  if (fd && fd.previews.length) {
    $('#filmstrip-title').textContent = `All previews of ${focus} (${fd.previews.length})`;
    strip.replaceChildren(...fd.previews.slice(-60).reverse().map((p) => h('figure', { onclick: () => { state.previewStep = p.step; renderMedia(); } }, mediaEl(p.file), h('figcaption', { text: `step ${fmt(p.step)}` }))));
  } else {
    $('#filmstrip-title').textContent = '';
    strip.replaceChildren();
  }
}
$('#preview-step').addEventListener('input', (ev) => {
  const steps = JSON.parse(ev.target.dataset.steps || '[]');
  state.previewStep = steps[Number(ev.target.value)] ?? null;
  renderMedia();
});
$('#preview-play').addEventListener('click', () => {
  const btn = $('#preview-play');
  if (previewTimer) {
    clearInterval(previewTimer);
    previewTimer = null;
    btn.textContent = '▶ Play';
    return;
  }
  btn.textContent = '❚❚ Pause';
  previewTimer = setInterval(() => {
    const slider = $('#preview-step');
    const steps = JSON.parse(slider.dataset.steps || '[]');
    if (steps.length === 0) return;
    const i = (steps.indexOf(state.previewStep) + 1) % steps.length;
    state.previewStep = steps[i];
    renderMedia();
  }, 1200);
});

// ------------------------------------------------------------------------------------ evaluation

const METRIC_ORDER = ['fvd', 'kvd', 'loss', 'minADE', 'color-acc', 'trans-kl'];
const metricRank = (c) => { const i = METRIC_ORDER.findIndex((p) => c.startsWith(p + '-')); return i < 0 ? 99 : i; };

async function renderEval() {
  try {
    state.results = await api('/api/results?' + qs({ project: state.project }));
  } catch (e) {
    $('#results').replaceChildren(h('tr', {}, h('td', { text: `error: ${e.message}` })));
    return;
  }
  drawResults();
  renderSummaries();
}

function drawResults() {
  const onlySel = $('#eval-selected').checked;
  const rows = state.results.filter((r) => !onlySel || state.selected.has(r.runId));
  const metricCols = [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))].sort((a, b) => metricRank(a) - metricRank(b) || a.localeCompare(b, 'en', { numeric: true }));
  const cols = [
    { id: 'runId', label: 'Run', get: (r) => r.runId },
    { id: 'checkpoint', label: 'Checkpoint', get: (r) => r.checkpoint },
    { id: 'step', label: 'Step', get: (r) => r.step, num: true },
    { id: 'sampler', label: 'Sampler', get: (r) => r.sampler + (r.respacing ? ` (respace ${r.respacing})` : '') },
    { id: 'scheme', label: 'Scheme', get: (r) => r.scheme ?? r.identifier },
    { id: 'T', label: 'T', get: (r) => r.T, num: true },
    { id: 'nObs', label: 'Obs', get: (r) => r.nObs, num: true },
    { id: 'split', label: 'Split', get: (r) => r.split },
    ...metricCols.map((m) => ({ id: 'm:' + m, label: m, get: (r) => r.metrics[m], num: true, metric: true })),
    { id: 'videos', label: 'Videos', get: (r) => r.videos.length, num: true },
  ];
  const sc = cols.find((c) => c.id === state.resultSort.col) || cols[2];
  const dir = state.resultSort.dir;
  const sorted = [...rows].sort((a, b) => {
    const va = sc.get(a);
    const vb = sc.get(b);
    const ma = va === null || va === undefined || Number.isNaN(va);
    const mb = vb === null || vb === undefined || Number.isNaN(vb);
    if (ma || mb) return ma === mb ? 0 : ma ? 1 : -1; // missing last
    if (typeof va === 'number' && typeof vb === 'number') return (va - vb) * dir;
    return String(va).localeCompare(String(vb), 'en', { numeric: true }) * dir;
  });
  $('#eval-count').textContent = `${rows.length} evaluation folder${rows.length === 1 ? '' : 's'}`;
  const table = $('#results');
  const thead = h('thead', {}, h('tr', {}, ...cols.map((c) => h('th', {
    class: c.id === sc.id ? (dir > 0 ? 'asc' : 'desc') : '',
    dataset: { col: c.id },
    title: c.metric ? 'metric file ' + c.label + '.txt' : '',
    onclick: () => {
      state.resultSort = { col: c.id, dir: state.resultSort.col === c.id ? -state.resultSort.dir : 1 };
      drawResults();
    },
  }, c.label))));
  const tbody = h('tbody', {}, ...sorted.map((r) => h('tr', {
    class: state.pickedResult === r.path ? 'picked' : '',
    dataset: { path: r.path },
    style: 'cursor:pointer',
    onclick: () => { state.pickedResult = r.path; drawResults(); },
  }, ...cols.map((c) => {
    const v = c.get(r);
    const missing = v === null || v === undefined || Number.isNaN(v);
    return h('td', { class: (c.num ? 'num' : '') + (missing ? ' missing' : ''), text: missing ? '—' : c.num ? fmt(v) : String(v) });
  }))));
  if (rows.length === 0) tbody.append(h('tr', {}, h('td', { colspan: String(cols.length), class: 'empty-state', text: 'No evaluation results for this project (results/<run-id>/<checkpoint>_<sampler>/<identifier>/).' })));
  table.replaceChildren(thead, tbody);
  drawResultDetail();
}

function drawResultDetail() {
  const box = $('#result-detail');
  const r = state.results.find((x) => x.path === state.pickedResult);
  if (!r) { box.replaceChildren(); return; }
  box.replaceChildren(
    h('h3', {}, `${r.runId} · ${r.model} · ${r.identifier}`),
    h('div', { class: 'muted', style: 'margin-bottom:8px' }, `${r.samples} sample file${r.samples === 1 ? '' : 's'}`,
      r.modelConfig ? [' · ', h('a', { href: fileUrl(r.modelConfig), target: '_blank', rel: 'noopener' }, 'model_config.json')] : null),
    r.videos.length
      ? h('div', { class: 'videos' }, ...r.videos.map((v) => h('div', { class: 'card' }, mediaEl(v), h('div', { class: 'cap', text: v.split('/').pop() }))))
      : h('div', { class: 'muted', text: 'No videos in this folder (make them with flexvid video --eval-dir …).' }),
  );
}
$('#eval-selected').addEventListener('change', drawResults);

async function renderSummaries() {
  const box = $('#summaries');
  let list = [];
  try { list = await api('/api/summaries'); } catch (e) { box.textContent = `error: ${e.message}`; return; }
  if (list.length === 0) { box.replaceChildren(h('div', { class: 'muted', text: 'No summaries (flexvid collect writes summarized/<name>/).' })); return; }
  box.replaceChildren(...list.map((s) => h('div', { class: 'card', style: 'margin-bottom:12px' },
    h('h4', {}, s.name, s.report ? h('a', { href: fileUrl(s.report), target: '_blank', rel: 'noopener', style: 'font-weight:400;margin-left:auto' }, 'report.html') : null,
      s.csv ? h('a', { href: fileUrl(s.csv), target: '_blank', rel: 'noopener', style: 'font-weight:400' }, 'summary.csv') : null),
    s.table ? h('div', { class: 'table-wrap', style: 'margin-bottom:8px' }, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ...s.table.header.map((c) => h('th', { text: c })))),
      h('tbody', {}, ...s.table.rows.map((row) => h('tr', {}, ...row.map((c) => h('td', { class: /^-?[\d.]+(e[-+]?\d+)?$/i.test(c) ? 'num' : '', text: /^-?[\d.]+(e[-+]?\d+)?$/i.test(c) ? fmt(Number(c)) : c }))))))) : null,
    s.gif ? h('img', { class: 'media summary-gif', src: fileUrl(s.gif), alt: 'summary.gif' }) : null)));
}

// ------------------------------------------------------------------------------------ config

function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length) flatten(v, key, out);
    else out[key] = v;
  }
  return out;
}
const show = (v) => (v === undefined ? '(missing)' : typeof v === 'string' ? v : JSON.stringify(v));

async function renderConfig() {
  const id = state.focus;
  const sel = $('#diff-with');
  $('#config-run').textContent = id ? `Config of ${id}` : 'No run';
  sel.replaceChildren(h('option', { value: '' }, '—'), ...state.runs.filter((r) => r.id !== id).map((r) => h('option', { value: r.id }, r.id)));
  if (state.diffWith !== null && [...sel.options].some((o) => o.value === state.diffWith)) sel.value = state.diffWith;
  else {
    // By default compare with another selected run.
    const other = selectedRuns().find((r) => r.id !== id);
    sel.value = other ? other.id : '';
  }
  const table = $('#config');
  if (!id) { table.replaceChildren(); return; }
  const d = await runDetails(id).catch(() => null);
  let re = null;
  const f = $('#config-filter').value;
  try { re = f ? new RegExp(f, 'i') : null; } catch { re = null; }
  const flat = flatten(d?.config || {});
  const rows = Object.entries(flat).filter(([k]) => !re || re.test(k)).sort(([a], [b]) => a.localeCompare(b));
  table.replaceChildren(h('thead', {}, h('tr', {}, h('th', { text: 'key' }), h('th', { text: 'value' }))),
    h('tbody', {}, ...(d?.config ? rows.map(([k, v]) => h('tr', {}, h('td', { class: 'key', text: k }), h('td', { class: 'val', text: show(v) }))) : [h('tr', {}, h('td', { colspan: '2', class: 'muted', text: 'This run has no config.json.' }))])));
  await renderDiff();
}

async function renderDiff() {
  const box = $('#config-diff');
  const a = state.focus;
  const b = $('#diff-with').value;
  if (!a || !b) { box.replaceChildren(); return; }
  try {
    const d = await api('/api/diff?' + qs({ a, b }));
    box.replaceChildren(
      h('h3', {}, `${a} vs ${b}: ${d.rows.length} difference${d.rows.length === 1 ? '' : 's'}, ${d.same} equal`),
      h('div', { class: 'table-wrap', style: 'margin-bottom:16px' }, h('table', { class: 'grid', id: 'diff-table' },
        h('thead', {}, h('tr', {}, h('th', { text: 'key' }), h('th', { text: a }), h('th', { text: b }))),
        h('tbody', {}, ...d.rows.map((r) => h('tr', {}, h('td', { class: 'key', text: r.key }), h('td', { class: 'val diff-a', text: show(r.a) }), h('td', { class: 'val diff-b', text: show(r.b) })))))),
    );
  } catch (e) {
    box.textContent = `diff: ${e.message}`;
  }
}
$('#diff-with').addEventListener('change', (ev) => { state.diffWith = ev.target.value; renderDiff(); });
$('#config-filter').addEventListener('input', () => renderConfig());

// ------------------------------------------------------------------------------------ controls

function initControls() {
  $('#smooth').value = String(state.smooth);
  $('#smooth-val').textContent = state.smooth.toFixed(2);
  $('#logscale').checked = state.log;
  $('#xaxis').value = state.x;
  $('#metric-filter').value = state.metricFilter;
  let smoothTimer = null;
  $('#smooth').addEventListener('input', (ev) => {
    state.smooth = Number(ev.target.value);
    $('#smooth-val').textContent = state.smooth.toFixed(2);
    clearTimeout(smoothTimer);
    smoothTimer = setTimeout(() => { writeHash(); charts.reloadAll(); }, 150);
  });
  $('#logscale').addEventListener('change', (ev) => { state.log = ev.target.checked; writeHash(); charts.reloadAll(); });
  $('#xaxis').addEventListener('change', (ev) => { state.x = ev.target.value; writeHash(); charts.reloadAll(); });
  $('#metric-filter').addEventListener('input', (ev) => { state.metricFilter = ev.target.value; writeHash(); charts.render(); });
  $('#run-filter').addEventListener('input', (ev) => { state.runFilter = ev.target.value; renderRuns(); });
  $('#select-all').addEventListener('click', () => { state.runs.forEach((r) => state.selected.add(r.id)); selectionChanged(); });
  $('#select-none').addEventListener('click', () => { state.selected.clear(); selectionChanged(); });
  for (const b of document.querySelectorAll('.tabs button')) {
    b.addEventListener('click', () => { state.tab = b.dataset.tab; writeHash(); renderTab(); });
  }
}

// ------------------------------------------------------------------------------------ start

readHash();
initControls();
refresh(true).then(() => setInterval(() => refresh(false), POLL_MS));

// A handle for tests and the curious (read-only use).
window.flexvid = { state, charts };
