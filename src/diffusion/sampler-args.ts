/**
 * The one parser for `--sampler` strings (REFERENCE_SPEC §5.7, §7.1, §7.4).
 *
 * - `ddpm` → ancestral sampling (§5.4).
 * - `ddim` or `ddim-<eta>` → DDIM (§5.5; η = 0 by default; the `-<eta>` form is a flexvid extension).
 * - `heun-<S_churn>-<S_max>-<S_min>-<S_noise>-<sigma_max>-<sigma_min>-<rho>-<num_steps>` → the
 *   reference's Heun/EDM sampler, **faithful** variant (§5.7). Note the order S_max before S_min.
 *   The first six fields are floats (Python `float()`, so `inf` parses), ρ and num_steps integers.
 * - `heun2-…` (same eight fields) → the **corrected** second-order Heun sampler (§5.7 Proposal).
 */
import { OptionError } from '../util/errors.ts';

/** Parsed Heun settings; field names follow Karras et al. (2022) Algorithm 2. */
export interface HeunSamplerArgs {
  kind: 'heun';
  /** `faithful` = the reference's algorithm (`heun-…`); `corrected` = EDM Algorithm 2 (`heun2-…`). */
  variant: 'faithful' | 'corrected';
  /** S_churn: total stochasticity; γ = min(S_churn/num_steps, √2 − 1). */
  sChurn: number;
  /** S_max: churn only while σ ≤ S_max (may be Infinity). */
  sMax: number;
  /** S_min: churn only while σ ≥ S_min. */
  sMin: number;
  /** S_noise: scale of the churn noise (1 = exact). */
  sNoise: number;
  /** Largest target noise level σ_max (VE units). */
  sigmaMax: number;
  /** Smallest target noise level σ_min (VE units, > 0). */
  sigmaMin: number;
  /** ρ of the Karras schedule (integer in the reference). */
  rho: number;
  /** Number of schedule steps (integer ≥ 2). */
  numSteps: number;
}

/** A parsed `--sampler` value. */
export type SamplerArgs = { kind: 'ddpm' } | { kind: 'ddim'; eta: number } | HeunSamplerArgs;

/** The reference's default sampler string. */
export const DEFAULT_SAMPLER = 'heun-80-inf-0-1-1000-0.002-7-50';

const HEUN_FIELDS = ['S_churn', 'S_max', 'S_min', 'S_noise', 'sigma_max', 'sigma_min', 'rho', 'num_steps'] as const;

/** Python `float()` on a field: decimal/exponent notation or `inf`/`infinity` (any case, signed). */
function parseFloatField(sampler: string, field: string, text: string): number {
  const t = text.trim().toLowerCase();
  if (/^[+-]?(inf|infinity)$/.test(t)) return t.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(t)) return Number(t);
  throw new OptionError(`sampler field ${field}`, `a number (in "${sampler}")`, text);
}

/** Python `int()` on a field: optional sign and decimal digits only. */
function parseIntField(sampler: string, field: string, text: string): number {
  if (/^\s*[+-]?\d+\s*$/.test(text)) return Number.parseInt(text, 10);
  throw new OptionError(`sampler field ${field}`, `an integer (in "${sampler}")`, text);
}

/**
 * Parse a `--sampler` string (REFERENCE_SPEC §5.7, §7.4).
 * @throws OptionError naming the bad field, e.g.
 *   `Expected an integer (in "heun-80-inf-0-1-1000-0.002-7.5-50") for sampler field rho but received "7.5"`.
 * @example parseSampler('heun-80-inf-0-1-1000-0.002-7-50').sMax // Infinity
 */
export function parseSampler(sampler: string): SamplerArgs {
  const s = sampler.trim();
  if (s === 'ddpm') return { kind: 'ddpm' };
  if (s === 'ddim') return { kind: 'ddim', eta: 0 };
  if (s.startsWith('ddim-')) {
    const eta = parseFloatField(s, 'eta', s.slice(5));
    if (!(eta >= 0 && Number.isFinite(eta))) throw new OptionError('sampler field eta', 'a finite number ≥ 0', eta);
    return { kind: 'ddim', eta };
  }
  const dash = s.indexOf('-');
  const head = dash < 0 ? s : s.slice(0, dash);
  if (head !== 'heun' && head !== 'heun2') {
    throw new OptionError('sampler', '"ddpm", "ddim", "heun-<8 fields>" or "heun2-<8 fields>"', sampler);
  }
  // Plain split on '-', as the reference does: a negative exponent ("2e-3") or a negative number
  // cannot be written in a sampler string (write 0.002 instead).
  const fields = dash < 0 ? [] : s.slice(dash + 1).split('-');
  if (fields.length !== HEUN_FIELDS.length) {
    throw new OptionError('sampler', `${HEUN_FIELDS.length} "-"-separated fields after "${head}" (${HEUN_FIELDS.join(', ')})`, sampler);
  }
  const f = (i: number): number => parseFloatField(s, HEUN_FIELDS[i]!, fields[i]!);
  const args: HeunSamplerArgs = {
    kind: 'heun',
    variant: head === 'heun' ? 'faithful' : 'corrected',
    sChurn: f(0),
    sMax: f(1),
    sMin: f(2),
    sNoise: f(3),
    sigmaMax: f(4),
    sigmaMin: f(5),
    rho: parseIntField(s, 'rho', fields[6]!),
    numSteps: parseIntField(s, 'num_steps', fields[7]!),
  };
  validateHeunArgs(args);
  return args;
}

/** Range checks shared by the parser and programmatic callers. */
export function validateHeunArgs(a: HeunSamplerArgs): void {
  const nonNeg = (name: string, v: number): void => {
    if (!(v >= 0)) throw new OptionError(`sampler field ${name}`, 'a number ≥ 0', v);
  };
  nonNeg('S_churn', a.sChurn);
  nonNeg('S_noise', a.sNoise);
  if (Number.isNaN(a.sMax)) throw new OptionError('sampler field S_max', 'a number (inf allowed)', a.sMax);
  if (Number.isNaN(a.sMin)) throw new OptionError('sampler field S_min', 'a number', a.sMin);
  if (!(a.sigmaMin > 0 && Number.isFinite(a.sigmaMin))) {
    throw new OptionError('sampler field sigma_min', 'a finite number > 0', a.sigmaMin);
  }
  if (!(a.sigmaMax > a.sigmaMin && Number.isFinite(a.sigmaMax))) {
    throw new OptionError('sampler field sigma_max', `a finite number > sigma_min (${a.sigmaMin})`, a.sigmaMax);
  }
  if (!(Number.isInteger(a.rho) && a.rho >= 1)) throw new OptionError('sampler field rho', 'an integer ≥ 1', a.rho);
  if (!(Number.isInteger(a.numSteps) && a.numSteps >= 2)) {
    throw new OptionError('sampler field num_steps', 'an integer ≥ 2', a.numSteps);
  }
}

/** Format a number the way the sampler string spells it (`Infinity` → `inf`). */
function fmt(v: number): string {
  if (v === Infinity) return 'inf';
  if (v === -Infinity) return '-inf';
  return String(v);
}

/**
 * Canonical string of parsed sampler arguments (inverse of {@link parseSampler} for the usual
 * spellings; used in results paths, §7.5).
 * @example formatSampler(parseSampler('heun-80-inf-0-1-1000-0.002-7-50')) // same string
 */
export function formatSampler(a: SamplerArgs): string {
  if (a.kind === 'ddpm') return 'ddpm';
  if (a.kind === 'ddim') return a.eta === 0 ? 'ddim' : `ddim-${fmt(a.eta)}`;
  const head = a.variant === 'faithful' ? 'heun' : 'heun2';
  return [head, a.sChurn, a.sMax, a.sMin, a.sNoise, a.sigmaMax, a.sigmaMin, a.rho, a.numSteps].map((v) => (typeof v === 'number' ? fmt(v) : v)).join('-');
}
