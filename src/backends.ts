/**
 * Where a queue comes from: the one place that turns options into a backend
 * of the queue interface (src/queue/backend.ts): a spool directory (the
 * default), or a queue on Redis (a `redis://` address); WorkQueueClient and
 * `wq` follow without a change.
 */
import type { QueueBackend } from './queue/backend.js';
import { parseRedisAddress } from './queue/address.js';
import { RedisQueue } from './redis/queue.js';
import { SpoolQueue, type SpoolQueueOptions } from './spool/queue.js';

/** For `wq serve`: what it checks of a spool before a WorkQueueServer serves it. */
export { commandLogDir, writableByOthers } from './spool/serve-checks.js';

/** A queue's settings, resolved (WorkQueueClientOptions, with every default applied): a spool directory, or a `redis://` queue address. */
export type OpenQueueOptions = Omit<SpoolQueueOptions, 'spool'> & { spool: string; queue?: undefined } | (Omit<SpoolQueueOptions, 'spool'> & { spool?: undefined; queue: string });

/**
 * The queue the options name. Opens nothing yet: the backend touches its
 * storage (or connects) on first use.
 * @example
 * const queue = openQueue(resolveClientOptions({ spool: '/var/spool/wq' }));
 * const { counts } = await queue.status();
 */
export function openQueue(options: OpenQueueOptions): QueueBackend {
  if (options.queue !== undefined) {
    return new RedisQueue({ address: parseRedisAddress(options.queue), recheckIntervalMs: options.recheckIntervalMs, logger: options.logger, idSource: options.idSource });
  }
  return new SpoolQueue(options);
}
