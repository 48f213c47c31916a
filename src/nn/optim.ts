/**
 * AdamW with decoupled weight decay, exactly as `torch.optim.AdamW` (PyTorch 1.13, single-tensor
 * path, `amsgrad=False`, `maximize=False`), used by the training loop (REFERENCE_SPEC §6.3, §6.5 step 8):
 *
 * ```
 * t ← t + 1                                   (per parameter, only when it has a gradient)
 * θ ← θ · (1 − lr·λ)                          (decoupled weight decay)
 * m ← β₁ m + (1 − β₁) g
 * v ← β₂ v + (1 − β₂) g²
 * θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
 * ```
 *
 * The update runs in place under `noGrad` with the same operation order and scalar arithmetic as
 * PyTorch, so trajectories agree with `torch.optim.AdamW` bit for bit on the same machine.
 * Every temporary is freed before `step()` returns.
 */
import { aten, hasOperator, keep, noGrad, Tensor, zerosLike } from '../engine/index.ts';
import { OptionError } from '../util/errors.ts';
import { Module, StateDictError } from './module.ts';

/** Hyper-parameters (PyTorch defaults). */
export interface AdamWOptions {
  /** Learning rate (default 1e-3; the reference trains with `--lr`, default 1e-4). */
  lr?: number;
  /** (β₁, β₂), default (0.9, 0.999). */
  betas?: [number, number];
  /** Added to the denominator, default 1e-8. */
  eps?: number;
  /** Decoupled weight decay λ, default 1e-2 (the reference passes `--weight_decay`, default 0). */
  weightDecay?: number;
}

/** JSON-able part of the optimiser state (hyper-parameters and per-parameter step counts). */
export interface AdamWScalars {
  type: 'AdamW';
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  /** Steps taken per parameter name (parameters never stepped are absent). */
  steps: Record<string, number>;
}

/**
 * Optimiser state for checkpoints: tensors named `<param>.exp_avg` / `<param>.exp_avg_sq`
 * (live references owned by the optimiser — do not dispose) plus JSON-able scalars.
 */
export interface AdamWStateDict {
  tensors: Map<string, Tensor>;
  scalars: AdamWScalars;
}

interface ParamState {
  step: number;
  expAvg: Tensor;
  expAvgSq: Tensor;
}

/** Parameters as `[name, tensor]` pairs: a Module's names, or "0", "1", … for a plain list. */
export type ParamSource = Module | readonly Tensor[] | Iterable<readonly [string, Tensor]>;

/** Resolve a parameter source to named parameters (shared with EMA and gradient helpers). */
export function namedParams(src: ParamSource): [string, Tensor][] {
  if (src instanceof Module) return src.namedParameters();
  const arr = [...(src as Iterable<Tensor | readonly [string, Tensor]>)];
  return arr.map((e, i) => (e instanceof Tensor ? [String(i), e] : [e[0], e[1]]));
}

function checkNumber(name: string, v: unknown, ok: (v: number) => boolean, expected: string): void {
  if (typeof v !== 'number' || !ok(v)) throw new OptionError(name, expected, v);
}

/** Scalars of one update (shared by a group of parameters with the same step count). */
interface UpdateConstants {
  decay: number;
  beta1: number;
  beta2: number;
  bc2Sqrt: number;
  eps: number;
  stepSize: number;
}

// The multi-tensor (`_foreach_*`) operators run the same per-tensor kernels on the CPU, so results
// are identical to the one-tensor-at-a-time path; they only save per-call overhead.
const FOREACH_OPS = ['_foreach_mul_.Scalar', '_foreach_add_.List', '_foreach_addcmul_.Scalar', '_foreach_sqrt', '_foreach_div_.Scalar', '_foreach_add_.Scalar', '_foreach_addcdiv_.Scalar'];
const useForeach = FOREACH_OPS.every(hasOperator);

// native/optim.cc: the whole update in one pass over memory, same arithmetic element by element.
const hasFusedAdamW = hasOperator('flexvid::adamw_');
let fusedAdamWOn = process.env.FLEXVID_FUSED_ADAMW !== '0';

/**
 * Whether AdamW may run its update as one native pass (`flexvid::adamw_`: each element of p, g, m,
 * v read and written once, ≈ 3× less memory traffic and one operator call instead of nine per
 * parameter) where the parameters are contiguous float32/float64 CPU tensors. The results are
 * bit-identical to the per-operator path. On by default; `FLEXVID_FUSED_ADAMW=0` turns it off.
 * Returns the previous setting.
 */
export function setFusedAdamW(enabled: boolean): boolean {
  const prev = fusedAdamWOn;
  fusedAdamWOn = enabled;
  return prev;
}

type UpdateItem = { p: Tensor; g: Tensor; st: ParamState };

/**
 * A group of parameters in one native call, the same arithmetic as {@link updateOne}. Returns
 * false, having changed nothing, where the kernel does not apply (not one float32/float64 dtype,
 * not CPU, not contiguous): the native side checks, one call instead of a query per tensor.
 */
function updateFused(group: UpdateItem[], c: UpdateConstants): boolean {
  if (!hasFusedAdamW || !fusedAdamWOn) return false;
  return aten.callRaw('flexvid::adamw_', [
    group.map((x) => x.p),
    group.map((x) => x.g),
    group.map((x) => x.st.expAvg),
    group.map((x) => x.st.expAvgSq),
    c.decay,
    c.beta1,
    c.beta2,
    c.bc2Sqrt,
    c.eps,
    c.stepSize,
  ]) === true;
}

/** One parameter, in PyTorch's single-tensor order of operations. */
function updateOne({ p, g, st }: UpdateItem, c: UpdateConstants): void {
  if (c.decay !== 1) p.mul_(c.decay);
  st.expAvg.mul_(c.beta1).add_(g, 1 - c.beta1);
  st.expAvgSq.mul_(c.beta2).addcmul_(g, g, 1 - c.beta2);
  const denom = st.expAvgSq.sqrt();
  try {
    denom.div_(c.bc2Sqrt).add_(c.eps);
    p.addcdiv_(st.expAvg, denom, -c.stepSize);
  } finally {
    denom.dispose();
  }
}

/** A group of parameters, the same operations as {@link updateOne} with one call each. */
function updateForeach(group: UpdateItem[], c: UpdateConstants): void {
  const ps = group.map((x) => x.p);
  const gs = group.map((x) => x.g);
  const ms = group.map((x) => x.st.expAvg);
  const vs = group.map((x) => x.st.expAvgSq);
  if (c.decay !== 1) aten.callRaw('_foreach_mul_.Scalar', [ps, c.decay]);
  aten.callRaw('_foreach_mul_.Scalar', [ms, c.beta1]);
  aten.callRaw('_foreach_add_.List', [ms, gs, 1 - c.beta1]);
  aten.callRaw('_foreach_mul_.Scalar', [vs, c.beta2]);
  aten.callRaw('_foreach_addcmul_.Scalar', [vs, gs, gs, 1 - c.beta2]);
  const denoms = aten.callMany('_foreach_sqrt', vs);
  try {
    aten.callRaw('_foreach_div_.Scalar', [denoms, c.bc2Sqrt]);
    aten.callRaw('_foreach_add_.Scalar', [denoms, c.eps]);
    aten.callRaw('_foreach_addcdiv_.Scalar', [ps, ms, denoms, -c.stepSize]);
  } finally {
    for (const d of denoms) d.dispose();
  }
}

/** AdamW over a fixed list of parameters (one parameter group). */
export class AdamW {
  readonly params: [string, Tensor][];
  #lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  readonly #state = new Map<string, ParamState>();

  constructor(params: ParamSource, opts: AdamWOptions = {}) {
    this.params = namedParams(params);
    const names = new Set<string>();
    for (const [n] of this.params) {
      if (names.has(n)) throw new OptionError('AdamW params', 'unique parameter names', n);
      names.add(n);
    }
    this.#lr = opts.lr ?? 1e-3;
    this.betas = [...(opts.betas ?? [0.9, 0.999])] as [number, number];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 1e-2;
    checkNumber('lr', this.#lr, (v) => v >= 0 && Number.isFinite(v), 'a finite learning rate ≥ 0');
    checkNumber('betas[0]', this.betas[0], (v) => v >= 0 && v < 1, 'a value in [0, 1)');
    checkNumber('betas[1]', this.betas[1], (v) => v >= 0 && v < 1, 'a value in [0, 1)');
    checkNumber('eps', this.eps, (v) => v >= 0, 'eps ≥ 0');
    checkNumber('weightDecay', this.weightDecay, (v) => v >= 0, 'weight decay ≥ 0');
  }

  /** Current learning rate. */
  get lr(): number {
    return this.#lr;
  }

  /** Change the learning rate (e.g. linear annealing, REFERENCE_SPEC §6.5 step 8). */
  setLr(lr: number): void {
    checkNumber('lr', lr, (v) => v >= 0 && Number.isFinite(v), 'a finite learning rate ≥ 0');
    this.#lr = lr;
  }

  /** Steps taken by the parameter `name` (0 before its first update). */
  stepCount(name: string): number {
    return this.#state.get(name)?.step ?? 0;
  }

  /** One update of every parameter that has a gradient (parameters without one are skipped). */
  step(): void {
    const lr = this.#lr;
    const [beta1, beta2] = this.betas;
    const decay = 1 - lr * this.weightDecay;
    // Parameters with a gradient, grouped by their step count after this update (normally one
    // group): a group shares the bias corrections, so it is updated with one call per operation.
    const groups = new Map<number, UpdateItem[]>();
    const grads: Tensor[] = [];
    try {
      noGrad(() => {
        for (const [name, p] of this.params) {
          const g = p.grad;
          if (g === null) continue;
          grads.push(g);
          let st = this.#state.get(name);
          if (!st) {
            st = { step: 0, expAvg: keep(zerosLike(p)), expAvgSq: keep(zerosLike(p)) };
            this.#state.set(name, st);
          }
          st.step += 1;
          let group = groups.get(st.step);
          if (!group) groups.set(st.step, (group = []));
          group.push({ p, g, st });
        }
        for (const [step, group] of groups) {
          const biasCorrection1 = 1 - beta1 ** step;
          const biasCorrection2 = 1 - beta2 ** step;
          const stepSize = lr / biasCorrection1;
          const c = { decay, beta1, beta2, bc2Sqrt: Math.sqrt(biasCorrection2), eps: this.eps, stepSize };
          if (updateFused(group, c)) continue;
          if (useForeach) updateForeach(group, c);
          else for (const item of group) updateOne(item, c);
        }
      });
    } finally {
      for (const g of grads) g.dispose();
    }
  }

  /** Clear every parameter's gradient (sets it to none, freeing its memory). */
  zeroGrad(): void {
    for (const [, p] of this.params) p.zeroGrad();
  }

  /** State for checkpoints (tensors are live references; see {@link AdamWStateDict}). */
  stateDict(): AdamWStateDict {
    const tensors = new Map<string, Tensor>();
    const steps: Record<string, number> = {};
    for (const [name] of this.params) {
      const st = this.#state.get(name);
      if (!st) continue;
      tensors.set(`${name}.exp_avg`, st.expAvg);
      tensors.set(`${name}.exp_avg_sq`, st.expAvgSq);
      steps[name] = st.step;
    }
    return {
      tensors,
      scalars: { type: 'AdamW', lr: this.#lr, betas: [...this.betas] as [number, number], eps: this.eps, weightDecay: this.weightDecay, steps },
    };
  }

  /**
   * Restore state saved by {@link stateDict} (values are copied; like PyTorch, the saved learning
   * rate, betas, eps and weight decay replace the current ones). Unknown or missing names and
   * shape mismatches are reported together.
   */
  loadStateDict(state: { tensors: Map<string, Tensor> | Record<string, Tensor>; scalars: AdamWScalars }): void {
    const src = state.tensors instanceof Map ? state.tensors : new Map(Object.entries(state.tensors));
    const sc = state.scalars;
    if (!sc || sc.type !== 'AdamW') throw new StateDictError(`AdamW.loadStateDict: scalars.type is ${JSON.stringify(sc?.type)}, expected "AdamW"`);
    checkNumber('scalars.lr', sc.lr, (v) => v >= 0 && Number.isFinite(v), 'a finite learning rate ≥ 0');
    checkNumber('scalars.betas[0]', sc.betas?.[0], (v) => v >= 0 && v < 1, 'a value in [0, 1)');
    checkNumber('scalars.betas[1]', sc.betas?.[1], (v) => v >= 0 && v < 1, 'a value in [0, 1)');
    checkNumber('scalars.eps', sc.eps, (v) => v >= 0, 'eps ≥ 0');
    checkNumber('scalars.weightDecay', sc.weightDecay, (v) => v >= 0, 'weight decay ≥ 0');
    const own = new Map(this.params);
    const problems: string[] = [];
    const used = new Set<string>();
    for (const [name, steps] of Object.entries(sc.steps)) {
      const p = own.get(name);
      if (!p) {
        problems.push(`unexpected parameter ${name}`);
        continue;
      }
      if (!Number.isInteger(steps) || steps < 1) problems.push(`${name}: invalid step count ${steps}`);
      for (const suffix of ['exp_avg', 'exp_avg_sq']) {
        const key = `${name}.${suffix}`;
        const t = src.get(key);
        used.add(key);
        if (!t) problems.push(`missing ${key}`);
        else if (t.shape.join(',') !== p.shape.join(',')) problems.push(`${key}: expected [${p.shape.join(', ')}], got [${t.shape.join(', ')}]`);
      }
    }
    for (const k of src.keys()) if (!used.has(k)) problems.push(`unexpected tensor ${k}`);
    if (problems.length) throw new StateDictError(`AdamW.loadStateDict: ${problems.slice(0, 12).join('; ')}${problems.length > 12 ? '; …' : ''}`);
    this.#disposeState();
    noGrad(() => {
      for (const [name, steps] of Object.entries(sc.steps)) {
        const p = own.get(name)!;
        const expAvg = keep(zerosLike(p));
        const expAvgSq = keep(zerosLike(p));
        expAvg.copy_(src.get(`${name}.exp_avg`)!);
        expAvgSq.copy_(src.get(`${name}.exp_avg_sq`)!);
        this.#state.set(name, { step: steps, expAvg, expAvgSq });
      }
    });
    // Like PyTorch, the saved hyper-parameters replace the constructor's.
    this.#lr = sc.lr;
    this.betas = [sc.betas[0], sc.betas[1]];
    this.eps = sc.eps;
    this.weightDecay = sc.weightDecay;
  }

  #disposeState(): void {
    for (const st of this.#state.values()) {
      st.expAvg.dispose();
      st.expAvgSq.dispose();
    }
    this.#state.clear();
  }

  /** Free the optimiser's state tensors (parameters are not touched). */
  dispose(): void {
    this.#disposeState();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
