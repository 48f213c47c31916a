import type { Command } from 'commander';

/** Registers `flexvid data …` (owned by the data layer). */
export function register(_program: Command): void {}
