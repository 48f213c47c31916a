/**
 * Metric columns, following and downsampling (src/ui/metrics-store.ts), against JSON.parse and
 * hand-worked cases.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { downsampleSeries, lttbIndices, MetricsStore, OFFLOAD_BYTES, parseChunk, purgeRestarts, readMetricsFile, RunColumns, smoothEma } from '../../src/ui/metrics-store.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-metrics-'));
const enc = new TextEncoder();

test('the byte scanner reads what JSON.parse reads (stored as float32)', () => {
  const values = [0, -0, 1, -1, 0.1, 1e-7, -3.25e-12, 123456789, 1.7976931348623157e308, 5e-324, 0.30000000000000004, 12345678901234567890, 2.5e+3, 7E2, -0.000123];
  const lines: string[] = [];
  let seed = 7;
  const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
  for (let i = 0; i < 200; i++) {
    const rec: Record<string, unknown> = { step: i * 3, time: new Date(1714557600000 + i * 1234).toISOString(), loss: values[i % values.length]! * (1 + rnd()), 'timing/step_time': rnd() * 10 ** Math.floor(rnd() * 20 - 10) };
    if (i % 3 === 0) rec.mse = -rnd();
    if (i % 5 === 0) rec.note = 'a "quoted", {braced} string';
    if (i % 7 === 0) rec.flag = i % 2 === 0;
    if (i % 11 === 0) rec.nothing = null;
    lines.push(i % 4 === 0 ? JSON.stringify(rec, null, 1).replace(/\n/g, ' ') : JSON.stringify(rec)); // spaces too
  }
  const cols = new RunColumns();
  const buf = enc.encode(lines.join('\n') + '\n');
  assert.equal(parseChunk(buf, cols), buf.length);
  assert.equal(cols.n, 200);
  lines.forEach((line, i) => {
    const rec = JSON.parse(line) as Record<string, unknown>;
    assert.equal(cols.step[i], rec.step);
    assert.equal(cols.time[i], Date.parse(rec.time as string) / 1000);
    for (const k of ['loss', 'timing/step_time', 'mse']) {
      const want = typeof rec[k] === 'number' ? Math.fround(rec[k] as number) : NaN;
      const got = cols.cols.get(k)![i]!;
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `${k}[${i}] missing`);
      else assert.ok(got === want || Math.abs(got - want) <= Math.abs(want) * 2 ** -23, `${k}[${i}]: ${got} vs ${want}`);
    }
  });
  assert.ok(!cols.cols.has('note') && !cols.cols.has('flag') && !cols.cols.has('nothing'), 'only numbers become columns');
});

test('unusual lines: Python NaN/Infinity, nested values, escapes, no step, blank and CRLF lines', () => {
  const text = [
    '{"step": 1, "loss": NaN, "mse": Infinity, "vb": -Infinity}',
    '{"step": 2, "loss": 0.5, "cfg": {"a": [1, 2]}, "lr": 0.001}',
    '{"step": 3, "we\\"ird": 4, "loss": 0.25}',
    '{"loss": 9}',
    '',
    '{"step": 4, "loss": 0.125, "time": 1714557600}\r',
    'not json at all',
    '{"step": 5, "loss": 1e-3, "time": 1714557600123}',
  ].join('\n') + '\n';
  const cols = new RunColumns();
  parseChunk(enc.encode(text), cols);
  assert.deepEqual([...cols.step.subarray(0, cols.n)], [1, 2, 3, 4, 5]);
  const loss = cols.cols.get('loss')!;
  assert.ok(Number.isNaN(loss[0]!));
  assert.equal(cols.cols.get('mse')![0], Infinity);
  assert.equal(cols.cols.get('vb')![0], -Infinity);
  assert.equal(loss[1], 0.5);
  assert.equal(cols.cols.get('lr')![1], Math.fround(0.001));
  assert.equal(cols.cols.get('we"ird')![2], 4);
  assert.equal(loss[3], 0.125);
  assert.equal(cols.time[3], 1714557600);
  assert.equal(cols.time[4], 1714557600.123);
  assert.equal(loss[4], Math.fround(1e-3));
  assert.equal(cols.badLines, 2); // {"loss": 9} and "not json at all"
});

test('a file is followed: appended bytes only, torn last line left for later, rewrite starts over', () => {
  const dir = tmp();
  const f = path.join(dir, 'metrics.jsonl');
  fs.writeFileSync(f, '{"step": 0, "loss": 1}\n{"step": 1, "lo');
  let cols = readMetricsFile(f);
  assert.equal(cols.n, 1);
  fs.appendFileSync(f, 'ss": 0.5}\n{"step": 2, "loss": 0.25}\n');
  cols = readMetricsFile(f, cols);
  assert.equal(cols.n, 3);
  assert.deepEqual([...cols.cols.get('loss')!.subarray(0, 3)], [1, 0.5, 0.25]);
  // Many appends grow the columns; a key that appears late is NaN before.
  const extra = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ step: 3 + i, loss: i, ...(i === 4000 ? { fvd: 7 } : {}) })).join('\n') + '\n';
  fs.appendFileSync(f, extra);
  cols = readMetricsFile(f, cols);
  assert.equal(cols.n, 5003);
  assert.equal(cols.cols.get('fvd')![4003], 7);
  assert.ok(Number.isNaN(cols.cols.get('fvd')![10]!));
  // replaced by a shorter file → parsed from the start
  fs.writeFileSync(f + '.new', '{"step": 0, "loss": 3}\n');
  fs.renameSync(f + '.new', f);
  cols = readMetricsFile(f, cols);
  assert.equal(cols.n, 1);
  assert.equal(cols.cols.get('loss')![0], 3);
  assert.equal(readMetricsFile(path.join(dir, 'missing.jsonl')).n, 0);
});

test('a line longer than the read buffer is parsed', () => {
  const dir = tmp();
  const f = path.join(dir, 'metrics.jsonl');
  const rec: Record<string, number> = { step: 1 };
  for (let i = 0; i < 500_000; i++) rec[`k${i}`] = i; // ~9 MB line > 8 MiB chunk
  fs.writeFileSync(f, '{"step": 0, "k0": 5}\n' + JSON.stringify(rec) + '\n');
  const cols = readMetricsFile(f);
  assert.equal(cols.n, 2);
  assert.equal(cols.cols.get('k499999')![1], 499999);
});

test('LTTB keeps first, last and a lone spike; returns everything when under the limit', () => {
  const n = 1000;
  const x = Float64Array.from({ length: n }, (_, i) => i);
  const y = new Float64Array(n);
  y[617] = 100;
  const idx = lttbIndices(x, y, 50);
  assert.equal(idx.length, 50);
  assert.equal(idx[0], 0);
  assert.equal(idx[49], n - 1);
  assert.ok(idx.includes(617));
  for (let i = 1; i < idx.length; i++) assert.ok(idx[i]! > idx[i - 1]!);
  assert.deepEqual([...lttbIndices(x.subarray(0, 10), y.subarray(0, 10), 50)], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  // hand-worked: 5 points to 3 → buckets {1,2,3}; the middle pick maximises the triangle with (0,0) and (4,0): the peak
  assert.deepEqual([...lttbIndices([0, 1, 2, 3, 4], [0, 1, 5, 1, 0], 3)], [0, 2, 4]);
});

test('smoothing is TensorBoard’s debiased EMA', () => {
  const s = smoothEma([1, 2, 3], 0.5);
  assert.equal(s[0], 1);
  assert.ok(Math.abs(s[1]! - 1.25 / 0.75) < 1e-12);
  assert.ok(Math.abs(s[2]! - 2.125 / 0.875) < 1e-12);
  assert.deepEqual([...smoothEma([4, 5], 0)], [4, 5]);
});

test('a resumed run’s repeated steps supersede the earlier ones', () => {
  const x = Float64Array.from([0, 1, 2, 3, 4, 2, 3, 5]);
  const y = Float64Array.from([10, 11, 12, 13, 14, 22, 23, 25]);
  const m = purgeRestarts(x, y, 8);
  assert.deepEqual([...x.subarray(0, m)], [0, 1, 2, 3, 5]);
  assert.deepEqual([...y.subarray(0, m)], [10, 11, 22, 23, 25]);
});

test('downsampleSeries: points limit, missing values skipped, smoothing at the same x, x axes', () => {
  const cols = new RunColumns();
  const lines = Array.from({ length: 10000 }, (_, i) => JSON.stringify({ step: i, time: new Date(1714557600000 + i * 3600_000 / 100).toISOString(), loss: i % 10 === 0 ? null : 1 / (i + 1) }));
  parseChunk(enc.encode(lines.join('\n') + '\n'), cols);
  const s = downsampleSeries(cols, 'loss', { points: 300, smooth: 0.9 });
  assert.equal(s.total, 9000);
  assert.equal(s.x.length, 300);
  assert.equal(s.s!.length, 300);
  assert.equal(s.x[0], 1);
  assert.equal(s.x[299], 9999);
  assert.ok(s.x.every((v) => v % 10 !== 0));
  const full = downsampleSeries(cols, 'loss', { points: 20000 });
  assert.equal(full.x.length, 9000);
  assert.equal(full.s, undefined);
  const rel = downsampleSeries(cols, 'loss', { points: 20000, x: 'relative' });
  assert.equal(rel.x[0], 0);
  assert.ok(Math.abs(rel.x[rel.x.length - 1]! - 9998 / 100) < 1e-9, 'hours since the first point');
  assert.deepEqual(downsampleSeries(cols, 'nope', { points: 10 }), { x: [], y: [], total: 0 });
});

test('MetricsStore follows files and stays within its memory budget', async () => {
  const dir = tmp();
  const files = [0, 1, 2].map((k) => {
    const f = path.join(dir, `m${k}.jsonl`);
    fs.writeFileSync(f, Array.from({ length: 3000 }, (_, i) => JSON.stringify({ step: i, loss: k + i / 3000 })).join('\n') + '\n');
    return f;
  });
  const store = new MetricsStore(100_000); // smaller than one run's columns: keeps only the latest
  for (const f of files) assert.equal((await store.columns(f)).n, 3000);
  assert.ok(store.isCurrent(files[2]!));
  assert.ok(!store.isCurrent(files[0]!), 'evicted');
  assert.equal((await store.series(files[0]!, 'loss', { points: 100 })).x.length, 100);
  assert.deepEqual(store.knownKeys(files[1]!), ['loss'], 'keys are remembered after eviction');
  fs.appendFileSync(files[0]!, JSON.stringify({ step: 3000, loss: 9 }) + '\n');
  assert.equal(store.knownKeys(files[0]!), null, 'changed file: unknown until read again');
  const s = await store.series(files[0]!, 'loss', { points: 5000 });
  assert.equal(s.total, 3001);
  assert.equal(s.y[s.y.length - 1], 9);
  await store.close();
});

test('large files are parsed on a worker thread, appends merged, results equal to parsing in place', async () => {
  const dir = tmp();
  const f = path.join(dir, 'metrics.jsonl');
  const rec = (i: number) => JSON.stringify({ step: i, time: new Date(1714557600000 + i * 1000).toISOString(), loss: 1 / (i + 1), pad: 'x'.repeat(200), ...(i % 2 ? { odd: i } : {}) });
  const write = (from: number, to: number) => fs.appendFileSync(f, Array.from({ length: to - from }, (_, k) => rec(from + k)).join('\n') + '\n');
  write(0, 12_000); // ~3 MB > OFFLOAD_BYTES
  assert.ok(fs.statSync(f).size > OFFLOAD_BYTES);
  const store = new MetricsStore(1 << 30, { workers: 1 });
  try {
    const [a, b] = await Promise.all([store.columns(f), store.columns(f)]); // one parse for both
    assert.equal(a, b);
    assert.equal(a.n, 12_000);
    write(12_000, 24_000); // a big append: parsed on the worker from the old offset, then appended
    const c = await store.columns(f);
    const ref = readMetricsFile(f);
    assert.equal(c.n, 24_000);
    assert.equal(c.offset, ref.offset);
    assert.deepEqual([...c.step.subarray(0, c.n)], [...ref.step.subarray(0, ref.n)]);
    assert.deepEqual([...c.cols.get('odd')!.subarray(0, c.n)].map(String), [...ref.cols.get('odd')!.subarray(0, ref.n)].map(String));
    assert.deepEqual([...c.cols.get('loss')!.subarray(0, c.n)], [...ref.cols.get('loss')!.subarray(0, ref.n)]);
    assert.deepEqual([...c.time.subarray(0, c.n)], [...ref.time.subarray(0, ref.n)]);
    assert.deepEqual(store.parseCounts, { threads: 2, here: 0 }, 'both large reads ran on the worker');
  } finally {
    await store.close();
  }
});
