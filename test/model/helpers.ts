/** Test helpers shared by the model tests. */
import { noGrad, arange, setFusedAttention, setFusedGroupNorm, setWinogradConv, tidy } from '../../src/engine/index.ts';
import type { Module } from '../../src/nn/index.ts';

/**
 * Fill every parameter with the deterministic pattern of bench/pytorch/fdm_unet.py
 * (`deterministic_fill_`): a·sin(0.1·i + h), h = Σ char codes of the name mod 97.
 */
export function deterministicFill(model: Module): void {
  noGrad(() => {
    for (const [name, p] of model.namedParameters()) {
      let h = 0;
      for (const c of name) h += c.charCodeAt(0);
      h %= 97;
      tidy(() => {
        const i = arange(0, p.numel, 1, { dtype: 'float64' });
        const v = i.mul(0.1).add(h).sin();
        const isNorm = name.includes('.norm.') || name.includes('in_layers.0') || name.includes('out_layers.0') || name.startsWith('out.0');
        const w = isNorm ? (name.endsWith('weight') ? v.mul(0.1).add(1) : v.mul(0.1)) : v.mul(0.05);
        p.copy_(w.reshape(p.shape));
      });
    }
  });
}

/**
 * Run `fn` on libtorch's own kernels only — no Winograd convolution, no fused GroupNorm or
 * attention — the configuration whose float32 rounding is comparable with PyTorch's (the parity
 * fixtures' 1e-4). The fast kernels round differently (Winograd most: ≈ 2× the rms error against
 * float64); unet.test.ts checks them against a float64 run.
 */
export function withPlainKernels<T>(fn: () => T): T {
  const w = setWinogradConv(false);
  const a = setFusedAttention(false);
  const n = setFusedGroupNorm(false);
  try {
    return fn();
  } finally {
    setWinogradConv(w);
    setFusedAttention(a);
    setFusedGroupNorm(n);
  }
}
