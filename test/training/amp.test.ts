/**
 * Mixed precision: the fp16 loss scaler against the reference's rules (§6.5), bf16 autocast of the
 * U-Net (float32 outputs close to the float32 model), a short bf16 training run, and refusal of
 * fp16 on a CPU with the flag named.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from '../../src/engine/index.ts';
import { Linear, setInitSeed } from '../../src/nn/index.ts';
import { UNetVideoModel } from '../../src/model/unet.ts';
import { INITIAL_LG_LOSS_SCALE, MixedPrecision } from '../../src/training/amp.ts';
import { train } from '../../src/training/loop.ts';
import { OptionError } from '../../src/util/errors.ts';
import { tinyBalls, tinyOptions } from './helpers.ts';

test('fp16 loss scaling: scale 2^20, unscale exact, overflow skips and halves, growth per good step', () => {
  E.tidy(() => {
    const amp = new MixedPrecision('fp16', 'cuda', 0.25); // the scaler itself needs no GPU
    assert.equal(amp.lgLossScale, INITIAL_LG_LOSS_SCALE);
    const layer = new Linear(3, 2);
    const x = E.tensor([[1, 2, 3]]);
    // reference gradient without scaling
    layer.forward(x).sum().backward();
    const ref = layer.param('weight').grad!.toArray() as number[];
    for (const p of layer.parameters()) p.zeroGrad();

    const loss = layer.forward(x).sum();
    assert.equal(amp.scaleLoss(loss).item(), loss.item() * 2 ** 20);
    amp.scaleLoss(loss).backward();
    assert.equal(amp.unscaleGradients(layer), true);
    assert.deepEqual(layer.param('weight').grad!.toArray(), ref, 'powers of two unscale exactly');
    amp.afterStep();
    assert.equal(amp.lgLossScale, 20.25);

    for (const p of layer.parameters()) p.zeroGrad();
    layer.forward(x).sum().backward();
    E.noGrad(() => layer.param('bias').grad!.fill_(Infinity));
    // grad() hands out a new handle of the same gradient: writing through it changes the stored gradient
    assert.equal(amp.unscaleGradients(layer), false, 'non-finite gradients: skip the step');
    assert.equal(amp.lgLossScale, 19.25);
    assert.equal(layer.param('weight').grad!.abs().sum().item(), 0, 'gradients zeroed');
    layer.dispose();
  });
});

test('bf16 mode needs no scaling; fp16 is refused on a CPU', () => {
  E.tidy(() => {
    const amp = new MixedPrecision('bf16', 'cpu');
    const l = E.scalarTensor(3);
    assert.equal(amp.scaleLoss(l).item(), 3);
    assert.equal(amp.scaling, false);
    assert.throws(() => new MixedPrecision('fp16', 'cpu'), (e: Error) => e instanceof OptionError && /--amp/.test(e.message) && /fp16 needs CUDA/.test(e.message));
    assert.equal(new MixedPrecision('off', 'cpu').forward(() => E.matmul(E.ones([2, 2]), E.ones([2, 2])).dtype), 'float32');
    assert.equal(amp.forward(() => E.matmul(E.ones([2, 2]), E.ones([2, 2])).dtype), 'bfloat16');
  });
});

test('the U-Net under bf16 autocast returns float32 close to the float32 forward', () => {
  E.tidy(() => {
    setInitSeed(3);
    const model = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2 });
    // the output convolutions are zero-initialised: perturb every parameter so the output depends on all layers
    const g = new E.Generator(5);
    E.noGrad(() => {
      for (const p of model.parameters()) p.add_(E.randn(p.shape, g).mul(0.05));
    });
    const [B, T] = [1, 4];
    const x = E.randn([B, T, 3, 32, 32], g);
    const obs = E.tensor([[1, 0, 0, 0]]);
    const inputs = { x, x0: x, timesteps: E.tensor([300]), frameIndices: E.tensor([[0, 1, 2, 3]]), obsMask: obs, latentMask: obs.rsub(1) };
    const ref = E.inferenceMode(() => model.forward(inputs));
    const half = E.inferenceMode(() => E.autocast('cpu', () => model.forward(inputs)));
    assert.equal(half.dtype, 'float32');
    const rel = half.sub(ref).norm().item() / ref.norm().item();
    assert.ok(rel > 0 && rel < 5e-2, `relative error ${rel}`);
    model.dispose();
  });
});

test('a short bf16 training run logs finite losses; --amp fp16 on a CPU is refused naming the flag', async () => {
  const data = await tinyBalls();
  const r = await train(tinyOptions(data, { amp: 'bf16', maxSteps: 3 }));
  const lines = fs.readFileSync(path.join(r.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  const losses = lines.filter((l) => 'loss' in l).map((l) => l.loss!);
  assert.ok(losses.length >= 3, `${losses.length} logged losses`);
  for (const v of losses) assert.ok(Number.isFinite(v) && v > 0, String(v));
  const cfg = JSON.parse(fs.readFileSync(path.join(r.runDir, 'config.json'), 'utf8')) as { amp: string };
  assert.equal(cfg.amp, 'bf16');
  await assert.rejects(train(tinyOptions(data, { amp: 'fp16', maxSteps: 1, device: 'cpu' })), (e: Error) => e instanceof OptionError && /--amp/.test(e.message));
});
