/**
 * Gradient norms and clipping.
 *
 * - {@link gradNorm}: the training log's `grad_norm = sqrt(Σ_p ‖∇p‖²)` (REFERENCE_SPEC §6.5 step 8),
 *   summed as the reference does: each parameter's `(g²).sum()` in its own dtype, accumulated
 *   in double precision in parameter order.
 * - {@link clipGradNorm}: `torch.nn.utils.clip_grad_norm_` (PyTorch 1.13): total p-norm of the
 *   per-parameter norms, scale `min(1, maxNorm / (total + 1e-6))` applied to every gradient in place.
 */
import { noGrad, stack, tidy, type Tensor } from '../engine/index.ts';
import { OptionError } from '../util/errors.ts';
import { namedParams, type ParamSource } from './optim.ts';

/** The gradients present (new handles; caller disposes). */
function grads(src: ParamSource): Tensor[] {
  const out: Tensor[] = [];
  for (const [, p] of namedParams(src)) {
    const g = p.grad;
    if (g !== null) out.push(g);
  }
  return out;
}

/**
 * sqrt(Σ ‖g‖²) over the parameters that have a gradient (0 when none has).
 * One device→host copy in total (not one per parameter).
 */
export function gradNorm(params: ParamSource): number {
  const gs = grads(params);
  if (gs.length === 0) return 0;
  const sums = tidy(() =>
    noGrad(() => {
      const perParam = gs.map((g) => g.square().sum());
      return stack(perParam).toFloat64Array();
    }),
  );
  for (const g of gs) g.dispose();
  let total = 0;
  for (const s of sums) total += s;
  return Math.sqrt(total);
}

/**
 * Scale the gradients in place so that their total `normType`-norm is at most `maxNorm`
 * (exactly `torch.nn.utils.clip_grad_norm_`). Returns the total norm before clipping.
 * `normType` may be `Infinity` (max-abs). With `errorIfNonfinite`, a NaN/∞ total norm throws
 * (and no gradient is changed).
 */
export function clipGradNorm(params: ParamSource, maxNorm: number, normType = 2, errorIfNonfinite = false): number {
  if (!(typeof maxNorm === 'number' && maxNorm >= 0)) throw new OptionError('maxNorm', 'a number ≥ 0', maxNorm);
  if (!(typeof normType === 'number' && normType > 0)) throw new OptionError('normType', 'a positive number or Infinity', normType);
  const gs = grads(params);
  if (gs.length === 0) return 0;
  try {
    return tidy(() =>
      noGrad(() => {
        let total: Tensor;
        if (normType === Infinity) {
          const norms = gs.map((g) => g.abs().max());
          total = norms.length === 1 ? norms[0]! : stack(norms).max();
        } else {
          total = stack(gs.map((g) => g.norm(normType))).norm(normType);
        }
        const totalValue = total.item();
        if (errorIfNonfinite && !Number.isFinite(totalValue)) {
          throw new OptionError('gradients', `a finite total ${normType}-norm (clipGradNorm with errorIfNonfinite)`, totalValue);
        }
        // clip_coef = max_norm / (total_norm + 1e-6), clamped to ≤ 1, as a tensor (like PyTorch).
        const coef = total.add(1e-6).reciprocal().mul(maxNorm).clamp(null, 1.0);
        for (const g of gs) g.mul_(coef);
        return totalValue;
      }),
    );
  } finally {
    for (const g of gs) g.dispose();
  }
}
