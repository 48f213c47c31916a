/**
 * Bad shapes, dtypes, devices and arguments become JS exceptions (TorchError) that name the
 * operator and the argument shapes; the process never aborts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as E from '../../src/engine/index.ts';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

test('shape errors name the operator and the shapes', () => {
  E.tidy(() => {
    assert.throws(() => E.matmul(E.ones([2, 3]), E.ones([4, 5])), (e: Error) => {
      assert.ok(e instanceof E.TorchError);
      assert.match(e.message, /aten::matmul\(Float\[2, 3\], Float\[4, 5\]\)/);
      assert.match(e.message, /cannot be multiplied/);
      return true;
    });
    assert.throws(() => E.conv2d(E.ones([1, 3, 8, 8]), E.ones([4, 2, 3, 3])), /aten::conv2d\(Float\[1, 3, 8, 8\], Float\[4, 2, 3, 3\].*expected input\[1, 3, 8, 8\] to have 2 channels/);
    assert.throws(() => E.cat([E.ones([2, 3]), E.ones([2, 4])], 0), /aten::cat\(\[Float\[2, 3\], Float\[2, 4\]\], 0\)/);
    assert.throws(() => E.ones([6]).view([4, -1]), /aten::view\(Float\[6\], \[4, -1\]\)/);
    assert.throws(() => E.ones([2, 2]).softmax(3), /Dimension out of range/);
    assert.throws(() => E.ones([3]).indexSelect(0, E.tensor(BigInt64Array.of(5n))), /aten::index_select.*out of range/i);
    assert.throws(() => E.ones([3]).gather(0, E.tensor(BigInt64Array.of(7n))), /aten::gather.*out of bounds/);
    assert.throws(() => E.eigh(E.ones([2, 3], { dtype: 'float64' })), /aten::linalg_eigh/);
    assert.throws(() => E.interpolate(E.ones([1, 1, 4]), { size: [8], mode: 'bilinear' }), /bilinear needs/);
    assert.throws(() => E.tensor([1, 2, 3], { shape: [2, 2] }), /do not fill shape/);
    assert.throws(() => E.ones([2, 2]).item(), /4 elements/);
  });
});

test('dtype and device errors', () => {
  E.tidy(() => {
    assert.throws(() => E.conv2d(E.ones([1, 1, 3, 3], { dtype: 'int64' }), E.ones([1, 1, 3, 3])), /aten::conv2d\(Long\[1, 1, 3, 3\], Float\[1, 1, 3, 3\].*expected scalar type/);
    assert.throws(() => E.matmul(E.ones([2, 2], { dtype: 'float64' }), E.ones([2, 2])), /aten::matmul\(Double\[2, 2\], Float\[2, 2\]\)/);
    assert.throws(() => E.ones([2], { dtype: 'int32' }).requiresGrad_(), /requiresGrad.*floating point/);
    assert.throws(() => E.zeros([2], { dtype: 'float128' as E.DType }), /unknown dtype "float128"/);
    assert.throws(() => E.zeros([2], { device: 'tpu:0' }), E.TorchError);
    assert.throws(() => E.fromBytes(new Uint8Array(3), [2], 'float32'), /3 bytes do not match shape with 2 elements/);
    assert.throws(() => E.ones([2]).setData(new Float32Array(3)), /setData/);
    assert.throws(() => E.multinomial(E.tensor([-1, 2]), 1), /aten::multinomial/);
    assert.throws(() => E.randint(5, 5, [2]), /aten::randint/);
  });
});

test('argument errors: unknown operators, wrong JS types, too many arguments, bad shapes', () => {
  E.tidy(() => {
    assert.throws(() => E.aten.call('no_such_op', E.ones([1])), /unknown libtorch operator 'aten::no_such_op'/);
    assert.throws(() => E.aten.call('add.Tensor', 'not a tensor' as never, E.ones([1])), /aten::add\.Tensor.*expected a tensor handle for self/);
    assert.throws(() => E.aten.call('neg', E.ones([1]), 1, 2), /too many arguments/);
    assert.throws(() => E.aten.call('sum.dim_IntList', E.ones([2]), 'x' as never), /aten::sum\.dim_IntList/);
    assert.throws(() => E.zeros([-1]), /aten::zeros/);
    assert.throws(() => E.zeros([1e13, 1e3]), E.TorchError); // allocation failure
    assert.throws(() => E.ones([2, 2]).requiresGrad_().mul(2).backward(), /grad can be implicitly created only for scalar outputs/);
    assert.throws(() => E.ones([1]).sum().backward(), /does not require grad/);
  });
});

test('the process survives a barrage of bad calls (separate process, exit code 0)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-errors-'));
  const script = path.join(dir, 'bad.ts');
  const engine = path.join(repo, 'src', 'engine', 'index.ts');
  fs.writeFileSync(
    script,
    `import * as E from ${JSON.stringify(engine)};
const bad: (() => unknown)[] = [
  () => E.matmul(E.ones([2, 3]), E.ones([4, 5])),
  () => E.conv3d(E.ones([1, 2, 2, 2]), E.ones([1, 2, 3, 3, 3])),
  () => E.ones([3]).indexSelect(0, E.tensor(BigInt64Array.of(-9n))),
  () => E.ones([3]).gather(0, E.tensor(BigInt64Array.of(99n))),
  () => E.ones([3]).scatter(0, E.tensor(BigInt64Array.of(99n)), E.ones([1])),
  () => E.zeros([2], { device: 'cuda:7' }),
  () => new E.Generator(1, 'cuda'),
  () => new E.Generator(1, 'nonsense'),
  () => E.zeros([2]).to({ device: 'cuda' }),
  () => E.aten.call('add.Tensor', {} as never, 3 as never),
  () => E.aten.call('conv2d', [1, 2] as never),
  () => E.eigh(E.ones([3, 3], { dtype: 'int64' })),
  () => E.ones([2]).maskedFill(E.ones([3], { dtype: 'bool' }), 1),
  () => E.ones([2]).setGrad(E.ones([5])),
  () => E.ones([4]).expand([2, 3]),
  () => E.avgPool2d(E.ones([1, 1, 2, 2]), 5),
  () => E.layerNorm(E.ones([2, 3]), [4]),
  () => E.groupNorm(E.ones([2, 3, 4]), 2),
  () => { const t = E.ones([1]); t.dispose(); return t.neg(); },
  () => { const g = new E.Generator(1); g.setState(E.ones([3])); },
];
let caught = 0;
for (const f of bad) {
  try { f(); } catch (e) { caught++; }
}
console.log('survived ' + caught + '/' + bad.length);
`,
  );
  try {
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: repo, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `child exited with ${r.status} / ${r.signal}: ${r.stderr.slice(-2000)}`);
    assert.match(r.stdout, /survived 20\/20/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
