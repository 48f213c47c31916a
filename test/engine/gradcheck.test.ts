/**
 * Every differentiable op the project uses, checked against central finite differences in float64:
 * autograd's gradient of sum(f(x)·w) must equal (L(x+ε) − L(x−ε)) / 2ε element by element.
 */
import { test } from 'node:test';
import * as E from '../../src/engine/index.ts';
import { det, gradcheck } from './helpers.ts';

type Case = [name: string, f: (...xs: E.Tensor[]) => E.Tensor, inputs: () => E.Tensor[], opts?: { wrt?: number[] }];

/** Values bounded away from 0 (for relu, sqrt, log, div denominators). */
const positive = (shape: number[], k = 0.37) => E.tidy(() => det(shape, k).abs().add(0.5));
const awayFromZero = (shape: number[], k = 0.37) => E.tidy(() => {
  const x = det(shape, k);
  return x.add(x.ge(0).double().mul(0.4).sub(0.2)); // |x| ≥ 0.2
});
const idx = (values: number[], shape?: number[]) => E.tensor(BigInt64Array.from(values.map(BigInt)), shape ? { shape } : {});

const cases: Case[] = [
  // Elementwise arithmetic with broadcasting.
  ['add (broadcast [2,3] + [3])', (a, b) => a.add(b, 0.5), () => [det([2, 3]), det([3], 0.9)]],
  ['sub (broadcast [2,1,3] − [4,1])', (a, b) => a.sub(b), () => [det([2, 1, 3]), det([4, 1], 0.9)]],
  ['mul (broadcast [2,3] · [2,1])', (a, b) => a.mul(b), () => [det([2, 3]), det([2, 1], 0.9)]],
  ['div', (a, b) => a.div(b), () => [det([2, 3]), positive([3], 0.9)]],
  ['pow (scalar exponent)', (a) => a.pow(2.5), () => [positive([2, 3])]],
  ['pow (tensor exponent)', (a, b) => a.pow(b), () => [positive([2, 3]), det([2, 3], 0.8)]],
  ['exp', (a) => a.exp(), () => [det([2, 3])]],
  ['log', (a) => a.log(), () => [positive([2, 3])]],
  ['sqrt', (a) => a.sqrt(), () => [positive([2, 3])]],
  ['tanh', (a) => a.tanh(), () => [det([2, 3], 1.7)]],
  ['sigmoid', (a) => a.sigmoid(), () => [det([2, 3], 1.7)]],
  ['silu', (a) => E.silu(a), () => [det([2, 3], 1.7)]],
  ['gelu', (a) => E.gelu(a), () => [det([2, 3], 1.7)]],
  ['gelu (tanh approximation)', (a) => a.gelu('tanh'), () => [det([2, 3], 1.7)]],
  ['relu (away from 0)', (a) => E.relu(a), () => [awayFromZero([2, 4])]],
  ['clamp (away from the bounds)', (a) => a.clamp(-0.5, 0.5), () => [awayFromZero([2, 4], 1.3)]],
  ['softmax', (a) => E.softmax(a, 1), () => [det([2, 4, 3])]],
  ['log_softmax', (a) => E.logSoftmax(a, -1), () => [det([2, 4, 3])]],
  // Linear algebra.
  ['matmul (batched broadcast)', (a, b) => E.matmul(a, b), () => [det([2, 3, 4]), det([4, 2], 0.7)]],
  ['bmm', (a, b) => E.bmm(a, b), () => [det([2, 3, 4]), det([2, 4, 2], 0.7)]],
  ['baddbmm', (c, a, b) => E.baddbmm(c, a, b, 0.5, 2), () => [det([2, 3, 2], 0.2), det([2, 3, 4]), det([2, 4, 2], 0.7)]],
  ['einsum', (a, b) => E.einsum('bij,bkj->bik', [a, b]), () => [det([2, 3, 4]), det([2, 2, 4], 0.7)]],
  ['linear', (x, w, b) => E.linear(x, w, b), () => [det([2, 3, 4]), det([5, 4], 0.7), det([5], 0.3)]],
  // Convolutions.
  ['conv1d (stride 2, padding 1, dilation 2, groups 2)', (x, w, b) => E.conv1d(x, w, b, { stride: 2, padding: 1, dilation: 2, groups: 2 }), () => [det([2, 4, 9]), det([4, 2, 3], 0.23), det([4], 0.5)]],
  ['conv2d (stride, padding)', (x, w, b) => E.conv2d(x, w, b, { stride: [2, 1], padding: [1, 2] }), () => [det([1, 2, 5, 5]), det([3, 2, 3, 3], 0.11), det([3], 0.5)]],
  ['conv2d (dilation)', (x, w) => E.conv2d(x, w, null, { dilation: 2, padding: 1 }), () => [det([1, 2, 5, 5]), det([2, 2, 2, 2], 0.11)]],
  ['conv2d (groups)', (x, w, b) => E.conv2d(x, w, b, { groups: 2, padding: 1 }), () => [det([1, 4, 4, 4]), det([4, 2, 3, 3], 0.13), det([4], 0.5)]],
  ['conv3d', (x, w, b) => E.conv3d(x, w, b, { stride: [1, 2, 1], padding: [1, 0, 1] }), () => [det([1, 2, 3, 4, 3]), det([2, 2, 2, 3, 2], 0.19), det([2], 0.7)]],
  ['conv_transpose2d (stride 2, output padding, groups)', (x, w, b) => E.convTranspose2d(x, w, b, { stride: 2, padding: 1, outputPadding: 1, groups: 2 }), () => [det([1, 4, 3, 3]), det([4, 1, 3, 3], 0.13), det([2], 0.3)]],
  ['conv_transpose3d', (x, w) => E.convTranspose3d(x, w, null, { stride: [2, 1, 2], padding: [0, 1, 1] }), () => [det([1, 2, 2, 3, 3]), det([2, 2, 2, 2, 2], 0.29)]],
  // Normalisation.
  ['group_norm', (x, w, b) => E.groupNorm(x, 2, w, b), () => [det([2, 4, 3, 2]), det([4], 0.9, 1), det([4], 0.4)]],
  ['layer_norm', (x, w, b) => E.layerNorm(x, [3, 2], w, b), () => [det([2, 4, 3, 2]), det([3, 2], 0.2, 1), det([3, 2], 0.3)]],
  // Resampling and pooling.
  ['interpolate nearest', (x) => E.interpolate(x, { scale: 2 }), () => [det([1, 2, 2, 3])]],
  ['interpolate bilinear (align_corners)', (x) => E.interpolate(x, { size: [4, 5], mode: 'bilinear', alignCorners: true }), () => [det([1, 2, 3, 3])]],
  ['interpolate bilinear', (x) => E.interpolate(x, { size: [4, 5], mode: 'bilinear', alignCorners: false }), () => [det([1, 2, 3, 3])]],
  ['interpolate trilinear', (x) => E.interpolate(x, { scale: 2, mode: 'trilinear' }), () => [det([1, 1, 2, 2, 3])]],
  ['avg_pool2d', (x) => E.avgPool2d(x, 3, { stride: 2, padding: 1 }), () => [det([1, 2, 5, 5])]],
  ['max_pool2d', (x) => E.maxPool2d(x, 2), () => [det([1, 2, 4, 4], 1.3)]],
  ['avg_pool3d', (x) => E.avgPool3d(x, 2), () => [det([1, 1, 4, 2, 4])]],
  ['max_pool3d', (x) => E.maxPool3d(x, 2, { stride: 1 }), () => [det([1, 1, 3, 3, 3], 1.3)]],
  ['adaptive_avg_pool2d', (x) => E.adaptiveAvgPool2d(x, [2, 3]), () => [det([1, 2, 5, 4])]],
  ['adaptive_avg_pool3d', (x) => E.adaptiveAvgPool3d(x, 1), () => [det([1, 2, 2, 3, 2])]],
  // Reductions.
  ['sum (all)', (x) => x.sum(), () => [det([2, 3])]],
  ['sum (dims, keepdim)', (x) => x.sum([0, 2], true), () => [det([2, 3, 4])]],
  ['mean (all)', (x) => x.mean(), () => [det([2, 3])]],
  ['mean (dim)', (x) => x.mean(1), () => [det([2, 3, 4])]],
  ['var (unbiased, dims)', (x) => x.var([1, 2]), () => [det([2, 3, 4])]],
  ['var (population)', (x) => x.var(undefined, { correction: 0 }), () => [det([2, 3, 4])]],
  ['norm (2, all)', (x) => x.norm(), () => [det([2, 3])]],
  ['norm (3, dim)', (x) => x.norm(3, 1), () => [det([2, 3, 4])]],
  ['cumsum', (x) => x.cumsum(1), () => [det([2, 3, 4])]],
  ['max (dim) values', (x) => x.max(1).values, () => [det([3, 4], 1.3)]],
  ['logsumexp', (x) => x.logsumexp(1), () => [det([3, 4], 1.3)]],
  // Indexing, views and joining.
  ['gather', (x, i) => x.gather(1, i), () => [det([2, 4]), idx([3, 0, 0, 1, 2, 2], [2, 3])], { wrt: [0] }],
  ['index_select', (x, i) => x.indexSelect(1, i), () => [det([2, 4]), idx([3, 0, 3])], { wrt: [0] }],
  ['scatter (src)', (x, i, s) => x.scatter(1, i, s), () => [det([2, 4]), idx([3, 0, 1, 2], [2, 2]), det([2, 2], 0.8)], { wrt: [0, 2] }],
  ['narrow', (x) => x.narrow(1, 1, 2), () => [det([2, 4])]],
  ['slice with step', (x) => x.slice(1, 0, undefined, 2), () => [det([2, 5])]],
  ['permute', (x) => x.permute([2, 0, 1]), () => [det([2, 3, 4])]],
  ['transpose + reshape', (x) => x.transpose(0, 1).reshape([4, -1]), () => [det([2, 4, 2])]],
  ['expand', (x) => x.expand([3, 2, 4]), () => [det([2, 1])]],
  ['squeeze / unsqueeze / flatten', (x) => x.squeeze(1).unsqueeze(0).flatten(1), () => [det([2, 1, 3])]],
  ['cat', (a, b) => E.cat([a, b], 1), () => [det([2, 3]), det([2, 2], 0.7)]],
  ['stack', (a, b) => E.stack([a, b], 1), () => [det([2, 3]), det([2, 3], 0.7)]],
  ['chunk', (x) => x.chunk(2, 1)[1]!, () => [det([2, 4])]],
  ['split (sizes)', (x) => x.split([1, 3], 1)[1]!.mul(x.split([1, 3], 1)[0]!), () => [det([2, 4])]],
  ['where', (c, a, b) => E.where(c, a, b), () => [E.tensor([true, false, true, false, false, true], { shape: [2, 3] }), det([2, 3]), det([3], 0.7)], { wrt: [1, 2] }],
  ['masked_fill', (x, m) => x.maskedFill(m, 0.5), () => [det([2, 3]), E.tensor([true, false, true, false, false, true], { shape: [2, 3] })], { wrt: [0] }],
  // Attention.
  ['scaled dot-product attention (plain)', (q, k, v) => E.scaledDotProductAttention(q, k, v, null, undefined, 'plain'), () => [det([2, 3, 4]), det([2, 5, 4], 0.61), det([2, 5, 2], 0.83)]],
  ['scaled dot-product attention (plain, bool mask, scale)', (q, k, v, m) => E.scaledDotProductAttention(q, k, v, m, 0.3, 'plain'), () => [det([2, 3, 4]), det([2, 5, 4], 0.61), det([2, 5, 2], 0.83), E.tensor([true, false, true, true, false, true, true, true, false, true, false, true, true, true, true], { shape: [3, 5] })], { wrt: [0, 1, 2] }],
  ['scaled dot-product attention (plain, additive mask)', (q, k, v, m) => E.scaledDotProductAttention(q, k, v, m, undefined, 'plain'), () => [det([2, 3, 4]), det([2, 5, 4], 0.61), det([2, 5, 2], 0.83), det([3, 5], 0.5)], { wrt: [0, 1, 2] }],
];

for (const [name, f, inputs, opts] of cases) {
  test(`gradcheck float64: ${name}`, () => {
    const xs = inputs();
    try {
      gradcheck(f, xs, opts ?? {});
    } finally {
      for (const x of xs) x.dispose();
    }
  });
}

const fusedReason = E.hasScaledDotProductAttention() ? false : `libtorch ${E.torchVersion()} has no fused scaled_dot_product_attention (only the plain path is checked)`;
test('gradcheck float64: scaled dot-product attention (fused)', { skip: fusedReason }, () => {
  const xs = [det([2, 3, 4]), det([2, 5, 4], 0.61), det([2, 5, 2], 0.83)];
  try {
    gradcheck((q, k, v) => E.scaledDotProductAttention(q, k, v, null, undefined, 'fused'), xs);
  } finally {
    for (const x of xs) x.dispose();
  }
});
