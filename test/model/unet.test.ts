import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { arange, inferenceMode, liveTensorCount, noGrad, onesLike, randn, tensor, tidy, zeros, ones } from '../../src/engine/index.ts';
import { AdamW } from '../../src/nn/index.ts';
import { UNetVideoModel } from '../../src/model/unet.ts';
import { attentionProbe } from '../../src/model/attention.ts';
import { readNpy } from '../../src/data/npy.ts';
import { deterministicFill, withPlainKernels } from './helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

test('parameter counts equal the reference model (§4.4, ANCHORS §7)', () => {
  const cases: [Record<string, number>, number, number | null][] = [
    [{ imageSize: 32, modelChannels: 128, numResBlocks: 2 }, 49_065_987, 598],
    [{ imageSize: 32, modelChannels: 64, numResBlocks: 1 }, 8_202_947, null],
    [{ imageSize: 64, modelChannels: 128, numResBlocks: 2 }, 115_985_411, null],
    [{ imageSize: 160, inChannels: 4, modelChannels: 128, numResBlocks: 2 }, 116_173_956, null],
  ];
  for (const [cfg, count, tensors] of cases) {
    const m = new UNetVideoModel(cfg);
    assert.equal(m.numParameters(), count, JSON.stringify(cfg));
    if (tensors !== null) assert.equal(m.namedParameters().length, tensors);
    m.dispose();
  }
  const maze = new UNetVideoModel({ imageSize: 64, modelChannels: 128, numResBlocks: 1 });
  assert.equal((maze.numParameters() / 1e6).toFixed(2), '78.42');
  maze.dispose();
});

test('reference parameter names (§12)', () => {
  const m = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1 });
  const names = new Set(m.namedParameters().map(([n]) => n));
  for (const n of [
    'time_embed.0.weight',
    'time_embed.2.bias',
    'input_blocks.0.0.weight',
    'input_blocks.1.0.in_layers.2.weight',
    'input_blocks.1.0.emb_layers.1.weight',
    'input_blocks.1.0.out_layers.3.weight',
    'input_blocks.2.0.op.weight',
    'input_blocks.3.0.skip_connection.weight',
    'input_blocks.3.1.temporal_attention.rpe_k.rpe_net.embed_distances.weight',
    'input_blocks.3.1.spatial_attention.qkv.weight',
    'middle_block.1.temporal_attention.proj_out.bias',
    'output_blocks.1.1.conv.weight',
    'out.2.weight',
  ]) {
    assert.ok(names.has(n), `missing ${n}`);
  }
  m.dispose();
});

function inputs(B: number, T: number, C = 3, S = 32) {
  return {
    x: randn([B, T, C, S, S]),
    x0: randn([B, T, C, S, S]),
    timesteps: tensor([10, 700].slice(0, B)),
    frameIndices: arange(0, B * T).reshape([B, T]),
    obsMask: zeros([B, T]),
    latentMask: ones([B, T]),
  };
}

test('a freshly built model outputs exactly zero; output shapes for pixels and latents', () => {
  for (const [cfg, C] of [
    [{ imageSize: 32, modelChannels: 32, numResBlocks: 1 }, 3],
    [{ imageSize: 32, modelChannels: 32, numResBlocks: 1, inChannels: 4 }, 4],
    [{ imageSize: 32, modelChannels: 32, numResBlocks: 1, learnSigma: true }, 3],
  ] as const) {
    const m = new UNetVideoModel(cfg);
    tidy(() => {
      const y = inferenceMode(() => m.forward(inputs(2, 3, C)));
      assert.deepEqual(y.shape, [2, 3, 'learnSigma' in cfg ? 2 * C : C, 32, 32]);
      assert.equal(y.abs().max().item(), 0);
    });
    m.dispose();
  }
});

test('matches the spec-derived PyTorch model on the same weights and inputs (fixture); the fast kernels round like float32', () => {
  // Counted before the models exist: their no-grad forwards keep derived weights (Module.derived)
  // until dispose().
  const before = liveTensorCount();
  const m = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2 });
  deterministicFill(m);
  const m64 = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2 });
  deterministicFill(m64);
  m64.to({ dtype: 'float64' });
  tidy(() => {
    const B = 2, T = 5, n = B * T * 3 * 32 * 32;
    const i = arange(0, n, 1, { dtype: 'float64' });
    const x = i.mul(0.013).sin().to({ dtype: 'float32' }).reshape([B, T, 3, 32, 32]);
    const x0 = i.mul(0.007).cos().to({ dtype: 'float32' }).reshape([B, T, 3, 32, 32]);
    const forward = (model: UNetVideoModel, dtype: 'float32' | 'float64') =>
      inferenceMode(() =>
        model.forward({
          x: x.to({ dtype }),
          x0: x0.to({ dtype }),
          timesteps: tensor([123.5, 900]),
          frameIndices: tensor([[0, 1, 2, 3, 4], [0, 3, 7, 10, 20]], { dtype: 'int64' }),
          obsMask: tensor([[1, 1, 0, 0, 0], [0, 1, 0, 1, 0]]),
          latentMask: tensor([[0, 0, 1, 1, 0], [1, 0, 1, 0, 0]]),
        }),
      ).toFloat64Array();
    const want = readNpy(path.join(here, '../fixtures/model/parity_out.npy'));
    assert.deepEqual(want.shape, [B, T, 3, 32, 32]);
    const ref = want.data as Float32Array;
    const maxErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let e = 0;
      for (let k = 0; k < a.length; k++) e = Math.max(e, Math.abs(a[k]! - b[k]!));
      return e;
    };
    const rms = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let s2 = 0;
      for (let k = 0; k < a.length; k++) s2 += (a[k]! - b[k]!) ** 2;
      return Math.sqrt(s2 / a.length);
    };
    // Architecture and weights: libtorch's own kernels match PyTorch within the 1e-4.
    const plain = withPlainKernels(() => forward(m, 'float32'));
    assert.ok(maxErr(plain, ref) < 1e-4, `plain kernels: max abs error ${maxErr(plain, ref)}`);
    // The default fast kernels (Winograd, fused norm and attention) change only the rounding: against
    // the same model in float64 their error is float32-sized (PyTorch's own: max 5e-5, rms 2.5e-6).
    const fast = forward(m, 'float32');
    const truth = forward(m64, 'float64');
    assert.ok(maxErr(fast, truth) < 2e-4 && rms(fast, truth) < 1e-5, `fast kernels vs float64: max ${maxErr(fast, truth)}, rms ${rms(fast, truth)}`);
    assert.ok(maxErr(fast, ref) < 2e-4, `fast kernels vs PyTorch: max abs error ${maxErr(fast, ref)}`);
  });
  m.dispose();
  m64.dispose();
  assert.equal(liveTensorCount(), before);
});

test('temporal attention between used and unused frames is exactly zero in both directions (§11.4)', () => {
  const m = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2 });
  deterministicFill(m);
  attentionProbe.temporal = [];
  tidy(() => {
    const base = inputs(1, 4);
    inferenceMode(() => m.forward({ ...base, obsMask: tensor([[1, 0, 0, 0]]), latentMask: tensor([[0, 1, 0, 1]]), timesteps: tensor([300]) }));
  });
  const probes = attentionProbe.temporal;
  attentionProbe.temporal = null;
  assert.ok(probes.length > 0);
  const used = [0, 1, 3];
  const unused = [2];
  for (const a of probes) {
    const [B, H, P, T] = a.shape as number[];
    const v = a.toFloat32Array();
    for (let idx = 0; idx < B * H! * P!; idx++) {
      for (const i of used) for (const j of unused) {
        assert.equal(v[idx * T! * T! + i * T! + j], 0);
        assert.equal(v[idx * T! * T! + j * T! + i], 0);
      }
      // rows still sum to one
      let s = 0;
      for (let j = 0; j < T!; j++) s += v[idx * T! * T! + 0 * T! + j]!;
      assert.ok(Math.abs(s - 1) < 1e-5);
    }
    a.dispose();
  }
  m.dispose();
});

test('training (einsum) and sampling (batched GEMM) forms of temporal attention agree', () => {
  const m = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2 });
  deterministicFill(m);
  tidy(() => {
    const inp = { ...inputs(2, 4), obsMask: tensor([[1, 0, 0, 0], [1, 1, 0, 0]]), latentMask: tensor([[0, 1, 1, 0], [0, 0, 1, 1]]) };
    const a = m.forward(inp); // grad mode: einsum form
    const b = inferenceMode(() => m.forward(inp)); // GEMM form
    const diff = a.sub(b).abs().max().item();
    assert.ok(diff < 1e-4, `max diff ${diff}`);
  });
  m.dispose();
});

test('no-grad forwards reuse the joined embedding and RPE weights until the parameters change, then agree with a fresh computation', () => {
  const before = liveTensorCount();
  const m = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2 });
  deterministicFill(m);
  tidy(() => {
    const B = 1, T = 4, n = B * T * 3 * 32 * 32;
    const i = arange(0, n, 1);
    const inputs = {
      x: i.mul(0.011).sin().reshape([B, T, 3, 32, 32]),
      x0: i.mul(0.005).cos().reshape([B, T, 3, 32, 32]),
      timesteps: tensor([321]),
      frameIndices: tensor([[0, 2, 5, 9]], { dtype: 'int64' }),
      obsMask: tensor([[1, 0, 1, 0]]),
      latentMask: tensor([[0, 1, 0, 1]]),
    };
    const run = () => m.forward(inputs);
    const diff = (a: ReturnType<typeof run>, b: ReturnType<typeof run>) => a.sub(b).abs().max().item();
    const first = noGrad(run);
    assert.equal(diff(noGrad(run), first), 0, 'a second no-grad forward (kept weights) gives the same output');
    // An optimiser step writes every parameter in place (natively: no ATen operator involved).
    const opt = new AdamW(m, { lr: 1e-2 });
    for (const p of m.parameters()) p.setGrad(onesLike(p));
    opt.step();
    opt.dispose();
    for (const p of m.parameters()) p.zeroGrad();
    const after = noGrad(run);
    const fresh = run().detach(); // grad mode: every joined weight made from the parameters now
    assert.ok(diff(after, first) > 1e-3, 'the step changed the output');
    assert.ok(diff(after, fresh) < 1e-5, `after the step, kept vs fresh weights: ${diff(after, fresh)}`);
  });
  m.dispose();
  assert.equal(liveTensorCount(), before);
});
