/**
 * Bit-exact port of NumPy's legacy global generator `numpy.random.RandomState(seed)`
 * (MT19937 + the legacy `random_sample`, `gauss`, `randint`, `uniform` algorithms).
 *
 * The reference bouncing-balls generator (REFERENCE_SPEC §1.1.6) draws from this generator,
 * so implementing it exactly reproduces the reference dataset bit for bit.
 *
 * Algorithms (all written from the published descriptions):
 * - MT19937 (Matsumoto & Nishimura 1998), seeded with `init_genrand(seed mod 2^32)`.
 * - `random()` = 53-bit double from two 32-bit outputs `a, b`:
 *   `((a >>> 5) · 2^26 + (b >>> 6)) / 2^53`.
 * - `normal()` = Marsaglia polar method; the second value of each pair is cached and returned by
 *   the next call (NumPy's `has_gauss` / `gauss` state).
 * - `randint(low, high)` = masked rejection sampling over `rng = high − low − 1` with
 *   `mask` = smallest `2^k − 1 ≥ rng`; 32-bit draws when `rng < 2^32`, 64-bit draws (two 32-bit
 *   outputs, high word first) otherwise.
 */
import type { Rng } from './rng.ts';

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/** JSON-able snapshot of a {@link NumpyRandomState} (mirrors NumPy's `get_state()` tuple). */
export interface NumpyRandomStateSnapshot {
  kind: 'MT19937';
  /** The 624 32-bit words of the state vector. */
  key: number[];
  /** Position of the next word to temper (624 = regenerate before the next draw). */
  pos: number;
  /** Whether a second polar-method normal is cached. */
  hasGauss: boolean;
  /** The cached normal (0 when none). */
  gauss: number;
}

/** NumPy legacy `RandomState` (MT19937). Implements the project-wide {@link Rng} contract. */
export class NumpyRandomState implements Rng {
  private readonly mt = new Uint32Array(N);
  private pos = N;
  private hasGauss = false;
  private gauss = 0;

  /** Seed like `np.random.RandomState(seed)`; the seed is reduced mod 2^32. */
  constructor(seed = 0) {
    this.seed(seed);
  }

  /** Re-seed (`init_genrand(seed mod 2^32)`); clears the cached normal. */
  seed(seed: number): void {
    if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
    let s = Number(((BigInt(seed) % 4294967296n) + 4294967296n) % 4294967296n) >>> 0;
    const mt = this.mt;
    mt[0] = s;
    for (let i = 1; i < N; i++) {
      s = mt[i - 1]! ^ (mt[i - 1]! >>> 30);
      // 1812433253 * s without losing bits: split the multiplication in 16-bit halves.
      mt[i] = ((((s & 0xffff0000) >>> 16) * 1812433253) << 16) + (s & 0x0000ffff) * 1812433253 + i;
    }
    this.pos = N;
    this.hasGauss = false;
    this.gauss = 0;
  }

  /** Regenerate the whole state vector (the MT19937 "twist"). */
  private twist(): void {
    const mt = this.mt;
    let y: number;
    let k = 0;
    for (; k < N - M; k++) {
      y = (mt[k]! & UPPER_MASK) | (mt[k + 1]! & LOWER_MASK);
      mt[k] = mt[k + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      y = (mt[k]! & UPPER_MASK) | (mt[k + 1]! & LOWER_MASK);
      mt[k] = mt[k + (M - N)]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    y = (mt[N - 1]! & UPPER_MASK) | (mt[0]! & LOWER_MASK);
    mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.pos = 0;
  }

  /** Next raw 32-bit output (tempered), as an unsigned number in [0, 2^32). */
  nextUint32(): number {
    if (this.pos >= N) this.twist();
    let y = this.mt[this.pos++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Uniform double in [0, 1) with 53 random bits (NumPy `random_sample`). */
  random(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Uniform double in [low, high): `low + (high − low) · random()` (NumPy legacy `uniform`). */
  uniform(low = 0, high = 1): number {
    return low + (high - low) * this.random();
  }

  /** Standard normal draw (NumPy legacy `gauss`, Marsaglia polar method with caching). */
  normal(): number {
    if (this.hasGauss) {
      const g = this.gauss;
      this.hasGauss = false;
      this.gauss = 0;
      return g;
    }
    let x1: number;
    let x2: number;
    let r2: number;
    do {
      x1 = 2 * this.random() - 1;
      x2 = 2 * this.random() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt((-2 * Math.log(r2)) / r2);
    this.gauss = f * x1;
    this.hasGauss = true;
    return f * x2;
  }

  /**
   * Uniform integer in [low, high) like NumPy legacy `randint(low, high)` with the default int64
   * dtype. Both bounds must be safe integers with `low < high`; results above 2^53 would lose
   * precision, so ranges are limited to `Number.MAX_SAFE_INTEGER`.
   */
  randint(low: number, high: number): number {
    if (!Number.isSafeInteger(low) || !Number.isSafeInteger(high)) {
      throw new RangeError(`randint bounds must be safe integers, got [${low}, ${high})`);
    }
    if (high <= low) throw new RangeError(`randint: low >= high (${low} >= ${high})`);
    const rng = high - low - 1;
    if (rng === 0) return low;
    if (rng <= 0xffffffff) {
      if (rng === 0xffffffff) return low + this.nextUint32();
      const mask = maskFor(rng);
      let v: number;
      do {
        v = (this.nextUint32() & mask) >>> 0;
      } while (v > rng);
      return low + v;
    }
    // Wide range: 64-bit draws (high word first), masked rejection, in BigInt.
    const big = BigInt(rng);
    let mask = big;
    for (let sh = 1n; sh <= 32n; sh *= 2n) mask |= mask >> sh;
    let v: bigint;
    do {
      const hi = BigInt(this.nextUint32());
      const lo = BigInt(this.nextUint32());
      v = ((hi << 32n) | lo) & mask;
    } while (v > big);
    return low + Number(v);
  }

  /** JSON-able snapshot of the complete state (key, pos, cached normal). */
  getState(): NumpyRandomStateSnapshot {
    return { kind: 'MT19937', key: Array.from(this.mt), pos: this.pos, hasGauss: this.hasGauss, gauss: this.gauss };
  }

  /** Restore a snapshot made by {@link getState}. */
  setState(state: unknown): void {
    const s = state as Partial<NumpyRandomStateSnapshot> | null;
    if (
      !s ||
      s.kind !== 'MT19937' ||
      !Array.isArray(s.key) ||
      s.key.length !== N ||
      typeof s.pos !== 'number' ||
      !(s.pos >= 0 && s.pos <= N) ||
      typeof s.hasGauss !== 'boolean' ||
      typeof s.gauss !== 'number'
    ) {
      throw new TypeError('NumpyRandomState.setState: not a MT19937 snapshot from getState()');
    }
    for (let i = 0; i < N; i++) this.mt[i] = s.key[i]! >>> 0;
    this.pos = s.pos;
    this.hasGauss = s.hasGauss;
    this.gauss = s.gauss;
  }
}

/** Smallest `2^k − 1` that is ≥ `x` (for 0 < x < 2^32). */
function maskFor(x: number): number {
  let m = x >>> 0;
  m |= m >>> 1;
  m |= m >>> 2;
  m |= m >>> 4;
  m |= m >>> 8;
  m |= m >>> 16;
  return m >>> 0;
}
