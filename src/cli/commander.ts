/**
 * commander, loaded with require(): it is a CommonJS package, and importing it
 * through the ES module loader costs every `wq` call about twice as long
 * (measured in docs/benchmarks.md, "CLI start-up").
 */
import { createRequire } from 'node:module';

const commander = createRequire(import.meta.url)('commander') as typeof import('commander');

export const { Command, CommanderError, InvalidArgumentError, Option } = commander;
export type Command = import('commander').Command;
export type CommanderError = import('commander').CommanderError;
export type InvalidArgumentError = import('commander').InvalidArgumentError;
