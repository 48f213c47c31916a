/**
 * Writing bouncing-balls datasets (REFERENCE_SPEC §1.1.1–§1.1.2): layout, config.json, per-frame
 * arrays, one RNG stream for train then test, parallel rendering, resume after interruption.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileFormatError, OptionError } from '../../src/util/errors.ts';
import { NumpyRandomState } from '../../src/util/mt19937.ts';
import { generateBalls } from '../../src/data/balls-generate.ts';
import { renderBallFrames, simulateBalls } from '../../src/data/balls.ts';
import { readNpy } from '../../src/data/npy.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-balls-'));
const small = { frames: 600, chunkSize: 200, resolution: 16, seed: 3 };

/** All files under `dir` (relative path → bytes), config.json without save_dir. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        let content = fs.readFileSync(p).toString('base64');
        if (e.name === 'config.json') {
          const cfg = JSON.parse(fs.readFileSync(p, 'utf8'));
          delete cfg.save_dir;
          content = JSON.stringify(cfg);
        }
        out.set(path.relative(dir, p), content);
      }
    }
  };
  walk(dir);
  return out;
}

test('layout, config.json and contents: train then test from one RNG stream', async () => {
  const out = path.join(tmp, 'a');
  const r = await generateBalls({ out, ...small, workers: 1 });
  assert.deepEqual(r, { out, renderedChunks: 6, keptChunks: 0, frames: 600 });
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
  assert.deepEqual(Object.keys(cfg), ['save_dir', 'T_total', 'chunk_size', 'resolution', 'seed', 'num_balls', 'color_shift', 'dtype', 'format_version']);
  assert.deepEqual(cfg, { save_dir: out, T_total: 600, chunk_size: 200, resolution: 16, seed: 3, num_balls: 2, color_shift: false, dtype: 'uint8', format_version: 1 });
  const rng = new NumpyRandomState(3);
  for (const split of ['train', 'test']) {
    const dir = path.join(out, split, '3');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['0.npy', '1.npy', '2.npy', 'ball_colors.npy', 'ball_positions.npy', 'ball_velocities.npy']);
    const tr = simulateBalls(rng, { frames: 600 });
    const pos = readNpy(path.join(dir, 'ball_positions.npy'));
    assert.deepEqual(pos.shape, [600, 2, 2]);
    assert.deepEqual(pos.data, tr.positions);
    assert.deepEqual(readNpy(path.join(dir, 'ball_velocities.npy')).data, tr.velocities);
    const col = readNpy(path.join(dir, 'ball_colors.npy'));
    assert.deepEqual(col.shape, [600, 2, 3]);
    assert.deepEqual(col.data, tr.colors);
    const chunk = readNpy(path.join(dir, '1.npy'));
    assert.equal(chunk.dtype, '|u1');
    assert.deepEqual(chunk.shape, [200, 16, 16, 3]);
    const want = new Uint8Array(200 * 16 * 16 * 3);
    renderBallFrames(tr.positions.subarray(200 * 4), tr.colors.subarray(200 * 6), 2, 200, 16, want);
    assert.deepEqual(chunk.data, want);
  }
});

test('float64 output and colour shift; 2 worker threads give the same files as 1', async () => {
  const one = path.join(tmp, 'f8-1');
  const two = path.join(tmp, 'f8-2');
  await generateBalls({ out: one, ...small, dtype: 'float64', colorShift: true, workers: 1 });
  const r = await generateBalls({ out: two, ...small, dtype: 'float64', colorShift: true, workers: 2 });
  assert.equal(r.renderedChunks, 6);
  assert.deepEqual(snapshot(two), snapshot(one));
  const chunk = readNpy(path.join(two, 'test', '3', '2.npy'));
  assert.equal(chunk.dtype, '<f8');
  const blueMax = Math.max(...Array.from(chunk.data as Float64Array).filter((_, k) => k % 3 === 2));
  assert.ok(blueMax > 0.6 && blueMax <= 1, `blue drifts up (${blueMax})`);
});

test('an interrupted run resumes and produces identical files', async () => {
  const full = path.join(tmp, 'full');
  await generateBalls({ out: full, ...small, workers: 1 });
  const part = path.join(tmp, 'part');
  let calls = 0;
  await assert.rejects(
    generateBalls({
      out: part,
      ...small,
      workers: 1,
      onProgress: () => {
        if (++calls === 3) throw new Error('interrupted');
      },
    }),
    /interrupted/,
  );
  // Leftovers of a crash: a stale temporary file and a truncated chunk.
  fs.writeFileSync(path.join(part, 'train', '3', '.2.npy.999999.0.tmp'), 'partial');
  const n = fs.readdirSync(path.join(part, 'train', '3')).filter((f) => /^\d+\.npy$/.test(f)).length;
  assert.ok(n >= 1 && n < 3, `some chunks were written before the interruption (${n})`);
  fs.truncateSync(path.join(part, 'train', '3', '0.npy'), 100);
  const r = await generateBalls({ out: part, ...small, workers: 2 });
  assert.ok(r.keptChunks >= 1 && r.renderedChunks + r.keptChunks === 6, JSON.stringify(r));
  assert.deepEqual(snapshot(part), snapshot(full));
  const again = await generateBalls({ out: part, ...small, workers: 1 });
  assert.equal(again.renderedChunks, 0);
  assert.equal(again.keptChunks, 6);
});

test('bad options are rejected naming the flag; a folder made with other settings is refused', async () => {
  const out = path.join(tmp, 'bad');
  await assert.rejects(generateBalls({ out, frames: 1000, chunkSize: 300 }), (e: Error) => e instanceof OptionError && /--chunk-size/.test(e.message) && /divisor of --frames 1000/.test(e.message));
  await assert.rejects(generateBalls({ out, frames: 0 }), /--frames/);
  await assert.rejects(generateBalls({ out, frames: 10, chunkSize: 10, resolution: 2.5 }), /--resolution/);
  await assert.rejects(generateBalls({ out, frames: 10, chunkSize: 10, dtype: 'int16' as never }), /--dtype/);
  await assert.rejects(generateBalls({ out, frames: 10, chunkSize: 10, numBalls: 40 }), /--num-balls/);
  await assert.rejects(generateBalls({ out, frames: 10, chunkSize: 10, workers: 0 }), /--workers/);
  await assert.rejects(generateBalls({ out: '', frames: 10 }), /--out/);
  assert.equal(fs.existsSync(out), false, 'nothing written for bad options');
  const made = path.join(tmp, 'a');
  await assert.rejects(
    generateBalls({ out: made, ...small, colorShift: true }),
    (e: Error) => e instanceof FileFormatError && /color_shift=false but this run asks for true/.test(e.message),
  );
});
