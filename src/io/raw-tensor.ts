/**
 * `RawTensor`: an engine-independent tensor as it is stored in files — a dtype, a shape and the
 * little-endian C-order bytes. The safetensors reader/writer (`safetensors.ts`) and the PyTorch
 * pickle reader (`torch-pickle.ts`) exchange tensors in this form; the tensor engine converts
 * them to and from its own tensors.
 *
 * Also here: bit-exact float16 / bfloat16 ⇄ float32 conversions (round-to-nearest-even, like
 * NumPy's `astype(np.float16)` and PyTorch's `.to(torch.bfloat16)`) and typed-array views.
 */

/** Element types a {@link RawTensor} can hold (PyTorch names). */
export type DType =
  | 'float64'
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

/** A dense tensor as raw bytes: little-endian, C (row-major) order, no padding. */
export interface RawTensor {
  dtype: DType;
  /** Sizes per axis; `[]` is a scalar (one element). */
  shape: number[];
  /** `numel(shape) · itemSize(dtype)` bytes. */
  data: Uint8Array;
}

/** Bytes per element. */
export const ITEM_SIZE: Readonly<Record<DType, number>> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** All supported dtypes, in a fixed order. */
export const DTYPES: readonly DType[] = Object.keys(ITEM_SIZE) as DType[];

/** True for a supported dtype name. */
export function isDType(x: unknown): x is DType {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(ITEM_SIZE, x);
}

// Typed arrays use the host byte order; every supported platform (x86-64, arm64) is little-endian.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('flexvid/io: big-endian hosts are not supported');
}

/** Number of elements of a shape (1 for a scalar). Throws on a negative or non-integer size. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) {
    if (!Number.isSafeInteger(s) || s < 0) throw new RangeError(`invalid tensor size ${s} in shape [${shape.join(', ')}]`);
    n *= s;
  }
  if (!Number.isSafeInteger(n)) throw new RangeError(`tensor shape [${shape.join(', ')}] is too large`);
  return n;
}

/** Byte length of a tensor of this dtype and shape. */
export function byteLength(dtype: DType, shape: readonly number[]): number {
  return numel(shape) * ITEM_SIZE[dtype];
}

/** Build a {@link RawTensor}, checking that `data` has exactly the right length. */
export function makeRawTensor(dtype: DType, shape: readonly number[], data: Uint8Array): RawTensor {
  if (!isDType(dtype)) throw new TypeError(`unsupported dtype ${String(dtype)}`);
  const want = byteLength(dtype, shape);
  if (data.byteLength !== want) {
    throw new RangeError(`${dtype} tensor of shape [${shape.join(', ')}] needs ${want} bytes, got ${data.byteLength}`);
  }
  return { dtype, shape: [...shape], data };
}

/** Duck-type check used to tell tensors from other values in loaded files. */
export function isRawTensor(x: unknown): x is RawTensor {
  if (typeof x !== 'object' || x === null) return false;
  const t = x as Partial<RawTensor>;
  return isDType(t.dtype) && Array.isArray(t.shape) && t.data instanceof Uint8Array;
}

/** Typed arrays a {@link RawTensor} can be created from (float16/bfloat16 need an explicit dtype). */
export type NumericArray =
  | Float64Array
  | Float32Array
  | BigInt64Array
  | Int32Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array;

/**
 * Wrap a typed array as a tensor (the bytes are copied). The dtype is inferred from the array
 * type; pass `dtype` for `'bool'` (Uint8Array of 0/1) or `'float16'`/`'bfloat16'` (Uint16Array of bits).
 */
export function rawFromTyped(array: NumericArray, shape: readonly number[], dtype?: DType): RawTensor {
  const inferred: DType | undefined =
    array instanceof Float64Array
      ? 'float64'
      : array instanceof Float32Array
        ? 'float32'
        : array instanceof BigInt64Array
          ? 'int64'
          : array instanceof Int32Array
            ? 'int32'
            : array instanceof Int16Array
              ? 'int16'
              : array instanceof Int8Array
                ? 'int8'
                : array instanceof Uint8Array
                  ? 'uint8'
                  : undefined;
  const dt = dtype ?? inferred;
  if (dt === undefined) throw new TypeError('rawFromTyped: pass dtype "float16" or "bfloat16" for a Uint16Array');
  if (ITEM_SIZE[dt] !== array.BYTES_PER_ELEMENT) {
    throw new TypeError(`rawFromTyped: ${array.constructor.name} cannot hold ${dt}`);
  }
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength).slice();
  return makeRawTensor(dt, shape, bytes);
}

/** The tensor's bytes in an ArrayBuffer-aligned copy if `data` is not aligned to `align`. */
function aligned(data: Uint8Array, align: number): Uint8Array {
  return data.byteOffset % align === 0 ? data : data.slice();
}

/** Float32 view of a float32 tensor (a view when aligned, else a copy). */
export function float32View(t: RawTensor): Float32Array {
  expectDType(t, 'float32');
  const d = aligned(t.data, 4);
  return new Float32Array(d.buffer, d.byteOffset, d.byteLength / 4);
}

/** Float64 view of a float64 tensor (a view when aligned, else a copy). */
export function float64View(t: RawTensor): Float64Array {
  expectDType(t, 'float64');
  const d = aligned(t.data, 8);
  return new Float64Array(d.buffer, d.byteOffset, d.byteLength / 8);
}

/** BigInt64 view of an int64 tensor (a view when aligned, else a copy). */
export function int64View(t: RawTensor): BigInt64Array {
  expectDType(t, 'int64');
  const d = aligned(t.data, 8);
  return new BigInt64Array(d.buffer, d.byteOffset, d.byteLength / 8);
}

/** Raw 16-bit patterns of a float16 / bfloat16 tensor. */
export function halfBitsView(t: RawTensor): Uint16Array {
  if (t.dtype !== 'float16' && t.dtype !== 'bfloat16') throw new TypeError(`expected a float16/bfloat16 tensor, got ${t.dtype}`);
  const d = aligned(t.data, 2);
  return new Uint16Array(d.buffer, d.byteOffset, d.byteLength / 2);
}

function expectDType(t: RawTensor, dtype: DType): void {
  if (t.dtype !== dtype) throw new TypeError(`expected a ${dtype} tensor, got ${t.dtype}`);
}

/**
 * int64 values as JS numbers. Throws if a value is outside ±(2^53 − 1) (it would not be exact).
 */
export function int64ToNumbers(t: RawTensor): Float64Array {
  const v = int64View(t);
  const out = new Float64Array(v.length);
  const lim = BigInt(Number.MAX_SAFE_INTEGER);
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (x > lim || x < -lim) throw new RangeError(`int64 value ${x} at flat index ${i} is not a safe JS integer`);
    out[i] = Number(x);
  }
  return out;
}

/** Any tensor converted to float64 (exact for every dtype except int64 beyond 2^53). */
export function toFloat64Array(t: RawTensor): Float64Array {
  const n = t.data.byteLength / ITEM_SIZE[t.dtype];
  const d = aligned(t.data, ITEM_SIZE[t.dtype]);
  const buf = d.buffer;
  const off = d.byteOffset;
  switch (t.dtype) {
    case 'float64':
      return new Float64Array(buf.slice(off, off + n * 8));
    case 'float32':
      return Float64Array.from(new Float32Array(buf, off, n));
    case 'float16': {
      const out = new Float64Array(n);
      const h = new Uint16Array(buf, off, n);
      for (let i = 0; i < n; i++) out[i] = float16BitsToNumber(h[i]!);
      return out;
    }
    case 'bfloat16': {
      const out = new Float64Array(n);
      const h = new Uint16Array(buf, off, n);
      for (let i = 0; i < n; i++) out[i] = bfloat16BitsToNumber(h[i]!);
      return out;
    }
    case 'int64': {
      const out = new Float64Array(n);
      const v = new BigInt64Array(buf, off, n);
      for (let i = 0; i < n; i++) out[i] = Number(v[i]!);
      return out;
    }
    case 'int32':
      return Float64Array.from(new Int32Array(buf, off, n));
    case 'int16':
      return Float64Array.from(new Int16Array(buf, off, n));
    case 'int8':
      return Float64Array.from(new Int8Array(buf, off, n));
    case 'uint8':
    case 'bool':
      return Float64Array.from(new Uint8Array(buf, off, n));
  }
}

/** Any tensor converted to float32 (float16/bfloat16 exactly; wider types rounded as `Math.fround`). */
export function toFloat32Array(t: RawTensor): Float32Array {
  if (t.dtype === 'float32') return float32View(t).slice();
  if (t.dtype === 'float16' || t.dtype === 'bfloat16') {
    const h = halfBitsView(t);
    const out = new Float32Array(h.length);
    const bits = new Uint32Array(out.buffer);
    if (t.dtype === 'float16') {
      const table = float16Table();
      for (let i = 0; i < h.length; i++) bits[i] = table[h[i]!]!;
    } else {
      for (let i = 0; i < h.length; i++) bits[i] = (h[i]! << 16) >>> 0;
    }
    return out;
  }
  return Float32Array.from(toFloat64Array(t));
}

/**
 * Make a floating-point tensor from float32 values: `float32` (copy), `float64` (exact widening),
 * `float16` / `bfloat16` (round to nearest even; overflow → ±∞; NaN stays NaN).
 */
export function fromFloat32(values: Float32Array, shape: readonly number[], dtype: 'float32' | 'float64' | 'float16' | 'bfloat16'): RawTensor {
  switch (dtype) {
    case 'float32':
      return rawFromTyped(values, shape);
    case 'float64':
      return rawFromTyped(Float64Array.from(values), shape);
    case 'float16':
    case 'bfloat16': {
      const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
      const out = new Uint16Array(values.length);
      const conv = dtype === 'float16' ? float32BitsToFloat16Bits : float32BitsToBfloat16Bits;
      for (let i = 0; i < values.length; i++) out[i] = conv(bits[i]!);
      return rawFromTyped(out, shape, dtype);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 bit conversions

/** IEEE binary16 bits → binary32 bits (exact; NaN payloads kept in the top mantissa bits). */
export function float16BitsToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let man = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (man << 13)) >>> 0; // ±inf / NaN
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (man << 13)) >>> 0; // normal: rebias 15 → 127
  if (man === 0) return sign >>> 0; // ±0
  // Subnormal half: value = man · 2^-24; normalise the mantissa for float32.
  let e = 113; // exponent field for 2^-14 (the smallest normal half exponent) before the shifts
  while ((man & 0x400) === 0) {
    man <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((man & 0x3ff) << 13)) >>> 0;
}

let f16Table: Uint32Array | undefined;
/** Lazily built 65536-entry half → float32-bits table. */
function float16Table(): Uint32Array {
  if (!f16Table) {
    f16Table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = float16BitsToFloat32Bits(h);
  }
  return f16Table;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** binary16 bits → number. */
export function float16BitsToNumber(h: number): number {
  scratchU32[0] = float16BitsToFloat32Bits(h & 0xffff);
  return scratchF32[0]!;
}

/** bfloat16 bits → number (bfloat16 is the top half of a float32). */
export function bfloat16BitsToNumber(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0]!;
}

/** The float32 bit pattern of `x` (after rounding `x` to float32). */
export function float32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/**
 * binary32 bits → binary16 bits with round-to-nearest-even (matches NumPy `astype(float16)`):
 * magnitudes that round above 65504 become ±∞, tiny ones become subnormals or ±0,
 * NaN stays a (quiet) NaN keeping the top payload bits.
 */
export function float32BitsToFloat16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const man = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man !== 0 ? 0x200 | (man >>> 13) : 0);
  const e = exp - 112; // rebias 127 → 15
  if (e >= 0x1f) return sign | 0x7c00; // ≥ 2^16: overflow
  if (e <= 0) {
    // Result is subnormal (or zero): value / 2^-24 = (1.man) · 2^(e−1+10) = m24 >> (14 − e).
    if (e < -10) return sign; // below 2^-25: rounds to ±0 (exactly 2^-25 is handled below as a tie)
    const m = man | 0x800000;
    const shift = 14 - e;
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (r & 1) !== 0)) r++;
    return sign | r;
  }
  let r = (e << 10) | (man >>> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (r & 1) !== 0)) r++; // a carry may reach the exponent (→ ∞ at the top): correct
  return sign | r;
}

/** binary32 bits → bfloat16 bits, round-to-nearest-even (PyTorch's rule); NaN → quiet NaN. */
export function float32BitsToBfloat16Bits(x: number): number {
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) | 0x40) & 0xffff;
  const lsb = (x >>> 16) & 1;
  return (((x >>> 0) + 0x7fff + lsb) >>> 16) & 0xffff;
}

/** number → float16 bits (via float32 — double rounding cannot occur for values already float32). */
export function numberToFloat16Bits(x: number): number {
  return float32BitsToFloat16Bits(float32Bits(x));
}

/** Bit-exact equality of two tensors (dtype, shape and bytes). */
export function rawTensorsEqual(a: RawTensor, b: RawTensor): boolean {
  if (a.dtype !== b.dtype || a.shape.length !== b.shape.length) return false;
  for (let i = 0; i < a.shape.length; i++) if (a.shape[i] !== b.shape[i]) return false;
  if (a.data.byteLength !== b.data.byteLength) return false;
  for (let i = 0; i < a.data.byteLength; i++) if (a.data[i] !== b.data[i]) return false;
  return true;
}
