/**
 * The Tensor class: a JS handle on a libtorch tensor. Every operation goes through the c10
 * dispatcher (see native/flexvid.cc), so semantics — broadcasting, type promotion, views,
 * autograd — are exactly PyTorch's. Methods mirror PyTorch names in camelCase; a trailing `_`
 * marks in-place operations, as in libtorch.
 */
import { native, type NativeTensor } from './native.ts';
import { dtypeCode, dtypeFromCode, MemoryFormat, type DType, type MemoryFormatName } from './dtype.ts';
import { setTensorPredicate, trackInScope } from './scope.ts';

/** A libtorch error surfaced in JS; the message names the operator and argument shapes. */
export class TorchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TorchError';
  }
}

/** Run a direct binding call, turning its errors into TorchErrors. */
export function guardNative<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TorchError) throw e;
    const msg = (e as Error).message;
    throw new TorchError(msg.startsWith(what) ? msg : `${what}: ${msg}`);
  }
}

const opIds = new Map<string, number>();

function opId(name: string): number {
  let id = opIds.get(name);
  if (id === undefined) {
    id = native.resolveOp(name.includes('::') ? name : `aten::${name}`);
    opIds.set(name, id);
  }
  return id;
}

type Arg = unknown;

function toNativeArg(a: Arg): unknown {
  if (a instanceof Tensor) return a.handle;
  if (Array.isArray(a) && a.length > 0 && (a[0] instanceof Tensor || a.some((x) => x instanceof Tensor))) {
    return a.map((x) => (x instanceof Tensor ? x.handle : x));
  }
  return a;
}

/** Call an ATen operator by name ("conv2d", "add.Tensor", "aten::max.dim"); returns raw results. */
export function callRaw(name: string, args: Arg[], returnSelf = false): unknown {
  const nargs = args.map(toNativeArg);
  try {
    return native.callOp(opId(name), nargs, returnSelf);
  } catch (e) {
    throw new TorchError((e as Error).message);
  }
}

/** Wrap raw results: native tensors become Tensors (arrays recursively). */
export function wrapResult(r: unknown): unknown {
  if (r === null || r === undefined) return r;
  if (Array.isArray(r)) return r.map(wrapResult);
  if (typeof r === 'object') return new Tensor(r as NativeTensor);
  return r;
}

/** Call an operator that returns one tensor. */
export function call(name: string, ...args: Arg[]): Tensor {
  return new Tensor(callRaw(name, args) as NativeTensor);
}

/** Call an operator that returns several tensors. */
export function callMany(name: string, ...args: Arg[]): Tensor[] {
  return (callRaw(name, args) as NativeTensor[]).map((h) => new Tensor(h));
}

/** Call an in-place operator on `self` and return `self` (no duplicate handle is kept). */
function callInplace(self: Tensor, name: string, ...args: Arg[]): Tensor {
  const r = callRaw(name, [self, ...args], true) as NativeTensor;
  if (r !== self.handle) native.free(r);
  self.invalidateMeta();
  return self;
}

export type Shape = readonly number[];
export type Scalar = number | boolean;
export type TensorOrScalar = Tensor | Scalar;

export interface TensorOptions {
  dtype?: DType;
  device?: string;
}

/** A tensor in native (CPU or CUDA) memory. Free it with `dispose()`, `using`, or a `tidy` scope. */
export class Tensor {
  #h: NativeTensor | null;
  #shape: number[] | undefined;
  #dtype: DType | undefined;
  #device: string | undefined;

  constructor(handle: NativeTensor) {
    this.#h = handle;
    trackInScope(this);
  }

  /** The native handle; throws if the tensor was disposed. */
  get handle(): NativeTensor {
    if (this.#h === null) throw new TorchError('tensor used after dispose()');
    return this.#h;
  }

  get isDisposed(): boolean {
    return this.#h === null;
  }

  /** Free the native memory now (idempotent). */
  dispose(): void {
    if (this.#h !== null) {
      native.free(this.#h);
      this.#h = null;
    }
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal drop cached shape/dtype after an in-place operation. */
  invalidateMeta(): void {
    this.#shape = undefined;
  }

  #loadMeta(): void {
    const [shape, code, device] = native.meta(this.handle);
    this.#shape = shape;
    this.#dtype = dtypeFromCode(code);
    this.#device = device;
  }

  get shape(): readonly number[] {
    if (this.#shape === undefined) this.#loadMeta();
    return this.#shape!;
  }

  get dtype(): DType {
    if (this.#dtype === undefined) this.#loadMeta();
    return this.#dtype!;
  }

  get device(): string {
    if (this.#device === undefined) this.#loadMeta();
    return this.#device!;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get numel(): number {
    let n = 1;
    for (const d of this.shape) n *= d;
    return n;
  }

  /** Size of dimension `d` (negative counts from the end). */
  size(d: number): number {
    const s = this.shape;
    return s[d < 0 ? s.length + d : d]!;
  }

  get requiresGrad(): boolean {
    return native.meta(this.handle)[3];
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(', ')}]${this.device === 'cpu' ? '' : ' @' + this.device})`;
  }

  // ------------------------------------------------------------------------------------------
  // Data export

  /** Contents as a typed array of the tensor's own dtype (float16/bfloat16 → Float32Array). */
  toTypedArray(): Float32Array | Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array | BigInt64Array {
    switch (this.dtype) {
      case 'float32':
        return new Float32Array(native.toBytes(this.handle));
      case 'float64':
        return new Float64Array(native.toBytes(this.handle));
      case 'int32':
        return new Int32Array(native.toBytes(this.handle));
      case 'int16':
        return new Int16Array(native.toBytes(this.handle));
      case 'int8':
        return new Int8Array(native.toBytes(this.handle));
      case 'uint8':
      case 'bool':
        return new Uint8Array(native.toBytes(this.handle));
      case 'int64':
        return new BigInt64Array(native.toBytes(this.handle));
      case 'float16':
      case 'bfloat16': {
        using f = this.to({ dtype: 'float32' });
        return new Float32Array(native.toBytes(f.handle));
      }
    }
  }

  /** Raw little-endian bytes in C order (copied to CPU). */
  toBytes(): Uint8Array {
    return new Uint8Array(native.toBytes(this.handle));
  }

  toFloat32Array(): Float32Array {
    if (this.dtype === 'float32') return new Float32Array(native.toBytes(this.handle));
    using f = this.to({ dtype: 'float32' });
    return new Float32Array(native.toBytes(f.handle));
  }

  toFloat64Array(): Float64Array {
    if (this.dtype === 'float64') return new Float64Array(native.toBytes(this.handle));
    using f = this.to({ dtype: 'float64' });
    return new Float64Array(native.toBytes(f.handle));
  }

  /** Contents as plain numbers (int64 converted with Number()). */
  toArray(): number[] {
    const a = this.toTypedArray();
    return a instanceof BigInt64Array ? Array.from(a, Number) : Array.from(a as ArrayLike<number>);
  }

  /** The single value of a one-element tensor. */
  item(): number {
    if (this.numel !== 1) throw new TorchError(`item(): tensor has ${this.numel} elements, expected 1`);
    return this.toArray()[0]!;
  }

  // ------------------------------------------------------------------------------------------
  // Conversion and copies

  /** Cast and/or move. Returns a new tensor (a copy even when nothing changes, unless `copy: false`). */
  to(opts: TensorOptions & { copy?: boolean; nonBlocking?: boolean }): Tensor {
    const dtype = opts.dtype !== undefined ? dtypeCode(opts.dtype) : dtypeCode(this.dtype);
    if (opts.device !== undefined && opts.device !== this.device) {
      return call('to.device', this, opts.device, dtype, opts.nonBlocking ?? false, opts.copy ?? true);
    }
    return call('to.dtype', this, dtype, opts.nonBlocking ?? false, opts.copy ?? true);
  }

  /**
   * A copy in page-locked (pinned) host memory, from which copies to a CUDA device can run
   * asynchronously (`to({ device, nonBlocking: true })`). Needs a CUDA-enabled libtorch with a device.
   */
  pinMemory(): Tensor {
    return call('pin_memory', this, null);
  }

  /** Is this tensor in pinned host memory? (Always false without CUDA.) */
  isPinned(): boolean {
    if (!native.cudaAvailable()) return false;
    return callRaw('is_pinned', [this, null]) as boolean;
  }

  float(): Tensor {
    return this.to({ dtype: 'float32' });
  }

  double(): Tensor {
    return this.to({ dtype: 'float64' });
  }

  long(): Tensor {
    return this.to({ dtype: 'int64' });
  }

  half(): Tensor {
    return this.to({ dtype: 'float16' });
  }

  bfloat16(): Tensor {
    return this.to({ dtype: 'bfloat16' });
  }

  /** A new handle on the same storage and strides (a view, like `view(shape)`): no copy. */
  alias(): Tensor {
    return call('alias', this);
  }

  clone(memoryFormat: MemoryFormatName = 'preserve'): Tensor {
    return call('clone', this, MemoryFormat[memoryFormat]);
  }

  contiguous(memoryFormat: MemoryFormatName = 'contiguous'): Tensor {
    return call('contiguous', this, MemoryFormat[memoryFormat]);
  }

  isContiguous(memoryFormat: MemoryFormatName = 'contiguous'): boolean {
    return native.isContiguousIn(this.handle, MemoryFormat[memoryFormat]);
  }

  strides(): number[] {
    return native.strides(this.handle);
  }

  detach(): Tensor {
    return call('detach', this);
  }

  /** Overwrite contents from `src` (broadcast), in place. */
  copy_(src: Tensor): Tensor {
    return callInplace(this, 'copy_', src, false);
  }

  /** Overwrite a contiguous CPU tensor from a typed array of matching byte size (no allocation). */
  setData(bytes: ArrayBufferView): this {
    guardNative('setData', () => native.copyInto(this.handle, bytes));
    this.invalidateMeta();
    return this;
  }

  // ------------------------------------------------------------------------------------------
  // Autograd

  requiresGrad_(v = true): this {
    guardNative('requiresGrad', () => native.setRequiresGrad(this.handle, v));
    return this;
  }

  /** The accumulated gradient as a new handle (caller owns it), or null. */
  get grad(): Tensor | null {
    const g = native.grad(this.handle);
    return g === null ? null : new Tensor(g);
  }

  /** Replace (or clear, with null) the accumulated gradient. */
  setGrad(g: Tensor | null): void {
    if (g !== null && (g.shape.join(',') !== this.shape.join(',') || g.dtype !== this.dtype || g.device !== this.device)) {
      throw new TorchError(`setGrad: gradient ${g} does not match tensor ${this}`);
    }
    guardNative('setGrad', () => native.setGrad(this.handle, g === null ? null : g.handle));
  }

  zeroGrad(): void {
    native.setGrad(this.handle, null);
  }

  /** Backpropagate from this tensor (a scalar unless `gradient` is given). */
  backward(gradient?: Tensor, opts: { retainGraph?: boolean; createGraph?: boolean } = {}): void {
    try {
      native.backward([this.handle], gradient ? [gradient.handle] : null, opts.retainGraph ?? false, opts.createGraph ?? false);
    } catch (e) {
      throw new TorchError((e as Error).message);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Views and shape manipulation

  reshape(shape: Shape): Tensor {
    return call('reshape', this, shape);
  }

  view(shape: Shape): Tensor {
    return call('view', this, shape);
  }

  permute(dims: Shape): Tensor {
    return call('permute', this, dims);
  }

  transpose(d0: number, d1: number): Tensor {
    return call('transpose.int', this, d0, d1);
  }

  /** Matrix transpose of the last two dimensions. */
  get mT(): Tensor {
    return this.transpose(-2, -1);
  }

  narrow(dim: number, start: number, length: number): Tensor {
    return call('narrow', this, dim, start, length);
  }

  /** Python-style slice along `dim`: [start, end) with step (negative indices allowed). */
  slice(dim: number, start = 0, end?: number, step = 1): Tensor {
    return call('slice.Tensor', this, dim, start, end ?? null, step);
  }

  /** Select one index along `dim` (the dimension is removed). */
  select(dim: number, index: number): Tensor {
    return call('select.int', this, dim, index);
  }

  indexSelect(dim: number, index: Tensor): Tensor {
    return call('index_select', this, dim, index);
  }

  /** Out-of-place copy of `source`'s slices into this tensor's slices `index` along `dim` (differentiable in both). */
  indexCopy(dim: number, index: Tensor, source: Tensor): Tensor {
    return call('index_copy', this, dim, index, source);
  }

  /** Advanced indexing: `indices[k]` indexes dimension k (null = take all). */
  index(indices: (Tensor | null)[]): Tensor {
    return call('index.Tensor', this, indices);
  }

  indexPut_(indices: (Tensor | null)[], values: Tensor, accumulate = false): Tensor {
    return callInplace(this, 'index_put_', indices, values, accumulate);
  }

  gather(dim: number, index: Tensor): Tensor {
    return call('gather', this, dim, index, false);
  }

  scatter(dim: number, index: Tensor, src: Tensor): Tensor {
    return call('scatter.src', this, dim, index, src);
  }

  scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor {
    return call('scatter_add', this, dim, index, src);
  }

  maskedFill(mask: Tensor, value: number): Tensor {
    return call('masked_fill.Scalar', this, mask, value);
  }

  maskedFill_(mask: Tensor, value: number): Tensor {
    return callInplace(this, 'masked_fill_.Scalar', mask, value);
  }

  expand(shape: Shape): Tensor {
    return call('expand', this, shape, false);
  }

  expandAs(other: Tensor): Tensor {
    return call('expand_as', this, other);
  }

  squeeze(dim?: number): Tensor {
    return dim === undefined ? call('squeeze', this) : call('squeeze.dim', this, dim);
  }

  unsqueeze(dim: number): Tensor {
    return call('unsqueeze', this, dim);
  }

  flatten(startDim = 0, endDim = -1): Tensor {
    return call('flatten.using_ints', this, startDim, endDim);
  }

  unflatten(dim: number, sizes: Shape): Tensor {
    return this.reshape([...this.shape.slice(0, dim < 0 ? this.ndim + dim : dim), ...sizes, ...this.shape.slice((dim < 0 ? this.ndim + dim : dim) + 1)]);
  }

  chunk(chunks: number, dim = 0): Tensor[] {
    return callMany('chunk', this, chunks, dim);
  }

  split(splitSize: number | number[], dim = 0): Tensor[] {
    return typeof splitSize === 'number'
      ? callMany('split.Tensor', this, splitSize, dim)
      : callMany('split_with_sizes', this, splitSize, dim);
  }

  unbind(dim = 0): Tensor[] {
    return callMany('unbind.int', this, dim);
  }

  flip(dims: Shape): Tensor {
    return call('flip', this, dims);
  }

  roll(shifts: Shape, dims: Shape): Tensor {
    return call('roll', this, shifts, dims);
  }

  repeat(repeats: Shape): Tensor {
    return call('repeat', this, repeats);
  }

  repeatInterleave(repeats: number, dim: number): Tensor {
    return call('repeat_interleave.self_int', this, repeats, dim);
  }

  tril(diagonal = 0): Tensor {
    return call('tril', this, diagonal);
  }

  triu(diagonal = 0): Tensor {
    return call('triu', this, diagonal);
  }

  // ------------------------------------------------------------------------------------------
  // Elementwise arithmetic (broadcasting). Numbers are scalars.

  add(other: TensorOrScalar, alpha = 1): Tensor {
    return other instanceof Tensor ? call('add.Tensor', this, other, alpha) : call('add.Scalar', this, other, alpha);
  }

  sub(other: TensorOrScalar, alpha = 1): Tensor {
    return other instanceof Tensor ? call('sub.Tensor', this, other, alpha) : call('sub.Scalar', this, other, alpha);
  }

  mul(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('mul.Tensor', this, other) : call('mul.Scalar', this, other);
  }

  div(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('div.Tensor', this, other) : call('div.Scalar', this, other);
  }

  /** Scalar minus this tensor. */
  rsub(other: number): Tensor {
    return call('rsub.Scalar', this, other, 1);
  }

  neg(): Tensor {
    return call('neg', this);
  }

  pow(exponent: TensorOrScalar): Tensor {
    return exponent instanceof Tensor ? call('pow.Tensor_Tensor', this, exponent) : call('pow.Tensor_Scalar', this, exponent);
  }

  abs(): Tensor {
    return call('abs', this);
  }

  sign(): Tensor {
    return call('sign', this);
  }

  exp(): Tensor {
    return call('exp', this);
  }

  log(): Tensor {
    return call('log', this);
  }

  log1p(): Tensor {
    return call('log1p', this);
  }

  sqrt(): Tensor {
    return call('sqrt', this);
  }

  rsqrt(): Tensor {
    return call('rsqrt', this);
  }

  square(): Tensor {
    return call('square', this);
  }

  sin(): Tensor {
    return call('sin', this);
  }

  cos(): Tensor {
    return call('cos', this);
  }

  tanh(): Tensor {
    return call('tanh', this);
  }

  sigmoid(): Tensor {
    return call('sigmoid', this);
  }

  relu(): Tensor {
    return call('relu', this);
  }

  silu(): Tensor {
    return call('silu', this);
  }

  gelu(approximate: 'none' | 'tanh' = 'none'): Tensor {
    return call('gelu', this, approximate);
  }

  floor(): Tensor {
    return call('floor', this);
  }

  ceil(): Tensor {
    return call('ceil', this);
  }

  round(): Tensor {
    return call('round', this);
  }

  reciprocal(): Tensor {
    return call('reciprocal', this);
  }

  clamp(min: number | null, max: number | null = null): Tensor {
    return call('clamp', this, min, max);
  }

  clampMin(min: number): Tensor {
    return call('clamp_min', this, min);
  }

  /** Elementwise maximum with another tensor. */
  maximum(other: Tensor): Tensor {
    return call('maximum', this, other);
  }

  minimum(other: Tensor): Tensor {
    return call('minimum', this, other);
  }

  /** this + value * t1 * t2 */
  addcmul(t1: Tensor, t2: Tensor, value = 1): Tensor {
    return call('addcmul', this, t1, t2, value);
  }

  /** this + value * t1 / t2 */
  addcdiv(t1: Tensor, t2: Tensor, value = 1): Tensor {
    return call('addcdiv', this, t1, t2, value);
  }

  /** Linear interpolation this + weight * (end - this). */
  lerp(end: Tensor, weight: number): Tensor {
    return call('lerp.Scalar', this, end, weight);
  }

  isnan(): Tensor {
    return call('isnan', this);
  }

  isfinite(): Tensor {
    return call('isfinite', this);
  }

  // In-place arithmetic (optimizers, EMA). Use under noGrad() for leaf parameters.

  add_(other: TensorOrScalar, alpha = 1): Tensor {
    return other instanceof Tensor ? callInplace(this, 'add_.Tensor', other, alpha) : callInplace(this, 'add_.Scalar', other, alpha);
  }

  sub_(other: TensorOrScalar, alpha = 1): Tensor {
    return other instanceof Tensor ? callInplace(this, 'sub_.Tensor', other, alpha) : callInplace(this, 'sub_.Scalar', other, alpha);
  }

  mul_(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? callInplace(this, 'mul_.Tensor', other) : callInplace(this, 'mul_.Scalar', other);
  }

  div_(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? callInplace(this, 'div_.Tensor', other) : callInplace(this, 'div_.Scalar', other);
  }

  addcmul_(t1: Tensor, t2: Tensor, value = 1): Tensor {
    return callInplace(this, 'addcmul_', t1, t2, value);
  }

  addcdiv_(t1: Tensor, t2: Tensor, value = 1): Tensor {
    return callInplace(this, 'addcdiv_', t1, t2, value);
  }

  lerp_(end: Tensor, weight: number): Tensor {
    return callInplace(this, 'lerp_.Scalar', end, weight);
  }

  clamp_(min: number | null, max: number | null = null): Tensor {
    return callInplace(this, 'clamp_', min, max);
  }

  zero_(): Tensor {
    return callInplace(this, 'zero_');
  }

  fill_(value: number): Tensor {
    return callInplace(this, 'fill_.Scalar', value);
  }

  sqrt_(): Tensor {
    return callInplace(this, 'sqrt_');
  }

  /** Fill with N(mean, std) draws from `generator` (in place). */
  normal_(mean = 0, std = 1, generator?: Generator): Tensor {
    return callInplace(this, 'normal_', mean, std, generator?.handle ?? null);
  }

  /** Fill with U[from, to) draws from `generator` (in place). */
  uniform_(from = 0, to = 1, generator?: Generator): Tensor {
    return callInplace(this, 'uniform_', from, to, generator?.handle ?? null);
  }

  // ------------------------------------------------------------------------------------------
  // Comparisons (return bool tensors)

  eq(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('eq.Tensor', this, other) : call('eq.Scalar', this, other);
  }

  ne(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('ne.Tensor', this, other) : call('ne.Scalar', this, other);
  }

  lt(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('lt.Tensor', this, other) : call('lt.Scalar', this, other);
  }

  le(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('le.Tensor', this, other) : call('le.Scalar', this, other);
  }

  gt(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('gt.Tensor', this, other) : call('gt.Scalar', this, other);
  }

  ge(other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('ge.Tensor', this, other) : call('ge.Scalar', this, other);
  }

  logicalNot(): Tensor {
    return call('logical_not', this);
  }

  logicalAnd(other: Tensor): Tensor {
    return call('logical_and', this, other);
  }

  logicalOr(other: Tensor): Tensor {
    return call('logical_or', this, other);
  }

  // ------------------------------------------------------------------------------------------
  // Reductions. `dim` may be a number or a list; omitted = all elements.

  sum(dim?: number | Shape, keepdim = false): Tensor {
    if (dim === undefined) return call('sum', this, null);
    return call('sum.dim_IntList', this, typeof dim === 'number' ? [dim] : dim, keepdim, null);
  }

  mean(dim?: number | Shape, keepdim = false): Tensor {
    if (dim === undefined) return call('mean', this, null);
    return call('mean.dim', this, typeof dim === 'number' ? [dim] : dim, keepdim, null);
  }

  /** Variance with `correction` (1 = unbiased, 0 = population). */
  var(dim?: number | Shape, opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    const dims = dim === undefined ? null : typeof dim === 'number' ? [dim] : dim;
    return call('var.correction', this, dims, opts.correction ?? 1, opts.keepdim ?? false);
  }

  std(dim?: number | Shape, opts: { correction?: number; keepdim?: boolean } = {}): Tensor {
    const dims = dim === undefined ? null : typeof dim === 'number' ? [dim] : dim;
    return call('std.correction', this, dims, opts.correction ?? 1, opts.keepdim ?? false);
  }

  prod(dim?: number, keepdim = false): Tensor {
    return dim === undefined ? call('prod', this, null) : call('prod.dim_int', this, dim, keepdim, null);
  }

  /** Maximum over all elements (no dim) or `{values, indices}` along `dim`. */
  max(): Tensor;
  max(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  max(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return call('max', this);
    const [values, indices] = callMany('max.dim', this, dim, keepdim);
    return { values: values!, indices: indices! };
  }

  min(): Tensor;
  min(dim: number, keepdim?: boolean): { values: Tensor; indices: Tensor };
  min(dim?: number, keepdim = false): Tensor | { values: Tensor; indices: Tensor } {
    if (dim === undefined) return call('min', this);
    const [values, indices] = callMany('min.dim', this, dim, keepdim);
    return { values: values!, indices: indices! };
  }

  amax(dim: number | Shape, keepdim = false): Tensor {
    return call('amax', this, typeof dim === 'number' ? [dim] : dim, keepdim);
  }

  argmax(dim?: number, keepdim = false): Tensor {
    return call('argmax', this, dim ?? null, keepdim);
  }

  argmin(dim?: number, keepdim = false): Tensor {
    return call('argmin', this, dim ?? null, keepdim);
  }

  /** p-norm over `dim` (all elements when omitted). */
  norm(p = 2, dim?: number | Shape, keepdim = false): Tensor {
    if (dim === undefined) return call('norm.Scalar', this, p);
    return call('norm.ScalarOpt_dim', this, p, typeof dim === 'number' ? [dim] : dim, keepdim);
  }

  cumsum(dim: number): Tensor {
    return call('cumsum', this, dim, null);
  }

  logsumexp(dim: number | Shape, keepdim = false): Tensor {
    return call('logsumexp', this, typeof dim === 'number' ? [dim] : dim, keepdim);
  }

  all(): Tensor {
    return call('all', this);
  }

  any(): Tensor {
    return call('any', this);
  }

  /** Sorted values and indices along `dim`. */
  sort(dim = -1, descending = false): { values: Tensor; indices: Tensor } {
    const [values, indices] = callMany('sort', this, dim, descending);
    return { values: values!, indices: indices! };
  }

  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    const [values, indices] = callMany('topk', this, k, dim, largest, sorted);
    return { values: values!, indices: indices! };
  }

  // ------------------------------------------------------------------------------------------
  // Linear algebra and activations

  matmul(other: Tensor): Tensor {
    return call('matmul', this, other);
  }

  bmm(other: Tensor): Tensor {
    return call('bmm', this, other);
  }

  softmax(dim: number): Tensor {
    return call('softmax.int', this, dim, null);
  }

  logSoftmax(dim: number): Tensor {
    return call('log_softmax.int', this, dim, null);
  }

  where(condition: Tensor, other: TensorOrScalar): Tensor {
    return other instanceof Tensor ? call('where.self', condition, this, other) : call('where.ScalarOther', condition, this, other);
  }
}

setTensorPredicate((v): v is Tensor => v instanceof Tensor);

/**
 * A seeded random generator (CPU or CUDA). Pass it to random creation functions; its state can
 * be saved (`getState()`, a uint8 tensor) and restored (`setState`), so runs resume exactly.
 */
export class Generator {
  readonly handle: ReturnType<typeof native.newGenerator>;
  readonly device: string;

  constructor(seed: number, device = 'cpu') {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new TorchError(`Generator seed must be a non-negative integer, got ${seed}`);
    try {
      this.handle = native.newGenerator(seed, device);
    } catch (e) {
      throw new TorchError((e as Error).message);
    }
    this.device = device;
  }

  /** Full generator state as a uint8 tensor (caller owns it). */
  getState(): Tensor {
    return new Tensor(native.generatorGetState(this.handle));
  }

  setState(state: Tensor): void {
    try {
      native.generatorSetState(this.handle, state.handle);
    } catch (e) {
      throw new TorchError((e as Error).message);
    }
  }

  /** State as plain bytes (for JSON/safetensors checkpoints). */
  getStateBytes(): Uint8Array {
    using s = this.getState();
    return s.toBytes();
  }

  setStateBytes(bytes: Uint8Array): void {
    let h: NativeTensor;
    try {
      h = native.fromBytes(bytes, [bytes.length], dtypeCode('uint8'));
    } catch (e) {
      throw new TorchError((e as Error).message);
    }
    using t = new Tensor(h);
    this.setState(t);
  }
}
