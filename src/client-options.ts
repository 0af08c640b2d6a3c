/**
 * WorkQueueClient's options: what each means, and how they are checked and
 * resolved with their defaults (the client and `wq` share these).
 */
import { InvalidOptionError } from './errors.js';
import { isRedisAddress, parseRedisAddress } from './queue/address.js';
import type { IdSource } from './queue/request-id.js';
import { silentLogger, type Logger } from './logger.js';
import { stripUndefined } from './options.js';
import { invalidVariables, type TaskInput } from './task-input.js';
import { MAX_TIMER_DELAY_MS } from './long-timer.js';

export interface WorkQueueClientOptions {
  /** The spool directory. Created (with its state directories) if missing. Give this or `queue`. */
  spool?: string;
  /**
   * A queue on Redis, shared by many hosts: `redis://HOST[:PORT]/NAME`
   * (docs/scale-out.md). Give this or `spool`. Call close() when done: the
   * client keeps its connections open until then.
   */
  queue?: string;
  /**
   * Wake waiters on file-system events for complete/. With `false`, wait()
   * only polls every `recheckIntervalMs` (for network file systems).
   * @default true
   */
  watch?: boolean;
  /**
   * Period of the safety re-check while waiting (the poll period when `watch` is false).
   * @default 1000
   */
  recheckIntervalMs?: number;
  /** fsync each request and its directory before enqueue() returns. @default false */
  durable?: boolean;
  /** Clock and randomness for ids; tests inject one to force collisions or clock steps. */
  idSource?: IdSource;
  /**
   * Told (warn) what a wait works around: something at complete/<id> that is
   * not a result, a watch that cannot be set up. Each once.
   * @default silent
   */
  logger?: Logger;
}

export interface EnqueueOptions {
  /**
   * The server terminates the task this long after it starts; waiting then
   * fails with a WorkQueueTimeoutError whose `deadline` is 'run'.
   * @default no limit
   */
  runTimeoutMs?: number;
  /**
   * Environment variables for the task. A command gets them on top of the
   * server's environment (whose OLDPWD it never gets, and whose PWD is set to
   * the command's directory); a handler gets them as `context.env`. A server
   * that runs a fixed command (`wq serve --exec`) takes only the names it
   * accepts and fails the request otherwise. They are written into the
   * request file (mode 0640): in a shared spool its group can read them.
   * @default none: a command gets the server's environment
   * @example env: { MAKEFLAGS: '-j8' }
   */
  env?: Record<string, string>;
  /**
   * `env` is the command's whole environment, instead of an addition to the
   * server's (`wq enqueue --env-all` sends `process.env` so). @default false
   * @example { env: { ...process.env } as Record<string, string>, replaceEnv: true }
   */
  replaceEnv?: boolean;
  /**
   * The task's standard input: a command reads it on its stdin, a handler gets
   * it as `context.stdin` (bytes). A string is sent as UTF-8. It counts against
   * the request's size limit (1 MiB encoded, with the body and `env`).
   * @default none: a command's stdin is /dev/null
   * @example stdin: 'yes\n'
   */
  stdin?: Uint8Array | string;
}

export interface WaitOptions {
  /** Give up after this long: the request is aborted and WorkQueueTimeoutError thrown. @default no limit */
  timeoutMs?: number;
  /** Cancels the wait: the request is aborted (unless `abortOnCancel` is false) and WorkQueueCancelledError thrown. */
  signal?: AbortSignal;
  /**
   * When `signal` cancels the wait, abort the request too. With `false` the
   * request is left to run and its result to be claimed by a later wait.
   * @default true
   */
  abortOnCancel?: boolean;
  /**
   * Leave the request's output logs in logs/ after claiming the result (the
   * caller reads and removes them, e.g. with removeRequestLogs()). Without it,
   * a command result's streams are read whole from the logs (the envelope
   * carries only their first 1 MiB); a `stdoutDropped`/`stderrDropped` still
   * set on the value means that part of the output was lost. @default false
   */
  keepLogs?: boolean;
  /**
   * Read the result without claiming it: it stays in the spool, with its
   * logs, for a later wait to claim (or for the server to expire). Such a wait
   * never aborts the request: its timeout and `signal` only stop the waiting
   * (WorkQueueTimeoutError or WorkQueueCancelledError with `requestAborted`
   * false). A waiter that claims the result meanwhile loses nothing to it; this
   * one then rejects with UnknownRequestError.
   * @default false
   * @example
   * const result = await client.waitForResult(id, { keep: true }); // a later wait(id) still gets it
   */
  keep?: boolean;
  /**
   * Read the result without claiming it, and leave the claim to the caller
   * (claim()) once it has used the result, e.g. printed or stored it: a
   * caller that fails to (a closed stdout) leaves the result in the spool for
   * a later wait instead of losing it. Unlike `keep`, a timeout or `signal`
   * still aborts the request. A waiter that claims the result in between
   * loses nothing to this one (both may then use it).
   * @default false
   * @example
   * const result = await client.waitForResult(id, { deferClaim: true });
   * await save(result);
   * await client.claim(id);
   */
  deferClaim?: boolean;
}

export interface ConfirmAbortOptions {
  /** How long to wait for the server to act on the abort. @default 10000 */
  timeoutMs?: number;
}

export type ResolvedClientOptions = Required<Omit<WorkQueueClientOptions, 'idSource' | 'spool' | 'queue'>> & { idSource: IdSource | undefined } & ({ spool: string; queue?: undefined } | { spool?: undefined; queue: string });

export function resolveClientOptions(options: WorkQueueClientOptions): ResolvedClientOptions {
  const { spool, queue } = options;
  if (spool !== undefined && queue !== undefined) throw new InvalidOptionError('Expected `spool` or `queue`, not both');
  if (queue !== undefined) {
    if (typeof queue !== 'string' || !isRedisAddress(queue)) {
      throw new InvalidOptionError(`Expected \`queue\` to be a redis:// address, got \`${String(queue)}\` (${typeof queue})`);
    }
    parseRedisAddress(queue); // says what is wrong with it now, not at the first call
  } else if (typeof spool !== 'string' || spool === '') {
    throw new InvalidOptionError(`Expected \`spool\` to be a non-empty string, got \`${String(spool)}\` (${typeof spool})`);
  }
  const resolved = {
    watch: true,
    recheckIntervalMs: 1000,
    durable: false,
    logger: silentLogger,
    ...stripUndefined(options),
    idSource: options.idSource,
  } as ResolvedClientOptions;
  // A period setInterval can hold: past 2^31-1 ms Node fires it every millisecond instead.
  if (!(Number.isFinite(resolved.recheckIntervalMs) && resolved.recheckIntervalMs > 0 && resolved.recheckIntervalMs <= MAX_TIMER_DELAY_MS)) {
    throw new InvalidOptionError(`Expected \`recheckIntervalMs\` to be a finite number > 0 and <= ${MAX_TIMER_DELAY_MS}, got \`${String(resolved.recheckIntervalMs)}\` (${typeof resolved.recheckIntervalMs})`);
  }
  return resolved;
}

/** EnqueueOptions' env, replaceEnv and stdin, checked, as the request envelope carries them. */
export function resolveTaskInput(options: Pick<EnqueueOptions, 'env' | 'replaceEnv' | 'stdin'>): TaskInput {
  const { env, replaceEnv, stdin } = options;
  const input: TaskInput = {};
  if (env !== undefined) {
    const why = invalidVariables(env);
    if (why !== undefined) throw new InvalidOptionError(`Expected \`env\` to be a map of variable names to strings, but it ${why}`);
    input.env = Object.assign(Object.create(null) as Record<string, string>, env); // __proto__ is a name like any other
  }
  if (replaceEnv !== undefined && typeof replaceEnv !== 'boolean') {
    throw new InvalidOptionError(`Expected \`replaceEnv\` to be a boolean, got \`${String(replaceEnv)}\` (${typeof replaceEnv})`);
  }
  if (replaceEnv === true) {
    input.replaceEnv = true;
    input.env ??= Object.create(null) as Record<string, string>;
  }
  if (stdin !== undefined) {
    if (typeof stdin !== 'string' && !(stdin instanceof Uint8Array)) {
      throw new InvalidOptionError(`Expected \`stdin\` to be a Uint8Array or a string, got \`${String(stdin)}\` (${typeof stdin})`);
    }
    input.stdin = typeof stdin === 'string' ? Buffer.from(stdin, 'utf8') : stdin;
  }
  return input;
}
