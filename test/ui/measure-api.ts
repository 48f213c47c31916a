/**
 * Measures dashboard API response times for many runs × many logged steps (issue 10 §2: "fast
 * with 100 runs × 100k logged steps"). Not a test (no timing assertions); run by hand:
 *
 *   node --import tsx test/ui/measure-api.ts [runs=100] [steps=100000]
 *
 * Builds `runs` run folders whose metrics.jsonl has `steps` records shaped like the training
 * loop's flush (22 numeric fields, ~560 bytes a line). The file is written once and hard-linked
 * into every run folder (disk stays small; every run is still parsed separately), then times
 * requests over loopback and prints a table plus one JSON line.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startUiServer } from '../../src/ui/server.ts';

const RUNS = Number(process.argv[2] ?? 100);
const STEPS = Number(process.argv[3] ?? 100_000);

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-ui-perf-'));
try {
  const ck = path.join(base, 'checkpoints');
  fs.mkdirSync(ck, { recursive: true });
  const master = path.join(base, 'metrics.jsonl');
  const fd = fs.openSync(master, 'w');
  let seed = 1;
  const r = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  const t0 = Date.parse('2024-01-01T00:00:00Z');
  let lines: string[] = [];
  for (let s = 0; s < STEPS; s++) {
    const loss = 1 / (1 + s / 5000) * (0.8 + 0.4 * r());
    const rec: Record<string, number | string> = { step: s, samples: (s + 1) * 8, time: new Date(t0 + s * 900).toISOString(), loss, mse: loss * 0.9, 'eval-mse': loss * 0.95 };
    for (const k of ['loss', 'mse', 'eval-mse']) for (let q = 0; q < 4; q++) rec[`${k}_q${q}`] = loss * (1.5 - 0.3 * q) * (0.9 + 0.2 * r());
    Object.assign(rec, { grad_norm: 0.5 + r(), lr: 1e-4, 'timing/step_time': 0.08 + 0.01 * r(), data_wait_fraction: 0.01 * r(), stream_position: s * 8, replay_size: Math.min(s * 8, 5000), frames_per_s: 1000 + 100 * r() });
    lines.push(JSON.stringify(rec));
    if (lines.length === 10_000) {
      fs.writeSync(fd, lines.join('\n') + '\n');
      lines = [];
    }
  }
  if (lines.length) fs.writeSync(fd, lines.join('\n') + '\n');
  fs.closeSync(fd);
  const bytes = fs.statSync(master).size;
  const ids: string[] = [];
  for (let i = 0; i < RUNS; i++) {
    const id = `run${String(i).padStart(3, '0')}`;
    ids.push(id);
    const dir = path.join(ck, id);
    fs.mkdirSync(dir);
    fs.linkSync(master, path.join(dir, 'metrics.jsonl'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ project: 'perf', runId: id, createdAt: new Date(t0 + i * 60_000).toISOString(), lr: 1e-4 * (1 + (i % 3)) }));
    fs.writeFileSync(path.join(dir, 'status.json'), JSON.stringify({ status: 'finished', step: STEPS - 1, pid: 1, host: 'x', updatedAt: new Date().toISOString() }));
  }

  const results: { case: string; ms: number; bytes: number }[] = [];
  let url = '';
  const time = async (name: string, u: string) => {
    const t = performance.now();
    const res = await fetch(url.replace(/\/$/, '') + u);
    const body = await res.arrayBuffer();
    const ms = performance.now() - t;
    if (!res.ok) throw new Error(`${u}: ${res.status} ${new TextDecoder().decode(body)}`);
    results.push({ case: name, ms: Math.round(ms * 10) / 10, bytes: body.byteLength });
  };
  const q = (runs: string[], key: string, extra = '') => `/api/metrics?${runs.map((r) => `run=${r}`).join('&')}&key=${encodeURIComponent(key)}${extra}`;

  // 1. No preload: what a first request for runs nobody has looked at costs.
  let ui = await startUiServer({ root: base, port: 0, cacheMb: 4096, preload: false });
  url = ui.url;
  await time(`runs list, first (${RUNS} runs)`, '/api/runs?project=perf');
  await time('runs list, again (poll)', '/api/runs?project=perf');
  await time('1 run × loss, cold (start worker, parse)', q([ids[0]!], 'loss'));
  await time('10 runs × loss, cold (parse 10 files)', q(ids.slice(1, 11), 'loss'));
  await ui.close();

  // 2. Default server: recent runs are parsed in the background after start.
  const t0p = performance.now();
  ui = await startUiServer({ root: base, port: 0, cacheMb: 4096 });
  url = ui.url;
  await time('runs list while preloading', '/api/runs?project=perf');
  const preloaded = await ui.preloaded;
  results.push({ case: `preload of ${preloaded} runs (background)`, ms: Math.round(performance.now() - t0p), bytes: 0 });
  await time('1 run × loss', q([ids[0]!], 'loss'));
  await time('1 run × loss, again (cached answer)', q([ids[0]!], 'loss'));
  await time('1 run × grad_norm', q([ids[0]!], 'grad_norm'));
  await time('1 run × loss, smoothing 0.9', q([ids[0]!], 'loss', '&smooth=0.9'));
  await time('10 runs × loss', q(ids.slice(1, 11), 'loss'));
  await time(`${RUNS} runs × loss`, q(ids, 'loss'));
  await time(`${RUNS} runs × loss, again (poll, unchanged)`, q(ids, 'loss'));
  await time(`${RUNS} runs × mse_q3`, q(ids, 'mse_q3'));
  await time(`${RUNS} runs × loss, points=500, smoothing`, q(ids, 'loss', '&points=500&smooth=0.6'));
  const rssMb = Math.round(process.memoryUsage().rss / 2 ** 20);
  await ui.close();

  console.log(`${RUNS} runs × ${STEPS} records (${(bytes / 2 ** 20).toFixed(1)} MiB metrics.jsonl each, ${((bytes * RUNS) / 2 ** 30).toFixed(2)} GiB in all); ${os.cpus()[0]?.model ?? ''}`);
  console.log('case'.padEnd(42) + 'ms'.padStart(10) + 'KiB'.padStart(10));
  for (const x of results) console.log(x.case.padEnd(42) + x.ms.toFixed(1).padStart(10) + (x.bytes / 1024).toFixed(0).padStart(10));
  console.log(`server RSS after all runs parsed: ${rssMb} MiB`);
  console.log(JSON.stringify({ bench: 'ui-api', runs: RUNS, steps: STEPS, rssMb, results: results.map((x) => ({ case: x.case, ms: x.ms })) }));
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
