/**
 * A small pool of `worker_threads` running a TypeScript module.
 *
 * flexvid runs through `tsx` without a build step. Worker threads do not inherit tsx's module
 * hooks, so each worker starts from a tiny ESM bootstrap that registers tsx (when the worker
 * module is a `.ts` file) and then imports the module. The module receives jobs with
 * `parentPort.on('message', …)` and answers each with exactly one message
 * (`{ ok: true, … }` or `{ ok: false, error }`).
 */
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as os from 'node:os';
import * as path from 'node:path';

/** Default worker count: the number of cores this process may use. */
export function defaultWorkerCount(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/** URL of tsx's ESM registration API, or null when tsx cannot be found. */
function tsxApiUrl(): string | null {
  try {
    return import.meta.resolve('tsx/esm/api');
  } catch {
    try {
      // Older runtimes: find the package and point at its ESM build of the API.
      const pkg = createRequire(import.meta.url).resolve('tsx/package.json');
      return pathToFileURL(path.join(path.dirname(pkg), 'dist/esm/api/index.mjs')).href;
    } catch {
      return null;
    }
  }
}

/** Start one worker thread running `moduleUrl` (a `.ts` module is loaded through tsx). */
export function startModuleWorker(moduleUrl: URL): Worker {
  const target = JSON.stringify(moduleUrl.href);
  const api = moduleUrl.pathname.endsWith('.ts') ? tsxApiUrl() : null;
  const source = api
    ? `import(${JSON.stringify(api)}).then((m) => { (m.register ?? m.default.register)(); return import(${target}); })`
    : `import(${target})`;
  // Errors during the bootstrap surface as the worker's 'error' event.
  return new Worker(`${source}.catch((e) => { setImmediate(() => { throw e; }); });`, { eval: true });
}

/** A job result message from a worker. */
export type WorkerReply<R> = ({ ok: true } & R) | { ok: false; error: string };

/** Options of {@link runPool}. */
export interface PoolOptions<J, R> {
  /** Threads of work in total (≥ 1). */
  workers: number;
  /** Buffers of a job to move (not copy) to a worker thread. */
  transfer?: (job: J) => ArrayBuffer[];
  /**
   * Run jobs on the calling thread too: it then counts as one of `workers` (so `workers − 1`
   * threads are started) and works while the threads are still starting up.
   */
  inline?: (job: J) => R;
}

/**
 * Run `jobs` on `moduleUrl` worker threads (at most one job in flight per thread), optionally
 * also on the calling thread. `onResult` is called in completion order. Rejects on the first
 * failed job (the threads are terminated).
 */
export async function runPool<J, R>(
  moduleUrl: URL,
  jobs: readonly J[],
  onResult: (result: R, job: J) => void,
  opts: PoolOptions<J, R>,
): Promise<void> {
  if (jobs.length === 0) return;
  const transfer = opts.transfer ?? (() => []);
  const inline = opts.inline;
  const threadCount = Math.max(inline ? 0 : 1, Math.min(opts.workers - (inline ? 1 : 0), jobs.length));
  const threads: Worker[] = [];
  let next = 0;
  let completed = 0;
  try {
    await new Promise<void>((resolve, reject) => {
      let failed = false;
      const fail = (e: unknown) => {
        if (failed) return;
        failed = true;
        reject(e instanceof Error ? e : new Error(String(e)));
      };
      const finish = (result: R, job: J): boolean => {
        try {
          onResult(result, job);
        } catch (e) {
          fail(e);
          return false;
        }
        if (++completed === jobs.length) resolve();
        return true;
      };
      const feed = (w: Worker) => {
        if (failed || next >= jobs.length) return;
        const job = jobs[next++]!;
        w.once('message', (reply: WorkerReply<R>) => {
          if (!reply.ok) return fail(new Error(reply.error));
          if (finish(reply as unknown as R, job)) feed(w);
        });
        w.postMessage(job, transfer(job));
      };
      for (let i = 0; i < threadCount; i++) {
        const w = startModuleWorker(moduleUrl);
        threads.push(w);
        w.on('error', fail);
        w.on('exit', (code) => {
          if (code !== 0 && completed < jobs.length) fail(new Error(`worker thread exited with code ${code}`));
        });
        feed(w);
      }
      if (inline) {
        // The calling thread takes a job whenever it is free, yielding between jobs so that
        // worker replies are handled promptly.
        const step = () => {
          if (failed || next >= jobs.length) return;
          const job = jobs[next++]!;
          let result: R;
          try {
            result = inline(job);
          } catch (e) {
            return fail(e);
          }
          if (finish(result, job)) setImmediate(step);
        };
        setImmediate(step);
      }
    });
  } finally {
    await Promise.all(threads.map((w) => w.terminate()));
  }
}
