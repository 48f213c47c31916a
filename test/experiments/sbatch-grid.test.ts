import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { tensor } from '../../src/engine/index.ts';
import { saveWeights, type CheckpointMeta } from '../../src/training/checkpoint.ts';
import { sbatchGrid, sbatchGridScript, shellQuote } from '../../src/experiments/sbatch-grid.ts';
import { evalIdentifier } from '../../src/sampling/naming.ts';
import { OptionError } from '../../src/util/errors.ts';

function fakeCheckpoint(root: string): string {
  const file = path.join(root, 'checkpoints', 'run1', 'ema_0.9999_000500.safetensors');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const meta = { config: { dataset: 'ball_stn', T: 20, maxFrames: 10, diffusionSpace: 'pixel', model: {}, diffusion: {}, train: {} }, step: 500, kind: 'ema_0.9999' } as unknown as CheckpointMeta;
  const t = tensor([1, 2, 3]);
  saveWeights(file, new Map([['w', t]]), meta);
  t.dispose();
  return file;
}

test('sbatch-grid: one sampling array per checkpoint × scheme, shards over the items, metric jobs on the eval folders', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-grid-'));
  const cwd = process.cwd();
  process.chdir(root);
  try {
    const ckpt = path.join('checkpoints', 'run1', path.basename(fakeCheckpoint(root)));
    const cells = sbatchGrid({ checkpoints: [ckpt], schemes: ['autoreg', 'hierarchy-2'], numVideos: 25, shards: 4, T: 300, nObs: 36, metrics: ['fvd', 'minade'], sbatchFlags: ['--partition=gpu'] });
    assert.equal(cells.length, 2);
    const id = evalIdentifier({ scheme: 'autoreg', maxFrames: 10, T: 300, nObs: 36, evalDatasetConfig: 'default', lowerFrameRange: 0, upperFrameRange: null, evalOnTrain: false });
    assert.equal(cells[0]!.evalDir, path.join('results', 'run1', 'ema_0.9999_000500_heun-80-inf-0-1-1000-0.002-7-50', id));
    assert.match(cells[0]!.sample, /^jid=\$\(sbatch --parsable --array=0-3 --job-name=flexvid-autoreg --partition=gpu examples\/slurm\/sample-array\.sbatch checkpoints\/run1\/ema_0\.9999_000500\.safetensors autoreg 25 --T 300 --n-obs 36 --max-frames 10 --sampler heun-80-inf-0-1-1000-0\.002-7-50\)$/);
    assert.equal(cells[1]!.metrics, `sbatch --dependency=afterok:\${jid%%;*} --job-name=flexvid-hierarchy-2-metrics --partition=gpu examples/slurm/metrics.sbatch ${cells[1]!.evalDir} 25 fvd,minade`);
    const script = sbatchGridScript({ checkpoints: [ckpt], schemes: ['autoreg'], numVideos: 3, shards: 10, T: 300 });
    assert.match(script, /--array=0-2 /, 'never more shards than items');
    assert.doesNotMatch(script, /metrics\.sbatch/, 'no metric job unless asked');
    execFileSync('bash', ['-n'], { input: script }); // valid shell
    assert.throws(() => sbatchGrid({ checkpoints: [ckpt], schemes: ['autoreg'], numVideos: 5, metrics: ['psnr'] }), OptionError);
  } finally {
    process.chdir(cwd);
    fs.rmSync(root, { recursive: true, force: true });
  }
  assert.equal(shellQuote("a b'c"), `'a b'\\''c'`);
  assert.equal(shellQuote('--T'), '--T');
});

test('the SLURM sampling array splits 0 … TOTAL−1 into contiguous shards', () => {
  const script = path.resolve('examples', 'slurm', 'sample-array.sbatch');
  const ranges: string[] = [];
  for (let i = 0; i < 4; i++) {
    const out = execFileSync('bash', [script, 'ck.safetensors', 'autoreg', '25', '--T', '20'], {
      env: { ...process.env, FLEXVID: 'echo', SLURM_ARRAY_TASK_ID: String(i + 3), SLURM_ARRAY_TASK_MIN: '3', SLURM_ARRAY_TASK_COUNT: '4' },
      encoding: 'utf8',
    });
    const m = /--start-index (\d+) --stop-index (\d+) --num-sampled-videos 25/.exec(out);
    assert.ok(m, out);
    ranges.push(`${m[1]}-${m[2]}`);
  }
  assert.deepEqual(ranges, ['0-7', '7-14', '14-21', '21-25']);
});
