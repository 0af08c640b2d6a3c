/**
 * The queue interface on Redis, for clients (WorkQueueClient, `wq enqueue`,
 * `wait`, `abort`, `status`): a request is a BullMQ job whose id is the
 * request id and whose data is the request envelope the spool would write;
 * its result, stored by the server that ran it, is claimed by GETDEL (one
 * waiter gets it). A wait wakes on the queue's channel (`done <id>`) and
 * looks again every recheck interval, so a lost message only delays it
 * (BullMQ's own events are best-effort, docs/scale-out.md).
 */
import { hostname } from 'node:os';
import type { Queue } from 'bullmq';
import { ProtocolError, QueueUnreachableError, UnknownRequestError } from '../errors.js';
import type { Logger } from '../logger.js';
import { formatRedisAddress, type RedisQueueAddress } from '../queue/address.js';
import type { ResultOutcome, ResultTake, ResultWatch, QueueBackend } from '../queue/backend.js';
import { requestIdTimeMs } from '../queue/request-id.js';
import type { AbortOutcome, AbortReason, QueueStatus, RequestProgress, RequestResult, RequestState, RequestStatus, ServerStatus } from '../queue/types.js';
import { decodeRequest, decodeResult, encodeRequest } from '../spool/codec.js';
import { RequestIdGenerator, type IdSource } from '../spool/request-id.js';
import type { TaskInput } from '../task-input.js';
import { connectRedis, isUnreachable, loadBullMQ, RECONNECT_GIVE_UP_MS, type RedisClient } from './connect.js';
import { ABORT_MARKER_TTL_MS, BULLMQ_PREFIX, parseEvent, parseRecord, queueHold, queueKeys, type QueueKeys, type RunningRecord, type ServerRecord } from './keys.js';
import { completeOutput, cutStreams } from './output.js';

/** Found in no state this many looks in a row: unknown (a result being stored moves the request between two keys). */
const MISSING_CHECKS_BEFORE_UNKNOWN = 2;
/** Ids this client enqueued while listening and has not waited for yet, remembered (newest). */
const MAX_REMEMBERED_IDS = 4096;
/** How often abortAndConfirm() looks whether the request is gone. */
const ABORT_POLL_MS = 50;

export interface RedisQueueOptions {
  address: RedisQueueAddress;
  recheckIntervalMs: number;
  logger: Logger;
  idSource?: IdSource;
}

/** BullMQ job states a waiting request can be in. */
const WAITING_STATES = new Set(['waiting', 'delayed', 'prioritized', 'waiting-children']);

export class RedisQueue implements QueueBackend {
  readonly location: string;
  readonly #o: RedisQueueOptions;
  readonly #keys: QueueKeys;
  readonly #ids: RequestIdGenerator;
  #redis: Promise<RedisClient> | undefined;
  #queue: Promise<Queue> | undefined;
  #subscriber: Promise<RedisClient> | undefined;
  /** id → pokes of the waits for it. */
  readonly #waiters = new Map<string, Set<() => void>>();
  #recheckTimer: NodeJS.Timeout | undefined;
  /** Who files this client's requests (read once: hostname() and getuid() are system calls). */
  readonly #who = { pid: process.pid, host: hostname(), uid: process.getuid?.() };
  /** See MAX_REMEMBERED_IDS. */
  readonly #heardFromStart = new Set<string>();
  /** close() was called: connections are let go when idle. */
  #closed = false;

  constructor(options: RedisQueueOptions) {
    this.#o = options;
    this.#keys = queueKeys(options.address);
    this.#ids = new RequestIdGenerator(options.idSource);
    this.location = formatRedisAddress(options.address);
  }

  #client(): Promise<RedisClient> {
    this.#redis ??= connectRedis(this.#o.address, false);
    return this.#redis;
  }

  #bull(): Promise<Queue> {
    this.#queue ??= (async () => {
      const { Queue } = await loadBullMQ();
      const queue = new Queue(this.#keys.name, { connection: await this.#client(), prefix: BULLMQ_PREFIX });
      queue.on('error', () => {}); // each call reports its own failure
      return queue;
    })();
    return this.#queue;
  }

  /** Calls in progress: after close(), the connection is let go once there are none (a later call opens another). */
  #inFlight = 0;

  async #use<T>(fn: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await fn();
    } catch (err) {
      if (isUnreachable(err) && !(err instanceof QueueUnreachableError)) throw new QueueUnreachableError(`cannot reach the Redis server of ${this.location}: ${(err as Error).message}`, { cause: err });
      throw err;
    } finally {
      if (--this.#inFlight === 0 && this.#closed) this.#release();
    }
  }

  /** Lets the command connection go (and BullMQ's Queue on it), so that the process can exit. */
  #release(): void {
    const [queue, redis] = [this.#queue, this.#redis];
    this.#queue = undefined;
    this.#redis = undefined;
    // No call is in progress: nothing to wait for (quit() would wait for an answer from a Redis that may not give one).
    void queue?.then((q) => q.close()).catch(() => {});
    void redis?.then((r) => r.disconnect()).catch(() => {});
  }

  async enqueue(body: unknown, input: TaskInput, runTimeoutMs: number | undefined): Promise<string> {
    return this.#use(async () => {
      const id = this.#ids.next();
      const envelope = encodeRequest({ body, submittedAt: Date.now(), client: this.#who, runTimeoutMs, ...input });
      const queue = await this.#bull();
      // Listening already (a client that waits): the `done` of this request cannot be missed, so its wait need not look first.
      const listening = this.#subscriber !== undefined && (await this.#subscriber.then(() => true, () => false));
      // removeOnComplete: the result is wq's own key; the job itself is done with.
      await queue.add('request', { e: envelope.toString('base64') }, { jobId: id, removeOnComplete: true, removeOnFail: true, attempts: 1 });
      if (listening) {
        this.#heardFromStart.add(id);
        if (this.#heardFromStart.size > MAX_REMEMBERED_IDS) this.#heardFromStart.delete(this.#heardFromStart.values().next().value!);
      }
      return id;
    });
  }

  watchResult(id: string, take: ResultTake, settle: (outcome: ResultOutcome) => void): ResultWatch {
    let missing = 0;
    let stopped = false;
    /** Since when the looks of this wait have failed for want of Redis. */
    let unreachableSince: number | undefined;
    let busy = false;
    let again: boolean | 'everywhere' = false;
    const done = (outcome: ResultOutcome): void => {
      if (stopped) return;
      stop();
      settle(outcome);
    };
    const look = (everywhere: boolean): Promise<ResultOutcome | undefined> => this.#use(async () => {
      const result = await this.#takeResult(id, take);
      if (result !== undefined) return { result };
      if (!everywhere) return undefined;
      missing = (await this.locate(id)) === undefined ? missing + 1 : 0;
      return missing >= MISSING_CHECKS_BEFORE_UNKNOWN ? { error: new UnknownRequestError(id) } : undefined;
    });
    /** One look at a time per wait; a poke during a look runs one more after it. */
    const poke = (everywhere: boolean): void => {
      if (stopped) return;
      if (busy) {
        again = everywhere || again === 'everywhere' ? 'everywhere' : true;
        return;
      }
      busy = true;
      look(everywhere).then(
        (outcome) => {
          busy = false;
          unreachableSince = undefined;
          if (outcome !== undefined) return done(outcome);
          if (again !== false) {
            const next = again === 'everywhere';
            again = false;
            poke(next);
          }
        },
        (err: unknown) => {
          busy = false;
          // Redis out of reach (restarting, or not answering): the wait goes on, and fails only once it has been for RECONNECT_GIVE_UP_MS.
          if (err instanceof QueueUnreachableError && /Command timed out/.test(err.message) && (unreachableSince ??= Date.now()) > Date.now() - RECONNECT_GIVE_UP_MS) return;
          done({ error: err });
        },
      );
    };
    const onEvent = (): void => poke(false);
    const recheck = (): void => poke(true);
    const stop = (): void => {
      stopped = true;
      this.#removeWaiter(id, onEvent, recheck);
    };
    this.#addWaiter(id, onEvent, recheck);
    // A request this client enqueued while listening: its result's `done` is still to come (or the re-check finds it).
    const heard = this.#heardFromStart.delete(id) && this.#subscriber !== undefined;
    if (!heard) {
      this.#subscribe().then(
        () => poke(true),
        (err: unknown) => done({ error: err }),
      );
    }
    return {
      stop,
      lastLook: async () => {
        if (stopped) return undefined;
        for (let i = 0; i < MISSING_CHECKS_BEFORE_UNKNOWN; i++) {
          const outcome = await look(true);
          if (outcome !== undefined) {
            stop();
            return outcome;
          }
        }
        return undefined;
      },
    };
  }

  /** Said once per wait: something under the result's key that is not this request's result. */
  readonly #refused = new Set<string>();

  /**
   * The result of `id` if it is there: claimed (GETDEL: one claimer gets
   * it) or only read, with its whole output. Anything else under the key was
   * not stored by a server for this request: it is put back, said once, and
   * the wait goes on.
   */
  async #takeResult(id: string, take: ResultTake): Promise<RequestResult | undefined> {
    const redis = await this.#client();
    const claim = take.take === 'claim';
    const key = this.#keys.result(id);
    // Claimed by GETDEL: of two claimers only one gets the bytes.
    const bytes = claim ? ((await redis.multi().getdelBuffer(key).zrem(this.#keys.results, id).exec()) as Array<[Error | null, Buffer | null]>)[0]![1] : await redis.getBuffer(key);
    if (bytes === null) return undefined;
    let result: RequestResult;
    try {
      result = decodeResult(bytes);
      if (result.id !== id) throw new ProtocolError(`it is the result of ${result.id}`);
    } catch (err) {
      // Not stored by a server for this request: put back as it was (unless the server has stored the real one meanwhile), and wait on.
      if (claim) await redis.set(key, bytes, 'NX');
      if (!this.#refused.has(id)) {
        this.#refused.add(id);
        this.#o.logger.warn(`ignoring what is stored as the result of ${id}, which is not this request's result from a server (${(err as Error).message}); still waiting`, { id });
      }
      return undefined;
    }
    if (result.logs === true && !take.keepOutput) {
      await this.#readOutput(redis, id, result.value, claim);
      delete result.logs;
    }
    return result;
  }

  async #readOutput(redis: RedisClient, id: string, value: unknown, remove: boolean): Promise<void> {
    const whole: Record<string, Buffer | null> = {};
    for (const { stream } of cutStreams(value)) {
      const key = this.#keys.output(id, stream);
      whole[stream] = remove ? await redis.getdelBuffer(key) : await redis.getBuffer(key);
    }
    if (remove) await redis.del(this.#keys.output(id, 'stdout'), this.#keys.output(id, 'stderr'));
    completeOutput(value, whole);
  }

  async peek(id: string): Promise<RequestResult | undefined> {
    return this.#use(async () => {
      const result = await this.#takeResult(id, { take: 'read', keepOutput: false });
      if (result !== undefined) return result;
      for (let i = 0; i < MISSING_CHECKS_BEFORE_UNKNOWN; i++) {
        if ((await this.locate(id)) !== undefined) return undefined;
      }
      throw new UnknownRequestError(id);
    });
  }

  async claim(id: string): Promise<boolean> {
    return this.#use(async () => {
      const redis = await this.#client();
      const [[, removed]] = (await redis.multi().del(this.#keys.result(id)).zrem(this.#keys.results, id).del(this.#keys.output(id, 'stdout'), this.#keys.output(id, 'stderr')).exec()) as Array<[Error | null, number]>;
      return removed === 1;
    });
  }

  async abort(ids: readonly string[], reason: AbortReason): Promise<void> {
    return this.#use(async () => {
      const redis = await this.#client();
      const queue = await this.#bull();
      // Every marker first, kept until acted on, and each server told: from then on none of these starts
      // (a server checks the marker as it starts a request), whatever the aborts below free up.
      const markers = redis.multi();
      for (const id of ids) markers.set(this.#keys.abort(id), reason).publish(this.#keys.events, `abort ${id}`);
      await markers.exec();
      for (const id of ids) {
        await queue.remove(id); // a waiting request leaves the line; 0 if it runs (locked): its server kills it
        await redis.multi().del(this.#keys.result(id)).zrem(this.#keys.results, id).del(this.#keys.output(id, 'stdout'), this.#keys.output(id, 'stderr')).exec();
        // Nothing runs it (gone, done, or not enqueued yet): the marker stays only as a tombstone.
        if ((await queue.getJobState(id)) !== 'active') await redis.pexpire(this.#keys.abort(id), ABORT_MARKER_TTL_MS);
      }
    });
  }

  async abortAndConfirm(id: string, timeoutMs: number): Promise<AbortOutcome> {
    return this.#use(async () => {
      const before = await this.locate(id);
      await this.abort([id], 'user');
      if (before === undefined) return 'unknown';
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if ((await this.locate(id)) === undefined) return 'aborted';
        if (!(await this.serving())) return 'filed';
        if (Date.now() >= deadline) return 'unconfirmed';
        await new Promise((resolve) => setTimeout(resolve, ABORT_POLL_MS));
      }
    });
  }

  async abortOwn(reason: AbortReason): Promise<string[]> {
    return this.#use(async () => {
      const queue = await this.#bull();
      const uid = process.getuid?.();
      const host = hostname();
      const jobs = await queue.getJobs(['waiting', 'prioritized', 'delayed', 'active']);
      const own: string[] = [];
      for (const job of jobs) {
        if (job?.id === undefined) continue;
        try {
          const { client } = decodeRequest(Buffer.from(String((job.data as { e?: unknown }).e), 'base64'));
          if (client.uid === uid && client.host === host) own.push(job.id);
        } catch {
          // not a request this client can read: not its own
        }
      }
      own.sort();
      await this.abort(own, reason);
      return own;
    });
  }

  async locate(id: string): Promise<RequestState | undefined> {
    return this.#use(async () => {
      const queue = await this.#bull();
      // The job first, then the result: a server stores the result before the job leaves, so one of the two is always seen.
      const state = await queue.getJobState(id);
      if (WAITING_STATES.has(state)) return 'pending';
      if (state === 'active' || state === 'failed') return 'running'; // failed: cut short by a dead server, its result follows
      const redis = await this.#client();
      return (await redis.exists(this.#keys.result(id))) === 1 ? 'complete' : undefined;
    });
  }

  removeOutput(id: string): void {
    void this.#use(async () => (await this.#client()).del(this.#keys.output(id, 'stdout'), this.#keys.output(id, 'stderr'))).catch(() => {});
  }

  async serving(): Promise<boolean> {
    return this.#use(async () => {
      return (await this.#servers()).length > 0;
    });
  }

  /** The servers alive (their `alive` key has not expired: Redis's clock decides), oldest first. */
  async #servers(): Promise<ServerRecord[]> {
    const redis = await this.#client();
    const all = await redis.hgetall(this.#keys.servers);
    const ids = Object.keys(all);
    if (ids.length === 0) return [];
    const alive = await redis.mget(ids.map((id) => this.#keys.alive(id)));
    return ids
      .filter((_, i) => alive[i] !== null)
      .map((id) => parseRecord<ServerRecord>(all[id]))
      .filter((r): r is ServerRecord => r !== undefined)
      .sort((a, b) => a.startedAt - b.startedAt);
  }

  async status(nowMs = Date.now()): Promise<QueueStatus> {
    return this.#use(async () => {
      const redis = await this.#client();
      const [waitIds, activeIds, runningHash, results, globalMax] = await Promise.all([
        redis.lrange(this.#keys.wait, 0, -1),
        redis.lrange(this.#keys.active, 0, -1),
        redis.hgetall(this.#keys.running),
        redis.zrange(this.#keys.results, 0, -1, 'WITHSCORES'),
        redis.hget(this.#keys.meta, 'concurrency'),
      ]);
      const servers = await this.#servers();
      const requests: RequestStatus[] = [];
      const waiting = [...waitIds].reverse(); // BullMQ pushes at the head and takes from the tail
      const heldBy = queueHold(servers, activeIds.length, globalMax === null ? undefined : Number(globalMax));
      waiting.forEach((id, i) => requests.push({ id, state: 'pending', submittedAt: requestIdTimeMs(id), position: i + 1, ...(heldBy ? { heldBy } : {}) }));
      const alive = new Set(servers.map((s) => s.id));
      for (const id of [...activeIds].reverse()) {
        const record = parseRecord<RunningRecord>(runningHash[id]);
        const entry: RequestStatus = { id, state: 'running', submittedAt: requestIdTimeMs(id) };
        if (record !== undefined) {
          entry.runningSeconds = Math.max(0, nowMs - record.startedAt) / 1000;
          if (record.pid !== undefined) entry.pid = record.pid;
          if (!alive.has(record.server)) entry.interrupted = true;
        }
        requests.push(entry);
      }
      for (let i = 0; i < results.length; i += 2) {
        const id = results[i]!;
        requests.push({ id, state: 'complete', submittedAt: requestIdTimeMs(id), waitingSeconds: Math.max(0, nowMs - Number(results[i + 1])) / 1000 });
      }
      // An abort filed for a request still waiting or running: not carried out yet.
      const live = requests.filter((r) => r.state !== 'complete');
      const markers = live.length === 0 ? [] : await redis.mget(live.map((r) => this.#keys.abort(r.id)));
      live.forEach((r, i) => {
        if (markers[i] !== null) r.aborting = true;
      });
      const first = servers[0];
      const server: ServerStatus | null =
        first === undefined ? null : { pid: first.pid, host: first.host, startedAt: first.startedAt, uptimeSeconds: (nowMs - first.startedAt) / 1000, maxTasks: first.maxTasks, alive: true };
      return {
        spool: this.location,
        server,
        servers: servers.map((s) => ({ pid: s.pid, host: s.host, startedAt: s.startedAt, uptimeSeconds: (nowMs - s.startedAt) / 1000, maxTasks: s.maxTasks, alive: true, running: s.running })),
        counts: { requested: 0, pending: waiting.length, running: activeIds.length, complete: results.length / 2, aborting: live.filter((r) => r.aborting).length },
        requests,
      };
    });
  }

  async progress(id: string): Promise<RequestProgress> {
    return this.#use(async () => {
      const redis = await this.#client();
      const state = await this.locate(id);
      if (state === 'pending') {
        // LPOS runs in Redis, without sending the list: the place in line is the distance from the tail.
        const [index, length] = await Promise.all([redis.lpos(this.#keys.wait, id), redis.llen(this.#keys.wait)]);
        if (index === null) return { state: undefined };
        const progress: RequestProgress = { state: 'pending', position: length - index, waiting: length };
        const [servers, running, globalMax] = await Promise.all([this.#servers(), redis.llen(this.#keys.active), redis.hget(this.#keys.meta, 'concurrency')]);
        const heldBy = queueHold(servers, running, globalMax === null ? undefined : Number(globalMax));
        if (heldBy !== undefined) progress.heldBy = heldBy;
        return progress;
      }
      if (state === 'running') {
        const record = parseRecord<RunningRecord>(await redis.hget(this.#keys.running, id));
        if (record !== undefined && !(await this.#servers()).some((s) => s.id === record.server)) return { state: 'running', interrupted: true };
        return { state: 'running', sinceMs: record?.startedAt };
      }
      return { state: state as 'complete' | undefined }; // 'requested' is a spool state only
    });
  }

  /** Subscribes to the queue's channel once; a `done <id>` pokes that id's waits. */
  #subscribe(): Promise<RedisClient> {
    this.#subscriber ??= (async () => {
      const subscriber = await connectRedis(this.#o.address, false);
      subscriber.on('message', (_channel: string, message: string) => {
        const event = parseEvent(message);
        if (event?.type === 'done') for (const onEvent of [...(this.#waiters.get(event.id) ?? [])]) onEvent();
      });
      await subscriber.subscribe(this.#keys.events);
      return subscriber;
    })();
    return this.#subscriber;
  }

  readonly #rechecks = new Map<() => void, () => void>();

  #addWaiter(id: string, onEvent: () => void, recheck: () => void): void {
    let set = this.#waiters.get(id);
    if (set === undefined) this.#waiters.set(id, (set = new Set()));
    set.add(onEvent);
    this.#rechecks.set(onEvent, recheck);
    this.#recheckTimer ??= setInterval(() => {
      for (const recheckOne of this.#rechecks.values()) recheckOne();
    }, this.#o.recheckIntervalMs);
  }

  #removeWaiter(id: string, onEvent: () => void, _recheck: () => void): void {
    const set = this.#waiters.get(id);
    set?.delete(onEvent);
    if (set?.size === 0) this.#waiters.delete(id);
    this.#rechecks.delete(onEvent);
    if (this.#rechecks.size === 0 && this.#recheckTimer !== undefined) {
      clearInterval(this.#recheckTimer);
      this.#recheckTimer = undefined;
    }
  }

  /** Stops watching (waits in progress are left unsettled) and lets the connections go once no call is in progress; later calls still work. */
  close(): void {
    this.#closed = true;
    if (this.#recheckTimer !== undefined) clearInterval(this.#recheckTimer);
    this.#recheckTimer = undefined;
    this.#rechecks.clear();
    this.#waiters.clear();
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    void subscriber?.then((c) => c.disconnect()).catch(() => {});
    if (this.#inFlight === 0) this.#release();
  }
}
