/**
 * A small built-in 5×7 bitmap font for printable ASCII (0x20–0x7E), used to draw run nicknames
 * onto summary videos (REFERENCE_SPEC §8.6: "the nickname in black (default bitmap font)").
 *
 * The glyphs are drawn for this project (they do not copy any existing font). Each glyph is seven
 * rows, top to bottom; each row is a 5-bit number whose bit 4 (0x10) is the leftmost column.
 * Characters outside the table are drawn as `?`.
 */

/** Glyph width in pixels. */
export const GLYPH_WIDTH = 5;
/** Glyph height in pixels. */
export const GLYPH_HEIGHT = 7;
/** Horizontal advance per character (glyph plus one blank column). */
export const GLYPH_ADVANCE = 6;

/** Rows of each glyph as 14 hex digits (7 rows × 2 digits), indexed by `code − 0x20`. */
const GLYPHS: readonly string[] = [
  '00000000000000', // ' '
  '04040404040004', // !
  '0a0a0a00000000', // "
  '0a0a1f0a1f0a0a', // #
  '040f140e051e04', // $
  '18190204081303', // %
  '0c12140815120d', // &
  '0c040800000000', // '
  '02040808080402', // (
  '08040202020408', // )
  '0004150e150400', // *
  '0004041f040400', // +
  '000000000c0408', // ,
  '0000001f000000', // -
  '00000000000c0c', // .
  '00010204081000', // /
  '0e11131519110e', // 0
  '040c040404040e', // 1
  '0e11010204081f', // 2
  '1f02040201110e', // 3
  '02060a121f0202', // 4
  '1f101e0101110e', // 5
  '0608101e11110e', // 6
  '1f010204080808', // 7
  '0e11110e11110e', // 8
  '0e11110f01020c', // 9
  '000c0c000c0c00', // :
  '000c0c000c0408', // ;
  '02040810080402', // <
  '00001f001f0000', // =
  '08040201020408', // >
  '0e110102040004', // ?
  '0e11010d15150e', // @
  '0e1111111f1111', // A
  '1e11111e11111e', // B
  '0e11101010110e', // C
  '1c12111111121c', // D
  '1f10101e10101f', // E
  '1f10101e101010', // F
  '0e11101711110f', // G
  '1111111f111111', // H
  '0e04040404040e', // I
  '0702020202120c', // J
  '11121418141211', // K
  '1010101010101f', // L
  '111b1515111111', // M
  '11111915131111', // N
  '0e11111111110e', // O
  '1e11111e101010', // P
  '0e11111115120d', // Q
  '1e11111e141211', // R
  '0f10100e01011e', // S
  '1f040404040404', // T
  '1111111111110e', // U
  '11111111110a04', // V
  '1111111515150a', // W
  '11110a040a1111', // X
  '1111110a040404', // Y
  '1f01020408101f', // Z
  '0e08080808080e', // [
  '00100804020100', // backslash
  '0e02020202020e', // ]
  '040a1100000000', // ^
  '0000000000001f', // _
  '08040200000000', // `
  '00000e010f110f', // a
  '1010161911111e', // b
  '00000e1010110e', // c
  '01010d1311110f', // d
  '00000e111f100e', // e
  '0609081c080808', // f
  '000f11110f010e', // g
  '10101619111111', // h
  '04000c0404040e', // i
  '0200060202120c', // j
  '10101214181412', // k
  '0c04040404040e', // l
  '00001a15151111', // m
  '00001619111111', // n
  '00000e1111110e', // o
  '00001e111e1010', // p
  '00000d130f0101', // q
  '00001619101010', // r
  '00000e100e011e', // s
  '08081c08080906', // t
  '0000111111130d', // u
  '00001111110a04', // v
  '0000111115150a', // w
  '0000110a040a11', // x
  '000011110f010e', // y
  '00001f0204081f', // z
  '02040408040402', // {
  '04040404040404', // |
  '08040402040408', // }
  '00000815020000', // ~
];

/** Decoded glyph rows, `GLYPH_ROWS[code − 0x20][row]`. */
const GLYPH_ROWS: readonly Uint8Array[] = GLYPHS.map((hex, i) => {
  if (hex.length !== 2 * GLYPH_HEIGHT) throw new Error(`font5x7: bad glyph ${i}`);
  const rows = new Uint8Array(GLYPH_HEIGHT);
  for (let r = 0; r < GLYPH_HEIGHT; r++) rows[r] = parseInt(hex.slice(2 * r, 2 * r + 2), 16);
  return rows;
});

/** The seven row bitmasks of `ch` (first UTF-16 unit); unknown characters map to `?`. */
export function glyphRows(ch: string): Uint8Array {
  const code = ch.charCodeAt(0);
  const idx = code >= 0x20 && code <= 0x7e ? code - 0x20 : 0x3f - 0x20;
  return GLYPH_ROWS[idx]!;
}

/** Width in pixels of `text` drawn with {@link drawText} (no trailing blank column). */
export function textWidth(text: string): number {
  return text.length === 0 ? 0 : text.length * GLYPH_ADVANCE - 1;
}

/**
 * Draw `text` into one RGB frame (`H × W × 3`, row-major) with its top-left corner at column
 * `x`, row `y`. Pixels outside the frame are clipped. Newlines are not interpreted.
 */
export function drawText(
  frame: Uint8Array,
  width: number,
  height: number,
  x: number,
  y: number,
  text: string,
  color: readonly [number, number, number] = [0, 0, 0],
): void {
  for (let c = 0; c < text.length; c++) {
    const rows = glyphRows(text[c]!);
    const gx = x + c * GLYPH_ADVANCE;
    for (let r = 0; r < GLYPH_HEIGHT; r++) {
      const py = y + r;
      if (py < 0 || py >= height) continue;
      const bits = rows[r]!;
      for (let b = 0; b < GLYPH_WIDTH; b++) {
        if (((bits >> (GLYPH_WIDTH - 1 - b)) & 1) === 0) continue;
        const px = gx + b;
        if (px < 0 || px >= width) continue;
        const o = (py * width + px) * 3;
        frame[o] = color[0];
        frame[o + 1] = color[1];
        frame[o + 2] = color[2];
      }
    }
  }
}
