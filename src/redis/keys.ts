/**
 * The names a queue on Redis uses (docs/scale-out.md, *Keys*). BullMQ owns
 * `wq:bullmq:NAME:…` (its wait and active lists, locks, stalled checks); wq
 * owns `wq:NAME:…`: results, output, abort markers, what runs where, the
 * servers alive. Pure.
 */
import type { RedisQueueAddress } from '../queue/address.js';
import type { ManagerHold, RequestHold } from '../queue/types.js';

/** BullMQ's key prefix: its keys are `wq:bullmq:NAME:…`. */
export const BULLMQ_PREFIX = 'wq:bullmq';
/**
 * How long an abort marker stays once nothing runs the request (a tombstone:
 * an abort for a request not enqueued yet still wins if it comes within
 * this, as on a spool). While the request runs, the marker stays until the
 * server that runs it, or the next one, has acted on it.
 */
export const ABORT_MARKER_TTL_MS = 10 * 60 * 1000;
/** A server writes its heartbeat this often; its `alive` key expires HEARTBEAT_DEAD_MS after the last one. */
export const HEARTBEAT_MS = 1000;
export const HEARTBEAT_DEAD_MS = 5000;

export interface QueueKeys {
  name: string;
  /** The encoded result of `id` (the spool's result envelope), until claimed or expired. */
  result(id: string): string;
  /** A command's whole stdout or stderr, when it did not fit inline (the result says `logs`). */
  output(id: string, stream: 'stdout' | 'stderr'): string;
  /** Sorted set: unclaimed results by finish time (ms). */
  results: string;
  /** `id` is aborted: the reason (see ABORT_MARKER_TTL_MS). */
  abort(id: string): string;
  /** Hash: running id → JSON RunningRecord. */
  running: string;
  /** Hash: server id → JSON ServerRecord (what it is; its last heartbeat). */
  servers: string;
  /** Exists while the server is alive: set with an expiry at each heartbeat, so Redis's clock alone decides (no clock skew between hosts). */
  alive(serverId: string): string;
  /** Pub/sub channel: `done <id>` when a result is stored, `abort <id>` when an abort is filed. */
  events: string;
  /** BullMQ's list of waiting job ids (newest at the head). */
  wait: string;
  /** BullMQ's list of active job ids. */
  active: string;
  /** BullMQ's queue settings (its global concurrency: field `concurrency`). */
  meta: string;
}

export function queueKeys(address: Pick<RedisQueueAddress, 'name'>): QueueKeys {
  const base = `wq:${address.name}`;
  const bull = `${BULLMQ_PREFIX}:${address.name}`;
  return {
    name: address.name,
    result: (id) => `${base}:result:${id}`,
    output: (id, stream) => `${base}:output:${id}:${stream}`,
    results: `${base}:results`,
    abort: (id) => `${base}:abort:${id}`,
    running: `${base}:running`,
    servers: `${base}:servers`,
    alive: (serverId) => `${base}:alive:${serverId}`,
    events: `${base}:events`,
    wait: `${bull}:wait`,
    active: `${bull}:active`,
    meta: `${bull}:meta`,
  };
}

/** What a server records of a task it runs, for `wq status` on any host. */
export interface RunningRecord {
  server: string;
  host: string;
  /** The task's process group leader, for tasks that run in a process of their own. */
  pid?: number;
  startedAt: number;
}

/** A server's heartbeat. */
export interface ServerRecord {
  id: string;
  host: string;
  pid: number;
  startedAt: number;
  maxTasks: number | null;
  running: number;
  heartbeatAt: number;
  /** Why it takes nothing now although it has room (its load limit), or that it is stopping. */
  hold?: ManagerHold | { reason: 'stopping' };
}

/** An event on the queue's channel, parsed; undefined for anything else. */
export function parseEvent(message: string): { type: 'done' | 'abort'; id: string } | undefined {
  const space = message.indexOf(' ');
  const type = message.slice(0, space);
  if (space < 0 || (type !== 'done' && type !== 'abort')) return undefined;
  return { type, id: message.slice(space + 1) };
}


/** Parses a JSON hash value, or undefined if it is not an object (a hand-edited key). */
export function parseRecord<T>(text: string | null | undefined): T | undefined {
  if (text === null || text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as T) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What keeps the first waiting request from starting, from the servers alive
 * (pure): none at all; every one with all its slots taken, or the queue's
 * global limit reached (capacity); else the first one that has room but holds
 * (its load limit, or stopping). Undefined when a server has room and takes work.
 */
export function queueHold(servers: readonly Pick<ServerRecord, 'maxTasks' | 'running' | 'hold'>[], running: number, globalMaxTasks: number | undefined): RequestHold | undefined {
  if (servers.length === 0) return { reason: 'no-server' };
  if (globalMaxTasks !== undefined && running >= globalMaxTasks) return { reason: 'capacity', maxTasks: globalMaxTasks };
  const withRoom = servers.filter((s) => s.maxTasks === null || s.running < s.maxTasks);
  if (withRoom.length === 0) return { reason: 'capacity', maxTasks: servers.reduce((sum, s) => sum + (s.maxTasks ?? 0), 0) };
  if (withRoom.some((s) => s.hold === undefined)) return undefined;
  return withRoom[0]!.hold;
}
