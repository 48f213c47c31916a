/**
 * A restricted Python-pickle virtual machine (protocols 2–5, binary opcodes only).
 *
 * It executes the pickle instruction stream but never imports anything: every `GLOBAL` /
 * `STACK_GLOBAL` is resolved through a caller-supplied allow-list ({@link UnpickleOptions.findGlobal}),
 * and persistent ids (PyTorch's tensor storages) through {@link UnpickleOptions.persistentLoad}.
 * Anything else is rejected with a FileFormatError naming the offending global or opcode.
 *
 * The VM produces an intermediate Python-like value graph ({@link PyDict}, arrays for lists and
 * tuples, `Set`, strings, numbers/bigints, `Uint8Array` for bytes, …); {@link toJs} turns it
 * into plain JavaScript (objects or Maps for dicts).
 */
import { FileFormatError } from '../util/errors.ts';

/** A Python dict (insertion-ordered, any hashable key). `attrs` holds instance attributes set by BUILD. */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  attrs: Record<string, unknown> | undefined;
}

/** A generic Python object built by NEWOBJ and filled by BUILD (e.g. `argparse.Namespace`). */
export class PyObject {
  constructor(
    readonly className: string,
    readonly attrs: Record<string, unknown> = {},
  ) {}
}

/**
 * An allowed global. `call` implements REDUCE (`global(*args)`), `newobj` implements NEWOBJ
 * (`cls.__new__(cls, *args)`); a global with neither can only be passed around as a value
 * (e.g. a storage class used as a marker).
 */
export interface PyGlobal {
  readonly module: string;
  readonly name: string;
  call?(args: unknown[]): unknown;
  newobj?(args: unknown[]): unknown;
}

/** Objects that accept BUILD (`__setstate__`). Values without it get the default rule. */
export interface PyBuildable {
  setState(state: unknown): void;
}

export interface UnpickleOptions {
  /** File name used in error messages. */
  file: string;
  /** Resolve `module.name`; return undefined to reject (the VM then throws a clear error). */
  findGlobal(module: string, name: string): PyGlobal | undefined;
  /** Resolve a persistent id (BINPERSID); absent → persistent ids are rejected. */
  persistentLoad?(pid: unknown): unknown;
}

/** Opcodes (Python's `pickle.py` names). */
const OP = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  BINFLOAT: 0x47, // G
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  BINPERSID: 0x51, // Q
  REDUCE: 0x52, // R
  BINSTRING: 0x54, // T
  SHORT_BINSTRING: 0x55, // U
  BINUNICODE: 0x58, // X
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  DICT: 0x64, // d
  APPENDS: 0x65, // e
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  SETITEMS: 0x75, // u
  EMPTY_DICT: 0x7d, // }
  EMPTY_LIST: 0x5d, // ]
  EMPTY_TUPLE: 0x29, // )
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  BINBYTES: 0x42, // B
  SHORT_BINBYTES: 0x43, // C
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
} as const;

const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(OP).map(([k, v]) => [v, k]));

const utf8 = new TextDecoder('utf-8', { fatal: true });
const latin1 = new TextDecoder('latin1');

/**
 * Run the pickle program in `bytes` and return the value left by STOP (Python-like graph;
 * convert with {@link toJs}). Throws FileFormatError for malformed input, unsupported opcodes
 * and globals outside the allow-list.
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): unknown {
  const { file } = options;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (detail: string): never => {
    throw new FileFormatError(file, `pickle: ${detail}`);
  };
  const need = (n: number): void => {
    if (pos + n > bytes.byteLength) fail(`truncated data (needed ${n} bytes at offset ${pos}, have ${bytes.byteLength - pos})`);
  };
  const u8 = (): number => {
    need(1);
    return bytes[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4);
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`length ${v} too large`);
    return Number(v);
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated text line in GLOBAL');
    const s = latin1.decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const decodeUtf8 = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail(`invalid UTF-8 string at offset ${pos - b.byteLength}`);
    }
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail(`stack underflow at offset ${pos - 1}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail(`stack underflow at offset ${pos - 1}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) fail(`no MARK for the collection opcode at offset ${pos - 1}`);
    stack = prev!;
    return items;
  };
  const resolve = (module: string, name: string): PyGlobal => {
    const g = options.findGlobal(module, name);
    if (!g) fail(`refusing to load global '${module}.${name}' (not in the allow-list of safe contents)`);
    return g!;
  };
  const setItem = (target: unknown, key: unknown, value: unknown): void => {
    if (!(target instanceof PyDict)) fail(`SETITEM(S) on a non-dict (${describe(target)})`);
    (target as PyDict).map.set(key, value);
  };
  const append = (target: unknown, items: unknown[]): void => {
    if (!Array.isArray(target)) fail(`APPEND(S) on a non-list (${describe(target)})`);
    for (const it of items) (target as unknown[]).push(it);
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case OP.PROTO: {
        const p = u8();
        if (p > 5) fail(`unsupported pickle protocol ${p}`);
        break;
      }
      case OP.FRAME:
        u64(); // framing is advisory; the data follow inline
        break;
      case OP.STOP: {
        const v = pop();
        if (stack.length !== 0 || metastack.length !== 0) fail('STOP with values left on the stack');
        return v;
      }
      case OP.MARK:
        metastack.push(stack); // like pickle.py: the current stack is set aside until the matching pop_mark
        stack = [];
        break;
      case OP.POP:
        if (stack.length > 0) stack.pop();
        else popMark();
        break;
      case OP.POP_MARK:
        popMark();
        break;
      case OP.DUP:
        stack.push(top());
        break;
      // --- constants
      case OP.NONE:
        stack.push(null);
        break;
      case OP.NEWTRUE:
        stack.push(true);
        break;
      case OP.NEWFALSE:
        stack.push(false);
        break;
      case OP.BININT: {
        need(4);
        stack.push(view.getInt32(pos, true));
        pos += 4;
        break;
      }
      case OP.BININT1:
        stack.push(u8());
        break;
      case OP.BININT2:
        stack.push(u16());
        break;
      case OP.LONG1:
        stack.push(decodeLong(take(u8())));
        break;
      case OP.LONG4: {
        need(4);
        const n = view.getInt32(pos, true);
        pos += 4;
        if (n < 0) fail('LONG4 with a negative length');
        stack.push(decodeLong(take(n)));
        break;
      }
      case OP.BINFLOAT: {
        need(8);
        stack.push(view.getFloat64(pos, false)); // big-endian in pickles
        pos += 8;
        break;
      }
      // --- strings and bytes
      case OP.BINUNICODE:
        stack.push(decodeUtf8(take(u32())));
        break;
      case OP.SHORT_BINUNICODE:
        stack.push(decodeUtf8(take(u8())));
        break;
      case OP.BINUNICODE8:
        stack.push(decodeUtf8(take(u64())));
        break;
      case OP.BINSTRING: {
        need(4);
        const n = view.getInt32(pos, true);
        pos += 4;
        if (n < 0) fail('BINSTRING with a negative length');
        stack.push(latin1.decode(take(n))); // Python 2 str: decoded like pickle's encoding='latin1'
        break;
      }
      case OP.SHORT_BINSTRING:
        stack.push(latin1.decode(take(u8())));
        break;
      case OP.BINBYTES:
        stack.push(new Uint8Array(take(u32()))); // a plain copy (never a Buffer view)
        break;
      case OP.SHORT_BINBYTES:
        stack.push(new Uint8Array(take(u8())));
        break;
      case OP.BINBYTES8:
      case OP.BYTEARRAY8:
        stack.push(new Uint8Array(take(u64())));
        break;
      // --- containers
      case OP.EMPTY_DICT:
        stack.push(new PyDict());
        break;
      case OP.EMPTY_LIST:
        stack.push([]);
        break;
      case OP.EMPTY_TUPLE:
        stack.push([]);
        break;
      case OP.EMPTY_SET:
        stack.push(new Set());
        break;
      case OP.TUPLE:
      case OP.LIST: {
        const items = popMark(); // (not `stack.push(popMark())`: popMark replaces `stack`)
        stack.push(items);
        break;
      }
      case OP.TUPLE1:
        stack.push([pop()]);
        break;
      case OP.TUPLE2: {
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      }
      case OP.TUPLE3: {
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      }
      case OP.DICT: {
        const items = popMark();
        if (items.length % 2 !== 0) fail('DICT with an odd number of items');
        const d = new PyDict();
        for (let i = 0; i < items.length; i += 2) d.map.set(items[i], items[i + 1]);
        stack.push(d);
        break;
      }
      case OP.FROZENSET: {
        const items = popMark();
        stack.push(new Set(items));
        break;
      }
      case OP.APPEND: {
        const v = pop();
        append(top(), [v]);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        append(top(), items);
        break;
      }
      case OP.SETITEM: {
        const v = pop();
        const k = pop();
        setItem(top(), k, v);
        break;
      }
      case OP.SETITEMS: {
        const items = popMark();
        if (items.length % 2 !== 0) fail('SETITEMS with an odd number of items');
        const d = top();
        for (let i = 0; i < items.length; i += 2) setItem(d, items[i], items[i + 1]);
        break;
      }
      case OP.ADDITEMS: {
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail('ADDITEMS on a non-set');
        for (const it of items) (s as Set<unknown>).add(it);
        break;
      }
      // --- memo
      case OP.BINPUT:
        memo.set(u8(), top());
        break;
      case OP.LONG_BINPUT:
        memo.set(u32(), top());
        break;
      case OP.MEMOIZE:
        memo.set(memo.size, top());
        break;
      case OP.BINGET:
      case OP.LONG_BINGET: {
        const idx = op === OP.BINGET ? u8() : u32();
        if (!memo.has(idx)) fail(`memo key ${idx} not found`);
        stack.push(memo.get(idx));
        break;
      }
      // --- objects
      case OP.GLOBAL: {
        const module = line();
        const name = line();
        stack.push(resolve(module, name));
        break;
      }
      case OP.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(resolve(module as string, name as string));
        break;
      }
      case OP.REDUCE: {
        const args = pop();
        const fn = pop();
        if (!Array.isArray(args)) fail(`REDUCE arguments are not a tuple (${describe(args)})`);
        if (!isGlobal(fn) || !fn.call) fail(`REDUCE on a non-callable (${describe(fn)})`);
        stack.push(callGlobal(fn as PyGlobal, 'call', args as unknown[], file));
        break;
      }
      case OP.NEWOBJ: {
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args)) fail('NEWOBJ arguments are not a tuple');
        if (!isGlobal(cls) || !cls.newobj) fail(`NEWOBJ on a class that may not be instantiated (${describe(cls)})`);
        stack.push(callGlobal(cls as PyGlobal, 'newobj', args as unknown[], file));
        break;
      }
      case OP.NEWOBJ_EX: {
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!(kwargs instanceof PyDict) || kwargs.map.size !== 0) fail('NEWOBJ_EX with keyword arguments is not supported');
        if (!Array.isArray(args)) fail('NEWOBJ_EX arguments are not a tuple');
        if (!isGlobal(cls) || !cls.newobj) fail(`NEWOBJ_EX on a class that may not be instantiated (${describe(cls)})`);
        stack.push(callGlobal(cls as PyGlobal, 'newobj', args as unknown[], file));
        break;
      }
      case OP.BUILD: {
        const state = pop();
        build(top(), state, fail);
        break;
      }
      case OP.BINPERSID: {
        const pid = pop();
        if (!options.persistentLoad) fail('persistent ids are not allowed here');
        stack.push(options.persistentLoad!(pid));
        break;
      }
      default:
        fail(`unsupported opcode 0x${op.toString(16).padStart(2, '0')}${OP_NAMES[op] ? ` (${OP_NAMES[op]})` : ` ('${String.fromCharCode(op)}')`} at offset ${at}`);
    }
  }
}

function isGlobal(x: unknown): x is PyGlobal {
  return typeof x === 'object' && x !== null && typeof (x as PyGlobal).module === 'string' && typeof (x as PyGlobal).name === 'string' && !(x instanceof PyObject);
}

function callGlobal(g: PyGlobal, how: 'call' | 'newobj', args: unknown[], file: string): unknown {
  try {
    return g[how]!(args);
  } catch (e) {
    if (e instanceof FileFormatError) throw e;
    throw new FileFormatError(file, `pickle: ${g.module}.${g.name}: ${(e as Error).message}`);
  }
}

/** BUILD: `__setstate__` if the object has one, else update its attributes from a dict. */
function build(target: unknown, state: unknown, fail: (d: string) => never): void {
  if (typeof target === 'object' && target !== null && typeof (target as PyBuildable).setState === 'function') {
    (target as PyBuildable).setState(state);
    return;
  }
  // Default object rule: state is a dict, or a (dict, slots-dict) pair.
  let dict = state;
  let slots: unknown = null;
  if (Array.isArray(state) && state.length === 2) [dict, slots] = state;
  const attrs: Record<string, unknown> = {};
  for (const part of [dict, slots]) {
    if (part === null) continue;
    if (!(part instanceof PyDict)) fail(`BUILD state must be a dict (${describe(part)})`);
    for (const [k, v] of (part as PyDict).map) {
      if (typeof k !== 'string') fail('BUILD state keys must be strings');
      defineKey(attrs, k as string, v);
    }
  }
  if (target instanceof PyObject) Object.assign(target.attrs, attrs);
  else if (target instanceof PyDict) target.attrs = { ...(target.attrs ?? {}), ...attrs };
  else fail(`BUILD on an unsupported value (${describe(target)})`);
}

/** Little-endian two's-complement integer → number when safe, else bigint. */
export function decodeLong(b: Uint8Array): number | bigint {
  if (b.byteLength === 0) return 0;
  let v = 0n;
  for (let i = b.byteLength - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.byteLength - 1]! & 0x80) v -= 1n << BigInt(8 * b.byteLength);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Short description of a value for error messages. */
export function describe(x: unknown): string {
  if (x === null) return 'None';
  if (Array.isArray(x)) return `tuple/list of ${x.length}`;
  if (x instanceof PyDict) return 'dict';
  if (x instanceof PyObject) return `${x.className} object`;
  if (isGlobal(x)) return `${x.module}.${x.name}`;
  if (x instanceof Uint8Array) return 'bytes';
  return typeof x;
}

/** Set an own enumerable property (safe for keys such as `__proto__`). */
export function defineKey(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

/**
 * Convert the VM's value graph to plain JavaScript:
 * dict → plain object when every key is a string, else `Map`; PyObject → plain object of its
 * attributes; lists/tuples → arrays; sets → `Set`; everything else unchanged. Shared references
 * stay shared (and cycles are preserved). Dict attributes set by BUILD (e.g. a state_dict's
 * `_metadata`) are dropped. Note: JS objects list integer-like keys ("0", "12") first.
 */
export function toJs(value: unknown, seen = new Map<unknown, unknown>()): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (seen.has(value)) return seen.get(value);
  if (value instanceof PyDict) {
    const allStrings = [...value.map.keys()].every((k) => typeof k === 'string');
    if (allStrings) {
      const out: Record<string, unknown> = {};
      seen.set(value, out);
      for (const [k, v] of value.map) defineKey(out, k as string, toJs(v, seen));
      return out;
    }
    const out = new Map<unknown, unknown>();
    seen.set(value, out);
    for (const [k, v] of value.map) out.set(toJs(k, seen), toJs(v, seen));
    return out;
  }
  if (value instanceof PyObject) {
    const out: Record<string, unknown> = {};
    seen.set(value, out);
    for (const [k, v] of Object.entries(value.attrs)) defineKey(out, k, toJs(v, seen));
    return out;
  }
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    seen.set(value, out);
    for (const v of value) out.push(toJs(v, seen));
    return out;
  }
  if (value instanceof Set) {
    const out = new Set<unknown>();
    seen.set(value, out);
    for (const v of value) out.add(toJs(v, seen));
    return out;
  }
  return value;
}
