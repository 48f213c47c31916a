/**
 * Shared helpers of the VAE tests: the PyTorch fixture (test/fixtures/vae/make-vae.py) and its
 * deterministic weights.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { tensor, type Tensor } from '../../src/engine/index.ts';
import { AutoencoderKL } from '../../src/vae/autoencoder-kl.ts';
import type { AutoencoderKLConfig } from '../../src/vae/config.ts';

export interface VaeFixture {
  torch: string;
  sdxl: { config: Record<string, unknown>; param_count: number; encoder_params: number; decoder_params: number; shapes: Record<string, number[]> };
  tiny: {
    config: { in_channels: number; out_channels: number; block_out_channels: number[]; layers_per_block: number; latent_channels: number; norm_num_groups: number };
    param_count: number;
    names: string[];
    shapes: Record<string, number[]>;
    ldm_names: Record<string, string>;
    input_shape: number[];
    moments_shape: number[];
    moments: number[];
    sample_seed: number;
    sample: number[];
    decoded_shape: number[];
    decoded_mean: number[];
    decoded_sample: number[];
  };
}

export const FIXTURE: VaeFixture = JSON.parse(fs.readFileSync(path.join(import.meta.dirname, '../fixtures/vae/vae-tiny.json'), 'utf8'));

/** The fixture's miniature configuration. */
export const FIXTURE_CONFIG: AutoencoderKLConfig = {
  inChannels: FIXTURE.tiny.config.in_channels,
  outChannels: FIXTURE.tiny.config.out_channels,
  blockOutChannels: FIXTURE.tiny.config.block_out_channels,
  layersPerBlock: FIXTURE.tiny.config.layers_per_block,
  latentChannels: FIXTURE.tiny.config.latent_channels,
  normNumGroups: FIXTURE.tiny.config.norm_num_groups,
  scalingFactor: 0.13025,
};

/** The fixture's weights (make-vae.py formula), diffusers names → float32 tensors (caller disposes). */
export function fixtureWeights(): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  FIXTURE.tiny.names.forEach((name, j) => {
    const shape = FIXTURE.tiny.shapes[name]!;
    const n = shape.reduce((a, b) => a * b, 1);
    const v = new Float32Array(n);
    const fanIn = n / shape[0]!;
    for (let i = 0; i < n; i++) {
      const base = Math.sin(0.37 * i + 0.1 * (j + 1));
      v[i] = name.endsWith('bias') ? 0.1 * base : shape.length === 1 ? 1 + 0.1 * base : base / Math.sqrt(fanIn);
    }
    out.set(name, tensor(v, { shape }));
  });
  return out;
}

/** The fixture VAE with its weights loaded. */
export function fixtureVae(): AutoencoderKL {
  const vae = AutoencoderKL.empty(FIXTURE_CONFIG);
  const w = fixtureWeights();
  try {
    vae.loadStateDict(w);
  } finally {
    for (const t of w.values()) t.dispose();
  }
  return vae;
}

/** The fixture's input `[2, 3, 16, 16]`: x[i] = sin(0.11·i + 0.3). */
export function fixtureInput(): Tensor {
  const v = new Float32Array(2 * 3 * 16 * 16);
  for (let i = 0; i < v.length; i++) v[i] = Math.sin(0.11 * i + 0.3);
  return tensor(v, { shape: [2, 3, 16, 16] });
}

/** Largest |a − b| over two equally long arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
