/**
 * oneDNN's blocked activation layout `[N, C/16, H, W, 16]` for ResBlock chains (native/fused_norm.cc,
 * native/winograd.cc): the fused GroupNorm writing and reading it, the Winograd convolution on it
 * and the residual addition out of it — each against the plain-layout computation (itself checked
 * against float64 loops and finite differences in fused-norm.test.ts and winograd.test.ts), values
 * and every gradient; odd position counts (a partial 16-position tile) and groups that span
 * 16-channel blocks (192 channels: 6 per group); the U-Net ResBlock both ways; no leaked tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { setInitSeed } from '../../src/nn/index.ts';
import { ResBlock } from '../../src/model/unet.ts';
import { maxRelErr } from './helpers.ts';

const compiled = E.winogradConvEnabled() || (E.setWinogradConv(true), E.winogradConvEnabled());
const skipWhy = compiled ? false : 'addon built without oneDNN headers (libdnnl-dev): no blocked-layout convolution';

/** plain [N, C, H, W] → blocked [N, C/16, H, W, 16] and back, by libtorch operators. */
const toBlocked = (x: E.Tensor) => {
  const [N, C, H, W] = x.shape as number[];
  return x.view([N!, C! / 16, 16, H!, W!]).permute([0, 1, 3, 4, 2]).contiguous();
};
const toPlain = (x: E.Tensor) => {
  const [N, B, H, W] = x.shape as number[];
  return x.permute([0, 1, 4, 2, 3]).reshape([N!, B! * 16, H!, W!]);
};

/** Gradients of Σ y·gy with respect to `leaves`, as float64 arrays. */
function grads(y: E.Tensor, gy: E.Tensor, leaves: E.Tensor[]): Float64Array[] {
  for (const l of leaves) l.setGrad(null);
  y.mul(gy).sum().backward();
  return leaves.map((l) => l.grad!.toFloat64Array());
}

for (const [C, H, W] of [
  [64, 8, 8],
  [192, 9, 7], // 6 channels per group: groups span blocks; 63 positions: a partial tile
  [32, 5, 6], // fewer positions than one tile
] as const)
  for (const silu of [true, false])
    test(`GroupNorm into and within the blocked layout equals the plain kernel (C ${C}, ${H}×${W}, silu ${silu})`, () => {
      E.tidy(() => {
        const g = new E.Generator(C + H);
        const N = 3;
        const x = E.randn([N, C, H, W], g).mul(1.7).add(0.4).requiresGrad_();
        const w = E.randn([C], g).mul(0.5).add(1).requiresGrad_();
        const b = E.randn([C], g).mul(0.3).requiresGrad_();
        const scale = E.randn([N, C], g).mul(0.4).requiresGrad_();
        const shift = E.randn([N, C], g).mul(0.4).requiresGrad_();
        const gy = E.randn([N, C, H, W], g);
        const leaves = [x, w, b, scale, shift];
        const o = { scale, shift, silu };
        const plain = E.groupNormAct(x, 32, w, b, 1e-5, o);
        const wantGrads = grads(plain, gy, leaves);
        // plain → blocked
        const y1 = E.groupNormAct(x, 32, w, b, 1e-5, { ...o, layout: 'plain-to-blocked' });
        assert.deepEqual(y1.shape, [N, C / 16, H, W, 16]);
        assert.ok(maxRelErr(toPlain(y1).toFloat64Array(), plain.toFloat64Array()) < 1e-6, 'plain → blocked values');
        grads(y1, toBlocked(gy), leaves).forEach((got, i) => assert.ok(maxRelErr(got, wantGrads[i]!) < 2e-5, `plain → blocked gradient ${i}: ${maxRelErr(got, wantGrads[i]!)}`));
        // blocked → blocked (the input handed over in the blocked layout, its gradient returned in it)
        const xb = toBlocked(x.detach()).requiresGrad_();
        const y2 = E.groupNormAct(xb, 32, w, b, 1e-5, { ...o, layout: 'blocked' });
        assert.ok(maxRelErr(toPlain(y2).toFloat64Array(), plain.toFloat64Array()) < 1e-6, 'blocked values');
        const got2 = grads(y2, toBlocked(gy), [xb, w, b, scale, shift]);
        assert.ok(maxRelErr(toPlain(xb.grad!).toFloat64Array(), wantGrads[0]!) < 2e-5, 'blocked gradient x');
        got2.slice(1).forEach((got, i) => assert.ok(maxRelErr(got, wantGrads[i + 1]!) < 2e-5, `blocked gradient ${i + 1}`));
      });
    });

for (const [C1, C2, H, W] of [
  [128, 64, 9, 7], // 192 channels, 6 per group: the group at channels 126…131 straddles the two parts
  [32, 32, 5, 6],
  [16, 48, 8, 8],
] as const)
  for (const silu of [true, false])
    test(`GroupNorm of a skip pair [a, b] read in place equals it on cat([a, b]) (${C1}+${C2}, ${H}×${W}, silu ${silu})`, () => {
      E.tidy(() => {
        const g = new E.Generator(C1 + C2 + H);
        const N = 3;
        const C = C1 + C2;
        const a = E.randn([N, C1, H, W], g).mul(1.7).add(0.4).requiresGrad_();
        const b = E.randn([N, C2, H, W], g).mul(0.9).sub(0.3).requiresGrad_();
        const w = E.randn([C], g).mul(0.5).add(1).requiresGrad_();
        const bias = E.randn([C], g).mul(0.3).requiresGrad_();
        const scale = E.randn([N, C], g).mul(0.4).requiresGrad_();
        const shift = E.randn([N, C], g).mul(0.4).requiresGrad_();
        const gy = E.randn([N, C / 16, H, W, 16], g);
        const leaves = [a, b, w, bias, scale, shift];
        const o = { scale, shift, silu };
        const whole = E.groupNormAct(E.cat([a, b], 1), 32, w, bias, 1e-5, { ...o, layout: 'plain-to-blocked' });
        const want = grads(whole, gy, leaves);
        let pair: E.Tensor | undefined;
        const ops = E.profile(() => void (pair = E.groupNormActPair(a, b, 32, w, bias, 1e-5, o))).rows.map((r) => r.name);
        assert.ok(!ops.includes('aten::cat'), `the pair was concatenated: ${ops.join(', ')}`);
        assert.deepEqual(pair!.shape, [N, C / 16, H, W, 16]);
        // the same arithmetic on the same values: equal up to summation order
        assert.ok(maxRelErr(pair!.toFloat64Array(), whole.toFloat64Array()) < 1e-6, `values ${maxRelErr(pair!.toFloat64Array(), whole.toFloat64Array())}`);
        grads(pair!, gy, leaves).forEach((got, i) => assert.ok(maxRelErr(got, want[i]!) < 1e-5, `gradient ${i}: ${maxRelErr(got, want[i]!)}`));
        // only b needing a gradient (a fixed): b's gradient unchanged
        const b2 = b.detach().requiresGrad_();
        grads(E.groupNormActPair(a.detach(), b2, 32, w.detach(), bias.detach(), 1e-5, { scale: scale.detach(), shift: shift.detach(), silu }), gy, [b2]).forEach((got) =>
          assert.ok(maxRelErr(got, want[1]!) < 1e-5, 'gradient of b alone'),
        );
      });
    });

test('Winograd convolution on blocked activations equals the plain one (values, x/weight/bias gradients)', { skip: skipWhy }, () => {
  E.tidy(() => {
    const g = new E.Generator(21);
    for (const [N, C, O, H, W] of [
      [2, 32, 48, 8, 8],
      [1, 16, 16, 9, 11],
    ] as const) {
      const x = E.randn([N, C, H, W], g).requiresGrad_();
      const w = E.randn([O, C, 3, 3], g).mul(0.1).requiresGrad_();
      const b = E.randn([O], g).requiresGrad_();
      const gy = E.randn([N, O, H, W], g);
      const plain = E.conv2d(x, w, b, { padding: 1 });
      const want = grads(plain, gy, [x, w, b]);
      const xb = toBlocked(x.detach()).requiresGrad_();
      const y = E.conv3x3Blocked(xb, w, b);
      assert.deepEqual(y.shape, [N, O / 16, H, W, 16]);
      assert.ok(maxRelErr(toPlain(y).toFloat64Array(), plain.toFloat64Array()) < 1e-5);
      const got = grads(y, toBlocked(gy), [xb, w, b]);
      assert.ok(maxRelErr(toPlain(xb.grad!).toFloat64Array(), want[0]!) < 1e-5, 'grad x');
      assert.ok(maxRelErr(got[1]!, want[1]!) < 1e-5, 'grad weight');
      assert.ok(maxRelErr(got[2]!, want[2]!) < 1e-5, 'grad bias');
    }
    assert.throws(() => E.conv3x3Blocked(E.zeros([1, 2, 8, 8, 8]), E.zeros([16, 32, 3, 3])), /\[N, C\/16, H, W, 16\]/);
  });
});

test('unblockAdd: r + h out of the blocked layout, and both gradients', () => {
  E.tidy(() => {
    const g = new E.Generator(5);
    for (const [N, C, H, W] of [
      [2, 32, 4, 4],
      [1, 48, 3, 7],
    ] as const) {
      const h = E.randn([N, C, H, W], g);
      const hb = toBlocked(h).requiresGrad_();
      const r = E.randn([N, C, H, W], g).requiresGrad_();
      const y = E.unblockAdd(hb, r);
      assert.equal(y.sub(h.add(r)).abs().max().item(), 0);
      const gy = E.randn([N, C, H, W], g);
      y.mul(gy).sum().backward();
      assert.equal(r.grad!.sub(gy).abs().max().item(), 0);
      assert.equal(toPlain(hb.grad!).sub(gy).abs().max().item(), 0);
    }
    assert.throws(() => E.unblockAdd(E.zeros([1, 2, 4, 4, 16]), E.zeros([1, 16, 4, 4])), /unblock_add/);
  });
});

test('the U-Net ResBlock gives the same values and gradients with and without the blocked layout', { skip: skipWhy }, () => {
  for (const [cIn, cOut] of [
    [32, 64],
    [64, 64],
  ] as const) {
    setInitSeed(3);
    const block = new ResBlock(cIn, cOut, 24, 0, true);
    for (const p of block.parameters()) E.noGrad(() => p.copy_(E.randn(p.shape, new E.Generator(p.numel)).mul(0.2)));
    E.tidy(() => {
      const g = new E.Generator(9);
      const x = E.randn([3, cIn, 8, 8], g).requiresGrad_();
      const emb = E.randn([3, 24], g);
      assert.ok(E.blockedConvChain(x, cIn, cOut));
      const run = () => {
        const ops = E.profile(() => {
          const y = block.forward(x, emb);
          y.square().sum().backward();
        }).rows.map((r) => r.name);
        const y = block.forward(x, emb).detach();
        const leaves = [x, ...block.parameters()];
        const gs = leaves.map((p) => p.grad!.clone());
        for (const p of leaves) p.setGrad(null);
        return { y, gs, ops };
      };
      const blocked = run();
      assert.ok(blocked.ops.includes('flexvid::conv3x3_blocked'), `ran ${blocked.ops.filter((n) => n.startsWith('flexvid')).join(', ')}`);
      const prev = E.setBlockedLayout(false);
      try {
        const plain = run();
        assert.ok(!plain.ops.includes('flexvid::conv3x3_blocked'));
        assert.ok(maxRelErr(blocked.y.toFloat64Array(), plain.y.toFloat64Array()) < 1e-5);
        blocked.gs.forEach((t, i) => assert.ok(maxRelErr(t.toFloat64Array(), plain.gs[i]!.toFloat64Array()) < 5e-5, `gradient ${i}: ${maxRelErr(t.toFloat64Array(), plain.gs[i]!.toFloat64Array())}`));
      } finally {
        E.setBlockedLayout(prev);
      }
    });
    block.dispose();
  }
});

test('the U-Net ResBlock given a skip pair [h, skip] equals it given cat([h, skip]) (values, every gradient)', { skip: skipWhy }, () => {
  for (const [c1, c2, cOut] of [
    [64, 32, 64], // 96 → 64: a 1×1 skip projection, split in two products
    [32, 32, 64], // 64 → 64: the identity residual is the concatenation, the normalisation reads the pair
  ] as const) {
    setInitSeed(5);
    const block = new ResBlock(c1 + c2, cOut, 24, 0, true);
    for (const p of block.parameters()) E.noGrad(() => p.copy_(E.randn(p.shape, new E.Generator(p.numel + 1)).mul(0.2)));
    E.tidy(() => {
      const g = new E.Generator(17);
      const h = E.randn([3, c1, 8, 8], g).requiresGrad_();
      const skip = E.randn([3, c2, 8, 8], g).requiresGrad_();
      const emb = E.randn([3, 24], g);
      const leaves = [h, skip, ...block.parameters()];
      const run = (pair: boolean) => {
        let y: E.Tensor | undefined;
        const ops = E.profile(() => {
          y = block.forward(pair ? [h, skip] : E.cat([h, skip], 1), emb);
          y.square().sum().backward();
        }).rows.map((r) => r.name);
        const gs = leaves.map((p) => p.grad!.clone());
        for (const p of leaves) p.setGrad(null);
        return { y: y!.detach(), gs, ops };
      };
      const pair = run(true);
      assert.ok(pair.ops.includes('flexvid::group_norm_silu_pair'), `ran ${pair.ops.filter((n) => /flexvid|cat/.test(n)).join(', ')}`);
      const whole = run(false);
      assert.ok(maxRelErr(pair.y.toFloat64Array(), whole.y.toFloat64Array()) < 1e-5, 'values');
      pair.gs.forEach((t, i) => assert.ok(maxRelErr(t.toFloat64Array(), whole.gs[i]!.toFloat64Array()) < 5e-5, `gradient ${i}: ${maxRelErr(t.toFloat64Array(), whole.gs[i]!.toFloat64Array())}`));
    });
    block.dispose();
  }
});

test('blocked-layout operators leave no live tensors behind and refuse bad layouts', { skip: skipWhy }, () => {
  const g = new E.Generator(1);
  const x = E.keep(E.randn([2, 32, 8, 8], g).requiresGrad_());
  const w = E.keep(E.randn([32, 32, 3, 3], g).mul(0.1).requiresGrad_());
  const gw = E.keep(E.ones([32]));
  const gb = E.keep(E.zeros([32]));
  const step = () =>
    E.tidy(() => {
      const a = E.groupNormAct(x, 32, gw, gb, 1e-5, { silu: true, layout: 'plain-to-blocked' });
      const h = E.groupNormAct(E.conv3x3Blocked(a, w, null), 32, gw, gb, 1e-5, { silu: true, layout: 'blocked' });
      E.unblockAdd(E.conv3x3Blocked(h, w, null), x).square().sum().backward();
      x.setGrad(null);
      w.setGrad(null);
    });
  step();
  const before = E.liveTensorCount();
  for (let i = 0; i < 4; i++) step();
  assert.equal(E.liveTensorCount(), before);
  E.tidy(() => {
    assert.throws(() => E.groupNormAct(E.zeros([1, 24, 8, 8]), 8, E.ones([24]), E.zeros([24]), 1e-5, { layout: 'plain-to-blocked' }), /multiple of 16/);
    assert.throws(() => E.groupNormAct(E.zeros([1, 2, 8, 8, 8]), 32, E.ones([32]), E.zeros([32]), 1e-5, { layout: 'blocked' }), /\[N, C\/16, H, W, 16\]/);
    assert.throws(() => E.groupNormAct(E.zeros([1, 2, 8, 8, 16], { dtype: 'float64' }), 32, E.ones([32], { dtype: 'float64' }), E.zeros([32], { dtype: 'float64' }), 1e-5, { layout: 'blocked' }), /float32/);
  });
  for (const t of [x, w, gw, gb]) t.dispose();
});
