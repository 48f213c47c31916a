/**
 * Where does the time go? An operator-level profiler on libtorch's RecordFunction hooks (no
 * Kineto needed).
 */
import { native } from './native.ts';

/** One row of a profile: an operator (or `name [shapes]` when profiled with shapes). */
export interface ProfileRow {
  name: string;
  calls: number;
  /** Wall time including nested operators, ms. */
  totalMs: number;
  /** Wall time excluding nested operators, ms (rows' selfMs add up to the profiled time). */
  selfMs: number;
}

/**
 * Run `fn` with every ATen operator (forward and autograd backward nodes) timed.
 * Rows are sorted by self time, largest first. Profiling costs ~1 µs per operator call.
 */
export function profile<T>(fn: () => T, opts: { shapes?: boolean } = {}): { result: T; rows: ProfileRow[]; wallMs: number } {
  native.profileStart(opts.shapes ?? false);
  const t0 = performance.now();
  let rows: ProfileRow[] = [];
  let result: T;
  try {
    result = fn();
  } finally {
    rows = native.profileStop();
  }
  const wallMs = performance.now() - t0;
  rows.sort((a, b) => b.selfMs - a.selfMs);
  return { result, rows, wallMs };
}

/** A readable table of the `limit` largest rows, with % of `wallMs`. */
export function formatProfile(rows: ProfileRow[], wallMs: number, limit = 25): string {
  const lines = [`${'operator'.padEnd(70)} ${'calls'.padStart(6)} ${'self ms'.padStart(9)} ${'%'.padStart(5)} ${'total ms'.padStart(9)}`];
  for (const r of rows.slice(0, limit)) {
    const name = r.name.length > 70 ? `${r.name.slice(0, 67)}...` : r.name;
    lines.push(`${name.padEnd(70)} ${String(r.calls).padStart(6)} ${r.selfMs.toFixed(1).padStart(9)} ${((100 * r.selfMs) / wallMs).toFixed(1).padStart(5)} ${r.totalMs.toFixed(1).padStart(9)}`);
  }
  const accounted = rows.reduce((s, r) => s + r.selfMs, 0);
  lines.push(`wall ${wallMs.toFixed(1)} ms, in operators ${accounted.toFixed(1)} ms (${((100 * accounted) / wallMs).toFixed(0)} %), the rest is JavaScript and the binding`);
  return lines.join('\n');
}
