/**
 * Mixed precision: libtorch autocast scopes, and the `--amp` modes of training, sampling and loss
 * evaluation mapped onto them in one place.
 */
import { OptionError } from '../util/errors.ts';
import { native } from './native.ts';

/** Lower-precision types autocast can run operators in. */
export type AutocastDType = 'bfloat16' | 'float16';

/**
 * Run `fn` with autocast on `device`: matmuls and convolutions run in `dtype` (bf16 by default),
 * reductions and losses stay float32, as torch.autocast does. Nested scopes restore the outer
 * state. bf16 on CPU needs AVX-512 BF16 or AMX to be faster than float32; it is always correct.
 */
export function autocast<T>(device: 'cpu' | 'cuda', fn: () => T, dtype: AutocastDType = 'bfloat16'): T {
  const prev = native.isAutocast(device);
  const prevDtype = autocastDtype[device];
  native.setAutocast(device, true, dtype);
  autocastDtype[device] = dtype;
  try {
    return fn();
  } finally {
    native.setAutocast(device, prev, prevDtype);
    autocastDtype[device] = prevDtype;
  }
}

/** The autocast type last set per device (libtorch has no getter in every version). */
const autocastDtype: Record<'cpu' | 'cuda', AutocastDType> = { cpu: 'bfloat16', cuda: 'float16' };

/** Is autocast on for `device` right now? */
export function isAutocastEnabled(device: 'cpu' | 'cuda'): boolean {
  return native.isAutocast(device);
}

/** The `--amp` choices: off, bf16 autocast (CPU or CUDA), fp16 autocast (CUDA only). */
export type AmpMode = 'off' | 'bf16' | 'fp16';

/** The autocast type of `mode` on `device` ('cpu', 'cuda', 'cuda:1'), null for off. Refuses fp16 on a CPU, naming `--amp`. */
export function ampDtype(mode: AmpMode, device: string): AutocastDType | null {
  if (mode === 'off') return null;
  if (mode === 'fp16' && !device.startsWith('cuda')) {
    throw new OptionError('--amp', `off or bf16 on ${device} (libtorch autocasts CPU operators to bfloat16 only; fp16 needs CUDA)`, mode);
  }
  return mode === 'fp16' ? 'float16' : 'bfloat16';
}

/**
 * Run `fn` under the autocast of `mode` on `device`'s type; `fn` as is when off. Give it a whole
 * forward pass or sampling stage rather than single calls: libtorch caches the low-precision
 * copies of the weights until the scope ends.
 */
export function withAmp<T>(mode: AmpMode, device: string, fn: () => T): T {
  const dtype = ampDtype(mode, device);
  return dtype ? autocast(device.startsWith('cuda') ? 'cuda' : 'cpu', fn, dtype) : fn();
}
