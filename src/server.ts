/**
 * WorkQueueServer: the one process that moves requests through the spool.
 *
 * Single-threaded by construction: every transition happens inside `tick()`,
 * which runs synchronously to the end; watchers, timers and the task manager
 * only record what they saw and schedule the next tick. Each tick runs, in
 * order: reapCompleted → admitNew → processAborts → startPending → housekeep.
 */
import type { FSWatcher } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Meter } from '@opentelemetry/api';
import { InvalidOptionError, ProtocolError, serializeError, type SerializedError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { stripUndefined } from './options.js';
import { ServerMetrics, type FinishStatus } from './metrics.js';
import { PendingQueue } from './pending-queue.js';
import { planAbort, planRecovery, tombstoneExpired, type AbortTarget, type InterruptedPolicy } from './protocol.js';
import { decodeRequest, encodeResult, MAX_REQUEST_BYTES, type ResultEnvelope, type ResultStatus } from './spool/codec.js';
import { entryPath, logPath, openSpool, removeLogs, type SpoolPaths } from './spool/layout.js';
import { planHousekeeping, type AgedEntry } from './housekeeping.js';
import { ResultWriter, type LastState } from './result-writer.js';
import { acquireLock, type HeldLock } from './spool/lock.js';
import { isRequestId } from './spool/request-id.js';
import { readAbortReason } from './spool/abort-reason.js';
import * as sfs from './spool/fs.js';
import type { TaskManager, TaskManagerEvent, TaskOutcome } from './task-manager/types.js';

export interface WorkQueueServerOptions {
  /** The spool directory; created if missing. */
  spool: string;
  /**
   * What to do with requests found in `running/` at start (a previous server
   * died or was stopped while they ran): run them again, or complete them with
   * a "server restarted" error.
   * @default 'rerun'
   */
  interrupted?: InterruptedPolicy;
  /**
   * Watch `requested/` and `aborting/` for new entries. With `false` the server
   * only polls, every `rescanIntervalMs` (the ancestor's behaviour; for benchmarks).
   * @default true
   */
  watch?: boolean;
  /**
   * Period of the safety rescan of `requested/` and `aborting/`, which catches
   * what the watcher dropped (inotify overflows silently).
   * @default 2000
   */
  rescanIntervalMs?: number;
  /**
   * How long an abort for an id that does not exist (yet) is kept, so that it
   * still wins if the request appears.
   * @default 600000 (10 minutes)
   */
  abortTombstoneMs?: number;
  /**
   * On shutdown, how long running tasks may go on to finish before they are
   * terminated (terminated tasks are re-run by the next server).
   * @default 0
   */
  shutdownGraceMs?: number;
  /** fsync result files and directories before a result counts as written. @default false */
  durable?: boolean;
  /** Where the server logs transitions and summaries. @default silent */
  logger?: Logger;
  /** OpenTelemetry Meter for the server's instruments. @default the global meter */
  meter?: Meter;
  /**
   * Wall clock in ms, injectable for tests. When injected, metric durations are
   * measured with it too. @default Date.now (durations: performance.now, monotonic)
   */
  now?: () => number;
  /** Interval of the "still alive" info log line. @default 300000 (5 minutes) */
  heartbeatIntervalMs?: number;
  /**
   * Results nobody claims (their client died) are removed after this long.
   * @default 604800000 (7 days)
   */
  resultTtlMs?: number;
  /** Temp files and orphaned logs are removed after this long. @default 3600000 (1 hour) */
  leftoverMaxAgeMs?: number;
  /** How often housekeeping (TTL, temp files, orphaned logs) runs. @default 60000 */
  housekeepingIntervalMs?: number;
}

type ResolvedOptions = Required<Omit<WorkQueueServerOptions, 'meter'>> & { meter: Meter | undefined };

/** Fills defaults and validates; pure. */
export function resolveServerOptions(options: WorkQueueServerOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    interrupted: 'rerun',
    watch: true,
    rescanIntervalMs: 2000,
    abortTombstoneMs: 600_000,
    shutdownGraceMs: 0,
    durable: false,
    logger: silentLogger,
    now: Date.now,
    heartbeatIntervalMs: 300_000,
    resultTtlMs: 7 * 24 * 3600_000,
    leftoverMaxAgeMs: 3600_000,
    housekeepingIntervalMs: 60_000,
    ...stripUndefined(options),
    spool: options.spool,
    meter: options.meter,
  };
  if (typeof resolved.spool !== 'string' || resolved.spool === '') {
    throw new InvalidOptionError(`Expected \`spool\` to be a non-empty string, got \`${String(resolved.spool)}\``);
  }
  if (resolved.interrupted !== 'rerun' && resolved.interrupted !== 'fail') {
    throw new InvalidOptionError(`Expected \`interrupted\` to be 'rerun' or 'fail', got \`${String(resolved.interrupted)}\``);
  }
  const durations = ['rescanIntervalMs', 'abortTombstoneMs', 'shutdownGraceMs', 'heartbeatIntervalMs', 'resultTtlMs', 'leftoverMaxAgeMs', 'housekeepingIntervalMs'] as const;
  for (const key of durations) {
    const value = resolved[key];
    const min = key === 'rescanIntervalMs' || key === 'housekeepingIntervalMs' ? 1 : 0;
    if (!(typeof value === 'number' && Number.isFinite(value) && value >= min)) {
      throw new InvalidOptionError(`Expected \`${key}\` to be a finite number >= ${min}, got \`${String(value)}\` (${typeof value})`);
    }
  }
  return resolved;
}


/** At shutdown, how long to wait for durable results still being committed. */
const COMMIT_WAIT_AT_STOP_MS = 10_000;

export interface ProcessRequestsOptions {
  /** Stops the server: no new starts, running tasks get `shutdownGraceMs`, the lock is released. */
  signal?: AbortSignal;
}

interface RunningInfo {
  startedAt: number;
  queuedAt: number | undefined;
  /** The request's run timeout, if it has one, and the timer that enforces it. */
  runTimeoutMs?: number;
  deadline?: NodeJS.Timeout;
}

/** Counts of one tick, for the summary log line. */
interface TickCounts {
  added: number;
  started: number;
  aborted: number;
  completed: number;
}

export class WorkQueueServer {
  readonly #o: ResolvedOptions;
  readonly #log: Logger;
  #paths!: SpoolPaths;
  #writer!: ResultWriter;
  #manager!: TaskManager;
  #metrics!: ServerMetrics;
  readonly #queue = new PendingQueue();
  readonly #queuedAt = new Map<string, number>();
  readonly #running = new Map<string, RunningInfo>();
  /** Names reported by the watchers or rescans, not yet looked at. */
  #seenRequested = new Set<string>();
  #seenAborts = new Set<string>();
  /** Aborts for ids not (yet) in the spool → when first seen. */
  readonly #tombstones = new Map<string, number>();
  /** Invalid names already logged, so each is logged once. */
  readonly #warnedNames = new Set<string>();
  /** Entries a periodic rescan found before the watcher reported them (see #rescan). */
  readonly #unreported = new Set<string>();
  #tickScheduled = false;
  #draining = false;
  #ticks = 0;
  #nextHeartbeat = 0;
  #unclaimedResults = 0;
  /**
   * Queued ids whose file is still in requested/: admitted this tick. Those that
   * start at once go straight to running/ (one rename, not two); the rest are
   * moved to pending/ at the end of the tick.
   */
  readonly #unparked = new Set<string>();
  /** Ids this server moved out of requested/ since the last periodic rescan: their move-out events are not new requests. */
  #movedOut = new Set<string>();
  /** Running ids whose run timeout expired, to terminate at the next tick. */
  #expired = new Set<string>();
  #nextHousekeeping = 0;

  constructor(options: WorkQueueServerOptions) {
    this.#o = resolveServerOptions(options);
    this.#log = this.#o.logger;
  }

  /** Requests queued and running, for status and tests. */
  get counts(): { pending: number; running: number } {
    return { pending: this.#queue.size, running: this.#running.size };
  }

  /**
   * Serves the spool until `signal` aborts: takes the lock, recovers what a
   * previous server left, then runs ticks whenever something happens.
   * Rejects with SpoolLockedError if another server holds the spool.
   * @example
   * const controller = new AbortController();
   * await new WorkQueueServer({ spool }).processRequests(new InProcessTaskManager(fn), { signal: controller.signal });
   */
  async processRequests(manager: TaskManager, options: ProcessRequestsOptions = {}): Promise<void> {
    const { signal } = options;
    this.#paths = openSpool(this.#o.spool);
    this.#manager = manager;
    const lock = acquireLock(this.#paths, { maxTasks: manager.maxTasks });
    this.#writer = new ResultWriter(this.#paths, this.#o.durable, this.#log, () => this.#unclaimedResults++);
    const stops: Array<() => void> = [];
    try {
      const snapshot = () => ({
        pending: this.#queue.size,
        running: this.#running.size,
        capacityUsage: manager.size,
        capacityLimit: manager.maxTasks,
        unclaimedResults: this.#unclaimedResults,
      });
      // A test that fakes the wall clock fakes metric durations too; otherwise they use a monotonic clock.
      this.#metrics = new ServerMetrics(this.#o.meter, snapshot, this.#o.now === Date.now ? undefined : this.#o.now);
      this.#log.info('server started', { spool: this.#paths.root, pid: process.pid, maxTasks: manager.maxTasks });
      this.#recover();
      manager.setWakeHandler(() => this.#schedule());
      manager.setEventHandler?.((event) => this.#onManagerEvent(event));
      if (this.#o.watch) stops.push(...this.#startWatchers());
      await this.#runUntilStopped(lock, stops, signal);
    } finally {
      for (const stop of stops) stop();
      this.#metrics?.close();
      lock.release();
    }
  }

  /** What a task manager reports besides outcomes: counted and logged. */
  #onManagerEvent(event: TaskManagerEvent): void {
    if (event.type === 'worker-crashed') {
      this.#metrics.workerCrashed();
      this.#log.warn('worker process crashed', { pid: event.pid, id: event.taskId, exitCode: event.exitCode, signal: event.signal });
    }
  }

  async #runUntilStopped(lock: HeldLock, stops: Array<() => void>, signal: AbortSignal | undefined): Promise<void> {
    let finish!: (err?: unknown) => void;
    const done = new Promise<void>((resolve, reject) => {
      finish = (err?: unknown) => (err === undefined ? resolve() : reject(err));
    });
    const rescan = setInterval(() => {
      if (!lock.stillHeld()) {
        finish(new Error(`lost the lock of spool ${this.#paths.root}: another process replaced it; stopping`));
        return;
      }
      this.#safely('rescan', () => this.#rescan(true));
      if (this.#o.now() >= this.#nextHousekeeping) {
        this.#nextHousekeeping = this.#o.now() + this.#o.housekeepingIntervalMs;
        this.#housekeep();
      }
    }, this.#o.rescanIntervalMs);
    stops.push(() => clearInterval(rescan));
    this.#tick();
    const onAbort = (): void => void this.#drain().then(() => finish(), finish);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }


  /** Stops starting work, lets tasks finish within the grace period, then terminates the rest. */
  async #drain(): Promise<void> {
    this.#draining = true;
    this.#log.info('stopping: no new tasks will start', { running: this.#running.size, pending: this.#queue.size });
    const deadline = this.#o.now() + this.#o.shutdownGraceMs;
    while (this.#running.size > 0 && this.#o.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - this.#o.now()))));
      this.#tick();
    }
    this.#tick(); // reap anything that finished at the last moment
    for (const id of [...this.#running.keys()]) {
      // Left in running/: the next server re-runs it (or fails it with `interrupted: 'fail'`).
      this.#manager.terminateTask(id);
      this.#forgetRunning(id);
      this.#metrics.killed('shutdown');
      this.#metrics.forget(id);
      removeLogs(this.#paths, id); // the next run writes its own
      this.#log.info('terminated at shutdown; will run again at next start', { id });
    }
    await this.#manager.close();
    // Durable results still being committed: give them a moment, then leave them to a re-run.
    let timer: NodeJS.Timeout | undefined;
    const committed = await Promise.race([
      this.#writer.idle().then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), COMMIT_WAIT_AT_STOP_MS))),
    ]);
    clearTimeout(timer);
    if (!committed) this.#log.warn('stopped before every durable result was committed; those requests run again at the next start');
    this.#writer.close();
    this.#log.info('server stopped', { pending: this.#queue.size });
  }

  /** Runs a step outside a tick (timers, watcher callbacks): a fault is logged and retried later, never thrown into the event loop. */
  #safely(step: string, run: () => void): void {
    try {
      run();
    } catch (err) {
      this.#log.error(`${step} failed; will retry`, { error: serializeError(err).message });
    }
  }

  #schedule(): void {
    if (this.#tickScheduled) return;
    this.#tickScheduled = true;
    setImmediate(() => {
      this.#tickScheduled = false;
      this.#tick();
    });
  }

  /** One pass of the loop. Synchronous: nothing else runs until it returns. */
  #tick(): void {
    this.#ticks++;
    try {
      this.#manager.startTick();
      const counts: TickCounts = { added: 0, started: 0, aborted: 0, completed: 0 };
      counts.completed = this.#reapCompleted();
      counts.aborted += this.#expireRunTimeouts();
      counts.added = this.#admitNew();
      counts.aborted += this.#processAborts();
      if (!this.#draining) counts.started = this.#startPending();
      this.#parkWaiting();
      this.#logTick(counts);
      this.#metrics.tick();
    } catch (err) {
      // An unexpected fault (EACCES, ENOSPC …): log it; the next event or rescan retries.
      this.#metrics.tick(err);
      this.#log.error('tick failed; will retry at the next event or rescan', { error: serializeError(err).message });
    }
  }

  /** Terminates tasks past their run timeout and answers them with a `timed_out` result. */
  #expireRunTimeouts(): number {
    if (this.#expired.size === 0) return 0;
    const ids = [...this.#expired];
    this.#expired = new Set();
    let n = 0;
    for (const id of ids) {
      const info = this.#running.get(id);
      if (info?.runTimeoutMs === undefined) continue; // finished or aborted meanwhile
      this.#manager.terminateTask(id);
      this.#forgetRunning(id);
      this.#metrics.killed('run_timeout');
      const finishedAt = this.#o.now();
      const error: SerializedError = {
        name: 'RunTimeoutError',
        code: 'ERR_RUN_TIMEOUT',
        message: `the task ran longer than its run timeout of ${info.runTimeoutMs / 1000} s and was terminated`,
      };
      const logs = sfs.entryExists(logPath(this.#paths, id, 'stdout'));
      const result = outcomeToResult(id, { ok: false, error, logs }, info, finishedAt);
      this.#publishResult(id, 'running', { ...result, status: 'timed_out', runTimeoutMs: info.runTimeoutMs });
      this.#metrics.finished(id, 'timed_out');
      this.#log.info('run timeout: terminated', { id, runTimeoutSeconds: info.runTimeoutMs / 1000 });
      n++;
    }
    return n;
  }

  /** Drops a running request from the books (and its deadline timer). */
  #forgetRunning(id: string): RunningInfo | undefined {
    const info = this.#running.get(id);
    if (info?.deadline !== undefined) clearTimeout(info.deadline);
    this.#running.delete(id);
    return info;
  }

  #logTick(c: TickCounts): void {
    const now = this.#o.now();
    const busy = c.added + c.started + c.aborted + c.completed > 0;
    if (busy) {
      this.#log.info('tick', { new: c.added, started: c.started, aborted: c.aborted, completed: c.completed, pending: this.#queue.size, running: this.#running.size });
    }
    if (now >= this.#nextHeartbeat) {
      this.#nextHeartbeat = now + this.#o.heartbeatIntervalMs;
      this.#log.info('heartbeat', { ticks: this.#ticks, pending: this.#queue.size, running: this.#running.size });
    }
  }

  // ---- tick steps ---------------------------------------------------------

  /** Publishes the results of tasks that finished. */
  #reapCompleted(): number {
    let n = 0;
    for (const [id, outcome] of this.#manager.reap()) {
      const info = this.#forgetRunning(id);
      if (info === undefined) continue; // terminated: its outcome is discarded
      const finishedAt = this.#o.now();
      this.#publishResult(id, 'running', outcomeToResult(id, outcome, info, finishedAt));
      this.#metrics.finished(id, outcome.ok ? 'normal' : 'error');
      this.#log.debug('completed', { id, ok: outcome.ok });
      n++;
    }
    return n;
  }

  /** Moves newly requested ids to pending/ and into the queue. */
  #admitNew(): number {
    if (this.#seenRequested.size === 0) return 0;
    const names = [...this.#seenRequested].sort();
    this.#seenRequested = new Set();
    let n = 0;
    for (const id of names) {
      if (this.#movedOut.has(id)) continue; // the event of our own move out of requested/
      if (!this.#checkName('requested', id)) continue;
      if (this.#queue.has(id) || this.#running.has(id)) continue;
      if (this.#tombstones.has(id)) {
        // The abort came first and wins: the request never starts.
        if (sfs.removeEntry(entryPath(this.#paths, 'requested', id))) this.#finishAbort(id, 'requested');
        continue;
      }
      if (!sfs.entryExists(entryPath(this.#paths, 'requested', id))) continue; // gone (its client aborted it by hand)
      this.#unparked.add(id);
      this.#queue.insert(id);
      this.#queuedAt.set(id, this.#o.now());
      this.#metrics.received(id);
      this.#log.debug('admitted', { id });
      n++;
    }
    return n;
  }

  /** Carries out abort requests: drop, terminate, remove the result, or keep a tombstone. */
  #processAborts(): number {
    if (this.#seenAborts.size === 0) return 0;
    const names = [...this.#seenAborts].sort();
    this.#seenAborts = new Set();
    let n = 0;
    for (const id of names) {
      if (!this.#checkName('aborting', id)) continue;
      const abortFile = entryPath(this.#paths, 'aborting', id);
      if (!sfs.entryExists(abortFile)) {
        this.#tombstones.delete(id);
        continue;
      }
      const action = planAbort(this.#locate(id));
      switch (action.kind) {
        case 'drop':
          this.#queue.remove(id);
          this.#unparked.delete(id);
          sfs.removeEntry(entryPath(this.#paths, action.state, id));
          break;
        case 'terminate':
          this.#manager.terminateTask(id);
          this.#forgetRunning(id);
          removeLogs(this.#paths, id);
          this.#metrics.killed('abort');
          sfs.removeEntry(entryPath(this.#paths, 'running', id));
          break;
        case 'remove-result':
          if (sfs.removeEntry(entryPath(this.#paths, 'complete', id))) this.#unclaimedResults--;
          removeLogs(this.#paths, id);
          this.#log.debug('abort removed an unclaimed result', { id });
          sfs.removeEntry(abortFile);
          continue; // the request already finished; it is not counted again
        case 'keep-tombstone': {
          const first = this.#tombstones.get(id) ?? this.#o.now();
          this.#tombstones.set(id, first);
          if (tombstoneExpired(first, this.#o.now(), this.#o.abortTombstoneMs)) {
            sfs.removeEntry(abortFile);
            this.#tombstones.delete(id);
            this.#log.info('dropped abort for unknown id', { id });
          }
          continue;
        }
      }
      this.#finishAbort(id, action.kind === 'terminate' ? 'running' : action.state);
      n++;
    }
    return n;
  }

  #finishAbort(id: string, state: string): void {
    const abortFile = entryPath(this.#paths, 'aborting', id);
    const reason = readAbortReason(abortFile);
    const uid = sfs.entryStat(abortFile)?.uid;
    sfs.removeEntry(abortFile);
    this.#tombstones.delete(id);
    this.#queuedAt.delete(id);
    this.#metrics.aborted(id, reason === 'timeout' || reason === 'run-timeout' ? 'timed_out' : 'aborted');
    this.#log.debug('aborted', { id, state, reason, uid });
  }

  /** Starts pending requests in FIFO order while the manager has room. */
  #startPending(): number {
    let n = 0;
    while (this.#queue.size > 0 && this.#manager.hasCapacity()) {
      const id = this.#queue.shift()!;
      const queuedAt = this.#queuedAt.get(id);
      this.#queuedAt.delete(id);
      const from = this.#unparked.delete(id) ? 'requested' : 'pending';
      if (from === 'requested') this.#movedOut.add(id);
      const pendingFile = entryPath(this.#paths, from, id);
      let body: unknown;
      let runTimeoutMs: number | undefined;
      try {
        const bytes = sfs.readEntry(pendingFile, MAX_REQUEST_BYTES);
        if (bytes === undefined) {
          this.#log.warn('pending request vanished before it started', { id });
          this.#metrics.forget(id);
          continue;
        }
        const envelope = decodeRequest(bytes);
        body = envelope.body;
        runTimeoutMs = envelope.runTimeoutMs;
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.#rejectRequest(id, from, err, queuedAt);
        continue;
      }
      if (!sfs.moveEntry(pendingFile, entryPath(this.#paths, 'running', id))) {
        this.#metrics.forget(id);
        continue;
      }
      const startedAt = this.#o.now();
      this.#metrics.started(id);
      const info: RunningInfo = { startedAt, queuedAt };
      if (runTimeoutMs !== undefined) {
        info.runTimeoutMs = runTimeoutMs;
        info.deadline = setTimeout(() => {
          this.#expired.add(id);
          this.#schedule();
        }, runTimeoutMs);
      }
      this.#running.set(id, info);
      this.#log.debug('started', { id });
      try {
        this.#manager.startTask(id, body);
      } catch (err) {
        this.#forgetRunning(id);
        this.#publishResult(id, 'running', outcomeToResult(id, { ok: false, error: serializeError(err) }, { startedAt, queuedAt }, this.#o.now()));
        this.#metrics.finished(id, 'error');
      }
      n++;
    }
    return n;
  }

  /** Moves requests admitted this tick that could not start to pending/: queued, waiting for capacity. */
  #parkWaiting(): void {
    for (const id of this.#unparked) {
      this.#movedOut.add(id);
      if (!sfs.moveEntry(entryPath(this.#paths, 'requested', id), entryPath(this.#paths, 'pending', id))) {
        this.#queue.remove(id); // removed meanwhile by hand: nothing to run
        this.#queuedAt.delete(id);
        this.#metrics.forget(id);
      }
    }
    this.#unparked.clear();
  }

  // ---- helpers ------------------------------------------------------------

  /** Where an id is, checked in flow order so a request moving forward is not missed. */
  #locate(id: string): AbortTarget {
    if (this.#queue.has(id)) return this.#unparked.has(id) ? 'requested' : 'pending';
    if (this.#running.has(id)) return 'running';
    if (sfs.entryExists(entryPath(this.#paths, 'requested', id))) return 'requested';
    if (sfs.entryExists(entryPath(this.#paths, 'complete', id))) return 'complete';
    return 'unknown';
  }

  /** Answers a request that cannot be read or decoded with an error result, and logs it once. */
  #rejectRequest(id: string, state: 'pending' | 'requested', err: Error, queuedAt: number | undefined): void {
    this.#log.warn('rejected unreadable request', { id, error: err.message });
    const result: Omit<ResultEnvelope, 'v' | 'type'> = {
      id,
      ok: false,
      status: 'rejected',
      error: serializeError(err),
      finishedAt: this.#o.now(),
    };
    if (queuedAt !== undefined) result.queuedAt = queuedAt;
    this.#publishResult(id, state, result);
    this.#metrics.finished(id, 'rejected');
  }

  /** Encodes a result and hands it to the writer (published now, or at the next group commit). */
  #publishResult(id: string, from: LastState, result: Omit<ResultEnvelope, 'v' | 'type'>): void {
    let bytes: Buffer;
    try {
      bytes = encodeResult(result);
    } catch (err) {
      bytes = encodeResult({ ...withoutValue(result), ok: false, status: 'error', error: serializeError(new ProtocolError(`the task's result cannot be stored: ${(err as Error).message}`)) });
    }
    this.#writer.write(id, from, bytes);
  }

  /** Ignores (and logs once) names that are not request ids: dotfiles, editors' droppings, hostile names. */
  #checkName(dir: string, name: string): boolean {
    if (isRequestId(name)) return true;
    if (!this.#warnedNames.has(`${dir}/${name}`)) {
      this.#warnedNames.add(`${dir}/${name}`);
      this.#log.warn('ignoring an entry whose name is not a request id', { dir, name: JSON.stringify(name) });
    }
    return false;
  }

  /** Removes unclaimed results past their TTL, stale temp files and orphaned logs; logs the counts. */
  #housekeep(): void {
    try {
      const aged = (dir: 'complete' | 'tmp' | 'logs'): AgedEntry[] =>
        sfs.listEntries(this.#paths.dirs[dir]).flatMap((name) => {
          const stat = sfs.entryStat(join(this.#paths.dirs[dir], name));
          return stat === undefined || stat.isDirectory() ? [] : [{ name, changedMs: stat.ctimeMs }];
        });
      const complete = aged('complete');
      const live = new Set<string>([...this.#queue, ...this.#running.keys(), ...complete.map((e) => e.name)]);
      for (const name of sfs.listEntries(this.#paths.dirs.requested)) live.add(name);
      const plan = planHousekeeping(this.#o.now(), this.#o, complete, aged('tmp'), aged('logs'), live);
      for (const id of plan.expiredResults) {
        sfs.removeEntry(entryPath(this.#paths, 'complete', id));
        removeLogs(this.#paths, id);
      }
      for (const name of plan.staleTemps) sfs.removeEntry(join(this.#paths.dirs.tmp, name));
      for (const name of plan.orphanLogs) sfs.removeEntry(join(this.#paths.dirs.logs, name));
      const removed = plan.expiredResults.length + plan.staleTemps.length + plan.orphanLogs.length;
      if (removed > 0) {
        this.#log.info('housekeeping', { expiredResults: plan.expiredResults.length, staleTemps: plan.staleTemps.length, orphanLogs: plan.orphanLogs.length });
      }
    } catch (err) {
      this.#log.error('housekeeping failed; will retry', { error: serializeError(err).message });
    }
  }

  // ---- start-up, watching, rescans -----------------------------------------

  /** Rebuilds the queue from the spool: nothing a previous server left is lost. */
  #recover(): void {
    const runningIds = sfs.listEntries(this.#paths.dirs.running).filter((n) => this.#checkName('running', n));
    const completeIds = new Set(sfs.listEntries(this.#paths.dirs.complete).filter(isRequestId));
    this.#unclaimedResults = completeIds.size;
    for (const step of planRecovery(runningIds, completeIds, this.#o.interrupted)) {
      const runningFile = entryPath(this.#paths, 'running', step.id);
      if (step.kind === 'drop-leftover') sfs.removeEntry(runningFile);
      else if (step.kind === 'requeue') {
        removeLogs(this.#paths, step.id); // the interrupted run's output; the re-run writes its own
        sfs.moveEntry(runningFile, entryPath(this.#paths, 'pending', step.id));
      }
      else {
        const error: SerializedError = { name: 'ServerRestartedError', code: 'ERR_SERVER_RESTARTED', message: 'the server restarted while this request was running; it was not run again (interrupted: fail)' };
        this.#publishResult(step.id, 'running', { id: step.id, ok: false, status: 'restarted', error, finishedAt: this.#o.now() });
        this.#metrics.finished(step.id, 'restarted');
      }
    }
    const now = this.#o.now();
    for (const id of sfs.listEntries(this.#paths.dirs.pending)) {
      if (!this.#checkName('pending', id)) continue;
      this.#queue.insert(id);
      this.#queuedAt.set(id, now);
      this.#metrics.queued(id);
    }
    this.#rescan();
    this.#log.info('recovered spool', { pending: this.#queue.size, interrupted: runningIds.length, policy: this.#o.interrupted });
  }

  /**
   * The safety net: re-reads requested/ and aborting/ for anything the watcher
   * missed. A periodic rescan also judges the watcher: an entry it finds
   * unreported is only a suspect (its event may still be queued), counted as
   * missed at the next periodic rescan unless the watcher reports it meanwhile.
   */
  #rescan(periodic = false): void {
    if (periodic) this.#movedOut = new Set(); // bounded: a rescan re-reads requested/ anyway
    const judge = periodic && this.#o.watch;
    if (judge) this.#countMissed();
    const { requested, aborting, complete } = this.#paths.dirs;
    for (const name of sfs.listEntries(requested)) {
      if (judge && !this.#seenRequested.has(name) && isRequestId(name) && !this.#queue.has(name)) this.#unreported.add(join(requested, name));
      this.#seenRequested.add(name);
    }
    for (const name of sfs.listEntries(aborting)) {
      if (judge && !this.#seenAborts.has(name) && isRequestId(name) && !this.#tombstones.has(name)) this.#unreported.add(join(aborting, name));
      this.#seenAborts.add(name);
    }
    this.#unclaimedResults = sfs.listEntries(complete).filter(isRequestId).length;
    this.#schedule();
  }

  /** Counts and logs the suspects of the last periodic rescan that the watcher never reported. */
  #countMissed(): void {
    if (this.#unreported.size === 0) return;
    let requested = 0;
    for (const path of this.#unreported) if (dirname(path) === this.#paths.dirs.requested) requested++;
    const aborting = this.#unreported.size - requested;
    this.#unreported.clear();
    this.#metrics.watcherMissed('requested', requested);
    this.#metrics.watcherMissed('aborting', aborting);
    this.#log.warn('the file watcher missed entries; the rescan found them', { requested, aborting });
  }

  #startWatchers(): Array<() => void> {
    const watchers: FSWatcher[] = [];
    const watch = (dir: string, seen: () => Set<string>): void => {
      watchers.push(
        sfs.watchDirectory(
          dir,
          (name) => {
            if (name === null) this.#safely('rescan', () => this.#rescan());
            else {
              seen().add(name);
              // A late event clears a suspect; the one for the server's own move out of dir does not.
              if (this.#unreported.size > 0 && this.#unreported.has(join(dir, name)) && sfs.entryExists(join(dir, name))) this.#unreported.delete(join(dir, name));
            }
            this.#schedule();
          },
          (err) => this.#log.error('watcher failed; relying on rescans', { dir, error: err.message }),
        ),
      );
    };
    watch(this.#paths.dirs.requested, () => this.#seenRequested);
    watch(this.#paths.dirs.aborting, () => this.#seenAborts);
    return watchers.map((w) => () => w.close());
  }
}

function outcomeToResult(id: string, outcome: TaskOutcome, info: { startedAt: number; queuedAt: number | undefined }, finishedAt: number): Omit<ResultEnvelope, 'v' | 'type'> {
  const status: ResultStatus = outcome.ok ? 'normal' : 'error';
  const result: Omit<ResultEnvelope, 'v' | 'type'> = { id, ok: outcome.ok, status, startedAt: info.startedAt, finishedAt };
  if (info.queuedAt !== undefined) result.queuedAt = info.queuedAt;
  if (outcome.ok) result.value = outcome.value;
  else result.error = outcome.error;
  if (outcome.logs === true) result.logs = true;
  return result;
}

function withoutValue(result: Omit<ResultEnvelope, 'v' | 'type'>): Omit<ResultEnvelope, 'v' | 'type'> {
  const { value: _value, ...rest } = result;
  return rest;
}

export type { FinishStatus };
