/**
 * The dashboard server's API (issue 10 §2, §4): runs listing and status, metric downsampling,
 * results, media serving, and refused traversal attempts. Loopback only.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { startUiServer, type UiServer } from '../../src/ui/server.ts';
import { deriveStatus, diffConfigs, flattenConfig } from '../../src/ui/runs.ts';
import { parseModelFolder } from '../../src/ui/results.ts';
import { FIXTURE, makeUiFixture } from '../fixtures/ui/make-fixture.ts';

let base: string; // temp folder: <base>/root is served, <base>/secret.txt is outside
let root: string;
let ui: UiServer;

before(async () => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-ui-'));
  root = path.join(base, 'root');
  await makeUiFixture(root);
  fs.writeFileSync(path.join(base, 'secret.txt'), 'TOP-SECRET');
  fs.writeFileSync(path.join(root, '.env'), 'TOKEN=TOP-SECRET');
  fs.symlinkSync(path.join(base, 'secret.txt'), path.join(root, 'results', 'escape.txt'));
  fs.symlinkSync(base, path.join(root, 'results', 'escape-dir'));
  ui = await startUiServer({ root, port: 0 });
});

after(async () => {
  await ui.close();
  fs.rmSync(base, { recursive: true, force: true });
});

/** A raw HTTP GET (the path is sent exactly as given, unlike fetch, which normalises `..`). */
function raw(p: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: ui.port, path: p, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}
async function json<T = any>(p: string): Promise<T> {
  const r = await raw(p);
  assert.equal(r.status, 200, `${p}: ${r.body.toString()}`);
  assert.match(String(r.headers['content-type']), /application\/json/);
  return JSON.parse(r.body.toString()) as T;
}

test('binds to loopback by default', () => {
  const addr = ui.server.address() as { address: string };
  assert.equal(addr.address, '127.0.0.1');
  assert.match(ui.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
});

test('projects and runs are found from the run folders, with heartbeat status', async () => {
  const projects = await json('/api/projects');
  assert.deepEqual(projects.map((p: any) => [p.name, p.runs]), [['default', 1], ['demo', 3], ['other', 1]]);
  const runs = await json('/api/runs?project=demo');
  assert.deepEqual(runs.map((r: any) => r.id), ['gamma3', 'beta22', 'alpha1'], 'newest first');
  const by = Object.fromEntries(runs.map((r: any) => [r.id, r]));
  assert.equal(by.alpha1.status, 'finished');
  assert.equal(by.beta22.status, 'running', 'heartbeat from a live pid on this host');
  assert.equal(by.gamma3.status, 'crashed', 'heartbeat "running" but the pid is gone');
  assert.match(by.gamma3.statusDetail, /is gone/);
  assert.equal(by.alpha1.step, 1190);
  assert.equal(by.alpha1.previews, 3);
  assert.ok(by.alpha1.keys.includes('loss') && by.alpha1.keys.includes('timing/step_time'));
  assert.equal(by.alpha1.last.step, 1190);
  const all = await json('/api/runs');
  assert.equal(all.length, 5);
  const bare = all.find((r: any) => r.id === 'bare9');
  assert.equal(bare.project, 'default');
  assert.equal(bare.status, 'unknown');
});

test('run details: config, previews by step, checkpoints, keys', async () => {
  const d = await json('/api/run?id=alpha1');
  assert.equal(d.config.project, 'demo');
  assert.deepEqual(d.previews.map((p: any) => p.step), FIXTURE.previewsAlpha1);
  assert.equal(d.previews[0].file, 'checkpoints/alpha1/samples/preview_000100.gif');
  assert.deepEqual(d.checkpoints.map((c: any) => c.step), [500, 1000]);
  assert.deepEqual(d.checkpoints[0].files, ['ema_0.9999_000500.safetensors', 'model000500.safetensors']);
  assert.ok(d.keys.includes('loss'));
  assert.equal((await raw('/api/run?id=nope')).status, 404);
  assert.equal((await raw('/api/run?id=..%2Fsecret')).status, 404);
  assert.equal((await raw('/api/run')).status, 400);
});

test('metrics: full series under the limit, downsampled above it, purged restarts, smoothing', async () => {
  const a = await json('/api/metrics?run=alpha1&key=loss');
  assert.equal(a.series.length, 1);
  assert.deepEqual(a.series[0].x, FIXTURE.alpha1Steps);
  assert.equal(a.series[0].total, 120);
  const lines = fs.readFileSync(path.join(root, 'checkpoints/alpha1/metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  a.series[0].y.forEach((v: number, i: number) => assert.ok(Math.abs(v - lines[i].loss) <= 1e-6 * lines[i].loss, `y[${i}]`));

  const b = await json('/api/metrics?run=beta22&run=alpha1&key=loss,grad_norm&points=500&smooth=0.8');
  assert.deepEqual(b.series.map((s: any) => [s.run, s.key]), [['beta22', 'loss'], ['beta22', 'grad_norm'], ['alpha1', 'loss'], ['alpha1', 'grad_norm']]);
  const bl = b.series[0];
  assert.equal(bl.total, 2000, '3000 records, 1000 of them superseded by the resume');
  assert.equal(bl.x.length, 500);
  assert.equal(bl.s.length, 500);
  for (let i = 1; i < bl.x.length; i++) assert.ok(bl.x[i] > bl.x[i - 1], 'x strictly increasing');
  assert.equal(bl.x[0], 0);
  assert.equal(bl.x[499], 1999);
  assert.equal(b.series[2].x.length, 120);
  assert.ok(b.keys.beta22.includes('loss_q0'));

  const g = await json('/api/metrics?run=gamma3&key=loss');
  assert.equal(g.series[0].total, 40, 'the torn last line of a crashed run is ignored');
  const wall = await json('/api/metrics?run=alpha1&key=loss&x=wall');
  assert.equal(wall.series[0].x[1] - wall.series[0].x[0], 10, 'seconds between records 10 steps apart');

  for (const bad of ['/api/metrics?run=alpha1', '/api/metrics?key=loss', '/api/metrics?run=alpha1&key=loss&smooth=1', '/api/metrics?run=alpha1&key=loss&x=foo', '/api/metrics?run=alpha1&key=loss&points=abc']) {
    assert.equal((await raw(bad)).status, 400, bad);
  }
  assert.equal((await raw('/api/metrics?run=zzz&key=loss')).status, 404);
});

test('a 100k-step metric file comes back as at most `points` points (server-side downsampling)', async () => {
  const big = path.join(root, 'checkpoints', 'huge1');
  fs.mkdirSync(big);
  fs.writeFileSync(path.join(big, 'config.json'), JSON.stringify({ project: 'perf', runId: 'huge1' }));
  const t0 = Date.parse('2024-01-01T00:00:00Z');
  const chunk: string[] = [];
  const fd = fs.openSync(path.join(big, 'metrics.jsonl'), 'w');
  for (let i = 0; i < 100_000; i++) {
    chunk.push(`{"step":${i},"time":"${new Date(t0 + i * 100).toISOString()}","loss":${(1 / (1 + i / 1000) + ((i * 7919) % 100) / 1e4).toPrecision(8)},"lr":0.0001}`);
    if (chunk.length === 10_000) {
      fs.writeSync(fd, chunk.join('\n') + '\n');
      chunk.length = 0;
    }
  }
  fs.closeSync(fd);
  const d = await json('/api/metrics?run=huge1&key=loss');
  assert.equal(d.points, 2000, 'default limit');
  assert.equal(d.series[0].total, 100_000);
  assert.ok(d.series[0].x.length <= 2000);
  assert.equal(d.series[0].x[0], 0);
  assert.equal(d.series[0].x[d.series[0].x.length - 1], 99_999);
  const small = await json('/api/metrics?run=huge1&key=loss&key=lr&points=150&smooth=0.99');
  for (const s of small.series) assert.ok(s.x.length <= 150 && s.s.length === s.x.length);
  const capped = await json('/api/metrics?run=huge1&key=loss&points=99999999');
  assert.ok(capped.series[0].x.length <= 20_000, 'points is capped');
  fs.rmSync(big, { recursive: true });
});

test('results: one row per evaluation folder with its metrics, videos and checkpoint', async () => {
  const rows = await json('/api/results?project=demo');
  assert.equal(rows.length, 3);
  const r = rows.find((x: any) => x.path === FIXTURE.evalAlpha1);
  assert.equal(r.runId, 'alpha1');
  assert.equal(r.checkpoint, 'ema_0.9999_001000');
  assert.equal(r.step, 1000);
  assert.equal(r.sampler, 'heun-80-inf-0-1-1000-0.002-7-50');
  assert.equal(r.scheme, 'autoreg');
  assert.equal(r.T, 50);
  assert.deepEqual(r.metrics, { 'fvd-10-0': FIXTURE.fvdAlpha1, 'kvd-10-0': 0.0123, 'minADE-10': 4.5, 'color-acc-10': 0.87, 'loss-5': 0.0421 });
  assert.deepEqual(r.videos, [`${FIXTURE.evalAlpha1}/videos/1_1.gif`]);
  assert.equal(r.samples, 1);
  const ddpm = rows.find((x: any) => x.sampler === 'ddpm');
  assert.equal(ddpm.checkpoint, 'model000500');
  assert.equal(ddpm.step, 500);
  assert.equal((await json('/api/results?project=other')).length, 0);
  const sums = await json('/api/summaries');
  assert.equal(sums[0].name, 'ball');
  assert.deepEqual(sums[0].table.header, ['nickname', 'wandb', 'fvd-10-0', 'loss-5']);
  assert.deepEqual(sums[0].table.rows[1], ['beta', 'beta22', '99.25', '']);
  assert.equal(sums[0].report, 'summarized/ball/report.html');
});

test('config diff between two runs', async () => {
  const d = await json('/api/diff?a=alpha1&b=beta22');
  assert.deepEqual(d.rows, [{ key: 'batchSize', a: 4, b: 8 }, { key: 'lr', a: 0.0001, b: 0.0002 }]);
  assert.ok(d.same > 5);
  const all = await json('/api/diff?a=alpha1&b=beta22&all=1');
  assert.ok(all.rows.some((r: any) => r.key === 'runId'));
  assert.equal((await raw('/api/diff?a=alpha1&b=bare9')).status, 404, 'no config.json');
});

test('media are served with types, revalidation and byte ranges', async () => {
  const rel = 'checkpoints/alpha1/samples/preview_000100.gif';
  const bytes = fs.readFileSync(path.join(root, rel));
  const r = await raw('/files/' + rel);
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'image/gif');
  assert.equal(r.headers['x-content-type-options'], 'nosniff');
  assert.deepEqual(r.body, bytes);
  const again = await raw('/files/' + rel, { 'If-None-Match': String(r.headers.etag) });
  assert.equal(again.status, 304);
  const part = await raw('/files/' + rel, { Range: 'bytes=6-15' });
  assert.equal(part.status, 206);
  assert.equal(part.headers['content-range'], `bytes 6-15/${bytes.length}`);
  assert.deepEqual(part.body, bytes.subarray(6, 16));
  const tail = await raw('/files/' + rel, { Range: 'bytes=-4' });
  assert.deepEqual(tail.body, bytes.subarray(bytes.length - 4));
  assert.equal((await raw('/files/' + rel, { Range: `bytes=${bytes.length + 5}-` })).status, 416);
  const head = await raw('/files/' + rel, {}, 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  // percent-encoded names work
  const enc = await raw('/files/checkpoints/alpha1/samples/preview%5F000100.gif');
  assert.equal(enc.status, 200);
  // run-folder HTML is sandboxed: no script of it runs
  const rep = await raw('/files/summarized/ball/report.html');
  assert.equal(rep.status, 200);
  assert.match(String(rep.headers['content-security-policy']), /sandbox/);
  assert.match(String(rep.headers['content-security-policy']), /default-src 'none'/);
  // the page and uPlot come from this server
  const page = await raw('/');
  assert.match(page.body.toString(), /\/static\/uPlot\.iife\.min\.js/);
  assert.doesNotMatch(page.body.toString(), /https?:\/\//, 'no external URL in the page');
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'; script-src 'self'/);
  assert.equal((await raw('/static/uPlot.iife.min.js')).status, 200);
  assert.equal((await raw('/static/app.js')).status, 200);
});

test('traversal and other escapes are refused', async () => {
  const attempts = [
    '/files/../secret.txt',
    '/files/%2e%2e/secret.txt',
    '/files/%2E%2E%2Fsecret.txt',
    '/files/checkpoints/../../secret.txt',
    '/files/checkpoints/..%2f..%2fsecret.txt',
    '/files/checkpoints/%2e%2e/%2e%2e/secret.txt',
    '/files/..%5csecret.txt',
    '/files/checkpoints\\..\\..\\secret.txt',
    '/files//etc/passwd',
    '/files/%2fetc%2fpasswd',
    '/files/results/escape.txt', // symlink pointing outside the root
    '/files/results/escape-dir/secret.txt', // symlinked folder outside the root
    '/files/.env', // dot-files
    '/files/checkpoints/alpha1/./config.json',
    '/files/checkpoints/alpha1/config.json%00.gif',
    '/files/checkpoints/alpha1/model000500.safetensors', // type not served
    '/files/%zz',
    '/static/../server.ts',
    '/static/%2e%2e/server.ts',
    '/../../etc/passwd',
  ];
  for (const p of attempts) {
    const r = await raw(p);
    assert.ok(r.status === 400 || r.status === 403 || r.status === 404, `${p} → ${r.status}`);
    assert.doesNotMatch(r.body.toString(), /TOP-SECRET|root:x:0/, p);
  }
  // the same file through a legitimate path is fine
  assert.equal((await raw('/files/checkpoints/alpha1/config.json')).status, 200);
});

test('only GET/HEAD, and only loopback Host names while bound to loopback', async () => {
  const post = await raw('/api/runs', {}, 'POST');
  assert.equal(post.status, 405);
  const evil = await raw('/api/runs', { Host: 'evil.example:6006' });
  assert.equal(evil.status, 403, 'DNS-rebinding Host refused');
  assert.equal((await raw('/api/runs', { Host: `localhost:${ui.port}` })).status, 200);
  assert.equal((await raw('/api/nothing')).status, 404);
});

test('heartbeat status rules', () => {
  const now = Date.parse('2024-05-01T12:00:00Z');
  const base = { now, host: 'me', staleMs: 600_000 };
  const alive = (pid: number) => pid === 42;
  const hb = (o: object) => ({ status: 'running', step: 1, pid: 42, host: 'me', updatedAt: '2024-05-01T11:59:00Z', ...o });
  assert.deepEqual(deriveStatus(hb({}), { ...base, isAlive: alive }), { status: 'running' });
  assert.equal(deriveStatus(hb({ updatedAt: '2024-05-01T09:00:00Z' }), { ...base, isAlive: alive }).status, 'running', 'old heartbeat, live pid on this host (long log interval)');
  assert.equal(deriveStatus(hb({ pid: 7 }), { ...base, isAlive: alive }).status, 'crashed', 'pid gone');
  assert.equal(deriveStatus(hb({ host: 'other' }), { ...base, isAlive: alive }).status, 'running', 'fresh heartbeat from another host');
  const stale = deriveStatus(hb({ host: 'other', updatedAt: '2024-05-01T11:40:00Z' }), { ...base, isAlive: alive });
  assert.equal(stale.status, 'crashed');
  assert.match(stale.detail!, /20 min/);
  assert.equal(deriveStatus(hb({ host: undefined, updatedAt: undefined }), base).status, 'crashed');
  assert.equal(deriveStatus({ status: 'finished' }, base).status, 'finished');
  assert.equal(deriveStatus({ status: 'stopped' }, base).status, 'stopped');
  assert.deepEqual(deriveStatus({ status: 'crashed', error: 'Loss is nan' }, base), { status: 'crashed', detail: 'Loss is nan' });
  assert.equal(deriveStatus(null, base).status, 'unknown');
});

test('config flattening/diff and results folder names', () => {
  assert.deepEqual(flattenConfig({ a: 1, m: { c: [1, 2], d: { e: null } }, z: {} }), { a: 1, 'm.c': [1, 2], 'm.d.e': null, z: {} });
  assert.deepEqual(diffConfigs({ a: 1, b: [1], runId: 'x' }, { a: 1, b: [2], c: 3, runId: 'y' }).rows, [{ key: 'b', a: [1], b: [2] }, { key: 'c', b: 3 }]);
  assert.deepEqual(parseModelFolder('ema_0.9999_050000_heun-80-inf-0-1-1000-0.002-7-50_respace100'), { checkpoint: 'ema_0.9999_050000', sampler: 'heun-80-inf-0-1-1000-0.002-7-50', respacing: '100', step: 50000 });
  assert.deepEqual(parseModelFolder('model_latest_1234_ddim'), { checkpoint: 'model_latest_1234', sampler: 'ddim', respacing: null, step: 1234 });
  assert.deepEqual(parseModelFolder('something'), { checkpoint: 'something', sampler: '', respacing: null, step: null });
});
