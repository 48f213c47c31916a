/**
 * A PyTorch peer process for benchmarks: a Python script run with `--serve` answers one JSON
 * command per line with one JSON line, so flexvid and PyTorch steps can alternate in time and
 * see the same machine load.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';

/** A python3 that can import torch (`$PYTHON`, `python3` on PATH, then Debian's /usr/bin/python3). */
export function findPython(): string | null {
  const candidates = [process.env.PYTHON, 'python3', '/usr/bin/python3'].filter((p): p is string => !!p);
  for (const p of candidates) {
    const r = spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' });
    if (r.status === 0) return p;
  }
  return null;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * glibc's allocator settings that the addon applies to flexvid's own process (native/flexvid.cc:
 * freed memory is kept for reuse), as environment variables for a peer process. Without them a
 * PyTorch process's speed depends on glibc's dynamic mmap threshold: on the Balls sampling stage
 * the same peer took 7.9–8.8 s per stage with them and 18–20 s without (1.1M page faults and 9 s
 * of system time per stage) on the same machine in the same hour.
 */
export const FLEXVID_MALLOC_ENV: Record<string, string> = {
  MALLOC_MMAP_THRESHOLD_: String(256 << 20),
  MALLOC_TRIM_THRESHOLD_: String(1 << 30),
  MALLOC_TOP_PAD_: String(64 << 20),
};

export class Peer {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #lines: string[] = [];
  readonly #waiting: ((line: string) => void)[] = [];
  #stderr = '';
  #closed = false;

  /** `env`: extra environment for the peer process (e.g. {@link FLEXVID_MALLOC_ENV}). */
  constructor(python: string, script: string, threads: number, extraArgs: string[] = [], env: Record<string, string> = {}) {
    this.#proc = spawn(python, [script, '--serve', '--threads', String(threads), ...extraArgs], {
      env: { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads), ...env },
    });
    let buf = '';
    this.#proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = this.#waiting.shift();
        if (w) w(line);
        else this.#lines.push(line);
      }
    });
    this.#proc.stderr.setEncoding('utf8').on('data', (c: string) => (this.#stderr = (this.#stderr + c).slice(-4000)));
    this.#proc.on('close', () => {
      this.#closed = true;
      for (const w of this.#waiting.splice(0)) w('');
    });
  }

  /** The next line printed by the peer (rejects if it exited). */
  async next(): Promise<any> {
    const line = this.#lines.shift() ?? (this.#closed ? '' : await new Promise<string>((r) => this.#waiting.push(r)));
    if (!line) throw new Error(`PyTorch peer stopped: ${this.#stderr.trim().split('\n').slice(-3).join(' | ')}`);
    return JSON.parse(line);
  }

  async request(cmd: object): Promise<any> {
    this.#proc.stdin.write(JSON.stringify(cmd) + '\n');
    return this.next();
  }

  close(): void {
    if (!this.#closed) this.#proc.stdin.end(JSON.stringify({ cmd: 'quit' }) + '\n');
  }
}
