/**
 * Metric result files (REFERENCE_SPEC §6.10 results layout, §8.2–§8.5): one number per file,
 * written as Python's `'%.18e' % x` plus a newline, and the file names the evaluation scripts use.
 */
import * as fs from 'node:fs';
import { FileFormatError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';

const TEN = 10n;
const LOW = TEN ** 18n; // smallest 19-digit integer
const HIGH = TEN ** 19n;

/** The exact value of a finite positive double as `mant · 2^exp2`. */
function decompose(a: number): { mant: bigint; exp2: number } {
  const dv = new DataView(new ArrayBuffer(8));
  dv.setFloat64(0, a);
  const hi = dv.getUint32(0);
  const lo = dv.getUint32(4);
  const bexp = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  if (bexp === 0) return { mant, exp2: -1074 }; // subnormal
  mant |= 1n << 52n;
  return { mant, exp2: bexp - 1075 };
}

/**
 * Format like Python's `'%.18e' % x`: 19 significant digits, correctly rounded from the exact
 * binary value with ties to even, exponent with sign and at least two digits; `nan`, `inf`,
 * `-inf`; negative zero keeps its sign. E.g. `formatMetric(0.1) === '1.000000000000000056e-01'`.
 *
 * Computed with exact BigInt arithmetic (JavaScript's `toExponential` rounds ties away from zero).
 */
export function formatMetric(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  const sign = x < 0 || Object.is(x, -0) ? '-' : '';
  const a = Math.abs(x);
  if (a === 0) return `${sign}0.${'0'.repeat(18)}e+00`;
  const { mant, exp2 } = decompose(a);
  let e10 = Math.floor(Math.log10(a)); // may be off by one; corrected below
  let q: bigint;
  for (;;) {
    // q = a / 10^(e10 − 18) as an exact fraction num/den.
    let num = exp2 >= 0 ? mant << BigInt(exp2) : mant;
    let den = exp2 >= 0 ? 1n : 1n << BigInt(-exp2);
    const shift = 18 - e10;
    if (shift >= 0) num *= TEN ** BigInt(shift);
    else den *= TEN ** BigInt(-shift);
    q = num / den;
    if (q >= HIGH) {
      e10++;
      continue;
    }
    if (q < LOW) {
      e10--;
      continue;
    }
    const twiceRem = 2n * (num - q * den);
    if (twiceRem > den || (twiceRem === den && (q & 1n) === 1n)) q += 1n;
    if (q === HIGH) {
      q = LOW; // 9.99…95 rounded up to 10.00…0
      e10++;
    }
    break;
  }
  const digits = q.toString();
  const exp = `${e10 < 0 ? '-' : '+'}${String(Math.abs(e10)).padStart(2, '0')}`;
  return `${sign}${digits[0]}.${digits.slice(1)}e${exp}`;
}

/**
 * Parse a metric value as Python's `float(text)` would (surrounding whitespace allowed; `nan`,
 * `inf`, `infinity` in any case, with optional sign). Throws {@link FileFormatError} otherwise.
 */
export function parseMetric(text: string, file = '<metric>'): number {
  const t = text.trim();
  const special = /^([+-]?)(nan|inf|infinity)$/i.exec(t);
  if (special) {
    if (special[2]!.toLowerCase() === 'nan') return NaN;
    return special[1] === '-' ? -Infinity : Infinity;
  }
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(t)) return Number(t);
  throw new FileFormatError(file, `not a number: ${JSON.stringify(t.slice(0, 40))}`);
}

/** Write one metric value as `%.18e` + newline, atomically. */
export function writeMetricFile(path: string, value: number): void {
  writeFileAtomic(path, formatMetric(value) + '\n');
}

/** Read a metric file written by {@link writeMetricFile} (or by the reference). */
export function readMetricFile(path: string): number {
  return parseMetric(fs.readFileSync(path, 'utf8'), path);
}

/**
 * File names of the metric results inside an eval directory (REFERENCE_SPEC §6.10).
 * `numVideos` = N videos evaluated, `sampleIdx` = k (which seed's samples).
 */
export const metricFileNames = {
  /** `fvd-<N>-<k>.txt` (§8.2). */
  fvd: (numVideos: number, sampleIdx: number) => `fvd-${numVideos}-${sampleIdx}.txt`,
  /** `kvd-<N>-<k>.txt` (§8.3). */
  kvd: (numVideos: number, sampleIdx: number) => `kvd-${numVideos}-${sampleIdx}.txt`,
  /** `minADE-<N>.txt` (§8.4). */
  minAde: (numVideos: number) => `minADE-${numVideos}.txt`,
  /** `color-acc-<N>.txt` (§8.4). */
  colorAcc: (numVideos: number) => `color-acc-${numVideos}.txt`,
  /** `trans-kl-<N>.txt` (§8.4). */
  transKl: (numVideos: number) => `trans-kl-${numVideos}.txt`,
  /** `loss-<trials>.txt` (§8.5). */
  loss: (trials: number) => `loss-${trials}.txt`,
} as const;

/** Column name of a metric file in `summary.csv`: the file name up to its first `.` (REFERENCE_SPEC §8.6). */
export function metricColumnName(fileName: string): string {
  const base = fileName.split('/').pop()!;
  const dot = base.indexOf('.');
  return dot < 0 ? base : base.slice(0, dot);
}
