/**
 * The random-number-generator contract used by pure-TypeScript code (data generation,
 * replay sampling, training masks). Implementations must be seedable and their state
 * must round-trip through JSON so that a resumed run continues the same random stream.
 * The NumPy-compatible MT19937 implementation lives in `mt19937.ts`.
 */
export interface Rng {
  /** Uniform double in [0, 1). */
  random(): number;
  /** Uniform integer in [low, high) (high exclusive), like NumPy's `randint(low, high)`. */
  randint(low: number, high: number): number;
  /** Standard normal draw. */
  normal(): number;
  /** JSON-serialisable snapshot of the full state. */
  getState(): unknown;
  /** Restore a snapshot made by `getState()` (of the same implementation). */
  setState(state: unknown): void;
}
