/**
 * AutoencoderKL (REFERENCE_SPEC §5.11): the published SDXL configuration's parameter names, shapes
 * and count; parity with an independent PyTorch implementation (test/fixtures/vae/make-vae.py) on a
 * miniature VAE; encode → decode shapes for several frame sizes with random weights; dtypes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Generator, liveTensorCount, randn, tidy } from '../../src/engine/index.ts';
import { AutoencoderKL, posteriorOf, samplePosterior } from '../../src/vae/autoencoder-kl.ts';
import { SDXL_VAE_CONFIG, TINY_VAE_CONFIG, configFromDiffusers, configToDiffusers, downFactor } from '../../src/vae/config.ts';
import { resolveVaeDtype, vaeDtypeSupported } from '../../src/vae/latent-space.ts';
import { OptionError } from '../../src/util/errors.ts';
import { FIXTURE, fixtureInput, fixtureVae, maxAbsDiff } from './helpers.ts';

test('SDXL VAE: names, shapes and the published parameter count (83,653,863)', () => {
  const vae = AutoencoderKL.empty(SDXL_VAE_CONFIG);
  try {
    assert.equal(vae.numParameters(), 83_653_863);
    assert.equal(FIXTURE.sdxl.param_count, 83_653_863);
    assert.equal(vae.encoder.numParameters(), FIXTURE.sdxl.encoder_params);
    assert.equal(vae.decoder.numParameters(), FIXTURE.sdxl.decoder_params);
    const ours = Object.fromEntries([...vae.stateDict()].map(([k, t]) => [k, [...t.shape]]));
    assert.deepEqual(Object.keys(ours).sort(), Object.keys(FIXTURE.sdxl.shapes).sort());
    assert.deepEqual(ours, FIXTURE.sdxl.shapes);
    // A few names the brief lists, spelled exactly as diffusers does.
    for (const k of [
      'encoder.down_blocks.0.downsamplers.0.conv.weight',
      'encoder.down_blocks.1.resnets.0.conv_shortcut.weight',
      'encoder.mid_block.attentions.0.to_out.0.weight',
      'decoder.up_blocks.3.resnets.2.conv2.bias',
      'decoder.up_blocks.0.upsamplers.0.conv.weight',
      'quant_conv.weight',
      'post_quant_conv.bias',
    ]) {
      assert.ok(k in ours, k);
    }
    assert.deepEqual(ours['encoder.conv_out.weight'], [8, 512, 3, 3]);
    assert.equal('decoder.up_blocks.3.upsamplers.0.conv.weight' in ours, false);
    assert.equal(vae.downFactor, 8);
    assert.equal(vae.parameters().every((p) => !p.requiresGrad), true);
  } finally {
    vae.dispose();
  }
  assert.deepEqual(configFromDiffusers(configToDiffusers(SDXL_VAE_CONFIG)), { ...SDXL_VAE_CONFIG, useQuantConv: true, usePostQuantConv: true, midBlockAddAttention: true });
  assert.equal(configFromDiffusers(FIXTURE.sdxl.config).scalingFactor, 0.13025);
  assert.equal(downFactor(TINY_VAE_CONFIG), 2);
});

test('parity with the PyTorch implementation: moments, posterior sample, decoder', () => {
  const vae = fixtureVae();
  const x = fixtureInput();
  try {
    assert.equal(vae.numParameters(), FIXTURE.tiny.param_count);
    tidy(() => {
      const m = vae.encodeMoments(x);
      assert.deepEqual(m.shape, FIXTURE.tiny.moments_shape);
      assert.ok(maxAbsDiff(m.toFloat32Array(), FIXTURE.tiny.moments) < 2e-4, `moments differ by ${maxAbsDiff(m.toFloat32Array(), FIXTURE.tiny.moments)}`);
      const post = posteriorOf(m);
      const s = samplePosterior(post, new Generator(FIXTURE.tiny.sample_seed));
      assert.ok(maxAbsDiff(s.toFloat32Array(), FIXTURE.tiny.sample) < 2e-4);
      const d = vae.decode(post.mean);
      assert.deepEqual(d.shape, FIXTURE.tiny.decoded_shape);
      assert.ok(maxAbsDiff(d.toFloat32Array(), FIXTURE.tiny.decoded_mean) < 2e-4, `decoded differs by ${maxAbsDiff(d.toFloat32Array(), FIXTURE.tiny.decoded_mean)}`);
      assert.ok(maxAbsDiff(vae.decode(s).toFloat32Array(), FIXTURE.tiny.decoded_sample) < 2e-4);
    });
  } finally {
    x.dispose();
    vae.dispose();
  }
});

test('encode → decode shapes for several sizes and depths (random weights), no leaks', () => {
  const deep = { ...TINY_VAE_CONFIG, blockOutChannels: [32, 32, 64], layersPerBlock: 1 };
  for (const [cfg, f] of [[TINY_VAE_CONFIG, 2], [deep, 4]] as const) {
    const vae = AutoencoderKL.random(cfg, 3);
    assert.equal(vae.downFactor, f);
    const before = liveTensorCount();
    for (const [H, W] of [[8, 8], [16, 24], [32, 16]] as const) {
      tidy(() => {
        const x = randn([2, 3, H, W], new Generator(1));
        const post = vae.encode(x);
        assert.deepEqual(post.mean.shape, [2, 4, H / f, W / f]);
        assert.deepEqual(post.logvar.shape, [2, 4, H / f, W / f]);
        const y = vae.decode(post.mean);
        assert.deepEqual(y.shape, [2, 3, H, W]);
        assert.equal(y.dtype, 'float32');
        assert.ok(y.isfinite().all().item() === 1);
      });
    }
    assert.equal(liveTensorCount(), before);
    assert.throws(() => tidy(() => vae.encode(randn([1, 3, 9, 8]))), (e: Error) => e instanceof OptionError && /multiples of/.test(e.message));
    assert.throws(() => tidy(() => vae.decode(randn([1, 3, 4, 4]))), OptionError);
    vae.dispose();
  }
  // Same seed, same weights.
  const a = AutoencoderKL.random(TINY_VAE_CONFIG, 5);
  const b = AutoencoderKL.random(TINY_VAE_CONFIG, 5);
  const wa = a.stateDict().get('decoder.conv_out.weight')!.toFloat32Array();
  const wb = b.stateDict().get('decoder.conv_out.weight')!.toFloat32Array();
  assert.deepEqual(wa, wb);
  a.dispose();
  b.dispose();
});

test('dtypes: bfloat16 runs on the CPU close to float32; float16 only where kernels exist', () => {
  assert.equal(resolveVaeDtype('cpu', 'auto'), 'float32');
  assert.equal(vaeDtypeSupported('cpu', 'float32'), true);
  const f32 = fixtureVae();
  const bf = AutoencoderKL.empty(f32.config, { dtype: 'bfloat16' });
  bf.loadStateDict(f32.stateDict());
  const x = fixtureInput();
  tidy(() => {
    const ref = f32.decode(f32.encode(x).mean).toFloat32Array();
    const y = bf.decode(bf.encode(x).mean);
    assert.equal(y.dtype, 'bfloat16');
    // bfloat16 keeps 8 significant bits; over ~40 layers the fixture VAE drifts by a few percent
    // (a single GroupNorm: 0.5 %). A wrong cast or kernel would be off by 100 %.
    const got = y.float().toFloat32Array();
    let e2 = 0;
    let r2 = 0;
    for (let i = 0; i < ref.length; i++) {
      e2 += (got[i]! - ref[i]!) ** 2;
      r2 += ref[i]! ** 2;
    }
    assert.ok(Math.sqrt(e2 / r2) < 0.12, `bfloat16 relative RMS error ${Math.sqrt(e2 / r2)}`);
  });
  x.dispose();
  f32.dispose();
  bf.dispose();
  if (!vaeDtypeSupported('cpu', 'float16')) {
    assert.throws(() => resolveVaeDtype('cpu', 'float16'), (e: Error) => e instanceof OptionError && /--vae-dtype/.test(e.message) && /bfloat16/.test(e.message));
  } else {
    assert.equal(resolveVaeDtype('cpu', 'float16'), 'float16');
  }
});
