/**
 * `%.18e` formatting (values printed by CPython 3 `'%.18e' % x`), metric file round trips and
 * names (REFERENCE_SPEC §6.10).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatMetric, metricColumnName, metricFileNames, parseMetric, readMetricFile, writeMetricFile } from '../../src/metrics/results.ts';

test("formatMetric reproduces Python's '%.18e' % x", () => {
  const cases: [number, string][] = [
    [1.2345, '1.234499999999999931e+00'],
    [0.1, '1.000000000000000056e-01'],
    [5e-324, '4.940656458412465442e-324'],
    [1.7976931348623157e308, '1.797693134862315708e+308'],
    [1e23, '9.999999999999999161e+22'],
    [1.2345678901234568e29, '1.234567890123456779e+29'],
    [2.5e-7, '2.499999999999999887e-07'],
    [-0.0, '-0.000000000000000000e+00'],
    [0, '0.000000000000000000e+00'],
    [1, '1.000000000000000000e+00'],
    [-42.5, '-4.250000000000000000e+01'],
    [NaN, 'nan'],
    [Infinity, 'inf'],
    [-Infinity, '-inf'],
    // An exact tie at the 19th digit: 100000000000000.03125 → round half to even (…312), where
    // JavaScript's toExponential(18) rounds half up (…313).
    [100000000000000.03125, '1.000000000000000312e+14'],
  ];
  for (const [x, s] of cases) assert.equal(formatMetric(x), s, String(x));
});

test('formatMetric agrees with toExponential(18) away from ties, across magnitudes', () => {
  let s = 12345;
  const r = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  for (let i = 0; i < 3000; i++) {
    const x = (r() - 0.5) * 10 ** Math.floor(r() * 600 - 300);
    const ours = formatMetric(x);
    const js = x.toExponential(18).replace(/e([+-])(\d)$/, 'e$10$2');
    assert.equal(ours, js, String(x));
  }
});

test('metric files: %.18e plus newline, parsed back exactly, atomic', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-metric-'));
  try {
    const file = path.join(dir, 'eval', metricFileNames.fvd(500, 0));
    writeMetricFile(file, 123.456);
    assert.equal(fs.readFileSync(file, 'utf8'), '1.234560000000000031e+02\n');
    assert.equal(readMetricFile(file), 123.456);
    assert.deepEqual(fs.readdirSync(path.dirname(file)), ['fvd-500-0.txt']);
    for (const x of [Math.PI, -1e-300, 5e-324, Infinity, -Infinity]) assert.equal(parseMetric(formatMetric(x)), x);
    assert.ok(Number.isNaN(parseMetric('nan\n')));
    assert.equal(parseMetric('  -Infinity '), -Infinity);
    assert.throws(() => parseMetric('12abc', 'f.txt'), /f\.txt: not a number/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('result file names and summary column names', () => {
  assert.equal(metricFileNames.fvd(100, 2), 'fvd-100-2.txt');
  assert.equal(metricFileNames.kvd(100, 2), 'kvd-100-2.txt');
  assert.equal(metricFileNames.minAde(50), 'minADE-50.txt');
  assert.equal(metricFileNames.colorAcc(50), 'color-acc-50.txt');
  assert.equal(metricFileNames.transKl(50), 'trans-kl-50.txt');
  assert.equal(metricFileNames.loss(10), 'loss-10.txt');
  assert.equal(metricColumnName('autoreg_10_50_10_default_0_None_test/fvd-500-0.txt'), 'fvd-500-0');
});
