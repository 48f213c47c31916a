/**
 * LPIPS embedding (REFERENCE_SPEC §7.3): squared embedding distances equal the LPIPS distance —
 * against the explicit formula on random weights, and against PyTorch on closed-form weights
 * (test/fixtures/i3d/make-lpips.py → lpips.json); weight-file names and the missing-weights message.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { conv2d, randn, Generator, tensor, tidy, type Tensor } from '../../src/engine/index.ts';
import { saveTensors } from '../../src/nn/checkpoint.ts';
import {
  LPIPS_CHANNELS,
  LpipsNet,
  LpipsWeightsMissingError,
  loadLpipsEmbedder,
  lpipsEmbedder,
  normalizeLpipsName,
  resolveLpipsWeightsPaths,
} from '../../src/metrics/lpips.ts';

const FIX = path.join(import.meta.dirname, '../fixtures/i3d');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-lpips-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

/** The explicit LPIPS formula: Σ_ℓ mean_{h,w} conv1x1_w((f̂₀ − f̂₁)²), per pair. */
function lpipsExplicit(net: LpipsNet, a: Tensor, b: Tensor): number[] {
  return tidy(() => {
    const fa = net.layers(a);
    const fb = net.layers(b);
    let total: Tensor | null = null;
    for (let k = 0; k < fa.length; k++) {
      const n0 = fa[k]!.div(fa[k]!.square().sum(1, true).sqrt().add(1e-10));
      const n1 = fb[k]!.div(fb[k]!.square().sum(1, true).sqrt().add(1e-10));
      const d = conv2d(n0.sub(n1).square(), net.linWeight(k)).mean([2, 3]).flatten();
      total = total === null ? d : total.add(d);
    }
    return total!.toArray();
  });
}

function sqdist(x: Float32Array, y: Float32Array): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += (x[i]! - y[i]!) ** 2;
  return s;
}

test('embedding distance equals the explicit LPIPS formula (random weights)', () => {
  const net = LpipsNet.random(3);
  try {
    const g = new Generator(11);
    using a0 = randn([3, 3, 64, 64], g);
    using b0 = randn([3, 3, 64, 64], g);
    using a = a0.clamp(-1, 1);
    using b = b0.clamp(-1, 1);
    const emb = lpipsEmbedder(net, { chunk: 2 }); // chunking must not matter
    const ea = emb.embed(a);
    const eb = emb.embed(b);
    const dims = [[64, 15, 15], [192, 7, 7], [384, 3, 3], [256, 3, 3], [256, 3, 3]].reduce((s, [c, h, w]) => s + c! * h! * w!, 0);
    assert.equal(ea.length, 3);
    assert.equal(ea[0]!.length, dims);
    const want = lpipsExplicit(net, a, b);
    for (let i = 0; i < 3; i++) {
      const got = sqdist(ea[i]!, eb[i]!);
      assert.ok(want[i]! > 0);
      assert.ok(Math.abs(got - want[i]!) <= 1e-4 * want[i]!, `pair ${i}: ${got} vs ${want[i]}`);
    }
    // Identical frames → distance 0 (up to the batch's float rounding); deterministic for equal batches.
    using one = a.narrow(0, 1, 1);
    assert.ok(sqdist(ea[1]!, emb.embed(one)[0]!) < 1e-9);
    assert.deepEqual(emb.embed(a), ea);
  } finally {
    net.dispose();
  }
});

/** The closed-form parameters of make-lpips.py. */
function formulaParams(): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const convs = [[0, 3, 64, 11], [3, 64, 192, 5], [6, 192, 384, 3], [8, 384, 256, 3], [10, 256, 256, 3]] as const;
  let t = 0;
  const make = (shape: number[], kind: 'w' | 'b' | 'lin', fanIn = 1) => {
    const n = shape.reduce((x, y) => x * y, 1);
    const v = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const s = Math.sin(0.37 * i + 1.3 * t + 0.1);
      v[i] = kind === 'w' ? s * Math.sqrt(2 / fanIn) : kind === 'b' ? s * 0.05 : 0.1 * (0.5 + 0.5 * s);
    }
    t++;
    return tensor(v, { shape });
  };
  for (const [idx, cin, cout, k] of convs) {
    out.set(`features.${idx}.weight`, make([cout, cin, k, k], 'w', cin * k * k));
    out.set(`features.${idx}.bias`, make([cout], 'b'));
  }
  LPIPS_CHANNELS.forEach((c, k) => out.set(`lin${k}.model.1.weight`, make([1, c, 1, 1], 'lin')));
  return out;
}

function formulaFrames(kind: 'a' | 'b', n: number, h: number, w: number): Tensor {
  const per = 3 * h * w;
  const v = new Float32Array(n * per);
  for (let j = 0; j < n; j++) {
    for (let i = 0; i < per; i++) v[j * per + i] = 0.9 * (kind === 'a' ? Math.sin(0.013 * i + 0.5 + j) : Math.cos(0.017 * i + 0.3 * j));
  }
  return tensor(v, { shape: [n, 3, h, w] });
}

test('matches PyTorch on closed-form weights; loads lpips-package names from a file', () => {
  const fx = JSON.parse(fs.readFileSync(path.join(FIX, 'lpips.json'), 'utf8')) as { cases: { n: number; h: number; w: number; lpips: number[]; layerShapes: number[][] }[] };
  const params = formulaParams();
  // Save under the lpips package's own names (net.sliceK.i.*, plus a scaling layer to ignore).
  const lpipsNames = new Map<string, Tensor>();
  const slice = { 0: 1, 3: 2, 6: 3, 8: 4, 10: 5 } as Record<string, number>;
  for (const [k, t] of params) {
    const m = /^features\.(\d+)\.(.*)$/.exec(k);
    lpipsNames.set(m ? `net.slice${slice[m[1]!]}.${m[1]}.${m[2]}` : k, t);
  }
  using shiftT = tensor([-0.03, -0.088, -0.188], { shape: [1, 3, 1, 1] });
  lpipsNames.set('scaling_layer.shift', shiftT);
  const file = path.join(tmp, 'lpips_alex.safetensors');
  saveTensors(file, lpipsNames);
  for (const t of params.values()) t.dispose();

  const emb = loadLpipsEmbedder(file);
  try {
    for (const c of fx.cases) {
      using a = formulaFrames('a', c.n, c.h, c.w);
      using b = formulaFrames('b', c.n, c.h, c.w);
      const shapes = tidy(() => emb.net.layers(a).map((f) => f.shape.slice(1)));
      assert.deepEqual(shapes, c.layerShapes);
      const ea = emb.embed(a);
      const eb = emb.embed(b);
      for (let i = 0; i < c.n; i++) {
        const got = sqdist(ea[i]!, eb[i]!);
        assert.ok(Math.abs(got - c.lpips[i]!) <= 2e-4 * c.lpips[i]!, `${c.h}×${c.w} pair ${i}: ${got} vs ${c.lpips[i]}`);
      }
    }
  } finally {
    emb.dispose();
  }
});

test('weight names, file merging and the missing-weights message', () => {
  assert.equal(normalizeLpipsName('net.slice2.3.weight'), 'features.3.weight');
  assert.equal(normalizeLpipsName('lin4.model.1.weight'), 'lin4.model.1.weight');
  assert.equal(normalizeLpipsName('lin0.model.0.weight'), 'lin0.model.1.weight');
  assert.equal(normalizeLpipsName('features.10.bias'), 'features.10.bias');
  assert.equal(normalizeLpipsName('classifier.1.weight'), null);
  assert.equal(normalizeLpipsName('scaling_layer.scale'), null);
  const names = [...new LpipsNet().stateDict().keys()];
  assert.deepEqual(names, [
    'features.0.weight', 'features.0.bias', 'features.3.weight', 'features.3.bias', 'features.6.weight', 'features.6.bias',
    'features.8.weight', 'features.8.bias', 'features.10.weight', 'features.10.bias',
    'lin0.model.1.weight', 'lin1.model.1.weight', 'lin2.model.1.weight', 'lin3.model.1.weight', 'lin4.model.1.weight',
  ]);

  // AlexNet and lin weights in two files (torchvision's classifier ignored) → one network.
  const net = LpipsNet.random(5);
  const sd = net.stateDict();
  const alex = new Map([...sd].filter(([k]) => k.startsWith('features.')));
  using cls = tensor([1, 2, 3]);
  alex.set('classifier.6.bias', cls);
  const lin = new Map([...sd].filter(([k]) => k.startsWith('lin')));
  const fa = path.join(tmp, 'alexnet.safetensors');
  const fl = path.join(tmp, 'alex-lin.safetensors');
  saveTensors(fa, alex);
  saveTensors(fl, lin);
  const env = { FLEXVID_LPIPS_WEIGHTS: [fa, fl].join(path.delimiter) };
  assert.deepEqual(resolveLpipsWeightsPaths(undefined, env), [fa, fl]);
  const emb = loadLpipsEmbedder([fa, fl]);
  try {
    using x0 = randn([1, 3, 32, 32], new Generator(1));
    using x = x0.clamp(-1, 1);
    assert.deepEqual(emb.embed(x)[0], lpipsEmbedder(net).embed(x)[0]);
  } finally {
    emb.dispose();
    net.dispose();
  }
  // Only the lin file: the AlexNet names are reported missing.
  assert.throws(() => loadLpipsEmbedder(fl), /missing 10: features\.0\.weight/);

  // Nothing configured: the message names the files to download and where to put them.
  const cwd = process.cwd();
  process.chdir(tmp);
  try {
    assert.throws(
      () => resolveLpipsWeightsPaths(undefined, {}),
      (e: unknown) =>
        e instanceof LpipsWeightsMissingError &&
        /alexnet-owt-7be5be79\.pth/.test(e.message) &&
        /lpips\/weights\/v0\.1\/alex\.pth/.test(e.message) &&
        /weights\/lpips_alex\.pt/.test(e.message) &&
        /FLEXVID_LPIPS_WEIGHTS/.test(e.message),
    );
  } finally {
    process.chdir(cwd);
  }
  assert.throws(() => resolveLpipsWeightsPaths(path.join(tmp, 'nope.pt'), {}), /nope\.pt .*does not exist/);
});
