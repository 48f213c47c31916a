/**
 * Reading pretrained weight files for the metric networks (I3D for FVD/KVD, AlexNet-LPIPS for the
 * adaptive sampling schemes): a safetensors file, or a PyTorch `torch.save` file (zip format)
 * holding a state dict (optionally under a `state_dict` / `model` key, optionally with DataParallel's
 * `module.` prefix). Tensors come back as engine tensors on the CPU; the caller owns them.
 */
import * as fs from 'node:fs';
import type { Tensor } from '../engine/index.ts';
import { rawToTensor, loadTensors } from '../nn/checkpoint.ts';
import { isRawTensor, type RawTensor } from '../io/raw-tensor.ts';
import { readTorchFile } from '../io/torch-pickle.ts';
import { FileFormatError } from '../util/errors.ts';

/** The first `n` bytes of a file (fewer when it is shorter). */
function firstBytes(file: string, n: number): Uint8Array {
  const fd = fs.openSync(file, 'r');
  try {
    const b = new Uint8Array(n);
    const got = fs.readSync(fd, b, 0, n, 0);
    return b.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
}

/** The name → RawTensor entries of a loaded pickle value that looks like a state dict. */
function stateDictEntries(value: unknown, file: string): [string, RawTensor][] {
  const entries = (v: unknown): [string, unknown][] =>
    v instanceof Map ? [...v.entries()].map(([k, x]) => [String(k), x]) : v !== null && typeof v === 'object' ? Object.entries(v) : [];
  let top = entries(value);
  for (const key of ['state_dict', 'model', 'net']) {
    const inner = top.find(([k]) => k === key);
    if (inner && entries(inner[1]).some(([, x]) => isRawTensor(x))) {
      top = entries(inner[1]);
      break;
    }
  }
  const out = top.filter((e): e is [string, RawTensor] => isRawTensor(e[1]));
  if (out.length === 0) throw new FileFormatError(file, 'holds no tensors (expected a state dict: name → tensor)');
  return out;
}

/**
 * Read a weights file into `name → Tensor` (CPU). `module.` prefixes (DataParallel) are removed and
 * BatchNorm's `num_batches_tracked` counters dropped (unused at inference).
 * @throws FileFormatError when the file is missing, unreadable, a legacy/TorchScript archive, or
 *   holds no tensors.
 */
export function readWeightFile(file: string): Map<string, Tensor> {
  if (!fs.existsSync(file)) throw new FileFormatError(file, 'file not found');
  if (fs.statSync(file).isDirectory()) throw new FileFormatError(file, 'is a directory, expected a weights file');
  const out = new Map<string, Tensor>();
  const add = (name: string, t: Tensor) => {
    const n = name.startsWith('module.') ? name.slice('module.'.length) : name;
    if (n.endsWith('num_batches_tracked')) t.dispose();
    else out.set(n, t);
  };
  try {
    const head = firstBytes(file, 4);
    const isZip = head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
    if (!isZip) {
      // A pickle protocol marker means a legacy torch.save file: the torch reader explains how to re-save it.
      if (head[0] === 0x80 && !file.endsWith('.safetensors')) readTorchFile(file);
      const { tensors } = loadTensors(file);
      for (const [k, t] of tensors) add(k, t);
      return out;
    }
    const value = readTorchFile(file);
    for (const [k, r] of stateDictEntries(value, file)) add(k, rawToTensor(r));
    return out;
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
}

/** Dispose every tensor of a map returned by {@link readWeightFile}. */
export function disposeWeights(w: Map<string, Tensor>): void {
  for (const t of w.values()) t.dispose();
}
