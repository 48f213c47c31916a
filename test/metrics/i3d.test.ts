/**
 * I3D for FVD/KVD (REFERENCE_SPEC §8.2 step 5, ANCHORS §5): architecture and parameter names of the
 * VideoGPT/TATS port, agreement with PyTorch on a miniature network (test/fixtures/i3d/make-i3d-tiny.py),
 * shapes and determinism with random weights (short clips included), batching invariance, the TF1
 * resize, weight files and the missing-weights message.
 *
 * CPU cost: the full-width network runs twice on one 9-frame clip; everything else uses
 * `widthDivisor` miniatures (same layers, a fraction of the channels).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cat, Generator, interpolate, liveTensorCount, randint, tensor, type Tensor } from '../../src/engine/index.ts';
import { tensorToRaw } from '../../src/nn/checkpoint.ts';
import { writeTorchFile } from '../../src/io/torch-pickle.ts';
import { resizeBilinearTF1 } from '../../src/metrics/fvd-input.ts';
import {
  convertI3DWeights,
  I3D,
  I3D_MIN_FRAMES,
  I3DWeightsMissingError,
  loadI3D,
  resizeBilinearTF1Tensor,
  resolveI3DWeightsPath,
} from '../../src/metrics/i3d.ts';
import { readWeightFile, disposeWeights } from '../../src/metrics/weights-file.ts';

const FIX = path.join(import.meta.dirname, '../fixtures/i3d');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-i3d-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

function u8Videos(shape: number[], seed: number): Tensor {
  return randint(0, 256, shape, new Generator(seed), { dtype: 'uint8' });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('architecture: parameter names and shapes of InceptionI3d(400); 12.69 M parameters', () => {
  const net = new I3D(); // zeros: no forward needed
  try {
    const params = new Map(net.namedParameters());
    const buffers = new Map(net.namedBuffers());
    const shape = (k: string) => (params.get(k) ?? buffers.get(k))?.shape;
    assert.deepEqual(shape('Conv3d_1a_7x7.conv3d.weight'), [64, 3, 7, 7, 7]);
    assert.deepEqual(shape('Conv3d_1a_7x7.bn.weight'), [64]);
    assert.deepEqual(shape('Conv3d_2b_1x1.conv3d.weight'), [64, 64, 1, 1, 1]);
    assert.deepEqual(shape('Conv3d_2c_3x3.conv3d.weight'), [192, 64, 3, 3, 3]);
    assert.deepEqual(shape('Mixed_3b.b0.conv3d.weight'), [64, 192, 1, 1, 1]);
    assert.deepEqual(shape('Mixed_3b.b1b.conv3d.weight'), [128, 96, 3, 3, 3]);
    assert.deepEqual(shape('Mixed_4b.b0.conv3d.weight'), [192, 480, 1, 1, 1]);
    assert.deepEqual(shape('Mixed_4f.b3b.conv3d.weight'), [128, 528, 1, 1, 1]);
    assert.deepEqual(shape('Mixed_5b.b2a.conv3d.weight'), [32, 832, 1, 1, 1]);
    assert.deepEqual(shape('Mixed_5c.b2b.conv3d.weight'), [128, 48, 3, 3, 3]);
    assert.deepEqual(shape('Mixed_5c.b3b.bn.running_var'), [128]);
    assert.deepEqual(shape('logits.conv3d.weight'), [400, 1024, 1, 1, 1]);
    assert.deepEqual(shape('logits.conv3d.bias'), [400]);
    // Running statistics are buffers; unit convolutions have no bias; the logits have no batch norm.
    assert.ok(buffers.has('Mixed_4d.b1a.bn.running_mean') && !params.has('Mixed_4d.b1a.bn.running_mean'));
    assert.ok(!params.has('Mixed_3b.b0.conv3d.bias'));
    assert.ok(![...params.keys(), ...buffers.keys()].some((k) => k.startsWith('logits.bn')));
    assert.equal(params.size + buffers.size, 287); // 57 units × 5 + logits × 2
    assert.equal(buffers.size, 57 * 2);
    // 12.69 M = the TF graph's parameters (OpenVINO i3d-rgb-tf); the port adds BN scales fixed at 1.
    let gammas = 0;
    for (const [k, p] of params) if (k.endsWith('bn.weight')) gammas += p.numel;
    assert.equal(net.numParameters(), 12_697_264);
    assert.equal(net.numParameters() - gammas, 12_689_984);
    assert.equal(Math.round((net.numParameters() - gammas) / 1e4) / 100, 12.69);
  } finally {
    net.dispose();
  }
});

test('matches PyTorch (miniature InceptionI3d, both presets, a short clip)', () => {
  const fx = JSON.parse(fs.readFileSync(path.join(FIX, 'i3d-tiny.json'), 'utf8')) as {
    widthDivisor: number;
    clips: Record<string, { shape: number[]; data: number[] }>;
    features: Record<'tfhub' | 'tats', Record<string, number[]>>;
    numParameters: number;
  };
  const weights = readWeightFile(path.join(FIX, 'i3d-tiny.pt')); // torch.save from PyTorch 1.13
  try {
    assert.ok(![...weights.keys()].some((k) => k.includes('num_batches_tracked')));
    for (const variant of ['tfhub', 'tats'] as const) {
      const net = new I3D({ variant, widthDivisor: fx.widthDivisor });
      try {
        net.loadStateDict(weights);
        assert.equal(net.numParameters(), fx.numParameters);
        for (const [name, clip] of Object.entries(fx.clips)) {
          using v = tensor(Uint8Array.from(clip.data), { shape: [1, ...clip.shape] }); // [1, T, H, W, 3]
          using f = net.features(v);
          assert.deepEqual(f.shape, [1, 400]);
          const d = maxAbsDiff(f.toFloat32Array(), fx.features[variant][name]!);
          assert.ok(d < 2e-5, `${variant} ${name}: max |Δ| = ${d}`);
        }
      } finally {
        net.dispose();
      }
    }
  } finally {
    disposeWeights(weights);
  }
});

test('full network with random weights: [B, 400], deterministic, short clip', () => {
  const net = I3D.random(0);
  try {
    using v = u8Videos([1, 5, 16, 16, 3], 1); // 5 frames: padded to 9
    using a = net.features(v);
    using b = net.features(v);
    assert.deepEqual(a.shape, [1, 400]);
    assert.equal(a.dtype, 'float32');
    const fa = a.toFloat32Array();
    assert.ok(fa.every(Number.isFinite));
    assert.deepEqual(fa, b.toFloat32Array());
    assert.ok(fa.some((x) => x !== fa[0]));
  } finally {
    net.dispose();
  }
});

test('miniature: clip lengths and sizes, short-clip padding, layouts, batching invariance', () => {
  const net = I3D.random(7, { widthDivisor: 16 });
  const other = I3D.random(8, { widthDivisor: 16 });
  try {
    // Any length (1 … 17 frames) and frame size, square or not.
    for (const [T, H, W] of [[1, 32, 32], [9, 24, 40], [17, 32, 32]] as const) {
      using v = u8Videos([2, T, H, W, 3], T);
      using f = net.features(v);
      assert.deepEqual(f.shape, [2, 400], `T=${T} ${H}×${W}`);
      assert.ok(f.toFloat32Array().every(Number.isFinite));
    }
    // A short clip = the same clip with its last frame repeated up to 9 frames.
    using short = u8Videos([1, 4, 32, 32, 3], 3);
    using last = short.narrow(1, 3, 1);
    using rep = last.expand([1, I3D_MIN_FRAMES - 4, 32, 32, 3]);
    using padded = cat([short, rep], 1);
    using fs1 = net.features(short);
    using fs2 = net.features(padded);
    assert.deepEqual(fs1.toFloat32Array(), fs2.toFloat32Array());
    // Different weights → different features.
    using fo = other.features(short);
    assert.ok(maxAbsDiff(fo.toFloat32Array(), fs1.toFloat32Array()) > 1e-3);

    // Batching: 3 videos in chunks of 2 (no padding rows) = all at once = one by one; layouts agree.
    using vids = u8Videos([3, 10, 32, 32, 3], 5);
    using all = net.features(vids, { batchSize: 3 });
    using chunked = net.features(vids, { batchSize: 2 });
    using chw0 = vids.permute([0, 1, 4, 2, 3]);
    using chw = chw0.contiguous();
    using firstOnly = chw.narrow(0, 0, 1);
    using one = net.features(firstOnly, { layout: 'BTCHW' });
    const A = all.toFloat32Array();
    const scale = Math.max(...A.map(Math.abs));
    assert.ok(maxAbsDiff(A, chunked.toFloat32Array()) <= 1e-5 * scale, 'chunked vs whole batch');
    assert.ok(maxAbsDiff(A.subarray(0, 400), one.toFloat32Array()) <= 1e-5 * scale, 'single video vs batch');
    const progress: number[] = [];
    const live = liveTensorCount();
    const again = net.features(vids, { batchSize: 2, onProgress: (d) => progress.push(d) });
    assert.deepEqual(progress, [2, 3]);
    assert.deepEqual(again.toFloat32Array(), chunked.toFloat32Array());
    again.dispose();
    assert.equal(liveTensorCount(), live, 'features() leaves no tensors behind');
    assert.throws(() => net.features(u8Videos([1, 4, 3, 8, 3], 1)), /cannot tell from the shape/);
  } finally {
    net.dispose();
    other.dispose();
  }
});

test('TF1 resize on tensors equals resizeBilinearTF1 exactly; differs from half-pixel bilinear', () => {
  const g = new Generator(4);
  using x = randint(0, 256, [3, 12, 20], g, { dtype: 'float32' }); // [C, H, W] planes
  using r = resizeBilinearTF1Tensor(x, 224, 224);
  const src = x.toFloat32Array();
  const got = r.toFloat32Array();
  // resizeBilinearTF1 takes one [H, W, C] image; compare plane by plane (C = 1).
  for (let c = 0; c < 3; c++) {
    const plane = src.subarray(c * 240, (c + 1) * 240);
    const want = resizeBilinearTF1(plane, 12, 20, 1);
    assert.deepEqual(got.subarray(c * 224 * 224, (c + 1) * 224 * 224), want);
  }
  // Downscaling too (TF1 legacy samples at out·scale).
  using big = randint(0, 256, [1, 300, 256], g, { dtype: 'float32' });
  using rb = resizeBilinearTF1Tensor(big, 224, 224);
  assert.deepEqual(rb.toFloat32Array(), resizeBilinearTF1(big.toFloat32Array(), 300, 256, 1));
  // PyTorch's align_corners=False bilinear (half-pixel centres, the 'tats' preset) is a different map.
  using x4 = x.unsqueeze(0);
  using half = interpolate(x4, { size: [224, 224], mode: 'bilinear', alignCorners: false });
  assert.ok(maxAbsDiff(half.toFloat32Array(), got) > 1);
});

test('weight files: .pt state dict by name, conversion to safetensors, errors', () => {
  // A full-size state dict as torch.save writes it (with num_batches_tracked counters).
  const src = I3D.random(2);
  const file = path.join(tmp, 'i3d_pretrained_400.pt');
  const sd = new Map<string, unknown>();
  for (const [k, t] of src.stateDict()) sd.set(k, tensorToRaw(t));
  using counter = tensor(BigInt64Array.from([0n]), { shape: [] });
  sd.set('Conv3d_1a_7x7.bn.num_batches_tracked', tensorToRaw(counter));
  writeTorchFile(file, sd);
  const same = (a: I3D, b: I3D) => {
    const bs = b.stateDict();
    for (const [k, t] of a.stateDict()) assert.deepEqual(t.toFloat32Array(), bs.get(k)!.toFloat32Array(), k);
  };
  const loaded = loadI3D(file, { variant: 'tats' });
  try {
    assert.deepEqual(loaded.config, { bnEps: 1e-5, resize: 'torch' });
    same(src, loaded);
  } finally {
    loaded.dispose();
  }
  const st = path.join(tmp, 'i3d.safetensors');
  const r = convertI3DWeights(file, st);
  assert.deepEqual(r, { tensors: 287, parameters: 12_697_264 });
  const fromSt = loadI3D(st);
  try {
    assert.deepEqual(fromSt.config, { bnEps: 1e-3, resize: 'tf1' });
    same(src, fromSt);
  } finally {
    fromSt.dispose();
    src.dispose();
  }
  // The miniature fixture does not fit the real network: names are fine, shapes are reported.
  assert.throws(() => loadI3D(path.join(FIX, 'i3d-tiny.pt')), /shape mismatch .*Conv3d_1a_7x7\.conv3d\.weight: expected \[64, 3, 7, 7, 7\], got \[2, 3, 7, 7, 7\]/);
  // A legacy (non-zip) torch.save file gets the re-save explanation.
  const legacy = path.join(tmp, 'legacy.pt');
  fs.writeFileSync(legacy, Uint8Array.from([0x80, 0x02, 0x8a, 0x0a]));
  assert.throws(() => loadI3D(legacy), /legacy \(non-zip\) torch\.save format/);
});

test('missing weights: the error says what to download and where to put it', () => {
  const cwd = process.cwd();
  process.chdir(tmp);
  try {
    assert.throws(
      () => resolveI3DWeightsPath(undefined, {}),
      (e: unknown) =>
        e instanceof I3DWeightsMissingError &&
        /i3d_pretrained_400\.pt/.test(e.message) &&
        /songweige\/TATS/.test(e.message) &&
        /common_metrics_on_video_quality/.test(e.message) &&
        /weights\/i3d_pretrained_400\.pt/.test(e.message) &&
        /--i3d-weights/.test(e.message) &&
        /FLEXVID_I3D_WEIGHTS/.test(e.message) &&
        /flexvid fvd convert-weights/.test(e.message) &&
        /i3d_torchscript\.pt/.test(e.message),
    );
    assert.throws(() => resolveI3DWeightsPath(undefined, { FLEXVID_I3D_WEIGHTS: 'nowhere.pt' }), /nowhere\.pt \(from \$FLEXVID_I3D_WEIGHTS\) does not exist/);
    assert.throws(() => resolveI3DWeightsPath('x/y.pt', {}), /x\/y\.pt \(from --i3d-weights\) does not exist/);
    fs.mkdirSync('weights', { recursive: true });
    fs.writeFileSync('weights/i3d_pretrained_400.pt', '');
    assert.equal(resolveI3DWeightsPath(undefined, {}), 'weights/i3d_pretrained_400.pt');
  } finally {
    process.chdir(cwd);
  }
});
