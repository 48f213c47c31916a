/**
 * Loading VAE weights (REFERENCE_SPEC §5.11): diffusers names, older diffusers attention names and
 * the original LDM layout (names from the PyTorch fixture's independent conversion) give the same
 * VAE; config from metadata, a sibling config.json or the shapes; clear errors without weights.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tidy, type Tensor } from '../../src/engine/index.ts';
import { loadTensors, saveTensors, tensorToRaw } from '../../src/nn/checkpoint.ts';
import { writeTorchFile } from '../../src/io/torch-pickle.ts';
import { AutoencoderKL } from '../../src/vae/autoencoder-kl.ts';
import { configToDiffusers, TINY_VAE_CONFIG } from '../../src/vae/config.ts';
import { detectVaeLayout } from '../../src/vae/diffusers-names.ts';
import { loadVae, resolveVaePath, saveVae, vaeSource, VAE_ENV, VaeWeightsMissingError } from '../../src/vae/latent-space.ts';
import { FileFormatError } from '../../src/util/errors.ts';
import { FIXTURE, FIXTURE_CONFIG, fixtureInput, fixtureWeights, maxAbsDiff } from './helpers.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-vae-weights-'));
let savedEnv: string | undefined;
before(() => {
  savedEnv = process.env[VAE_ENV];
  delete process.env[VAE_ENV];
});
after(() => {
  if (savedEnv !== undefined) process.env[VAE_ENV] = savedEnv;
  fs.rmSync(tmp, { recursive: true, force: true });
});

function disposeMap(m: Map<string, Tensor>): void {
  for (const t of m.values()) t.dispose();
}

/** Decoded fixture output of a loaded VAE. */
function decodedOf(vae: AutoencoderKL): Float32Array {
  const x = fixtureInput();
  try {
    return tidy(() => vae.decode(vae.encode(x).mean).toFloat32Array());
  } finally {
    x.dispose();
  }
}

test('diffusers, older diffusers and LDM layouts load to the same VAE', () => {
  const fixtureCfg = JSON.stringify(configToDiffusers(FIXTURE_CONFIG));
  const w = fixtureWeights();
  // 1. diffusers names, config in a sibling config.json (as in the published repository).
  const dir = path.join(tmp, 'diffusers');
  fs.mkdirSync(dir);
  saveTensors(path.join(dir, 'diffusion_pytorch_model.safetensors'), w);
  fs.writeFileSync(path.join(dir, 'config.json'), fixtureCfg);
  const a = loadVae(dir);
  assert.equal(vaeSource(a)?.layout, 'diffusers');
  assert.equal(vaeSource(a)?.file, path.resolve(dir, 'diffusion_pytorch_model.safetensors'));
  assert.deepEqual(a.config.blockOutChannels, FIXTURE_CONFIG.blockOutChannels);
  const ref = decodedOf(a);
  assert.ok(maxAbsDiff(ref, FIXTURE.tiny.decoded_mean) < 2e-4);

  // 2. older attention names.
  const legacy = new Map([...w].map(([k, t]) => [k.replace('.to_q.', '.query.').replace('.to_k.', '.key.').replace('.to_v.', '.value.').replace('.to_out.0.', '.proj_attn.'), t]));
  assert.equal(detectVaeLayout(legacy.keys()), 'diffusers-legacy-attention');
  const legacyFile = path.join(tmp, 'legacy.safetensors');
  saveTensors(legacyFile, legacy, { 'flexvid.vae_config': fixtureCfg });
  const b = loadVae(legacyFile);
  assert.equal(vaeSource(b)?.layout, 'diffusers-legacy-attention');
  assert.deepEqual(decodedOf(b), ref);

  // 3. LDM names from the fixture's own conversion; attention weights as 1×1 convolutions,
  //    inside a full checkpoint (first_stage_model.) with unrelated and loss entries.
  const ldm = new Map<string, Tensor>();
  for (const [k, t] of w) {
    const name = `first_stage_model.${FIXTURE.tiny.ldm_names[k]!}`;
    ldm.set(name, /attn_1\.(q|k|v|proj_out)\.weight$/.test(name) ? t.reshape([t.size(0), t.size(1), 1, 1]) : t.clone());
  }
  ldm.set('first_stage_model.loss.logvar', w.get('quant_conv.bias')!.clone());
  ldm.set('model.diffusion_model.input_blocks.0.0.weight', w.get('quant_conv.bias')!.clone());
  const ldmFile = path.join(tmp, 'sd-checkpoint.safetensors');
  saveTensors(ldmFile, ldm);
  disposeMap(ldm);
  // No config anywhere: the architecture comes from the shapes; groups must be given.
  const c = loadVae(ldmFile, { config: FIXTURE_CONFIG });
  assert.equal(vaeSource(c)?.layout, 'ldm');
  assert.deepEqual(decodedOf(c), ref);
  // The same as a PyTorch `.ckpt` ({state_dict: …}, torch.save zip format).
  const ckpt = path.join(tmp, 'sd.ckpt');
  const loaded = loadTensors(ldmFile).tensors;
  writeTorchFile(ckpt, { state_dict: Object.fromEntries([...loaded].map(([k, t]) => [k, tensorToRaw(t)])), global_step: 3 });
  disposeMap(loaded);
  const c2 = loadVae(ckpt, { config: FIXTURE_CONFIG });
  assert.deepEqual(decodedOf(c2), ref);
  c2.dispose();

  // 4. Shapes alone (diffusers names, no config): SDXL defaults for groups (32) and scaling.
  const tiny = AutoencoderKL.random(TINY_VAE_CONFIG, 1);
  const bare = path.join(tmp, 'bare.safetensors');
  saveTensors(bare, tiny.stateDict());
  const d = loadVae(bare);
  assert.deepEqual({ ...d.config }, { ...TINY_VAE_CONFIG, blockOutChannels: [32, 64], useQuantConv: true, usePostQuantConv: true, midBlockAddAttention: true });
  // saveVae → loadVae keeps the config (metadata) and the weights.
  const saved = path.join(tmp, 'saved.safetensors');
  saveVae(saved, tiny);
  const e = loadVae(saved);
  assert.deepEqual(e.stateDict().get('decoder.conv_out.weight')!.toFloat32Array(), tiny.stateDict().get('decoder.conv_out.weight')!.toFloat32Array());

  // The config from config.json must match the weights.
  const wrongDir = path.join(tmp, 'wrong');
  fs.mkdirSync(wrongDir);
  fs.copyFileSync(bare, path.join(wrongDir, 'diffusion_pytorch_model.safetensors'));
  fs.writeFileSync(path.join(wrongDir, 'config.json'), JSON.stringify(configToDiffusers({ ...TINY_VAE_CONFIG, blockOutChannels: [32, 32] })));
  assert.throws(() => loadVae(wrongDir), (err: Error) => err instanceof FileFormatError && /do not match/.test(err.message) && /shape mismatch/.test(err.message));
  // A file that is not a VAE.
  const notVae = path.join(tmp, 'other.safetensors');
  saveTensors(notVae, { 'input_blocks.0.0.weight': w.get('quant_conv.bias')! });
  assert.throws(() => loadVae(notVae), (err: Error) => err instanceof FileFormatError && /AutoencoderKL/.test(err.message));

  for (const v of [a, b, c, d, e, tiny]) v.dispose();
  disposeMap(w);
});

test('without weights the error says which file to download and where to put it', () => {
  const check = (fn: () => unknown, reason: RegExp) =>
    assert.throws(fn, (err: Error) => {
      assert.ok(err instanceof VaeWeightsMissingError, String(err));
      assert.match(err.message, reason);
      assert.match(err.message, /diffusion_pytorch_model\.safetensors/);
      assert.match(err.message, /https:\/\/huggingface\.co\/madebyollin\/sdxl-vae-fp16-fix/);
      assert.match(err.message, /--vae/);
      assert.match(err.message, /FLEXVID_VAE/);
      return true;
    });
  check(() => loadVae(undefined), /no VAE weights given/);
  check(() => resolveVaePath(path.join(tmp, 'nope.safetensors')), /no VAE weights at .*nope\.safetensors \(from --vae\)/);
  const empty = path.join(tmp, 'empty-folder');
  fs.mkdirSync(empty);
  check(() => loadVae(empty), /holds no diffusion_pytorch_model\.safetensors/);
  process.env[VAE_ENV] = path.join(tmp, 'from-env.safetensors');
  try {
    check(() => loadVae(undefined), /from FLEXVID_VAE/);
    const tiny = AutoencoderKL.random(TINY_VAE_CONFIG, 2);
    saveVae(process.env[VAE_ENV]!, tiny);
    const v = loadVae(undefined);
    assert.deepEqual(v.config.blockOutChannels, [32, 64]);
    v.dispose();
    tiny.dispose();
  } finally {
    delete process.env[VAE_ENV];
  }
});
