/**
 * Picture of a sampling schedule (backs `flexvid sample --just-visualise`, REFERENCE_SPEC §7.3 and
 * the FDM paper's schedule figures): one row per stage, one column per frame, each cell coloured by
 * the frame's role in that stage:
 *
 * | colour      | meaning                                                     |
 * |-------------|-------------------------------------------------------------|
 * | red         | latent — generated in this stage                            |
 * | blue        | observed — conditioned on in this stage                     |
 * | pale green  | given — a ground-truth frame (index < n_obs) not used here  |
 * | light grey  | done — generated in an earlier stage, not used here         |
 * | white       | empty — not generated yet                                   |
 *
 * Stage numbers are drawn on the left and a legend below (5×7 bitmap font of `media/font5x7.ts`).
 * The PNG encoder is `media/png.ts`.
 */
import { drawText, GLYPH_HEIGHT, textWidth } from '../media/font5x7.ts';
import { encodePng } from '../media/png.ts';
import { OptionError } from '../util/errors.ts';
import { writeFileAtomic } from '../util/fs-atomic.ts';
import type { Stage } from './schemes.ts';

/** Role of one frame in one stage. */
export const CellKind = { Empty: 0, Given: 1, Done: 2, Observed: 3, Latent: 4 } as const;
export type CellKind = (typeof CellKind)[keyof typeof CellKind];

type Rgb = readonly [number, number, number];

/** Cell colours by {@link CellKind}. */
export const CELL_COLOURS: readonly Rgb[] = [
  [255, 255, 255], // empty
  [200, 230, 200], // given (ground truth)
  [215, 215, 215], // done
  [38, 110, 200], // observed
  [215, 50, 45], // latent
];

const LEGEND: readonly [CellKind, string][] = [
  [CellKind.Latent, 'latent'],
  [CellKind.Observed, 'observed'],
  [CellKind.Given, 'given'],
  [CellKind.Done, 'done'],
  [CellKind.Empty, 'empty'],
];

const GRID: Rgb = [160, 160, 160];
const TEXT: Rgb = [0, 0, 0];

/** Options of {@link renderSchedulePicture}. */
export interface SchedulePictureOptions {
  /** Video length T (columns). */
  videoLength: number;
  /** Ground-truth observed frames n_obs. */
  numObs: number;
  /** Which video of the batch to draw (adaptive schemes differ per video). Default 0. */
  videoIndex?: number;
  /** Cell width in pixels; default fits ~1200 px (1…12). */
  cellWidth?: number;
  /** Cell height in pixels; default fits ~900 px (2…12). */
  cellHeight?: number;
  /** Optional title drawn above the grid. */
  title?: string;
  /** Draw stage numbers and the legend (default true). */
  labels?: boolean;
}

/**
 * The role of every frame in every stage.
 * @returns `kinds[stage][frame]`, shape [stages, T].
 */
export function scheduleCellKinds(stages: readonly Stage[], o: SchedulePictureOptions): Uint8Array[] {
  const T = o.videoLength;
  const b = o.videoIndex ?? 0;
  const done = new Uint8Array(T);
  for (let i = 0; i < Math.min(o.numObs, T); i++) done[i] = 1;
  return stages.map((s) => {
    const obs = s.obs[b];
    const lat = s.latent[b];
    if (!obs || !lat) throw new OptionError('videoIndex', `a video index below ${s.obs.length}`, b);
    const row = new Uint8Array(T);
    for (let f = 0; f < T; f++) row[f] = done[f] ? (f < o.numObs ? CellKind.Given : CellKind.Done) : CellKind.Empty;
    for (const f of obs) if (f >= 0 && f < T) row[f] = CellKind.Observed;
    for (const f of lat) if (f >= 0 && f < T) row[f] = CellKind.Latent;
    for (const f of lat) if (f >= 0 && f < T) done[f] = 1;
    return row;
  });
}

/** Geometry of a rendered picture (for tests and callers that annotate it). */
export interface SchedulePicture {
  width: number;
  height: number;
  /** `[height, width, 3]` uint8. */
  rgb: Uint8Array;
  /** Pixel position of cell (stage, frame): top-left corner is (x0 + frame·pitchX, y0 + stage·pitchY). */
  x0: number;
  y0: number;
  pitchX: number;
  pitchY: number;
  cellWidth: number;
  cellHeight: number;
}

const clamp = (v: number, lo: number, hi: number): number => Math.max(lo, Math.min(hi, v));

/**
 * Render the schedule as an RGB image (see the module comment for the colours).
 * Shape of the result: `[height, width, 3]` uint8.
 */
export function renderSchedulePicture(stages: readonly Stage[], o: SchedulePictureOptions): SchedulePicture {
  const T = o.videoLength;
  if (!(Number.isInteger(T) && T >= 1)) throw new OptionError('videoLength', 'an integer ≥ 1', T);
  const kinds = scheduleCellKinds(stages, o);
  const n = Math.max(kinds.length, 1);
  const cw = o.cellWidth ?? clamp(Math.floor(1200 / T), 1, 12);
  const ch = o.cellHeight ?? clamp(Math.floor(900 / n), 2, 12);
  if (!(Number.isInteger(cw) && cw >= 1)) throw new OptionError('cellWidth', 'an integer ≥ 1', cw);
  if (!(Number.isInteger(ch) && ch >= 1)) throw new OptionError('cellHeight', 'an integer ≥ 1', ch);
  const labels = o.labels ?? true;
  const gap = cw >= 4 && ch >= 4 ? 1 : 0; // grid lines only when cells are big enough
  const pitchX = cw + gap;
  const pitchY = ch + gap;
  const pad = 4;
  const labelW = labels ? textWidth(String(kinds.length - 1)) + pad : 0;
  const titleH = labels && o.title ? GLYPH_HEIGHT + pad : 0;
  const legendH = labels ? GLYPH_HEIGHT + 2 * pad : 0;
  const legendW = labels ? LEGEND.reduce((w, [, name]) => w + GLYPH_HEIGHT + 3 + textWidth(name) + 8, 0) : 0;
  const gridW = T * pitchX + gap;
  const gridH = kinds.length * pitchY + gap;
  const x0 = pad + labelW + gap;
  const y0 = pad + titleH + gap;
  const width = Math.max(pad + labelW + gridW + pad, legendW + 2 * pad, labels && o.title ? textWidth(o.title) + 2 * pad : 0);
  const height = pad + titleH + gridH + legendH + pad;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  const fill = (x: number, y: number, w: number, h: number, c: Rgb): void => {
    for (let yy = y; yy < y + h; yy++) {
      for (let xx = x; xx < x + w; xx++) {
        const p = (yy * width + xx) * 3;
        rgb[p] = c[0];
        rgb[p + 1] = c[1];
        rgb[p + 2] = c[2];
      }
    }
  };
  if (gap) fill(x0 - gap, y0 - gap, gridW, gridH, GRID);
  kinds.forEach((row, s) => {
    for (let f = 0; f < T; f++) fill(x0 + f * pitchX, y0 + s * pitchY, cw, ch, CELL_COLOURS[row[f]!]!);
    if (labels && ch >= GLYPH_HEIGHT) {
      const label = String(s);
      drawText(rgb, width, height, pad + labelW - pad - textWidth(label), y0 + s * pitchY + ((ch - GLYPH_HEIGHT) >> 1), label, TEXT);
    }
  });
  if (labels && o.title) drawText(rgb, width, height, pad, pad, o.title, TEXT);
  if (labels) {
    let x = pad;
    const y = y0 + gridH + pad;
    for (const [kind, name] of LEGEND) {
      fill(x, y, GLYPH_HEIGHT, GLYPH_HEIGHT, GRID);
      fill(x + 1, y + 1, GLYPH_HEIGHT - 2, GLYPH_HEIGHT - 2, CELL_COLOURS[kind]!);
      drawText(rgb, width, height, x + GLYPH_HEIGHT + 3, y, name, TEXT);
      x += GLYPH_HEIGHT + 3 + textWidth(name) + 8;
    }
  }
  return { width, height, rgb, x0, y0, pitchX, pitchY, cellWidth: cw, cellHeight: ch };
}

/**
 * Render the schedule and write it as a PNG file (atomically) — `flexvid sample --just-visualise`.
 * @returns the picture geometry.
 */
export function writeSchedulePicture(file: string, stages: readonly Stage[], o: SchedulePictureOptions): SchedulePicture {
  const pic = renderSchedulePicture(stages, o);
  writeFileAtomic(file, encodePng(pic.rgb, pic.width, pic.height));
  return pic;
}
