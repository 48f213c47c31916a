/**
 * flexvid's tensor engine: libtorch through a thin Node-API binding.
 * See docs/engine.md for the memory model (tidy / dispose / using) and conventions.
 */

export { Tensor, Generator, TorchError, call as atenCall, type Shape, type TensorOptions, type Scalar, type TensorOrScalar } from './tensor.ts';
export * from './ops.ts';
export { tidy, keep, adopt, disposeAll, scopeDepth } from './scope.ts';
export { type DType, itemSize, isFloating, MemoryFormat, type MemoryFormatName } from './dtype.ts';

/** Cores not busy with other work at start-up (the default thread count; see native.ts). */
export { idleCores as defaultThreadCount } from './native.ts';
export { profile, formatProfile, type ProfileRow } from './profile.ts';
export { autocast, isAutocastEnabled, ampDtype, withAmp, type AutocastDType, type AmpMode } from './autocast.ts';
