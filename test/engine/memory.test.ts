/**
 * Deterministic memory management: tidy scopes, keep, dispose/using, the live-tensor and
 * native-byte counters, and the garbage-collector safety net.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import * as E from '../../src/engine/index.ts';

test('tidy frees everything created inside except what it returns (nested containers too)', () => {
  const before = E.liveTensorCount();
  const out = E.tidy(() => {
    const a = E.ones([4]);
    const b = a.mul(2).add(1); // intermediate freed
    return { sum: b.sum(), list: [b.mul(3)], map: new Map([['k', b.neg()]]) };
  });
  assert.equal(E.liveTensorCount(), before + 3);
  assert.equal(out.sum.item(), 12);
  assert.deepEqual(out.list[0]!.toArray(), [9, 9, 9, 9]);
  E.disposeAll(out);
  assert.equal(E.liveTensorCount(), before);
});

test('nested scopes: returned tensors move to the parent; keep() escapes every scope', () => {
  const before = E.liveTensorCount();
  let kept: E.Tensor | undefined;
  const outer = E.tidy(() => {
    const inner = E.tidy(() => {
      kept = E.keep(E.full([2], 5));
      E.zeros([10]); // freed by the inner scope
      return E.ones([3]);
    });
    assert.equal(inner.isDisposed, false);
    return inner.sum(); // `inner` itself is freed by the outer scope
  });
  assert.equal(outer.item(), 3);
  assert.equal(kept!.isDisposed, false);
  assert.equal(E.liveTensorCount(), before + 2);
  outer.dispose();
  kept!.dispose();
  assert.equal(E.liveTensorCount(), before);
  assert.equal(E.scopeDepth(), 0);
});

test('tidy frees its tensors when fn throws, and rejects async functions', () => {
  const before = E.liveTensorCount();
  assert.throws(() => E.tidy(() => {
    E.ones([100]);
    throw new Error('inside');
  }), /inside/);
  assert.equal(E.liveTensorCount(), before);
  assert.equal(E.scopeDepth(), 0);
  assert.throws(() => E.tidy(() => Promise.resolve(1) as never), /Promise/);
});

test('dispose() is idempotent, `using` disposes, use after dispose is a TorchError', () => {
  const before = E.liveTensorCount();
  const t = E.ones([2]);
  t.dispose();
  t.dispose();
  assert.equal(t.isDisposed, true);
  assert.throws(() => t.add(1), E.TorchError);
  assert.throws(() => t.shape, /after dispose/);
  {
    using u = E.ones([2]);
    assert.equal(u.isDisposed, false);
    assert.equal(E.liveTensorCount(), before + 1);
  }
  assert.equal(E.liveTensorCount(), before);
});

test('liveTensorBytes counts distinct storages (views share one)', () => {
  E.tidy(() => {
    const b0 = E.liveTensorBytes().cpu;
    const x = E.zeros([1000], { dtype: 'float64' });
    assert.equal(E.liveTensorBytes().cpu - b0, 8000);
    x.view([10, 100]);
    x.narrow(0, 0, 10);
    assert.equal(E.liveTensorBytes().cpu - b0, 8000);
    E.zeros([10], { dtype: 'int32' });
    assert.equal(E.liveTensorBytes().cpu - b0, 8040);
    assert.equal(E.liveTensorBytes().cuda, 0);
  });
});

test('garbage-collector safety net frees forgotten tensors', async () => {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const before = E.liveTensorCount();
  (() => {
    for (let i = 0; i < 50; i++) E.ones([8]); // never disposed, never referenced
  })();
  assert.equal(E.liveTensorCount(), before + 50);
  for (let i = 0; i < 20 && E.liveTensorCount() > before; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(E.liveTensorCount(), before);
});

test('caching CPU allocator: a freed buffer is kept and handed to the next tensor of its size, never to two live tensors', (t) => {
  if (!E.setCpuCache(true)) return t.skip('FLEXVID_CPU_CACHE=0');
  try {
    const n = 1 << 16; // 256 KiB of float32: inside the cached size range
    const base = E.cpuCacheBytes();
    const a = E.full([n], 1);
    a.dispose();
    assert.equal(E.cpuCacheBytes(), base + 4 * n, 'the freed buffer is cached');
    const b = E.full([n], 2); // takes it back
    assert.equal(E.cpuCacheBytes(), base);
    const c = E.full([n], 3); // the cache has no second one: a fresh buffer
    assert.equal(E.cpuCacheBytes(), base);
    assert.deepEqual([b.max().item(), b.min().item(), c.max().item(), c.min().item()], [2, 2, 3, 3]);
    E.disposeAll([b, c]);
    assert.equal(E.cpuCacheBytes(), base + 8 * n);
    // sizes outside the range pass through
    E.full([100], 1).dispose();
    E.full([5 << 20], 1).dispose(); // 20 MiB
    assert.equal(E.cpuCacheBytes(), base + 8 * n);
    // off: frees the cache and allocates through libtorch's allocator
    E.setCpuCache(false);
    assert.equal(E.cpuCacheBytes(), 0);
    E.full([n], 1).dispose();
    assert.equal(E.cpuCacheBytes(), 0);
  } finally {
    E.setCpuCache(true);
  }
});
