import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readGifInfo } from '../../src/media/gif-read.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const runExample = (name: string, ...args: string[]) =>
  execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'examples', name), ...args], { cwd: root, encoding: 'utf8' });

test('examples/train-and-sample.ts trains, samples and writes a GIF through the library API', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-ex1-'));
  const log = runExample('train-and-sample.ts', out, '2');
  assert.match(log, /trained 2 steps/);
  assert.equal(readGifInfo(path.join(out, 'sample.gif')).frameCount, 20);
});

test('examples/stream-metrics.ts scores shifted ground truth with the ball metrics', () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-ex2-'));
  const log = runExample('stream-metrics.ts', out);
  const m = /minADE ([\d.]+)\s+colour accuracy ([\d.]+)/.exec(log);
  assert.ok(m, log);
  assert.ok(Number(m[1]) > 0, 'a one-frame shift is a wrong prediction of motion');
});
