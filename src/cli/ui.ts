import type { Command } from 'commander';

/** Registers the `flexvid` subcommands of this area (filled in by its owner). */
export function register(_program: Command): void {}
