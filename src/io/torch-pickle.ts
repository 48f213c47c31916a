/**
 * Reading (and writing simple) PyTorch `torch.save` files without Python or libtorch.
 *
 * A `torch.save` file (PyTorch ≥ 1.6 default "zip" serialisation) is an uncompressed ZIP archive:
 * ```
 * <archive>/data.pkl      pickle (protocol 2) of the saved object; tensors refer to storages
 *                         through persistent ids ('storage', <StorageClass>, <key>, <device>, <numel>)
 * <archive>/data/<key>    raw little-endian bytes of storage <key>
 * <archive>/version       "3\n"
 * <archive>/byteorder     "little" | "big" (PyTorch ≥ 2.1; absent = little)
 * ```
 * `<archive>` is the file's stem (PyTorch 1.13) or "archive" (newer versions); we accept any.
 *
 * The pickle runs in the restricted VM of `pickle.ts` with an allow-list of globals: dicts
 * (`collections.OrderedDict`), sets, bytes, `argparse.Namespace`, `torch.Size`, `torch.device`,
 * storage classes, dtypes and the tensor/parameter rebuild functions. Tensors come back as
 * contiguous C-order {@link RawTensor}s (views are materialised: storage offset and strides are
 * applied, so two tensors sharing one storage get independent copies).
 *
 * Used for the reference checkpoints (REFERENCE_SPEC §6.7), `replay_state.pt` (§3.2) and the
 * PLAICraft batch files (§2.6).
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { unzipSync, zipSync, type Zippable } from 'fflate';
import { FileFormatError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';
import { ITEM_SIZE, isRawTensor, numel, type DType, type RawTensor } from './raw-tensor.ts';
import { PyDict, PyObject, describe, toJs, unpickle, type PyGlobal } from './pickle.ts';

/** Legacy storage class name → dtype. */
const STORAGE_DTYPES: Readonly<Record<string, DType>> = {
  DoubleStorage: 'float64',
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/** `torch.<name>` dtype objects (pickled as globals) → dtype. */
const TORCH_DTYPES: Readonly<Record<string, DType>> = {
  float64: 'float64',
  double: 'float64',
  float32: 'float32',
  float: 'float32',
  float16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  int64: 'int64',
  long: 'int64',
  int32: 'int32',
  int: 'int32',
  int16: 'int16',
  short: 'int16',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

/** Storage class marker: a typed legacy class (dtype) or `UntypedStorage` (bytes). */
interface StorageClass extends PyGlobal {
  readonly storageDtype: DType | 'untyped';
}

/** A dtype marker (`torch.float32`, …). */
interface DtypeMarker extends PyGlobal {
  readonly dtype: DType;
}

/** A loaded storage: its element type and raw little-endian bytes. */
class TorchStorage {
  constructor(
    readonly dtype: DType | 'untyped',
    readonly bytes: Uint8Array,
    readonly key: string,
  ) {}
}

/** Options for {@link readTorchFile}. */
export interface ReadTorchOptions {
  /** Name used in error messages when reading from bytes. */
  label?: string;
}

/**
 * Read a `torch.save` file (zip format) and return its content as plain JavaScript:
 * dict → object (or `Map` when a key is not a string), list/tuple → array, set → `Set`,
 * bytes → `Uint8Array`, int → number (bigint beyond ±2^53), float → number, None → null,
 * tensor/Parameter → {@link RawTensor} (contiguous copy), `argparse.Namespace` → object.
 * Throws FileFormatError (naming the file) for non-torch files, legacy formats, corrupt data and
 * any global outside the allow-list.
 */
export function readTorchFile(source: string | Uint8Array, options: ReadTorchOptions = {}): unknown {
  const file = typeof source === 'string' ? source : (options.label ?? '<buffer>');
  let bytes: Uint8Array;
  if (typeof source === 'string') {
    try {
      bytes = fs.readFileSync(source);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new FileFormatError(file, code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? (e as Error).message})`);
    }
  } else {
    bytes = source;
  }
  return toJs(readTorchBytesRaw(bytes, file));
}

/** Unzip, locate data.pkl and storages, and run the pickle; returns the VM's Python-like value graph. */
function readTorchBytesRaw(bytes: Uint8Array, file: string): unknown {
  if (bytes.byteLength < 4 || !(bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04)) {
    if (bytes.byteLength >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) {
      throw new FileFormatError(file, 'legacy (non-zip) torch.save format is not supported; re-save it with torch.save(obj, path) from PyTorch ≥ 1.6 without _use_new_zipfile_serialization=False');
    }
    if (bytes.byteLength >= 262 && String.fromCharCode(...bytes.subarray(257, 262)) === 'ustar') {
      throw new FileFormatError(file, 'legacy tar-based torch.save format is not supported');
    }
    throw new FileFormatError(file, 'not a PyTorch zip checkpoint (missing ZIP signature)');
  }
  let entries: Record<string, Uint8Array>;
  try {
    entries = unzipSync(bytes);
  } catch (e) {
    throw new FileFormatError(file, `corrupt ZIP archive (${(e as Error).message})`);
  }
  const names = Object.keys(entries);
  const pkl = names.filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkl.length !== 1) {
    if (names.some((n) => /\/constants\.pkl$/.test(n) || /\/code\//.test(n))) {
      throw new FileFormatError(file, 'this is a TorchScript archive (torch.jit.save), not a torch.save file');
    }
    throw new FileFormatError(file, pkl.length === 0 ? 'ZIP archive has no <archive>/data.pkl (not a torch.save file)' : `ZIP archive has several data.pkl records (${pkl.join(', ')})`);
  }
  const prefix = pkl[0]!.slice(0, -'data.pkl'.length);
  const byteorderRec = entries[`${prefix}byteorder`];
  const byteorder = byteorderRec ? new TextDecoder().decode(byteorderRec).trim() : 'little';
  if (byteorder !== 'little' && byteorder !== 'big') throw new FileFormatError(file, `unknown byteorder record ${JSON.stringify(byteorder)}`);

  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: unknown): TorchStorage => {
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') {
      throw new FileFormatError(file, `unsupported persistent id ${describe(pid)} (expected ('storage', class, key, location, numel))`);
    }
    const [, cls, key, , count] = pid as [string, unknown, unknown, unknown, unknown];
    let dtype: DType | 'untyped';
    if (isStorageClass(cls)) dtype = cls.storageDtype;
    else if (isDtypeMarker(cls)) dtype = cls.dtype;
    else throw new FileFormatError(file, `persistent id names an unknown storage type (${describe(cls)})`);
    if (typeof key !== 'string') throw new FileFormatError(file, 'storage key must be a string');
    if (!Number.isSafeInteger(count) || (count as number) < 0) throw new FileFormatError(file, `storage ${key}: invalid element count ${String(count)}`);
    const cached = storages.get(key);
    if (cached) return cached;
    const rec = entries[`${prefix}data/${key}`];
    if (!rec) throw new FileFormatError(file, `missing storage record ${prefix}data/${key}`);
    const item = dtype === 'untyped' ? 1 : ITEM_SIZE[dtype];
    if (rec.byteLength !== (count as number) * item) {
      throw new FileFormatError(file, `storage ${key}: record has ${rec.byteLength} bytes, expected ${count as number} × ${item}`);
    }
    const data = byteorder === 'big' && item > 1 ? swapBytes(rec, item) : rec;
    const st = new TorchStorage(dtype, data, key);
    storages.set(key, st);
    return st;
  };
  return unpickle(entries[pkl[0]!]!, { file, findGlobal: (m, n) => findTorchGlobal(m, n, file), persistentLoad });
}

function isStorageClass(x: unknown): x is StorageClass {
  return typeof x === 'object' && x !== null && 'storageDtype' in x;
}
function isDtypeMarker(x: unknown): x is DtypeMarker {
  return typeof x === 'object' && x !== null && 'dtype' in x && 'module' in x;
}

function swapBytes(src: Uint8Array, item: number): Uint8Array {
  const out = new Uint8Array(src.byteLength);
  for (let i = 0; i < src.byteLength; i += item) for (let j = 0; j < item; j++) out[i + j] = src[i + item - 1 - j]!;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The allow-list

const marker = (module: string, name: string): PyGlobal => ({ module, name });

/** Resolve an allowed global, or undefined (→ the VM reports it). */
function findTorchGlobal(module: string, name: string, file: string): PyGlobal | undefined {
  const full = `${module}.${name}`;
  if (module === 'torch' && STORAGE_DTYPES[name]) {
    const g: StorageClass = { module, name, storageDtype: STORAGE_DTYPES[name]! };
    return g;
  }
  if ((module === 'torch' || module === 'torch.storage') && name === 'UntypedStorage') {
    const g: StorageClass = { module, name, storageDtype: 'untyped' };
    return g;
  }
  if (module === 'torch' && TORCH_DTYPES[name]) {
    const g: DtypeMarker = { module, name, dtype: TORCH_DTYPES[name]! };
    return g;
  }
  switch (full) {
    case 'collections.OrderedDict':
      return {
        module,
        name,
        call: (args) => {
          const d = new PyDict();
          if (args.length > 0) {
            const items = args[0];
            if (!Array.isArray(items)) throw new Error('expected a list of (key, value) pairs');
            for (const kv of items) {
              if (!Array.isArray(kv) || kv.length !== 2) throw new Error('expected (key, value) pairs');
              d.map.set(kv[0], kv[1]);
            }
          }
          return d;
        },
      };
    case 'builtins.set':
    case '__builtin__.set':
    case 'builtins.frozenset':
    case '__builtin__.frozenset':
      return { module, name, call: (args) => new Set(args.length ? asArray(args[0]) : []) };
    case '_codecs.encode':
      return { module, name, call: (args) => encodeString(args[0], args[1]) };
    case 'argparse.Namespace':
      return { module, name, call: () => new PyObject(full), newobj: () => new PyObject(full) };
    case 'torch.Size':
      return { module, name, call: (args) => [...asArray(args[0] ?? [])] };
    case 'torch.device':
      return { module, name, call: (args) => (args.length > 1 && args[1] !== null ? `${String(args[0])}:${String(args[1])}` : String(args[0])) };
    case 'torch.Tensor':
    case 'torch.nn.parameter.Parameter':
      return marker(module, name);
    case 'torch._utils._rebuild_tensor_v2':
      return { module, name, call: (args) => rebuildTensor(args, undefined, file) };
    case 'torch._utils._rebuild_tensor_v3':
      return {
        module,
        name,
        call: (args) => {
          const dt = args[6];
          if (!isDtypeMarker(dt)) throw new Error(`unsupported dtype argument (${describe(dt)})`);
          return rebuildTensor(args, dt.dtype, file);
        },
      };
    case 'torch._utils._rebuild_parameter':
    case 'torch._utils._rebuild_parameter_with_state':
      return {
        module,
        name,
        call: (args) => {
          if (!isRawTensor(args[0])) throw new Error(`expected a tensor, got ${describe(args[0])}`);
          return args[0];
        },
      };
    case 'torch._tensor._rebuild_from_type_v2':
      return {
        module,
        name,
        call: (args) => {
          const [fn, type, fnArgs] = args as [PyGlobal, PyGlobal, unknown];
          if (!fn?.call || !Array.isArray(fnArgs)) throw new Error('malformed arguments');
          if (!type || (`${type.module}.${type.name}` !== 'torch.Tensor' && `${type.module}.${type.name}` !== 'torch.nn.parameter.Parameter')) {
            throw new Error(`tensor subclass ${describe(type)} is not supported`);
          }
          return fn.call(fnArgs);
        },
      };
  }
  return undefined;
}

function asArray(x: unknown): unknown[] {
  if (Array.isArray(x)) return x;
  if (x instanceof Set) return [...x];
  throw new Error(`expected a list, got ${describe(x)}`);
}

/** `_codecs.encode(text, encoding)` — how protocol-2 pickles store Python `bytes`. */
function encodeString(text: unknown, encoding: unknown): Uint8Array {
  if (typeof text !== 'string') throw new Error('expected a string');
  const enc = String(encoding ?? 'utf-8').toLowerCase();
  if (enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1') {
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 255) throw new Error('character outside latin-1');
      out[i] = c;
    }
    return out;
  }
  if (enc === 'utf-8' || enc === 'utf8') return new TextEncoder().encode(text);
  throw new Error(`unsupported encoding ${enc}`);
}

/**
 * `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`
 * (and v3 with an explicit dtype): materialise the strided view as a contiguous C-order tensor.
 */
function rebuildTensor(args: unknown[], explicitDtype: DType | undefined, file: string): RawTensor {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof TorchStorage)) throw new Error(`expected a storage, got ${describe(storage)}`);
  const dtype: DType = explicitDtype ?? (storage.dtype === 'untyped' ? 'uint8' : storage.dtype);
  if (storage.dtype !== 'untyped' && storage.dtype !== dtype) throw new Error(`storage dtype ${storage.dtype} does not match tensor dtype ${dtype}`);
  const isInts = (x: unknown): x is number[] => Array.isArray(x) && x.every((v) => Number.isSafeInteger(v) && (v as number) >= 0);
  if (!Number.isSafeInteger(offset) || (offset as number) < 0) throw new Error(`invalid storage offset ${String(offset)}`);
  if (!isInts(size) || !isInts(stride) || size.length !== stride.length) {
    throw new Error(`invalid size/stride ${JSON.stringify(size)} / ${JSON.stringify(stride)}`);
  }
  const item = ITEM_SIZE[dtype];
  const n = numel(size);
  const out = new Uint8Array(n * item);
  if (n === 0) return { dtype, shape: [...size], data: out };
  const storageElems = Math.floor(storage.bytes.byteLength / item);
  let last = offset as number;
  for (let d = 0; d < size.length; d++) last += (size[d]! - 1) * stride[d]!;
  if (last >= storageElems) {
    throw new FileFormatError(file, `tensor view (offset ${offset}, size [${size}], stride [${stride}]) reads element ${last} of a ${storageElems}-element storage ${storage.key}`);
  }
  const src = storage.bytes;
  // Fast path: C-contiguous (strides of size-1 axes do not matter).
  let contiguous = true;
  let expect = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expect) contiguous = false;
    expect *= size[d]!;
  }
  const base = (offset as number) * item;
  if (contiguous) {
    out.set(src.subarray(base, base + n * item));
  } else {
    // General strided copy: odometer over the multi-index.
    const rank = size.length;
    const idx = new Array<number>(rank).fill(0);
    let srcElem = offset as number;
    for (let k = 0; k < n; k++) {
      out.set(src.subarray(srcElem * item, srcElem * item + item), k * item);
      for (let d = rank - 1; d >= 0; d--) {
        idx[d]!++;
        srcElem += stride[d]!;
        if (idx[d]! < size[d]!) break;
        srcElem -= stride[d]! * size[d]!;
        idx[d] = 0;
      }
    }
  }
  return { dtype, shape: [...size], data: out };
}

// ---------------------------------------------------------------------------------------------
// Writing (small protocol-2 pickler for plain values and tensors)

/** Wrap a number to force a Python `float` (plain numbers that are integers are written as `int`). */
export class PyFloat {
  constructor(readonly value: number) {}
}
/** Wrap an array to write a Python `tuple` instead of a `list`. */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

const STORAGE_CLASS: Readonly<Record<DType, string>> = Object.fromEntries(Object.entries(STORAGE_DTYPES).map(([k, v]) => [v, k])) as Record<DType, string>;

/**
 * Serialise `value` as a `torch.save`-compatible zip archive (protocol-2 pickle) that
 * `torch.load` reads. Supported: null, booleans, numbers (safe integers → int, others → float),
 * bigint, strings, arrays (list), {@link PyTuple}, {@link PyFloat}, `Uint8Array` (bytes), plain
 * objects and `Map` (dict), {@link RawTensor} (a CPU tensor with its own storage).
 * Shared references are written once per occurrence; cycles are rejected.
 * @param archiveName  the folder inside the zip (PyTorch uses the file stem)
 */
export function encodeTorchFile(value: unknown, archiveName = 'archive'): Uint8Array {
  const out: number[] = [];
  const storages: Uint8Array[] = [];
  const active = new Set<object>();
  const byte = (...b: number[]) => {
    for (const x of b) out.push(x);
  };
  const u32 = (v: number) => byte(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    byte(0x58); // BINUNICODE
    u32(b.byteLength);
    for (const x of b) out.push(x);
  };
  const global = (module: string, name: string) => {
    byte(0x63);
    for (const c of `${module}\n${name}\n`) out.push(c.charCodeAt(0));
  };
  const int = (v: number | bigint) => {
    if (typeof v === 'number' && v >= 0 && v < 256) byte(0x4b, v);
    else if (typeof v === 'number' && v >= 0 && v < 65536) byte(0x4d, v & 0xff, v >>> 8);
    else if (typeof v === 'number' && v >= -0x80000000 && v <= 0x7fffffff) {
      byte(0x4a);
      u32(v >>> 0);
    } else {
      // LONG1: minimal little-endian two's complement.
      let x = BigInt(v);
      const bytes: number[] = [];
      for (;;) {
        const b = Number(x & 0xffn);
        bytes.push(b);
        x >>= 8n;
        if ((x === 0n && (b & 0x80) === 0) || (x === -1n && (b & 0x80) !== 0)) break;
      }
      byte(0x8a, bytes.length, ...bytes);
    }
  };
  const float = (v: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, false);
    byte(0x47, ...b);
  };
  const tuple = (items: (() => void)[]) => {
    if (items.length === 0) return byte(0x29);
    if (items.length <= 3) {
      for (const f of items) f();
      return byte([0x85, 0x86, 0x87][items.length - 1]!);
    }
    byte(0x28);
    for (const f of items) f();
    byte(0x74);
  };
  const write = (v: unknown): void => {
    if (v === null || v === undefined) return byte(0x4e);
    if (v === true) return byte(0x88);
    if (v === false) return byte(0x89);
    if (typeof v === 'number') return Number.isSafeInteger(v) && !Object.is(v, -0) ? int(v) : float(v);
    if (typeof v === 'bigint') return int(v);
    if (typeof v === 'string') return str(v);
    if (v instanceof PyFloat) return float(v.value);
    if (typeof v !== 'object') throw new TypeError(`cannot pickle a ${typeof v}`);
    if (active.has(v)) throw new TypeError('cannot pickle a cyclic structure');
    active.add(v);
    try {
      if (v instanceof PyTuple) return tuple(v.items.map((x) => () => write(x)));
      if (isRawTensor(v)) return writeTensor(v);
      if (v instanceof Uint8Array) {
        global('_codecs', 'encode');
        let text = '';
        for (const b of v) text += String.fromCharCode(b);
        tuple([() => str(text), () => str('latin1')]);
        return byte(0x52);
      }
      if (Array.isArray(v)) {
        byte(0x5d);
        for (let i = 0; i < v.length; i += 1000) {
          byte(0x28);
          for (const x of v.slice(i, i + 1000)) write(x);
          byte(0x65);
        }
        return;
      }
      const entries: [unknown, unknown][] = v instanceof Map ? [...v.entries()] : Object.prototype.toString.call(v) === '[object Object]' ? Object.entries(v) : [];
      if (!(v instanceof Map) && Object.prototype.toString.call(v) !== '[object Object]') throw new TypeError(`cannot pickle ${v.constructor?.name ?? 'object'}`);
      byte(0x7d);
      for (let i = 0; i < entries.length; i += 1000) {
        byte(0x28);
        for (const [k, x] of entries.slice(i, i + 1000)) {
          write(k);
          write(x);
        }
        byte(0x75);
      }
    } finally {
      active.delete(v);
    }
  };
  const writeTensor = (t: RawTensor) => {
    const n = numel(t.shape);
    if (t.data.byteLength !== n * ITEM_SIZE[t.dtype]) throw new RangeError(`tensor data has ${t.data.byteLength} bytes, expected ${n * ITEM_SIZE[t.dtype]}`);
    const key = String(storages.length);
    storages.push(t.data);
    const strides: number[] = new Array(t.shape.length);
    let s = 1;
    for (let d = t.shape.length - 1; d >= 0; d--) {
      strides[d] = s;
      s *= t.shape[d]!;
    }
    global('torch._utils', '_rebuild_tensor_v2');
    byte(0x28); // MARK (args tuple)
    tuple([() => str('storage'), () => global('torch', STORAGE_CLASS[t.dtype]), () => str(key), () => str('cpu'), () => int(n)]);
    byte(0x51); // BINPERSID
    int(0);
    tuple(t.shape.map((x) => () => int(x)));
    tuple(strides.map((x) => () => int(x)));
    byte(0x89); // requires_grad = False
    global('collections', 'OrderedDict');
    byte(0x29, 0x52); // OrderedDict() for backward_hooks
    byte(0x74, 0x52); // TUPLE, REDUCE
  };
  byte(0x80, 2);
  write(value);
  byte(0x2e);
  const files: Zippable = {};
  files[`${archiveName}/data.pkl`] = [new Uint8Array(out), { level: 0 }];
  files[`${archiveName}/byteorder`] = [new TextEncoder().encode('little'), { level: 0 }];
  storages.forEach((data, i) => {
    files[`${archiveName}/data/${i}`] = [data, { level: 0 }];
  });
  files[`${archiveName}/version`] = [new TextEncoder().encode('3\n'), { level: 0 }];
  return zipSync(files);
}

/** Write {@link encodeTorchFile}'s archive atomically; the archive folder is the file stem (like PyTorch). */
export function writeTorchFile(path: string, value: unknown): void {
  const stem = nodePath.basename(path).replace(/\.[^.]*$/, '') || 'archive';
  writeFileAtomic(path, encodeTorchFile(value, stem.replace(/[^A-Za-z0-9_.-]/g, '_')));
}
