/**
 * Module: a tree of named parameters, buffers and sub-modules, with PyTorch's naming
 * (`input_blocks.1.0.in_layers.2.weight`) so state dicts match reference checkpoints key for key.
 *
 * Parameters are leaf tensors that require grad; they are owned by their module (kept out of
 * any `tidy` scope) and freed by `module.dispose()`.
 */
import { isGradEnabled, keep, noGrad, Tensor, versionSum, type DType } from '../engine/index.ts';
import { FlexvidError } from '../util/errors.ts';

export class StateDictError extends FlexvidError {}

export abstract class Module {
  /** Training mode (dropout active). Toggle with `train()` / `eval()`. */
  training = true;
  readonly #params = new Map<string, Tensor>();
  readonly #buffers = new Map<string, Tensor>();
  readonly #modules = new Map<string, Module>();
  readonly #derived = new Map<string, { parts: readonly Tensor[]; versions: number; value: Tensor }>();

  /** Register (or replace) a parameter; it becomes a grad-requiring leaf owned by this module. */
  protected registerParameter(name: string, t: Tensor): Tensor {
    keep(t);
    if (!t.requiresGrad) t.requiresGrad_(true);
    this.#params.get(name)?.dispose();
    this.#params.set(name, t);
    return t;
  }

  /** Register a non-trainable tensor that is saved in the state dict (e.g. running statistics). */
  protected registerBuffer(name: string, t: Tensor): Tensor {
    keep(t);
    this.#buffers.get(name)?.dispose();
    this.#buffers.set(name, t);
    return t;
  }

  /** Register a child module under `name` (its parameters get the `name.` prefix). */
  registerModule<M extends Module>(name: string, m: M): M {
    this.#modules.set(name, m);
    return m;
  }

  /** A parameter of this module by local name. */
  param(name: string): Tensor {
    const p = this.#params.get(name);
    if (!p) throw new StateDictError(`${this.constructor.name} has no parameter '${name}'`);
    return p;
  }

  /** An optional parameter (e.g. a bias that may be absent). */
  maybeParam(name: string): Tensor | null {
    return this.#params.get(name) ?? null;
  }

  buffer(name: string): Tensor {
    const b = this.#buffers.get(name);
    if (!b) throw new StateDictError(`${this.constructor.name} has no buffer '${name}'`);
    return b;
  }

  child<M extends Module = Module>(name: string): M {
    const m = this.#modules.get(name);
    if (!m) throw new StateDictError(`${this.constructor.name} has no sub-module '${name}'`);
    return m as M;
  }

  children(): [string, Module][] {
    return [...this.#modules.entries()];
  }

  /** All parameters with their dotted names, in registration order (depth first). */
  namedParameters(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, p] of this.#params) out.push([prefix + n, p]);
    for (const [n, m] of this.#modules) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  namedBuffers(prefix = ''): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [n, b] of this.#buffers) out.push([prefix + n, b]);
    for (const [n, m] of this.#modules) out.push(...m.namedBuffers(`${prefix}${n}.`));
    return out;
  }

  /** Named sub-modules (including this one as ''), depth first. */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix.replace(/\.$/, ''), this]];
    for (const [n, m] of this.#modules) out.push(...m.namedModules(`${prefix}${n}.`));
    return out;
  }

  /** Total number of parameter elements. */
  numParameters(): number {
    let n = 0;
    for (const p of this.parameters()) n += p.numel;
    return n;
  }

  /** Parameters and buffers by name (live references, not copies). */
  stateDict(): Map<string, Tensor> {
    return new Map([...this.namedParameters(), ...this.namedBuffers()]);
  }

  /**
   * Copy values from `state` into this module's tensors (shape-checked; dtype/device converted).
   * Strict by default: missing, unexpected and mismatched names are all reported at once.
   * Returns the names that were missing / unexpected (non-strict use).
   */
  loadStateDict(state: Map<string, Tensor> | Record<string, Tensor>, opts: { strict?: boolean } = {}): { missing: string[]; unexpected: string[] } {
    const strict = opts.strict ?? true;
    const src = state instanceof Map ? state : new Map(Object.entries(state));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !src.has(k));
    const unexpected = [...src.keys()].filter((k) => !own.has(k));
    const mismatched: string[] = [];
    for (const [k, t] of own) {
      const s = src.get(k);
      if (s && s.shape.join(',') !== t.shape.join(',')) mismatched.push(`${k}: expected [${t.shape.join(', ')}], got [${s.shape.join(', ')}]`);
    }
    if (mismatched.length || (strict && (missing.length || unexpected.length))) {
      const parts: string[] = [];
      if (missing.length) parts.push(`missing ${missing.length}: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''}`);
      if (unexpected.length) parts.push(`unexpected ${unexpected.length}: ${unexpected.slice(0, 10).join(', ')}${unexpected.length > 10 ? ', …' : ''}`);
      if (mismatched.length) parts.push(`shape mismatch ${mismatched.length}: ${mismatched.slice(0, 10).join('; ')}`);
      throw new StateDictError(`loadStateDict into ${this.constructor.name}: ${parts.join(' | ')}`);
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const s = src.get(k);
        if (s) t.copy_(s);
      }
    });
    return { missing, unexpected };
  }

  /** Set training mode recursively. */
  train(mode = true): this {
    for (const [, m] of this.namedModules()) m.training = mode;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Clear every parameter's gradient. */
  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /** Move / cast every parameter and buffer (floating dtypes only are cast). */
  to(opts: { device?: string; dtype?: DType }): this {
    for (const [, m] of this.namedModules()) m.#moveOwn(opts);
    return this;
  }

  #moveOwn(opts: { device?: string; dtype?: DType }): void {
    for (const [n, p] of [...this.#params]) {
      const dtype = opts.dtype && p.dtype.startsWith('float') ? opts.dtype : p.dtype;
      if ((opts.device === undefined || opts.device === p.device) && dtype === p.dtype) continue;
      const q = noGrad(() => p.to({ device: opts.device, dtype }));
      this.registerParameter(n, q);
    }
    for (const [n, b] of [...this.#buffers]) {
      const dtype = opts.dtype && b.dtype.startsWith('float') ? opts.dtype : b.dtype;
      if ((opts.device === undefined || opts.device === b.device) && dtype === b.dtype) continue;
      this.registerBuffer(n, b.to({ device: opts.device, dtype }));
    }
  }

  /**
   * A tensor made from `parts` (parameters of this module tree, typically) by `make`, kept and
   * handed out again while grad mode is off and every part is the same tensor, not disposed, at the
   * same version (`versionSum`: an optimiser step or loading weights bumps it). With grad mode on
   * it is made afresh on every call, so that autograd reaches the parts. Used for the weight
   * concatenations a forward pass would otherwise copy on every call (≈ 3 % of a sampling stage).
   * The kept tensor belongs to this module (freed by `dispose()`); callers must not modify or
   * dispose it.
   */
  derived(key: string, parts: readonly Tensor[], make: () => Tensor): Tensor {
    if (isGradEnabled()) return make();
    const e = this.#derived.get(key);
    const same = e && e.parts.length === parts.length && e.parts.every((p, i) => p === parts[i] && !p.isDisposed);
    if (same && !e.value.isDisposed && e.versions >= 0 && versionSum(parts) === e.versions) return e.value;
    e?.value.dispose();
    const value = keep(make());
    this.#derived.set(key, { parts: [...parts], versions: versionSum(parts), value });
    return value;
  }

  /** Free every parameter and buffer of this module tree (and the tensors `derived` kept). */
  dispose(): void {
    for (const [, m] of this.namedModules()) {
      for (const p of m.#params.values()) p.dispose();
      for (const b of m.#buffers.values()) b.dispose();
      for (const d of m.#derived.values()) d.value.dispose();
      m.#derived.clear();
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
