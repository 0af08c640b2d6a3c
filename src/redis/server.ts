/**
 * A server of a queue on Redis: one of any number, on any hosts, each running
 * at most its task manager's capacity (`--max-tasks`), the whole queue at most
 * BullMQ's global concurrency (`--global-max-tasks`). It takes jobs itself
 * (BullMQ's manual fetching) only while its manager has room, so a host held
 * by its load limit takes nothing, and every TaskManager works unchanged.
 *
 * What it keeps (docs/scale-out.md):
 * - FIFO: jobs are taken from BullMQ's wait list in the order they were added.
 * - An abort wins: its marker is looked at before a job starts, and a result
 *   is stored only if no marker is there (one Lua script, STORE_RESULT); a
 *   running task is killed by the server that runs it, told on the queue's
 *   channel (and by a look at the markers every second, in case the message
 *   was lost).
 * - Never two copies at once: a job's lock is renewed every quarter of the
 *   lock duration; a server that cannot renew it in time kills the task early
 *   enough that it is gone (kill grace included) before the lock expires and
 *   BullMQ's stalled check may hand the job to another server. A job is let
 *   go (completed, or put back in line) only once its task is gone.
 * - A server that dies: its jobs' locks expire and BullMQ's stalled check (in
 *   every server) puts them back at the head of the line; the server that
 *   takes one that was cut short once under `--fail-interrupted` (twice
 *   otherwise: BullMQ marks it failed) answers it with a `restarted` result.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Meter } from '@opentelemetry/api';
import type { ConnectionOptions, Job, Worker } from 'bullmq';
import { InvalidOptionError, ProtocolError, serializeError, type SerializedError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import { setLongTimeout, type LongTimeout } from '../long-timer.js';
import { ServerMetrics, type MetricsStamps } from '../metrics.js';
import type { InterruptedPolicy } from '../protocol.js';
import type { RedisQueueAddress } from '../queue/address.js';
import { isRequestId } from '../queue/request-id.js';
import type { RequestResult } from '../queue/types.js';
import { decodeRequest, encodeResult, type RequestEnvelope } from '../spool/codec.js';
import { hasTaskInput, type TaskInput } from '../task-input.js';
import type { TaskManager, TaskOutcome } from '../task-manager/types.js';
import { stripUndefined } from '../options.js';
import { connectRedis, loadBullMQ, redisOptions, type RedisClient } from './connect.js';
import { ABORT_MARKER_TTL_MS, BULLMQ_PREFIX, HEARTBEAT_DEAD_MS, HEARTBEAT_MS, parseEvent, queueKeys, type QueueKeys, type RunningRecord, type ServerRecord } from './keys.js';
import { cutStreams, type StreamName } from './output.js';

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
  /** How long a job stays locked to this server without a renewal. At least 2 × killGraceMs + 1 s. @default 30000 */
  lockDurationMs?: number;
  /** How long the task manager waits after SIGTERM before SIGKILL (its `killGraceMs`): a task whose lock is in doubt must be gone before the lock expires. @default 2000 */
  killGraceMs?: number;
  /** Where commands write their output while they run (CommandTaskManager's logDir); each file is removed once stored. */
  logDir?: string;
  logger?: Logger;
  /** Where the server's instruments live (docs/metrics.md): the same as a spool server's, for what this server does. @default the global Meter */
  meter?: Meter;
}

/** A job this server holds: its task runs, or has ended and its result is being stored. */
interface Held {
  job: Job;
  token: string;
  startedAt: number;
  queuedAt: number;
  /** Until when this server knows it holds the job's lock. */
  lockedUntil: number;
  /** `starting`: taken, its task not started yet; `running`: the task runs; `finishing`: it has ended (or was killed), the job is being let go. */
  phase: 'starting' | 'running' | 'finishing';
  /** An abort came while it was starting: it is not started (or killed at once). */
  abortPending?: boolean;
  runTimeoutMs?: number;
  deadline?: LongTimeout;
  /** For wait and run durations (ServerMetrics). */
  stamps: MetricsStamps;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Largest value Redis stores by default (proto-max-bulk-len): a longer stream stays cut, and its result says so. */
const MAX_STORED_STREAM_BYTES = 512 * 1024 * 1024;
/** Tries at letting a job go (a Redis blip), a second apart, while its lock is still renewed. */
const LET_GO_ATTEMPTS = 30;

/**
 * Stores a result unless the request is aborted, atomically (an abort filed
 * at any moment either finds the result, and removes it, or keeps it from
 * being stored). KEYS: abort marker, result, results set, running hash,
 * stdout, stderr. ARGV: id, result, ttl ms, finished at, channel, stdout?,
 * stderr? (an empty ARGV[6]/[7] flag in ARGV[8]/[9] means none). 1 if stored.
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
 * Marks a request as running here unless it is aborted, atomically: a task
 * never starts after its abort marker was set. KEYS: abort marker, running
 * hash. ARGV: id, running record (JSON). 1 if it may start.
 */
const START = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
`;

type StoreResult = (...args: Array<string | Buffer | number>) => Promise<number>;

/** Serves the queue until `signal` aborts. */
export async function serveRedis(options: RedisServerOptions, manager: TaskManager, signal?: AbortSignal): Promise<void> {
  await new RedisServing(options, manager).run(signal);
}

/** The lock duration must leave time to kill a task whose lock is in doubt (see RedisServing.#renewLocks). */
export function checkLockDuration(lockDurationMs: number, killGraceMs: number): void {
  if (lockDurationMs < 2 * killGraceMs + 1000) {
    throw new InvalidOptionError(`a lock duration of ${lockDurationMs / 1000} s leaves no time to kill a task (kill grace ${killGraceMs / 1000} s) before another server may take its job: give at least ${(2 * killGraceMs + 1000) / 1000} s`);
  }
}

type ResolvedOptions = Required<Omit<RedisServerOptions, 'globalMaxTasks' | 'logDir' | 'meter'>> & Pick<RedisServerOptions, 'globalMaxTasks' | 'logDir' | 'meter'>;

class RedisServing {
  readonly #o: ResolvedOptions;
  readonly #manager: TaskManager;
  readonly #keys: QueueKeys;
  readonly #log: Logger;
  readonly #host = hostname();
  readonly #id = `${this.#host}:${process.pid}:${randomBytes(3).toString('hex')}`;
  readonly #startedAt = Date.now();
  readonly #held = new Map<string, Held>();
  /** Jobs being let go (results stored, jobs completed): waited for before the server exits. */
  readonly #lettingGo = new Set<Promise<void>>();
  #redis!: RedisClient;
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
    this.#o = {
      interrupted: 'rerun',
      shutdownGraceMs: 30_000,
      resultTtlMs: 7 * DAY_MS,
      lockDurationMs: 30_000,
      killGraceMs: 2000,
      logger: silentLogger,
      ...stripUndefined(options),
    } as ResolvedOptions;
    checkLockDuration(this.#o.lockDurationMs, this.#o.killGraceMs);
    this.#manager = manager;
    this.#keys = queueKeys(options.address);
    this.#log = this.#o.logger;
    this.#metrics = new ServerMetrics(this.#o.meter, () => ({
      pending: this.#seen.pending,
      running: this.#runningCount,
      capacityUsage: this.#manager.size,
      capacityLimit: this.#manager.maxTasks,
      unclaimedResults: this.#seen.unclaimed,
    }));
  }

  /** Tasks running here now (not those whose job is being let go). */
  get #runningCount(): number {
    let n = 0;
    for (const held of this.#held.values()) if (held.phase === 'running') n++;
    return n;
  }

  async run(signal?: AbortSignal): Promise<void> {
    const { Worker, Queue } = await loadBullMQ();
    this.#redis = await connectRedis(this.#o.address, true);
    this.#redis.defineCommand('wqStoreResult', { numberOfKeys: 6, lua: STORE_RESULT });
    this.#redis.defineCommand('wqStart', { numberOfKeys: 2, lua: START });
    this.#subscriber = await connectRedis(this.#o.address, true);
    const lockDuration = this.#o.lockDurationMs;
    this.#worker = new Worker(this.#keys.name, null, {
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
        if (event?.type === 'abort') this.#abortIfHeld(event.id);
      });
      await this.#subscriber.subscribe(this.#keys.events);
      await this.#worker.startStalledCheckTimer();
      await this.#heartbeat();
      this.#log.info('server started', { queue: this.#keys.name, server: this.#id, maxTasks: this.#manager.maxTasks, globalMaxTasks: this.#o.globalMaxTasks });
      this.#manager.setWakeHandler(() => this.#onWake());
      timers.push(
        setInterval(() => void this.#heartbeat().catch((err: unknown) => this.#warn('heartbeat', err)), HEARTBEAT_MS),
        setInterval(() => this.#renewLocks(), Math.max(100, Math.floor(lockDuration / 4))),
        setInterval(() => void this.#checkAbortMarkers().catch((err: unknown) => this.#warn('looking for aborts', err)), 1000),
        setInterval(() => void this.#expireResults().catch((err: unknown) => this.#warn('removing expired results', err)), Math.min(60_000, Math.max(1000, Math.floor(this.#o.resultTtlMs / 2)))),
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
      await this.#redis.multi().hdel(this.#keys.servers, this.#id).del(this.#keys.alive(this.#id)).exec().catch(() => {});
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
        void this.#start(job, token)
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

  async #start(job: Job, token: string): Promise<void> {
    const id = job.id!;
    if (!isRequestId(id)) {
      // Not added by a wq client (its id names files here: never trust it): dropped unrun.
      this.#log.warn('dropped a job that is not a wq request (its id is not a request id)', { job: JSON.stringify(id).slice(0, 80) });
      await job.moveToCompleted(null, token, false);
      return;
    }
    const queuedAt = job.timestamp;
    // It waited since it reached Redis (the wall clock there and here): the metrics' own clock goes back that far.
    const received = this.#metrics.received();
    const stamps: MetricsStamps = { waitingSince: received === undefined ? undefined : received - Math.max(0, Date.now() - queuedAt) };
    const held: Held = { job, token, startedAt: Date.now(), queuedAt, lockedUntil: Date.now() + this.#o.lockDurationMs, phase: 'finishing', stamps };
    if (job.deferredFailure !== undefined) {
      // BullMQ's stalled check put it back in line marked as failed: its server died while it ran, once
      // under --fail-interrupted, twice otherwise. It is answered, not run again.
      this.#metrics.finished('restarted');
      this.#letGo(id, held, this.#interruptedResult(id, job.deferredFailure));
      return;
    }
    let envelope: RequestEnvelope;
    try {
      const encoded = (job.data as { e?: unknown } | undefined)?.e;
      if (typeof encoded !== 'string') throw new ProtocolError('the job holds no request envelope');
      envelope = decodeRequest(Buffer.from(encoded, 'base64'));
    } catch (err) {
      this.#metrics.finished('rejected');
      this.#letGo(id, held, { id, ok: false, status: 'rejected', error: serializeError(err), queuedAt, finishedAt: Date.now() });
      return;
    }
    // Held from now on (its lock renewed; an abort message marks it), then recorded as running unless aborted: one script.
    held.phase = 'starting';
    this.#held.set(id, held);
    const record: RunningRecord = { server: this.#id, host: this.#host, startedAt: Date.now() };
    const start = (this.#redis as unknown as { wqStart: StoreResult }).wqStart;
    const mayStart = await start.call(this.#redis, this.#keys.abort(id), this.#keys.running, id, JSON.stringify(record));
    if (this.#held.get(id) !== held) return; // its lock was lost meanwhile: not ours to start
    if (mayStart === 0 || held.abortPending === true) {
      // Aborted before it started: it never runs, and no result is stored.
      this.#log.debug('aborted before it started', { id });
      this.#letGo(id, held, undefined);
      void this.#redis.pexpire(this.#keys.abort(id), ABORT_MARKER_TTL_MS).catch(() => {});
      return;
    }
    held.phase = 'running';
    held.startedAt = record.startedAt;
    held.stamps.runningSince = this.#metrics.started(held.stamps);
    let pid: number | undefined;
    try {
      const task = this.#manager.startTask(id, envelope.body, taskInputOf(envelope));
      if (task) pid = task.pid;
    } catch (err) {
      held.phase = 'finishing';
      this.#metrics.finished('error', held.stamps);
      this.#letGo(id, held, { id, ok: false, status: 'error', error: serializeError(err), queuedAt, startedAt: held.startedAt, finishedAt: Date.now() });
      return;
    }
    this.#log.debug('started', { id, pid });
    // The pid, for `wq status` elsewhere: not waited for (a failure only leaves it out).
    if (pid !== undefined) void this.#redis.hset(this.#keys.running, id, JSON.stringify({ ...record, pid })).catch(() => {});
    if (envelope.runTimeoutMs !== undefined) {
      held.runTimeoutMs = envelope.runTimeoutMs;
      held.deadline = setLongTimeout(() => this.#runTimedOut(id), envelope.runTimeoutMs); // past 2^31 ms a plain timer fires at once
    }
  }

  /** Publishes the outcomes of tasks that finished. */
  #onWake(): void {
    for (const [id, outcome] of this.#manager.reap()) this.#finished(id, outcome);
    this.#wakeFetch?.();
  }

  #finished(id: string, outcome: TaskOutcome): void {
    const held = this.#endRun(id);
    if (held === undefined) return; // terminated: its outcome is discarded
    const result: Omit<RequestResult, 'v' | 'type'> = { id, ok: outcome.ok, status: outcome.ok ? 'normal' : 'error', queuedAt: held.queuedAt, startedAt: held.startedAt, finishedAt: Date.now() };
    if (outcome.ok) result.value = outcome.value;
    else result.error = outcome.error;
    if (outcome.logs === true) result.logs = true;
    this.#metrics.finished(outcome.ok ? 'normal' : 'error', held.stamps);
    this.#letGo(id, held, result);
    this.#log.debug('completed', { id, ok: outcome.ok });
  }

  #runTimedOut(id: string): void {
    const held = this.#held.get(id);
    if (held?.phase !== 'running' || held.runTimeoutMs === undefined) return;
    if (this.#manager.hasEnded?.(id) === true) return; // its own outcome follows
    this.#manager.terminateTask(id);
    this.#endRun(id);
    this.#metrics.killed('run_timeout');
    this.#metrics.finished('timed_out', held.stamps);
    const error: SerializedError = { name: 'RunTimeoutError', code: 'ERR_RUN_TIMEOUT', message: `the task ran longer than its run timeout of ${held.runTimeoutMs / 1000} s and was terminated` };
    this.#letGo(id, held, { id, ok: false, status: 'timed_out', runTimeoutMs: held.runTimeoutMs, error, queuedAt: held.queuedAt, startedAt: held.startedAt, finishedAt: Date.now() }, true);
    this.#log.info('run timeout: terminated', { id, runTimeoutSeconds: held.runTimeoutMs / 1000 });
  }

  /** The task is over, or being killed: the job is now being let go. Undefined if no task of it runs here. */
  #endRun(id: string): Held | undefined {
    const held = this.#held.get(id);
    if (held?.phase !== 'running') return undefined;
    held.phase = 'finishing';
    held.deadline?.clear();
    return held;
  }

  /**
   * Lets a job go: stores its result (unless an abort for it is filed: the
   * abort wins) and completes it in BullMQ; or, with no result, completes it
   * (`undefined`: aborted) or puts it back in line (`'again'`). Until then
   * the job stays held (its lock renewed), retried through Redis blips: a
   * result stored but a job never let go would run again. `killed`: its task
   * was terminated, and the job stays active (counted by the queue's global
   * limit) until the task is gone. A job put back in line must have no task
   * left (see #drain).
   */
  #letGo(id: string, held: Held, result: Omit<RequestResult, 'v' | 'type'> | undefined | 'again', killed = false): void {
    held.phase = 'finishing';
    this.#held.set(id, held);
    const done = (async () => {
      if (killed) await this.#gone(id);
      const outputs = typeof result === 'object' && result.logs === true ? this.#takeLogs(id, result.value) : undefined;
      for (let attempt = 1; this.#held.get(id) === held; attempt++) {
        try {
          if (typeof result === 'object') await this.#store(id, result, outputs);
          else await this.#redis.hdel(this.#keys.running, id);
          if (result === 'again') await held.job.moveToWait(held.token);
          else await held.job.moveToCompleted(null, held.token, false);
          break;
        } catch (err) {
          if (attempt >= LET_GO_ATTEMPTS) {
            this.#warn('letting a job go (gave up: it runs again once its lock expires)', err, id);
            break;
          }
          this.#warn('letting a job go', err, id);
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      }
      if (this.#held.get(id) === held) this.#held.delete(id);
      this.#wakeFetch?.();
    })();
    this.#lettingGo.add(done);
    void done.finally(() => this.#lettingGo.delete(done));
  }

  /** Resolves once a terminated task is gone (TaskManager.isGone), or after its kill grace and a second more. */
  async #gone(id: string): Promise<void> {
    const deadline = Date.now() + this.#o.killGraceMs + 1000;
    while (this.#manager.isGone?.(id) === false && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  /** Stores a result with STORE_RESULT; a result too large to store is replaced by an error saying so (as on a spool). */
  async #store(id: string, fields: Omit<RequestResult, 'v' | 'type'>, outputs: Partial<Record<StreamName, Buffer>> | undefined): Promise<void> {
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
    const k = this.#keys;
    const store = (this.#redis as unknown as { wqStoreResult: StoreResult }).wqStoreResult;
    const n = await store.call(
      this.#redis,
      k.abort(id), k.result(id), k.results, k.running, k.output(id, 'stdout'), k.output(id, 'stderr'),
      id, bytes, this.#o.resultTtlMs, fields.finishedAt, k.events,
      outputs?.stdout ?? '', outputs?.stderr ?? '', outputs?.stdout === undefined ? '0' : '1', outputs?.stderr === undefined ? '0' : '1',
    );
    if (n === 0) {
      this.#log.debug('result not stored: the request was aborted', { id });
      await this.#redis.pexpire(k.abort(id), ABORT_MARKER_TTL_MS); // acted on: a tombstone now
    }
  }

  /** A command's whole streams from its logs, when its value says they were cut; the logs are removed. */
  #takeLogs(id: string, value: unknown): Partial<Record<StreamName, Buffer>> {
    const dir = this.#o.logDir;
    const out: Partial<Record<StreamName, Buffer>> = {};
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

  /** For an abort: kills a task this server runs (no result is stored), and lets its job go once the task is gone. */
  #abortIfHeld(id: string): void {
    const held = this.#held.get(id);
    if (held?.phase === 'starting') held.abortPending = true; // #start sees it before it starts the task
    if (held?.phase !== 'running') return;
    this.#manager.terminateTask(id);
    this.#endRun(id);
    this.#log.info('aborted while running: terminated', { id });
    this.#metrics.killed('abort');
    this.#metrics.aborted('aborted', held.stamps);
    this.#letGo(id, held, undefined, true);
    void this.#redis.pexpire(this.#keys.abort(id), ABORT_MARKER_TTL_MS).catch(() => {}); // acted on: a tombstone now
  }

  /** The safety net for a lost abort message: are any of the running ids aborted? */
  async #checkAbortMarkers(): Promise<void> {
    const ids = [...this.#held].filter(([, held]) => held.phase === 'running').map(([id]) => id);
    if (ids.length === 0) return;
    const found = await this.#redis.mget(ids.map((id) => this.#keys.abort(id)));
    ids.forEach((id, i) => {
      if (found[i] !== null) this.#abortIfHeld(id);
    });
  }

  /**
   * Renews the lock of each job held. A task whose lock cannot be renewed
   * (someone else's now) or not confirmed in time (Redis out of reach) is
   * killed while there is still time for its kill grace before the lock
   * expires; its job is then not let go by this server (another one takes it).
   */
  #renewLocks(): void {
    const now = Date.now();
    const killBy = this.#o.killGraceMs + Math.floor(this.#o.lockDurationMs * 0.2);
    for (const [id, held] of this.#held) {
      if (now > held.lockedUntil - killBy) {
        this.#lostLock(id, held, 'its lock could not be renewed in time (Redis out of reach?)');
        continue;
      }
      const asked = Date.now();
      held.job.extendLock(held.token, this.#o.lockDurationMs).then(
        (renewed) => {
          if (renewed) held.lockedUntil = asked + this.#o.lockDurationMs;
          else this.#lostLock(id, held, 'its lock is gone (another server may run it)');
        },
        () => {}, // out of reach: the deadline above decides
      );
    }
  }

  #lostLock(id: string, held: Held, why: string): void {
    if (this.#held.get(id) !== held) return;
    if (held.phase === 'running') {
      this.#manager.terminateTask(id);
      this.#endRun(id);
      this.#log.error(`killed a task: ${why}; it runs again elsewhere, or fails with --fail-interrupted`, { id });
    } else {
      this.#log.error(`gave up a job ${held.phase === 'starting' ? 'before its task started' : 'whose task had ended'}: ${why}; it runs again elsewhere, or fails with --fail-interrupted`, { id });
    }
    this.#held.delete(id); // not let go by this server
    this.#wakeFetch?.();
  }

  /** The result of a request cut short by a server that stopped, instead of running it again. */
  #interruptedResult(id: string, why: string): Omit<RequestResult, 'v' | 'type'> {
    const error: SerializedError = { name: 'ServerRestartedError', code: 'ERR_SERVER_RESTARTED', message: `the server running this request stopped or lost Redis; it was not run again (${why})` };
    return { id, ok: false, status: 'restarted', error, finishedAt: Date.now() };
  }

  async #heartbeat(): Promise<void> {
    const now = Date.now();
    // The global limit lives in Redis: set again, in case Redis lost it (a restart without persistence).
    if (this.#o.globalMaxTasks !== undefined) await this.#redis.hset(this.#keys.meta, 'concurrency', this.#o.globalMaxTasks);
    const running = this.#runningCount;
    const record: ServerRecord = { id: this.#id, host: this.#host, pid: process.pid, startedAt: this.#startedAt, maxTasks: Number.isFinite(this.#manager.maxTasks) ? this.#manager.maxTasks : null, running, heartbeatAt: now };
    const hold = this.#stopping ? ({ reason: 'stopping' } as const) : this.#manager.holdReason?.();
    if (hold !== undefined) record.hold = hold;
    await this.#redis.multi().hset(this.#keys.servers, this.#id, JSON.stringify(record)).set(this.#keys.alive(this.#id), '1', 'PX', HEARTBEAT_DEAD_MS).exec();
    // Forget servers long gone (their `alive` key expired), so the hash does not grow with every restart.
    const ids = await this.#redis.hkeys(this.#keys.servers);
    const alive = ids.length === 0 ? [] : await this.#redis.mget(ids.map((id) => this.#keys.alive(id)));
    const dead = ids.filter((_, i) => alive[i] === null);
    if (dead.length > 0) await this.#redis.hdel(this.#keys.servers, ...dead);
    const [pending, unclaimed] = await Promise.all([this.#redis.llen(this.#keys.wait), this.#redis.zcard(this.#keys.results)]);
    this.#seen = { pending, unclaimed };
  }

  async #expireResults(): Promise<void> {
    await this.#redis.zremrangebyscore(this.#keys.results, '-inf', Date.now() - this.#o.resultTtlMs);
  }

  /**
   * On stop: running tasks get the grace period; then what is left is killed,
   * and once the manager has seen every task gone (close() waits for them),
   * put back in line, or failed under `interrupted: 'fail'`.
   */
  async #drain(): Promise<void> {
    const deadline = Date.now() + this.#o.shutdownGraceMs;
    while (this.#starting > 0) await this.#sleep(10); // each becomes running, or is let go
    while (this.#runningCount > 0 && Date.now() < deadline) await this.#sleep(Math.min(100, deadline - Date.now()));
    const left = [...this.#held].filter(([, held]) => held.phase === 'running');
    for (const [id] of left) {
      this.#manager.terminateTask(id);
      this.#endRun(id);
      this.#metrics.killed('shutdown');
    }
    if (left.length > 0) await this.#manager.close();
    const fail = this.#o.interrupted === 'fail';
    for (const [id, held] of left) {
      if (fail) this.#metrics.finished('restarted', held.stamps);
      this.#letGo(id, held, fail ? this.#interruptedResult(id, 'interrupted: fail') : 'again');
      this.#log.warn(fail ? 'stopped with the server; failed (interrupted: fail)' : 'stopped with the server; back in line for a server of the queue', { id });
    }
    while (this.#lettingGo.size > 0) await Promise.all([...this.#lettingGo]);
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
