/**
 * The fused channel-major attention (native/attention.cc, E.fusedChannelAttention): values against
 * the formula written out as float64 loops; gradients against libtorch's autograd of the same
 * formula in float64; large logits; several threads; the switch; the spatial attention layer with
 * and without it; the refused second derivative; no leaked tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { maxRelErr } from './helpers.ts';
import { FactorizedAttentionBlock } from '../../src/model/attention.ts';
import { setInitSeed } from '../../src/nn/index.ts';

const built = E.hasOnednnKernels();
const skip = built ? false : 'addon built without oneDNN headers (libdnnl-dev): no fused attention';

/** o[n, h·d+e, i] = Σ_j softmax_j(scale·Σ_f q[f,i]k[f,j]) v[e,j], by loops. qkv [N, 3C, L]. */
function naive(qkv: Float64Array, N: number, C: number, L: number, heads: number, scale: number): Float64Array {
  const d = C / heads;
  const o = new Float64Array(N * C * L);
  const at = (n: number, part: number, h: number, e: number, i: number) => qkv[((n * 3 + part) * C + h * d + e) * L + i]!;
  for (let n = 0; n < N; n++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < L; i++) {
        const logits = Array.from({ length: L }, (_, j) => {
          let s = 0;
          for (let f = 0; f < d; f++) s += at(n, 0, h, f, i) * at(n, 1, h, f, j);
          return scale * s;
        });
        const mx = Math.max(...logits);
        const w = logits.map((z) => Math.exp(z - mx));
        const sum = w.reduce((a, b) => a + b, 0);
        for (let e = 0; e < d; e++) {
          let acc = 0;
          for (let j = 0; j < L; j++) acc += (w[j]! / sum) * at(n, 2, h, e, j);
          o[(n * C + h * d + e) * L + i] = acc;
        }
      }
  return o;
}

/** The same formula with libtorch operators (autograd gives the reference gradient). */
function composite(qkv: E.Tensor, heads: number, scale: number): E.Tensor {
  const [N, C3, L] = qkv.shape as [number, number, number];
  const C = C3 / 3;
  const d = C / heads;
  const [q, k, v] = qkv.view([N, 3, heads, d, L]).unbind(1) as [E.Tensor, E.Tensor, E.Tensor];
  const a = E.einsum('nhfi,nhfj->nhij', [q, k]).mul(scale).softmax(-1);
  return E.einsum('nhij,nhej->nhei', [a, v]).reshape([N, C, L]);
}


test('fused attention values match float64 loops (odd sizes, one and several heads)', { skip }, () => {
  E.tidy(() => {
    for (const [N, C, L, heads] of [[2, 6, 7, 1], [3, 16, 9, 4], [1, 32, 33, 2]] as const) {
      const qkv = E.randn([N, 3 * C, L], new E.Generator(N + L)).mul(1.3);
      const scale = 1 / Math.sqrt(C / heads);
      const got = E.fusedChannelAttention(qkv, heads, scale);
      assert.ok(got, 'kernel should run');
      const err = maxRelErr(got.toFloat64Array(), naive(qkv.toFloat64Array(), N, C, L, heads, scale));
      assert.ok(err < 2e-6, `[${N}, ${3 * C}, ${L}] × ${heads} heads: ${err}`);
    }
  });
});

test('fused attention gradient matches float64 autograd of the formula, on 1 and 2 threads', { skip }, () => {
  const prev = E.getNumThreads();
  try {
    for (const threads of [1, 2]) {
      E.setNumThreads(threads);
      E.tidy(() => {
        const [N, C, L, heads] = [3, 16, 21, 2];
        const g = new E.Generator(7);
        const qkv = E.randn([N, 3 * C, L], g).mul(1.5).requiresGrad_();
        const gy = E.randn([N, C, L], g);
        E.fusedChannelAttention(qkv, heads, 0.4)!.mul(gy).sum().backward();
        const q64 = qkv.detach().to({ dtype: 'float64' }).requiresGrad_();
        composite(q64, heads, 0.4).mul(gy.to({ dtype: 'float64' })).sum().backward();
        const err = maxRelErr(qkv.grad!.toFloat64Array(), q64.grad!.toFloat64Array());
        assert.ok(err < 5e-6, `${threads} thread(s): ${err}`);
      });
    }
  } finally {
    E.setNumThreads(prev);
  }
});

test('fused attention is stable for large logits (|scale·q·k| up to ≈ 100)', { skip }, () => {
  E.tidy(() => {
    const [N, C, L] = [1, 8, 12];
    const qkv = E.randn([N, 3 * C, L], new E.Generator(9)).mul(6);
    const got = E.fusedChannelAttention(qkv, 1, 1)!.toFloat64Array();
    assert.ok(got.every(Number.isFinite));
    assert.ok(maxRelErr(got, naive(qkv.toFloat64Array(), N, C, L, 1, 1)) < 1e-5);
  });
});

test('setFusedAttention(false) makes it return null; the spatial attention layer gives the same either way', { skip }, () => {
  E.tidy(() => {
    setInitSeed(3);
    const block = new FactorizedAttentionBlock(64, 4, 256);
    const layer = block.spatialAttention;
    // proj_out is zero-initialised: give it weights so the attention output matters.
    for (const p of layer.parameters()) E.noGrad(() => p.copy_(E.randn(p.shape, new E.Generator(p.numel)).mul(0.1)));
    const h = E.randn([4, 64, 8, 8], new E.Generator(11));
    const fused = layer.spatial(h);
    const prev = E.setFusedAttention(false);
    try {
      assert.equal(E.fusedChannelAttention(E.zeros([1, 12, 4]), 4, 1), null);
      const ops = E.profile(() => layer.spatial(h)).rows.map((r) => r.name);
      assert.ok(!ops.includes('flexvid::channel_attention'));
      const plain = layer.spatial(h);
      assert.ok(maxRelErr(fused.toFloat64Array(), plain.toFloat64Array()) < 1e-5);
    } finally {
      E.setFusedAttention(prev);
    }
    const ops = E.profile(() => layer.spatial(h)).rows.map((r) => r.name);
    assert.ok(ops.includes('flexvid::channel_attention'), `ran ${ops.join(', ')}`);
    block.dispose();
  });
});

test('fused attention: inference mode, bad shapes named, second derivative refused, no leaked tensors', { skip }, () => {
  const qkv = E.keep(E.randn([2, 24, 10], new E.Generator(12)).requiresGrad_());
  E.tidy(() => {
    const inf = E.inferenceMode(() => E.fusedChannelAttention(qkv, 2, 0.5)!);
    assert.ok(maxRelErr(inf.toFloat64Array(), naive(qkv.toFloat64Array(), 2, 8, 10, 2, 0.5)) < 2e-6);
    assert.throws(() => E.fusedChannelAttention(E.zeros([2, 24, 10]), 5, 1), /C divisible by 5 heads/);
    const y = E.fusedChannelAttention(qkv, 2, 0.5)!.square().sum();
    assert.throws(() => E.autogradGrad([y], [qkv], { createGraph: true }), /setFusedAttention\(false\)|FLEXVID_FUSED_ATTENTION=0/);
  });
  const step = () =>
    E.tidy(() => {
      E.fusedChannelAttention(qkv, 2, 0.5)!.square().sum().backward();
      qkv.setGrad(null);
    });
  step();
  const before = E.liveTensorCount();
  for (let i = 0; i < 5; i++) step();
  assert.equal(E.liveTensorCount(), before);
  qkv.dispose();
});
