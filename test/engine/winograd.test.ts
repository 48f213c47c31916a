/**
 * The Winograd 3×3 convolution (native/winograd.cc, reached through E.conv2d): values and all three
 * gradients against a convolution written out as loops in float64; the routing (which shapes take
 * it, the on/off switch, the fallback of the operator itself); inference mode; no leaked tensors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as E from '../../src/engine/index.ts';
import { call } from '../../src/engine/tensor.ts';

const compiled = E.winogradConvEnabled() || (E.setWinogradConv(true), E.winogradConvEnabled());
const skipWhy = compiled ? false : 'addon built without oneDNN headers (libdnnl-dev), Winograd path absent';

/** y = conv(x, w) + b, stride 1, padding 1, by loops. x [N, C, H, W], w [O, C, 3, 3]. */
function naiveConv(x: Float64Array, w: Float64Array, b: Float64Array, N: number, C: number, O: number, H: number, W: number): Float64Array {
  const y = new Float64Array(N * O * H * W);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let i = 0; i < H; i++)
        for (let j = 0; j < W; j++) {
          let s = b[o]!;
          for (let c = 0; c < C; c++)
            for (let a = 0; a < 3; a++)
              for (let d = 0; d < 3; d++) {
                const ii = i + a - 1;
                const jj = j + d - 1;
                if (ii >= 0 && ii < H && jj >= 0 && jj < W) s += x[((n * C + c) * H + ii) * W + jj]! * w[((o * C + c) * 3 + a) * 3 + d]!;
              }
          y[((n * O + o) * H + i) * W + j] = s;
        }
  return y;
}

/** Gradients of L = Σ y·gy: gx, gw, gb written out from the definition of the convolution. */
function naiveGrads(x: Float64Array, w: Float64Array, gy: Float64Array, N: number, C: number, O: number, H: number, W: number) {
  const gx = new Float64Array(x.length);
  const gw = new Float64Array(w.length);
  const gb = new Float64Array(O);
  for (let n = 0; n < N; n++)
    for (let o = 0; o < O; o++)
      for (let i = 0; i < H; i++)
        for (let j = 0; j < W; j++) {
          const g = gy[((n * O + o) * H + i) * W + j]!;
          gb[o] += g;
          for (let c = 0; c < C; c++)
            for (let a = 0; a < 3; a++)
              for (let d = 0; d < 3; d++) {
                const ii = i + a - 1;
                const jj = j + d - 1;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                const xi = ((n * C + c) * H + ii) * W + jj;
                const wi = ((o * C + c) * 3 + a) * 3 + d;
                gx[xi] += g * w[wi]!;
                gw[wi] += g * x[xi]!;
              }
        }
  return { gx, gw, gb };
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    num = Math.max(num, Math.abs(got[i]! - want[i]!));
    den = Math.max(den, Math.abs(want[i]!));
  }
  return num / den;
}

/** Which convolution operators ran inside fn. */
function opsUsed(fn: () => void): string[] {
  return E.profile(fn).rows.map((r) => r.name).filter((n) => /conv/.test(n));
}

test('Winograd 3×3 convolution equals the loop convolution: values and x, weight, bias gradients', { skip: skipWhy }, () => {
  E.tidy(() => {
    const [N, C, O, H, W] = [2, 16, 32, 9, 8]; // odd height: the last 4×4 output tile is partial
    const g = new E.Generator(3);
    const x = E.randn([N, C, H, W], g).requiresGrad_();
    const w = E.randn([O, C, 3, 3], g).mul(0.1).requiresGrad_();
    const b = E.randn([O], g).requiresGrad_();
    const gy = E.randn([N, O, H, W], g);
    let y: E.Tensor | undefined;
    const ops = opsUsed(() => {
      y = E.conv2d(x, w, b, { padding: 1 });
      y.mul(gy).sum().backward();
    });
    assert.ok(ops.includes('flexvid::conv3x3'), `expected the Winograd operator, ran ${ops.join(', ')}`);
    const [xs, ws, bs, gys] = [x, w, b, gy].map((t) => t.detach().toFloat64Array()) as [Float64Array, Float64Array, Float64Array, Float64Array];
    const want = naiveConv(xs, ws, bs, N, C, O, H, W);
    const grads = naiveGrads(xs, ws, gys, N, C, O, H, W);
    // float32 with Winograd's transforms: ≈ 1e-6 relative measured; 1e-4 leaves room for any CPU.
    assert.ok(relErr(y!.toFloat64Array(), want) < 1e-4, `y ${relErr(y!.toFloat64Array(), want)}`);
    assert.ok(relErr(x.grad!.toFloat64Array(), grads.gx) < 1e-4, 'grad x');
    assert.ok(relErr(w.grad!.toFloat64Array(), grads.gw) < 1e-4, 'grad weight');
    assert.ok(relErr(b.grad!.toFloat64Array(), grads.gb) < 1e-4, 'grad bias');
  });
});

test('own Winograd F(4×4, 3×3) kernels (whole 4×4 tiles, > 64 × 64 channel pairs): values and gradients against loops, plain and blocked; FLEXVID_OWN_WINOGRAD=0 selects oneDNN’s', { skip: skipWhy }, () => {
  // Shapes chosen for the kernels' edges: 48 output channels (a 32- and a 16-channel column block;
  // 96 columns in the input gradient), 18 tiles (a 12-tile register block and a rest of 6), 48
  // tiles in two chunks, non-square images; the weight gradient of up to 192 × 64 channel pairs by
  // chunks, of more over all tiles at once. Every pair has more than 64 × 64 channels (below that
  // oneDNN's kernels run).
  const shapes: [number, number, number, number, number][] = [
    [3, 96, 48, 8, 12],
    [2, 64, 80, 16, 8],
    [4, 48, 96, 12, 16],
    [5, 96, 48, 12, 16], // weight gradient by chunks of 24 tiles (60 tiles: two full chunks and a rest)
    [2, 128, 128, 8, 8], // weight gradient over all tiles, here in ranges of 3 (FLEXVID_WINOGRAD_RANGE_TILES)
  ];
  const saved = process.env.FLEXVID_OWN_WINOGRAD;
  process.env.FLEXVID_WINOGRAD_RANGE_TILES = '3';
  try {
    for (const [N, C, O, H, W] of shapes) {
      for (const blocked of [false, true]) {
        E.tidy(() => {
          const g = new E.Generator(N * 100 + C);
          const x = E.randn([N, C, H, W], g);
          const w = E.randn([O, C, 3, 3], g).mul(0.1);
          const b = E.randn([O], g);
          const gy = E.randn([N, O, H, W], g);
          const [xs, ws, bs, gys] = [x, w, b, gy].map((t) => t.toFloat64Array()) as [Float64Array, Float64Array, Float64Array, Float64Array];
          const want = naiveConv(xs, ws, bs, N, C, O, H, W);
          const grads = naiveGrads(xs, ws, gys, N, C, O, H, W);
          const outputs: Float64Array[] = [];
          for (const own of ['1', '0']) {
            process.env.FLEXVID_OWN_WINOGRAD = own;
            // Blocked: x handed over as [N, C/16, H, W, 16], the output and the input gradient in that layout.
            const xin = (blocked ? x.reshape([N, C / 16, 16, H, W]).permute([0, 1, 3, 4, 2]).contiguous() : x.clone()).requiresGrad_();
            const wl = w.clone().requiresGrad_();
            const bl = b.clone().requiresGrad_();
            const y = call(blocked ? 'flexvid::conv3x3_blocked' : 'flexvid::conv3x3', xin, wl, bl) as E.Tensor;
            const yPlain = blocked ? y.permute([0, 1, 4, 2, 3]).reshape([N, O, H, W]) : y;
            yPlain.mul(gy).sum().backward();
            const gx = blocked ? xin.grad!.permute([0, 1, 4, 2, 3]).reshape([N, C, H, W]) : xin.grad!;
            const tag = `[${N}, ${C}→${O}, ${H}×${W}]${blocked ? ' blocked' : ''} own=${own}`;
            outputs.push(yPlain.toFloat64Array());
            assert.ok(relErr(outputs.at(-1)!, want) < 1e-5, `${tag} y ${relErr(outputs.at(-1)!, want)}`);
            assert.ok(relErr(gx.toFloat64Array(), grads.gx) < 1e-5, `${tag} grad x ${relErr(gx.toFloat64Array(), grads.gx)}`);
            assert.ok(relErr(wl.grad!.toFloat64Array(), grads.gw) < 1e-5, `${tag} grad weight ${relErr(wl.grad!.toFloat64Array(), grads.gw)}`);
            assert.ok(relErr(bl.grad!.toFloat64Array(), grads.gb) < 1e-5, `${tag} grad bias`);
          }
          // Different kernels round differently: equal outputs would mean the switch did nothing.
          assert.ok(outputs[0]!.some((v, i) => v !== outputs[1]![i]), 'FLEXVID_OWN_WINOGRAD made no difference');
        });
      }
    }
  } finally {
    if (saved === undefined) delete process.env.FLEXVID_OWN_WINOGRAD;
    else process.env.FLEXVID_OWN_WINOGRAD = saved;
    delete process.env.FLEXVID_WINOGRAD_RANGE_TILES;
  }
});

test('own Winograd in inference with few tiles: kept transformed weights follow in-place weight changes', { skip: skipWhy }, () => {
  // [2, 96 → 48, 8×8]: 8 tiles, so no-grad calls keep the transformed weights between calls.
  const [N, C, O, H, W] = [2, 96, 48, 8, 8];
  E.tidy(() => {
    const g = new E.Generator(21);
    const x = E.randn([N, C, H, W], g);
    const w = E.randn([O, C, 3, 3], g).mul(0.1);
    const b = E.randn([O], g);
    const check = (tag: string, inference = true) => {
      const conv = () => call('flexvid::conv3x3', x, w, b) as E.Tensor;
      const got = (inference ? E.inferenceMode(conv) : E.noGrad(conv)).toFloat64Array();
      const want = naiveConv(x.toFloat64Array(), w.toFloat64Array(), b.toFloat64Array(), N, C, O, H, W);
      assert.ok(relErr(got, want) < 1e-5, `${tag}: ${relErr(got, want)}`);
    };
    check('first call');
    check('second call (kept filters)');
    E.noGrad(() => w.mul_(-2).add_(0.01)); // in place, as optimizers update parameters
    check('after an in-place update');
    E.noGrad(() => w.narrow(0, 5, 1).zero_()); // a change to one filter only
    check('after changing one filter');
    // kept under inference mode, refreshed outside it (plain no-grad): the kept copy is an
    // inference tensor there, which must not be written by an ATen operator
    E.noGrad(() => w.mul_(0.5));
    check('refreshed outside inference mode', false);
    check('and inside it again');
  });
});

test('Winograd convolution without bias, and with only the weight requiring a gradient', { skip: skipWhy }, () => {
  E.tidy(() => {
    const [N, C, O, H, W] = [1, 16, 16, 8, 8];
    const g = new E.Generator(5);
    const x = E.randn([N, C, H, W], g);
    const w = E.randn([O, C, 3, 3], g).mul(0.1).requiresGrad_();
    const y = E.conv2d(x, w, null, { padding: 1 });
    y.sum().backward();
    const xs = x.toFloat64Array();
    const want = naiveConv(xs, w.detach().toFloat64Array(), new Float64Array(O), N, C, O, H, W);
    assert.ok(relErr(y.toFloat64Array(), want) < 1e-4);
    const { gw } = naiveGrads(xs, w.detach().toFloat64Array(), new Float64Array(N * O * H * W).fill(1), N, C, O, H, W);
    assert.ok(relErr(w.grad!.toFloat64Array(), gw) < 1e-4);
    assert.equal(x.grad, null);
  });
});

test('convolutions Winograd does not cover give libtorch’s results exactly (3×3 ones with 16-channel multiples through flexvid::conv3x3_direct, the same oneDNN kernels)', () => {
  E.tidy(() => {
    const g = new E.Generator(7);
    const cases: [number[], number[], E.ConvOptions][] = [
      [[2, 16, 4, 4], [16, 16, 3, 3], { padding: 1 }], // smaller than 8×8
      [[2, 3, 8, 8], [16, 3, 3, 3], { padding: 1 }], // 3 input channels
      [[2, 16, 8, 8], [16, 16, 3, 3], { padding: 1, stride: 2 }], // strided
      [[2, 16, 2, 4], [16, 16, 1, 1], {}], // 1×1 on fewer than 10 positions (longer rows: flexvid::project)
      [[2, 16, 8, 8], [16, 16, 1, 1], { stride: 2 }], // strided 1×1
    ];
    for (const [xs, ws, o] of cases) {
      const x = E.randn(xs, g);
      const w = E.randn(ws, g);
      let y: E.Tensor | undefined;
      const ops = opsUsed(() => (y = E.conv2d(x, w, null, o)));
      assert.ok(!ops.includes('flexvid::conv3x3'), `${xs} ${ws} ${JSON.stringify(o)} took the Winograd operator`);
      const prev = E.setWinogradConv(false);
      const ref = E.conv2d(x, w, null, o);
      E.setWinogradConv(prev);
      assert.equal(y!.sub(ref).abs().max().item(), 0);
    }
  });
});

test('flexvid::conv3x3_direct (stride 2; stride 1 under 8×8): values and x, weight, bias gradients against loops; routing', { skip: skipWhy }, () => {
  // A padding-1 stride-2 convolution is the stride-1 one sampled at even positions, so the loop
  // convolution gives it: y₂[i, j] = y₁[2i, 2j], and its gradients come from gy placed at those positions.
  const cases: [number, number, number, number, number, number][] = [
    [2, 32, 48, 8, 8, 2],
    [2, 16, 16, 7, 5, 2], // odd sizes: output 4 × 3
    [3, 16, 32, 4, 4, 1], // a 4×4 image
  ];
  for (const [N, C, O, H, W, stride] of cases) {
    E.tidy(() => {
      const g = new E.Generator(N * 31 + C + H);
      const Ho = Math.floor((H - 1) / stride) + 1;
      const Wo = Math.floor((W - 1) / stride) + 1;
      const x = E.randn([N, C, H, W], g).requiresGrad_();
      const w = E.randn([O, C, 3, 3], g).mul(0.1).requiresGrad_();
      const b = E.randn([O], g).requiresGrad_();
      const gy = E.randn([N, O, Ho, Wo], g);
      let y: E.Tensor | undefined;
      const ops = opsUsed(() => {
        y = E.conv2d(x, w, b, { padding: 1, stride });
        y.mul(gy).sum().backward();
      });
      assert.ok(ops.includes('flexvid::conv3x3_direct'), `expected flexvid::conv3x3_direct, ran ${ops.join(', ')}`);
      const [xs, ws, bs, gys] = [x, w, b, gy].map((t) => t.detach().toFloat64Array()) as [Float64Array, Float64Array, Float64Array, Float64Array];
      const full = naiveConv(xs, ws, bs, N, C, O, H, W);
      const want = new Float64Array(N * O * Ho * Wo);
      const gyFull = new Float64Array(N * O * H * W);
      for (let n = 0; n < N * O; n++)
        for (let i = 0; i < Ho; i++)
          for (let j = 0; j < Wo; j++) {
            want[(n * Ho + i) * Wo + j] = full[(n * H + i * stride) * W + j * stride]!;
            gyFull[(n * H + i * stride) * W + j * stride] = gys[(n * Ho + i) * Wo + j]!;
          }
      const grads = naiveGrads(xs, ws, gyFull, N, C, O, H, W);
      const tag = `[${N}, ${C}→${O}, ${H}×${W}] stride ${stride}`;
      assert.ok(relErr(y!.toFloat64Array(), want) < 1e-5, `${tag} y`);
      assert.ok(relErr(x.grad!.toFloat64Array(), grads.gx) < 1e-5, `${tag} grad x`);
      assert.ok(relErr(w.grad!.toFloat64Array(), grads.gw) < 1e-5, `${tag} grad weight`);
      assert.ok(relErr(b.grad!.toFloat64Array(), grads.gb) < 1e-5, `${tag} grad bias`);
    });
  }
});

test('setWinogradConv(false) selects the direct convolution and returns the previous setting', () => {
  E.tidy(() => {
    const g = new E.Generator(9);
    const x = E.randn([1, 16, 8, 8], g);
    const w = E.randn([16, 16, 3, 3], g);
    const prev = E.setWinogradConv(false);
    try {
      assert.equal(E.winogradConvEnabled(), false);
      assert.ok(!opsUsed(() => E.conv2d(x, w, null, { padding: 1 })).includes('flexvid::conv3x3'));
      assert.equal(E.setWinogradConv(prev), false);
    } finally {
      E.setWinogradConv(prev);
    }
  });
});

test('the flexvid::conv3x3 operator falls back to libtorch for float64 (exact), and runs in inference mode', () => {
  E.tidy(() => {
    const g = new E.Generator(11);
    const x = E.randn([1, 16, 8, 8], g, { dtype: 'float64' });
    const w = E.randn([16, 16, 3, 3], g, { dtype: 'float64' });
    const direct = call('flexvid::conv3x3', x, w, null);
    const prev = E.setWinogradConv(false);
    const ref = E.conv2d(x, w, null, { padding: 1 });
    E.setWinogradConv(prev);
    assert.equal(direct.sub(ref).abs().max().item(), 0);
    const x32 = x.to({ dtype: 'float32' });
    const w32 = w.to({ dtype: 'float32' });
    const y = E.inferenceMode(() => E.conv2d(x32, w32, null, { padding: 1 }));
    assert.ok(y.sub(ref.to({ dtype: 'float32' })).abs().max().item() < 1e-3);
  });
});

test('Winograd convolution forward + backward leaves no live tensors behind (oneDNN’s kernels and ours)', () => {
  const g = new E.Generator(13);
  // 16 → 16 channels: oneDNN's Winograd; 80 → 80 (more than 64 × 64 pairs): flexvid's own.
  for (const c of [16, 80]) {
    const x = E.keep(E.randn([2, c, 8, 8], g).requiresGrad_());
    const w = E.keep(E.randn([c, c, 3, 3], g).requiresGrad_());
    const step = () =>
      E.tidy(() => {
        E.conv2d(x, w, null, { padding: 1 }).square().sum().backward();
        w.setGrad(null);
        x.setGrad(null);
      });
    step();
    const before = E.liveTensorCount();
    for (let i = 0; i < 5; i++) step();
    assert.equal(E.liveTensorCount(), before);
    x.dispose();
    w.dispose();
  }
});

test('a second derivative through the Winograd convolution is refused with the switch named', { skip: skipWhy }, () => {
  E.tidy(() => {
    const g = new E.Generator(15);
    const x = E.randn([1, 16, 8, 8], g).requiresGrad_();
    const w = E.randn([16, 16, 3, 3], g);
    const y = E.conv2d(x, w, null, { padding: 1 }).square().sum();
    assert.throws(() => E.autogradGrad([y], [x], { createGraph: true }), /setWinogradConv\(false\)|FLEXVID_WINOGRAD=0/);
  });
});

test('batchedMatmul through oneDNN matmul: transposed-view operands, values and gradients against loops', { skip: skipWhy }, () => {
  E.tidy(() => {
    const [G, M, K, N] = [3, 5, 4, 6];
    const g = new E.Generator(17);
    const at = E.randn([G, K, M], g).requiresGrad_(); // used as a = atᵀ, a transposed view
    const b = E.randn([G, K, N], g).requiresGrad_();
    const w = E.randn([G, M, N], g);
    let c: E.Tensor | undefined;
    const ops = E.profile(() => {
      c = E.batchedMatmul(at.transpose(1, 2), b);
      c.mul(w).sum().backward();
    }).rows.map((r) => r.name);
    assert.ok(ops.includes('flexvid::bmm'), `expected flexvid::bmm, ran ${ops.filter((n) => /mm|conv/.test(n)).join(', ')}`);
    const A = at.detach().toFloat64Array();
    const B = b.detach().toFloat64Array();
    const W = w.toFloat64Array();
    const C = c!.toFloat64Array();
    const gA = at.grad!.toFloat64Array(); // gradient w.r.t. atᵀ's storage: [G, K, M]
    const gB = b.grad!.toFloat64Array();
    for (let q = 0; q < G; q++)
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += A[(q * K + k) * M + i]! * B[(q * K + k) * N + j]!;
          assert.ok(Math.abs(C[(q * M + i) * N + j]! - s) < 1e-5);
        }
    // dA[i,k] = Σ_j W[i,j] B[k,j]; dB[k,j] = Σ_i A[i,k] W[i,j]
    for (let q = 0; q < G; q++)
      for (let k = 0; k < K; k++) {
        for (let i = 0; i < M; i++) {
          let s = 0;
          for (let j = 0; j < N; j++) s += W[(q * M + i) * N + j]! * B[(q * K + k) * N + j]!;
          assert.ok(Math.abs(gA[(q * K + k) * M + i]! - s) < 1e-5);
        }
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let i = 0; i < M; i++) s += A[(q * K + k) * M + i]! * W[(q * M + i) * N + j]!;
          assert.ok(Math.abs(gB[(q * K + k) * N + j]! - s) < 1e-5);
        }
      }
  });
});

test('1×1 convolutions (conv1d, conv2d, conv1x1Add) through flexvid::project: values and gradients against float64 loops', { skip: skipWhy }, () => {
  E.tidy(() => {
    const g = new E.Generator(31);
    // Whole-sample tiles (3 samples, 7 channels); one sample whose 40 output channels are cut into
    // blocks of 16 with a shorter last one; five samples (at 2 threads cut into 32 + 8 channels, so
    // that the tiles share out evenly) (native/project.cc, ForwardTiles, TileRows).
    for (const [N, C, O, H, W] of [[3, 5, 7, 6, 6], [1, 5, 40, 10, 15], [5, 5, 40, 10, 15]] as const)
    for (const withBias of [true, false])
      for (const dims of [1, 2, 'residual'] as const) {
        const x = (dims === 2 ? E.randn([N, C, H, W], g) : E.randn([N, C, H * W], g)).requiresGrad_();
        const w = (dims === 2 ? E.randn([O, C, 1, 1], g) : E.randn([O, C, 1], g)).requiresGrad_();
        const b = withBias ? E.randn([O], g).requiresGrad_() : null;
        const r = dims === 'residual' ? E.randn([N, O, H * W], g).requiresGrad_() : null;
        const gy = E.randn(dims === 2 ? [N, O, H, W] : [N, O, H * W], g);
        let y: E.Tensor | undefined;
        const ops = E.profile(() => {
          y = dims === 2 ? E.conv2d(x, w, b) : r ? E.conv1x1Add(x, w, b, r) : E.conv1d(x, w, b);
          y.mul(gy).sum().backward();
        }).rows.map((r) => r.name);
        if (r) assert.ok(!ops.includes('aten::add') && !ops.includes('aten::add_'), `the residual is added inside flexvid::project, ran ${ops.join(', ')}`);
        assert.ok(ops.includes('flexvid::project'), `expected flexvid::project, ran ${ops.filter((n) => /conv|project|mm/.test(n)).join(', ')}`);
        const X = x.detach().toFloat64Array();
        const Wt = w.detach().toFloat64Array();
        const Bv = b ? b.detach().toFloat64Array() : new Float64Array(O);
        const G = gy.toFloat64Array();
        const R = r ? r.detach().toFloat64Array() : null;
        const L = H * W;
        const want = new Float64Array(N * O * L);
        const gx = new Float64Array(X.length);
        const gw = new Float64Array(Wt.length);
        const gb = new Float64Array(O);
        for (let n = 0; n < N; n++)
          for (let o = 0; o < O; o++)
            for (let l = 0; l < L; l++) {
              let s = Bv[o]! + (R ? R[(n * O + o) * L + l]! : 0);
              for (let c = 0; c < C; c++) s += Wt[o * C + c]! * X[(n * C + c) * L + l]!;
              want[(n * O + o) * L + l] = s;
              const gv = G[(n * O + o) * L + l]!;
              gb[o] += gv;
              for (let c = 0; c < C; c++) {
                gx[(n * C + c) * L + l] += gv * Wt[o * C + c]!;
                gw[o * C + c] += gv * X[(n * C + c) * L + l]!;
              }
            }
        const close = (a: Float64Array, e: Float64Array, what: string) => {
          const scale = Math.max(...Array.from(e, Math.abs));
          a.forEach((v, i) => assert.ok(Math.abs(v - e[i]!) <= 1e-5 * scale, `${what}[${i}] (N ${N}, L ${L}, dims ${dims}, bias ${withBias}): ${v} vs ${e[i]}`));
        };
        close(y!.toFloat64Array(), want, 'y');
        close(x.grad!.toFloat64Array(), gx, 'dx');
        close(w.grad!.toFloat64Array(), gw, 'dw');
        if (b) close(b.grad!.toFloat64Array(), gb, 'db');
        if (r) close(r.grad!.toFloat64Array(), G, 'dr');
        // Backward when only the weight needs a gradient (input and bias held fixed): the same dW.
        const w2 = w.detach().requiresGrad_();
        const y2 = dims === 2 ? E.conv2d(x.detach(), w2, b?.detach()) : E.conv1d(x.detach(), w2, b?.detach());
        y2.mul(gy).sum().backward();
        close(w2.grad!.toFloat64Array(), gw, 'dw (weight only)');
      }
  });
});
