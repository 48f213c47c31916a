/**
 * NumPy `.npy` files: read and write (format versions 1.0, 2.0 and 3.0, C order).
 *
 * Supported dtypes: `<f8 <f4 <f2 |u1 <i8 <i4 |b1` (little-endian; the machine is assumed
 * little-endian, as every platform Node supports today is). Fortran-ordered and big-endian
 * arrays are rejected with a {@link FileFormatError} naming the file.
 *
 * Format (numpy.lib.format): magic `\x93NUMPY`, major, minor, header length (uint16 LE for v1,
 * uint32 LE for v2/v3), then a Python-dict header `{'descr': …, 'fortran_order': …, 'shape': (…), }`
 * padded with spaces and ended by `\n` so the data starts on a 64-byte boundary, then the raw data.
 * Used for the dataset chunks of REFERENCE_SPEC §1.1.2 / §1.2.
 */
import * as fs from 'node:fs';
import { FileFormatError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';

/** The dtype strings flexvid reads and writes. */
export type NpyDtype = '<f8' | '<f4' | '<f2' | '|u1' | '<i8' | '<i4' | '|b1';

/** Typed array holding the elements of each dtype (`<f2` is kept as raw IEEE half bits). */
export interface NpyDataMap {
  '<f8': Float64Array;
  '<f4': Float32Array;
  '<f2': Uint16Array;
  '|u1': Uint8Array;
  '<i8': BigInt64Array;
  '<i4': Int32Array;
  '|b1': Uint8Array;
}
export type NpyData = NpyDataMap[NpyDtype];

/** An n-dimensional array as stored in a .npy file (C order). */
export interface NpyArray<D extends NpyDtype = NpyDtype> {
  dtype: D;
  shape: number[];
  data: NpyDataMap[D];
}

/** Parsed header of a .npy file. */
export interface NpyHeader {
  dtype: NpyDtype;
  shape: number[];
  /** Format major version (1, 2 or 3). */
  version: number;
  /** Byte offset of the first element. */
  dataOffset: number;
  /** Bytes of element data the header promises. */
  dataBytes: number;
}

/** Element size in bytes of each dtype. */
export const NPY_ITEMSIZE: Record<NpyDtype, number> = {
  '<f8': 8,
  '<f4': 4,
  '<f2': 2,
  '|u1': 1,
  '<i8': 8,
  '<i4': 4,
  '|b1': 1,
};

/** Accepted spellings of each dtype in headers ('=' and '<' are the same on little-endian). */
const DESCR_ALIASES: Record<string, NpyDtype> = {
  '<f8': '<f8', '=f8': '<f8', '<d': '<f8',
  '<f4': '<f4', '=f4': '<f4',
  '<f2': '<f2', '=f2': '<f2',
  '|u1': '|u1', '<u1': '|u1', '=u1': '|u1', u1: '|u1', '|B': '|u1',
  '<i8': '<i8', '=i8': '<i8',
  '<i4': '<i4', '=i4': '<i4',
  '|b1': '|b1', '<b1': '|b1', b1: '|b1', '|?': '|b1',
};

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** Number of elements of a shape (1 for a scalar `()`). */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Parse the header at the start of `bytes` (which must contain at least the whole header).
 * Throws FileFormatError (naming `file`) for a bad magic, version, dtype or order.
 */
export function parseNpyHeader(bytes: Uint8Array, file: string): NpyHeader {
  if (bytes.length < 10) throw new FileFormatError(file, `truncated .npy header (${bytes.length} bytes; expected at least 10)`);
  for (let i = 0; i < 6; i++) {
    if (bytes[i] !== MAGIC[i]) throw new FileFormatError(file, 'not a .npy file (missing \\x93NUMPY magic)');
  }
  const major = bytes[6]!;
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = bytes[8]! | (bytes[9]! << 8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new FileFormatError(file, 'truncated .npy header (expected a 12-byte preamble)');
    headerLen = (bytes[8]! | (bytes[9]! << 8) | (bytes[10]! << 16)) + bytes[11]! * 16777216;
    start = 12;
  } else {
    throw new FileFormatError(file, `unsupported .npy format version ${major}.${bytes[7]} (expected 1.0, 2.0 or 3.0)`);
  }
  if (bytes.length < start + headerLen) {
    throw new FileFormatError(file, `truncated .npy header (expected ${start + headerLen} bytes, found ${bytes.length})`);
  }
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw new FileFormatError(file, `corrupt .npy header ${JSON.stringify(text.trim())} (expected descr, fortran_order and shape)`);
  }
  if (fortran === 'True') {
    throw new FileFormatError(file, 'Fortran-ordered .npy arrays are not supported (expected fortran_order False; re-save with np.ascontiguousarray)');
  }
  const dtype = DESCR_ALIASES[descr];
  if (dtype === undefined) {
    const hint = descr.startsWith('>') ? ' (big-endian data is not supported)' : '';
    throw new FileFormatError(file, `unsupported .npy dtype ${JSON.stringify(descr)}${hint} (expected one of <f8 <f4 <f2 |u1 <i8 <i4 |b1)`);
  }
  const shape: number[] = [];
  for (const part of shapeText.split(',')) {
    const p = part.trim().replace(/L$/, '');
    if (p === '') continue;
    const d = Number(p);
    if (!Number.isSafeInteger(d) || d < 0) throw new FileFormatError(file, `corrupt .npy shape (${shapeText})`);
    shape.push(d);
  }
  const dataOffset = start + headerLen;
  return { dtype, shape, version: major, dataOffset, dataBytes: shapeSize(shape) * NPY_ITEMSIZE[dtype] };
}

/** Typed-array view (or copy when misaligned) of `bytes` as `dtype`. */
function typedView(dtype: NpyDtype, bytes: Uint8Array, count: number): NpyData {
  const size = NPY_ITEMSIZE[dtype];
  let b = bytes;
  if (b.byteOffset % size !== 0) b = b.slice(); // copies to an aligned buffer
  const buf = b.buffer;
  const off = b.byteOffset;
  switch (dtype) {
    case '<f8': return new Float64Array(buf, off, count);
    case '<f4': return new Float32Array(buf, off, count);
    case '<f2': return new Uint16Array(buf, off, count);
    case '<i8': return new BigInt64Array(buf, off, count);
    case '<i4': return new Int32Array(buf, off, count);
    case '|u1':
    case '|b1': return new Uint8Array(buf, off, count);
  }
}

/** Decode a whole .npy file held in memory. */
export function parseNpy(bytes: Uint8Array, file: string): NpyArray {
  // Read up to the header end first so header errors are reported before size errors.
  const header = parseNpyHeader(bytes, file);
  const need = header.dataOffset + header.dataBytes;
  if (bytes.length < need) {
    throw new FileFormatError(
      file,
      `truncated .npy data: shape (${header.shape.join(', ')}) ${header.dtype} needs ${need} bytes but the file has ${bytes.length}`,
    );
  }
  const count = shapeSize(header.shape);
  const data = typedView(header.dtype, bytes.subarray(header.dataOffset, need), count);
  return { dtype: header.dtype, shape: header.shape, data };
}

/** Read a .npy file from disk. Missing file → FileFormatError. */
export function readNpy(file: string): NpyArray {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new FileFormatError(file, `cannot read .npy file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseNpy(bytes, file);
}

/**
 * Read only the header of a .npy file and check the file is long enough for the data it promises.
 * Cheap (reads a few hundred bytes); used to validate datasets without loading chunks.
 */
export function readNpyHeader(file: string): NpyHeader & { fileBytes: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new FileFormatError(file, `cannot open .npy file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const size = fs.fstatSync(fd).size;
    let buf = Buffer.alloc(Math.min(size, 4096));
    fs.readSync(fd, buf, 0, buf.length, 0);
    let header: NpyHeader;
    try {
      header = parseNpyHeader(buf, file);
    } catch (e) {
      // Very long headers (huge shapes) need a second, larger read.
      if (buf.length === 4096 && size > 4096 && buf[6] !== undefined) {
        buf = Buffer.alloc(Math.min(size, 1 << 20));
        fs.readSync(fd, buf, 0, buf.length, 0);
        header = parseNpyHeader(buf, file);
      } else {
        throw e;
      }
    }
    const need = header.dataOffset + header.dataBytes;
    if (size < need) {
      throw new FileFormatError(
        file,
        `truncated .npy data: shape (${header.shape.join(', ')}) ${header.dtype} needs ${need} bytes but the file has ${size}`,
      );
    }
    return { ...header, fileBytes: size };
  } finally {
    fs.closeSync(fd);
  }
}

/** The Python tuple spelling of a shape: `()`, `(3,)`, `(2, 3)`. */
function shapeTuple(shape: readonly number[]): string {
  if (shape.length === 0) return '()';
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

/**
 * The header bytes (preamble + dict + padding) for an array. Version 1.0 unless the header
 * does not fit in 65535 bytes (then 2.0). The data starts on a 64-byte boundary.
 */
export function encodeNpyHeader(dtype: NpyDtype, shape: readonly number[]): Uint8Array {
  const dict = `{'descr': '${dtype}', 'fortran_order': False, 'shape': ${shapeTuple(shape)}, }`;
  for (const version of [1, 2]) {
    const pre = version === 1 ? 10 : 12;
    const unpadded = pre + dict.length + 1; // + '\n'
    const total = Math.ceil(unpadded / 64) * 64;
    const headerLen = total - pre;
    if (version === 1 && headerLen > 0xffff) continue;
    const out = new Uint8Array(total);
    out.set(MAGIC, 0);
    out[6] = version;
    out[7] = 0;
    if (version === 1) {
      out[8] = headerLen & 0xff;
      out[9] = headerLen >>> 8;
    } else {
      new DataView(out.buffer).setUint32(8, headerLen, true);
    }
    const text = dict + ' '.repeat(total - unpadded) + '\n';
    for (let i = 0; i < text.length; i++) out[pre + i] = text.charCodeAt(i);
    return out;
  }
  throw new Error('unreachable');
}

/** Bytes of an array's elements (a view, no copy). */
function dataBytes(arr: NpyArray): Uint8Array {
  return new Uint8Array(arr.data.buffer, arr.data.byteOffset, arr.data.byteLength);
}

/** Check that `data` has the element type and length `dtype` and `shape` call for. */
function checkArray(arr: NpyArray): void {
  const expected = shapeSize(arr.shape);
  if (arr.data.length !== expected) {
    throw new RangeError(`npy: data has ${arr.data.length} elements but shape (${arr.shape.join(', ')}) needs ${expected}`);
  }
  if (arr.data.BYTES_PER_ELEMENT !== NPY_ITEMSIZE[arr.dtype]) {
    throw new TypeError(`npy: ${arr.data.constructor.name} does not hold dtype ${arr.dtype}`);
  }
}

/** Encode an array as the parts of a .npy file (header, data), without copying the data. */
export function encodeNpy(arr: NpyArray): Uint8Array[] {
  checkArray(arr);
  return [encodeNpyHeader(arr.dtype, arr.shape), dataBytes(arr)];
}

/** Write an array to `file` atomically (temporary file + rename). */
export function writeNpy(file: string, arr: NpyArray): void {
  writeFileAtomic(file, encodeNpy(arr));
}

/** IEEE half (raw bits) → number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** number → IEEE half raw bits (round to nearest even). */
export function floatToHalf(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // rounds to infinity
  if (a < 2 ** -24 * 0.5) return sign; // underflow to ±0 (ties at exactly half round to 0, even)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e -= 1; // guard log2 rounding
  if (e < -14) {
    // subnormal: units of 2^-24
    const m = roundHalfEven(a / 2 ** -24);
    return sign | m; // m may reach 1024 = smallest normal, which encodes correctly
  }
  let m = roundHalfEven((a / 2 ** e - 1) * 1024);
  if (m === 1024) {
    m = 0;
    e += 1;
  }
  if (e > 15) return sign | 0x7c00;
  return sign | ((e + 15) << 10) | m;
}

function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Convert any numeric npy array's elements to float32 (half decoded, int64 via Number). */
export function npyToFloat32(arr: NpyArray): Float32Array {
  const n = arr.data.length;
  if (arr.dtype === '<f4') return (arr.data as Float32Array).slice();
  const out = new Float32Array(n);
  if (arr.dtype === '<f2') {
    const d = arr.data as Uint16Array;
    for (let i = 0; i < n; i++) out[i] = halfToFloat(d[i]!);
  } else if (arr.dtype === '<i8') {
    const d = arr.data as BigInt64Array;
    for (let i = 0; i < n; i++) out[i] = Number(d[i]!);
  } else {
    const d = arr.data as Float64Array | Uint8Array | Int32Array;
    for (let i = 0; i < n; i++) out[i] = d[i]!;
  }
  return out;
}
