/**
 * Timestep samplers for training (`--schedule_sampler`, REFERENCE_SPEC §5.10).
 *
 * A sampler draws one timestep per training video and a per-video loss weight. The draws mirror
 * `numpy.random.choice(N, size=batch, p=p)` exactly (cumulative sum, normalised by its last element,
 * one `random()` per draw, right-sided binary search) and the weight sums use NumPy's pairwise
 * summation, so with a {@link NumpyRandomState} seeded like the reference the same timesteps come out.
 */
import { OptionError } from '../util/errors.ts';
import type { Rng } from '../util/rng.ts';
import { normalIntervalMass } from './erf.ts';
import type { DiffusionSchedule } from './schedule.ts';

/** The part of an {@link Rng} the samplers need. */
export type UniformSource = Pick<Rng, 'random'>;

/** One batch of draws. */
export interface TimestepDraw {
  /** Timesteps, shape [batch]. */
  t: Int32Array;
  /** Per-video loss weights, shape [batch] (the reference converts them to float32). */
  weights: Float64Array;
}

/** Common interface of every schedule sampler. */
export interface ScheduleSampler {
  /** Name as given to `--schedule_sampler`. */
  readonly name: string;
  /** Unnormalised sampling weights over the N timesteps, shape [N]. */
  weights(): Float64Array;
  /** Draw `batch` timesteps and their loss weights. */
  sample(batch: number, rng: UniformSource): TimestepDraw;
  /** Record losses of a training step (no-op except for loss-aware samplers). */
  updateWithAllLosses(ts: ArrayLike<number>, losses: ArrayLike<number>): void;
  /** JSON-able state (for resuming). */
  getState(): unknown;
  /** Restore a state made by {@link getState}. */
  setState(state: unknown): void;
}

/**
 * NumPy's pairwise summation of a float64 vector (`np.sum` on a contiguous array): blocks of ≤ 128
 * are summed with 8 interleaved accumulators, longer arrays are split in two (at a multiple of 8).
 */
export function numpySum(a: ArrayLike<number>, start = 0, n = a.length - start): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i]!;
    return res;
  }
  if (n <= 128) {
    const r = new Float64Array(8);
    for (let j = 0; j < 8; j++) r[j] = a[start + j]!;
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j]!;
    let res = ((r[0]! + r[1]!) + (r[2]! + r[3]!)) + ((r[4]! + r[5]!) + (r[6]! + r[7]!));
    for (; i < n; i++) res += a[start + i]!;
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return numpySum(a, start, n2) + numpySum(a, start + n2, n - n2);
}

/**
 * `np.random.choice(p.length, size=batch, p=p)` (legacy RandomState): `cdf = cumsum(p)/cdf[-1]`,
 * `idx = searchsorted(cdf, random(), side='right')`. Validates `p` like NumPy (non-negative,
 * sums to 1 within √ε).
 */
export function choiceWithProbabilities(p: ArrayLike<number>, batch: number, rng: UniformSource): Int32Array {
  const n = p.length;
  if (n === 0) throw new OptionError('p', 'a non-empty probability vector', []);
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (!(p[i]! >= 0)) throw new OptionError(`p[${i}]`, 'a probability ≥ 0', p[i]);
    total += p[i]!;
  }
  if (Math.abs(total - 1) > Math.sqrt(2.220446049250313e-16)) throw new OptionError('p', 'probabilities summing to 1', total);
  const cdf = new Float64Array(n);
  let acc = 0;
  for (let i = 0; i < n; i++) cdf[i] = acc += p[i]!;
  const last = cdf[n - 1]!;
  for (let i = 0; i < n; i++) cdf[i] = cdf[i]! / last;
  const out = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    const u = rng.random();
    let lo = 0;
    let hi = n; // first index with cdf[i] > u
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! <= u) lo = mid + 1;
      else hi = mid;
    }
    out[b] = Math.min(lo, n - 1);
  }
  return out;
}

/**
 * Generic importance sampler (§5.10): `p = w/Σw`, `t ~ p`, weight `1/(N·p_t)`.
 * Subclasses provide {@link weights}; {@link lossWeight} may be overridden.
 */
abstract class ImportanceSampler implements ScheduleSampler {
  abstract readonly name: string;
  constructor(readonly numTimesteps: number) {}
  abstract weights(): Float64Array;

  /** Loss weight of a drawn t given the normalised probabilities. */
  protected lossWeight(t: number, p: Float64Array): number {
    return 1 / (p.length * p[t]!);
  }

  sample(batch: number, rng: UniformSource): TimestepDraw {
    if (!Number.isInteger(batch) || batch < 0) throw new OptionError('batch', 'an integer ≥ 0', batch);
    const w = this.weights();
    const sum = numpySum(w);
    const p = Float64Array.from(w, (v) => v / sum);
    const t = choiceWithProbabilities(p, batch, rng);
    return { t, weights: Float64Array.from(t, (ti) => this.lossWeight(ti, p)) };
  }

  updateWithAllLosses(_ts: ArrayLike<number>, _losses: ArrayLike<number>): void {}
  getState(): unknown {
    return { kind: this.name };
  }
  setState(_state: unknown): void {}
}

/** `uniform` (default): t ~ U{0…N−1}, weight 1 (§5.10). */
export class UniformSampler extends ImportanceSampler {
  readonly name = 'uniform';
  weights(): Float64Array {
    return new Float64Array(this.numTimesteps).fill(1);
  }
}

/** JSON state of {@link LossSecondMomentSampler}. */
export interface LossSecondMomentState {
  kind: 'loss-second-moment';
  historyPerTerm: number;
  uniformProb: number;
  /** [N][historyPerTerm] most recent losses per timestep (unfilled slots 0). */
  lossHistory: number[][];
  /** Number of losses recorded per timestep (saturates at historyPerTerm). */
  lossCounts: number[];
}

/**
 * `loss-second-moment` (§5.10, improved-diffusion's `LossSecondMomentResampler`): keeps the last
 * `historyPerTerm` (10) losses per timestep; uniform until every timestep has a full history, then
 * `w_t ∝ sqrt(mean(loss²))`, normalised and mixed as `w·(1 − 0.001) + 0.001/N`.
 * (The reference crashes on NumPy ≥ 1.24 through a removed dtype alias, §10.2 #25; fixed here.)
 */
export class LossSecondMomentSampler extends ImportanceSampler {
  readonly name = 'loss-second-moment';
  private history: Float64Array;
  private counts: Int32Array;

  constructor(numTimesteps: number, readonly historyPerTerm = 10, readonly uniformProb = 0.001) {
    super(numTimesteps);
    this.history = new Float64Array(numTimesteps * historyPerTerm);
    this.counts = new Int32Array(numTimesteps);
  }

  /** True once every timestep has `historyPerTerm` losses. */
  warmedUp(): boolean {
    return this.counts.every((c) => c === this.historyPerTerm);
  }

  weights(): Float64Array {
    const N = this.numTimesteps;
    const H = this.historyPerTerm;
    if (!this.warmedUp()) return new Float64Array(N).fill(1);
    const w = new Float64Array(N);
    const sq = new Float64Array(H);
    for (let t = 0; t < N; t++) {
      for (let j = 0; j < H; j++) sq[j] = this.history[t * H + j]! ** 2;
      w[t] = Math.sqrt(numpySum(sq) / H);
    }
    const sum = numpySum(w);
    for (let t = 0; t < N; t++) {
      w[t] = (w[t]! / sum) * (1 - this.uniformProb);
      w[t] = w[t]! + this.uniformProb / N;
    }
    return w;
  }

  /** Append `(t, loss)` pairs (from all ranks) in order; full histories drop their oldest entry. */
  override updateWithAllLosses(ts: ArrayLike<number>, losses: ArrayLike<number>): void {
    const H = this.historyPerTerm;
    if (ts.length !== losses.length) throw new OptionError('losses', `${ts.length} values (one per timestep)`, losses.length);
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i]!;
      if (!(Number.isInteger(t) && t >= 0 && t < this.numTimesteps)) throw new OptionError('t', `an integer in [0, ${this.numTimesteps})`, t);
      const row = t * H;
      if (this.counts[t] === H) {
        this.history.copyWithin(row, row + 1, row + H);
        this.history[row + H - 1] = losses[i]!;
      } else {
        this.history[row + this.counts[t]!] = losses[i]!;
        this.counts[t] = this.counts[t]! + 1;
      }
    }
  }

  override getState(): LossSecondMomentState {
    const H = this.historyPerTerm;
    return {
      kind: 'loss-second-moment',
      historyPerTerm: H,
      uniformProb: this.uniformProb,
      lossHistory: Array.from({ length: this.numTimesteps }, (_, t) => Array.from(this.history.subarray(t * H, (t + 1) * H))),
      lossCounts: Array.from(this.counts),
    };
  }

  override setState(state: unknown): void {
    const s = state as Partial<LossSecondMomentState> | null;
    const N = this.numTimesteps;
    const H = this.historyPerTerm;
    if (!s || s.kind !== 'loss-second-moment' || s.historyPerTerm !== H || !Array.isArray(s.lossHistory) || !Array.isArray(s.lossCounts)
      || s.lossHistory.length !== N || s.lossCounts.length !== N) {
      throw new OptionError('schedule sampler state', `a loss-second-moment state for ${N} timesteps × ${H}`, state);
    }
    s.lossHistory.forEach((row, t) => {
      if (!Array.isArray(row) || row.length !== H) throw new OptionError(`lossHistory[${t}]`, `${H} numbers`, row);
      this.history.set(row, t * H);
    });
    this.counts = Int32Array.from(s.lossCounts);
  }
}

/**
 * `edm` / `edm_<P_mean>_<P_std>` (§5.10; defaults −1.2, 1.2): σ_t = sqrt(1 − ᾱ_t)/sqrt(ᾱ_t);
 * the log-σ axis is cut into buckets at the midpoints of consecutive ln σ_t (−∞/+∞ at the ends);
 * `p_t` = mass of N(P_mean, P_std²) in bucket t; draws t ~ p and returns the loss weights
 * `(1 + σ_t²)/σ_t²` (a change of objective, not an importance weight). The reference asserts
 * `Σp = 1` exactly; here a tolerance of 1e-9 is used (§10.2 #25).
 */
export class EdmSampler extends ImportanceSampler {
  readonly name: string;
  /** σ_t, shape [N]. */
  readonly sigmas: Float64Array;
  /** p_t, shape [N]. */
  readonly probabilities: Float64Array;
  /** (1 + σ_t²)/σ_t², shape [N]. */
  readonly lossWeights: Float64Array;

  constructor(alphasCumprod: ArrayLike<number>, readonly pMean = -1.2, readonly pStd = 1.2, name?: string) {
    super(alphasCumprod.length);
    if (!(pStd > 0 && Number.isFinite(pStd))) throw new OptionError('schedule_sampler P_std', 'a finite number > 0', pStd);
    if (!Number.isFinite(pMean)) throw new OptionError('schedule_sampler P_mean', 'a finite number', pMean);
    this.name = name ?? (pMean === -1.2 && pStd === 1.2 ? 'edm' : `edm_${pMean}_${pStd}`);
    const N = alphasCumprod.length;
    this.sigmas = Float64Array.from({ length: N }, (_, t) => Math.sqrt(1 - alphasCumprod[t]!) / Math.sqrt(alphasCumprod[t]!));
    const logs = Float64Array.from(this.sigmas, Math.log);
    const bounds = new Float64Array(N + 1);
    bounds[0] = -Infinity;
    bounds[N] = Infinity;
    for (let t = 1; t < N; t++) bounds[t] = (logs[t - 1]! + logs[t]!) / 2;
    this.probabilities = Float64Array.from({ length: N }, (_, t) => normalIntervalMass(bounds[t]!, bounds[t + 1]!, pMean, pStd));
    const total = numpySum(this.probabilities);
    if (Math.abs(total - 1) > 1e-9) throw new OptionError('schedule_sampler', 'bucket probabilities summing to 1', total);
    this.lossWeights = Float64Array.from(this.sigmas, (s) => (1 + s * s) / (s * s));
  }

  weights(): Float64Array {
    return this.probabilities;
  }

  protected override lossWeight(t: number): number {
    return this.lossWeights[t]!;
  }

  /** The three histograms the reference logs at construction (σ, p, loss weight per timestep). */
  histograms(): { sigmas: Float64Array; probabilities: Float64Array; lossWeights: Float64Array } {
    return { sigmas: this.sigmas, probabilities: this.probabilities, lossWeights: this.lossWeights };
  }
}

/** Strict float parse for `edm_<P_mean>_<P_std>`. */
function parseNum(name: string, text: string, whole: string): number {
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) {
    throw new OptionError(`schedule_sampler ${name}`, `a number (in "${whole}")`, text);
  }
  return Number(text);
}

/**
 * Build a sampler from its `--schedule_sampler` name (§5.10):
 * `uniform`, `loss-second-moment`, `edm`, `edm_<P_mean>_<P_std>`.
 * @param schedule the (un-respaced) training schedule.
 */
export function createScheduleSampler(name: string, schedule: DiffusionSchedule): ScheduleSampler {
  const N = schedule.numTimesteps;
  if (name === 'uniform') return new UniformSampler(N);
  if (name === 'loss-second-moment') return new LossSecondMomentSampler(N);
  if (name === 'edm') return new EdmSampler(schedule.alphasCumprod);
  if (name.startsWith('edm_')) {
    const parts = name.split('_');
    if (parts.length !== 3) throw new OptionError('schedule_sampler', '"edm_<P_mean>_<P_std>"', name);
    return new EdmSampler(schedule.alphasCumprod, parseNum('P_mean', parts[1]!, name), parseNum('P_std', parts[2]!, name), name);
  }
  throw new OptionError('schedule_sampler', '"uniform", "loss-second-moment", "edm" or "edm_<P_mean>_<P_std>"', name);
}
