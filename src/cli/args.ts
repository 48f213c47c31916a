/** Parsers for commander option values; errors name the flag and say what was expected. */
import { Option, type Command } from 'commander';
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

/** One flag of a command's flag table. */
export interface FlagSpec {
  /** Kebab-case name without dashes, e.g. `start-index`, or `T`. */
  name: string;
  /** `<n>`, `[bool]`, `<ids...>` or '' for a switch. */
  arg: string;
  help: string;
  parse?: (v: string) => unknown;
  default?: unknown;
  defaultDescription?: string;
  choices?: readonly string[];
}

/** Add `--<name>` and a hidden `--<snake_name>` alias (the reference's spelling) storing into the same attribute. */
export function addFlag(cmd: Command, f: FlagSpec): void {
  const spec = f.arg ? ` ${f.arg}` : '';
  const o = new Option(`--${f.name}${spec}`, f.help);
  if (f.parse) o.argParser(f.parse as (v: string, prev: unknown) => unknown);
  if (f.choices) o.choices(f.choices as string[]);
  if (f.default !== undefined) o.default(f.default, f.defaultDescription);
  cmd.addOption(o);
  const snake = f.name.replace(/-/g, '_');
  if (snake !== f.name) {
    const a = new Option(`--${snake}${spec}`).hideHelp();
    if (f.parse) a.argParser(f.parse as (v: string, prev: unknown) => unknown);
    if (f.choices) a.choices(f.choices as string[]);
    const attr = o.attributeName();
    a.attributeName = () => attr;
    cmd.addOption(a);
  }
}
