/**
 * Test helper: the exact dyadic feature generator of test/fixtures/metrics/make-frechet-mmd.py,
 * so TypeScript rebuilds bit-identical inputs from (seed, n, d).
 */
import type { Matrix } from '../../src/metrics/linalg.ts';

function lcgZ(seed: number, count: number): Float64Array {
  let s = seed >>> 0;
  const out = new Float64Array(count);
  for (let k = 0; k < count; k++) {
    s = (Math.imul(1664525, s) + 1013904223) >>> 0;
    out[k] = (s >>> 8) / 2 ** 24 - 0.5;
  }
  return out;
}

export function fixtureFeatures(seed: number, n: number, d: number, kind: 'real' | 'fake'): Matrix & { data: Float64Array } {
  const z = lcgZ(seed, n * d);
  const data = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) {
      data[i * d + j] =
        kind === 'real' ? z[i * d + j]! + z[i * d + ((j + 1) % d)]! / 2 : 1.25 * z[i * d + j]! + z[i * d + ((j + 2) % d)]! / 4 + j / 64;
    }
  }
  return { data, n, d };
}

export interface FixtureCase {
  name: string;
  seed: number;
  nReal: number;
  nFake: number;
  d: number;
  frechet: number;
  frechetDenmanBeavers: number | null;
  kvd?: number;
  mmdBiased?: number;
}
