/**
 * TensorBoard event files (issue 10 §3), checked with a parser written here from the format's
 * description (TFRecord framing, masked CRC32C, protobuf wire format) — independent of the writer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { crc32c, encodeEvent, EXPORT_SUFFIX, exportTensorBoard, maskedCrc32c, TensorBoardWriter } from '../../src/io/tensorboard.ts';

// ------------------------------------------------------------------ independent reference parser

/** Bitwise CRC-32C (no table), RFC 3720 §B.4 polynomial. */
function refCrc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function refMasked(data: Uint8Array): number {
  const c = refCrc32c(data);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
}

type Field = { wire: number; value: bigint | Uint8Array };
/** Decode a protobuf message into field number → values. */
function decodeProto(b: Uint8Array): Map<number, Field[]> {
  const out = new Map<number, Field[]>();
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const byte = b[i++]!;
      v |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < b.length) {
    const key = Number(varint());
    const field = key >> 3;
    const wire = key & 7;
    let value: bigint | Uint8Array;
    if (wire === 0) value = varint();
    else if (wire === 1) {
      value = b.slice(i, i + 8);
      i += 8;
    } else if (wire === 5) {
      value = b.slice(i, i + 4);
      i += 4;
    } else if (wire === 2) {
      const len = Number(varint());
      value = b.slice(i, i + len);
      i += len;
    } else throw new Error(`wire type ${wire}`);
    out.set(field, [...(out.get(field) ?? []), { wire, value }]);
  }
  return out;
}

interface ParsedEvent {
  wallTime: number;
  step: number;
  fileVersion?: string;
  values: { tag: string; simpleValue: number }[];
}

/** Read a TFRecord file of Event protos, verifying both CRCs of every record. */
function readEvents(file: string): ParsedEvent[] {
  const buf = new Uint8Array(fs.readFileSync(file));
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const events: ParsedEvent[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const len = Number(dv.getBigUint64(pos, true));
    assert.equal(dv.getUint32(pos + 8, true), refMasked(buf.subarray(pos, pos + 8)), 'length CRC');
    const data = buf.subarray(pos + 12, pos + 12 + len);
    assert.equal(dv.getUint32(pos + 12 + len, true), refMasked(data), 'data CRC');
    pos += 16 + len;
    const ev = decodeProto(data);
    const wt = ev.get(1)?.[0]?.value as Uint8Array;
    const e: ParsedEvent = { wallTime: new DataView(wt.buffer, wt.byteOffset).getFloat64(0, true), step: Number((ev.get(2)?.[0]?.value as bigint | undefined) ?? 0n), values: [] };
    const fv = ev.get(3)?.[0]?.value;
    if (fv) e.fileVersion = new TextDecoder().decode(fv as Uint8Array);
    const summary = ev.get(5)?.[0]?.value as Uint8Array | undefined;
    if (summary) {
      for (const v of decodeProto(summary).get(1) ?? []) {
        const val = decodeProto(v.value as Uint8Array);
        const f = val.get(2)![0]!;
        assert.equal(f.wire, 5, 'simple_value is a float (fixed32)');
        const fb = f.value as Uint8Array;
        e.values.push({ tag: new TextDecoder().decode(val.get(1)![0]!.value as Uint8Array), simpleValue: new DataView(fb.buffer, fb.byteOffset).getFloat32(0, true) });
      }
    }
    events.push(e);
  }
  return events;
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'flexvid-tb-'));

// ------------------------------------------------------------------ tests

test('crc32c matches the RFC 3720 check values', () => {
  const enc = new TextEncoder();
  assert.equal(crc32c(enc.encode('123456789')), 0xe3069283);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  const random = Uint8Array.from({ length: 1000 }, (_, i) => (i * 7919) % 251);
  assert.equal(crc32c(random), refCrc32c(random));
  assert.equal(maskedCrc32c(random), refMasked(random));
});

test('an Event encodes to the hand-worked protobuf bytes', () => {
  // Event{wall_time: 1.5, step: 3, summary{value{tag: "a", simple_value: 2}}}
  const expected = [
    0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // field 1, fixed64: 1.5
    0x10, 0x03, // field 2, varint: 3
    0x2a, 0x0a, // field 5, 10 bytes: Summary
    0x0a, 0x08, // Summary.value (field 1), 8 bytes
    0x0a, 0x01, 0x61, // Value.tag = "a"
    0x15, 0, 0, 0, 0x40, // Value.simple_value (field 2, fixed32) = 2.0f
  ];
  assert.deepEqual([...encodeEvent({ wallTime: 1.5, step: 3, scalars: [{ tag: 'a', value: 2 }] })], expected);
  // file_version event; step 0 is proto3's default and not written
  const fv = encodeEvent({ wallTime: 0, step: 0, fileVersion: 'brain.Event:2' });
  assert.deepEqual([...fv.subarray(9)], [0x1a, 13, ...new TextEncoder().encode('brain.Event:2')]);
  // a large step uses a multi-byte varint
  assert.deepEqual([...encodeEvent({ wallTime: 0, step: 300 }).subarray(9)], [0x10, 0xac, 0x02]);
});

test('TensorBoardWriter writes a readable event file next to metrics.jsonl', () => {
  const dir = tmp();
  const w = new TensorBoardWriter(dir, { host: 'box', wallTime: 1714557600.25 });
  assert.match(path.basename(w.file), /^events\.out\.tfevents\.1714557600\.box$/);
  w.addScalars(0, { step: 0, time: '2024-05-01T10:00:00.000Z', loss: 0.5, 'timing/step_time': 0.125, note: 'text', flag: true, missing: null });
  w.addScalars(10, { step: 10, time: '2024-05-01T10:00:10.500Z', loss: 0.25, loss_q3: 1e-7 });
  w.addScalar('fvd', 123.5, 20, 1714557700);
  w.close();
  w.close(); // idempotent
  const ev = readEvents(w.file);
  assert.equal(ev.length, 4);
  assert.equal(ev[0]!.fileVersion, 'brain.Event:2');
  assert.equal(ev[0]!.wallTime, 1714557600.25);
  assert.deepEqual(ev[1], { wallTime: Date.parse('2024-05-01T10:00:00.000Z') / 1000, step: 0, values: [{ tag: 'loss', simpleValue: 0.5 }, { tag: 'timing/step_time', simpleValue: 0.125 }] });
  assert.equal(ev[2]!.step, 10);
  assert.equal(ev[2]!.wallTime, 1714557610.5);
  assert.deepEqual(ev[2]!.values.map((v) => v.tag), ['loss', 'loss_q3']);
  assert.equal(ev[2]!.values[1]!.simpleValue, Math.fround(1e-7));
  assert.deepEqual(ev[3], { wallTime: 1714557700, step: 20, values: [{ tag: 'fvd', simpleValue: 123.5 }] });
  assert.throws(() => w.addScalar('x', 1, 1), /closed/);
  // a second writer in the same second gets its own file
  const w2 = new TensorBoardWriter(dir, { host: 'box', wallTime: 1714557600.9 });
  assert.notEqual(w2.file, w.file);
  w2.close();
});

test('exportTensorBoard converts metrics.jsonl, replaces its own export and respects live event files', () => {
  const dir = tmp();
  const lines = [0, 1, 2, 3, 1, 2].map((s) => JSON.stringify({ step: s, time: new Date(1714557600000 + s * 1000).toISOString(), loss: 1 / (s + 1), mse: 0.5 }));
  fs.writeFileSync(path.join(dir, 'metrics.jsonl'), lines.join('\n') + '\n{"step": 9, "lo'); // torn last line
  const r = exportTensorBoard(dir, { host: 'h' });
  assert.ok(r);
  assert.equal(r.records, 6);
  assert.ok(r.file.endsWith(EXPORT_SUFFIX));
  const ev = readEvents(r.file);
  assert.equal(ev.length, 7);
  assert.deepEqual(ev.slice(1).map((e) => e.step), [0, 1, 2, 3, 1, 2]);
  assert.deepEqual(ev[4]!.values, [{ tag: 'loss', simpleValue: Math.fround(0.25) }, { tag: 'mse', simpleValue: 0.5 }]);
  // exporting again replaces the earlier export (no duplicated points)
  const again = exportTensorBoard(dir, { host: 'h2' })!;
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('tfevents')), [path.basename(again.file)]);
  // a folder with event files from training is left alone unless forced
  const live = new TensorBoardWriter(dir, { host: 'live' });
  live.close();
  assert.equal(exportTensorBoard(dir), null);
  assert.ok(exportTensorBoard(dir, { force: true }));
  assert.equal(exportTensorBoard(tmp()), null, 'no metrics.jsonl');
});
