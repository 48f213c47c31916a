/**
 * Tensor creation and functional operations (the `torch.*` / `torch.nn.functional.*` surface).
 * Shapes follow PyTorch: images `[N, C, H, W]`, volumes `[N, C, D, H, W]`.
 */
import { native } from './native.ts';
import { dtypeCode, dtypeOfArray, type DType, type NumericArray } from './dtype.ts';
import { call, callMany, callRaw, Generator, guardNative, Tensor, TorchError, type Shape, type TensorOptions } from './tensor.ts';
import { tidy } from './scope.ts';

const cpuFloat = (o: TensorOptions = {}) => [dtypeCode(o.dtype ?? 'float32'), null, o.device ?? null, null] as const;

function numelOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new TorchError(`invalid shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

// --------------------------------------------------------------------------------------------
// Creation

/**
 * Tensor from a typed array (copied) or a (nested) number array; a Uint16Array holds float16 /
 * bfloat16 bit patterns and needs `dtype: 'float16' | 'bfloat16'`.
 * `shape` defaults to the array's length (or nesting); `dtype` defaults to the array's type
 * (float32 for plain number arrays) and converts when different.
 */
export function tensor(data: NumericArray | Uint16Array | number[] | number[][] | number[][][] | boolean[], opts: TensorOptions & { shape?: Shape } = {}): Tensor {
  if (data instanceof Uint16Array) {
    // raw binary16 / bfloat16 bit patterns
    if (opts.dtype !== 'float16' && opts.dtype !== 'bfloat16') throw new TorchError(`tensor(): a Uint16Array holds float16 or bfloat16 bits; pass dtype 'float16' or 'bfloat16'`);
    const t = fromBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), opts.shape ?? [data.length], opts.dtype);
    if (opts.device === undefined || opts.device === 'cpu') return t;
    const moved = t.to({ device: opts.device });
    t.dispose();
    return moved;
  }
  let arr: NumericArray;
  let shape: number[];
  if (ArrayBuffer.isView(data)) {
    arr = data;
    shape = opts.shape ? [...opts.shape] : [data.length];
  } else {
    const inferred: number[] = [];
    let probe: unknown = data;
    while (Array.isArray(probe)) {
      inferred.push(probe.length);
      probe = probe[0];
    }
    const flat = (data as unknown[]).flat(Infinity) as (number | boolean)[];
    arr = typeof flat[0] === 'boolean' ? Uint8Array.from(flat as boolean[], (b) => (b ? 1 : 0)) : Float32Array.from(flat as number[]);
    shape = opts.shape ? [...opts.shape] : inferred;
    if (typeof flat[0] === 'boolean' && opts.dtype === undefined) opts = { ...opts, dtype: 'bool' };
  }
  if (numelOf(shape) !== arr.length) throw new TorchError(`tensor(): ${arr.length} values do not fill shape [${shape.join(', ')}]`);
  const own = dtypeOfArray(arr);
  let t: Tensor;
  try {
    t = new Tensor(native.fromBytes(arr, shape, dtypeCode(own)));
  } catch (e) {
    throw new TorchError(`tensor(): ${(e as Error).message}`);
  }
  if ((opts.dtype !== undefined && opts.dtype !== own) || (opts.device !== undefined && opts.device !== 'cpu')) {
    const moved = t.to({ dtype: opts.dtype ?? own, device: opts.device });
    t.dispose();
    t = moved;
  }
  return t;
}

/** Tensor over raw little-endian bytes with the given dtype and shape (copied). */
export function fromBytes(bytes: Uint8Array, shape: Shape, dtype: DType): Tensor {
  try {
    return new Tensor(native.fromBytes(bytes, [...shape], dtypeCode(dtype)));
  } catch (e) {
    throw e instanceof TorchError ? e : new TorchError((e as Error).message);
  }
}

/** Scalar (0-d) tensor. */
export function scalarTensor(v: number, opts: TensorOptions = {}): Tensor {
  return call('scalar_tensor', v, ...cpuFloat(opts));
}

export function zeros(shape: Shape, opts: TensorOptions = {}): Tensor {
  return call('zeros', shape, ...cpuFloat(opts));
}

export function ones(shape: Shape, opts: TensorOptions = {}): Tensor {
  return call('ones', shape, ...cpuFloat(opts));
}

export function full(shape: Shape, value: number, opts: TensorOptions = {}): Tensor {
  return call('full', shape, value, ...cpuFloat(opts));
}

export function empty(shape: Shape, opts: TensorOptions = {}): Tensor {
  return call('empty.memory_format', shape, ...cpuFloat(opts), null);
}

export function zerosLike(t: Tensor): Tensor {
  return call('zeros_like', t, null, null, null, null, null);
}

export function onesLike(t: Tensor): Tensor {
  return call('ones_like', t, null, null, null, null, null);
}

export function fullLike(t: Tensor, value: number): Tensor {
  return call('full_like', t, value, null, null, null, null, null);
}

/** Values start, start+step, … < end. Default dtype int64 for integer arguments, float32 otherwise. */
export function arange(start: number, end?: number, step = 1, opts: TensorOptions = {}): Tensor {
  if (end === undefined) {
    end = start;
    start = 0;
  }
  const integral = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  const dtype = opts.dtype ?? (integral ? 'int64' : 'float32');
  return call('arange.start_step', start, end, step, dtypeCode(dtype), null, opts.device ?? null, null);
}

export function linspace(start: number, end: number, steps: number, opts: TensorOptions = {}): Tensor {
  return call('linspace', start, end, steps, ...cpuFloat(opts));
}

export function eye(n: number, opts: TensorOptions = {}): Tensor {
  return call('eye', n, ...cpuFloat(opts));
}

// --------------------------------------------------------------------------------------------
// Random (always from an explicit generator when reproducibility matters)

export function rand(shape: Shape, generator?: Generator, opts: TensorOptions = {}): Tensor {
  return call('rand.generator', shape, generator?.handle ?? null, ...cpuFloat(opts));
}

export function randn(shape: Shape, generator?: Generator, opts: TensorOptions = {}): Tensor {
  return call('randn.generator', shape, generator?.handle ?? null, ...cpuFloat(opts));
}

/** Integers uniform in [low, high). */
export function randint(low: number, high: number, shape: Shape, generator?: Generator, opts: TensorOptions = {}): Tensor {
  return call('randint.low_generator', low, high, shape, generator?.handle ?? null, dtypeCode(opts.dtype ?? 'int64'), null, opts.device ?? null, null);
}

/** Random permutation of 0..n-1 (int64). */
export function randperm(n: number, generator?: Generator, opts: TensorOptions = {}): Tensor {
  return call('randperm.generator', n, generator?.handle ?? null, dtypeCode(opts.dtype ?? 'int64'), null, opts.device ?? null, null);
}

/** Draw `numSamples` category indices per row of non-negative `weights`. */
export function multinomial(weights: Tensor, numSamples: number, replacement = false, generator?: Generator): Tensor {
  return call('multinomial', weights, numSamples, replacement, generator?.handle ?? null);
}

export function randnLike(t: Tensor, generator?: Generator): Tensor {
  return randn(t.shape, generator, { dtype: t.dtype, device: t.device });
}

/** Seed the global default CPU generator (prefer explicit Generators). */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

// --------------------------------------------------------------------------------------------
// Joining

export function cat(tensors: Tensor[], dim = 0): Tensor {
  return call('cat', tensors, dim);
}

export function stack(tensors: Tensor[], dim = 0): Tensor {
  return call('stack', tensors, dim);
}

/** where(condition, a, b): elementwise choice. */
export function where(condition: Tensor, a: Tensor, b: Tensor): Tensor {
  return call('where.self', condition, a, b);
}

// --------------------------------------------------------------------------------------------
// Linear algebra

export function matmul(a: Tensor, b: Tensor): Tensor {
  return call('matmul', a, b);
}

export function bmm(a: Tensor, b: Tensor): Tensor {
  return call('bmm', a, b);
}

let threadCountCache = -1;
const hasMkldnn = native.version().mkldnn;
/** The addon was built with oneDNN's headers: flexvid::conv3x3 (Winograd) and flexvid::bmm are real. */
const hasOnednn = native.version().onednnKernels === true;

/**
 * Batched matrix product, C[g] = A[g] @ B[g]. Shapes: a `[G, M, K]`, b `[G, K, N]` → `[G, M, N]`.
 *
 * Same result as `bmm`, faster for the many small products of attention. libtorch's CPU bmm
 * (without MKL, as in Debian's build) loops over the G products serially and lets the BLAS thread
 * each tiny GEMM, which costs more than it saves. Written as one grouped 1-D convolution
 * (input B as `[1, G·K, N]`, weight A as `[G·M, K, 1]`, G groups), oneDNN runs the groups in
 * parallel, forward and backward: 2.5–4× faster for [80, 256, 32]·[80, 32, 256] and
 * [2048, 10, 32]·[2048, 32, 10] on 2 threads (bench/engine.ts). With one thread libtorch would pick
 * its slower reference convolution instead, and on CUDA cuBLAS's batched GEMM is the right tool,
 * so there it is plain bmm. Where the addon has oneDNN's headers (Debian's libdnnl-dev), float32
 * products go to oneDNN's matmul primitive instead (`flexvid::bmm`: brgemm kernels, operands read
 * in place, transposed or not), 3–4× faster again than the convolution form in a training step.
 */
export function batchedMatmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim !== 3 || b.ndim !== 3 || a.shape[0] !== b.shape[0] || a.shape[2] !== b.shape[1]) {
    throw new TorchError(`batchedMatmul: expected a [G, M, K] and b [G, K, N], got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  }
  // oneDNN's batched matmul (brgemm), reading both operands in place: 3–4× faster than the
  // grouped convolution below on the attention products (native/winograd.cc).
  if (hasOnednn && a.device === 'cpu' && a.dtype === 'float32' && b.dtype === 'float32' && !native.isAutocast('cpu')) return call('flexvid::bmm', a, b);
  if (threadCountCache < 0) threadCountCache = native.getNumThreads();
  const lowp = (t: Tensor) => t.dtype === 'float32' || t.dtype === 'bfloat16'; // mixed only under autocast, which casts both
  const useConv = hasMkldnn && threadCountCache > 1 && a.device === 'cpu' && lowp(a) && lowp(b);
  if (!useConv) return call('bmm', a, b);
  const [G, M, K] = a.shape as [number, number, number];
  const N = b.shape[2]!;
  const w = a.reshape([G * M, K, 1]);
  const x = b.reshape([1, G * K, N]);
  const y = call('conv1d', x, w, null, [1], [0], [1], G);
  const out = y.view([G, M, N]);
  for (const t of [w, x, y]) t.dispose();
  return out;
}

/** beta * input + alpha * (b1 @ b2), batched. */
export function baddbmm(input: Tensor, b1: Tensor, b2: Tensor, beta = 1, alpha = 1): Tensor {
  return call('baddbmm', input, b1, b2, beta, alpha);
}

export function einsum(equation: string, operands: Tensor[]): Tensor {
  return call('einsum', equation, operands, null);
}

/** Symmetric eigendecomposition (ascending eigenvalues). Use float64 for metrics. */
export function eigh(a: Tensor, uplo: 'L' | 'U' = 'L'): { values: Tensor; vectors: Tensor } {
  const [values, vectors] = callMany('linalg_eigh', a, uplo);
  return { values: values!, vectors: vectors! };
}

// --------------------------------------------------------------------------------------------
// Neural-network functions

/** x @ weightᵀ + bias. Shape: x `[..., in]`, weight `[out, in]`, bias `[out]`. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return call('linear', x, weight, bias ?? null);
}

type IntOrPair = number | number[];

export interface ConvOptions {
  stride?: IntOrPair;
  padding?: IntOrPair;
  dilation?: IntOrPair;
  groups?: number;
}

function rep(v: IntOrPair | undefined, n: number, dflt: number): number[] {
  if (v === undefined) return new Array(n).fill(dflt);
  return typeof v === 'number' ? new Array(n).fill(v) : v;
}

/** 1-D convolution. Shape: x `[N, C, L]`, weight `[O, C/groups, k]`. */
export function conv1d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: ConvOptions = {}): Tensor {
  if (projectEligible(x, weight, o, 1)) {
    const w = weight.view([weight.shape[0]!, weight.shape[1]!]);
    const y = call('flexvid::project', x, w, bias ?? null);
    w.dispose();
    return y;
  }
  return call('conv1d', x, weight, bias ?? null, rep(o.stride, 1, 1), rep(o.padding, 1, 0), rep(o.dilation, 1, 1), o.groups ?? 1);
}

/**
 * `conv1d(x, weight, bias) + residual` for a 1×1 convolution: x `[N, C, L]`, weight `[O, C, 1]`,
 * residual `[N, O, L]` → `[N, O, L]`. Where `flexvid::project` runs, bias and residual are added
 * in one pass over the product (an attention block's output projection and its skip).
 */
export function conv1x1Add(x: Tensor, weight: Tensor, bias: Tensor | null | undefined, residual: Tensor): Tensor {
  if (projectEligible(x, weight, {}, 1) && residual.dtype === 'float32') {
    const w = weight.view([weight.shape[0]!, weight.shape[1]!]);
    const y = call('flexvid::project', x, w, bias ?? null, residual);
    w.dispose();
    return y;
  }
  return tidy(() => conv1d(x, weight, bias).add(residual));
}

let winogradEnabled = hasOnednn && process.env.FLEXVID_WINOGRAD !== '0';

/**
 * Whether 3×3 convolutions may use oneDNN's Winograd kernels (native/winograd.cc; built when
 * Debian's libdnnl-dev is installed). On by default where available; `FLEXVID_WINOGRAD=0` or
 * `setWinogradConv(false)` selects libtorch's direct convolution (bit-comparable with PyTorch).
 * Winograd's float32 results differ from direct convolution by rounding (≈ 1e-6 relative).
 * Returns the previous setting.
 */
export function setWinogradConv(enabled: boolean): boolean {
  const prev = winogradEnabled;
  winogradEnabled = enabled && hasOnednn;
  return prev;
}

/** Is the Winograd 3×3 convolution compiled in and enabled? */
export function winogradConvEnabled(): boolean {
  return winogradEnabled;
}

/** Does a convolution option (an int or a pair, `dflt` when absent) equal `want` in both dimensions? */
function allOf(v: IntOrPair | undefined, dflt: number, want: number): boolean {
  return rep(v, 2, dflt).every((e) => e === want);
}

/** The convolutions the Winograd kernels cover and win on: float32 CPU, 3×3, stride 1, padding 1, channels multiples of 16, at least 8×8, no autocast. */
function winogradEligible(x: Tensor, weight: Tensor, o: ConvOptions): boolean {
  if (!winogradEnabled || x.device !== 'cpu' || x.dtype !== 'float32' || weight.dtype !== 'float32' || (o.groups ?? 1) !== 1) return false;
  const [oc, ic, kh, kw] = weight.shape as [number, number, number, number];
  if (kh !== 3 || kw !== 3 || ic % 16 !== 0 || oc % 16 !== 0 || x.ndim !== 4) return false;
  // Below 8×8 the 4×4-output tiles are mostly padding and the direct kernel wins (measured at 4×4).
  if (x.shape[2]! < 8 || x.shape[3]! < 8) return false;
  return allOf(o.stride, 1, 1) && allOf(o.padding, 0, 1) && allOf(o.dilation, 1, 1) && !native.isAutocast('cpu');
}

/**
 * 1×1, stride-1, unpadded, ungrouped float32 CPU convolutions (no autocast), with the Winograd
 * switch on: `flexvid::project` computes them as oneDNN matmuls on the plain layout
 * (native/project.cc), without libtorch's reorders to and from oneDNN's blocked layout.
 */
function projectEligible(x: Tensor, weight: Tensor, o: ConvOptions, dims: number): boolean {
  if (!winogradEnabled || x.device !== 'cpu' || x.dtype !== 'float32' || weight.dtype !== 'float32' || (o.groups ?? 1) !== 1) return false;
  if (x.ndim !== dims + 2 || !weight.shape.slice(2).every((k) => k === 1) || native.isAutocast('cpu')) return false;
  // Short rows make small products: below 10 positions libtorch's convolution wins (measured with
  // the per-thread tiles of native/project.cc, forward and backward: faster at 16 and 10, slower at 8).
  if (x.shape.slice(2).reduce((a, b) => a * b, 1) < 10) return false;
  return rep(o.stride, dims, 1).every((e) => e === 1) && rep(o.padding, dims, 0).every((e) => e === 0);
}

let blockedLayoutEnabled = process.env.FLEXVID_BLOCKED_LAYOUT !== '0';

/**
 * Whether ResBlocks may keep their convolutions' activations in oneDNN's blocked layout
 * (`blockedConvChain`; on by default, `FLEXVID_BLOCKED_LAYOUT=0` turns it off). Results differ
 * from the plain layout by float32 rounding only. Returns the previous setting.
 */
export function setBlockedLayout(enabled: boolean): boolean {
  const prev = blockedLayoutEnabled;
  blockedLayoutEnabled = enabled;
  return prev;
}

/**
 * Can a chain GroupNorm → 3×3 convolution → GroupNorm → 3×3 convolution on x `[N, C_in, H, W]`
 * (a U-Net ResBlock, `C_in → C_out` channels) run in oneDNN's blocked layout — the Winograd
 * kernels' own — so that no convolution reorders its activations? Needs the Winograd convolution
 * and the fused GroupNorm, float32 CPU without autocast, channel counts that are multiples of 16
 * and at least 8×8 positions (where Winograd is used at all).
 * The chain is `groupNormAct(x, …, {layout: 'plain-to-blocked'})` → `conv3x3Blocked` →
 * `groupNormAct(…, {layout: 'blocked'})` → `conv3x3Blocked` → `unblockAdd(h, residual)`.
 */
export function blockedConvChain(x: Tensor, cIn: number, cOut: number): boolean {
  if (!blockedLayoutEnabled || !winogradEnabled || !fusedNormEnabled || x.device !== 'cpu' || x.dtype !== 'float32' || x.ndim !== 4) return false;
  if (cIn % 16 !== 0 || cOut % 16 !== 0 || x.shape[2]! < 8 || x.shape[3]! < 8) return false;
  return !native.isAutocast('cpu');
}

/**
 * `groupNormAct(cat([a, b], 1), …, {layout: 'plain-to-blocked'})` without the concatenation: the
 * U-Net's skip connections feed a ResBlock whose first normalisation reads both parts in place.
 * a `[N, C1, H, W]`, b `[N, C2, H, W]` (C1, C2 multiples of 16; `blockedConvChain` on a) →
 * blocked `[N, (C1 + C2)/16, H, W, 16]`; gradients flow to a and b.
 */
export function groupNormActPair(a: Tensor, b: Tensor, groups: number, weight: Tensor, bias: Tensor, eps: number, o: Omit<GroupNormActOptions, 'layout'> = {}): Tensor {
  return call('flexvid::group_norm_silu_pair', a, b, weight, bias, o.scale ?? null, o.shift ?? null, groups, eps, o.silu ?? false);
}

/**
 * 3×3, stride-1, padding-1 convolution on blocked activations: x `[N, C/16, H, W, 16]` (channel
 * c at `[n, c/16, h, w, c%16]`), weight `[O, C, 3, 3]` → `[N, O/16, H, W, 16]`, O a multiple of 16.
 * oneDNN's Winograd kernels read and write this layout directly (native/winograd.cc); shapes they
 * do not take are computed by libtorch's convolution between layout changes.
 */
export function conv3x3Blocked(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return call('flexvid::conv3x3_blocked', x, weight, bias ?? null);
}

/** `r + h` for h blocked `[N, C/16, H, W, 16]` and r plain `[N, C, H, W]` → plain `[N, C, H, W]` (one pass). */
export function unblockAdd(h: Tensor, r: Tensor): Tensor {
  return call('flexvid::unblock_add', h, r);
}

const nativeNarrowConv = process.env.FLEXVID_NARROW_CONV !== '0' && native.hasOp('flexvid::conv3x3_narrow');

/**
 * 3×3, stride-1, padding-1 float32 CPU convolutions with at most 8 channels on one side (the
 * U-Net's input and output convolutions) and a width that is a multiple of 16 run
 * native/narrow_conv.cc, computed directly 16 pixels at a time: libtorch's oneDNN path manages
 * ≈ 10 GFLOP/s on a 3-channel side. `FLEXVID_NARROW_CONV=0` turns it off (its backward is not
 * differentiable again). Results differ from libtorch's by float32 rounding only.
 */
function narrowEligible(x: Tensor, weight: Tensor, o: ConvOptions): boolean {
  if (!nativeNarrowConv || x.device !== 'cpu' || x.dtype !== 'float32' || weight.dtype !== 'float32' || (o.groups ?? 1) !== 1) return false;
  const [oc, ic, kh, kw] = weight.shape as [number, number, number, number];
  if (x.ndim !== 4 || kh !== 3 || kw !== 3 || Math.min(oc, ic) > 8 || x.shape[3]! % 16 !== 0) return false;
  return allOf(o.stride, 1, 1) && allOf(o.padding, 0, 1) && allOf(o.dilation, 1, 1) && !native.isAutocast('cpu');
}

/**
 * The other 3×3, padding-1 float32 CPU convolutions with channel counts divisible by 16 (stride 2:
 * the U-Net's downsampling; stride 1 on images under 8×8, where Winograd does not win) run
 * oneDNN's direct kernels through `flexvid::conv3x3_direct` (native/winograd.cc): the same kernels
 * as libtorch's, without the overhead around its backward (1.5–2.5× the kernels' time measured).
 * Under the Winograd switch; `FLEXVID_DIRECT_CONV=0` turns only this off.
 * Returns the stride, or 0 when not eligible.
 */
const directConvEnabled = process.env.FLEXVID_DIRECT_CONV !== '0';
function directStride(x: Tensor, weight: Tensor, o: ConvOptions): number {
  if (!winogradEnabled || x.device !== 'cpu' || x.dtype !== 'float32' || weight.dtype !== 'float32' || (o.groups ?? 1) !== 1) return 0;
  if (!directConvEnabled) return 0;
  const [oc, ic, kh, kw] = weight.shape as [number, number, number, number];
  if (x.ndim !== 4 || kh !== 3 || kw !== 3 || ic % 16 !== 0 || oc % 16 !== 0) return 0;
  const [sh, sw] = rep(o.stride, 2, 1);
  if (sh !== sw || (sh !== 1 && sh !== 2) || !allOf(o.padding, 0, 1) || !allOf(o.dilation, 1, 1) || native.isAutocast('cpu')) return 0;
  return sh;
}

/** 2-D convolution. Shape: x `[N, C, H, W]`, weight `[O, C/groups, kh, kw]`. */
export function conv2d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: ConvOptions = {}): Tensor {
  if (winogradEligible(x, weight, o)) return call('flexvid::conv3x3', x, weight, bias ?? null);
  const stride = directStride(x, weight, o);
  if (stride) return call('flexvid::conv3x3_direct', x, weight, bias ?? null, stride);
  if (narrowEligible(x, weight, o)) return call('flexvid::conv3x3_narrow', x, weight, bias ?? null);
  if (projectEligible(x, weight, o, 2)) {
    const [N, C, H, W] = x.shape as [number, number, number, number];
    const O = weight.shape[0]!;
    const rows = x.reshape([N, C, H * W]);
    const w = weight.view([O, C]);
    const y = call('flexvid::project', rows, w, bias ?? null);
    const out = y.view([N, O, H, W]);
    for (const t of [rows, w, y]) t.dispose();
    return out;
  }
  return call('conv2d', x, weight, bias ?? null, rep(o.stride, 2, 1), rep(o.padding, 2, 0), rep(o.dilation, 2, 1), o.groups ?? 1);
}

/** 3-D convolution. Shape: x `[N, C, D, H, W]`, weight `[O, C/groups, kd, kh, kw]`. */
export function conv3d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: ConvOptions = {}): Tensor {
  return call('conv3d', x, weight, bias ?? null, rep(o.stride, 3, 1), rep(o.padding, 3, 0), rep(o.dilation, 3, 1), o.groups ?? 1);
}

export interface ConvTransposeOptions extends ConvOptions {
  outputPadding?: IntOrPair;
}

/** Transposed 2-D convolution. weight `[C, O/groups, kh, kw]`. */
export function convTranspose2d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: ConvTransposeOptions = {}): Tensor {
  return call('conv_transpose2d.input', x, weight, bias ?? null, rep(o.stride, 2, 1), rep(o.padding, 2, 0), rep(o.outputPadding, 2, 0), o.groups ?? 1, rep(o.dilation, 2, 1));
}

/** Transposed 3-D convolution. weight `[C, O/groups, kd, kh, kw]`. */
export function convTranspose3d(x: Tensor, weight: Tensor, bias?: Tensor | null, o: ConvTransposeOptions = {}): Tensor {
  return call('conv_transpose3d.input', x, weight, bias ?? null, rep(o.stride, 3, 1), rep(o.padding, 3, 0), rep(o.outputPadding, 3, 0), o.groups ?? 1, rep(o.dilation, 3, 1));
}

/** Group normalisation over `[N, C, *]` with `groups` groups (eps 1e-5 default). */
export function groupNorm(x: Tensor, groups: number, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return call('group_norm', x, groups, weight ?? null, bias ?? null, eps, true);
}

let fusedNormEnabled = process.env.FLEXVID_FUSED_NORM !== '0';

/**
 * Whether `groupNormAct` may use the fused kernel (native/fused_norm.cc). On by default;
 * `FLEXVID_FUSED_NORM=0` or `setFusedGroupNorm(false)` selects the composite of libtorch operators
 * (needed for second derivatives through the model: the fused backward is not differentiable).
 * Returns the previous setting.
 */
export function setFusedGroupNorm(enabled: boolean): boolean {
  const prev = fusedNormEnabled;
  fusedNormEnabled = enabled;
  return prev;
}

/** Is the fused GroupNorm(+scale-shift)(+SiLU) kernel enabled? */
export function fusedGroupNormEnabled(): boolean {
  return fusedNormEnabled;
}

/** Optional parts of `groupNormAct`. */
export interface GroupNormActOptions {
  /** Per-sample channel scale `[N, C]` (or `[N, C, 1, …]`): the output is multiplied by `1 + scale`. */
  scale?: Tensor | null;
  /** Per-sample channel shift `[N, C]` (or `[N, C, 1, …]`), added after the scale. */
  shift?: Tensor | null;
  /** Apply SiLU last. */
  silu?: boolean;
  /**
   * Layout of x → y: `plain` (default), `plain-to-blocked` (x `[N, C, H, W]` → y `[N, C/16, H, W, 16]`)
   * or `blocked` (both blocked). Blocked layouts exist for `conv3x3Blocked`; see `blockedConvChain`.
   */
  layout?: 'plain' | 'plain-to-blocked' | 'blocked';
}

/**
 * GroupNorm, then an optional per-sample scale-shift, then an optional SiLU — a U-Net ResBlock's
 * normalisation — as one operator:
 * `y = act((GN(x)·weight + bias)·(1 + scale) + shift)`.
 * Shapes: x `[N, C, *]`, weight/bias `[C]`, scale/shift `[N, C]` → like x.
 * float32/float64 CPU tensors run the fused kernel (one pass forward, two backward, nothing
 * intermediate kept for autograd); anything else, or with `setFusedGroupNorm(false)`, runs the same
 * formula as separate operators.
 */
export function groupNormAct(x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps: number, o: GroupNormActOptions = {}): Tensor {
  const silu = o.silu ?? false;
  if (o.layout && o.layout !== 'plain') {
    // only the fused kernel knows the blocked layout (callers check blockedConvChain first)
    return call('flexvid::group_norm_silu', x, weight, bias, o.scale ?? null, o.shift ?? null, groups, eps, silu, o.layout === 'blocked' ? 2 : 1);
  }
  const fusable = (t: Tensor | null | undefined) => !t || (t.dtype === x.dtype && t.device === x.device);
  if (fusedNormEnabled && x.device === 'cpu' && (x.dtype === 'float32' || x.dtype === 'float64') && [weight, bias, o.scale, o.shift].every(fusable)) {
    return call('flexvid::group_norm_silu', x, weight, bias, o.scale ?? null, o.shift ?? null, groups, eps, silu);
  }
  return tidy(() => {
    let y = groupNorm(x, groups, weight, bias, eps);
    const perSample = (t: Tensor) => t.reshape([x.shape[0]!, x.shape[1]!, ...x.shape.slice(2).map(() => 1)]);
    if (o.scale) y = y.mul(perSample(o.scale).add(1));
    if (o.shift) y = y.add(perSample(o.shift));
    return silu ? y.silu() : y;
  });
}

/**
 * GroupNorm of frame sequences kept in frame-major layout: x `[B, T, C, P]` (video, frame, channel,
 * pixel) → same shape, statistics per (video, group, pixel) over the T frames and the group's
 * channels, then `·weight[c] + bias[c]` — what GroupNorm gives on the `[B·P, C, T]` rows of the
 * temporal attention, without permuting there and back. float32/float64 CPU run the fused kernel
 * (`flexvid::group_norm_frames`, native/fused_norm.cc), anything else (or
 * `setFusedGroupNorm(false)`) the same formula as separate operators.
 */
export function groupNormFrames(x: Tensor, groups: number, weight: Tensor, bias: Tensor, eps: number): Tensor {
  if (fusedNormEnabled && x.device === 'cpu' && (x.dtype === 'float32' || x.dtype === 'float64') && weight.dtype === x.dtype && bias.dtype === x.dtype) {
    return call('flexvid::group_norm_frames', x, weight, bias, groups, eps);
  }
  return tidy(() => {
    const [B, T, C, P] = x.shape as [number, number, number, number];
    const xg = x.reshape([B, T, groups, C / groups, P]);
    const centred = xg.sub(xg.mean([1, 3], true));
    const rstd = centred.square().mean([1, 3], true).add(eps).rsqrt();
    return centred.mul(rstd).view([B, T, C, P]).mul(weight.view([1, 1, C, 1])).add(bias.view([1, 1, C, 1]));
  });
}

let fusedAttentionOn = process.env.FLEXVID_FUSED_ATTENTION !== '0';

/**
 * Whether the fused attention kernels may run: `fusedChannelAttention` (native/attention.cc,
 * built with oneDNN's headers like the Winograd convolution) and `fusedTemporalAttention`
 * (native/temporal_attention.cc, every build). On by default; `FLEXVID_FUSED_ATTENTION=0` or
 * `setFusedAttention(false)` makes both return null, and callers use batched products instead
 * (needed for second derivatives: the fused backwards are not differentiable). Returns the previous setting.
 */
export function setFusedAttention(enabled: boolean): boolean {
  const prev = fusedAttentionOn;
  fusedAttentionOn = enabled;
  return prev;
}

/** Are the fused attention kernels enabled (`fusedChannelAttention` also needs `hasOnednnKernels()`)? */
export function fusedAttentionEnabled(): boolean {
  return fusedAttentionOn;
}

/** Was the addon built with oneDNN's headers (Winograd convolution, oneDNN matmul, fused channel attention)? */
export function hasOnednnKernels(): boolean {
  return hasOnednn;
}

/** Would the fused attention kernels take a tensor like `t` (enabled, float32 CPU, no autocast)? */
export function fusableAttention(t: Tensor): boolean {
  return fusedAttentionOn && t.device === 'cpu' && t.dtype === 'float32' && !native.isAutocast('cpu');
}

/**
 * Multi-head softmax attention over the positions of channel-major rows, in one operator that
 * keeps each (row, head)'s [L, L] attention matrix in cache (forward and backward):
 * `o[n, h·d+e, i] = Σ_j softmax_j(scale · q_i·k_j) · v[n, h·d+e, j]`, where q, k, v are the
 * three channel blocks of qkv, each head-major. Shapes: qkv `[N, 3C, L]` → `[N, C, L]`.
 * Returns null where the kernel cannot run (not built, switched off, not float32 CPU, autocast);
 * the caller then computes the same with batched products.
 */
export function fusedChannelAttention(qkv: Tensor, heads: number, scale: number): Tensor | null {
  if (!hasOnednn || !fusableAttention(qkv)) return null;
  return call('flexvid::channel_attention', qkv, heads, scale);
}

/**
 * The U-Net's temporal attention (spec §4.3) in one operator, on frame-major rows: for video b,
 * pixel p, head h, `s_ij = scale·(q_i·k_j + q_i·Rk_ij + k_j·Rq_ji) + bias_ij`,
 * `o_i = Σ_j softmax_j(s_i)·(v_j + Rv_ij)`, where q, k, v are the three head-major channel blocks of
 * qkv at frames i, j. Shapes: qkv `[B·T, 3C, P]`, rk/rq/rv `[B, T, T, C]` (all or none), bias
 * `[B, T, T]` or null → `[B·T, C, P]`. Returns null where it cannot run (switched off, not float32
 * CPU, autocast).
 */
export function fusedTemporalAttention(qkv: Tensor, rpe: { k: Tensor; q: Tensor; v: Tensor } | null, bias: Tensor | null, batch: number, heads: number, scale: number): Tensor | null {
  if (!fusableAttention(qkv)) return null;
  return call('flexvid::temporal_attention', qkv, rpe?.k ?? null, rpe?.q ?? null, rpe?.v ?? null, bias, batch, heads, scale);
}

/** Layer normalisation over the trailing `normalizedShape` dims. */
export function layerNorm(x: Tensor, normalizedShape: Shape, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  return call('layer_norm', x, normalizedShape, weight ?? null, bias ?? null, eps, true);
}

/**
 * Dropout with probability p when `train` (uses the global generator). Outside training or with
 * p = 0 it is the identity and returns a view of x (no copy), as PyTorch returns x itself.
 */
export function dropout(x: Tensor, p: number, train: boolean): Tensor {
  if (!train || p === 0) return x.alias();
  return call('dropout', x, p, train);
}

export function softmax(x: Tensor, dim: number): Tensor {
  return x.softmax(dim);
}

export function logSoftmax(x: Tensor, dim: number): Tensor {
  return x.logSoftmax(dim);
}

export function silu(x: Tensor): Tensor {
  return x.silu();
}

export function gelu(x: Tensor): Tensor {
  return x.gelu();
}

export function relu(x: Tensor): Tensor {
  return x.relu();
}

export type InterpolateMode = 'nearest' | 'bilinear' | 'trilinear';

const nativeUpsample = process.env.FLEXVID_NATIVE_UPSAMPLE !== '0' && native.hasOp('flexvid::upsample_nearest2x');

/**
 * The ×2 nearest upsampling of float32/float64 CPU tensors runs native/resample.cc (a row
 * duplication, ≈ 10× faster than libtorch's general kernel on the U-Net's maps; same values).
 * Other dtypes, devices and autocast take libtorch's operator; `FLEXVID_NATIVE_UPSAMPLE=0` turns it off
 * (its backward is not differentiable again).
 */
function nativeUpsampleEligible(x: Tensor): boolean {
  return nativeUpsample && x.device === 'cpu' && (x.dtype === 'float32' || x.dtype === 'float64') && !native.isAutocast('cpu');
}

/**
 * Resize `[N, C, H, W]` (nearest, bilinear) or `[N, C, D, H, W]` (nearest, trilinear) to `size`
 * or by `scale`. Bilinear follows PyTorch's `align_corners` semantics.
 */
export function interpolate(x: Tensor, o: { size?: number[]; scale?: number; mode?: InterpolateMode; alignCorners?: boolean }): Tensor {
  const mode = o.mode ?? 'nearest';
  const spatial = x.ndim - 2;
  // libtorch wants exactly one of an output size and scale factors.
  const size = o.size ?? null;
  const scales = o.size ? null : new Array(spatial).fill(o.scale ?? 1);
  if (mode === 'nearest') {
    if (spatial === 2 && !size && o.scale === 2 && nativeUpsampleEligible(x)) return call('flexvid::upsample_nearest2x', x);
    if (spatial === 1) return call('upsample_nearest1d.vec', x, size, scales);
    if (spatial === 2) return call('upsample_nearest2d.vec', x, size, scales);
    return call('upsample_nearest3d.vec', x, size, scales);
  }
  const align = o.alignCorners ?? false;
  if (mode === 'bilinear') {
    if (spatial !== 2) throw new TorchError(`interpolate: bilinear needs [N, C, H, W], got ${x}`);
    return call('upsample_bilinear2d.vec', x, size, align, scales);
  }
  if (spatial !== 3) throw new TorchError(`interpolate: trilinear needs [N, C, D, H, W], got ${x}`);
  return call('upsample_trilinear3d.vec', x, size, align, scales);
}

export interface PoolOptions {
  stride?: IntOrPair;
  padding?: IntOrPair;
  ceilMode?: boolean;
}

export function avgPool2d(x: Tensor, kernel: IntOrPair, o: PoolOptions = {}): Tensor {
  const k = rep(kernel, 2, 1);
  return call('avg_pool2d', x, k, rep(o.stride, 2, 0).some((s) => s === 0) ? k : rep(o.stride, 2, 1), rep(o.padding, 2, 0), o.ceilMode ?? false, true, null);
}

export function avgPool3d(x: Tensor, kernel: IntOrPair, o: PoolOptions = {}): Tensor {
  const k = rep(kernel, 3, 1);
  return call('avg_pool3d', x, k, o.stride === undefined ? k : rep(o.stride, 3, 1), rep(o.padding, 3, 0), o.ceilMode ?? false, true, null);
}

export function maxPool2d(x: Tensor, kernel: IntOrPair, o: PoolOptions = {}): Tensor {
  const k = rep(kernel, 2, 1);
  return call('max_pool2d', x, k, o.stride === undefined ? k : rep(o.stride, 2, 1), rep(o.padding, 2, 0), [1, 1], o.ceilMode ?? false);
}

export function maxPool3d(x: Tensor, kernel: IntOrPair, o: PoolOptions = {}): Tensor {
  const k = rep(kernel, 3, 1);
  return call('max_pool3d', x, k, o.stride === undefined ? k : rep(o.stride, 3, 1), rep(o.padding, 3, 0), [1, 1, 1], o.ceilMode ?? false);
}

export function adaptiveAvgPool2d(x: Tensor, outputSize: IntOrPair): Tensor {
  return call('adaptive_avg_pool2d', x, rep(outputSize, 2, 1));
}

export function adaptiveAvgPool3d(x: Tensor, outputSize: IntOrPair): Tensor {
  return call('adaptive_avg_pool3d', x, rep(outputSize, 3, 1));
}

/** Constant padding; `pad` lists (left, right) pairs starting from the last dimension, as PyTorch. */
export function pad(x: Tensor, padding: number[], value = 0): Tensor {
  return call('constant_pad_nd', x, padding, value);
}

export function mseLoss(a: Tensor, b: Tensor, reduction: 'mean' | 'sum' | 'none' = 'mean'): Tensor {
  return call('mse_loss', a, b, reduction === 'none' ? 0 : reduction === 'mean' ? 1 : 2);
}

/** Whether this libtorch has the ATen operator `name` ("aten::" optional, overload after a dot). */
export function hasOperator(name: string): boolean {
  return native.hasOp(name.includes('::') ? name : `aten::${name}`);
}

const hasSdpa = native.hasOp('aten::scaled_dot_product_attention');

/** Whether this libtorch has a fused scaled-dot-product attention. */
export function hasScaledDotProductAttention(): boolean {
  return hasSdpa;
}

/**
 * softmax(q kᵀ · scale + mask) v. Shapes: q `[..., Lq, d]`, k `[..., Lk, d]`, v `[..., Lk, dv]`;
 * `mask` is boolean (true = attend) or additive float, broadcastable to `[..., Lq, Lk]`.
 * Uses libtorch's fused kernel where available (2.x) and a plain matmul form otherwise;
 * `impl` forces one path ('fused' throws when this libtorch has none).
 */
export function scaledDotProductAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  mask?: Tensor | null,
  scale?: number,
  impl: 'auto' | 'fused' | 'plain' = 'auto',
): Tensor {
  const d = q.size(-1);
  const s = scale ?? 1 / Math.sqrt(d);
  if (impl === 'fused' && !hasSdpa) throw new TorchError(`scaledDotProductAttention: libtorch ${native.version().torch} has no fused scaled_dot_product_attention`);
  if (impl !== 'plain' && hasSdpa) {
    const takesScale = native.opSchema(native.resolveOp('aten::scaled_dot_product_attention')).includes('scale');
    if (scale === undefined || takesScale) {
      return call('scaled_dot_product_attention', q, k, v, mask ?? null, 0, false, ...(scale === undefined ? [] : [s]));
    }
    if (impl === 'fused') {
      // libtorch 2.0: no scale argument; fold it into q (the fused kernel divides by √d itself).
      using qs = q.mul(s * Math.sqrt(d));
      return call('scaled_dot_product_attention', qs, k, v, mask ?? null, 0, false);
    }
  }
  using kt = k.transpose(-2, -1);
  using logits0 = q.matmul(kt);
  using logits = logits0.mul(s);
  let masked: Tensor = logits;
  if (mask) {
    if (mask.dtype === 'bool') {
      using notMask = mask.logicalNot();
      masked = logits.maskedFill(notMask, -Infinity);
    } else {
      masked = logits.add(mask);
    }
  }
  using attn = masked.softmax(-1);
  if (masked !== logits) masked.dispose();
  return attn.matmul(v);
}

// --------------------------------------------------------------------------------------------
// Autograd modes

/** Run `fn` with gradient recording off (restores the previous mode). */
export function noGrad<T>(fn: () => T): T {
  const prev = native.isGradEnabled();
  native.setGradEnabled(false);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

/** Run `fn` with gradient recording on. */
export function enableGrad<T>(fn: () => T): T {
  const prev = native.isGradEnabled();
  native.setGradEnabled(true);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/**
 * Run `fn` in libtorch inference mode (no autograd bookkeeping at all; fastest for sampling).
 * Tensors created inside cannot later be used in autograd.
 */
export function inferenceMode<T>(fn: () => T): T {
  native.pushInferenceMode();
  try {
    return fn();
  } finally {
    native.popInferenceMode();
  }
}

/** Gradients of `outputs` w.r.t. `inputs` (like torch.autograd.grad). */
export function autogradGrad(outputs: Tensor[], inputs: Tensor[], opts: { gradOutputs?: Tensor[]; retainGraph?: boolean; createGraph?: boolean; allowUnused?: boolean } = {}): (Tensor | null)[] {
  const res = guardNative('grad', () =>
    native.autogradGrad(
      outputs.map((t) => t.handle),
      inputs.map((t) => t.handle),
      opts.gradOutputs ? opts.gradOutputs.map((t) => t.handle) : null,
      opts.retainGraph ?? false,
      opts.createGraph ?? false,
      opts.allowUnused ?? false,
    ),
  );
  return res.map((h) => (h === null ? null : new Tensor(h)));
}

// --------------------------------------------------------------------------------------------
// Runtime

export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new TorchError(`setNumThreads: expected a positive integer, got ${n}`);
  // Changing the count re-sizes OpenBLAS's thread buffers and slows its GEMMs (see native.ts):
  // only call into libtorch when the count really changes; prefer FLEXVID_THREADS at start-up.
  if (n !== native.getNumThreads()) native.setNumThreads(n);
  threadCountCache = -1;
}

export function getNumThreads(): number {
  return native.getNumThreads();
}

export function cudaAvailable(): boolean {
  return native.cudaAvailable();
}

export function cudaDeviceCount(): number {
  return native.cudaDeviceCount();
}

/** Live native tensor handles (for leak tests). */
export function liveTensorCount(): number {
  return native.liveCount();
}

/** Bytes of distinct storages held by live handles. */
export function liveTensorBytes(): { cpu: number; cuda: number } {
  return native.liveBytes();
}

/**
 * The caching CPU allocator (native/cpu_allocator.cc): freed tensor buffers of 64 KiB–16 MiB are
 * kept, up to 256 MiB, for the next tensor of the same byte size. `setCpuCache(false)` sends new
 * allocations to libtorch's own allocator and frees what is cached; the return value says whether
 * the cache is installed at all (the environment variable FLEXVID_CPU_CACHE=0 leaves it out).
 */
export function setCpuCache(enabled: boolean): boolean {
  return (native.setCpuCache as (on: boolean) => boolean)(enabled);
}

/**
 * The sum of the tensors' version counters. Every in-place write bumps its tensor's counter (ATen's
 * in-place operators, and flexvid's native writers: AdamW, `setData`, collectives), and counters
 * only grow, so for the same tensors a different sum means one of them was written. −1 when one is
 * an inference tensor (no counter: nothing can be concluded).
 */
export function versionSum(tensors: readonly Tensor[]): number {
  return (native.tensorVersions as (h: unknown[]) => number)(tensors.map((t) => t.handle));
}

/** Bytes of freed tensor buffers the caching CPU allocator holds for reuse. */
export function cpuCacheBytes(): number {
  return (native.cpuCacheBytes as () => number)();
}

export function torchVersion(): string {
  return native.version().torch;
}

/** Raw access to any ATen operator by name, for the rare op without a wrapper. */
export const aten = { call, callMany, callRaw };
