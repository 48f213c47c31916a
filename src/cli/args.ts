/** Parsers for commander option values; errors name the flag and say what was expected. */
import { OptionError } from '../util/errors.ts';

/** An integer flag value ≥ `min` (and ≤ `max` when given). */
export function intArg(flag: string, min = 0, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const v = Number(value);
    if (!/^\s*-?\d+\s*$/.test(value) || !Number.isSafeInteger(v) || v < min || v > max) {
      const range = max < Number.MAX_SAFE_INTEGER ? `an integer in [${min}, ${max}]` : min === 0 ? 'a non-negative integer' : `an integer ≥ ${min}`;
      throw new OptionError(flag, range, value);
    }
    return v;
  };
}

/** A finite number flag value. */
export function numArg(flag: string) {
  return (value: string): number => {
    const v = Number(value);
    if (value.trim() === '' || !Number.isFinite(v)) throw new OptionError(flag, 'a number', value);
    return v;
  };
}
