/**
 * `UNetInputs.outputMask`: after the last temporal attention the U-Net treats frames independently,
 * so it carries on only the frames whose output is read. Checked against the full forward pass, in
 * float64 so that the comparison is exact up to summation order, for values and for the
 * parameter gradients of a masked loss (what training computes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arange, liveTensorCount, randn, tensor, tidy, Generator, type Tensor } from '../../src/engine/index.ts';
import { UNetVideoModel, type UNetInputs } from '../../src/model/unet.ts';
import { frameTailGflopPerFrame, forwardGflopPerFrame, modelCostTable } from '../../src/model/flops.ts';
import { deterministicFill } from './helpers.ts';

function model64(cfg: ConstructorParameters<typeof UNetVideoModel>[0]): UNetVideoModel {
  const m = new UNetVideoModel(cfg);
  deterministicFill(m); // non-zero everywhere (the zero-initialised layers too)
  m.to({ dtype: 'float64' });
  return m;
}

function videoInputs(B: number, T: number, obs: number[][], S = 32): Omit<UNetInputs, 'outputMask'> {
  const g = new Generator(11);
  const o = tensor(obs.flat(), { shape: [B, T], dtype: 'float64' });
  return {
    x: randn([B, T, 3, S, S], g, { dtype: 'float64' }),
    x0: randn([B, T, 3, S, S], g, { dtype: 'float64' }),
    timesteps: tensor([40, 900].slice(0, B)),
    frameIndices: arange(0, B * T, 1, { dtype: 'float32' }).reshape([B, T]),
    obsMask: o,
    latentMask: o.rsub(1),
  };
}

const maxAbs = (a: Tensor, b: Tensor) => a.sub(b).abs().max().item();

// Attention at 16² and 8² (last temporal attention in an up block that also upsamples), and at 2²
// only (32² frames: the middle block alone has attention, so every skip connection is narrowed).
// Two videos: the kept frames are scattered (copied out); one video: they are one contiguous run
// (cut as a view).
const layouts: [string, number[][]][] = [
  ['two videos', [
    [1, 1, 0, 0],
    [1, 0, 0, 1],
  ]],
  ['one video', [[1, 1, 0, 0]]],
];
for (const attentionResolutions of ['16,8', '2']) for (const [layout, obs] of layouts) {
  test(`read frames equal the full pass, unread frames are zero (attention at ${attentionResolutions}, ${layout})`, () => {
    const m = model64({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2, attentionResolutions });
    const before = liveTensorCount();
    const B = obs.length;
    tidy(() => {
      const inp = videoInputs(B, 4, obs);
      const full = m.forward(inp);
      const cut = m.forward({ ...inp, outputMask: inp.latentMask });
      assert.deepEqual(cut.shape, full.shape);
      const lat = inp.latentMask.reshape([B, 4, 1, 1, 1]);
      const scale = full.abs().max().item();
      assert.ok(scale > 1e-3, 'the filled model produces a non-trivial output');
      assert.ok(maxAbs(cut.mul(lat), full.mul(lat)) < 1e-12 * Math.max(1, scale), 'read frames as in the full pass');
      assert.equal(cut.mul(lat.rsub(1)).abs().max().item(), 0, 'unread frames are zero');
      // every frame read, or none: the full pass
      assert.equal(maxAbs(m.forward({ ...inp, outputMask: inp.latentMask.add(1) }), full), 0);
      assert.equal(maxAbs(m.forward({ ...inp, outputMask: inp.latentMask.mul(0) }), full), 0);
    });
    assert.equal(liveTensorCount(), before);
    m.dispose();
  });
}

for (const obs of [[[1, 0, 0], [0, 1, 0]], [[1, 0, 0]]]) test(`a masked loss has the same parameter gradients with and without the narrowed frames (${obs.length} video(s))`, () => {
  const m = model64({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2 });
  const B = obs.length;
  const inp = videoInputs(B, 3, obs);
  const lossMask = inp.latentMask.reshape([B, 3, 1, 1, 1]);
  const target = randn([B, 3, 3, 32, 32], new Generator(5), { dtype: 'float64' });
  const grads = (outputMask?: Tensor): Float64Array[] => {
    m.zeroGrad();
    tidy(() => m.forward({ ...inp, outputMask }).sub(target).square().mul(lossMask).mean().backward());
    return m.parameters().map((p) => {
      assert.ok(p.grad, 'every parameter receives a gradient');
      return p.grad.toFloat64Array();
    });
  };
  const full = grads();
  const cut = grads(inp.latentMask);
  let worst = 0;
  full.forEach((g, i) => {
    let scale = 1e-30;
    for (const v of g) scale = Math.max(scale, Math.abs(v));
    g.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - cut[i]![j]!) / scale)));
  });
  assert.ok(worst < 1e-9, `largest relative gradient difference ${worst}`);
  m.dispose();
});

test('analytic cost of the frame-independent tail (Balls config, hand-summed)', () => {
  const cfg = { imageSize: 32, modelChannels: 64, numResBlocks: 1 };
  const table = modelCostTable(cfg, 10);
  const row = (name: string) => table.find((b) => b.name === name)!;
  // output_blocks.5 = ResBlock(256→128) + attention at 16² + Upsample conv 128→128 at 32²:
  // after its temporal attention come the spatial attention and the upsampling convolution.
  const hw16 = 256;
  const spatial = 2 * 128 * 384 * hw16 + 2 * 128 * 128 * hw16 + 4 * hw16 * hw16 * 128;
  const up = 2 * 128 * 128 * 9 * 1024;
  assert.equal(row('output_blocks.5').afterTemporalPerFrame, spatial + up);
  const tail = (spatial + up + row('output_blocks.6').flopsPerFrame + row('output_blocks.7').flopsPerFrame + row('out').flopsPerFrame) / 1e9;
  assert.ok(Math.abs(frameTailGflopPerFrame(cfg, 10) - tail) < 1e-12);
  // ≈ 40 % of the forward pass
  const share = tail / forwardGflopPerFrame(cfg, 10);
  assert.ok(share > 0.38 && share < 0.42, `tail share ${share}`);
});
