import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import {
  checkpointResultsName,
  evalDirectory,
  evalIdentifier,
  modelResultsPath,
  parseEvalIdentifier,
  parseSampleFileName,
  sampleFileName,
  samplePath,
} from '../../src/sampling/naming.ts';
import { OptionError } from '../../src/util/errors.ts';

const SAMPLER = 'heun-80-inf-0-1-1000-0.002-7-50';

test('identifier round trip (REFERENCE_SPEC §7.5, §11.8)', () => {
  const fields = {
    scheme: 'autoreg',
    maxFrames: 10,
    T: 50,
    nObs: 10,
    evalDatasetConfig: 'default',
    lowerFrameRange: 0,
    upperFrameRange: null,
    evalOnTrain: false,
  };
  assert.equal(evalIdentifier(fields), 'autoreg_10_50_10_default_0_None_test');
  assert.deepEqual(parseEvalIdentifier('autoreg_10_50_10_default_0_None_test'), fields);
  const other = { ...fields, scheme: 'hierarchy-2', upperFrameRange: 5000, lowerFrameRange: 100, evalOnTrain: true, evalDatasetConfig: 'chunked' };
  assert.equal(evalIdentifier(other), 'hierarchy-2_10_50_10_chunked_100_5000_train');
  assert.deepEqual(parseEvalIdentifier(`results/x/y/${evalIdentifier(other)}/`), other);
});

test('identifier errors', () => {
  assert.throws(() => evalIdentifier({ scheme: 'my_scheme', maxFrames: 10, T: 50, nObs: 1, evalDatasetConfig: 'default', lowerFrameRange: 0, upperFrameRange: null, evalOnTrain: false }), /sampling_scheme/);
  assert.throws(() => evalIdentifier({ scheme: 'autoreg', maxFrames: 10, T: undefined as never, nObs: 1, evalDatasetConfig: 'default', lowerFrameRange: 0, upperFrameRange: null, evalOnTrain: false }), /for T but received undefined/);
  assert.throws(() => parseEvalIdentifier('autoreg_10_None_10_default_0_None_test'), /eval identifier field T/);
  assert.throws(() => parseEvalIdentifier('my_scheme_10_50_10_default_0_None_test'), OptionError);
  assert.throws(() => parseEvalIdentifier('autoreg_10_50_10_default_0_None_val'), /split/);
});

test('model results path: components after the first "checkpoint" folder, stem, sampler, respacing', () => {
  assert.equal(
    modelResultsPath({ checkpointPath: 'checkpoints/abc123/ema_0.9999_050000.pt', sampler: SAMPLER }),
    path.join('results', 'abc123', `ema_0.9999_050000_${SAMPLER}`),
  );
  assert.equal(
    modelResultsPath({ checkpointPath: '/home/u/proj/my-checkpoints/run7/sub/model050000.safetensors', sampler: 'ddpm', timestepRespacing: 'ddim50' }),
    path.join('results', 'run7', 'sub', 'model050000_ddpm_respaceddim50'),
  );
  assert.equal(checkpointResultsName({ checkpointPath: 'checkpoints/r/model_latest.pt', sampler: 'ddpm', step: 1200 }), 'model_latest_1200_ddpm');
  assert.throws(() => checkpointResultsName({ checkpointPath: 'checkpoints/r/model_latest.pt', sampler: 'ddpm' }), /for step/);
  assert.throws(() => modelResultsPath({ checkpointPath: 'runs/r/ema.pt', sampler: 'ddpm' }), /checkpoint_path/);
});

test('eval directory: --eval-dir override, custom clip folder', () => {
  const base = { checkpointPath: 'checkpoints/abc/ema_0.9999_000100.safetensors', sampler: SAMPLER, identifier: 'autoreg_10_50_10_default_0_None_test' };
  assert.equal(evalDirectory(base), path.join('results', 'abc', `ema_0.9999_000100_${SAMPLER}`, base.identifier));
  assert.equal(evalDirectory({ ...base, evalDir: 'out' }), path.join('out', base.identifier));
  assert.equal(evalDirectory({ ...base, customClipPath: '/data/clips/session42/clip.mp4' }), path.join('results', 'abc', `ema_0.9999_000100_${SAMPLER}`, 'session42', base.identifier));
});

test('sample file names', () => {
  assert.equal(sampleFileName(7, 0), 'sample_0007-0.npy');
  assert.equal(sampleFileName(12345, 3), 'sample_12345-3.npy');
  assert.deepEqual(parseSampleFileName('x/samples/sample_0007-2.npy'), { index: 7, sampleIdx: 2 });
  assert.equal(parseSampleFileName('sample_7-2.npy'), null);
  assert.equal(samplePath('e', 1, 0), path.join('e', 'samples', 'sample_0001-0.npy'));
  assert.throws(() => sampleFileName(-1, 0), OptionError);
});
