/**
 * Test helpers for the engine: deterministic inputs, closeness assertions and a finite-difference
 * gradient checker (central differences in float64 against autograd).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { arange, fromBytes, Generator, noGrad, randn, tidy, type DType, type Tensor } from '../../src/engine/index.ts';

/** sin(k·arange(n) + off) reshaped to `shape` — the same inputs the fixture script builds. */
export function det(shape: number[], k = 0.37, off = 0, dtype: DType = 'float64'): Tensor {
  return tidy(() => {
    const n = shape.reduce((a, b) => a * b, 1);
    return arange(n, undefined, 1, { dtype })
      .mul(k)
      .add(off)
      .sin()
      .reshape(shape);
  });
}

/** A float64 tensor from plain numbers. */
export function f64(values: number[], shape: number[] = [values.length]): Tensor {
  const a = Float64Array.from(values);
  return fromBytes(new Uint8Array(a.buffer), shape, 'float64');
}

/** Assert element-wise |a − b| ≤ atol + rtol·|b|, reporting the worst element. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, opts: { atol?: number; rtol?: number; what?: string } = {}): void {
  const atol = opts.atol ?? 1e-6;
  const rtol = opts.rtol ?? 1e-5;
  assert.equal(actual.length, expected.length, `${opts.what ?? 'values'}: length ${actual.length} ≠ ${expected.length}`);
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const b = expected[i]!;
    if (Number.isNaN(a) && Number.isNaN(b)) continue;
    if (a === b) continue;
    const excess = Math.abs(a - b) - (atol + rtol * Math.abs(b));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    assert.fail(`${opts.what ?? 'values'}: element ${worst} is ${actual[worst]}, expected ${expected[worst]} (atol ${atol}, rtol ${rtol})`);
  }
}

/** The committed PyTorch reference values (test/fixtures/engine/torch-reference.json). */
export function torchReference(): any {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return JSON.parse(fs.readFileSync(path.join(here, '..', 'fixtures', 'engine', 'torch-reference.json'), 'utf8'));
}

export interface GradcheckOptions {
  /** Indices of the inputs to differentiate (default: every float64 input). */
  wrt?: number[];
  eps?: number;
  atol?: number;
  rtol?: number;
  seed?: number;
}

/**
 * Compare autograd gradients of L = sum(f(x)·w) (w a fixed random tensor) with central finite
 * differences (L(x + εeᵢ) − L(x − εeᵢ)) / 2ε, element by element, for every checked input.
 * Inputs are not modified; everything allocated here is freed.
 */
export function gradcheck(f: (...xs: Tensor[]) => Tensor, inputs: Tensor[], opts: GradcheckOptions = {}): void {
  const eps = opts.eps ?? 1e-6;
  const wrt = opts.wrt ?? inputs.map((t, i) => (t.dtype === 'float64' ? i : -1)).filter((i) => i >= 0);
  assert.ok(wrt.length > 0, 'gradcheck: nothing to differentiate');
  for (const i of wrt) assert.equal(inputs[i]!.dtype, 'float64', `gradcheck: input ${i} must be float64`);
  const data = inputs.map((t) => (t.dtype === 'float64' ? t.toFloat64Array() : null));
  const shapes = inputs.map((t) => [...t.shape]);
  const make = (i: number, values: Float64Array): Tensor => fromBytes(new Uint8Array(values.buffer), shapes[i]!, 'float64');

  const w = tidy(() => {
    const out = noGrad(() => f(...inputs));
    assert.equal(out.dtype, 'float64', 'gradcheck: f must return float64');
    return randn(out.shape, new Generator(opts.seed ?? 7), { dtype: 'float64' });
  });
  try {
    const loss = (xs: Tensor[]): number => tidy(() => noGrad(() => f(...xs).mul(w).sum().item()));

    // Autograd.
    const analytic = tidy(() => {
      const xs = inputs.map((t, i) => (wrt.includes(i) ? make(i, data[i]!).requiresGrad_() : t));
      f(...xs).mul(w).sum().backward();
      return wrt.map((i) => {
        const g = xs[i]!.grad;
        if (g === null) return new Float64Array(data[i]!.length);
        const a = g.toFloat64Array();
        g.dispose();
        return a;
      });
    });

    // Central differences.
    wrt.forEach((i, wi) => {
      const base = data[i]!;
      const numeric = new Float64Array(base.length);
      for (let j = 0; j < base.length; j++) {
        const vals = base.slice();
        vals[j] = base[j]! + eps;
        const plus = tidy(() => loss(inputs.map((t, k) => (k === i ? make(i, vals) : t))));
        vals[j] = base[j]! - eps;
        const minus = tidy(() => loss(inputs.map((t, k) => (k === i ? make(i, vals) : t))));
        numeric[j] = (plus - minus) / (2 * eps);
      }
      assertClose(analytic[wi]!, numeric, { atol: opts.atol ?? 1e-6, rtol: opts.rtol ?? 1e-5, what: `gradient of input ${i} [${shapes[i]!.join(', ')}]` });
    });
  } finally {
    w.dispose();
  }
}

/** max |a − b| / max |b|: the largest error relative to the reference's scale. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let err = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return err / scale;
}
