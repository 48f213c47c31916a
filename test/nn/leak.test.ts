/**
 * A training loop of 1000 forward/backward/AdamW steps (plus EMA, grad-norm logging and clipping)
 * on a tiny conv net keeps the number of live native tensors and their bytes constant.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { AdamW, Conv2d, EMA, GroupNorm, Sequential, SiLU, clipGradNorm, gradNorm, setInitSeed } from '../../src/nn/index.ts';

test('1000 training steps: liveTensorCount() and native bytes stay constant', () => {
  setInitSeed(0);
  const net = new Sequential(new Conv2d(2, 4, 3, { padding: 1 }), new GroupNorm(2, 4), new SiLU(), new Conv2d(4, 2, 3, { padding: 1 }));
  const opt = new AdamW(net, { lr: 1e-3, weightDecay: 0.01 });
  const ema = new EMA(net, [0.999, 0.9]);
  const gen = new E.Generator(0);
  const x = E.randn([2, 2, 6, 6], gen);
  const target = E.randn([2, 2, 6, 6], gen);

  const step = (i: number): number => {
    opt.zeroGrad();
    const loss = E.tidy(() => {
      const l = E.mseLoss(net.forward(x), target);
      l.backward();
      return l.item();
    });
    gradNorm(net);
    clipGradNorm(net, 1.0);
    opt.setLr(1e-3 * (1 - i / 2000));
    opt.step();
    ema.update();
    return loss;
  };

  const first = step(0); // creates optimiser state
  const live = E.liveTensorCount();
  const bytes = E.liveTensorBytes().cpu;
  let last = first;
  for (let i = 1; i < 1000; i++) {
    last = step(i);
    if (i % 250 === 0) assert.equal(E.liveTensorCount(), live, `live tensors changed at step ${i}`);
  }
  assert.equal(E.liveTensorCount(), live);
  assert.equal(E.liveTensorBytes().cpu, bytes);
  assert.ok(last < first, `loss decreased (${first} → ${last})`);
  assert.equal(E.scopeDepth(), 0);
  for (const d of [net, opt, ema, x, target]) d.dispose();
});
