import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { arange, inferenceMode, tensor, tidy } from '../../src/engine/index.ts';
import { UNetVideoModel } from '../../src/model/unet.ts';
import { modelCostTable } from '../../src/model/flops.ts';
import { writeTorchFile } from '../../src/io/torch-pickle.ts';
import { tensorToRaw } from '../../src/nn/checkpoint.ts';
import { loadModelCheckpoint } from '../../src/training/checkpoint.ts';
import { readNpy } from '../../src/data/npy.ts';
import { deterministicFill } from './helpers.ts';
import { withPlainKernels } from './helpers.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..', '..');

test('flexvid convert imports a reference-format checkpoint that reproduces the PyTorch outputs', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-convert-'));
  // A reference-style file: torch.save({state_dict, config (snake_case training args), step}).
  const m = new UNetVideoModel({ imageSize: 32, modelChannels: 32, numResBlocks: 1, numHeads: 2 });
  deterministicFill(m);
  const sd: Record<string, unknown> = {};
  for (const [n, p] of m.namedParameters()) sd[n] = tensorToRaw(p);
  m.dispose();
  const pt = path.join(dir, 'ema_0.9999_000123.pt');
  writeTorchFile(pt, {
    state_dict: sd,
    config: { dataset: 'streaming_ball_nstn', num_channels: 32, num_res_blocks: 1, num_heads: 2, max_frames: 10, T: 10, diffusion_space: 'pixel', unknown_key: 1, diffusion_space_kwargs: { pre_encoded: false } },
    step: 123,
  });
  const out = path.join(dir, 'ema.safetensors');
  const log = execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'src/cli/main.ts'), 'convert', pt, '--out', out], { cwd: root, encoding: 'utf8' });
  assert.match(log, /step 123/);
  assert.match(log, /ignored config keys.*unknown_key/);
  const loaded = loadModelCheckpoint(out);
  assert.equal(loaded.meta.step, 123);
  assert.equal(loaded.meta.config.model.imageSize, 32); // from the registry entry of the dataset
  tidy(() => {
    const B = 2, T = 5, n = B * T * 3 * 32 * 32;
    const i = arange(0, n, 1, { dtype: 'float64' });
    const x = i.mul(0.013).sin().to({ dtype: 'float32' }).reshape([B, T, 3, 32, 32]);
    const x0 = i.mul(0.007).cos().to({ dtype: 'float32' }).reshape([B, T, 3, 32, 32]);
    const y = withPlainKernels(() => inferenceMode(() =>
      loaded.model.forward({
        x,
        x0,
        timesteps: tensor([123.5, 900]),
        frameIndices: tensor([[0, 1, 2, 3, 4], [0, 3, 7, 10, 20]]),
        obsMask: tensor([[1, 1, 0, 0, 0], [0, 1, 0, 1, 0]]),
        latentMask: tensor([[0, 0, 1, 1, 0], [1, 0, 1, 0, 0]]),
      }),
    )).toFloat32Array();
    const want = readNpy(path.join(here, '../fixtures/model/parity_out.npy')).data as Float32Array;
    let err = 0;
    for (let k = 0; k < y.length; k++) err = Math.max(err, Math.abs(y[k]! - want[k]!));
    assert.ok(err < 1e-4, `max abs error ${err}`);
  });
  loaded.model.dispose();
});

test('analytic cost table: parameter totals and the Balls forward cost', () => {
  const total = (cfg: object) => modelCostTable(cfg).reduce((s, b) => s + b.params, 0);
  assert.equal(total({ imageSize: 32, modelChannels: 128, numResBlocks: 2 }), 49_065_987);
  assert.equal(total({ imageSize: 64, modelChannels: 128, numResBlocks: 2 }), 115_985_411);
  assert.equal(total({ imageSize: 32, modelChannels: 64, numResBlocks: 1 }), 8_202_947);
  // ≈ 47 GFLOP for a batch of 2 × 10 frames (the profile of the reference)
  const gflop = (20 * modelCostTable({ imageSize: 32, modelChannels: 64, numResBlocks: 1 }).reduce((s, b) => s + b.flopsPerFrame, 0)) / 1e9;
  assert.ok(gflop > 44 && gflop < 50, `forward GFLOP ${gflop}`);
});
