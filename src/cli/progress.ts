/**
 * Progress reporting for long work. On a terminal: a live cli-progress bar with rate and ETA.
 * Elsewhere (CI, pipes): one plain line every few seconds, so logs stay readable.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  /** Advance by `n` units (default 1); `extra` is shown after the bar. */
  tick(n?: number, extra?: string): void;
  /** Set the absolute position. */
  update(value: number, extra?: string): void;
  stop(): void;
}

export interface ProgressOptions {
  /** Unit name shown in the rate, e.g. "frames". */
  unit?: string;
  /** Silence all output (library use, tests). */
  quiet?: boolean;
}

/** Start a progress display for `total` units of work labelled `label`. */
export function startProgress(label: string, total: number, opts: ProgressOptions = {}): Progress {
  const unit = opts.unit ?? 'it';
  if (opts.quiet || process.env.FLEXVID_QUIET === '1') {
    return { tick() {}, update() {}, stop() {} };
  }
  const start = Date.now();
  let value = 0;
  let extraText = '';
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} |{bar}| {percentage}% {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted} {extra}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { rate: '0', extra: '' });
    const rate = () => (value / Math.max(1e-3, (Date.now() - start) / 1000)).toFixed(1);
    return {
      tick(n = 1, extra) {
        value += n;
        if (extra !== undefined) extraText = extra;
        bar.update(value, { rate: rate(), extra: extraText });
      },
      update(v, extra) {
        value = v;
        if (extra !== undefined) extraText = extra;
        bar.update(value, { rate: rate(), extra: extraText });
      },
      stop() {
        bar.stop();
      },
    };
  }
  let lastPrint = 0;
  const print = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastPrint < 5000) return;
    lastPrint = now;
    const secs = (now - start) / 1000;
    const rate = value / Math.max(1e-3, secs);
    const eta = rate > 0 ? Math.max(0, (total - value) / rate) : NaN;
    const pct = total > 0 ? ((100 * value) / total).toFixed(1) : '?';
    process.stderr.write(
      `${label}: ${value}/${total} ${unit} (${pct}%) ${rate.toFixed(1)} ${unit}/s, ETA ${Number.isFinite(eta) ? eta.toFixed(0) + 's' : '?'} ${extraText}\n`,
    );
  };
  return {
    tick(n = 1, extra) {
      value += n;
      if (extra !== undefined) extraText = extra;
      print(false);
    },
    update(v, extra) {
      value = v;
      if (extra !== undefined) extraText = extra;
      print(false);
    },
    stop() {
      print(true);
    },
  };
}
