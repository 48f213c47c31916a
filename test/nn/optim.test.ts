/**
 * AdamW: a hand-computed two-step case, bit-exact agreement with torch.optim.AdamW (fixture),
 * skipped parameters without gradients, lr changes, state save/restore, no leaked temporaries, and
 * the one-pass native update (flexvid::adamw_) bit-identical to the per-operator path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as E from '../../src/engine/index.ts';
import { AdamW, Linear, loadOptimizer, saveOptimizer, setFusedAdamW, setInitSeed, type AdamWScalars } from '../../src/nn/index.ts';
import { OptionError } from '../../src/util/errors.ts';
import { StateDictError } from '../../src/nn/module.ts';
import { assertClose, det, torchReference } from '../engine/helpers.ts';

const f64 = (v: number[]) => E.tensor(Float64Array.from(v));

test('AdamW: two steps by hand (float64)', () => {
  E.tidy(() => {
    const p = E.keep(f64([1, -2]).requiresGrad_());
    const opt = new AdamW([p], { lr: 0.1, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.1 });
    // step 1: g = [0.5, 0.5]
    p.setGrad(f64([0.5, 0.5]));
    opt.step();
    // θ ← θ(1 − 0.01); m = 0.05; v = 0.00025; m̂ = 0.5; v̂ = 0.25; θ ← θ − 0.1 · 0.5 / (0.5 + 1e-8)
    const s1 = [1 * 0.99 - (0.1 / 0.1) * 0.05 / (Math.sqrt(0.00025) / Math.sqrt(0.001) + 1e-8), -2 * 0.99 - (0.1 / 0.1) * 0.05 / (Math.sqrt(0.00025) / Math.sqrt(0.001) + 1e-8)];
    assertClose(p.toArray(), s1, { atol: 1e-15, rtol: 0 });
    assertClose(p.toArray(), [0.89, -2.08], { atol: 1e-7, rtol: 0 });
    // step 2: g = [-1, 0]
    p.setGrad(f64([-1, 0]));
    opt.step();
    const m = [0.9 * 0.05 + 0.1 * -1, 0.9 * 0.05];
    const v = [0.999 * 0.00025 + 0.001 * 1, 0.999 * 0.00025];
    const bc1 = 1 - 0.9 ** 2;
    const bc2 = 1 - 0.999 ** 2;
    const s2 = s1.map((x, i) => x * 0.99 - (0.1 / bc1) * m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + 1e-8));
    assertClose(p.toArray(), s2, { atol: 1e-15, rtol: 0 });
    assert.equal(opt.stepCount('0'), 2);
    opt.dispose();
    p.dispose();
  });
});

test('AdamW matches torch.optim.AdamW bit for bit (fixture; a parameter without gradient is skipped)', () => {
  const ref = torchReference().adamw as { lr: number; betas: [number, number]; eps: number; weight_decay: number; trajectory: Record<string, number[] | number>[] }[];
  for (const c of ref) {
    const p1 = E.keep(det([3, 2], 0.7, 0.1, 'float32').requiresGrad_());
    const p2 = E.keep(det([4], 1.1, 0.3, 'float32').requiresGrad_());
    const opt = new AdamW([p1, p2], { lr: c.lr, betas: c.betas, eps: c.eps, weightDecay: c.weight_decay });
    c.trajectory.forEach((want, s) => {
      E.tidy(() => {
        p1.setGrad(det([3, 2], 0.9 + 0.1 * s, 0.2 * s, 'float32'));
        if (s === 1) p2.zeroGrad();
        else p2.setGrad(det([4], 1.7, 0.5 * s, 'float32').mul(10));
        opt.step();
        const what = `lr=${c.lr} step ${s + 1}`;
        assert.deepEqual(p1.toArray(), want.p1, `${what}: p1`);
        assert.deepEqual(p2.toArray(), want.p2, `${what}: p2`);
        const st = opt.stateDict();
        assert.deepEqual(st.tensors.get('0.exp_avg')!.toArray(), want.exp_avg1, `${what}: exp_avg`);
        assert.deepEqual(st.tensors.get('0.exp_avg_sq')!.toArray(), want.exp_avg_sq1, `${what}: exp_avg_sq`);
        assert.equal(opt.stepCount('0'), want.step1);
        assert.equal(opt.stepCount('1'), want.step2);
      });
    });
    opt.dispose();
    p1.dispose();
    p2.dispose();
  }
});

test('AdamW: setLr, zeroGrad, named parameters from a Module, option validation', () => {
  setInitSeed(1);
  const lin = new Linear(3, 2);
  const opt = new AdamW(lin, { lr: 1e-3 });
  assert.deepEqual(opt.params.map(([n]) => n), ['weight', 'bias']);
  opt.setLr(5e-4);
  assert.equal(opt.lr, 5e-4);
  E.tidy(() => lin.forward(E.ones([1, 3])).sum().backward());
  assert.notEqual(lin.param('weight').grad, null);
  opt.zeroGrad();
  assert.equal(lin.param('weight').grad, null);
  assert.throws(() => opt.setLr(-1), OptionError);
  assert.throws(() => new AdamW(lin, { betas: [1, 0.9] }), OptionError);
  assert.throws(() => new AdamW([lin.param('weight'), lin.param('bias')].map((p) => ['x', p] as const)), /unique parameter names/);
  opt.dispose();
  lin.dispose();
});

test('AdamW: state saved to a checkpoint and restored continues identically', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-adamw-'));
  const file = path.join(dir, 'opt000002.safetensors');
  const pa = E.keep(det([2, 3], 0.5, 0, 'float32').requiresGrad_());
  const pb = E.keep(pa.detach().clone().requiresGrad_());
  const a = new AdamW([['w', pa]], { lr: 0.01, weightDecay: 0.05 });
  const b = new AdamW([['w', pb]], { lr: 0.5, weightDecay: 0.05 });
  const grad = (s: number) => det([2, 3], 0.3 + s, s, 'float32');
  try {
    for (let s = 0; s < 2; s++) {
      E.tidy(() => pa.setGrad(grad(s)));
      a.step();
    }
    saveOptimizer(file, a, { step: '2' });
    E.noGrad(() => pb.copy_(pa));
    const meta = loadOptimizer(file, b);
    assert.equal(meta.step, '2');
    assert.equal(b.lr, 0.01); // restored like PyTorch
    assert.equal(b.stepCount('w'), 2);
    for (let s = 2; s < 5; s++) {
      E.tidy(() => {
        pa.setGrad(grad(s));
        pb.setGrad(grad(s));
      });
      a.step();
      b.step();
    }
    assert.deepEqual(pb.toArray(), pa.toArray());
    // a state for other parameter names is rejected with every problem listed
    const scalars: AdamWScalars = { ...a.stateDict().scalars, steps: { v: 1 } };
    assert.throws(() => b.loadStateDict({ tensors: new Map(), scalars }), (e: Error) => e instanceof StateDictError && /unexpected parameter v/.test(e.message));
    const wrong = E.keep(E.zeros([3, 2]));
    assert.throws(
      () => b.loadStateDict({ tensors: { 'w.exp_avg': wrong, 'w.exp_avg_sq': wrong }, scalars: a.stateDict().scalars }),
      /w\.exp_avg: expected \[2, 3\], got \[3, 2\]/,
    );
    wrong.dispose();
  } finally {
    a.dispose();
    b.dispose();
    pa.dispose();
    pb.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('AdamW.step frees every temporary (live tensor count unchanged after the first step)', () => {
  const p = E.keep(det([4, 4], 0.5, 0, 'float32').requiresGrad_());
  const opt = new AdamW([p]);
  E.tidy(() => p.setGrad(E.onesLike(p)));
  opt.step(); // creates the two state tensors
  const live = E.liveTensorCount();
  for (let i = 0; i < 5; i++) opt.step();
  assert.equal(E.liveTensorCount(), live);
  opt.dispose();
  p.dispose();
});

test('AdamW: the one-pass native update equals the per-operator path bit for bit (large, odd sizes, float32 and float64)', () => {
  // Sizes straddle the native kernel's 32 768-element work items and SIMD remainders (in float32 on
  // AVX-512 hosts the work items run the streaming-store loop, their last < 16 elements the plain
  // one); four steps with decay and varying gradients exercise every term.
  const sizes = [[1], [7], [33, 3], [32768], [32769], [2, 20001]];
  assert.ok(E.hasOperator('flexvid::adamw_'), 'the native addon registers flexvid::adamw_');
  // Tensors it does not take (a non-contiguous one, mixed dtypes): false and nothing changed, so
  // AdamW falls back to the per-operator path.
  E.tidy(() => {
    const p = E.ones([3, 4]);
    const m = E.zeros([3, 4]);
    const args = (g: E.Tensor) => [[p], [g], [m], [E.zeros([3, 4])], 0.9, 0.9, 0.999, 0.5, 1e-8, 0.1];
    assert.equal(E.aten.callRaw('flexvid::adamw_', args(E.ones([4, 3]).transpose(0, 1))), false);
    assert.equal(E.aten.callRaw('flexvid::adamw_', args(E.ones([3, 4], { dtype: 'float64' }))), false);
    assert.deepEqual([p.sum().item(), m.abs().sum().item()], [12, 0]);
    assert.equal(E.aten.callRaw('flexvid::adamw_', args(E.ones([3, 4]))), true);
    assert.notEqual(p.sum().item(), 12);
  });
  for (const dtype of ['float32', 'float64'] as const) {
    for (const weightDecay of [0, 0.05]) {
      const gen = new E.Generator(1234);
      const runs = [true, false].map((fused) => {
        const params = sizes.map((shape, i) => E.keep(E.tidy(() => E.randn(shape, gen, { dtype }).mul(0.3 + 0.1 * i)).requiresGrad_()));
        return { fused, params, opt: new AdamW(params, { lr: 3e-3, weightDecay }) };
      });
      // Identical starting points.
      E.tidy(() => runs[1]!.params.forEach((p, i) => E.noGrad(() => p.copy_(runs[0]!.params[i]!))));
      const start = runs[0]!.params.map((p) => p.toArray() as number[]);
      for (let s = 0; s < 4; s++) {
        E.tidy(() => {
          const grads = sizes.map((shape) => E.randn(shape, gen, { dtype }).mul(s % 2 ? 1e-3 : 2));
          for (const r of runs) {
            r.params.forEach((p, i) => p.setGrad(grads[i]!.clone()));
            const prev = setFusedAdamW(r.fused);
            try {
              const ops = E.profile(() => r.opt.step()).rows.map((row) => row.name);
              // The fused run really took the native pass (else the comparison would be vacuous).
              assert.equal(ops.includes('flexvid::adamw_') && !ops.some((n) => n.includes('_foreach_')), r.fused, `${dtype} fused=${r.fused}: ${ops.join(', ')}`);
            } finally {
              setFusedAdamW(prev);
            }
          }
        });
        E.tidy(() => {
          const [a, b] = runs.map((r) => r.opt.stateDict());
          for (let i = 0; i < sizes.length; i++) {
            const what = `${dtype} wd=${weightDecay} step ${s + 1} tensor ${i}`;
            assert.deepEqual(runs[0]!.params[i]!.toArray(), runs[1]!.params[i]!.toArray(), `${what}: parameter`);
            assert.deepEqual(a!.tensors.get(`${i}.exp_avg`)!.toArray(), b!.tensors.get(`${i}.exp_avg`)!.toArray(), `${what}: exp_avg`);
            assert.deepEqual(a!.tensors.get(`${i}.exp_avg_sq`)!.toArray(), b!.tensors.get(`${i}.exp_avg_sq`)!.toArray(), `${what}: exp_avg_sq`);
          }
        });
      }
      // The updates moved every parameter (so the equality is not vacuous).
      runs[0]!.params.forEach((p, i) => assert.notDeepEqual(p.toArray(), start[i], `${dtype} wd=${weightDecay}: tensor ${i} moved`));
      for (const r of runs) {
        r.opt.dispose();
        r.params.forEach((p) => p.dispose());
      }
    }
  }
});
