/**
 * A minimal GIF decoder: enough to check what {@link writeGif} wrote (frame count, size, timing,
 * pixels) and to read run videos back when building `summary.gif` (REFERENCE_SPEC §8.6 reads the
 * frame count and frame rate from the first GIF).
 *
 * Supports GIF87a/89a, global and local colour tables, interlacing, transparency and disposal
 * methods 0–3. Frames are returned fully composited as `H × W × 3` RGB bytes; the canvas starts
 * black.
 */
import * as fs from 'node:fs';
import { FileFormatError } from '../util/errors.ts';

/** Container-level facts about a GIF. */
export interface GifInfo {
  width: number;
  height: number;
  frameCount: number;
  /** Per-frame delay in milliseconds (GIF stores 1/100 s). */
  delaysMs: number[];
  /** NETSCAPE loop count: 0 = forever, n = n extra plays; `null` when the block is absent (play once). */
  loopCount: number | null;
}

/** A decoded GIF: {@link GifInfo} plus every frame as `[height, width, 3]` RGB bytes. */
export interface DecodedGif extends GifInfo {
  frames: Uint8Array[];
}

/** Sequential little-endian reader with bounds checks. */
class ByteReader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    readonly file: string,
  ) {}
  need(n: number): void {
    if (this.pos + n > this.buf.length) throw new FileFormatError(this.file, `truncated GIF at byte ${this.pos}`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf[this.pos]! | (this.buf[this.pos + 1]! << 8);
    this.pos += 2;
    return v;
  }
  bytes(n: number): Uint8Array {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  /** Concatenate a chain of data sub-blocks (each length-prefixed, 0-terminated). */
  subBlocks(): Uint8Array {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const n = this.u8();
      if (n === 0) break;
      const b = this.bytes(n);
      parts.push(b);
      total += n;
    }
    const out = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  }
}

/**
 * Decode GIF LZW data into `count` colour indices (variable code width, LSB-first bit packing,
 * clear and end-of-information codes, 4096-entry dictionary). Missing pixels are left 0.
 */
export function lzwDecode(data: Uint8Array, minCodeSize: number, count: number, file = '<gif>'): Uint8Array {
  if (minCodeSize < 1 || minCodeSize > 11) throw new FileFormatError(file, `bad LZW minimum code size ${minCodeSize}`);
  const out = new Uint8Array(count);
  const prefix = new Int16Array(4096);
  const suffix = new Uint8Array(4096);
  const first = new Uint8Array(4096);
  const length = new Uint16Array(4096);
  const clear = 1 << minCodeSize;
  const eoi = clear + 1;
  for (let c = 0; c < clear; c++) {
    prefix[c] = -1;
    suffix[c] = c;
    first[c] = c;
    length[c] = 1;
  }
  let codeSize = minCodeSize + 1;
  let next = eoi + 1;
  let prev = -1;
  let o = 0;
  let bitBuf = 0;
  let bitCount = 0;
  let pos = 0;

  /** Write the string of `code` at `o` (walking the prefix chain backwards). */
  const emit = (code: number) => {
    const len = length[code]!;
    let p = o + len - 1;
    let c = code;
    while (c >= 0) {
      if (p < count) out[p] = suffix[c]!;
      p--;
      c = prefix[c]!;
    }
    o += len;
  };

  while (o < count) {
    while (bitCount < codeSize && pos < data.length) {
      bitBuf |= data[pos++]! << bitCount;
      bitCount += 8;
    }
    if (bitCount < codeSize) break; // data exhausted
    const code = bitBuf & ((1 << codeSize) - 1);
    bitBuf >>>= codeSize;
    bitCount -= codeSize;

    if (code === clear) {
      codeSize = minCodeSize + 1;
      next = eoi + 1;
      prev = -1;
      continue;
    }
    if (code === eoi) break;
    if (prev === -1) {
      if (code >= clear) throw new FileFormatError(file, `bad first LZW code ${code}`);
      emit(code);
      prev = code;
      continue;
    }
    if (code > next) throw new FileFormatError(file, `LZW code ${code} beyond dictionary size ${next}`);
    if (next < 4096) {
      // New entry = string(prev) + first char of string(code); for code === next that char is first(prev).
      prefix[next] = prev;
      suffix[next] = code === next ? first[prev]! : first[code]!;
      first[next] = first[prev]!;
      length[next] = length[prev]! + 1;
      next++;
      if (next === 1 << codeSize && codeSize < 12) codeSize++;
    } else if (code === next) {
      throw new FileFormatError(file, 'LZW code refers to a full dictionary');
    }
    emit(code);
    prev = code;
  }
  return out;
}

/** Row order of an interlaced image: passes starting at rows 0, 4, 2, 1 with steps 8, 8, 4, 2. */
function interlacedRows(h: number): number[] {
  const rows: number[] = [];
  for (const [start, step] of [
    [0, 8],
    [4, 8],
    [2, 4],
    [1, 2],
  ] as const) {
    for (let y = start; y < h; y += step) rows.push(y);
  }
  return rows;
}

function readColorTable(r: ByteReader, sizeBits: number): Uint8Array {
  return r.bytes(3 * (1 << (sizeBits + 1))).slice();
}

/**
 * Parse (and, when `decodePixels`, decode) a GIF. Throws {@link FileFormatError} naming `file`
 * on malformed input.
 */
function parseGif(buf: Uint8Array, file: string, decodePixels: boolean): DecodedGif {
  const r = new ByteReader(buf, file);
  const sig = String.fromCharCode(...r.bytes(6));
  if (sig !== 'GIF87a' && sig !== 'GIF89a') throw new FileFormatError(file, 'not a GIF (bad signature)');
  const width = r.u16();
  const height = r.u16();
  const packed = r.u8();
  r.u8(); // background colour index (the canvas starts black instead)
  r.u8(); // pixel aspect ratio
  const globalTable = packed & 0x80 ? readColorTable(r, packed & 7) : null;

  const frames: Uint8Array[] = [];
  const delaysMs: number[] = [];
  let loopCount: number | null = null;
  let canvas: Uint8Array = new Uint8Array(width * height * 3);
  // Graphic control state for the next image.
  let gce = { delay: 0, transparent: -1, disposal: 0 };
  let pendingDisposal: { disposal: number; x: number; y: number; w: number; h: number; saved: Uint8Array | null } | null = null;

  for (;;) {
    const block = r.u8();
    if (block === 0x3b) break; // trailer
    if (block === 0x21) {
      const label = r.u8();
      const body = r.subBlocks();
      if (label === 0xf9 && body.length >= 4) {
        const p = body[0]!;
        gce = { disposal: (p >> 2) & 7, delay: (body[1]! | (body[2]! << 8)) * 10, transparent: p & 1 ? body[3]! : -1 };
      } else if (label === 0xff && body.length >= 14) {
        const id = String.fromCharCode(...body.subarray(0, 11));
        if ((id === 'NETSCAPE2.0' || id === 'ANIMEXTS1.0') && body[11] === 1) loopCount = body[12]! | (body[13]! << 8);
      }
      continue;
    }
    if (block !== 0x2c) throw new FileFormatError(file, `unknown GIF block 0x${block.toString(16)} at byte ${r.pos - 1}`);

    const x0 = r.u16();
    const y0 = r.u16();
    const w = r.u16();
    const h = r.u16();
    const ip = r.u8();
    const table = ip & 0x80 ? readColorTable(r, ip & 7) : globalTable;
    const interlaced = (ip & 0x40) !== 0;
    const minCodeSize = r.u8();
    const data = r.subBlocks();
    delaysMs.push(gce.delay);

    if (decodePixels) {
      if (!table) throw new FileFormatError(file, `frame ${frames.length} has no colour table`);
      // Apply the previous frame's disposal before drawing this one.
      if (pendingDisposal) {
        const d = pendingDisposal;
        if (d.disposal === 2) {
          for (let yy = d.y; yy < Math.min(height, d.y + d.h); yy++) canvas.fill(0, (yy * width + d.x) * 3, (yy * width + Math.min(width, d.x + d.w)) * 3);
        } else if (d.disposal === 3 && d.saved) {
          canvas = d.saved;
        }
      }
      const saved = gce.disposal === 3 ? canvas.slice() : null;
      const idx = lzwDecode(data, minCodeSize, w * h, file);
      const rows = interlaced ? interlacedRows(h) : null;
      for (let j = 0; j < h; j++) {
        const y = y0 + (rows ? rows[j]! : j);
        if (y >= height) continue;
        for (let i = 0; i < w; i++) {
          const x = x0 + i;
          if (x >= width) continue;
          const k = idx[j * w + i]!;
          if (k === gce.transparent) continue;
          const o = (y * width + x) * 3;
          canvas[o] = table[3 * k] ?? 0;
          canvas[o + 1] = table[3 * k + 1] ?? 0;
          canvas[o + 2] = table[3 * k + 2] ?? 0;
        }
      }
      frames.push(canvas.slice());
      pendingDisposal = { disposal: gce.disposal, x: x0, y: y0, w, h, saved };
    }
    gce = { delay: 0, transparent: -1, disposal: 0 };
  }
  return { width, height, frameCount: delaysMs.length, delaysMs, loopCount, frames };
}

/** Decode GIF bytes completely. */
export function decodeGif(bytes: Uint8Array, file = '<gif>'): DecodedGif {
  return parseGif(bytes, file, true);
}

/** Read a GIF file's size, frame count, delays and loop count (pixels are not decoded). */
export function readGifInfo(path: string): GifInfo {
  const { frames: _frames, ...info } = parseGif(fs.readFileSync(path), path, false);
  return info;
}

/** Read and decode a GIF file. */
export function readGif(path: string): DecodedGif {
  return parseGif(fs.readFileSync(path), path, true);
}

/**
 * Frame rate implied by a GIF's first frame delay; `fallback` (default 5, as `collect_results.py`,
 * REFERENCE_SPEC §8.6) when the delay is missing or zero.
 */
export function gifFrameRate(info: GifInfo, fallback = 5): number {
  const d = info.delaysMs[0] ?? 0;
  return d > 0 ? 1000 / d : fallback;
}
