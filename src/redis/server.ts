/**
 * A server of a queue on Redis: one of any number, on any hosts, each running
 * at most its task manager's capacity (`--max-tasks`), the whole queue at most
 * BullMQ's global concurrency (`--global-max-tasks`). It takes jobs itself
 * (BullMQ's manual fetching) only while its manager has room, so a host held
 * by its load limit takes nothing, and every TaskManager works unchanged.
 *
 * What it keeps (docs/scale-out.md):
 * - FIFO: jobs are taken from BullMQ's wait list in the order they were added.
 * - An abort wins: its marker is looked at before a job starts; a running task
 *   is killed by the server that runs it, told on the queue's channel (and by
 *   a look at the markers every second, in case the message was lost).
 * - Never two copies at once: a job's lock is renewed every quarter of the
 *   lock duration; a server that cannot renew it within 60 % of the duration
 *   (Redis unreachable, or the lock taken) kills the task before BullMQ's
 *   stalled check can hand the job to another server.
 * - A server that dies: its jobs' locks expire and BullMQ's stalled check (in
 *   every server) puts them back at the head of the line; the server that
 *   takes one that was cut short once under `--fail-interrupted` (twice
 *   otherwise: BullMQ marks it failed) answers it with a `restarted` result.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConnectionOptions, Job, Worker } from 'bullmq';
import { ProtocolError, serializeError, type SerializedError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import type { InterruptedPolicy } from '../protocol.js';
import type { RedisQueueAddress } from '../queue/address.js';
import type { RequestResult } from '../queue/types.js';
import { decodeRequest, encodeResult, type RequestEnvelope } from '../spool/codec.js';
import { hasTaskInput, type TaskInput } from '../task-input.js';
import type { TaskManager, TaskOutcome } from '../task-manager/types.js';
import { stripUndefined } from '../options.js';
import { connectRedis, loadBullMQ, redisOptions, type RedisClient } from './connect.js';
import { BULLMQ_PREFIX, HEARTBEAT_DEAD_MS, HEARTBEAT_MS, parseEvent, queueKeys, type QueueKeys, type RunningRecord, type ServerRecord } from './keys.js';
import { cutStreams } from './output.js';

export interface RedisServerOptions {
  address: RedisQueueAddress;
  /** A task cut short by a dead or stopped server: run again (`rerun`) or answered with a `restarted` result (`fail`). @default 'rerun' */
  interrupted?: InterruptedPolicy;
  /** On stop: how long running tasks may finish before they are killed and put back in line. @default 30000 */
  shutdownGraceMs?: number;
  /** An unclaimed result is removed after this. @default 7 days */
  resultTtlMs?: number;
  /** The most tasks running at once across every server of the queue (BullMQ's global concurrency); unset: left as it is. */
  globalMaxTasks?: number;
  /** How long a job stays locked to this server without a renewal. @default 30000 */
  lockDurationMs?: number;
  /** Where commands write their output while they run (CommandTaskManager's logDir); removed when it is stored. */
  logDir?: string;
  logger?: Logger;
}

interface Running {
  job: Job;
  token: string;
  startedAt: number;
  queuedAt: number;
  /** Until when this server knows it holds the job's lock. */
  lockedUntil: number;
  runTimeoutMs?: number;
  deadline?: NodeJS.Timeout;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** Serves the queue until `signal` aborts. */
export async function serveRedis(options: RedisServerOptions, manager: TaskManager, signal?: AbortSignal): Promise<void> {
  const server = new RedisServing(options, manager);
  await server.run(signal);
}

type ResolvedOptions = Required<Omit<RedisServerOptions, 'globalMaxTasks' | 'logDir'>> & Pick<RedisServerOptions, 'globalMaxTasks' | 'logDir'>;

class RedisServing {
  readonly #o: ResolvedOptions;
  readonly #manager: TaskManager;
  readonly #keys: QueueKeys;
  readonly #log: Logger;
  readonly #id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  readonly #startedAt = Date.now();
  readonly #running = new Map<string, Running>();
  #redis!: RedisClient;
  #subscriber!: RedisClient;
  #worker!: Worker;
  #stopping = false;
  #tokens = 0;
  #wakeFetch: (() => void) | undefined;

  constructor(options: RedisServerOptions, manager: TaskManager) {
    this.#o = {
      interrupted: 'rerun',
      shutdownGraceMs: 30_000,
      resultTtlMs: 7 * DAY_MS,
      lockDurationMs: 30_000,
      logger: silentLogger,
      ...stripUndefined(options),
    } as ResolvedOptions;
    this.#manager = manager;
    this.#keys = queueKeys(options.address);
    this.#log = this.#o.logger;
  }

  async run(signal?: AbortSignal): Promise<void> {
    const { Worker, Queue } = await loadBullMQ();
    this.#redis = await connectRedis(this.#o.address, false);
    this.#subscriber = await connectRedis(this.#o.address, true);
    const lockDuration = this.#o.lockDurationMs;
    this.#worker = new Worker(this.#keys.name, null, {
      connection: redisOptions(this.#o.address, true) as ConnectionOptions,
      prefix: BULLMQ_PREFIX,
      autorun: false,
      lockDuration,
      stalledInterval: Math.max(1000, Math.floor(lockDuration / 2)),
      maxStalledCount: this.#o.interrupted === 'fail' ? 0 : 1,
      drainDelay: 1,
    });
    this.#worker.on('error', (err) => this.#log.warn('redis: worker error', { error: err.message }));
    const queue = new Queue(this.#keys.name, { connection: this.#redis, prefix: BULLMQ_PREFIX });
    queue.on('error', () => {});
    try {
      if (this.#o.globalMaxTasks !== undefined) await queue.setGlobalConcurrency(this.#o.globalMaxTasks);
      await this.#subscriber.subscribe(this.#keys.events);
      this.#subscriber.on('message', (_channel: string, message: string) => {
        const event = parseEvent(message);
        if (event?.type === 'abort') this.#abortIfRunning(event.id);
      });
      await this.#worker.startStalledCheckTimer();
      await this.#heartbeat();
      this.#log.info('server started', { queue: this.#keys.name, server: this.#id, maxTasks: this.#manager.maxTasks, globalMaxTasks: this.#o.globalMaxTasks });
      this.#manager.setWakeHandler(() => this.#onWake());
      const timers = [
        setInterval(() => void this.#heartbeat().catch((err: unknown) => this.#warn('heartbeat', err)), HEARTBEAT_MS),
        setInterval(() => void this.#renewLocks(), Math.max(100, Math.floor(lockDuration / 4))),
        setInterval(() => void this.#checkAbortMarkers().catch((err: unknown) => this.#warn('looking for aborts', err)), 1000),
        setInterval(() => void this.#expireResults().catch((err: unknown) => this.#warn('removing expired results', err)), Math.min(60_000, Math.max(1000, Math.floor(this.#o.resultTtlMs / 2)))),
      ];
      const stopped = new Promise<void>((resolve) => {
        if (signal?.aborted) resolve();
        signal?.addEventListener('abort', () => resolve(), { once: true });
      });
      void stopped.then(() => {
        this.#stopping = true;
        this.#wakeFetch?.();
      });
      await this.#fetchLoop();
      await this.#drain();
      for (const timer of timers) clearInterval(timer);
    } finally {
      await this.#redis.hdel(this.#keys.servers, this.#id).catch(() => {});
      await this.#worker.close(true).catch(() => {});
      await queue.close().catch(() => {});
      await this.#subscriber.quit().catch(() => {});
      await this.#redis.quit().catch(() => {});
      await this.#manager.close();
    }
  }

  /** Takes jobs while the manager has room, one at a time, until the server stops. */
  async #fetchLoop(): Promise<void> {
    while (!this.#stopping) {
      this.#manager.startTick();
      if (!this.#manager.hasCapacity()) {
        await this.#sleep(1000); // woken when a task ends (the manager's wake) or the server stops; the load limit is sampled again after a second
        continue;
      }
      const token = `${this.#id}:${++this.#tokens}`;
      let job: Job | undefined;
      try {
        job = await this.#worker.getNextJob(token, { block: true });
      } catch (err) {
        if (this.#stopping) break;
        this.#warn('taking a job', err);
        await this.#sleep(1000);
        continue;
      }
      if (job === undefined || job.id === undefined) continue;
      if (this.#stopping) {
        await job.moveToWait(token).catch(() => {}); // taken as the server stopped: back in line for another
        break;
      }
      await this.#start(job, token).catch((err: unknown) => this.#warn('starting a job', err, job.id));
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

  async #start(job: Job, token: string): Promise<void> {
    const id = job.id!;
    if ((await this.#redis.exists(this.#keys.abort(id))) === 1) {
      // Aborted before it started: it never runs, and no result is stored.
      await job.moveToCompleted(null, token, false);
      this.#log.debug('aborted before it started', { id });
      return;
    }
    if (job.deferredFailure !== undefined) {
      // BullMQ's stalled check put it back in line marked as failed: its server died while it ran, once
      // under --fail-interrupted, twice otherwise. It is answered, not run again.
      await this.#failInterrupted(id, job.deferredFailure);
      await job.moveToCompleted(null, token, false);
      return;
    }
    const queuedAt = job.timestamp;
    let envelope: RequestEnvelope;
    try {
      const encoded = (job.data as { e?: unknown } | undefined)?.e;
      if (typeof encoded !== 'string') throw new ProtocolError('the job holds no request envelope');
      envelope = decodeRequest(Buffer.from(encoded, 'base64'));
    } catch (err) {
      const error = serializeError(err);
      await this.#finishJob(id, job, token, { id, ok: false, status: 'rejected', error, queuedAt, finishedAt: Date.now() });
      return;
    }
    const startedAt = Date.now();
    const entry: Running = { job, token, startedAt, queuedAt, lockedUntil: startedAt + this.#o.lockDurationMs };
    this.#running.set(id, entry);
    let pid: number | undefined;
    try {
      const task = this.#manager.startTask(id, envelope.body, taskInputOf(envelope));
      if (task) pid = task.pid;
    } catch (err) {
      this.#running.delete(id);
      await this.#finishJob(id, job, token, { id, ok: false, status: 'error', error: serializeError(err), queuedAt, startedAt, finishedAt: Date.now() });
      return;
    }
    const record: RunningRecord = stripUndefined({ server: this.#id, host: hostname(), pid, startedAt }) as RunningRecord;
    await this.#redis.hset(this.#keys.running, id, JSON.stringify(record));
    if (envelope.runTimeoutMs !== undefined) {
      entry.runTimeoutMs = envelope.runTimeoutMs;
      entry.deadline = setTimeout(() => void this.#runTimedOut(id), envelope.runTimeoutMs);
    }
    this.#log.debug('started', { id, pid });
    // An abort filed while it was being started was not seen above: look once more.
    if ((await this.#redis.exists(this.#keys.abort(id))) === 1) this.#abortIfRunning(id);
  }

  /** Publishes the outcomes of tasks that finished. */
  #onWake(): void {
    for (const [id, outcome] of this.#manager.reap()) void this.#finished(id, outcome).catch((err: unknown) => this.#warn('storing a result', err, id));
    this.#wakeFetch?.();
  }

  async #finished(id: string, outcome: TaskOutcome): Promise<void> {
    const entry = this.#endRun(id);
    if (entry === undefined) return; // terminated: its outcome is discarded
    const result: Omit<RequestResult, 'v' | 'type'> = { id, ok: outcome.ok, status: outcome.ok ? 'normal' : 'error', queuedAt: entry.queuedAt, startedAt: entry.startedAt, finishedAt: Date.now() };
    if (outcome.ok) result.value = outcome.value;
    else result.error = outcome.error;
    await this.#finishJob(id, entry.job, entry.token, result, outcome.logs === true);
    this.#log.debug('completed', { id, ok: outcome.ok });
  }

  async #runTimedOut(id: string): Promise<void> {
    const entry = this.#running.get(id);
    if (entry === undefined || entry.runTimeoutMs === undefined) return;
    if (this.#manager.hasEnded?.(id) === true) return; // its own outcome follows
    this.#manager.terminateTask(id);
    this.#endRun(id);
    const error: SerializedError = { name: 'RunTimeoutError', code: 'ERR_RUN_TIMEOUT', message: `the task ran longer than its run timeout of ${entry.runTimeoutMs / 1000} s and was terminated` };
    const result: Omit<RequestResult, 'v' | 'type'> = { id, ok: false, status: 'timed_out', runTimeoutMs: entry.runTimeoutMs, error, queuedAt: entry.queuedAt, startedAt: entry.startedAt, finishedAt: Date.now() };
    await this.#finishJob(id, entry.job, entry.token, result, true).catch((err: unknown) => this.#warn('storing a result', err, id));
    this.#log.info('run timeout: terminated', { id, runTimeoutSeconds: entry.runTimeoutMs / 1000 });
  }

  /** The task is over: forgets it here. Undefined if it was not running (terminated, or never started). */
  #endRun(id: string): Running | undefined {
    const entry = this.#running.get(id);
    if (entry === undefined) return undefined;
    this.#running.delete(id);
    if (entry.deadline !== undefined) clearTimeout(entry.deadline);
    return entry;
  }

  /**
   * Stores a result (unless an abort for it is filed: the abort wins), with a
   * command's whole output beside it when it did not fit inline, tells the
   * waiters, and lets BullMQ's job go. `logs`: the task may have left output
   * in the log directory.
   */
  async #finishJob(id: string, job: Job, token: string, fields: Omit<RequestResult, 'v' | 'type'>, logs = false): Promise<void> {
    const ttl = this.#o.resultTtlMs;
    const aborted = (await this.#redis.exists(this.#keys.abort(id))) === 1;
    const outputs = logs ? this.#takeLogs(id, fields.value) : [];
    if (!aborted) {
      if (outputs.length > 0) fields.logs = true;
      else delete fields.logs;
      const multi = this.#redis.multi();
      for (const { stream, bytes } of outputs) multi.set(this.#keys.output(id, stream), bytes, 'PX', ttl);
      multi.set(this.#keys.result(id), encodeResult(fields), 'PX', ttl).zadd(this.#keys.results, fields.finishedAt, id).hdel(this.#keys.running, id).publish(this.#keys.events, `done ${id}`);
      await multi.exec();
    } else {
      await this.#redis.hdel(this.#keys.running, id);
    }
    await job.moveToCompleted(null, token, false).catch((err: unknown) => this.#warn('completing the job', err, id));
  }

  /** A command's whole streams from its logs, when its value says they were cut; the logs are removed. */
  #takeLogs(id: string, value: unknown): Array<{ stream: 'stdout' | 'stderr'; bytes: Buffer }> {
    const dir = this.#o.logDir;
    if (dir === undefined) return [];
    const out: Array<{ stream: 'stdout' | 'stderr'; bytes: Buffer }> = [];
    for (const { stream } of cutStreams(value)) {
      try {
        out.push({ stream, bytes: readFileSync(join(dir, `${id}.${stream}`)) });
      } catch {
        // gone or unreadable: the result keeps its count of dropped bytes, and the client says the output was cut
      }
    }
    for (const stream of ['stdout', 'stderr']) rmSync(join(dir, `${id}.${stream}`), { force: true });
    return out;
  }

  /** Kills a task this server runs, for an abort: no result is stored. */
  #abortIfRunning(id: string): void {
    const entry = this.#running.get(id);
    if (entry === undefined) return;
    this.#manager.terminateTask(id);
    this.#endRun(id);
    this.#log.info('aborted while running: terminated', { id });
    void this.#redis
      .hdel(this.#keys.running, id)
      .then(() => entry.job.moveToCompleted(null, entry.token, false))
      .catch((err: unknown) => this.#warn('letting an aborted job go', err, id));
    this.#wakeFetch?.();
  }

  /** The safety net for a lost abort message: are any of the running ids aborted? */
  async #checkAbortMarkers(): Promise<void> {
    const ids = [...this.#running.keys()];
    if (ids.length === 0) return;
    const found = await this.#redis.mget(ids.map((id) => this.#keys.abort(id)));
    ids.forEach((id, i) => {
      if (found[i] !== null) this.#abortIfRunning(id);
    });
  }

  /**
   * Renews each running job's lock. One that cannot be renewed (the lock is
   * someone else's now) or not confirmed within 60 % of the lock duration
   * (Redis out of reach) is killed here: BullMQ may hand the job to another
   * server once the lock expires, and two copies must never run at once.
   */
  async #renewLocks(): Promise<void> {
    const now = Date.now();
    const margin = Math.floor(this.#o.lockDurationMs * 0.4);
    for (const [id, entry] of this.#running) {
      if (now > entry.lockedUntil - margin) {
        this.#lostLock(id, 'its lock could not be renewed in time (Redis out of reach?)');
        continue;
      }
      const asked = Date.now();
      entry.job.extendLock(entry.token, this.#o.lockDurationMs).then(
        (renewed) => {
          if (renewed) entry.lockedUntil = asked + this.#o.lockDurationMs;
          else if (this.#running.get(id) === entry) this.#lostLock(id, 'its lock is gone (another server may run it)');
        },
        () => {}, // out of reach: the deadline above decides
      );
    }
  }

  #lostLock(id: string, why: string): void {
    if (!this.#running.has(id)) return;
    this.#manager.terminateTask(id);
    this.#endRun(id);
    this.#log.error(`killed a task: ${why}; it runs again elsewhere, or fails with --fail-interrupted`, { id });
    this.#wakeFetch?.();
  }

  /** Answers a request whose server stopped while it ran, instead of running it again (`interrupted: 'fail'`, or cut short twice). */
  async #failInterrupted(id: string, why = 'interrupted: fail'): Promise<void> {
    const error: SerializedError = { name: 'ServerRestartedError', code: 'ERR_SERVER_RESTARTED', message: `the server running this request stopped or lost Redis; it was not run again (${why})` };
    const finishedAt = Date.now();
    const multi = this.#redis.multi();
    multi.set(this.#keys.result(id), encodeResult({ id, ok: false, status: 'restarted', error, finishedAt }), 'PX', this.#o.resultTtlMs, 'NX');
    multi.zadd(this.#keys.results, finishedAt, id).hdel(this.#keys.running, id).publish(this.#keys.events, `done ${id}`);
    await multi.exec();
    this.#log.warn('a request was cut short by a server that stopped; failed (interrupted: fail)', { id });
  }

  async #heartbeat(): Promise<void> {
    const now = Date.now();
    const record: ServerRecord = { id: this.#id, host: hostname(), pid: process.pid, startedAt: this.#startedAt, maxTasks: Number.isFinite(this.#manager.maxTasks) ? this.#manager.maxTasks : null, running: this.#running.size, heartbeatAt: now };
    await this.#redis.hset(this.#keys.servers, this.#id, JSON.stringify(record));
    // Forget servers long gone, so the hash does not grow with every restart.
    const all = await this.#redis.hgetall(this.#keys.servers);
    const dead = Object.entries(all).filter(([, text]) => {
      try {
        return now - (JSON.parse(text) as ServerRecord).heartbeatAt > 60 * HEARTBEAT_DEAD_MS;
      } catch {
        return true;
      }
    });
    if (dead.length > 0) await this.#redis.hdel(this.#keys.servers, ...dead.map(([key]) => key));
  }

  async #expireResults(): Promise<void> {
    await this.#redis.zremrangebyscore(this.#keys.results, '-inf', Date.now() - this.#o.resultTtlMs);
  }

  /** On stop: running tasks get the grace period; then what is left is killed and put back in line (or failed). */
  async #drain(): Promise<void> {
    const deadline = Date.now() + this.#o.shutdownGraceMs;
    while (this.#running.size > 0 && Date.now() < deadline) await this.#sleep(Math.min(100, deadline - Date.now()));
    for (const [id, entry] of [...this.#running]) {
      this.#manager.terminateTask(id);
      this.#endRun(id);
      if (this.#o.interrupted === 'fail') {
        await this.#failInterrupted(id).catch((err: unknown) => this.#warn('answering an interrupted request', err, id));
        await entry.job.moveToCompleted(null, entry.token, false).catch(() => {});
      } else {
        await this.#redis.hdel(this.#keys.running, id).catch(() => {});
        await entry.job.moveToWait(entry.token).catch((err: unknown) => this.#warn('putting a job back in line', err, id));
      }
      this.#log.warn('stopped with the server; it runs again on a server of the queue', { id });
    }
  }

  #warn(what: string, err: unknown, id?: string): void {
    this.#log.warn(`redis: ${what} failed; retrying`, stripUndefined({ id, error: err instanceof Error ? err.message : String(err) }));
  }
}

/** A private directory for commands' output while they run. */
export function makeLogDir(): string {
  return mkdtempSync(join(tmpdir(), 'wq-output-'));
}

/** What a request carries for its task besides its body; undefined when it carries nothing. */
function taskInputOf(envelope: RequestEnvelope): TaskInput | undefined {
  if (!hasTaskInput(envelope)) return undefined;
  const { env, replaceEnv, stdin } = envelope;
  return stripUndefined({ env, replaceEnv, stdin });
}
