/**
 * CUDA device support. Runs only where the libtorch has CUDA and a device is visible; elsewhere
 * every test is skipped with the reason printed by the test runner.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { assertClose, det } from './helpers.ts';

const skip = E.cudaAvailable() ? false : `no CUDA device (libtorch ${E.torchVersion()}, cudaAvailable() = false)`;

test('cuda: tensors move to the device and back unchanged', { skip }, () => {
  E.tidy(() => {
    const x = det([3, 4], 0.37, 0, 'float32');
    const g = x.to({ device: 'cuda' });
    assert.match(g.device, /^cuda/);
    assert.deepEqual(Array.from(g.toFloat32Array()), Array.from(x.toFloat32Array()));
    assert.ok(E.liveTensorBytes().cuda >= 48);
    assert.equal(E.zeros([2], { device: 'cuda:0' }).device, 'cuda:0');
    assert.ok(E.cudaDeviceCount() >= 1);
  });
});

test('cuda: ops and autograd agree with the CPU', { skip }, () => {
  E.tidy(() => {
    const x = det([2, 3, 6, 6], 0.37, 0, 'float64');
    const w = det([4, 3, 3, 3], 0.11, 0, 'float64');
    const cpu = E.conv2d(x, w, null, { padding: 1 }).silu().sum();
    const xg = x.to({ device: 'cuda' }).requiresGrad_();
    const wg = w.to({ device: 'cuda' });
    const gpu = E.conv2d(xg, wg, null, { padding: 1 }).silu().sum();
    assertClose([gpu.item()], [cpu.item()], { atol: 1e-9 });
    gpu.backward();
    assert.match(xg.grad!.device, /^cuda/);
  });
});

test('cuda: seeded generators are reproducible and restorable', { skip }, () => {
  E.tidy(() => {
    const g = new E.Generator(3, 'cuda');
    const state = g.getState();
    const a = E.randn([8], g, { device: 'cuda' }).toArray();
    g.setState(state);
    assert.deepEqual(E.randn([8], g, { device: 'cuda' }).toArray(), a);
    assert.deepEqual(E.randn([8], new E.Generator(3, 'cuda'), { device: 'cuda' }).toArray(), a);
  });
});

test('cuda: pinned host memory and asynchronous copies; fp16 and bf16 autocast', { skip }, () => {
  E.tidy(() => {
    const x = det([64, 32], 0.37, 0, 'float32');
    const p = x.pinMemory();
    assert.equal(p.isPinned(), true);
    assert.equal(x.isPinned(), false);
    const g = p.to({ device: 'cuda', nonBlocking: true });
    assert.deepEqual(Array.from(g.toFloat32Array()), Array.from(x.toFloat32Array()));
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const y = E.autocast('cuda', () => E.matmul(g, g.transpose(0, 1)), dtype);
      assert.equal(y.dtype, dtype);
      const exact = E.matmul(g, g.transpose(0, 1));
      assert.ok(y.to({ dtype: 'float32' }).sub(exact).abs().max().item() / exact.abs().max().item() < 2e-2);
    }
  });
});

test('without CUDA: nothing is pinned and pinning fails with a libtorch error', { skip: E.cudaAvailable() ? 'a CUDA device is present' : false }, () => {
  E.tidy(() => {
    const x = E.zeros([4]);
    assert.equal(x.isPinned(), false);
    assert.throws(() => x.pinMemory(), E.TorchError);
  });
});
