import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { train } from '../../src/training/loop.ts';
import { resolveTrainOptions } from '../../src/training/options.ts';
import { loadSafetensors } from '../../src/io/safetensors.ts';
import { completeCheckpointSteps, checkpointFiles, loadModelCheckpoint } from '../../src/training/checkpoint.ts';
import { OptionError } from '../../src/util/errors.ts';
import { liveTensorCount } from '../../src/engine/index.ts';
import { tinyBalls, tinyOptions } from './helpers.ts';

function sameTensors(a: string, b: string): void {
  const x = loadSafetensors(a).tensors;
  const y = loadSafetensors(b).tensors;
  assert.deepEqual(Object.keys(x).sort(), Object.keys(y).sort());
  for (const k of Object.keys(x)) assert.ok(Buffer.from(x[k]!.data).equals(Buffer.from(y[k]!.data)), `tensor ${k} differs`);
}

test('lifelong run stopped and resumed ends bit-identical to an uninterrupted run', async () => {
  const data = await tinyBalls();
  const common = { dataset: `streaming_${data}`, nSampleStm: 1, ltmSize: 50, stepsPerExperience: 2, maxSteps: 5 };
  const full = tinyOptions(data, { ...common, runId: 'full' });
  const before = liveTensorCount();
  const a = await train(full);
  assert.equal(a.step, 5);
  assert.equal(a.stoppedBecause, 'max-steps');
  // interrupted after 3 steps (mid-experience), then resumed to 5
  const part = tinyOptions(data, { ...common, runId: 'part', maxSteps: 3 });
  await train(part);
  const resumed = await train({ ...part, runId: '', resumeId: 'part', maxSteps: 5 });
  assert.equal(resumed.step, 5);
  sameTensors(path.join(a.runDir, checkpointFiles.model(5)), path.join(resumed.runDir, checkpointFiles.model(5)));
  sameTensors(path.join(a.runDir, checkpointFiles.opt(5)), path.join(resumed.runDir, checkpointFiles.opt(5)));
  sameTensors(path.join(a.runDir, checkpointFiles.ema('0.9999', 5)), path.join(resumed.runDir, checkpointFiles.ema('0.9999', 5)));
  assert.equal(liveTensorCount(), before, 'training frees every tensor it created');
  // metrics are logged with the reference keys
  const lines = fs.readFileSync(path.join(a.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(lines.length >= 5);
  for (const k of ['loss', 'mse', 'eval-mse', 'grad_norm', 'lr', 'timing/step_time', 'stream_position', 'replay_size']) assert.ok(k in lines[1], `metric ${k}`);
  assert.equal(JSON.parse(fs.readFileSync(path.join(a.runDir, 'status.json'), 'utf8')).status, 'finished');
});

test('a checkpoint rebuilds its model for sampling; an interrupted save leaves the previous set loadable', async () => {
  const data = await tinyBalls();
  const o = tinyOptions(data, { maxSteps: 2, saveInterval: 1, runId: 'ck', tensorboard: true });
  const r = await train(o);
  assert.ok(fs.readdirSync(r.runDir).some((f) => f.startsWith('events.out.tfevents.')), '--tensorboard writes event files');
  const steps = completeCheckpointSteps(r.runDir);
  assert.deepEqual(steps, [0, 1, 2]);
  // Simulate a crash in the middle of writing the next set: weights written, state file missing,
  // plus a stray temporary file. The last complete set is still the one resume uses.
  fs.copyFileSync(path.join(r.runDir, checkpointFiles.model(2)), path.join(r.runDir, checkpointFiles.model(3)));
  fs.writeFileSync(path.join(r.runDir, '.opt000003.safetensors.123.0.tmp'), 'partial');
  assert.deepEqual(completeCheckpointSteps(r.runDir), [0, 1, 2]);
  const loaded = loadModelCheckpoint(path.join(r.runDir, checkpointFiles.ema('0.9999', 2)));
  assert.equal(loaded.meta.config.T, 4);
  assert.equal(loaded.model.config.modelChannels, 32);
  loaded.model.dispose();
  const resumed = await train({ ...o, runId: '', resumeId: 'ck', maxSteps: 3 });
  assert.equal(resumed.step, 3);
});

test('impossible configurations are refused up front with the flag named', async () => {
  const data = await tinyBalls();
  await assert.rejects(train(tinyOptions(`streaming_${data}`, { nSampleStm: 1, ltmSize: -1 })), (e: Error) => e instanceof OptionError && /--ltm-size/.test(e.message));
  await assert.rejects(train(tinyOptions(data, { T: 30, maxFrames: 10 })), (e: Error) => /--max-frames/.test(e.message));
  await assert.rejects(train(tinyOptions(data, { useRpeNet: false })), /--use-rpe-net/);
  assert.throws(() => resolveTrainOptions([{ bogus_flag: 1 }]), /bogus_flag/);
  assert.throws(() => resolveTrainOptions([{ batch_size: 'two' }]), /--batch-size/);
  assert.deepEqual(resolveTrainOptions([{ pad_with_random_frames: 'False', 'max-frames': '12' }]).padWithRandomFrames, false);
});
