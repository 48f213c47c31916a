/** Neural-network building blocks: modules, layers, optimisers, EMA, checkpoints. */
export * from './module.ts';
export * from './layers.ts';
export * from './optim.ts';
export * from './ema.ts';
export * from './grad.ts';
export * from './checkpoint.ts';
