/**
 * A Redis server's reads and writes of wq's keys (src/redis/keys.ts), each
 * promise that needs atomicity in one Lua script: a task starts only if no
 * abort is filed (START), a result is stored only if none is (STORE_RESULT).
 * BullMQ's own keys are BullMQ's (the Worker and its jobs).
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ProtocolError, serializeError, type SerializedError } from '../../errors.js';
import type { RequestResult } from '../../queue/types.js';
import { encodeResult } from '../../spool/codec.js';
import type { RedisClient } from '../connect.js';
import { ABORT_MARKER_TTL_MS, HEARTBEAT_DEAD_MS, type QueueKeys, type RunningRecord, type ServerRecord } from '../keys.js';
import { cutStreams, type StreamName } from '../output.js';

/** A result as a server stores it (the envelope without its version and type). */
export type ResultFields = Omit<RequestResult, 'v' | 'type'>;
/** A command's whole streams, when they did not fit inline in its result. */
export type Outputs = Partial<Record<StreamName, Buffer>>;

/** Largest value Redis stores by default (proto-max-bulk-len): a longer stream stays cut, and its result says so. */
const MAX_STORED_STREAM_BYTES = 512 * 1024 * 1024;

/**
 * Stores a result unless the request is aborted, atomically (an abort filed
 * at any moment either finds the result, and removes it, or keeps it from
 * being stored). KEYS: abort marker, result, results set, running hash,
 * stdout, stderr. ARGV: id, result, ttl ms, finished at, channel, stdout,
 * stderr, and whether each of the two is given ('1'). 1 if stored.
 */
const STORE_RESULT = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HDEL', KEYS[4], ARGV[1])
  return 0
end
if ARGV[8] == '1' then redis.call('SET', KEYS[5], ARGV[6], 'PX', ARGV[3]) end
if ARGV[9] == '1' then redis.call('SET', KEYS[6], ARGV[7], 'PX', ARGV[3]) end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('PUBLISH', ARGV[5], 'done ' .. ARGV[1])
return 1
`;

/**
 * Records a request as running here unless it is aborted, atomically: a task
 * never starts after its abort marker was set. KEYS: abort marker, running
 * hash. ARGV: id, running record (JSON). 1 if it may start.
 */
const START = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
`;

type Script = (...args: Array<string | Buffer | number>) => Promise<number>;

export class ServerStore {
  readonly #redis: RedisClient;
  readonly #k: QueueKeys;
  readonly #resultTtlMs: number;
  readonly #start: Script;
  readonly #storeResult: Script;

  constructor(redis: RedisClient, keys: QueueKeys, resultTtlMs: number) {
    this.#redis = redis;
    this.#k = keys;
    this.#resultTtlMs = resultTtlMs;
    redis.defineCommand('wqStoreResult', { numberOfKeys: 6, lua: STORE_RESULT });
    redis.defineCommand('wqStart', { numberOfKeys: 2, lua: START });
    const scripts = redis as unknown as { wqStart: Script; wqStoreResult: Script };
    this.#start = scripts.wqStart.bind(redis);
    this.#storeResult = scripts.wqStoreResult.bind(redis);
  }

  /** Records `id` as running here (START); false if it is aborted: it must not start. */
  async start(id: string, record: RunningRecord): Promise<boolean> {
    return (await this.#start(this.#k.abort(id), this.#k.running, id, JSON.stringify(record))) === 1;
  }

  /** The running record again, with the task's pid (for `wq status` elsewhere): not waited for, a failure only leaves it out. */
  recordPid(id: string, record: RunningRecord): void {
    void this.#redis.hset(this.#k.running, id, JSON.stringify(record)).catch(() => {});
  }

  /**
   * Stores a result (STORE_RESULT), with a command's whole output; a result
   * too large to store is replaced by an error saying so (as on a spool).
   * False if the request is aborted: nothing is stored, and its marker is a
   * tombstone from now on.
   */
  async storeResult(id: string, fields: ResultFields, outputs: Outputs | undefined): Promise<boolean> {
    let bytes: Buffer;
    const stored = { ...fields };
    if (outputs === undefined || Object.keys(outputs).length === 0) delete stored.logs;
    try {
      bytes = encodeResult(stored);
    } catch (err) {
      const { value: _value, logs: _logs, ...rest } = stored;
      bytes = encodeResult({ ...rest, ok: false, status: 'error', error: serializeError(new ProtocolError(`the task's result cannot be stored: ${(err as Error).message}`)) });
      outputs = undefined;
    }
    const k = this.#k;
    const n = await this.#storeResult(
      k.abort(id), k.result(id), k.results, k.running, k.output(id, 'stdout'), k.output(id, 'stderr'),
      id, bytes, this.#resultTtlMs, fields.finishedAt, k.events,
      outputs?.stdout ?? '', outputs?.stderr ?? '', outputs?.stdout === undefined ? '0' : '1', outputs?.stderr === undefined ? '0' : '1',
    );
    if (n === 0) await this.tombstone(id);
    return n === 1;
  }

  /** An abort acted on: its marker stays only as a tombstone (ABORT_MARKER_TTL_MS). */
  async tombstone(id: string): Promise<void> {
    await this.#redis.pexpire(this.#k.abort(id), ABORT_MARKER_TTL_MS);
  }

  /** The request no longer runs here (its job is let go without a result). */
  async forgetRunning(id: string): Promise<void> {
    await this.#redis.hdel(this.#k.running, id);
  }

  /** Which of `ids` have an abort marker. */
  async abortedAmong(ids: readonly string[]): Promise<string[]> {
    if (ids.length === 0) return [];
    const found = await this.#redis.mget(ids.map((id) => this.#k.abort(id)));
    return ids.filter((_, i) => found[i] !== null);
  }

  /**
   * A server's heartbeat: its record, its `alive` key (expiring on Redis's
   * clock), the queue's global limit set again (Redis may have lost it), and
   * servers long gone forgotten. Resolves with the queue's length and its
   * unclaimed results, for the metrics.
   */
  async heartbeat(record: ServerRecord, globalMaxTasks: number | undefined): Promise<{ pending: number; unclaimed: number }> {
    const k = this.#k;
    if (globalMaxTasks !== undefined) await this.#redis.hset(k.meta, 'concurrency', globalMaxTasks);
    await this.#redis.multi().hset(k.servers, record.id, JSON.stringify(record)).set(k.alive(record.id), '1', 'PX', HEARTBEAT_DEAD_MS).exec();
    const ids = await this.#redis.hkeys(k.servers);
    const alive = ids.length === 0 ? [] : await this.#redis.mget(ids.map((id) => k.alive(id)));
    const dead = ids.filter((_, i) => alive[i] === null);
    if (dead.length > 0) await this.#redis.hdel(k.servers, ...dead);
    const [pending, unclaimed] = await Promise.all([this.#redis.llen(k.wait), this.#redis.zcard(k.results)]);
    return { pending, unclaimed };
  }

  /** A server that stops leaves the list of servers. */
  async leave(serverId: string): Promise<void> {
    await this.#redis.multi().hdel(this.#k.servers, serverId).del(this.#k.alive(serverId)).exec();
  }

  /** Unclaimed results past their time leave the set `wq status` lists (their keys expire by themselves). */
  async expireResults(): Promise<void> {
    await this.#redis.zremrangebyscore(this.#k.results, '-inf', Date.now() - this.#resultTtlMs);
  }
}

/** A command's whole streams from its logs in `dir`, when its value says they were cut; the logs are removed. */
export function takeLogs(dir: string | undefined, id: string, value: unknown): Outputs {
  const out: Outputs = {};
  if (dir === undefined) return out;
  for (const { stream, bytes } of cutStreams(value)) {
    if (bytes > MAX_STORED_STREAM_BYTES) continue; // stays cut: the client says how much was lost
    try {
      out[stream] = readFileSync(join(dir, `${id}.${stream}`));
    } catch {
      // gone or unreadable: the result keeps its count of dropped bytes, and the client says the output was cut
    }
  }
  for (const name of ['stdout', 'stderr', 'pid']) rmSync(join(dir, `${id}.${name}`), { force: true });
  return out;
}

/** The result of a request cut short by a server that stopped, instead of running it again. */
export function interruptedResult(id: string, why: string): ResultFields {
  const error: SerializedError = { name: 'ServerRestartedError', code: 'ERR_SERVER_RESTARTED', message: `the server running this request stopped or lost Redis; it was not run again (${why})` };
  return { id, ok: false, status: 'restarted', error, finishedAt: Date.now() };
}
