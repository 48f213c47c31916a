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

export class Peer {
  readonly #proc: ChildProcessWithoutNullStreams;
  readonly #lines: string[] = [];
  readonly #waiting: ((line: string) => void)[] = [];
  #stderr = '';
  #closed = false;

  constructor(python: string, script: string, threads: number, extraArgs: string[] = []) {
    this.#proc = spawn(python, [script, '--serve', '--threads', String(threads), ...extraArgs], {
      env: { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) },
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
