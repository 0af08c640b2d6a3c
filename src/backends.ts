/**
 * Where a queue comes from: the one place that turns options into a backend
 * of the queue interface (src/queue/backend.ts). Today every queue is a spool
 * directory; a backend that lives elsewhere (a `redis://` URL) plugs in here,
 * and WorkQueueClient and `wq` follow without a change.
 */
import type { QueueBackend } from './queue/backend.js';
import { SpoolQueue, type SpoolQueueOptions } from './spool/queue.js';

/** For `wq serve`: what it checks of a spool before a WorkQueueServer serves it. */
export { commandLogDir, writableByOthers } from './spool/serve-checks.js';

/** A queue's settings, resolved (WorkQueueClientOptions, with every default applied). */
export type OpenQueueOptions = SpoolQueueOptions;

/**
 * The queue the options name. Opens nothing yet: the backend touches its
 * storage on first use.
 * @example
 * const queue = openQueue(resolveClientOptions({ spool: '/var/spool/wq' }));
 * const { counts } = await queue.status();
 */
export function openQueue(options: OpenQueueOptions): QueueBackend {
  return new SpoolQueue(options);
}
