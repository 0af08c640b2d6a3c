/**
 * What a command server takes and gives (CommandRequest, CommandResult), its
 * options with their defaults, and their one validation (pure).
 */
import { InvalidOptionError, WorkQueueError } from '../errors.js';
import { assertDurationMs, stripUndefined } from '../options.js';
import { badVariableName, type AcceptedVariables } from '../task-input.js';
import { DEFAULT_INLINE_OUTPUT_BYTES, DEFAULT_MAX_OUTPUT_BYTES, MAX_OUTPUT_LIMIT_BYTES } from './output-budget.js';

/** What a client sends to a command server. */
export interface CommandRequest {
  /** Program and arguments (appended to the server's `command` prefix, if any). */
  argv: string[];
  /** Working directory. @default the server's */
  cwd?: string;
  /**
   * Join the command's stderr to its stdout, as a shell's `2>&1` does: the
   * result's `stdout` then holds both, in the exact order they were written,
   * and `stderr` is empty. `wq enqueue --wait` asks for it when its own stdout
   * and stderr lead to the same file or terminal. @default false
   */
  stderrToStdout?: boolean;
}

/** What a command task returns. */
export interface CommandResult {
  /** Exit code, or null when killed by a signal. */
  exitCode: number | null;
  /** The signal's name (`'SIGKILL'`) when it was killed by one, else null. */
  signal: string | null;
  stdout: Uint8Array;
  stderr: Uint8Array;
  /**
   * Bytes of the stream past the part carried inline (absent when it is all
   * there). A client that claims the result reads them from the request's log
   * and removes this field; if it is still set, the output was cut.
   */
  stdoutDropped?: number;
  stderrDropped?: number;
  /**
   * The order in which the server read the two streams, when both had output:
   * the lengths in bytes of alternating runs, stdout first (0 when stderr came
   * first), at most 4096 runs (MAX_ORDER_RUNS); bytes past the last run follow
   * as the rest of stdout, then the rest of stderr. Writes microseconds apart
   * may share a run (two pipes are read, not one): only `stderrToStdout` keeps
   * the order exactly.
   * @example
   * // echo 1; sleep 1; echo 2 >&2; sleep 1; echo 3  →  stdout '1
3
', stderr '2
', order [2, 2, 2]
   */
  order?: number[];
}

export interface CommandTaskManagerOptions {
  /** Commands at once. @default 1 */
  maxTasks?: number;
  /** A fixed program and leading arguments; each request's argv is appended. @default none: argv is the whole command */
  command?: string[];
  /** After SIGTERM, how long a terminated command's group has before SIGKILL. @default 2000 */
  killGraceMs?: number;
  /**
   * Output a command may write, stdout and stderr together, in bytes. Past it
   * the command is stopped (its process group killed) and its request fails
   * with `ERR_OUTPUT_LIMIT`. This bounds its logs in logs/ too. With `logDir`
   * at most 1073741824 (1 GiB, MAX_OUTPUT_LIMIT_BYTES), what a client can read back whole.
   * @default 67108864 (64 MiB)
   * @example maxOutputBytes: 10 * 1024 * 1024
   */
  maxOutputBytes?: number;
  /**
   * Output carried inline in the result, per stream, in bytes; the rest is
   * counted (`stdoutDropped`) and, with `logDir`, read by the client from the
   * log. @default 1048576 (1 MiB)
   */
  inlineOutputBytes?: number;
  /**
   * The server's environment, on which each command's is built: without its
   * OLDPWD, with PWD set to the command's directory, and with the variables
   * its request carries (see `acceptEnv`). @default process.env
   */
  env?: Record<string, string | undefined>;
  /**
   * Which of a request's variables (`EnqueueOptions.env`, `wq enqueue --env`)
   * its command may get: `'all'`, or a list of names. A fixed `command`
   * (`wq serve --exec`) is a boundary for whoever may file requests, and a
   * variable could cross it (LD_PRELOAD, PATH, BASH_ENV, or the command's own,
   * such as rsync's RSYNC_RSH), so with one a request may set only the listed
   * names, and not replace the whole environment; any other request fails
   * (`ERR_ENV_REFUSED`) without running.
   * @default 'all' without `command`; [] (none) with one
   * @example acceptEnv: ['MAKEFLAGS', 'LANG']
   */
  acceptEnv?: AcceptedVariables;
  /**
   * Write each command's output, as it comes, to `<logDir>/<id>.stdout` and
   * `.stderr` (up to `maxOutputBytes`), and its pid to `<id>.pid`, for `wq wait`
   * (the whole output), `--follow` and `wq status`. An output write that fails
   * stops the command and fails its request (`ERR_DISK_FULL` on a full disk,
   * else `ERR_OUTPUT_LOG`); the pid file is best effort. The spool's
   * `logs/` directory. @default no log files
   */
  logDir?: string;
  /**
   * Kill each command's whole process group if this process dies, however it
   * dies (`kill -9`, OOM): a small `/bin/sh` watchdog, one per manager, holds
   * the groups of the running commands and SIGKILLs them when its input from
   * this process ends (watchdog.ts). Costs a pipe write per task.
   * @default true
   */
  dieWithServer?: boolean;
}

/** A command could not be started (not found, bad working directory, invalid request). */
export class CommandError extends WorkQueueError {
  constructor(message: string, code = 'ERR_COMMAND') {
    super(message, code);
  }
}

/** CommandTaskManagerOptions with every default applied. */
export type ResolvedCommandOptions = Required<CommandTaskManagerOptions>;

/**
 * Applies the defaults and validates (pure); throws InvalidOptionError with the one message per option.
 * @example
 * resolveCommandOptions({ maxTasks: 4 }).killGraceMs; // 2000
 */
export function resolveCommandOptions(options: CommandTaskManagerOptions = {}): ResolvedCommandOptions {
  const o: ResolvedCommandOptions = {
    maxTasks: 1,
    command: [],
    acceptEnv: options.command !== undefined && options.command.length > 0 ? [] : 'all',
    killGraceMs: 2000,
    maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES,
    inlineOutputBytes: DEFAULT_INLINE_OUTPUT_BYTES,
    env: process.env,
    logDir: '',
    dieWithServer: true,
    ...stripUndefined(options),
  };
  if (!(Number.isInteger(o.maxTasks) && o.maxTasks >= 0)) {
    throw new InvalidOptionError(`Expected \`maxTasks\` to be an integer >= 0, got \`${String(options.maxTasks)}\``);
  }
  if (!Array.isArray(o.command) || !o.command.every((a) => typeof a === 'string')) {
    throw new InvalidOptionError('Expected `command` to be an array of strings');
  }
  const { acceptEnv } = o;
  if (acceptEnv !== 'all' && !(Array.isArray(acceptEnv) && acceptEnv.every((name) => typeof name === 'string' && badVariableName(name) === undefined))) {
    throw new InvalidOptionError(`Expected \`acceptEnv\` to be 'all' or an array of variable names, got \`${String(acceptEnv)}\` (${typeof acceptEnv})`);
  }
  for (const key of ['maxOutputBytes', 'inlineOutputBytes'] as const) {
    const value = o[key];
    if (!(typeof value === 'number' && (Number.isSafeInteger(value) || value === Infinity) && value >= 0)) {
      throw new InvalidOptionError(`Expected \`${key}\` to be an integer >= 0 (bytes), got \`${String(value)}\` (${typeof value})`);
    }
  }
  if (o.logDir !== '' && o.maxOutputBytes > MAX_OUTPUT_LIMIT_BYTES) {
    // With logs, a client reads the whole output back: it must fit in its memory.
    throw new InvalidOptionError(`Expected \`maxOutputBytes\` with \`logDir\` to be an integer >= 0 and <= ${MAX_OUTPUT_LIMIT_BYTES} (bytes), got \`${String(o.maxOutputBytes)}\``);
  }
  assertDurationMs('killGraceMs', o.killGraceMs); // terminateTask must not fail for want of a valid grace
  return o;
}
