/**
 * Chunked encode/decode with the scaling factor (REFERENCE_SPEC §5.11), the uint8 conversion of
 * decoded frames (§7.2), and the decoded-ground-truth cache shared by concurrent jobs (§8.2, §9.4).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Generator, liveTensorCount, randn, tensor, tidy } from '../../src/engine/index.ts';
import { AutoencoderKL } from '../../src/vae/autoencoder-kl.ts';
import { TINY_VAE_CONFIG } from '../../src/vae/config.ts';
import { decodedToUint8, decodeLatents, encodeFrames } from '../../src/vae/latent-space.ts';
import { decodedCache, decodedCacheKey, decodedCachePath, type DecodedVideo } from '../../src/vae/decoded-cache.ts';
import { rgb24ToUnit } from '../../src/vae/frame-encoder.ts';
import { readNpy } from '../../src/data/npy.ts';
import { OptionError } from '../../src/util/errors.ts';
import { maxAbsDiff } from './helpers.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-vae-latent-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('decodeLatents: [B, T, 4, h, w] → [B, T, 3, 2h, 2w]; ÷ scaling; chunked equals unchunked', () => {
  const vae = AutoencoderKL.random(TINY_VAE_CONFIG, 11);
  const before = liveTensorCount();
  tidy(() => {
    const z = randn([2, 5, 4, 6, 8], new Generator(3));
    const seen: [number, number][] = [];
    const whole = decodeLatents(vae, z, { chunkSize: 100 });
    assert.deepEqual(whole.shape, [2, 5, 3, 12, 16]);
    assert.equal(whole.dtype, 'float32');
    for (const chunk of [1, 3, 4]) {
      const parts = decodeLatents(vae, z, { chunkSize: chunk, onProgress: (d, n) => seen.push([d, n]) });
      assert.ok(maxAbsDiff(parts.toFloat32Array(), whole.toFloat32Array()) < 1e-5, `chunk ${chunk}`);
    }
    assert.deepEqual(seen.slice(0, 10).map(([d]) => d), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert.deepEqual(seen.slice(10, 14), [[3, 10], [6, 10], [9, 10], [10, 10]]);
    // Decoding divides by the scaling factor 0.13025 before the VAE decoder.
    const direct = vae.decode(z.reshape([10, 4, 6, 8]).div(0.13025)).reshape([2, 5, 3, 12, 16]);
    assert.ok(maxAbsDiff(direct.toFloat32Array(), whole.toFloat32Array()) < 1e-5);
    // A plain [N, 4, h, w] batch works too.
    assert.deepEqual(decodeLatents(vae, z.select(0, 0)).shape, [5, 3, 12, 16]);
    assert.throws(() => decodeLatents(vae, randn([2, 3, 6, 8])), OptionError);
    assert.throws(() => decodeLatents(vae, z, { chunkSize: 0 }), OptionError);
  });
  assert.equal(liveTensorCount(), before);
  vae.dispose();
});

test('encodeFrames: posterior mean × scaling; seeded samples; chunked equals unchunked', () => {
  const vae = AutoencoderKL.random(TINY_VAE_CONFIG, 12);
  tidy(() => {
    const x = randn([3, 2, 3, 8, 8], new Generator(4)).clamp(-1, 1);
    const mean = encodeFrames(vae, x, { posterior: 'mean', chunkSize: 100 });
    assert.deepEqual(mean.shape, [3, 2, 4, 4, 4]);
    const post = vae.encode(x.reshape([6, 3, 8, 8]));
    assert.ok(maxAbsDiff(mean.toFloat32Array(), post.mean.mul(0.13025).toFloat32Array()) < 1e-6);
    assert.ok(maxAbsDiff(encodeFrames(vae, x, { posterior: 'mean', chunkSize: 4 }).toFloat32Array(), mean.toFloat32Array()) < 1e-5);
    const s1 = encodeFrames(vae, x, { generator: new Generator(9) });
    const s2 = encodeFrames(vae, x, { generator: new Generator(9) });
    assert.deepEqual(s1.toFloat32Array(), s2.toFloat32Array());
    assert.ok(maxAbsDiff(s1.toFloat32Array(), mean.toFloat32Array()) > 1e-4); // a sample, not the mean
    assert.throws(() => encodeFrames(vae, x, { posterior: 'mode' as never }), OptionError);
  });
  vae.dispose();
});

test('decodedToUint8 = floor((clamp(x, −1, 1) + 1)/2 · 255); rgb24ToUnit = 2·v/255 − 1', () => {
  const xs = [-2, -1, -0.999, -0.5, 0, 0.00392, 0.5, 0.99, 1, 3];
  const u = tidy(() => decodedToUint8(tensor(xs)).toTypedArray());
  assert.deepEqual([...u], xs.map((x) => Math.floor(((Math.min(1, Math.max(-1, x)) + 1) / 2) * 255)));
  const rgb = Uint8Array.from([0, 255, 128, 1, 2, 3]); // 2 frames of 1×1 RGB
  assert.deepEqual([...rgb24ToUnit(rgb, 2, 1)], [...rgb].map((v) => Math.fround(2 * (v / 255) - 1)));
});

test('decodedCache: decode once, reuse; concurrent jobs wait; stale locks are broken', async () => {
  const dir = path.join(tmp, 'cache');
  const key = decodedCacheKey({ T: 20, config: 'default', lower: 0, upper: null, evalOnTrain: false });
  assert.equal(key, '20_default_0_None_False');
  assert.equal(decodedCacheKey({ T: 5, config: 'chunked', lower: 10, upper: 90, evalOnTrain: true, dataset: 'datasets/my latent' }), 'my_latent_5_chunked_10_90_True');
  const video = (v: number): DecodedVideo => ({ data: new Uint8Array(2 * 3 * 4 * 4).fill(v), shape: [2, 3, 4, 4] });
  let calls = 0;
  const slow = async () => {
    calls++;
    await new Promise((r) => setTimeout(r, 150));
    return video(7);
  };
  // Four "jobs" ask for the same item at once: one decodes, the others wait for its file.
  const got = await Promise.all([0, 1, 2, 3].map(() => decodedCache(dir, key, 3, slow, { pollMs: 10 })));
  assert.equal(calls, 1);
  assert.deepEqual(got.map((g) => g.fromCache).sort(), [false, true, true, true]);
  for (const g of got) assert.deepEqual([...g.shape], [2, 3, 4, 4]);
  const file = decodedCachePath(dir, key, 3);
  assert.equal(path.basename(file), 'sample_0003.npy');
  assert.deepEqual(readNpy(file).shape, [2, 3, 4, 4]);
  assert.equal(fs.existsSync(`${file}.lock`), false);
  const again = await decodedCache(dir, key, 3, () => {
    throw new Error('must not decode again');
  });
  assert.equal(again.fromCache, true);
  assert.equal(again.data[0], 7);

  // A failing decode leaves neither a file nor a lock.
  await assert.rejects(decodedCache(dir, key, 4, () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(fs.existsSync(decodedCachePath(dir, key, 4)), false);
  assert.equal(fs.existsSync(`${decodedCachePath(dir, key, 4)}.lock`), false);

  // A lock left by a dead process on this host is broken at once.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  const f5 = decodedCachePath(dir, key, 5);
  fs.writeFileSync(`${f5}.lock`, JSON.stringify({ host: os.hostname(), pid: dead, time: new Date().toISOString() }));
  const r5 = await decodedCache(dir, key, 5, () => video(5), { pollMs: 10 });
  assert.equal(r5.fromCache, false);
  assert.equal(fs.existsSync(`${f5}.lock`), false);

  // A live owner: wait, then give up at the timeout with a message naming the lock.
  const f6 = decodedCachePath(dir, key, 6);
  fs.writeFileSync(`${f6}.lock`, JSON.stringify({ host: os.hostname(), pid: process.pid, time: new Date().toISOString() }));
  await assert.rejects(decodedCache(dir, key, 6, () => video(6), { timeoutMs: 120, staleMs: 60_000, pollMs: 10 }), /sample_0006\.npy\.lock: another job/);
  fs.rmSync(`${f6}.lock`);
  await assert.rejects(decodedCache(dir, key, 6, () => ({ data: new Uint8Array(3), shape: [2, 2] })), /uint8 expected/);
});
