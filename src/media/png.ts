/**
 * PNG still images: a writer for 8-bit RGB (truecolour) images — single frames, grids and metric
 * plots (REFERENCE_SPEC §6.10 `plots/default/plot.png`) — and a small reader used by tests and for
 * loading 8-bit non-interlaced PNGs (grey, grey+alpha, RGB, RGBA, palette).
 *
 * Deflate comes from `node:zlib`; the chunk CRC-32 is computed here.
 */
import * as fs from 'node:fs';
import { deflateSync, inflateSync } from 'node:zlib';
import { FileFormatError, OptionError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';

const SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

/** CRC-32 table for the reflected polynomial 0xEDB88320 (ISO 3309 / PNG Annex D). */
const CRC_TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of `bytes` (optionally continuing from a previous `crc`). `crc32("123456789") = 0xCBF43926`. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * Encode an RGB image as PNG bytes. Shape: `rgb` is `[height, width, 3]` uint8, row-major.
 * Rows use filter type 1 (Sub), which compresses flat-colour images well.
 */
export function encodePng(rgb: Uint8Array, width: number, height: number): Uint8Array {
  if (!Number.isInteger(width) || width < 1) throw new OptionError('width', 'a positive integer', width);
  if (!Number.isInteger(height) || height < 1) throw new OptionError('height', 'a positive integer', height);
  if (rgb.length !== width * height * 3) throw new OptionError('rgb.length', `width·height·3 = ${width * height * 3}`, rgb.length);
  const stride = width * 3;
  const raw = new Uint8Array(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    const o = y * (stride + 1);
    raw[o] = 1; // Sub: each byte minus the byte one pixel to the left
    const row = y * stride;
    for (let i = 0; i < stride; i++) raw[o + 1 + i] = (rgb[row + i]! - (i >= 3 ? rgb[row + i - 3]! : 0)) & 0xff;
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour
  // compression 0, filter method 0, interlace 0
  const parts = [SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw)), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Write an RGB image (`[height, width, 3]` uint8) as a PNG file, atomically. */
export function writePng(path: string, rgb: Uint8Array, width: number, height: number): void {
  writeFileAtomic(path, encodePng(rgb, width, height));
}

/** A decoded image, converted to RGB (alpha is dropped). */
export interface DecodedPng {
  width: number;
  height: number;
  /** `[height, width, 3]` uint8. */
  rgb: Uint8Array;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/**
 * Decode an 8-bit, non-interlaced PNG (colour types 0, 2, 3, 4, 6) to RGB. CRCs are verified.
 * Other variants throw {@link FileFormatError}.
 */
export function decodePng(buf: Uint8Array, file = '<png>'): DecodedPng {
  for (let i = 0; i < 8; i++) if (buf[i] !== SIGNATURE[i]) throw new FileFormatError(file, 'not a PNG (bad signature)');
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 8;
  let width = 0;
  let height = 0;
  let colorType = -1;
  let palette: Uint8Array | null = null;
  const idat: Uint8Array[] = [];
  while (pos + 12 <= buf.length) {
    const len = dv.getUint32(pos);
    const type = String.fromCharCode(...buf.subarray(pos + 4, pos + 8));
    if (pos + 12 + len > buf.length) throw new FileFormatError(file, `truncated ${type} chunk`);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (crc32(buf.subarray(pos + 4, pos + 8 + len)) !== dv.getUint32(pos + 8 + len)) throw new FileFormatError(file, `CRC mismatch in ${type} chunk`);
    pos += 12 + len;
    if (type === 'IHDR') {
      const hv = new DataView(data.buffer, data.byteOffset, data.byteLength);
      width = hv.getUint32(0);
      height = hv.getUint32(4);
      const [depth, ct, , , interlace] = data.subarray(8, 13);
      if (depth !== 8) throw new FileFormatError(file, `unsupported bit depth ${depth}`);
      if (interlace !== 0) throw new FileFormatError(file, 'interlaced PNGs are not supported');
      colorType = ct!;
    } else if (type === 'PLTE') palette = data.slice();
    else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
  }
  const channels = ({ 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 } as Record<number, number>)[colorType];
  if (!channels) throw new FileFormatError(file, `unsupported colour type ${colorType}`);
  if (colorType === 3 && !palette) throw new FileFormatError(file, 'palette image without PLTE');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new FileFormatError(file, 'image data too short');
  const px = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]!;
    const src = y * (stride + 1) + 1;
    const o = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? px[o + i - channels]! : 0;
      const b = y > 0 ? px[o - stride + i]! : 0;
      const c = y > 0 && i >= channels ? px[o - stride + i - channels]! : 0;
      const x = raw[src + i]!;
      let v: number;
      if (f === 0) v = x;
      else if (f === 1) v = x + a;
      else if (f === 2) v = x + b;
      else if (f === 3) v = x + ((a + b) >> 1);
      else if (f === 4) v = x + paeth(a, b, c);
      else throw new FileFormatError(file, `bad filter type ${f} on row ${y}`);
      px[o + i] = v & 0xff;
    }
  }
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0; p < width * height; p++) {
    const s = p * channels;
    if (colorType === 3) {
      const k = px[s]! * 3;
      rgb[3 * p] = palette![k] ?? 0;
      rgb[3 * p + 1] = palette![k + 1] ?? 0;
      rgb[3 * p + 2] = palette![k + 2] ?? 0;
    } else if (channels <= 2) {
      rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = px[s]!;
    } else {
      rgb[3 * p] = px[s]!;
      rgb[3 * p + 1] = px[s + 1]!;
      rgb[3 * p + 2] = px[s + 2]!;
    }
  }
  return { width, height, rgb };
}

/** Read and decode a PNG file with {@link decodePng}. */
export function readPng(path: string): DecodedPng {
  return decodePng(fs.readFileSync(path), path);
}
