/**
 * Connections to a queue's Redis server. BullMQ and ioredis are loaded only
 * here, and only when a `redis://` queue is used: a spool user's `wq` never
 * pays for them.
 *
 * While a connection is down, its commands wait for it to come back (they are
 * not failed one by one), for as long as its owner is willing to wait: a
 * client gives up on a Redis it never reached after CONNECT_GIVE_UP_MS (so
 * `wq` says so rather than hang) and on one that went away after
 * RECONNECT_GIVE_UP_MS (a Redis restart is survived); a server never gives up.
 * A client's command that gets no answer within COMMAND_TIMEOUT_MS (a Redis
 * that accepts connections but does not answer: stopped, or its host hung)
 * fails: `wq` says so rather than hang.
 */
import { createRequire } from 'node:module';
import type { Redis as RedisClient, RedisOptions } from 'ioredis';
import type { RedisQueueAddress } from '../queue/address.js';

export type { Redis as RedisClient } from 'ioredis';

export type BullMQ = typeof import('bullmq');

/** A client's patience with a Redis it has not reached yet, and with one that went away. */
export const CONNECT_GIVE_UP_MS = 5000;
export const RECONNECT_GIVE_UP_MS = 60_000;
export const COMMAND_TIMEOUT_MS = 5000;

/**
 * BullMQ and ioredis are loaded with require(), not import(): both ship
 * CommonJS, and `wq`'s bundle runs under its compile cache, which has no ES
 * module loader to hand an import() of a package to.
 */
const requirePackage = createRequire(import.meta.url);

let bullmq: BullMQ | undefined;
/** BullMQ, loaded once. */
export function loadBullMQ(): Promise<BullMQ> {
  bullmq ??= requirePackage('bullmq') as BullMQ;
  return Promise.resolve(bullmq);
}

/**
 * ioredis options for the address; `patient`: reconnect for ever (a server),
 * else give up as the module says (a client). The password is the address's,
 * else $WQ_REDIS_PASSWORD (which keeps it off command lines).
 */
export function redisOptions(address: RedisQueueAddress, patient: boolean, env: NodeJS.ProcessEnv = process.env): RedisOptions & { onReady: () => void } {
  let everReady = false;
  let downSince: number | undefined;
  const options: RedisOptions = {
    host: address.host,
    port: address.port,
    db: address.db,
    // Commands wait through a reconnection; they fail only once the connection is given up (BullMQ requires this for workers).
    maxRetriesPerRequest: null,
    connectTimeout: 5000,
    // A server's commands (BullMQ's blocking takes among them) wait as long as they must.
    ...(patient ? {} : { commandTimeout: COMMAND_TIMEOUT_MS }),
    retryStrategy: (attempt) => {
      downSince ??= Date.now();
      const limit = patient ? Infinity : everReady ? RECONNECT_GIVE_UP_MS : CONNECT_GIVE_UP_MS;
      if (Date.now() - downSince > limit) return null;
      return Math.min(attempt * 100, 1000);
    },
  };
  const password = address.password ?? env.WQ_REDIS_PASSWORD;
  if (address.username !== undefined) options.username = address.username;
  if (password !== undefined && password !== '') options.password = password;
  if (address.tls) options.tls = {};
  /** The connection is ready: a later loss is a reconnection (RECONNECT_GIVE_UP_MS), counted from when it happens. */
  const onReady = (): void => {
    everReady = true;
    downSince = undefined;
  };
  return { ...options, onReady };
}

/** A new connection (ioredis connects in the background; commands wait for it, as redisOptions() says). */
export async function connectRedis(address: RedisQueueAddress, patient: boolean): Promise<RedisClient> {
  const { Redis } = requirePackage('ioredis') as typeof import('ioredis');
  const { onReady, ...rest } = redisOptions(address, patient);
  const client = new Redis(rest);
  client.on('ready', onReady);
  // Without a listener, ioredis prints each failed reconnection; the commands' own errors say enough.
  client.on('error', () => {});
  return client;
}

/** Whether an error means Redis cannot be reached (as opposed to a command that failed). */
export function isUnreachable(err: unknown): boolean {
  const message = err instanceof Error ? err.message : '';
  const code = (err as { code?: unknown } | undefined)?.code;
  return /Connection is closed|Command timed out|connect ECONNREFUSED|connect ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH/.test(message) || code === 'ECONNREFUSED';
}
