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
