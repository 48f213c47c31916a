/**
 * `flexvid train --nproc N`: start N worker processes of the same training on this machine, the
 * way torchrun does (REFERENCE_SPEC §9.2): each child gets RANK, LOCAL_RANK, WORLD_SIZE,
 * LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT chosen here, joins the c10d
 * process group from that environment, and trains its share of the global batch. The parent
 * waits; when one child fails the others are stopped, and SIGINT/SIGTERM are passed on so that
 * all ranks stop at the same step and save.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as os from 'node:os';

/** A free TCP port on the loopback interface (chosen by the OS). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

export interface LaunchOptions {
  nproc: number;
  /** Program and arguments of one worker (e.g. [node, --import, tsx, main.ts, train, …]). */
  command: string;
  args: string[];
  /** Extra environment for every worker. */
  env?: NodeJS.ProcessEnv;
  /** Intra-op threads per worker (sets FLEXVID_THREADS unless the environment has it): default cores / nproc. */
  threadsPerWorker?: number;
  /** MASTER_PORT (default: a free port). */
  masterPort?: number;
  /** Where the workers' output goes (default: inherited). */
  stdio?: 'inherit' | 'ignore';
  /** Called with a line about each worker that failed. */
  onMessage?: (text: string) => void;
}

export interface LaunchResult {
  /** 0 when every worker exited with 0; otherwise the first failure's code (1 for a signal). */
  code: number;
  /** Exit code (or signal name) per rank. */
  exits: (number | string)[];
}

/** Start the workers and wait for all of them. */
export async function launchLocalWorkers(o: LaunchOptions): Promise<LaunchResult> {
  const port = o.masterPort ?? (await freePort());
  const threads = o.threadsPerWorker ?? Math.max(1, Math.floor(os.availableParallelism() / o.nproc));
  const children: ChildProcess[] = [];
  const exits: (number | string)[] = new Array(o.nproc).fill(-1);
  let firstFailure = 0;
  let stopping = false;
  const stopAll = (signal: NodeJS.Signals) => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    stopping = true;
    stopAll(signal);
  };
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  let killTimer: NodeJS.Timeout | null = null;
  try {
    const done = Array.from({ length: o.nproc }, (_, rank) => {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ...o.env,
        RANK: String(rank),
        LOCAL_RANK: String(rank),
        WORLD_SIZE: String(o.nproc),
        LOCAL_WORLD_SIZE: String(o.nproc),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        FLEXVID_THREADS: process.env.FLEXVID_THREADS ?? String(threads),
        FLEXVID_LAUNCHED: '1',
      };
      const child = spawn(o.command, o.args, { env, stdio: o.stdio ?? 'inherit' });
      children.push(child);
      return new Promise<void>((resolve) => {
        child.on('error', (e) => {
          exits[rank] = 'spawn-error';
          o.onMessage?.(`rank ${rank}: could not start (${e.message})`);
          if (!firstFailure) firstFailure = 1;
          stopAll('SIGTERM');
          resolve();
        });
        child.on('exit', (code, signal) => {
          exits[rank] = code ?? signal ?? -1;
          if (code !== 0) {
            if (!firstFailure) {
              firstFailure = code ?? 1;
              if (!stopping) o.onMessage?.(`rank ${rank} exited with ${code ?? signal}; stopping the other ranks`);
            }
            stopAll('SIGTERM');
            // ranks blocked in a collective do not see SIGTERM's stop flag: kill them after a grace period
            killTimer ??= setTimeout(() => stopAll('SIGKILL'), 10_000);
          }
          resolve();
        });
      });
    });
    await Promise.all(done);
  } finally {
    if (killTimer) clearTimeout(killTimer);
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
  return { code: firstFailure, exits };
}
