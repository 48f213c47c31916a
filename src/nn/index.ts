/** Neural-network building blocks: modules, layers, optimisers, EMA, checkpoints. */
export * from './module.ts';
export * from './layers.ts';
