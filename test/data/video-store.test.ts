/**
 * Chunked video store (REFERENCE_SPEC §2.2, §2.3 chunk arithmetic, §2.5 DATA_ROOT): reference
 * float64 chunks written by NumPy (test/fixtures/data/ref-f8, value formula in make-data.py),
 * uint8 chunks, windows across chunk and segment boundaries, validation errors, local copies.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileFormatError } from '../../src/util/errors.ts';
import { VideoStore } from '../../src/data/video-store.ts';
import { writeNpy } from '../../src/data/npy.ts';
import { ensureLocalCopy, localMirrorPath } from '../../src/data/local-cache.ts';

const REF = path.join(import.meta.dirname, '../fixtures/data/ref-f8');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-store-'));

/** The fixture's stored value (in [0, 1]) of frame t, row y, column x, channel c. */
const refValue = (split: string, t: number, y: number, x: number, c: number) => ((t * 7 + y * 3 + x * 5 + c * 2 + (split === 'test' ? 4 : 0)) % 11) / 10;

/** Check a `[T, 3, 4, 4]` block against the formula, mapped x ↦ 2x − 1. */
function checkBlock(data: Float32Array, split: string, start: number, T: number): void {
  assert.equal(data.length, T * 3 * 16);
  for (let t = 0; t < T; t++)
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 4; y++)
        for (let x = 0; x < 4; x++) {
          const got = data[((t * 3 + c) * 4 + y) * 4 + x]!;
          assert.equal(got, Math.fround(2 * refValue(split, start + t, y, x, c) - 1), `${split} frame ${start + t} (${c},${y},${x})`);
        }
}

function copyDir(src: string, dst: string): void {
  fs.cpSync(src, dst, { recursive: true });
}

test('reads reference float64 chunks as [T, C, H, W] in [-1, 1], across chunk boundaries', () => {
  const store = VideoStore.open(REF, { dataRoot: null });
  const info = store.info('train');
  assert.deepEqual(
    { frames: info.frames, chunks: info.chunks, chunkSize: info.chunkSize, h: info.height, w: info.width, c: info.channels, dtype: info.dtype },
    { frames: 24, chunks: 3, chunkSize: 8, h: 4, w: 4, c: 3, dtype: '<f8' },
  );
  assert.deepEqual(store.frameShape('test'), [3, 4, 4]);
  const win = store.readFrames('train', 5, 6); // frames 5…10: chunks 0 and 1
  assert.deepEqual(win.shape, [6, 3, 4, 4]);
  checkBlock(win.data, 'train', 5, 6);
  checkBlock(store.readFrames('test', 0, 24).data, 'test', 0, 24); // every chunk
  checkBlock(store.readFrames('test', 23, 1).data, 'test', 23, 1);
  assert.throws(() => store.readFrames('train', 20, 5), /inside \[0, 24\)/);
  store.validate();
});

test('small segments and a tiny cache give the same frames (LRU eviction)', () => {
  const store = VideoStore.open(REF, { dataRoot: null, segmentBytes: 3 * 48 * 4, cacheBytes: 2 * 3 * 48 * 4 });
  for (const [s, T] of [[0, 24], [7, 3], [2, 13], [22, 2], [0, 1]] as const) checkBlock(store.readFrames('train', s, T).data, 'train', s, T);
});

test('uint8 chunks: v/255 then 2x − 1; any chunk size', () => {
  const root = path.join(tmp, 'u8');
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(root, 'config.json'), JSON.stringify({ T_total: 15, chunk_size: 5, dtype: 'uint8' }));
  const value = (t: number, p: number) => (t * 17 + p * 7) % 256;
  for (const split of ['train', 'test'])
    for (let k = 0; k < 3; k++) {
      const data = new Uint8Array(5 * 2 * 3 * 1);
      for (let f = 0; f < 5; f++) for (let p = 0; p < 6; p++) data[f * 6 + p] = value(k * 5 + f, p);
      writeNpy(path.join(root, split, '0', `${k}.npy`), { dtype: '|u1', shape: [5, 2, 3, 1], data });
    }
  const store = VideoStore.open(root, { dataRoot: null });
  assert.deepEqual(store.frameShape('train'), [1, 2, 3]);
  const win = store.readFrames('train', 3, 9);
  for (let t = 0; t < 9; t++) for (let p = 0; p < 6; p++) assert.equal(win.data[t * 6 + p], Math.fround(2 * (value(3 + t, p) / 255) - 1));
});

test('config.json and files are validated with errors naming the file and the mismatch', () => {
  const mk = (name: string, mutate: (dir: string) => void) => {
    const dir = path.join(tmp, name);
    copyDir(REF, dir);
    mutate(dir);
    return dir;
  };
  const cfg = (dir: string, patch: object) => {
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), ...patch }));
  };
  const fails = (dir: string, re: RegExp, fn: (s: VideoStore) => unknown = (s) => s.info('train')) =>
    assert.throws(() => fn(VideoStore.open(dir, { dataRoot: null })), (e: Error) => e instanceof FileFormatError && re.test(e.message), re.source);

  fails(mk('noconfig', (d) => fs.rmSync(path.join(d, 'config.json'))), /config\.json: missing dataset config/);
  fails(mk('badjson', (d) => fs.writeFileSync(path.join(d, 'config.json'), '{oops')), /config\.json: invalid JSON/);
  fails(mk('nodiv', (d) => cfg(d, { chunk_size: 7 })), /config\.json: chunk_size 7 does not divide T_total 24/);
  fails(mk('nototal', (d) => cfg(d, { T_total: 'many' })), /config\.json: expected a positive integer for "T_total"/);
  fails(mk('more', (d) => cfg(d, { T_total: 32 })), /train\/0\/3\.npy: missing chunk 3 of 4 \(config\.json: T_total 32, chunk_size 8\)/);
  fails(mk('fewer', (d) => cfg(d, { T_total: 16 })), /train\/0\/2\.npy: unexpected chunk beyond the 2 chunks/);
  fails(mk('res', (d) => cfg(d, { resolution: 32 })), /0\.npy: frames are 4×4 but config\.json says resolution 32/);
  fails(mk('nosplit', (d) => fs.rmSync(path.join(d, 'test'), { recursive: true })), /test\/0: missing test split/, (s) => s.info('test'));
  fails(mk('chunkk', (d) => cfg(d, { T_total: 48, chunk_size: 16 })), /0\.npy: chunk shape \(8, 4, 4, 3\) is not \(chunk_size=16/);
  const odd = mk('oddshape', (d) => writeNpy(path.join(d, 'train', '0', '1.npy'), { dtype: '<f8', shape: [8, 4, 4, 1], data: new Float64Array(128) }));
  fails(odd, /train\/0\/1\.npy: chunk is \(8, 4, 4, 1\) <f8 but chunk 0 is \(8, 4, 4, 3\) <f8/, (s) => s.readFrames('train', 6, 4));
  fails(odd, /1\.npy: chunk is/, (s) => {
    s.validate();
    return s.info('train');
  });
  const cut = mk('cut', (d) => fs.truncateSync(path.join(d, 'train', '0', '2.npy'), 500));
  fails(cut, /train\/0\/2\.npy: truncated \.npy data/, (s) => s.readFrames('train', 16, 2));
  // Frames before the damaged chunk stay readable.
  checkBlock(VideoStore.open(cut, { dataRoot: null }).readFrames('train', 0, 16).data, 'train', 0, 16);
});

test('the reference maze layout without the seed folder is accepted', () => {
  const dir = path.join(tmp, 'flat');
  copyDir(REF, dir);
  for (const split of ['train', 'test']) {
    for (const f of fs.readdirSync(path.join(dir, split, '0'))) fs.renameSync(path.join(dir, split, '0', f), path.join(dir, split, f));
    fs.rmdirSync(path.join(dir, split, '0'));
  }
  checkBlock(VideoStore.open(dir, { dataRoot: null }).readFrames('test', 4, 10).data, 'test', 4, 10);
});

test('DATA_ROOT: chunks are copied on first access to <DATA_ROOT>/<path>, no lock files left', () => {
  const shared = path.join(tmp, 'shared', 'datasets', 'ref');
  copyDir(REF, shared);
  const dataRoot = path.join(tmp, 'local');
  const store = VideoStore.open(shared, { dataRoot });
  const local = localMirrorPath(shared, dataRoot);
  assert.equal(store.localRoot, local);
  assert.ok(local.startsWith(dataRoot));
  assert.equal(localMirrorPath('datasets/ball_stn', '/scratch'), '/scratch/datasets/ball_stn');
  checkBlock(store.readFrames('train', 6, 4).data, 'train', 6, 4);
  assert.deepEqual(fs.readdirSync(path.join(local, 'train', '0')).sort(), ['0.npy', '1.npy']);
  assert.deepEqual(fs.readFileSync(path.join(local, 'train', '0', '1.npy')), fs.readFileSync(path.join(shared, 'train', '0', '1.npy')));
  assert.equal(fs.existsSync(path.join(local, 'test')), false);
  // No .lock files anywhere, and none next to the shared data.
  const all = fs.readdirSync(tmp, { recursive: true }) as string[];
  assert.deepEqual(all.filter((f) => f.endsWith('.lock')), []);
});

test('DATA_ROOT locks: a dead owner is taken over, a live owner makes others wait (timeout)', () => {
  const src = path.join(REF, 'train', '0', '0.npy');
  const dest = path.join(tmp, 'locks', 'a.npy');
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.writeFileSync(`${dest}.lock`, `${os.hostname()} 999999999\n`);
  ensureLocalCopy(src, dest);
  assert.deepEqual(fs.readFileSync(dest), fs.readFileSync(src));
  assert.equal(fs.existsSync(`${dest}.lock`), false);
  const dest2 = path.join(tmp, 'locks', 'b.npy');
  fs.writeFileSync(`${dest2}.lock`, `${os.hostname()} ${process.pid}\n`); // held by a live process (us)
  assert.throws(() => ensureLocalCopy(src, dest2, { timeoutMs: 200 }), /b\.npy: timed out after 200 ms waiting for the lock/);
  assert.equal(fs.existsSync(dest2), false);
});

test('DATA_ROOT copies are safe with concurrent processes', async () => {
  const shared = path.join(tmp, 'shared2', 'ref');
  copyDir(REF, shared);
  const dataRoot = path.join(tmp, 'local2');
  const child = path.join(tmp, 'child.mts');
  const storeUrl = new URL('../../src/data/video-store.ts', import.meta.url).href;
  fs.writeFileSync(
    child,
    `import { VideoStore } from ${JSON.stringify(storeUrl)};\n` +
      `const s = VideoStore.open(${JSON.stringify(shared)});\n` +
      `let sum = 0; for (const split of ['train', 'test']) for (const v of s.readFrames(split, 0, 24).data) sum += v;\n` +
      `console.log(sum.toFixed(4));\n`,
  );
  const run = () =>
    new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, ['--import', 'tsx', child], { cwd: path.join(import.meta.dirname, '../..'), env: { ...process.env, DATA_ROOT: dataRoot } });
      let out = '';
      let err = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (err += d));
      p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(err))));
    });
  const sums = await Promise.all([run(), run(), run()]);
  assert.equal(new Set(sums).size, 1);
  const local = localMirrorPath(shared, dataRoot);
  for (const split of ['train', 'test'])
    for (let k = 0; k < 3; k++) {
      const rel = path.join(split, '0', `${k}.npy`);
      assert.deepEqual(fs.readFileSync(path.join(local, rel)), fs.readFileSync(path.join(shared, rel)));
    }
  const left = (fs.readdirSync(local, { recursive: true }) as string[]).filter((f) => /\.(lock|tmp)$/.test(f));
  assert.deepEqual(left, []);
});
