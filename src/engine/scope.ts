/**
 * Deterministic memory management for native tensors.
 *
 * Native memory is invisible to the JS garbage collector, so tensors are freed explicitly:
 * `tidy(fn)` frees every tensor created inside `fn` except those it returns (anywhere inside
 * arrays / plain objects / Maps) and those passed to `keep()`. Scopes nest; returned tensors move
 * to the enclosing scope. Tensors created outside any scope are owned by the caller
 * (`dispose()` / `using`). The native External's finalizer is the safety net for forgotten ones.
 */

/** Anything that can be freed. */
export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Set<Disposable>[] = [];

/** Called by the Tensor constructor: the new tensor belongs to the innermost scope. */
export function trackInScope(t: Disposable): void {
  if (scopes.length > 0) scopes[scopes.length - 1]!.add(t);
}

/** Remove `t` from every open scope so no scope frees it (ownership passes to the caller). */
export function keep<T extends Disposable>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, out: Set<Disposable>, depth = 0): void {
  if (value === null || value === undefined || depth > 8) return;
  if (typeof value !== 'object') return;
  if (isDisposableTensor(value)) {
    out.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, depth + 1);
  }
}

let isDisposableTensor: (v: object) => v is Disposable = (_v): _v is Disposable => false;

/** Registered by tensor.ts (avoids an import cycle). */
export function setTensorPredicate(p: (v: object) => v is Disposable): void {
  isDisposableTensor = p;
}

/**
 * Run `fn`, then free every tensor it created except the ones reachable from its result.
 * `fn` must be synchronous (use `tidy` inside async code around each synchronous block).
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) if (!t.isDisposed) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new Error('tidy(fn): fn returned a Promise; tidy only supports synchronous functions');
  }
  const survivors = new Set<Disposable>();
  collect(result, survivors);
  const parent = scopes.length > 0 ? scopes[scopes.length - 1] : undefined;
  for (const t of scope) {
    if (survivors.has(t)) {
      parent?.add(t);
    } else if (!t.isDisposed) {
      t.dispose();
    }
  }
  return result;
}

/** Dispose every tensor reachable from `value` (arrays, plain objects, Maps). */
export function disposeAll(value: unknown): void {
  const found = new Set<Disposable>();
  collect(value, found);
  for (const t of found) if (!t.isDisposed) t.dispose();
}

/** Number of currently open scopes (for tests). */
export function scopeDepth(): number {
  return scopes.length;
}

/**
 * Hand a tensor that was `keep()`-ed back to the innermost open scope (if any), e.g. when a loop
 * kept its running state and now returns it to a caller that may be inside `tidy`.
 */
export function adopt<T extends Disposable>(t: T): T {
  trackInScope(t);
  return t;
}
