/**
 * Tensor API: dtypes and casts, creation, views (shared storage), broadcasting, reductions,
 * sorting, and functional ops with non-default arguments against PyTorch reference values.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { assertClose, det, torchReference } from './helpers.ts';

test('dtypes: creation from typed arrays keeps the dtype and the bytes', () => {
  E.tidy(() => {
    const cases: [E.DType, ArrayLike<number> & { BYTES_PER_ELEMENT: number }][] = [
      ['float32', Float32Array.of(1.5, -2.25, 3)],
      ['float64', Float64Array.of(1 / 3, -2, 1e300)],
      ['int32', Int32Array.of(-7, 0, 2 ** 31 - 1)],
      ['uint8', Uint8Array.of(0, 128, 255)],
    ];
    for (const [dtype, arr] of cases) {
      const t = E.tensor(arr as never);
      assert.equal(t.dtype, dtype);
      assert.deepEqual(t.shape, [3]);
      assert.deepEqual(Array.from(t.toTypedArray() as ArrayLike<number>), Array.from(arr));
    }
    const big = E.tensor(BigInt64Array.of(-(2n ** 40n), 5n));
    assert.equal(big.dtype, 'int64');
    assert.deepEqual(big.toArray(), [-(2 ** 40), 5]);
    const b = E.tensor([true, false, true]);
    assert.equal(b.dtype, 'bool');
    assert.deepEqual(b.toArray(), [1, 0, 1]);
    const nested = E.tensor([[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual(nested.shape, [2, 3]);
    assert.equal(nested.dtype, 'float32');
    assert.equal(E.tensor([1, 2], { dtype: 'int32' }).dtype, 'int32');
  });
});

test('dtypes: float16 / bfloat16 storage and casts round like PyTorch', () => {
  E.tidy(() => {
    const x = E.tensor(Float32Array.of(1, 1 / 3, 65504, 70000, 1e-8, -2.5));
    const h = x.half();
    assert.equal(h.dtype, 'float16');
    assert.equal(h.toBytes().length, 12);
    // 1/3 → 0.333251953125 in binary16; 70000 overflows to +inf; 1e-8 underflows to 0.
    assert.deepEqual(Array.from(h.toFloat32Array()), [1, 0.333251953125, 65504, Infinity, 0, -2.5]);
    const bf = x.bfloat16();
    assert.equal(bf.dtype, 'bfloat16');
    assert.deepEqual(Array.from(bf.toFloat32Array()).slice(0, 2), [1, 0.333984375]);
    // half-precision bit patterns from a Uint16Array
    assert.deepEqual(Array.from(E.tensor(Uint16Array.of(0x3c00, 0xc000), { dtype: 'float16' }).toFloat32Array()), [1, -2]);
    assert.deepEqual(Array.from(E.tensor(Uint16Array.of(0x3f80), { dtype: 'bfloat16' }).toFloat32Array()), [1]);
    assert.throws(() => E.tensor(Uint16Array.of(1)), /float16 or bfloat16 bits/);
    // float16 bytes round-trip bit-exactly through fromBytes.
    const back = E.fromBytes(h.toBytes(), [6], 'float16');
    assert.deepEqual(Array.from(back.toBytes()), Array.from(h.toBytes()));
    assert.equal(x.double().dtype, 'float64');
    assert.deepEqual(E.tensor([1.7, -1.7]).long().toArray(), [1, -1]);
    assert.deepEqual(E.tensor([0, 2]).to({ dtype: 'bool' }).toArray(), [0, 1]);
  });
});

test('creation: zeros/ones/full/arange/linspace/eye/empty/scalar', () => {
  E.tidy(() => {
    assert.deepEqual(E.zeros([2, 2]).toArray(), [0, 0, 0, 0]);
    assert.deepEqual(E.ones([3], { dtype: 'int32' }).toArray(), [1, 1, 1]);
    assert.deepEqual(E.full([2], 7.5, { dtype: 'float64' }).toArray(), [7.5, 7.5]);
    const a = E.arange(5);
    assert.equal(a.dtype, 'int64');
    assert.deepEqual(a.toArray(), [0, 1, 2, 3, 4]);
    assert.deepEqual(E.arange(1, 2, 0.25).toArray(), [1, 1.25, 1.5, 1.75]);
    assert.equal(E.arange(1, 2, 0.25).dtype, 'float32');
    assert.deepEqual(E.linspace(-1, 1, 5).toArray(), [-1, -0.5, 0, 0.5, 1]);
    assert.deepEqual(E.eye(2, { dtype: 'float64' }).toArray(), [1, 0, 0, 1]);
    assert.deepEqual(E.empty([0, 3]).shape, [0, 3]);
    const s = E.scalarTensor(3.5);
    assert.deepEqual(s.shape, []);
    assert.equal(s.item(), 3.5);
    assert.deepEqual(E.zerosLike(E.ones([2], { dtype: 'float64' })).dtype, 'float64');
    assert.deepEqual(E.fullLike(E.ones([2]), 4).toArray(), [4, 4]);
  });
});

test('views share storage: in-place writes through a view reach the base', () => {
  E.tidy(() => {
    const base = E.arange(12, undefined, 1, { dtype: 'float32' });
    const v = base.view([3, 4]);
    v.narrow(0, 1, 1).fill_(-1); // row 1
    assert.deepEqual(base.toArray().slice(4, 8), [-1, -1, -1, -1]);
    const t = base.view([3, 4]).transpose(0, 1); // non-contiguous view
    assert.equal(t.isContiguous(), false);
    assert.deepEqual(t.strides(), [1, 4]);
    t.select(0, 0).mul_(10); // column 0 of the [3,4] view
    assert.deepEqual([base.toArray()[0], base.toArray()[4], base.toArray()[8]], [0, -10, 80]);
    assert.throws(() => t.view([12]), /view/);
    assert.deepEqual(t.reshape([12]).shape, [12]); // reshape copies when needed
    const c = t.contiguous();
    assert.equal(c.isContiguous(), true);
    // expand is a zero-stride view
    const e = E.tensor([1, 2]).view([2, 1]).expand([2, 3]);
    assert.deepEqual(e.strides(), [1, 0]);
    assert.deepEqual(e.toArray(), [1, 1, 1, 2, 2, 2]);
    // slice with a step and negative bounds
    assert.deepEqual(E.arange(10).slice(0, 1, -1, 3).toArray(), [1, 4, 7]);
    assert.deepEqual(E.arange(6).reshape([2, 3]).permute([1, 0]).toArray(), [0, 3, 1, 4, 2, 5]);
    assert.deepEqual(E.ones([2, 1, 3]).squeeze(1).shape, [2, 3]);
    assert.deepEqual(E.ones([2, 3]).unsqueeze(-1).shape, [2, 3, 1]);
    assert.deepEqual(E.ones([2, 3, 4]).flatten(1).shape, [2, 12]);
    assert.deepEqual(E.ones([2, 12]).unflatten(1, [3, 4]).shape, [2, 3, 4]);
  });
});

test('channels-last memory format', () => {
  E.tidy(() => {
    const x = det([2, 3, 4, 5], 0.37, 0, 'float32');
    const cl = x.contiguous('channelsLast');
    assert.equal(cl.isContiguous('channelsLast'), true);
    assert.equal(cl.isContiguous(), false);
    assert.deepEqual(cl.strides(), [60, 1, 15, 3]);
    assert.deepEqual(Array.from(cl.toFloat32Array()), Array.from(x.toFloat32Array())); // logical order unchanged
    const w = det([4, 3, 3, 3], 0.1, 0, 'float32');
    const y1 = E.conv2d(x, w, null, { padding: 1 });
    const y2 = E.conv2d(cl, w.contiguous('channelsLast'), null, { padding: 1 });
    assertClose(y2.toFloat32Array(), y1.toFloat32Array(), { atol: 1e-5 });
    assert.equal(E.ones([1, 2, 3, 4, 5]).contiguous('channelsLast3d').isContiguous('channelsLast3d'), true);
    assert.equal(cl.clone().isContiguous('channelsLast'), true); // clone preserves the format
  });
});

test('indexing: index_select, gather, scatter, masked fill, advanced index, chunk/split/cat/stack', () => {
  E.tidy(() => {
    const x = E.arange(12, undefined, 1, { dtype: 'float32' }).reshape([3, 4]);
    const i = E.tensor(BigInt64Array.of(2n, 0n));
    assert.deepEqual(x.indexSelect(0, i).toArray(), [8, 9, 10, 11, 0, 1, 2, 3]);
    const gi = E.tensor(BigInt64Array.of(3n, 0n, 1n, 1n, 2n, 0n), { shape: [3, 2] });
    assert.deepEqual(x.gather(1, gi).toArray(), [3, 0, 5, 5, 10, 8]);
    const s = E.zeros([2, 3]).scatter(1, E.tensor(BigInt64Array.of(2n, 0n), { shape: [2, 1] }), E.tensor([[5], [6]]));
    assert.deepEqual(s.toArray(), [0, 0, 5, 6, 0, 0]);
    const sa = E.zeros([3]).scatterAdd(0, E.tensor(BigInt64Array.of(1n, 1n, 2n)), E.tensor([1, 2, 3]));
    assert.deepEqual(sa.toArray(), [0, 3, 3]);
    assert.deepEqual(x.maskedFill(x.gt(8), -1).toArray().slice(8), [8, -1, -1, -1]);
    assert.deepEqual(x.index([E.tensor(BigInt64Array.of(0n, 2n)), E.tensor(BigInt64Array.of(1n, 3n))]).toArray(), [1, 11]);
    const y = E.zeros([3]);
    y.indexPut_([E.tensor(BigInt64Array.of(0n, 0n))], E.tensor([1, 2]), true);
    assert.deepEqual(y.toArray(), [3, 0, 0]);
    const parts = x.chunk(2, 1);
    assert.deepEqual(parts.map((p) => p.shape), [[3, 2], [3, 2]]);
    assert.deepEqual(x.split(3, 1).map((p) => p.shape), [[3, 3], [3, 1]]);
    assert.deepEqual(E.cat(parts, 1).toArray(), x.toArray());
    assert.deepEqual(E.stack(parts, 0).shape, [2, 3, 2]);
    assert.deepEqual(x.unbind(0).length, 3);
    assert.deepEqual(E.arange(4).flip([0]).toArray(), [3, 2, 1, 0]);
    assert.deepEqual(E.arange(4).roll([1], [0]).toArray(), [3, 0, 1, 2]);
    assert.deepEqual(E.arange(2).repeatInterleave(2, 0).toArray(), [0, 0, 1, 1]);
    assert.deepEqual(E.ones([2, 2]).triu().toArray(), [1, 1, 0, 1]);
  });
});

test('broadcasting and type promotion follow PyTorch', () => {
  E.tidy(() => {
    const a = E.arange(3, undefined, 1, { dtype: 'float32' }).view([3, 1]);
    const b = E.arange(4, undefined, 1, { dtype: 'float32' });
    const c = a.mul(10).add(b);
    assert.deepEqual(c.shape, [3, 4]);
    assert.deepEqual(c.toArray().slice(4, 8), [10, 11, 12, 13]);
    assert.throws(() => E.ones([2, 3]).add(E.ones([4])), /size of tensor a \(3\) must match the size of tensor b \(4\)/);
    assert.equal(E.arange(3).add(1).dtype, 'int64'); // integer scalar keeps int64
    assert.equal(E.arange(3).add(0.5).dtype, 'float32'); // float scalar promotes to the default float
    assert.equal(E.ones([2], { dtype: 'float64' }).add(E.ones([2])).dtype, 'float64');
    assert.equal(E.ones([2]).gt(0).dtype, 'bool');
    assert.deepEqual(E.tensor([1, 2, 3]).rsub(10).toArray(), [9, 8, 7]);
    assert.deepEqual(E.tensor([-1, 2]).where(E.tensor([true, false]), 0).toArray(), [-1, 0]);
    assert.deepEqual(E.tensor([-2, 0.5, 3]).clamp(-1, 1).toArray(), [-1, 0.5, 1]);
    assert.deepEqual(E.tensor([4, 9]).sqrt().toArray(), [2, 3]);
    assert.deepEqual(E.tensor([2, 3]).pow(2).toArray(), [4, 9]);
    assert.deepEqual(E.tensor([1, 5]).maximum(E.tensor([3, 2])).toArray(), [3, 5]);
    assert.deepEqual(E.tensor([1, 5]).lerp(E.tensor([3, 1]), 0.5).toArray(), [2, 3]);
  });
});

test('reductions: sum, mean, var, max/argmax, min, norm, cumsum, prod, sort, topk', () => {
  E.tidy(() => {
    const x = E.tensor([[1, 5, 3], [4, 2, 6]]);
    assert.equal(x.sum().item(), 21);
    assert.deepEqual(x.sum(0).toArray(), [5, 7, 9]);
    assert.deepEqual(x.sum(1, true).shape, [2, 1]);
    assert.deepEqual(x.mean(1).toArray(), [3, 4]);
    assert.deepEqual(x.var(1).toArray(), [4, 4]);
    assert.deepEqual(x.var(1, { correction: 0 }).toArray().map((v) => Math.round(v * 1e6) / 1e6), [2.666667, 2.666667]);
    assert.equal(x.max().item(), 6);
    const m = x.max(1);
    assert.deepEqual(m.values.toArray(), [5, 6]);
    assert.deepEqual(m.indices.toArray(), [1, 2]);
    assert.deepEqual(x.min(0).values.toArray(), [1, 2, 3]);
    assert.deepEqual(x.argmax(1).toArray(), [1, 2]);
    assert.equal(x.argmin().item(), 0);
    assert.equal(E.tensor([3, 4]).norm().item(), 5);
    assert.deepEqual(E.tensor([[3, 4], [6, 8]]).norm(2, 1).toArray(), [5, 10]);
    assert.deepEqual(x.cumsum(1).toArray(), [1, 6, 9, 4, 6, 12]);
    assert.deepEqual(x.prod(1).toArray(), [15, 48]);
    assert.deepEqual(x.amax([0, 1]).toArray(), [6]);
    const s = x.sort(1, true);
    assert.deepEqual(s.values.toArray(), [5, 3, 1, 6, 4, 2]);
    assert.deepEqual(s.indices.toArray(), [1, 2, 0, 2, 0, 1]);
    const k = x.topk(1, 1);
    assert.deepEqual(k.values.toArray(), [5, 6]);
    assert.deepEqual(x.topk(2, 1, false).indices.toArray(), [0, 2, 1, 0]);
    assert.equal(E.tensor([true, true]).all().item(), 1);
    assert.equal(E.tensor([false, false]).any().item(), 0);
  });
});

test('matmul / bmm / baddbmm / einsum / eigh (float64) by hand', () => {
  E.tidy(() => {
    const a = E.tensor([[1, 2], [3, 4]], { dtype: 'float64' });
    const b = E.tensor([[5, 6], [7, 8]], { dtype: 'float64' });
    assert.deepEqual(E.matmul(a, b).toArray(), [19, 22, 43, 50]);
    assert.deepEqual(E.einsum('ij,jk->ik', [a, b]).toArray(), [19, 22, 43, 50]);
    assert.deepEqual(E.einsum('ii->', [a]).toArray(), [5]);
    assert.deepEqual(E.bmm(a.unsqueeze(0), b.unsqueeze(0)).shape, [1, 2, 2]);
    assert.deepEqual(E.baddbmm(E.ones([1, 2, 2], { dtype: 'float64' }), a.unsqueeze(0), b.unsqueeze(0), 2, 0.5).toArray(), [11.5, 13, 23.5, 27]);
    // Symmetric 2×2 [[2,1],[1,2]]: eigenvalues 1, 3 (ascending), eigenvectors (1,−1)/√2, (1,1)/√2.
    const s = E.tensor([[2, 1], [1, 2]], { dtype: 'float64' });
    const { values, vectors } = E.eigh(s);
    assert.equal(values.dtype, 'float64');
    assertClose(values.toArray(), [1, 3], { atol: 1e-14 });
    const recon = vectors.matmul(E.eye(2, { dtype: 'float64' }).mul(values)).matmul(vectors.mT);
    assertClose(recon.toArray(), s.toArray(), { atol: 1e-14 });
  });
});

test('functional ops with non-default arguments match PyTorch (fixture)', () => {
  const ref = torchReference().ops as Record<string, number[]>;
  const x4 = () => det([2, 4, 5, 6]);
  const q = det([2, 3, 4]);
  const k = det([2, 5, 4], 0.61);
  const v = det([2, 5, 2], 0.83);
  const mask = E.tensor([true, false, true, true, false, true, true, true, false, true, false, true, true, true, true], { shape: [3, 5] });
  const cases: Record<string, () => E.Tensor> = {
    conv2d: () => E.conv2d(x4(), det([6, 2, 3, 3], 0.11), det([6], 0.5), { stride: [2, 1], padding: [1, 2], dilation: [1, 2], groups: 2 }),
    conv1d: () => E.conv1d(det([2, 4, 9]), det([4, 2, 3], 0.23), null, { stride: 2, padding: 1, dilation: 2, groups: 2 }),
    conv3d: () => E.conv3d(det([1, 2, 4, 4, 4]), det([3, 2, 2, 3, 2], 0.19), det([3], 0.7), { stride: [1, 2, 1], padding: [1, 0, 1] }),
    conv_transpose2d: () => E.convTranspose2d(det([1, 4, 3, 3]), det([4, 3, 3, 3], 0.13), det([6], 0.3), { stride: 2, padding: 1, outputPadding: 1, groups: 2 }),
    conv_transpose3d: () => E.convTranspose3d(det([1, 2, 2, 3, 3]), det([2, 2, 2, 2, 2], 0.29), null, { stride: [2, 1, 2], padding: [0, 1, 1] }),
    interp_nearest: () => E.interpolate(det([1, 2, 3, 4]), { scale: 2 }),
    interp_nearest_size: () => E.interpolate(det([1, 2, 3, 4]), { size: [5, 7] }),
    interp_bilinear_ac: () => E.interpolate(det([1, 2, 3, 4]), { size: [5, 7], mode: 'bilinear', alignCorners: true }),
    interp_bilinear: () => E.interpolate(det([1, 2, 3, 4]), { size: [5, 7], mode: 'bilinear' }),
    interp_trilinear: () => E.interpolate(det([1, 1, 2, 3, 3]), { scale: 2, mode: 'trilinear' }),
    avg_pool2d: () => E.avgPool2d(x4(), 3, { stride: 2, padding: 1 }),
    max_pool2d: () => E.maxPool2d(x4(), 2),
    avg_pool3d: () => E.avgPool3d(det([1, 2, 4, 4, 4]), 2),
    max_pool3d: () => E.maxPool3d(det([1, 2, 4, 4, 4]), 2, { stride: 1 }),
    adaptive_avg_pool2d: () => E.adaptiveAvgPool2d(x4(), [2, 3]),
    group_norm: () => E.groupNorm(x4(), 2, det([4], 0.9, 1), det([4], 0.4)),
    layer_norm: () => E.layerNorm(x4(), [5, 6], det([5, 6], 0.2, 1), det([5, 6], 0.3)),
    var_unbiased: () => x4().var([1, 3]),
    var_pop: () => x4().var(2, { correction: 0 }),
    norm_fro: () => x4().norm(),
    norm_dim: () => x4().norm(3, 1),
    cumsum: () => x4().cumsum(2),
    einsum: () => E.einsum('bij,bjk->bik', [det([2, 3, 4]), det([2, 4, 5], 0.7)]),
    baddbmm: () => E.baddbmm(det([2, 3, 5], 0.1), det([2, 3, 4]), det([2, 4, 5], 0.7), 0.5, 2),
    gelu: () => E.gelu(det([7], 1.3)),
    gelu_tanh: () => det([7], 1.3).gelu('tanh'),
    log_softmax: () => E.logSoftmax(x4(), 1),
    attention_masked: () => E.scaledDotProductAttention(q, k, v, mask),
    sort_desc_values: () => det([3, 5]).sort(1, true).values,
    topk_indices: () => det([3, 5]).topk(2, 1).indices,
  };
  try {
    for (const [name, f] of Object.entries(cases)) {
      const got = E.tidy(() => f().toArray());
      assert.ok(ref[name], `fixture has ${name}`);
      assertClose(got, ref[name]!, { atol: 1e-12, rtol: 1e-10, what: name });
    }
  } finally {
    E.disposeAll([q, k, v, mask]);
  }
});

test('dropout: zero with probability p, scaled by 1/(1−p); identity when not training', () => {
  E.tidy(() => {
    E.manualSeed(0);
    const x = E.ones([20000]);
    const y = E.dropout(x, 0.25, true);
    const vals = y.toFloat32Array();
    let zeros = 0;
    for (const v of vals) {
      if (v === 0) zeros++;
      else assert.ok(Math.abs(v - 1 / 0.75) < 1e-6);
    }
    assert.ok(Math.abs(zeros / vals.length - 0.25) < 0.02, `zero fraction ${zeros / vals.length}`);
    assert.deepEqual(E.dropout(E.ones([3]), 0.5, false).toArray(), [1, 1, 1]);
    // the identity shares storage (no copy), as PyTorch returns the input itself
    const src = E.ones([3]);
    const same = E.dropout(src, 0, true);
    src.mul_(2);
    assert.deepEqual(same.toArray(), [2, 2, 2]);
  });
});

test('threads: setNumThreads / getNumThreads', () => {
  const before = E.getNumThreads();
  try {
    E.setNumThreads(1);
    assert.equal(E.getNumThreads(), 1);
    E.setNumThreads(2);
    assert.equal(E.getNumThreads(), 2);
    assert.throws(() => E.setNumThreads(0), E.TorchError);
  } finally {
    E.setNumThreads(before);
  }
});
