/**
 * Error classes shared by every layer. Callers can test with `instanceof`;
 * the CLI prints `message` only and exits non-zero.
 */

/** Base class of every error flexvid raises on purpose. */
export class FlexvidError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A flag, option or config field had a bad value. Message: "Expected <expected> for <name> but received <actual>". */
export class OptionError extends FlexvidError {
  constructor(
    readonly option: string,
    readonly expected: string,
    readonly actual: unknown,
  ) {
    super(`Expected ${expected} for ${option} but received ${formatValue(actual)}`);
  }
}

/** A file was missing, truncated or inconsistent. The message names the file. */
export class FileFormatError extends FlexvidError {
  constructor(
    readonly file: string,
    detail: string,
  ) {
    super(`${file}: ${detail}`);
  }
}

export function formatValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === undefined) return 'undefined';
  try {
    const s = JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 200 ? s.slice(0, 200) + '…' : s;
  } catch {
    return String(v);
  }
}
