/**
 * `EmbeddingTerms`: the emb_layers (SiLU → Linear, REFERENCE_SPEC §4.2) of many ResBlocks computed
 * as one product equal each block's own, values and gradients, and `rows` selects frames.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, liveTensorCount, randn, tensor, tidy, type Tensor } from '../../src/engine/index.ts';
import { EmbeddingTerms, ResBlock } from '../../src/model/unet.ts';
import { deterministicFill } from './helpers.ts';

test('emb_layers of many ResBlocks at once equal each block alone (values, gradients, selected rows)', () => {
  const E = 24;
  // scale-shift blocks (2C outputs) of two widths and one additive block (C outputs)
  const blocks = [new ResBlock(32, 32, E, 0, true), new ResBlock(32, 64, E, 0, true), new ResBlock(64, 32, E, 0, false)];
  for (const b of blocks) {
    deterministicFill(b);
    b.to({ dtype: 'float64' });
  }
  const other = new ResBlock(32, 32, E, 0, true);
  const before = liveTensorCount();
  tidy(() => {
    const g = new Generator(5);
    const emb = randn([6, E], g, { dtype: 'float64' }).requiresGrad_();
    const params = blocks.flatMap((b) => b.embLayers.parameters());
    const weights = blocks.map((b) => randn([6, b.useScaleShiftNorm ? 2 * b.cOut : b.cOut], g, { dtype: 'float64' }));
    const run = (of: (b: ResBlock) => Tensor) => {
      for (const p of [emb, ...params]) p.setGrad(null);
      const outs = blocks.map(of);
      outs
        .map((t, i) => t.mul(weights[i]!).sum())
        .reduce((a, b) => a.add(b))
        .backward();
      return { outs: outs.map((t) => t.detach()), grads: [emb, ...params].map((p) => p.grad!.clone()) };
    };
    const alone = run((b) => b.embLayers.forward(emb));
    const terms = EmbeddingTerms.of(blocks, emb);
    const together = run((b) => terms.get(b)!);
    together.outs.forEach((t, i) => {
      assert.deepEqual(t.shape, alone.outs[i]!.shape);
      assert.ok(t.sub(alone.outs[i]!).abs().max().item() < 1e-12, `block ${i}`);
    });
    together.grads.forEach((t, i) => assert.ok(t.sub(alone.grads[i]!).abs().max().item() < 1e-12, `gradient ${i}`));
    // rows: the frames kept after the frame cut
    const kept = terms.rows(tensor(Int32Array.from([1, 4]), { dtype: 'int64' }));
    blocks.forEach((b, i) => {
      const want = alone.outs[i]!;
      const got = kept.get(b)!;
      assert.deepEqual(got.shape, [2, want.shape[1]]);
      assert.ok(got.narrow(0, 0, 1).sub(want.narrow(0, 1, 1)).abs().max().item() === 0);
      assert.ok(got.narrow(0, 1, 1).sub(want.narrow(0, 4, 1)).abs().max().item() === 0);
    });
    assert.equal(terms.get(other), undefined);
    // repeat: rows computed once per video and repeated for its frames, as from the expanded rows
    const video = emb.narrow(0, 0, 2);
    const expanded = video.unsqueeze(1).expand([2, 3, E]).reshape([6, E]);
    const once = run((b) => EmbeddingTerms.of(blocks, video, 3).get(b)!);
    const perFrame = run((b) => EmbeddingTerms.of(blocks, expanded).get(b)!);
    once.outs.forEach((t, i) => assert.ok(t.sub(perFrame.outs[i]!).abs().max().item() < 1e-12, `repeat: block ${i}`));
    once.grads.forEach((t, i) => assert.ok(t.sub(perFrame.grads[i]!).abs().max().item() < 1e-12, `repeat: gradient ${i}`));
  });
  assert.equal(liveTensorCount(), before);
  for (const b of [...blocks, other]) b.dispose();
});
