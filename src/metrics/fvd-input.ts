/**
 * Pixel-level preparation of videos for the I3D feature extractor of FVD/KVD that needs no tensor
 * engine (REFERENCE_SPEC §8.2 steps 2–5): the reference's float32 uint8 round trip and TF1's
 * legacy bilinear resize to 224 × 224. The I3D network itself runs on the engine.
 */
import { OptionError } from '../util/errors.ts';

const f = Math.fround;

/**
 * The reference's `u8 → [-1, 1] → u8` round trip in float32 with truncation (REFERENCE_SPEC §8.2
 * step 4, faithful): `x = −1 + (2·u)/255`, then `trunc((x + 1)·255/2)`. It lowers 63 of the 256
 * levels by one (e.g. 1…20 all map to one less).
 */
export function fvdRoundTripU8(u: number): number {
  const x = f(-1 + f(f(2 * u) / 255));
  return Math.trunc(f(f(f(x + 1) * 255) / 2));
}

/** {@link fvdRoundTripU8} for all 256 levels, as a lookup table. */
export const FVD_ROUND_TRIP_TABLE: Uint8Array = Uint8Array.from({ length: 256 }, (_, u) => fvdRoundTripU8(u));

/**
 * Bilinear resize of one channel-last image with TF1 `tf.image.resize_bilinear` semantics
 * (`align_corners = False`, no half-pixel centres): source coordinate `in = out · (inSize/outSize)`
 * (float32), `lower = floor(in)`, `upper = min(ceil(in), inSize − 1)`, `lerp = in − lower`,
 * interpolated horizontally then vertically in float32. REFERENCE_SPEC §8.2 step 5.
 *
 * Shape: `src` is `[H, W, C]`; returns `[outH, outW, C]` float32 (values in the input's range).
 */
export function resizeBilinearTF1(src: ArrayLike<number>, H: number, W: number, C: number, outH = 224, outW = 224): Float32Array {
  if (src.length !== H * W * C) throw new OptionError('src.length', `H·W·C = ${H * W * C}`, src.length);
  if (!(outH > 0 && outW > 0)) throw new OptionError('output size', 'positive', [outH, outW]);
  const weights = (inSize: number, outSize: number) => {
    const scale = f(inSize / outSize);
    const lower = new Int32Array(outSize);
    const upper = new Int32Array(outSize);
    const lerp = new Float32Array(outSize);
    for (let o = 0; o < outSize; o++) {
      const pos = f(o * scale);
      const fl = Math.floor(pos);
      lower[o] = Math.max(fl, 0);
      upper[o] = Math.min(Math.ceil(pos), inSize - 1);
      lerp[o] = f(pos - fl);
    }
    return { lower, upper, lerp };
  };
  const ys = weights(H, outH);
  const xs = weights(W, outW);
  const out = new Float32Array(outH * outW * C);
  for (let oy = 0; oy < outH; oy++) {
    const r0 = ys.lower[oy]! * W;
    const r1 = ys.upper[oy]! * W;
    const ly = ys.lerp[oy]!;
    for (let ox = 0; ox < outW; ox++) {
      const c0 = xs.lower[ox]!;
      const c1 = xs.upper[ox]!;
      const lx = xs.lerp[ox]!;
      for (let c = 0; c < C; c++) {
        const tl = f(src[(r0 + c0) * C + c]!);
        const tr = f(src[(r0 + c1) * C + c]!);
        const bl = f(src[(r1 + c0) * C + c]!);
        const br = f(src[(r1 + c1) * C + c]!);
        const top = f(tl + f(f(tr - tl) * lx));
        const bottom = f(bl + f(f(br - bl) * lx));
        out[(oy * outW + ox) * C + c] = f(top + f(f(bottom - top) * ly));
      }
    }
  }
  return out;
}
