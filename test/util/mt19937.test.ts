/**
 * NumpyRandomState against values printed by NumPy 1.24 (`/usr/bin/python3`):
 *   rs = np.random.RandomState(0); rs.random_sample(5); rs.standard_normal(5); rs.randint(0,10,size=8); …
 * (the calls are made in exactly this order on one generator, see each test).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NumpyRandomState } from '../../src/util/mt19937.ts';

test('NumpyRandomState(0) reproduces one NumPy call sequence', () => {
  const rs = new NumpyRandomState(0);
  const u = Array.from({ length: 5 }, () => rs.random());
  assert.deepEqual(u, [0.5488135039273248, 0.7151893663724195, 0.6027633760716439, 0.5448831829968969, 0.4236547993389047]);
  const g = Array.from({ length: 5 }, () => rs.normal());
  assert.deepEqual(g, [-0.8427240538292873, 1.9699244478698945, 1.2661185298577784, -0.5058765397605117, 2.5452007784710537]);
  // An odd number of normals leaves one cached; randint does not touch the cache.
  assert.deepEqual(Array.from({ length: 8 }, () => rs.randint(0, 10)), [5, 9, 8, 9, 4, 3, 0, 3]);
  assert.deepEqual(Array.from({ length: 5 }, () => rs.randint(-5, 1000000)), [532160, 346105, 919370, 597418, 919995]);
  assert.deepEqual(Array.from({ length: 3 }, () => rs.randint(0, 2 ** 40)), [354221449315, 931152821425, 1045912486685]);
  assert.deepEqual([rs.randint(3, 4), rs.randint(3, 4)], [3, 3]);
  assert.deepEqual([rs.randint(0, 2 ** 32), rs.randint(0, 2 ** 32)], [3352347283, 2915765395]);
  assert.equal(rs.uniform(2, 5), 2.3548232776067994);
  assert.equal(rs.normal(), 1.0808119130554454); // the cached value from the 5-normal call
  const st = rs.getState();
  assert.equal(st.pos, 50);
  assert.equal(st.hasGauss, false);
  assert.deepEqual(st.key.slice(0, 3), [2443250962, 1093594115, 1878467924]);
});

test('other seeds', () => {
  const a = new NumpyRandomState(123456789);
  assert.deepEqual([a.random(), a.random()], [0.532833024789759, 0.5341366008904166]);
  assert.equal(new NumpyRandomState(2 ** 32 - 1).random(), 0.0976320289940138);
  const b = new NumpyRandomState(7);
  assert.deepEqual([b.normal(), b.normal(), b.normal()], [1.690525703800356, -0.4659373705408328, 0.0328201636785844]);
});

test('getState/setState round-trips through JSON, including the cached normal', () => {
  const rs = new NumpyRandomState(42);
  for (let i = 0; i < 1000; i++) rs.random();
  rs.normal(); // leaves a cached value
  const snap = JSON.parse(JSON.stringify(rs.getState()));
  const expected = [rs.normal(), rs.random(), rs.randint(0, 100), rs.normal()];
  const other = new NumpyRandomState(1);
  other.setState(snap);
  assert.deepEqual([other.normal(), other.random(), other.randint(0, 100), other.normal()], expected);
  assert.throws(() => other.setState({ kind: 'MT19937', key: [1, 2] }), TypeError);
});

test('randint rejects empty ranges', () => {
  const rs = new NumpyRandomState(0);
  assert.throws(() => rs.randint(5, 5), RangeError);
  assert.throws(() => rs.randint(0.5, 3), RangeError);
});
