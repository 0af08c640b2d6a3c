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
import { QueueUnreachableError, UnknownRequestError } from '../errors.js';
import type { Logger } from '../logger.js';
import { formatRedisAddress, type RedisQueueAddress } from '../queue/address.js';
import { MISSING_CHECKS_BEFORE_UNKNOWN, type ResultOutcome, type ResultTake, type ResultWatch, type QueueBackend } from '../queue/backend.js';
import type { AbortOutcome, AbortReason, QueueStatus, RequestProgress, RequestResult, RequestState } from '../queue/types.js';
import { decodeRequest, encodeRequest } from '../spool/codec.js';
import { RequestIdGenerator, type IdSource } from '../spool/request-id.js';
import type { TaskInput } from '../task-input.js';
import { connectRedis, isUnreachable, loadBullMQ, RECONNECT_GIVE_UP_MS, type RedisClient } from './connect.js';
import { ABORT_MARKER_TTL_MS, BULLMQ_PREFIX, parseEvent, queueKeys, type QueueKeys } from './keys.js';
import { takeResult } from './output.js';
import { liveServers, queueStatus, requestProgress } from './views.js';
import { Waiters } from './waiters.js';

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
  readonly #waiters: Waiters;
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
    this.#waiters = new Waiters(options.recheckIntervalMs);
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
      this.#waiters.remove(id, onEvent);
    };
    this.#waiters.add(id, onEvent, recheck);
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

  /** Said once per id: something under the result's key that is not this request's result. */
  readonly #refused = new Set<string>();

  /** The result of `id` if it is there (takeResult()), a refusal said once. */
  async #takeResult(id: string, take: ResultTake): Promise<RequestResult | undefined> {
    const taken = await takeResult(await this.#client(), this.#keys, id, take);
    if (taken === undefined || 'result' in taken) return taken?.result;
    if (!this.#refused.has(id)) {
      this.#refused.add(id);
      this.#o.logger.warn(`ignoring what is stored as the result of ${id}, which is not this request's result from a server (${taken.refused}); still waiting`, { id });
    }
    return undefined;
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
      return (await liveServers(await this.#client(), this.#keys)).length > 0;
    });
  }

  async status(nowMs = Date.now()): Promise<QueueStatus> {
    return this.#use(async () => queueStatus(await this.#client(), this.#keys, this.location, nowMs));
  }

  async progress(id: string): Promise<RequestProgress> {
    return this.#use(async () => requestProgress(await this.#client(), this.#keys, id, await this.locate(id)));
  }

  /** Subscribes to the queue's channel once; a `done <id>` pokes that id's waits. */
  #subscribe(): Promise<RedisClient> {
    this.#subscriber ??= (async () => {
      const subscriber = await connectRedis(this.#o.address, false);
      subscriber.on('message', (_channel: string, message: string) => {
        const event = parseEvent(message);
        if (event?.type === 'done') this.#waiters.arrived(event.id);
      });
      await subscriber.subscribe(this.#keys.events);
      return subscriber;
    })();
    return this.#subscriber;
  }

  /** Stops watching (waits in progress are left unsettled) and lets the connections go once no call is in progress; later calls still work. */
  close(): void {
    this.#closed = true;
    this.#waiters.clear();
    const subscriber = this.#subscriber;
    this.#subscriber = undefined;
    void subscriber?.then((c) => c.disconnect()).catch(() => {});
    if (this.#inFlight === 0) this.#release();
  }
}
