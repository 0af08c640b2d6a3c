/**
 * A server of a queue on Redis: one of any number, on any hosts, each running
 * at most its task manager's capacity (`--max-tasks`), the whole queue at most
 * BullMQ's global concurrency (`--global-max-tasks`). It takes jobs itself
 * (BullMQ's manual fetching) only while its manager has room, so a host held
 * by its load limit takes nothing, and every TaskManager works unchanged.
 *
 * What it keeps (docs/scale-out.md):
 * - FIFO: jobs are taken from BullMQ's wait list in the order they were added.
 * - An abort wins: a task starts only if no abort marker is there, and a
 *   result is stored only if none is (one Lua script each: server/store.ts);
 *   a running task is killed by the server that runs it, told on the queue's
 *   channel (and by a look at the markers every second, in case the message
 *   was lost).
 * - Never two copies at once: a job's lock is renewed every quarter of the
 *   lock duration; a server that cannot renew it in time kills the task early
 *   enough that it is gone (kill grace included) before the lock expires and
 *   BullMQ's stalled check may hand the job to another server. A job is let
 *   go (completed, or put back in line) only once its task is gone.
 * - A server that dies: its jobs' locks expire and BullMQ's stalled check (in
 *   every server) puts them back at the head of the line; the server that
 *   takes one that was cut short once under `--fail-interrupted` (twice
 *   otherwise: BullMQ marks it failed) answers it with a `restarted` result.
 *
 * The loop itself: server/serving.ts; its keys: server/store.ts; options: server/options.ts.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TaskManager } from '../task-manager/types.js';
import type { RedisServerOptions } from './server/options.js';
import { RedisServing } from './server/serving.js';

export { checkLockDuration, type RedisServerOptions } from './server/options.js';

/** Serves the queue until `signal` aborts. */
export async function serveRedis(options: RedisServerOptions, manager: TaskManager, signal?: AbortSignal): Promise<void> {
  await new RedisServing(options, manager).run(signal);
}

/** A private directory for commands' output while they run. */
export function makeLogDir(): string {
  return mkdtempSync(join(tmpdir(), 'wq-output-'));
}
