/**
 * The fused temporal attention (native/temporal_attention.cc, E.fusedTemporalAttention): values
 * against the spec's formula written out as float64 loops, gradients (qkv and the three relative
 * terms) against float64 autograd of the formula, the frame-group mask, no-RPE and no-mask forms,
 * the U-Net's temporal attention layer with and without it, the refused second derivative and no
 * leaked tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { maxRelErr } from './helpers.ts';
import { FactorizedAttentionBlock, relativePositionFeatures, type TemporalContext } from '../../src/model/attention.ts';
import { setInitSeed } from '../../src/nn/index.ts';

const [B, T, C, H] = [2, 4, 8, 2]; // videos, frames, channels, heads
// Pixels: 3 (one partial tile of the kernel's 16-pixel work items) and 37 (two full tiles, which
// take the kernel's register-blocked path, and a partial one).
const PIXELS = [3, 37];
const P = 3;
const d = C / H;
const scale = 1 / Math.sqrt(d);

/** Frame-group mask as the U-Net builds it: 0 where m_i = m_j, else −∞. [B, T, T] */
function maskBias(): E.Tensor {
  const groups = [[1, 1, 0, 1], [0, 1, 1, 0]];
  return E.tensor(Float32Array.from({ length: B * T * T }, (_, x) => {
    const [b, i, j] = [Math.floor(x / (T * T)), Math.floor(x / T) % T, x % T];
    return groups[b]![i] === groups[b]![j] ? 0 : -Infinity;
  }), { shape: [B, T, T] });
}

/** The formula by loops. qkv [B·T, 3C, P], r* [B, T, T, C] or null, bias [B, T, T] or null. */
function naive(qkv: Float64Array, r: { k: Float64Array; q: Float64Array; v: Float64Array } | null, bias: Float64Array | null, P: number): Float64Array {
  const out = new Float64Array(B * T * C * P);
  const x = (b: number, i: number, part: number, h: number, e: number, p: number) => qkv[((b * T + i) * 3 * C + part * C + h * d + e) * P + p]!;
  const R = (t: Float64Array, b: number, i: number, j: number, h: number, e: number) => t[((b * T + i) * T + j) * C + h * d + e]!;
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let p = 0; p < P; p++)
        for (let i = 0; i < T; i++) {
          const s = Array.from({ length: T }, (_, j) => {
            let z = 0;
            for (let e = 0; e < d; e++) {
              z += x(b, i, 0, h, e, p) * x(b, j, 1, h, e, p);
              if (r) z += x(b, i, 0, h, e, p) * R(r.k, b, i, j, h, e) + x(b, j, 1, h, e, p) * R(r.q, b, j, i, h, e);
            }
            return scale * z + (bias ? bias[(b * T + i) * T + j]! : 0);
          });
          const mx = Math.max(...s);
          const w = s.map((z) => Math.exp(z - mx));
          const sum = w.reduce((a, c) => a + c, 0);
          for (let e = 0; e < d; e++) {
            let o = 0;
            for (let j = 0; j < T; j++) o += (w[j]! / sum) * (x(b, j, 2, h, e, p) + (r ? R(r.v, b, i, j, h, e) : 0));
            out[((b * T + i) * C + h * d + e) * P + p] = o;
          }
        }
  return out;
}

/** The formula with libtorch operators (its autograd is the reference gradient); dims default to the module's. */
function composite(qkv: E.Tensor, r: { k: E.Tensor; q: E.Tensor; v: E.Tensor }, bias: E.Tensor, P: number, dims = { B, T, C, H }): E.Tensor {
  const { B: nb, T: nt, C: nc, H: nh } = dims;
  const dh = nc / nh;
  const [q, k, v] = qkv.view([nb, nt, 3, nh, dh, P]).unbind(2) as [E.Tensor, E.Tensor, E.Tensor]; // [B, T, H, d, P]
  const rv = (t: E.Tensor) => t.view([nb, nt, nt, nh, dh]);
  const s = E.einsum('bihep,bjhep->bhpij', [q, k])
    .add(E.einsum('bihep,bijhe->bhpij', [q, rv(r.k)]))
    .add(E.einsum('bjhep,bjihe->bhpij', [k, rv(r.q)]))
    .mul(1 / Math.sqrt(dh))
    .add(bias.view([nb, 1, 1, nt, nt]));
  const a = s.softmax(-1);
  return E.einsum('bhpij,bjhep->bihep', [a, v]).add(E.einsum('bhpij,bijhe->bihep', [a, rv(r.v)])).reshape([nb * nt, nc, P]);
}


function inputs(seed: number, P = 3) {
  const g = new E.Generator(seed);
  return {
    qkv: E.randn([B * T, 3 * C, P], g).mul(1.5),
    r: { k: E.randn([B, T, T, C], g).mul(0.5), q: E.randn([B, T, T, C], g).mul(0.5), v: E.randn([B, T, T, C], g).mul(0.5) },
  };
}

for (const P of PIXELS) {
  test(`fused temporal attention values match float64 loops (with and without RPE and mask; ${P} pixels)`, () => {
    E.tidy(() => {
      const { qkv, r } = inputs(1, P);
      const bias = maskBias();
      for (const withR of [true, false])
        for (const withMask of [true, false]) {
          const got = E.fusedTemporalAttention(qkv, withR ? r : null, withMask ? bias : null, B, H, scale);
          assert.ok(got, 'kernel should run');
          const f64 = (t: E.Tensor) => t.toFloat64Array();
          const ref = naive(f64(qkv), withR ? { k: f64(r.k), q: f64(r.q), v: f64(r.v) } : null, withMask ? f64(bias) : null, P);
          assert.ok(maxRelErr(got.toFloat64Array(), ref) < 2e-6, `rpe ${withR}, mask ${withMask}: ${maxRelErr(got.toFloat64Array(), ref)}`);
          // inference mode (no probabilities kept for backward) gives the same values
          const inf = E.inferenceMode(() => E.fusedTemporalAttention(qkv, withR ? r : null, withMask ? bias : null, B, H, scale)!);
          assert.equal(inf.sub(got).abs().max().item(), 0);
        }
    });
  });

  test(`fused temporal attention gradients (qkv, Rk, Rq, Rv) match float64 autograd of the formula (${P} pixels)`, () => {
    E.tidy(() => {
      const t = inputs(2, P);
      const leaves = [t.qkv, t.r.k, t.r.q, t.r.v].map((x) => x.detach().requiresGrad_());
      const [qkv, rk, rq, rv] = leaves as [E.Tensor, E.Tensor, E.Tensor, E.Tensor];
      const bias = maskBias();
      const gy = E.randn([B * T, C, P], new E.Generator(3));
      for (const withR of [true, false]) {
        for (const x of leaves) x.setGrad(null);
        E.fusedTemporalAttention(qkv, withR ? { k: rk, q: rq, v: rv } : null, bias, B, H, scale)!.mul(gy).sum().backward();
        const ref = leaves.map((x) => x.detach().to({ dtype: 'float64' }).requiresGrad_());
        const zero = (x: E.Tensor) => x.mul(0);
        const r64 = withR ? { k: ref[1]!, q: ref[2]!, v: ref[3]! } : { k: zero(ref[1]!), q: zero(ref[2]!), v: zero(ref[3]!) };
        composite(ref[0]!, r64, bias.to({ dtype: 'float64' }), P).mul(gy.to({ dtype: 'float64' })).sum().backward();
        const checked = withR ? leaves : leaves.slice(0, 1);
        checked.forEach((x, i) => {
          const err = maxRelErr(x.grad!.toFloat64Array(), ref[i]!.grad!.toFloat64Array());
          assert.ok(err < 5e-6, `rpe ${withR}, input ${i}: ${err}`);
        });
      }
    });
  });
}

test('fused temporal attention: relative-term gradients with 40-channel heads (sums 16 channels at a time, and a rest of 8)', () => {
  E.tidy(() => {
    const dims = { B: 1, T: 3, C: 80, H: 2 };
    const P2 = 32; // two full 16-pixel tiles
    const g = new E.Generator(11);
    const leaves = [E.randn([dims.T, 3 * dims.C, P2], g), ...[0, 1, 2].map(() => E.randn([1, dims.T, dims.T, dims.C], g).mul(0.3))].map((x) => x.requiresGrad_());
    const [qkv, rk, rq, rv] = leaves as [E.Tensor, E.Tensor, E.Tensor, E.Tensor];
    const gy = E.randn([dims.T, dims.C, P2], g);
    E.fusedTemporalAttention(qkv, { k: rk, q: rq, v: rv }, null, 1, dims.H, 1 / Math.sqrt(dims.C / dims.H))!.mul(gy).sum().backward();
    const ref = leaves.map((x) => x.detach().to({ dtype: 'float64' }).requiresGrad_());
    const noMask = E.zeros([1, dims.T, dims.T], { dtype: 'float64' });
    composite(ref[0]!, { k: ref[1]!, q: ref[2]!, v: ref[3]! }, noMask, P2, dims).mul(gy.to({ dtype: 'float64' })).sum().backward();
    leaves.forEach((x, i) => {
      const err = maxRelErr(x.grad!.toFloat64Array(), ref[i]!.grad!.toFloat64Array());
      assert.ok(err < 5e-6, `input ${i}: ${err}`);
    });
  });
});

test('masked frames do not influence the others through the fused kernel', () => {
  E.tidy(() => {
    const { qkv, r } = inputs(4);
    const bias = maskBias();
    const before = E.fusedTemporalAttention(qkv, r, bias, B, H, scale)!;
    // Video 0: frame 2 is alone in its group; change its k and v (all channels, all pixels).
    const changed = qkv.clone();
    E.noGrad(() => changed.view([B, T, 3, C, P]).select(0, 0).select(0, 2).narrow(0, 1, 2).add_(5));
    const after = E.fusedTemporalAttention(changed, r, bias, B, H, scale)!;
    const diff = after.sub(before).abs().view([B, T, C, P]).select(0, 0); // [T, C, P]
    for (const frame of [0, 1, 3]) assert.equal(diff.select(0, frame).max().item(), 0, `frame ${frame}`);
    assert.ok(diff.select(0, 2).max().item() > 0);
  });
});

test('the U-Net temporal attention layer gives the same values and gradients with and without the fused kernel', () => {
  E.tidy(() => {
    setInitSeed(5);
    const block = new FactorizedAttentionBlock(64, 4, 32);
    for (const p of block.parameters()) E.noGrad(() => p.copy_(E.randn(p.shape, new E.Generator(p.numel + 7)).mul(0.2)));
    const g = new E.Generator(8);
    const [Bv, Tv] = [2, 5];
    const frameIndices = E.tensor(Float32Array.from([0, 1, 2, 5, 9, 0, 3, 4, 6, 7]), { shape: [Bv, Tv] });
    const maskB = E.zeros([Bv, 1, Tv, Tv]).maskedFill(E.tensor(Float32Array.from({ length: Bv * Tv * Tv }, (_, x) => ((x % Tv) < 2) !== (Math.floor(x / Tv) % Tv < 2) ? 1 : 0), { shape: [Bv, 1, Tv, Tv] }).gt(0), -Infinity);
    const ctx: TemporalContext = { B: Bv, T: Tv, phi: relativePositionFeatures(frameIndices), emb: E.randn([Bv, 32], g), maskBias: maskB };
    const h = E.randn([Bv * Tv, 64, 4, 4], g).requiresGrad_();
    const run = () => {
      const y = block.temporalAttention.temporal(h, ctx);
      y.square().sum().backward();
      const leaves = [h, ...block.temporalAttention.parameters()];
      const grads = leaves.map((p) => p.grad!.clone());
      for (const p of leaves) p.zeroGrad();
      return [y.detach(), ...grads];
    };
    const ops = E.profile(() => run()).rows.map((r) => r.name);
    assert.ok(ops.includes('flexvid::temporal_attention'), `ran ${ops.filter((n) => n.startsWith('flexvid')).join(', ')}`);
    const fused = run();
    const prev = E.setFusedAttention(false);
    try {
      const plain = run();
      // Absolute error against the larger of the tensor's scale and 1 % of the largest gradient:
      // some gradients are 0 up to rounding (Rk's and Rq's output bias: softmax gradients sum to
      // zero over the keys), and their rounding noise is that of the sums behind them.
      const largest = Math.max(...plain.map((t) => t.abs().max().item()));
      fused.forEach((f, i) => {
        const [a, b] = [f.toFloat64Array(), plain[i]!.toFloat64Array()];
        const err = a.reduce((m, v, k) => Math.max(m, Math.abs(v - b[k]!)), 0);
        const size = Math.max(0.01 * largest, ...Array.from(b, Math.abs));
        assert.ok(err < 2e-5 * size, `output ${i}: error ${err}, scale ${size}`);
      });
    } finally {
      E.setFusedAttention(prev);
    }
    block.dispose();
  });
});

test('fused temporal attention: bad shapes named, second derivative refused, no leaked tensors', () => {
  const { qkv: q0, r } = inputs(6);
  const qkv = E.keep(q0.requiresGrad_());
  for (const t of [r.k, r.q, r.v]) E.keep(t);
  E.tidy(() => {
    assert.throws(() => E.fusedTemporalAttention(qkv, { k: E.zeros([B, T, T, C + 1]), q: r.q, v: r.v }, null, B, H, scale), /rk must be \[2, 4, 4, 8\]/);
    assert.throws(() => E.fusedTemporalAttention(qkv, null, null, 3, H, scale), /B = 3/);
    const y = E.fusedTemporalAttention(qkv, r, null, B, H, scale)!.square().sum();
    assert.throws(() => E.autogradGrad([y], [qkv], { createGraph: true }), /setFusedAttention\(false\)|FLEXVID_FUSED_ATTENTION=0/);
  });
  const step = () =>
    E.tidy(() => {
      E.fusedTemporalAttention(qkv, r, null, B, H, scale)!.square().sum().backward();
      qkv.setGrad(null);
    });
  step();
  const before = E.liveTensorCount();
  for (let i = 0; i < 5; i++) step();
  assert.equal(E.liveTensorCount(), before);
  for (const t of [qkv, r.k, r.q, r.v]) t.dispose();
});
