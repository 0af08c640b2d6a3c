/**
 * WorkQueueClient: puts requests into a queue and collects their results.
 * It checks what it is given, keeps time (timeouts) and listens to
 * AbortSignals; the queue interface (src/queue/backend.ts) does the rest, on
 * the backend that openQueue() picks for the options: the spool directory,
 * or a queue on Redis. Its options: client-options.ts.
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
import { isRequestId } from './queue/request-id.js';
import type { AbortOutcome, AbortReason, RequestResult, RequestState } from './queue/types.js';
import { setLongTimeout, type LongTimeout } from './long-timer.js';
import { resolveClientOptions, resolveTaskInput, type ConfirmAbortOptions, type EnqueueOptions, type ResolvedClientOptions, type WaitOptions, type WorkQueueClientOptions } from './client-options.js';

export type { AbortOutcome, RequestResult } from './queue/types.js';
export { resolveClientOptions, resolveTaskInput, type ConfirmAbortOptions, type EnqueueOptions, type WaitOptions, type WorkQueueClientOptions } from './client-options.js';

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
