/**
 * Reference checkpoints (REFERENCE_SPEC §6.7) and replay_state.pt (§3.2), from fixtures written
 * by test/fixtures/io/make-torch-fixtures.py with PyTorch 1.13.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileFormatError } from '../../src/util/errors.ts';
import { toFloat64Array } from '../../src/io/raw-tensor.ts';
import {
  findLatestReferenceCheckpoint,
  findReferenceEmaCheckpoints,
  parseReferenceCheckpointName,
  parseResumeStep,
  readReferenceCheckpoint,
  readReferenceReplayState,
  writeReferenceReplayState,
} from '../../src/io/reference-checkpoint.ts';
import { writeTorchFile } from '../../src/io/torch-pickle.ts';

const FIX = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/io');
const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'torch-expected.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-ref-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));

test('model checkpoint: state dict (reference names, identity mapping), config, step', () => {
  const ck = readReferenceCheckpoint(path.join(FIX, 'model000123.pt'));
  assert.equal(ck.step, 123);
  assert.deepEqual(ck.config, expected.model.config);
  assert.deepEqual(Object.keys(ck.stateDict), expected.model.keys_in_order);
  assert.ok(Object.keys(ck.stateDict).includes('input_blocks.0.0.weight'));
  for (const [k, want] of Object.entries<{ dtype: string; shape: number[]; values: number[] }>(expected.model.state_dict)) {
    const t = ck.stateDict[k]!;
    assert.equal(t.dtype, want.dtype);
    assert.deepEqual(t.shape, want.shape);
    assert.deepEqual(Array.from(toFloat64Array(t)), want.values, k);
  }
});

test('EMA checkpoint with an argparse.Namespace config', () => {
  const ck = readReferenceCheckpoint(path.join(FIX, 'ema_0.9999_000123.pt'));
  assert.equal(ck.step, 123);
  assert.deepEqual(ck.config, expected.model.config);
  for (const [k, want] of Object.entries<{ values: number[] }>(expected.ema.state_dict)) {
    assert.deepEqual(Array.from(toFloat64Array(ck.stateDict[k]!)), want.values, k);
  }
});

test('file names: parse, latest model, EMA files for a step', () => {
  assert.deepEqual(parseReferenceCheckpointName('a/b/model000123.pt'), { kind: 'model', step: 123 });
  assert.deepEqual(parseReferenceCheckpointName('ema_0.9999_050000.pt'), { kind: 'ema', rate: '0.9999', step: 50000 });
  assert.deepEqual(parseReferenceCheckpointName('opt000010.pt'), { kind: 'opt', step: 10 });
  assert.equal(parseReferenceCheckpointName('replay_state.pt'), null);
  assert.equal(parseResumeStep('/x/mymodel001500.pt'), 1500);
  assert.equal(parseResumeStep('/x/weights.pt'), 0);
  const run = path.join(tmp, 'run');
  fs.mkdirSync(run);
  for (const f of ['model000000.pt', 'model000200.pt', 'model000100.pt', 'ema_0.99_000200.pt', 'ema_0.9999_000200.pt', 'ema_0.99_000100.pt', 'opt000200.pt']) {
    fs.writeFileSync(path.join(run, f), '');
  }
  assert.deepEqual(findLatestReferenceCheckpoint(run), { path: path.join(run, 'model000200.pt'), step: 200 });
  assert.deepEqual(findReferenceEmaCheckpoints(run, 200), { '0.99': path.join(run, 'ema_0.99_000200.pt'), '0.9999': path.join(run, 'ema_0.9999_000200.pt') });
});

test('step falls back to the file name; structural errors name the file', () => {
  const f = path.join(tmp, 'model000077.pt');
  writeTorchFile(f, { state_dict: {}, config: { a: 1 } });
  assert.equal(readReferenceCheckpoint(f).step, 77);
  const bad = path.join(tmp, 'bad.pt');
  writeTorchFile(bad, { state_dict: { w: 3 } });
  assert.throws(() => readReferenceCheckpoint(bad), (e: unknown) => e instanceof FileFormatError && /bad\.pt: state_dict entry "w" is not a tensor/.test(e.message));
  writeTorchFile(bad, [1, 2]);
  assert.throws(() => readReferenceCheckpoint(bad), /expected a dict/);
});

test('replay_state.pt: read the reference file, write one back', () => {
  const st = readReferenceReplayState(path.join(FIX, 'replay_state.pt'));
  assert.deepEqual(st, { next_index: 57, buffer_indices: [0, 12, 5, 40, 33, 56] });
  const out = path.join(tmp, 'replay_state.pt');
  writeReferenceReplayState(out, st);
  assert.deepEqual(readReferenceReplayState(out), st);
  writeTorchFile(out, { next_index: -1, buffer_indices: [] });
  assert.throws(() => readReferenceReplayState(out), /next_index must be a non-negative integer/);
});
