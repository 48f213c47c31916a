/**
 * Mixed-precision training (`--amp`). bf16: the forward pass runs under libtorch autocast
 * (convolutions and matmuls in bfloat16, normalisations, softmax and losses in float32), the
 * parameters, gradients, optimiser and EMA stay float32; no loss scaling is needed. fp16 (CUDA):
 * the same with float16, plus the reference's dynamic loss scaling (REFERENCE_SPEC §6.5): the loss
 * is multiplied by 2^s (s starts at 20); a step whose gradients are not finite is skipped and
 * s −= 1, otherwise the gradients are unscaled, the step taken and s += --fp16-scale-growth.
 */
import * as fs from 'node:fs';
import { ampDtype, noGrad, tidy, withAmp, type AmpMode, type Tensor } from '../engine/index.ts';
import type { Module } from '../nn/index.ts';

/** The reference's initial log2 loss scale. */
export const INITIAL_LG_LOSS_SCALE = 20;

export class MixedPrecision {
  /** log2 of the fp16 loss scale (fp16 only; logged as lg_loss_scale). */
  lgLossScale = INITIAL_LG_LOSS_SCALE;

  /**
   * @param mode   --amp
   * @param device the training device ('cpu', 'cuda', 'cuda:1')
   * @param growth --fp16-scale-growth (log2 scale added per good step)
   */
  constructor(
    readonly mode: AmpMode,
    readonly device: string,
    readonly growth = 1e-3,
  ) {
    ampDtype(mode, device); // refuses fp16 on a CPU, naming --amp
  }

  get scaling(): boolean {
    return this.mode === 'fp16';
  }

  /** Run the forward pass (model + losses) under autocast when enabled. */
  forward<T>(fn: () => T): T {
    return withAmp(this.mode, this.device, fn);
  }

  /** The loss to differentiate: `loss · 2^s` with fp16 scaling, else `loss` itself. */
  scaleLoss(loss: Tensor): Tensor {
    return this.scaling ? loss.mul(2 ** this.lgLossScale) : loss;
  }

  /**
   * After backward (and the all-reduce): with fp16 scaling, divide the gradients by 2^s and report
   * whether they are all finite; on overflow zero them and lower s. Without scaling: true.
   * Returns whether the optimiser should step.
   */
  unscaleGradients(model: Module): boolean {
    if (!this.scaling) return true;
    const params = model.parameters().filter((p) => p.grad !== null);
    return tidy(() =>
      noGrad(() => {
        const grads = params.map((p) => p.grad!);
        const finite = grads.every((g) => g.isfinite().all().item() === 1);
        if (!finite) {
          for (const g of grads) g.zero_();
          this.lgLossScale -= 1;
          return false;
        }
        const inv = 2 ** -this.lgLossScale;
        for (const g of grads) g.mul_(inv);
        return true;
      }),
    );
  }

  /** After a successful step: grow the scale (fp16). */
  afterStep(): void {
    if (this.scaling) this.lgLossScale += this.growth;
  }
}

/**
 * Does this CPU compute in bfloat16 natively (AVX-512 BF16 or AMX)? Elsewhere libtorch emulates
 * bf16 and `--amp bf16` is correct but slower than float32. Linux only (false elsewhere).
 */
export function cpuHasNativeBf16(): boolean {
  try {
    return /\b(avx512_bf16|amx_bf16)\b/.test(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}
