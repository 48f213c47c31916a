/**
 * safetensors files: flexvid's checkpoint weight format (REFERENCE_SPEC §6.7 proposal:
 * "safetensors-like weights + JSON config/step", parameter names as in §12).
 *
 * Layout (the public safetensors format):
 * ```
 * [8 bytes]  N = header length, unsigned 64-bit little-endian
 * [N bytes]  UTF-8 JSON: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..],
 *            "data_offsets": [begin, end]}, …}, padded with spaces (0x20) to a multiple of 8
 * [rest]     the byte buffer; offsets are relative to its start, tensors tile it exactly
 * ```
 * Our writer emits `__metadata__` first and then the tensor names sorted by UTF-16 code units;
 * the data is laid out by decreasing item size, then by name, so every tensor is aligned to its
 * item size (the header length is a multiple of 8). Readers accept any order.
 */
import * as fs from 'node:fs';
import { FileFormatError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';
import { ITEM_SIZE, isDType, numel, type DType, type RawTensor } from './raw-tensor.ts';

/** safetensors dtype codes ⇄ our dtype names. */
const TO_CODE: Readonly<Record<DType, string>> = {
  float64: 'F64',
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};
const FROM_CODE: Readonly<Record<string, DType>> = Object.fromEntries(Object.entries(TO_CODE).map(([k, v]) => [v, k as DType]));

/** The safetensors reference implementation refuses headers above this size; so do we. */
export const MAX_HEADER_BYTES = 100_000_000;

/** One tensor's entry in the header. */
export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  /** `[begin, end)` byte range relative to the start of the data buffer. */
  dataOffsets: [number, number];
}

/** A parsed and validated header. */
export interface SafetensorsHeader {
  /** Entries by tensor name, in header order. */
  tensors: Record<string, SafetensorsEntry>;
  /** `__metadata__` (empty object when absent). */
  metadata: Record<string, string>;
  /** N: header length in bytes (without the 8-byte length prefix). */
  headerLength: number;
  /** Absolute file offset of the data buffer (8 + N). */
  dataStart: number;
  /** Length of the data buffer in bytes. */
  dataLength: number;
}

/** Result of {@link loadSafetensors}. */
export interface SafetensorsContents {
  tensors: Record<string, RawTensor>;
  metadata: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Serialise tensors to the safetensors byte layout, as a list of chunks (header, then each
 * tensor's bytes) so large checkpoints are never concatenated in memory.
 * Throws a TypeError/RangeError for invalid input (bad names, dtypes, shapes, byte lengths).
 */
export function encodeSafetensors(tensors: Record<string, RawTensor>, metadata?: Record<string, string>): Uint8Array[] {
  const names = Object.keys(tensors).sort(compareCodeUnits);
  for (const name of names) {
    if (name === '__metadata__') throw new TypeError('a tensor cannot be named "__metadata__"');
    const t = tensors[name]!;
    if (!isDType(t.dtype)) throw new TypeError(`tensor ${JSON.stringify(name)}: unsupported dtype ${String(t.dtype)}`);
    const want = numel(t.shape) * ITEM_SIZE[t.dtype];
    if (!(t.data instanceof Uint8Array) || t.data.byteLength !== want) {
      throw new RangeError(`tensor ${JSON.stringify(name)}: ${t.dtype}[${t.shape.join(', ')}] needs ${want} bytes, got ${t.data?.byteLength}`);
    }
  }
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new TypeError(`metadata ${JSON.stringify(k)} must be a string, got ${typeof v}`);
    }
  }
  // Data order: larger items first (keeps every tensor naturally aligned), then by name.
  const dataOrder = [...names].sort((a, b) => ITEM_SIZE[tensors[b]!.dtype] - ITEM_SIZE[tensors[a]!.dtype] || compareCodeUnits(a, b));
  const offsets = new Map<string, [number, number]>();
  let pos = 0;
  for (const name of dataOrder) {
    const len = tensors[name]!.data.byteLength;
    offsets.set(name, [pos, pos + len]);
    pos += len;
  }
  // Header JSON: built by hand so the key order is exactly ours (JSON.stringify of plain objects
  // would move integer-like names such as "0" to the front).
  const parts: string[] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const metaKeys = Object.keys(metadata).sort(compareCodeUnits);
    parts.push(`"__metadata__":{${metaKeys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(',')}}`);
  }
  for (const name of names) {
    const t = tensors[name]!;
    const [b, e] = offsets.get(name)!;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${TO_CODE[t.dtype]}","shape":[${t.shape.join(',')}],"data_offsets":[${b},${e}]}`);
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const n = Math.ceil(json.byteLength / 8) * 8;
  const header = new Uint8Array(8 + n).fill(0x20, 8);
  new DataView(header.buffer).setBigUint64(0, BigInt(n), true);
  header.set(json, 8);
  return [header, ...dataOrder.map((name) => tensors[name]!.data)];
}

/**
 * Write a safetensors file atomically (temporary sibling, fsync, rename).
 * @param path      target file (parent folders are created)
 * @param tensors   name → tensor; names are kept verbatim (use the reference module paths, §12)
 * @param metadata  optional string → string map stored as `__metadata__`
 */
export function saveSafetensors(path: string, tensors: Record<string, RawTensor>, metadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

// ---------------------------------------------------------------------------------------------
// Reading

/**
 * Parse and validate a header. `prefix` must hold at least the first 8 bytes and, once N is
 * known, the 8 + N header bytes (call with the first 8 bytes to learn N: it throws a
 * FileFormatError for a too-short prefix only after checking N against `fileSize`).
 */
export function parseSafetensorsHeader(prefix: Uint8Array, fileSize: number, file: string): SafetensorsHeader {
  if (fileSize < 8 || prefix.byteLength < 8) throw new FileFormatError(file, `not a safetensors file: ${fileSize} bytes is shorter than the 8-byte header length`);
  const nBig = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (nBig > BigInt(MAX_HEADER_BYTES)) throw new FileFormatError(file, `safetensors header length ${nBig} exceeds the ${MAX_HEADER_BYTES}-byte limit (not a safetensors file?)`);
  const n = Number(nBig);
  if (8 + n > fileSize) throw new FileFormatError(file, `truncated safetensors file: header claims ${n} bytes but the file has only ${fileSize - 8} after the length`);
  if (prefix.byteLength < 8 + n) throw new FileFormatError(file, `internal: header prefix too short (${prefix.byteLength} < ${8 + n})`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(prefix.subarray(8, 8 + n));
  } catch {
    throw new FileFormatError(file, 'safetensors header is not valid UTF-8');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new FileFormatError(file, `safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FileFormatError(file, 'safetensors header must be a JSON object');
  const dataLength = fileSize - 8 - n;
  const tensors: Record<string, SafetensorsEntry> = {};
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number, string]> = [];
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(value, file);
      continue;
    }
    const entry = parseEntry(name, value, file);
    const [b, e] = entry.dataOffsets;
    const want = numel(entry.shape) * ITEM_SIZE[entry.dtype];
    if (e - b !== want) {
      throw new FileFormatError(file, `tensor ${JSON.stringify(name)}: data_offsets [${b}, ${e}] span ${e - b} bytes but ${entry.dtype}[${entry.shape.join(', ')}] needs ${want}`);
    }
    if (e > dataLength) {
      throw new FileFormatError(file, `tensor ${JSON.stringify(name)}: data_offsets [${b}, ${e}] run past the end of the ${dataLength}-byte data buffer (truncated file?)`);
    }
    Object.defineProperty(tensors, name, { value: entry, enumerable: true, writable: true, configurable: true });
    ranges.push([b, e, name]);
  }
  // The tensors must tile [0, dataLength) exactly: no gaps, no overlaps, no trailing bytes.
  ranges.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let pos = 0;
  for (const [b, e, name] of ranges) {
    if (b !== pos) {
      throw new FileFormatError(file, b > pos ? `gap in safetensors data before tensor ${JSON.stringify(name)} (bytes ${pos}..${b})` : `tensor ${JSON.stringify(name)} overlaps the previous tensor (starts at ${b}, previous ends at ${pos})`);
    }
    pos = e;
  }
  if (pos !== dataLength) {
    throw new FileFormatError(file, `safetensors data buffer has ${dataLength} bytes but the tensors cover ${pos} (trailing or missing bytes)`);
  }
  return { tensors, metadata, headerLength: n, dataStart: 8 + n, dataLength };
}

function parseMetadata(value: unknown, file: string): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FileFormatError(file, '__metadata__ must be an object of strings');
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== 'string') throw new FileFormatError(file, `__metadata__ ${JSON.stringify(k)} must be a string, got ${JSON.stringify(v)}`);
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function parseEntry(name: string, value: unknown, file: string): SafetensorsEntry {
  const where = `tensor ${JSON.stringify(name)}`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new FileFormatError(file, `${where}: header entry must be an object`);
  const v = value as Record<string, unknown>;
  const dtype = typeof v.dtype === 'string' ? FROM_CODE[v.dtype] : undefined;
  if (dtype === undefined) {
    throw new FileFormatError(file, `${where}: unsupported dtype ${JSON.stringify(v.dtype)} (supported: ${Object.values(TO_CODE).join(', ')})`);
  }
  const shape = v.shape;
  if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && (s as number) >= 0)) {
    throw new FileFormatError(file, `${where}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  const off = v.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && (x as number) >= 0) || (off[0] as number) > (off[1] as number)) {
    throw new FileFormatError(file, `${where}: data_offsets must be [begin, end] with 0 ≤ begin ≤ end, got ${JSON.stringify(off)}`);
  }
  try {
    numel(shape as number[]);
  } catch (e) {
    throw new FileFormatError(file, `${where}: ${(e as Error).message}`);
  }
  return { dtype, shape: [...(shape as number[])], dataOffsets: [off[0] as number, off[1] as number] };
}

/** Read exactly `length` bytes at `position` (throws FileFormatError on a short read). */
function readExact(fd: number, length: number, position: number, file: string): Uint8Array {
  const buf = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const got = fs.readSync(fd, buf, done, length - done, position + done);
    if (got === 0) throw new FileFormatError(file, `unexpected end of file at byte ${position + done}`);
    done += got;
  }
  return buf;
}

/** Read and validate only the header of a safetensors file (the data is not read). */
export function readSafetensorsHeader(path: string): SafetensorsHeader {
  const fd = openForRead(path);
  try {
    const size = fs.fstatSync(fd).size;
    const first = size >= 8 ? readExact(fd, 8, 0, path) : new Uint8Array(0);
    const n = size >= 8 ? Number(new DataView(first.buffer).getBigUint64(0, true)) : 0;
    if (size < 8 || n > MAX_HEADER_BYTES || 8 + n > size) return parseSafetensorsHeader(first, size, path); // throws the right error
    return parseSafetensorsHeader(readExact(fd, 8 + n, 0, path), size, path);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Load a safetensors file. Each tensor gets its own freshly allocated (hence aligned) buffer.
 * @param options.names  load only these tensors (FileFormatError if one is missing)
 */
export function loadSafetensors(path: string, options: { names?: readonly string[] } = {}): SafetensorsContents {
  const fd = openForRead(path);
  try {
    const size = fs.fstatSync(fd).size;
    const first = size >= 8 ? readExact(fd, 8, 0, path) : new Uint8Array(0);
    const n = size >= 8 ? Number(new DataView(first.buffer).getBigUint64(0, true)) : 0;
    const header = size < 8 || n > MAX_HEADER_BYTES || 8 + n > size ? parseSafetensorsHeader(first, size, path) : parseSafetensorsHeader(readExact(fd, 8 + n, 0, path), size, path);
    const wanted = options.names ?? Object.keys(header.tensors);
    const tensors: Record<string, RawTensor> = {};
    for (const name of wanted) {
      if (!Object.prototype.hasOwnProperty.call(header.tensors, name)) throw new FileFormatError(path, `no tensor named ${JSON.stringify(name)}`);
      const e = header.tensors[name]!;
      const [b, end] = e.dataOffsets;
      const data = readExact(fd, end - b, header.dataStart + b, path);
      Object.defineProperty(tensors, name, { value: { dtype: e.dtype, shape: [...e.shape], data }, enumerable: true, writable: true, configurable: true });
    }
    return { tensors, metadata: header.metadata };
  } finally {
    fs.closeSync(fd);
  }
}

/** Decode an in-memory safetensors file (tensor data are views into `bytes`). */
export function decodeSafetensors(bytes: Uint8Array, label = '<buffer>'): SafetensorsContents {
  const n = bytes.byteLength >= 8 ? Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true)) : 0;
  const header = parseSafetensorsHeader(bytes, bytes.byteLength, label);
  const tensors: Record<string, RawTensor> = {};
  for (const [name, e] of Object.entries(header.tensors)) {
    const data = bytes.subarray(8 + n + e.dataOffsets[0], 8 + n + e.dataOffsets[1]);
    Object.defineProperty(tensors, name, { value: { dtype: e.dtype, shape: [...e.shape], data }, enumerable: true, writable: true, configurable: true });
  }
  return { tensors, metadata: header.metadata };
}

function openForRead(path: string): number {
  try {
    return fs.openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new FileFormatError(path, code === 'ENOENT' ? 'file not found' : `cannot open (${code ?? (e as Error).message})`);
  }
}

/** Compare strings by UTF-16 code units (the default JS sort order, made explicit). */
function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
