/**
 * Connections to a queue's Redis server. BullMQ and ioredis are loaded only
 * here, and only when a `redis://` queue is used: a spool user's `wq` never
 * pays for them.
 */
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import type { RedisQueueAddress } from '../queue/address.js';

export type { Redis as RedisClient } from 'ioredis';

export type BullMQ = typeof import('bullmq');

let bullmq: Promise<BullMQ> | undefined;
/** BullMQ, loaded once. */
export function loadBullMQ(): Promise<BullMQ> {
  bullmq ??= import('bullmq');
  return bullmq;
}

/**
 * ioredis options for the address. `blocking`: for BullMQ's workers and
 * subscribers, whose commands must wait through a reconnection rather than fail
 * (BullMQ requires `maxRetriesPerRequest: null` there).
 */
export function redisOptions(address: RedisQueueAddress, blocking: boolean): RedisOptions {
  const options: RedisOptions = {
    host: address.host,
    port: address.port,
    db: address.db,
    maxRetriesPerRequest: blocking ? null : 3,
    // Reconnect soon, then every 2 s at most: a Redis restart or a network blip heals by itself.
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
    lazyConnect: false,
  };
  if (address.username !== undefined) options.username = address.username;
  if (address.password !== undefined) options.password = address.password;
  if (address.tls) options.tls = {};
  return options;
}

/** A new connection (ioredis connects in the background; commands wait for it). */
export async function connectRedis(address: RedisQueueAddress, blocking: boolean): Promise<RedisClient> {
  const { Redis } = await import('ioredis');
  const client = new Redis(redisOptions(address, blocking));
  // Without a listener, ioredis prints each failed reconnection; the commands' own errors say enough.
  client.on('error', () => {});
  return client;
}
