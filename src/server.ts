/**
 * WorkQueueServer: the one process that moves requests through the spool.
 *
 * This is the public entry: options, a stop signal, and the serving loop of
 * the spool backend behind it, in src/spool/server/:
 *   lifecycle.ts  take the lock, recover, watch, tick at every event, drain, release
 *   tick.ts       one tick, as the list of its steps: reapCompleted → expireRunTimeouts
 *                 → admitNew → processAborts → startPending → parkWaiting → publishHold
 *   intake.ts, run-steps.ts   those steps
 *   book.ts       one entry per request id: its stage and times
 *   inbox.ts      names the watchers and rescans saw, not yet looked at
 *   recovery.ts   what a previous server left; housekeeping.ts: old leftovers
 *   serving.ts    what one serving holds, and the effects the steps share
 *
 * Single-threaded by construction: every transition happens inside a tick,
 * which runs synchronously to the end; watchers, timers and the task manager
 * only record what they saw and schedule the next tick. A fault in a step
 * (EACCES, EMFILE, ENOSPC …) is logged once per episode and retried at the
 * next event or rescan; a step that fails leaves the books as they were for
 * what it did not finish, so nothing is lost.
 */
import { resolveServerOptions, type ResolvedOptions, type WorkQueueServerOptions } from './spool/server/options.js';
import { serveSpool } from './spool/server/lifecycle.js';
import type { Serving } from './spool/server/serving.js';
import type { TaskManager } from './task-manager/types.js';

export { resolveServerOptions, type WorkQueueServerOptions } from './spool/server/options.js';
export type { FinishStatus } from './metrics.js';

export interface ProcessRequestsOptions {
  /** Stops the server: no new starts, running tasks get `shutdownGraceMs`, the lock is released. */
  signal?: AbortSignal;
}

export class WorkQueueServer {
  readonly #o: ResolvedOptions;
  /** The current serving of the spool, once processRequests has taken the lock. */
  #serving: Serving | undefined;

  constructor(options: WorkQueueServerOptions) {
    this.#o = resolveServerOptions(options);
  }

  /** Requests queued and running, for status and tests. */
  get counts(): { pending: number; running: number } {
    return { pending: this.#serving?.book.queued ?? 0, running: this.#serving?.book.running ?? 0 };
  }

  /**
   * Serves the spool until `signal` aborts: takes the lock, recovers what a
   * previous server left, then runs ticks whenever something happens.
   * Rejects with SpoolLockedError if another server holds the spool.
   * @example
   * const controller = new AbortController();
   * await new WorkQueueServer({ spool }).processRequests(new InProcessTaskManager(fn), { signal: controller.signal });
   */
  async processRequests(manager: TaskManager, options: ProcessRequestsOptions = {}): Promise<void> {
    await serveSpool(this.#o, manager, options.signal, (serving) => (this.#serving = serving));
  }
}
