/**
 * What every `wq` command shares: where the spool is, documented exit codes,
 * printing errors. (Numeric options: option-ranges.ts.)
 */
import { isRedisAddress, parseRedisAddress } from '../queue/address.js';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { InvalidArgumentError } from './commander.js';
import { silentLogger, type Logger } from '../logger.js';

/** Exit codes, documented in docs/cli.md. A command task's own exit code passes through. */
export const EXIT = {
  ok: 0,
  /** The task failed (handler threw, command could not start), or an unexpected error. */
  failure: 1,
  /** Bad flags or arguments. */
  usage: 2,
  /** The spool is unusable or another server holds it. */
  spool: 3,
  /** No such request in the spool. */
  unknownId: 4,
  /** A deadline passed; the request was aborted. Same as timeout(1). */
  timeout: 124,
  // A wait stopped by signal N (SIGINT, SIGTERM, SIGHUP; SIGPIPE for EPIPE) exits 128+N: see stop.ts.
} as const;

/**
 * The spool: `--spool`, else `$WQ_SPOOL`, else a per-user directory that needs
 * no root: `$XDG_STATE_HOME/wq/spool` (`~/.local/state/wq/spool`). A relative
 * `$XDG_STATE_HOME` is ignored, as the XDG Base Directory spec says: it would
 * name a different spool in every working directory.
 */
export function resolveSpool(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (flag !== undefined && flag !== '') return flag;
  if (env.WQ_SPOOL) return env.WQ_SPOOL;
  const xdg = env.XDG_STATE_HOME;
  const stateHome = xdg !== undefined && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.local', 'state');
  return join(stateHome, 'wq', 'spool');
}

export const SPOOL_HELP = 'spool directory (default: $WQ_SPOOL, else $XDG_STATE_HOME/wq/spool, i.e. ~/.local/state/wq/spool)';
export const QUEUE_HELP = 'a queue on Redis shared by many hosts, redis://HOST[:PORT]/NAME, instead of a spool (default: $WQ_QUEUE; see docs/scale-out.md)';

/** Where a command's queue is: a spool directory, or a queue on Redis. */
export type QueueLocation = { spool: string; queue?: undefined } | { spool?: undefined; queue: string };

/**
 * The queue a command works on: `--queue`, `--spool`, else `$WQ_QUEUE`, else
 * the spool resolveSpool() names. Both flags at once are a usage error; a
 * flag wins over the environment.
 */
export function resolveQueue(flags: { spool?: string; queue?: string }, env: NodeJS.ProcessEnv = process.env): QueueLocation {
  if (flags.queue !== undefined && flags.spool !== undefined) throw new CliError('give --queue or --spool, not both', EXIT.usage);
  const queue = flags.queue ?? (flags.spool === undefined && env.WQ_QUEUE ? env.WQ_QUEUE : undefined);
  if (queue === undefined) return { spool: resolveSpool(flags.spool, env) };
  if (!isRedisAddress(queue)) {
    throw new CliError(`${flags.queue !== undefined ? '--queue' : '$WQ_QUEUE'} ${JSON.stringify(queue)}: expected redis://HOST[:PORT]/NAME (a spool directory goes to --spool)`, EXIT.usage);
  }
  try {
    parseRedisAddress(queue);
  } catch (err) {
    throw new CliError((err as Error).message, EXIT.usage);
  }
  return { queue };
}

/** An error the CLI reports as one line and a given exit code. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
    this.name = 'CliError';
  }
}

export function printError(message: string): void {
  process.stderr.write(`wq: ${message}\n`);
}

/** What the client library warns about (a wait working around a fault), as `wq: …` lines on stderr; nothing when quiet. */
export function clientLogger(quiet: boolean | undefined): Logger {
  if (quiet === true) return silentLogger;
  return { ...silentLogger, warn: (message) => printError(message), error: (message) => printError(message) };
}

/** `--exec COMMAND`: its words, at least one (see splitCommand). */
export function parseExecCommand(value: string): string[] {
  const words = splitCommand(value);
  if (words.length === 0 || words[0] === '') throw new InvalidArgumentError(`expected a command, such as "rsync -a", got "${value}"`);
  return words;
}

/**
 * Splits a command string on blanks, honouring '…' and "…" quoting and
 * backslash escapes (no variables, globs or other shell features).
 */
export function splitCommand(text: string): string[] {
  const out: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
      else if (ch === '\\' && quote === '"' && i + 1 < text.length) current += text[++i];
      else current += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < text.length) {
      current += text[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) out.push(current);
      current = '';
      inWord = false;
    } else {
      current += ch;
      inWord = true;
    }
  }
  if (quote !== undefined) throw new InvalidArgumentError(`unterminated ${quote} quote in "${text}"`);
  if (inWord) out.push(current);
  return out;
}
