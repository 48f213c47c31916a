/**
 * Exponential moving averages of a model's parameters, one copy per rate
 * (REFERENCE_SPEC §6.3 "EMA parameter copies per rate", §6.5 step 8, §6.7 `ema_<rate>_<step>`):
 *
 * ```
 * θ_ema ← r · θ_ema + (1 − r) · θ        for every rate r, after each optimiser step
 * ```
 *
 * implemented in place as the reference's `update_ema` (`targ.mul_(r).add_(src, alpha=1−r)`).
 * Only parameters are averaged (buffers are not), as in the reference. The copies are plain
 * tensors (no gradient) owned by the EMA object; free them with `dispose()`.
 */
import { aten, hasOperator, keep, noGrad, tidy, type Tensor } from '../engine/index.ts';
import { OptionError } from '../util/errors.ts';
import { Module, StateDictError } from './module.ts';
import { namedParams, type ParamSource } from './optim.ts';

/** The rate as the reference prints it in file names (Python's `str(float)`, e.g. `0.9999`). */
export function rateKey(rate: number): string {
  if (rate !== 0 && Number.isFinite(rate) && (Math.abs(rate) < 1e-4 || Math.abs(rate) >= 1e16)) {
    const [mantissa, exp] = rate.toExponential().split('e') as [string, string];
    return `${mantissa}e${exp[0]}${exp.slice(1).padStart(2, '0')}`;
  }
  const s = String(rate);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

const useForeach = hasOperator('_foreach_mul_.Scalar') && hasOperator('_foreach_add_.List');

export class EMA {
  readonly rates: number[];
  /** Source parameters, by name. */
  readonly params: [string, Tensor][];
  readonly #copies = new Map<number, Map<string, Tensor>>();

  /** EMA copies of `params` for each rate in `rates`, initialised to the current values. */
  constructor(params: ParamSource, rates: number[]) {
    if (!Array.isArray(rates) || rates.length === 0) throw new OptionError('ema rates', 'a non-empty list of rates in [0, 1]', rates);
    for (const r of rates) if (typeof r !== 'number' || !(r >= 0 && r <= 1)) throw new OptionError('ema rate', 'a number in [0, 1]', r);
    if (new Set(rates).size !== rates.length) throw new OptionError('ema rates', 'distinct rates', rates);
    this.rates = [...rates];
    this.params = namedParams(params);
    for (const r of this.rates) {
      const copy = new Map<string, Tensor>();
      noGrad(() => {
        for (const [n, p] of this.params) copy.set(n, keep(tidy(() => p.detach().clone())));
      });
      this.#copies.set(r, copy);
    }
  }

  #copy(rate: number): Map<string, Tensor> {
    const c = this.#copies.get(rate);
    if (!c) throw new OptionError('ema rate', `one of ${this.rates.join(', ')}`, rate);
    return c;
  }

  /** θ_ema ← r θ_ema + (1 − r) θ for every rate (in place, no temporaries). */
  update(): void {
    const sources = this.params.map(([, p]) => p);
    noGrad(() => {
      for (const r of this.rates) {
        const copy = this.#copies.get(r)!;
        const targets = this.params.map(([n]) => copy.get(n)!);
        if (useForeach) {
          // same kernels as the per-tensor loop below, one call per operation
          aten.callRaw('_foreach_mul_.Scalar', [targets, r]);
          aten.callRaw('_foreach_add_.List', [targets, sources, 1 - r]);
        } else {
          targets.forEach((t, i) => t.mul_(r).add_(sources[i]!, 1 - r));
        }
      }
    });
  }

  /** The averaged parameters for `rate`, by parameter name (live references — do not dispose). */
  stateDict(rate: number): Map<string, Tensor> {
    return new Map(this.#copy(rate));
  }

  /**
   * A module-shaped state dict for `rate`: `module.stateDict()` with every parameter replaced by
   * its average (buffers come from the module), as the reference saves `ema_<rate>_<step>`.
   */
  moduleStateDict(module: Module, rate: number): Map<string, Tensor> {
    const copy = this.#copy(rate);
    const out = module.stateDict();
    for (const [n, t] of copy) if (out.has(n)) out.set(n, t);
    return out;
  }

  /**
   * Overwrite the averages for `rate` from `state` (name → tensor, e.g. a loaded checkpoint;
   * extra names such as buffers are ignored, missing names or shape mismatches throw).
   */
  loadStateDict(rate: number, state: Map<string, Tensor> | Record<string, Tensor>): void {
    const copy = this.#copy(rate);
    const src = state instanceof Map ? state : new Map(Object.entries(state));
    const problems: string[] = [];
    for (const [n, t] of copy) {
      const s = src.get(n);
      if (!s) problems.push(`missing ${n}`);
      else if (s.shape.join(',') !== t.shape.join(',')) problems.push(`${n}: expected [${t.shape.join(', ')}], got [${s.shape.join(', ')}]`);
    }
    if (problems.length) throw new StateDictError(`EMA(${rateKey(rate)}).loadStateDict: ${problems.slice(0, 12).join('; ')}${problems.length > 12 ? '; …' : ''}`);
    noGrad(() => {
      for (const [n, t] of copy) t.copy_(src.get(n)!);
    });
  }

  /** Reset the averages (all rates, or one) to the source parameters' current values. */
  resetFromParams(rate?: number): void {
    const rates = rate === undefined ? this.rates : [rate];
    noGrad(() => {
      for (const r of rates) {
        const copy = this.#copy(r);
        for (const [n, p] of this.params) copy.get(n)!.copy_(p);
      }
    });
  }

  /** Copy the averages for `rate` into `module`'s parameters of the same names (for sampling). */
  copyTo(module: Module, rate: number): void {
    const copy = this.#copy(rate);
    const own = new Map(module.namedParameters());
    const missing = [...copy.keys()].filter((n) => !own.has(n));
    if (missing.length) throw new StateDictError(`EMA.copyTo: module has no parameters ${missing.slice(0, 10).join(', ')}`);
    noGrad(() => {
      for (const [n, t] of copy) own.get(n)!.copy_(t);
    });
  }

  /**
   * Run `fn` with the averages for `rate` loaded into `module`, then restore the module's own
   * parameters (also when `fn` throws). `fn` must be synchronous.
   */
  withAveraged<T>(module: Module, rate: number, fn: () => T): T {
    const saved = noGrad(() => module.namedParameters().map(([n, p]) => [n, keep(tidy(() => p.detach().clone()))] as const));
    try {
      this.copyTo(module, rate);
      return fn();
    } finally {
      const own = new Map(module.namedParameters());
      noGrad(() => {
        for (const [n, t] of saved) {
          own.get(n)?.copy_(t);
          t.dispose();
        }
      });
    }
  }

  /** Free every average. */
  dispose(): void {
    for (const copy of this.#copies.values()) for (const t of copy.values()) t.dispose();
    this.#copies.clear();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
