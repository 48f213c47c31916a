/**
 * The fused GroupNorm → scale-shift → SiLU operator (native/fused_norm.cc, E.groupNormAct): values
 * against the formula written out as float64 loops, every gradient against central finite
 * differences in float64, the composite fallback, extreme inputs, inference mode, errors, the
 * refused second derivative and no leaked tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { maxRelErr } from './helpers.ts';

const [N, C, S, G] = [2, 8, 5, 4]; // x [N, C, S], groups of 2 channels

/** act((GN(x)·w + b)·(1 + s) + h) by loops; x [N, C, S], s/h [N, C] (or null). */
function naive(x: Float64Array, w: Float64Array, b: Float64Array, s: Float64Array | null, h: Float64Array | null, silu: boolean, eps = 1e-5): Float64Array {
  const y = new Float64Array(x.length);
  const cg = C / G;
  for (let n = 0; n < N; n++)
    for (let g = 0; g < G; g++) {
      let mean = 0;
      for (let c = g * cg; c < (g + 1) * cg; c++) for (let i = 0; i < S; i++) mean += x[(n * C + c) * S + i]!;
      mean /= cg * S;
      let v = 0;
      for (let c = g * cg; c < (g + 1) * cg; c++) for (let i = 0; i < S; i++) v += (x[(n * C + c) * S + i]! - mean) ** 2;
      v /= cg * S;
      for (let c = g * cg; c < (g + 1) * cg; c++)
        for (let i = 0; i < S; i++) {
          const k = (n * C + c) * S + i;
          let z = ((x[k]! - mean) / Math.sqrt(v + eps)) * w[c]! + b[c]!;
          if (s) z *= 1 + s[n * C + c]!;
          if (h) z += h[n * C + c]!;
          y[k] = silu ? z / (1 + Math.exp(-z)) : z;
        }
    }
  return y;
}


function inputs(seed: number, dtype: 'float32' | 'float64') {
  const g = new E.Generator(seed);
  return {
    x: E.randn([N, C, S], g, { dtype }).mul(2).add(0.7),
    w: E.randn([C], g, { dtype }).mul(0.5).add(1),
    b: E.randn([C], g, { dtype }).mul(0.3),
    s: E.randn([N, C], g, { dtype }).mul(0.4),
    h: E.randn([N, C], g, { dtype }).mul(0.4),
  };
}

for (const silu of [true, false])
  for (const withSS of [true, false])
    test(`groupNormAct values match float64 loops (silu ${silu}, scale-shift ${withSS}) in float32 and float64`, () => {
      E.tidy(() => {
        for (const dtype of ['float64', 'float32'] as const) {
          const t = inputs(1, dtype);
          const y = E.groupNormAct(t.x, G, t.w, t.b, 1e-5, withSS ? { scale: t.s, shift: t.h, silu } : { silu });
          const ops = E.profile(() => E.groupNormAct(t.x, G, t.w, t.b, 1e-5, { silu })).rows.map((r) => r.name);
          assert.ok(ops.includes('flexvid::group_norm_silu'), `expected the fused kernel, ran ${ops.join(', ')}`);
          const ref = naive(t.x.toFloat64Array(), t.w.toFloat64Array(), t.b.toFloat64Array(), withSS ? t.s.toFloat64Array() : null, withSS ? t.h.toFloat64Array() : null, silu);
          assert.ok(maxRelErr(y.toFloat64Array(), ref) < (dtype === 'float64' ? 1e-13 : 2e-6), `${dtype}: ${maxRelErr(y.toFloat64Array(), ref)}`);
        }
      });
    });

test('groupNormAct gradients (x, weight, bias, scale, shift) match central finite differences in float64', () => {
  E.tidy(() => {
    for (const silu of [true, false]) {
      const t = inputs(2, 'float64');
      const leaves = [t.x, t.w, t.b, t.s, t.h].map((v) => v.detach().requiresGrad_());
      const [x, w, b, s, h] = leaves as [E.Tensor, E.Tensor, E.Tensor, E.Tensor, E.Tensor];
      const gy = E.randn([N, C, S], new E.Generator(3), { dtype: 'float64' });
      E.groupNormAct(x, G, w, b, 1e-5, { scale: s, shift: h, silu }).mul(gy).sum().backward();
      const vals = leaves.map((v) => v.detach().toFloat64Array());
      const loss = (): number => {
        const y = naive(vals[0]!, vals[1]!, vals[2]!, vals[3]!, vals[4]!, silu);
        const gyv = gy.toFloat64Array();
        return y.reduce((acc, v, i) => acc + v * gyv[i]!, 0);
      };
      const eps = 1e-6;
      leaves.forEach((leaf, li) => {
        const analytic = leaf.grad!.toFloat64Array();
        const v = vals[li]!;
        for (let i = 0; i < v.length; i++) {
          const keep = v[i]!;
          v[i] = keep + eps;
          const up = loss();
          v[i] = keep - eps;
          const down = loss();
          v[i] = keep;
          const numeric = (up - down) / (2 * eps);
          assert.ok(Math.abs(numeric - analytic[i]!) < 1e-6 * (1 + Math.abs(numeric)), `silu ${silu}, input ${li}, element ${i}: ${analytic[i]} vs ${numeric}`);
        }
      });
    }
  });
});

test('groupNormAct: the fused kernel and the composite of libtorch operators agree (values and gradients)', () => {
  E.tidy(() => {
    const run = () => {
      const t = inputs(4, 'float32');
      const leaves = [t.x, t.w, t.b, t.s, t.h].map((v) => v.requiresGrad_());
      const y = E.groupNormAct(t.x, G, t.w, t.b, 1e-5, { scale: t.s, shift: t.h, silu: true });
      y.square().sum().backward();
      return [y.detach(), ...leaves.map((v) => v.grad!)];
    };
    const fused = run();
    const prev = E.setFusedGroupNorm(false);
    try {
      const ops = E.profile(() => run()).rows.map((r) => r.name);
      assert.ok(!ops.includes('flexvid::group_norm_silu'));
      const composite = run();
      fused.forEach((f, i) => assert.ok(maxRelErr(f.toFloat64Array(), composite[i]!.toFloat64Array()) < 1e-5, `output ${i}`));
    } finally {
      E.setFusedGroupNorm(prev);
    }
  });
});

test('groupNormAct stays finite and exact in the tails of the SiLU (|z| up to 200)', () => {
  E.tidy(() => {
    // Each group holds one large and one small channel, so normalised values reach ±(large).
    const x = E.tensor(Float32Array.from({ length: N * C * S }, (_, i) => ((i * 7919) % 13) - 6), { shape: [N, C, S] });
    const w = E.full([C], 60);
    const b = E.zeros([C]);
    const y = E.groupNormAct(x, G, w, b, 1e-5, { silu: true });
    const ref = naive(x.toFloat64Array(), w.toFloat64Array(), b.toFloat64Array(), null, null, true);
    const got = y.toFloat64Array();
    assert.ok(got.every(Number.isFinite));
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - ref[i]!) <= 1e-5 * Math.max(1, Math.abs(ref[i]!)), `${got[i]} vs ${ref[i]}`);
    assert.ok(Math.max(...Array.from(ref, Math.abs)) > 100);
  });
});

test('groupNormAct in inference mode, on [N, C, H, W] with [N, C, 1, 1] scale, and without leaking tensors', () => {
  const g = new E.Generator(5);
  const x = E.keep(E.randn([2, 32, 4, 4], g).requiresGrad_());
  const w = E.keep(E.ones([32]).requiresGrad_());
  const b = E.keep(E.zeros([32]).requiresGrad_());
  const s = E.keep(E.randn([2, 32, 1, 1], g));
  E.tidy(() => {
    const inf = E.inferenceMode(() => E.groupNormAct(x, 32, w, b, 1e-5, { scale: s, silu: true }));
    const ref = E.groupNorm(x, 32, w, b, 1e-5).mul(s.add(1)).silu();
    assert.ok(inf.sub(ref).abs().max().item() < 1e-5);
  });
  const step = () =>
    E.tidy(() => {
      E.groupNormAct(x, 32, w, b, 1e-5, { scale: s, silu: true }).square().sum().backward();
      for (const t of [x, w, b]) t.setGrad(null);
    });
  step();
  const before = E.liveTensorCount();
  for (let i = 0; i < 5; i++) step();
  assert.equal(E.liveTensorCount(), before);
  for (const t of [x, w, b, s]) t.dispose();
});

test('groupNormAct errors name what was wrong; a second derivative is refused with the switch named', () => {
  E.tidy(() => {
    const x = E.randn([2, 8, 3], new E.Generator(6)).requiresGrad_();
    const w = E.ones([8]);
    const b = E.zeros([8]);
    assert.throws(() => E.groupNormAct(x, 3, w, b, 1e-5), /8 channels not divisible into 3 groups/);
    assert.throws(() => E.groupNormAct(x, 4, w, b, 1e-5, { scale: E.ones([2, 4]) }), /scale needs \[2, 8\]/);
    const y = E.groupNormAct(x, 4, w, b, 1e-5, { silu: true }).square().sum();
    assert.throws(() => E.autogradGrad([y], [x], { createGraph: true }), /setFusedGroupNorm\(false\)|FLEXVID_FUSED_NORM=0/);
  });
});

/** groupNormFrames by loops: x [B, T, C, P], stats per (b, g, p) over (t, c ∈ g). */
function naiveFrames(x: Float64Array, w: Float64Array, b: Float64Array, dims: [number, number, number, number], groups: number, eps = 1e-5): Float64Array {
  const [B, T, C, P] = dims;
  const cg = C / groups;
  const y = new Float64Array(x.length);
  const at = (bb: number, t: number, c: number, p: number) => ((bb * T + t) * C + c) * P + p;
  for (let bb = 0; bb < B; bb++)
    for (let g = 0; g < groups; g++)
      for (let p = 0; p < P; p++) {
        let mean = 0;
        let v = 0;
        for (let t = 0; t < T; t++) for (let c = g * cg; c < (g + 1) * cg; c++) mean += x[at(bb, t, c, p)]!;
        mean /= T * cg;
        for (let t = 0; t < T; t++) for (let c = g * cg; c < (g + 1) * cg; c++) v += (x[at(bb, t, c, p)]! - mean) ** 2;
        v /= T * cg;
        for (let t = 0; t < T; t++)
          for (let c = g * cg; c < (g + 1) * cg; c++) y[at(bb, t, c, p)] = ((x[at(bb, t, c, p)]! - mean) / Math.sqrt(v + eps)) * w[c]! + b[c]!;
      }
  return y;
}

test('groupNormFrames matches float64 loops (pixel counts below, at and above a 16-wide tile) and the composite', () => {
  E.tidy(() => {
    for (const dims of [[2, 3, 8, 5], [1, 4, 8, 16], [2, 2, 4, 37]] as [number, number, number, number][]) {
      for (const dtype of ['float64', 'float32'] as const) {
        const g = new E.Generator(dims[3]);
        const x = E.randn(dims, g, { dtype }).mul(2).add(0.5);
        const w = E.randn([dims[2]], g, { dtype }).add(1);
        const b = E.randn([dims[2]], g, { dtype });
        const y = E.groupNormFrames(x, 2, w, b, 1e-5);
        const ops = E.profile(() => E.groupNormFrames(x, 2, w, b, 1e-5)).rows.map((r) => r.name);
        assert.ok(ops.includes('flexvid::group_norm_frames'));
        const ref = naiveFrames(x.toFloat64Array(), w.toFloat64Array(), b.toFloat64Array(), dims, 2);
        assert.ok(maxRelErr(y.toFloat64Array(), ref) < (dtype === 'float64' ? 1e-13 : 2e-6), `${dims} ${dtype}`);
        const prev = E.setFusedGroupNorm(false);
        try {
          assert.ok(maxRelErr(E.groupNormFrames(x, 2, w, b, 1e-5).toFloat64Array(), ref) < (dtype === 'float64' ? 1e-13 : 2e-6));
        } finally {
          E.setFusedGroupNorm(prev);
        }
      }
    }
  });
});

test('groupNormFrames gradients (x, weight, bias) match central finite differences in float64', () => {
  E.tidy(() => {
    const dims: [number, number, number, number] = [2, 3, 4, 18];
    const g = new E.Generator(21);
    const leaves = [E.randn(dims, g, { dtype: 'float64' }), E.randn([4], g, { dtype: 'float64' }).add(1), E.randn([4], g, { dtype: 'float64' })].map((t) => t.requiresGrad_());
    const gy = E.randn(dims, g, { dtype: 'float64' });
    E.groupNormFrames(leaves[0]!, 2, leaves[1]!, leaves[2]!, 1e-5).mul(gy).sum().backward();
    const vals = leaves.map((t) => t.detach().toFloat64Array());
    const gyv = gy.toFloat64Array();
    const loss = () => naiveFrames(vals[0]!, vals[1]!, vals[2]!, dims, 2).reduce((acc, v, i) => acc + v * gyv[i]!, 0);
    leaves.forEach((leaf, li) => {
      const analytic = leaf.grad!.toFloat64Array();
      const v = vals[li]!;
      for (let i = 0; i < v.length; i += li === 0 ? 7 : 1) {
        const keep = v[i]!;
        v[i] = keep + 1e-6;
        const up = loss();
        v[i] = keep - 1e-6;
        const down = loss();
        v[i] = keep;
        const numeric = (up - down) / 2e-6;
        assert.ok(Math.abs(numeric - analytic[i]!) < 1e-6 * (1 + Math.abs(numeric)), `input ${li}, element ${i}: ${analytic[i]} vs ${numeric}`);
      }
    });
  });
});
