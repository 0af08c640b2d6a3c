/**
 * WorkQueueClient: puts requests into a queue and collects their results.
 * It checks what it is given, keeps time (timeouts) and listens to
 * AbortSignals; the queue interface (src/queue/backend.ts) does the rest, on
 * the backend that openQueue() picks for the options (the spool directory,
 * where a result is claimed by one waiter, woken by file-system events).
 */
import {
  InvalidOptionError,
  TaskFailedError,
  WorkQueueCancelledError,
  WorkQueueError,
  WorkQueueTimeoutError,
} from './errors.js';
import { openQueue } from './backends.js';
import type { QueueBackend, ResultOutcome, ResultWatch } from './queue/backend.js';
import { isRequestId, type IdSource } from './queue/request-id.js';
import { isRedisAddress, parseRedisAddress } from './queue/address.js';
import type { AbortOutcome, AbortReason, RequestResult, RequestState } from './queue/types.js';
import { silentLogger, type Logger } from './logger.js';
import { stripUndefined } from './options.js';
import { invalidVariables, type TaskInput } from './task-input.js';
import { MAX_TIMER_DELAY_MS, setLongTimeout, type LongTimeout } from './long-timer.js';

export type { AbortOutcome, RequestResult } from './queue/types.js';

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

type ResolvedClientOptions = Required<Omit<WorkQueueClientOptions, 'idSource' | 'spool' | 'queue'>> & { idSource: IdSource | undefined } & ({ spool: string; queue?: undefined } | { spool?: undefined; queue: string });

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

export class WorkQueueClient {
  readonly #o: ResolvedClientOptions;
  readonly #queue: QueueBackend;

  constructor(options: WorkQueueClientOptions) {
    this.#o = resolveClientOptions(options);
    this.#queue = openQueue(this.#o);
  }

  /** Where the queue is: the spool directory, or the `redis://` address (password hidden). */
  get spool(): string {
    return this.#o.spool ?? this.#queue.location;
  }

  /**
   * The queue this client talks to, for what the client does not wrap: a
   * status snapshot, one request's progress, its output as it is written.
   * Experimental: the queue interface may still change while a second
   * backend is added.
   * @example
   * const { counts } = await client.queue.status();
   */
  get queue(): QueueBackend {
    return this.#queue;
  }

  /**
   * Adds a request to the queue and returns its id. The request must be plain
   * data (objects, arrays, strings, numbers, booleans, null, bytes) of at most 1 MiB encoded.
   * @example
   * const id = await client.enqueue({ argv: ['echo', 'hi'] });
   */
  async enqueue(request: unknown, options: EnqueueOptions = {}): Promise<string> {
    const { runTimeoutMs } = options;
    if (runTimeoutMs !== undefined && !(Number.isFinite(runTimeoutMs) && runTimeoutMs >= 0)) {
      throw new InvalidOptionError(`Expected \`runTimeoutMs\` to be a finite number >= 0, got \`${String(runTimeoutMs)}\` (${typeof runTimeoutMs})`);
    }
    return this.#queue.enqueue(request, resolveTaskInput(options), runTimeoutMs);
  }

  /**
   * Asks the server to abort a request, or each of several: never start it, or
   * kill it if running, or remove its unclaimed result. Every id is checked
   * before any abort is filed. Aborting an unknown id is harmless (see state()
   * to tell). In a spool shared by several users, the server carries out only
   * aborts of the caller's own requests (unless it allows foreign aborts).
   * @example
   * await client.abort(id);
   * await client.abort([first, second]);
   */
  async abort(ids: string | readonly string[], reason: AbortReason = 'user'): Promise<void> {
    const list = typeof ids === 'string' ? [ids] : ids;
    for (const id of list) assertRequestId(id);
    return this.#queue.abort(list, reason);
  }

  /**
   * Aborts a request, like abort(), and waits until the server has acted on
   * it. Rejects with AbortRefusedError when the server refused it (on a shared
   * spool, only the request's owner, the server's user and root may abort
   * it): the request carries on. See AbortOutcome for what it resolves with.
   * @example
   * if ((await client.abortAndConfirm(id)) === 'unknown') console.error(`no request ${id}`);
   */
  async abortAndConfirm(id: string, options: ConfirmAbortOptions = {}): Promise<AbortOutcome> {
    assertRequestId(id);
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
      throw new InvalidOptionError(`Expected \`timeoutMs\` to be a finite number >= 0, got \`${String(timeoutMs)}\` (${typeof timeoutMs})`);
    }
    return this.#queue.abortAndConfirm(id, timeoutMs);
  }

  /**
   * Aborts every request of the calling user that is queued or running now:
   * those whose request files it owns, never another user's in a shared
   * spool. Results already written are left to be claimed. Resolves with the
   * ids it aborted, oldest first.
   * @example
   * const aborted = await client.abortAll(); // ['1795366421947895-8d42b22ad816', …]
   */
  async abortAll(reason: AbortReason = 'user'): Promise<string[]> {
    return this.#queue.abortOwn(reason);
  }

  /**
   * Reads a request's result without claiming it: the result stays for a wait
   * to claim. Resolves with undefined while the request is queued or running;
   * rejects with UnknownRequestError when it is in no state (never enqueued,
   * aborted, or its result claimed).
   * @example
   * const result = await client.peek(id);
   * if (result !== undefined) console.log(result.status);
   */
  async peek(id: string): Promise<RequestResult | undefined> {
    assertRequestId(id);
    return this.#queue.peek(id);
  }

  /**
   * Waits for a request's result and claims it (removes it from the spool;
   * with `keep`, reads it and leaves it there).
   * Resolves with the task's value; rejects with TaskFailedError carrying the
   * task's error, WorkQueueTimeoutError, WorkQueueCancelledError or UnknownRequestError.
   * @example
   * const value = await client.wait(id, { timeoutMs: 60_000 });
   */
  async wait(id: string, options: WaitOptions = {}): Promise<unknown> {
    return resultValue(await this.waitForResult(id, options));
  }

  /** Like wait(), but resolves with the whole result envelope (status, timings), even for a failed task. */
  async waitForResult(id: string, options: WaitOptions = {}): Promise<RequestResult> {
    assertRequestId(id);
    const { timeoutMs, signal } = options;
    if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs >= 0)) {
      throw new InvalidOptionError(`Expected \`timeoutMs\` to be a finite number >= 0, got \`${String(timeoutMs)}\` (${typeof timeoutMs})`);
    }
    return new Promise<RequestResult>((resolve, reject) => {
      let timer: LongTimeout | undefined;
      let watch: ResultWatch | undefined;
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        watch?.stop();
        timer?.clear();
        signal?.removeEventListener('abort', onCancel);
        fn();
      };
      const finish = (outcome: ResultOutcome): void => settle(() => ('result' in outcome ? resolve(outcome.result) : reject(outcome.error)));
      const keep = options.keep === true;
      const giveUp = (reason: AbortReason, error: Error): void => {
        settle(() => {
          this.abort(id, reason).then(() => reject(error), reject);
        });
      };
      const onCancel = (): void => {
        if (options.abortOnCancel === false || keep) settle(() => reject(new WorkQueueCancelledError(id, signal?.reason, false)));
        else giveUp('cancelled', new WorkQueueCancelledError(id, signal?.reason));
      };
      const expire = (): void => {
        if (keep) settle(() => reject(new WorkQueueTimeoutError(id, timeoutMs!, 'total', false)));
        else giveUp('timeout', new WorkQueueTimeoutError(id, timeoutMs!));
      };
      /** At the deadline: a last look settles the wait if the result is there, or the request is in no state. */
      const afterLastLook = (outcome: ResultOutcome | undefined): void => {
        if (settled) return;
        // A deadline reached with nothing to wait for is an unknown request, not a late one.
        if (outcome !== undefined) finish(outcome);
        else expire();
      };
      const onTimeout = (): void => {
        const look = watch!.lastLook();
        if (look instanceof Promise) look.then(afterLastLook, (err: unknown) => finish({ error: err }));
        else afterLastLook(look);
      };
      if (signal?.aborted) return onCancel();
      signal?.addEventListener('abort', onCancel, { once: true });
      if (timeoutMs !== undefined) timer = setLongTimeout(onTimeout, timeoutMs);
      const take = keep || options.deferClaim === true ? 'read' : 'claim';
      watch = this.#queue.watchResult(id, { take, keepOutput: options.keepLogs === true }, finish);
    });
  }

  /**
   * Claims a result read without claiming it (a wait with `deferClaim` or
   * `keep`, peek()): removes it and its output logs from the spool. Resolves
   * with false if it was no longer there (another waiter claimed it, or it
   * was aborted). In a shared spool, where only the server removes results,
   * files an abort that makes the server remove it.
   * @example
   * await client.claim(id);
   */
  async claim(id: string): Promise<boolean> {
    assertRequestId(id);
    return this.#queue.claim(id);
  }

  /**
   * Enqueues a request and waits for its result.
   * @example
   * const value = await client.run({ argv: ['true'] }, { timeoutMs: 10_000 });
   */
  async run(request: unknown, options: WaitOptions & EnqueueOptions = {}): Promise<unknown> {
    const { runTimeoutMs, env, replaceEnv, stdin } = options;
    return this.wait(await this.enqueue(request, { runTimeoutMs, env, replaceEnv, stdin }), options);
  }

  /** Which state a request is in now, or undefined if it is in none. */
  state(id: string): RequestState | undefined {
    assertRequestId(id);
    const state = this.#queue.locate(id);
    if (state instanceof Promise) {
      void state.catch(() => {});
      throw new WorkQueueError(`state() answers at once, which the queue at ${this.#queue.location} cannot: use queue.locate()`, 'ERR_UNSUPPORTED');
    }
    return state;
  }

  /** Removes a request's output logs (after a wait with `keepLogs`). */
  removeRequestLogs(id: string): void {
    assertRequestId(id);
    this.#queue.removeOutput(id);
  }

  /** Stops watching. Pending waits are left unresolved; call after they settle. */
  close(): void {
    this.#queue.close();
  }
}

/** Turns a result envelope into the task's value, or throws the task's error. */
export function resultValue(result: RequestResult): unknown {
  if (result.ok) return result.value;
  if (result.status === 'timed_out') throw new WorkQueueTimeoutError(result.id, result.runTimeoutMs ?? 0, 'run');
  throw new TaskFailedError(result.id, result.error!);
}

function assertRequestId(id: string): void {
  if (typeof id !== 'string' || !isRequestId(id)) {
    throw new InvalidOptionError(`Expected a request id like 1763830000000000-0123456789ab, got \`${String(id)}\``);
  }
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
