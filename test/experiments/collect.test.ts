import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeMetricFile } from '../../src/metrics/results.ts';
import { writeGif } from '../../src/media/gif.ts';
import { readGif } from '../../src/media/gif-read.ts';
import { main } from '../../src/cli/main.ts';
import { collectResults, finalTable, meanAndStderr, parseCsv, pyFloatRepr, stepOfPath } from '../../src/experiments/collect.ts';
import { niceTicks, renderChartSvg } from '../../src/experiments/report-html.ts';
import { rmTmp, tmpDir } from './helpers.ts';

let dir = '';
const suffix = 'ema_0.9999_000010_ddpm/autoreg_8_10_2_default_0_None_test';
const runs = [
  { id: 'r0', nick: 'online-s0', fvd: 10, ade: 1.5, colour: [200, 0, 0] },
  { id: 'r1', nick: 'online-s1', fvd: 14, ade: 2.5, colour: [0, 200, 0] },
  { id: 'r2', nick: 'replay-s0', fvd: 7, ade: NaN, colour: [0, 0, 200] },
] as const;

before(() => {
  dir = tmpDir('collect');
  for (const r of runs) {
    const evalDir = path.join(dir, 'results', r.id, suffix);
    fs.mkdirSync(evalDir, { recursive: true });
    writeMetricFile(path.join(evalDir, 'fvd-4-0.txt'), r.fvd);
    writeMetricFile(path.join(evalDir, 'fvd-4-1.txt'), r.fvd + 2);
    if (!Number.isNaN(r.ade)) writeMetricFile(path.join(evalDir, 'minADE-4.txt'), r.ade);
    writeMetricFile(path.join(evalDir, 'loss-10.txt'), 99); // not a requested prefix
    const frames = Array.from({ length: 6 }, (_, t) => {
      const f = new Uint8Array(16 * 12 * 3);
      for (let p = 0; p < 16 * 12; p++) f.set(t % 2 ? [255, 255, 255] : r.colour, p * 3);
      return f;
    });
    writeGif(path.join(evalDir, 'videos', '1_1.gif'), frames, 16, 12, { fps: 4 });
  }
  // A second checkpoint of run r0, for the "metric vs training step" chart.
  const later = path.join(dir, 'results', 'r0', 'ema_0.9999_000020_ddpm', 'autoreg_8_10_2_default_0_None_test');
  fs.mkdirSync(later, { recursive: true });
  writeMetricFile(path.join(later, 'fvd-4-0.txt'), 8);
});
after(() => rmTmp(dir));

test('collect: summary.csv, final.csv with seed groups, gifs, summary.gif and an offline report (§8.6)', async () => {
  const code = await main([
    'collect', '--wandb_ids', 'r0', 'r1', 'r2', '--nicknames', 'online-s0,online-s1,replay-s0', '--eval_dir_suffix', suffix,
    '--metric-prefixes', 'fvd-', 'minADE-', '--output-dir', 'exp', '--video-name', '1_1.gif',
    '--results-dir', path.join(dir, 'results'), '--summarized-dir', path.join(dir, 'summarized'),
  ]);
  assert.equal(code, 0);
  const out = path.join(dir, 'summarized', 'exp');
  const summary = parseCsv(fs.readFileSync(path.join(out, 'summary.csv'), 'utf8'));
  assert.deepEqual(summary.columns, ['nickname', 'wandb', 'fvd-4-0', 'fvd-4-1', 'minADE-4']);
  assert.deepEqual(summary.rows, [
    ['online-s0', 'r0', '10.0', '12.0', '1.5'],
    ['online-s1', 'r1', '14.0', '16.0', '2.5'],
    ['replay-s0', 'r2', '7.0', '9.0', ''], // missing → NaN → empty cell (pandas)
  ]);
  const final = parseCsv(fs.readFileSync(path.join(out, 'final.csv'), 'utf8'));
  assert.deepEqual(final.columns, ['nickname', 'fvd-', 'fvd--err', 'minADE-', 'minADE--err']);
  assert.equal(final.rows.length, 2);
  const online = final.rows[0]!;
  assert.equal(online[0], 'online');
  // pooled fvd values of the two seeds: 10, 12, 14, 16 → mean 13, s.e. = std(ddof 1)/√4
  assert.equal(Number(online[1]), 13);
  assert.ok(Math.abs(Number(online[2]) - Math.sqrt(20 / 3) / 2) < 1e-12);
  assert.equal(Number(online[3]), 2);
  assert.ok(Math.abs(Number(online[4]) - Math.sqrt(0.5) / Math.sqrt(2)) < 1e-12);
  assert.deepEqual(final.rows[1], ['replay', '8.0', pyFloatRepr(Math.sqrt(2) / Math.sqrt(2)), '', '']);

  for (const r of runs) assert.deepEqual(fs.readFileSync(path.join(out, 'gifs', `${r.nick}.gif`)), fs.readFileSync(path.join(dir, 'results', r.id, suffix, 'videos', '1_1.gif')));
  const g = readGif(path.join(out, 'summary.gif'));
  assert.equal(g.frameCount, 6);
  assert.equal(g.width, 16 + 50);
  assert.equal(g.height, 3 * 12 + 2 * 2);
  assert.equal(g.delaysMs[0], 250); // the first run's frame rate
  const px = (t: number, x: number, y: number) => Array.from(g.frames[t]!.subarray((y * g.width + x) * 3, (y * g.width + x) * 3 + 3));
  assert.deepEqual(px(0, 3, 3), [200, 0, 0]);
  assert.deepEqual(px(0, 3, 14 + 3), [0, 200, 0]);
  assert.deepEqual(px(0, 3, 28 + 3), [0, 0, 200]);
  assert.deepEqual(px(0, 3, 12), [255, 255, 255]); // separator

  const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
  assert.match(html, /^<!DOCTYPE html>/);
  assert.ok((html.match(/<svg /g) ?? []).length >= 3);
  assert.ok(html.includes('fvd-4-0 vs training step'), 'step chart for the run with two checkpoints');
  for (const m of html.matchAll(/(?:src|href)="([^"]+)"/g)) {
    assert.ok(!/^[a-z]+:/i.test(m[1]!), `no external reference: ${m[1]}`);
    assert.ok(fs.existsSync(path.join(out, decodeURIComponent(m[1]!))), `referenced file exists: ${m[1]}`);
  }
  assert.ok(html.includes('src="gifs/online-s0.gif"'));
  assert.ok(html.includes('src="summary.gif"'));
  assert.ok(!fs.existsSync(path.join(out, 'summary.csv.lock')));
});

test('collect without seed suffixes keeps every run alone; other columns get _err', async () => {
  const r = await collectResults({
    runIds: ['r0', 'r2'],
    evalDirSuffix: suffix,
    metricPrefixes: ['fvd-4-0'],
    resultsDir: path.join(dir, 'results'),
    summarizedDir: path.join(dir, 'summarized'),
    outputDir: 'plain',
  });
  assert.deepEqual(r.columns, ['fvd-4-0']);
  const final = parseCsv(fs.readFileSync(r.finalCsv, 'utf8'));
  assert.deepEqual(final.rows.map((x) => x[0]), ['config_0', 'config_1']);
  const t = finalTable(['a', 'b'], ['x-1', 'y'], [[1, 2], [3, 4]], ['x-']);
  assert.deepEqual(t.columns, ['nickname', 'x-', 'x--err', 'y', 'y_err']);
  assert.deepEqual(t.rows[0]!.slice(0, 2), ['a', 1]);
  assert.ok(Number.isNaN(t.rows[0]![2] as number));
});

test('helpers: Python float repr, mean/stderr, steps from paths, chart ticks and SVG', () => {
  assert.equal(pyFloatRepr(0.1), '0.1');
  assert.equal(pyFloatRepr(13), '13.0');
  assert.equal(pyFloatRepr(1e-5), '1e-05');
  assert.equal(pyFloatRepr(1.5e-4), '0.00015');
  assert.equal(pyFloatRepr(1e16), '1e+16');
  assert.equal(pyFloatRepr(123456789.125), '123456789.125');
  assert.equal(pyFloatRepr(-2.5e20), '-2.5e+20');
  assert.equal(pyFloatRepr(Infinity), 'inf');
  const s = meanAndStderr([1, 2, 3, NaN]);
  assert.equal(s.mean, 2);
  assert.equal(s.n, 3);
  assert.ok(Math.abs(s.err - 1 / Math.sqrt(3)) < 1e-15);
  assert.equal(stepOfPath('ema_0.9999_050000_heun-80/autoreg_1_2_3_default_0_None_test/fvd-1-0.txt'), 50000);
  assert.equal(stepOfPath('model001200_ddpm/x'), 1200);
  assert.equal(stepOfPath('foo/bar'), null);
  assert.deepEqual(niceTicks(0.12, 0.93, 4), [0, 0.25, 0.5, 0.75, 1]);
  const svg = renderChartSvg({ title: 'a<b', xLabel: 'run', categories: ['x', 'y'], series: [{ name: 'm', points: [{ x: 0, y: 1, err: 0.1 }, { x: 1, y: Infinity }] }] });
  assert.ok(svg.startsWith('<svg') && svg.endsWith('</svg>'));
  assert.ok(svg.includes('a&lt;b'));
  assert.ok(svg.includes('1 non-finite value(s) not shown'));
});
