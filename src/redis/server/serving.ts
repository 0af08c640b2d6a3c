/**
 * The serving loop of a queue on Redis (see src/redis/server.ts for what it
 * keeps): connect, take jobs while the manager has room and hand each to
 * HeldJobs (jobs.ts), heartbeat, renew locks and look for aborts on timers,
 * drain on stop, leave. Its reads and writes of wq's keys go through
 * ServerStore (store.ts).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { ConnectionOptions, Job, Worker } from 'bullmq';
import type { Logger } from '../../logger.js';
import { ServerMetrics } from '../../metrics.js';
import type { TaskManager } from '../../task-manager/types.js';
import { connectRedis, loadBullMQ, redisOptions, type RedisClient } from '../connect.js';
import { BULLMQ_PREFIX, HEARTBEAT_MS, parseEvent, queueKeys, type QueueKeys, type ServerRecord } from '../keys.js';
import { HeldJobs } from './jobs.js';
import { resolveRedisServerOptions, type RedisServerOptions, type ResolvedRedisServerOptions } from './options.js';
import { ServerStore } from './store.js';
import { stripUndefined } from '../../options.js';

export class RedisServing {
  readonly #o: ResolvedRedisServerOptions;
  readonly #manager: TaskManager;
  readonly #keys: QueueKeys;
  readonly #log: Logger;
  readonly #host = hostname();
  readonly #id = `${this.#host}:${process.pid}:${randomBytes(3).toString('hex')}`;
  readonly #startedAt = Date.now();
  #jobs!: HeldJobs;
  #redis!: RedisClient;
  #store!: ServerStore;
  #subscriber!: RedisClient;
  #worker!: Worker;
  #stopping = false;
  #tokens = 0;
  /** Jobs taken and being started (#start in progress): they count against the manager's room. */
  #starting = 0;
  #wakeFetch: (() => void) | undefined;
  readonly #metrics: ServerMetrics;
  /** The queue's length and unclaimed results, as last read (each heartbeat), for the metrics. */
  #seen = { pending: 0, unclaimed: 0 };

  constructor(options: RedisServerOptions, manager: TaskManager) {
    this.#o = resolveRedisServerOptions(options);
    this.#manager = manager;
    this.#keys = queueKeys(options.address);
    this.#log = this.#o.logger;
    this.#metrics = new ServerMetrics(this.#o.meter, () => ({
      pending: this.#seen.pending,
      running: this.#jobs.runningCount,
      capacityUsage: this.#manager.size,
      capacityLimit: this.#manager.maxTasks,
      unclaimedResults: this.#seen.unclaimed,
    }));
  }

  async run(signal?: AbortSignal): Promise<void> {
    const { Worker, Queue } = await loadBullMQ();
    this.#redis = await connectRedis(this.#o.address, true);
    this.#store = new ServerStore(this.#redis, this.#keys, this.#o.resultTtlMs);
    this.#jobs = new HeldJobs({ o: this.#o, manager: this.#manager, metrics: this.#metrics, log: this.#log, store: this.#store, serverId: this.#id, host: this.#host, wake: () => this.#wakeFetch?.() });
    this.#subscriber = await connectRedis(this.#o.address, true);
    const lockDuration = this.#o.lockDurationMs;
    this.#worker = new Worker(this.#keys.name, null, {
      // A server never gives up reconnecting, so the options' onReady (a client's patience) does not matter here.
      connection: redisOptions(this.#o.address, true) as ConnectionOptions,
      prefix: BULLMQ_PREFIX,
      autorun: false,
      lockDuration,
      stalledInterval: Math.max(1000, Math.floor(lockDuration / 2)),
      maxStalledCount: this.#o.interrupted === 'fail' ? 0 : 1,
      // Seconds a take waits for a job before it looks again: short, because a slot freed under the queue's
      // global limit wakes no waiting server (BullMQ adds no marker then); idle, it is a few commands a second.
      drainDelay: 0.25,
    });
    this.#worker.on('error', (err) => this.#log.warn('redis: worker error', { error: err.message }));
    const queue = new Queue(this.#keys.name, { connection: this.#redis, prefix: BULLMQ_PREFIX });
    queue.on('error', () => {});
    const timers: NodeJS.Timeout[] = [];
    try {
      if (this.#o.globalMaxTasks !== undefined) await queue.setGlobalConcurrency(this.#o.globalMaxTasks);
      this.#subscriber.on('message', (_channel: string, message: string) => {
        const event = parseEvent(message);
        if (event?.type === 'abort') this.#jobs.abortIfHeld(event.id);
      });
      await this.#subscriber.subscribe(this.#keys.events);
      await this.#worker.startStalledCheckTimer();
      await this.#heartbeat();
      this.#log.info('server started', { queue: this.#keys.name, server: this.#id, maxTasks: this.#manager.maxTasks, globalMaxTasks: this.#o.globalMaxTasks });
      this.#manager.setWakeHandler(() => this.#jobs.onWake());
      timers.push(
        setInterval(() => void this.#heartbeat().catch((err: unknown) => this.#warn('heartbeat', err)), HEARTBEAT_MS),
        setInterval(() => this.#jobs.renewLocks(), Math.max(100, Math.floor(lockDuration / 4))),
        setInterval(() => void this.#jobs.checkAbortMarkers().catch((err: unknown) => this.#warn('looking for aborts', err)), 1000),
        setInterval(() => void this.#store.expireResults().catch((err: unknown) => this.#warn('removing expired results', err)), Math.min(60_000, Math.max(1000, Math.floor(this.#o.resultTtlMs / 2)))),
      );
      const stop = (): void => {
        this.#stopping = true;
        this.#wakeFetch?.();
      };
      if (signal?.aborted) stop();
      signal?.addEventListener('abort', stop, { once: true });
      await this.#fetchLoop();
      await this.#drain();
    } finally {
      for (const timer of timers) clearInterval(timer);
      await this.#store.leave(this.#id).catch(() => {});
      await this.#worker.close(true).catch(() => {});
      await queue.close().catch(() => {});
      await this.#subscriber.quit().catch(() => {});
      await this.#redis.quit().catch(() => {});
      await this.#manager.close();
      this.#metrics.close();
    }
  }

  /** Takes jobs while the manager has room, one at a time, until the server stops. */
  async #fetchLoop(): Promise<void> {
    let emptyTakes = 0;
    while (!this.#stopping) {
      this.#manager.startTick();
      const room = Number.isFinite(this.#manager.maxTasks) ? this.#manager.maxTasks - this.#manager.size - this.#starting : 1;
      if (!this.#manager.hasCapacity() || room <= 0) {
        await this.#sleep(1000); // woken when a task starts or ends (the manager's wake) or the server stops; the load limit is sampled again after a second
        continue;
      }
      // As many takes at once as there is room (each a script of BullMQ's), none of them blocking; when
      // the last ones found nothing, one take that waits for a job (up to drainDelay).
      const block = emptyTakes > 0;
      const takes = block ? 1 : room;
      let jobs: Array<{ job: Job | undefined; token: string }>;
      try {
        jobs = await Promise.all(
          Array.from({ length: takes }, async () => {
            const token = `${this.#id}:${++this.#tokens}`;
            return { job: await this.#worker.getNextJob(token, { block }), token };
          }),
        );
      } catch (err) {
        if (this.#stopping) break;
        this.#warn('taking a job', err);
        await this.#sleep(1000);
        continue;
      }
      const taken = jobs.filter((j): j is { job: Job; token: string } => j.job?.id !== undefined);
      emptyTakes = taken.length === 0 ? emptyTakes + 1 : 0;
      for (const { job, token } of taken) {
        if (this.#stopping) {
          await job.moveToWait(token).catch(() => {}); // taken as the server stopped: back in line for another
          continue;
        }
        // Started without waiting for it: the next jobs are taken meanwhile, while there is room.
        this.#starting++;
        void this.#jobs.start(job, token)
          .catch((err: unknown) => this.#warn('starting a job', err, job.id))
          .finally(() => {
            this.#starting--;
            this.#wakeFetch?.();
          });
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeFetch = done;
    });
  }

  async #heartbeat(): Promise<void> {
    const record: ServerRecord = { id: this.#id, host: this.#host, pid: process.pid, startedAt: this.#startedAt, maxTasks: Number.isFinite(this.#manager.maxTasks) ? this.#manager.maxTasks : null, running: this.#jobs.runningCount, heartbeatAt: Date.now() };
    const hold = this.#stopping ? ({ reason: 'stopping' } as const) : this.#manager.holdReason?.();
    if (hold !== undefined) record.hold = hold;
    this.#seen = await this.#store.heartbeat(record, this.#o.globalMaxTasks);
  }


  /** On stop: running tasks get the grace period; then HeldJobs.drain(). */
  async #drain(): Promise<void> {
    const deadline = Date.now() + this.#o.shutdownGraceMs;
    while (this.#starting > 0) await this.#sleep(10); // each becomes running, or is let go
    while (this.#jobs.runningCount > 0 && Date.now() < deadline) await this.#sleep(Math.min(100, deadline - Date.now()));
    await this.#jobs.drain();
  }

  #warn(what: string, err: unknown, id?: string): void {
    this.#log.warn(`redis: ${what} failed; retrying`, stripUndefined({ id, error: err instanceof Error ? err.message : String(err) }));
  }
}
