/**
 * `relativeTermsOf`: the relative-position networks of all temporal attention layers computed
 * together equal each network run on its own (REFERENCE_SPEC §4.3), values and gradients, for
 * layers of two widths (grouped separately).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arange, Generator, liveTensorCount, randn, tidy, type Tensor } from '../../src/engine/index.ts';
import { FactorizedAttentionBlock, relativePositionFeatures, relativeTermsOf } from '../../src/model/attention.ts';
import { deterministicFill } from './helpers.ts';

test('relative-position terms of many layers at once equal each network alone (values and gradients)', () => {
  const E = 24;
  const blocks = [new FactorizedAttentionBlock(32, 2, E), new FactorizedAttentionBlock(64, 4, E), new FactorizedAttentionBlock(32, 4, E)];
  for (const b of blocks) {
    deterministicFill(b);
    b.to({ dtype: 'float64' });
  }
  const before = liveTensorCount();
  tidy(() => {
    const g = new Generator(4);
    const frames = arange(0, 10, 1, { dtype: 'float32' }).reshape([2, 5]).mul(1.5);
    const phi = relativePositionFeatures(frames).to({ dtype: 'float64' });
    const emb = randn([2, E], g, { dtype: 'float64' }).requiresGrad_();
    const params = blocks.flatMap((b) => b.rpeNets.flatMap((n) => n.parameters()));
    const weights = new Map<FactorizedAttentionBlock, Tensor[]>(blocks.map((b) => [b, b.rpeNets.map((n) => randn([2, 5, 5, n.out.outFeatures], g, { dtype: 'float64' }))]));
    const run = (terms: () => (b: FactorizedAttentionBlock) => Tensor[]) => {
      for (const p of [emb, ...params]) p.setGrad(null);
      const of = terms();
      const outs = blocks.flatMap((b) => of(b));
      outs
        .map((t, i) => t.mul(weights.get(blocks[Math.floor(i / 3)]!)![i % 3]!).sum())
        .reduce((a, b) => a.add(b))
        .backward();
      return { outs: outs.map((t) => t.detach()), grads: [emb, ...params].map((p) => p.grad!.clone()) };
    };
    const alone = run(() => (b) => b.rpeNets.map((n) => n.forward(phi, emb)));
    const together = run(() => {
      const map = relativeTermsOf(blocks, phi, emb);
      return (b) => {
        const t = map.get(b)!;
        return [t.k, t.q, t.v];
      };
    });
    assert.equal(together.outs.length, 9);
    together.outs.forEach((t, i) => {
      assert.deepEqual(t.shape, alone.outs[i]!.shape);
      assert.ok(t.sub(alone.outs[i]!).abs().max().item() < 1e-12, `term ${i}`);
    });
    together.grads.forEach((t, i) => assert.ok(t.sub(alone.grads[i]!).abs().max().item() < 1e-12, `gradient ${i}`));
  });
  assert.equal(liveTensorCount(), before);
  for (const b of blocks) b.dispose();
});
