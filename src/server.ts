/**
 * WorkQueueServer: the one process that moves requests through the spool.
 *
 * Single-threaded by construction: every transition happens inside `tick()`,
 * which runs synchronously to the end; watchers, timers and the task manager
 * only record what they saw and schedule the next tick. Each tick first checks
 * that the spool is still the one it started on, with real directories
 * (layout-guard.ts), then runs, in order: reapCompleted → expireRunTimeouts →
 * admitNew → processAborts → startPending → parkWaiting → publishHold.
 *
 * Beside it, in spool/server/: its options (options.ts), its watches (directory-watchers.ts),
 * result publication (result-writer.ts), housekeeping and abort decisions
 * (housekeeping.ts, protocol.ts, permissions.ts: pure).
 *
 * A fault in a step (EACCES, EMFILE, ENOSPC …) is logged once per episode and
 * retried at the next event or rescan; a step that fails leaves the server's
 * books as they were for what it did not finish, so nothing is lost.
 */
import { basename, dirname, join } from 'node:path';
import { ForeignRequestError, ProtocolError, serializeError, WorkQueueError, type SerializedError } from './errors.js';
import type { Logger } from './logger.js';
import { resolveServerOptions, type ResolvedOptions, type WorkQueueServerOptions } from './spool/server/options.js';
import { ServerMetrics, type FinishStatus } from './metrics.js';
import { DirectoryWatchers, type WatchedDir } from './spool/server/directory-watchers.js';
import { LayoutGuard } from './spool/server/layout-guard.js';
import { PendingQueue } from './spool/server/pending-queue.js';
import { planAbort, planRecovery, tombstoneExpired, whatHoldsTheLine, type AbortTarget, type RecoveryStep } from './protocol.js';
import { Orphans } from './spool/server/orphans.js';
import { decodeRequest, decodeResult, encodeResult, MAX_REQUEST_BYTES, MAX_RESULT_BYTES, type RequestEnvelope, type ResultEnvelope, type ResultStatus } from './spool/codec.js';
import { entryPath, logPath, PROCESS_SUFFIX, removeLogs, stagedResultPath, STAGED_SUFFIX, type SpoolDir, type SpoolPaths } from './spool/layout.js';
import { FaultLog } from './spool/server/fault-log.js';
import { planHousekeeping, type AgedEntry } from './spool/server/housekeeping.js';
import { mayAbort, mayRunRequest } from './spool/permissions.js';
import { diskFullResult } from './spool/server/result-on-full-disk.js';
import { ResultWriter, type LastState } from './spool/server/result-writer.js';
import { acquireLock, type HeldLock, type LockOwner } from './spool/lock.js';
import { removeServerState, writeServerState } from './spool/server-state.js';
import { farFutureByMs, isRequestId } from './spool/request-id.js';
import { setLongTimeout, type LongTimeout } from './long-timer.js';
import { readAbortReason } from './spool/abort-reason.js';
import { describeFileSystem, fileSystemWarnings } from './spool/mount.js';
import * as sfs from './spool/fs.js';
import { openServedSpool, serverIdentity } from './spool/access.js';
import { asSpoolError } from './spool/spool-fault.js';
import { LinkedRequests } from './spool/server/linked-requests.js';
import type { TaskManager, TaskManagerEvent, TaskOutcome } from './task-manager/types.js';
import { hasTaskInput, type TaskInput } from './task-input.js';
import { stripUndefined } from './options.js';

export { resolveServerOptions, type WorkQueueServerOptions } from './spool/server/options.js';

/** At shutdown, how long to wait for results still being committed (durable) or retried (a full disk). */
const COMMIT_WAIT_AT_STOP_MS = 10_000;
/** server.state's hold when nothing waits or the line moves: the same as no file at all. */
const NOTHING_HELD = JSON.stringify({ reason: 'none' });
/** While a dead server's task was just killed, how often to look whether it is gone. */
const ORPHAN_RECHECK_MS = 20;


export interface ProcessRequestsOptions {
  /** Stops the server: no new starts, running tasks get `shutdownGraceMs`, the lock is released. */
  signal?: AbortSignal;
}

interface RunningInfo {
  startedAt: number;
  queuedAt: number | undefined;
  /** The request's run timeout, if it has one, and the timer that enforces it. */
  runTimeoutMs?: number;
  deadline?: LongTimeout;
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
  /** processRequests has returned: nothing may tick, watch or write any more (a tick queued before the end would otherwise act on a spool the server no longer serves). */
  #ended = false;
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
  /** Requests seen with a second name, for the owner rule. */
  #linked: LinkedRequests | undefined;
  /** Running ids whose run timeout expired, to terminate at the next tick. */
  #expired = new Set<string>();
  #nextHousekeeping = 0;
  /** Faults of steps retried later (tick, rescan, lock check …), each logged once per episode. */
  readonly #faults: FaultLog;
  /** Ids whose result is with the writer but not published yet (a full disk …): not taken in again meanwhile. */
  readonly #answering = new Set<string>();
  /** Aborts that arrived while their request's result was being written; carried out once it is published. */
  readonly #abortsAfterPublish = new Set<string>();
  /** Planted non-empty directories the server cannot remove, as `dir/id`: answered once, then left alone. */
  readonly #ignored = new Set<string>();
  /** Checks, before each tick, that the spool is still the one the server started on. */
  #guard!: LayoutGuard;
  /** Why the server must stop (the spool is gone, replaced, or leads out of itself; the lock is lost): no tick touches the spool once set. */
  #fatal: Error | undefined;
  #onFatal: (err: Error) => void = () => {};
  /** Watches of requested/ and aborting/ (none when `watch` is off). */
  #watchers: DirectoryWatchers | undefined;
  /** Tasks' process records, and what a dead server left running (orphans.ts). */
  #orphans!: Orphans<RecoveryStep>;
  /** Looks at just-killed orphans until they are gone. */
  #orphanTimer: NodeJS.Timeout | undefined;
  /** Who holds the lock (this server), as server.state names it. */
  #owner!: LockOwner;
  /** What server.state says now (JSON of its hold; none: no file is the same); undefined after a write failed. */
  #publishedHold: string | undefined = NOTHING_HELD;

  constructor(options: WorkQueueServerOptions) {
    this.#o = resolveServerOptions(options);
    this.#log = this.#o.logger;
    this.#faults = new FaultLog(this.#log);
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
    const who = serverIdentity();
    try {
      this.#paths = openServedSpool(this.#o.spool, who); // refuses symlinked state directories, and directories others could swap for one
    } catch (err) {
      throw asSpoolError(this.#o.spool, err);
    }
    this.#linked = new LinkedRequests(this.#paths.dirs.tmp);
    this.#guard = new LayoutGuard(this.#paths, {
      log: this.#log,
      faults: this.#faults,
      stop: (err) => this.#stopFatally(err),
      adopted: (dir) => this.#adoptDirectory(dir),
    }, who);
    this.#manager = manager;
    this.#orphans = new Orphans(this.#paths, this.#log);
    let lock: HeldLock;
    try {
      lock = acquireLock(this.#paths, { maxTasks: manager.maxTasks });
    } catch (err) {
      throw asSpoolError(this.#o.spool, err); // EROFS, EACCES on server.lock
    }
    this.#owner = lock.owner;
    this.#writer = new ResultWriter(
      this.#paths,
      this.#o.durable,
      this.#log,
      (id, published) => {
        if (published) this.#unclaimedResults++;
        this.#answering.delete(id);
        if (this.#abortsAfterPublish.delete(id)) {
          // The abort won: the result was never published. Like an abort of a complete request, it is not counted again.
          this.#removeLogs(id);
          this.#removeIn('aborting', id);
          this.#log.debug('abort removed a result before it was published', { id });
        }
      },
      (id, from) => this.#leaveInPlace(from, id),
      (id, bytes) => {
        this.#removeLogs(id);
        return diskFullResult(bytes);
      },
    );
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
      this.#warnAboutFileSystem();
      this.#recover();
      manager.setWakeHandler(() => this.#schedule());
      manager.setEventHandler?.((event) => this.#onManagerEvent(event));
      if (this.#o.watch) {
        const watchers = new DirectoryWatchers((target) => (target === 'spool' ? this.#paths.root : this.#paths.dirs[target]), {
          onName: (target, path, name) => {
            if (target !== 'spool') return this.#onWatchEvent(target, path, name);
            this.#guard.changed(); // something in the spool directory changed: the next tick checks the layout
            this.#schedule();
          },
          onBroken: (target, path, err) => {
            if (target !== 'spool') return this.#log.error('watcher failed; relying on rescans', { dir: path, error: err.message });
            this.#guard.watched(false);
            this.#log.error('watch of the spool directory failed; checking its layout at every tick until it is re-armed', { dir: path, error: err.message });
          },
          onArmed: (target, err) => {
            if (target === 'spool') this.#guard.watched(err === undefined);
            if (err === undefined) this.#faults.succeeded(`watching ${target}/`);
            else this.#faults.failed(`watching ${target}/`, err, { dir: target });
          },
        });
        this.#watchers = watchers;
        watchers.watchAll();
        stops.push(() => watchers.close());
      }
      stops.push(() => clearInterval(this.#orphanTimer));
      await this.#runUntilStopped(lock, stops, signal);
    } finally {
      this.#ended = true;
      for (const stop of stops) stop();
      this.#metrics?.close();
      // Only while the lock is still ours: its holder alone writes server.state.
      if (this.#fatal === undefined) this.#safely('removing server.state', () => removeServerState(this.#paths));
      lock.release();
    }
  }

  /** What a task manager reports besides outcomes: counted and logged. */
  #onManagerEvent(event: TaskManagerEvent): void {
    if (event.type === 'worker-output') {
      // A handler's own output, one line at a time, with the request it was running: stderr as a warning.
      const fields = { id: event.taskId, pid: event.pid, line: event.line };
      if (event.stream === 'stderr') this.#log.warn('handler stderr', fields);
      else this.#log.info('handler stdout', fields);
      return;
    }
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
    let stopping = false;
    // The spool is gone or unsafe, or the lock lost: stop as at a signal (tasks are terminated and run
    // again at the next start), then reject, so a supervisor restarts the server on whatever is there.
    this.#onFatal = (err) => {
      if (stopping) return;
      stopping = true;
      this.#log.error(`stopping: ${err.message}`);
      void this.#drain().then(
        () => finish(err),
        () => finish(err),
      );
    };
    const rescan = setInterval(() => this.#periodic(lock), this.#o.rescanIntervalMs);
    stops.push(() => clearInterval(rescan));
    if (this.#lockStillHeld(lock)) this.#tick(); // the first tick starts tasks: not if the lock file was replaced since it was taken
    const onAbort = (): void => {
      if (stopping) return;
      stopping = true;
      void this.#drain().then(() => finish(), finish);
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }


  /** The periodic safety net: checks the spool and the lock, re-arms lost watchers, rescans, housekeeps. */
  #periodic(lock: HeldLock): void {
    let intact = this.#guardLayout(true);
    if (this.#fatal !== undefined) return;
    if (!this.#lockStillHeld(lock)) return;
    // Only with the lock still in place: a spool being removed (rm -rf) loses it, or itself, within the interval.
    if (!intact && this.#guard.recreateMissing()) intact = this.#guardLayout();
    if (intact) {
      this.#watchers?.rewatch();
      this.#recheckOrphans(true);
      this.#rescan(true);
      if (this.#housekeepingDue()) this.#housekeep();
    }
    this.#schedule(); // a tick even when the rescan failed: what an earlier tick could not do is retried
  }

  /** Whether the lock still names this server; stops the server if not. A lock that cannot be read now (EACCES, EMFILE) is not lost. */
  #lockStillHeld(lock: HeldLock): boolean {
    try {
      const held = lock.stillHeld();
      this.#faults.succeeded('lock check');
      if (held) return true;
    } catch (err) {
      this.#faults.failed('lock check', err);
      return true;
    }
    this.#stopFatally(new Error(`lost the lock of spool ${this.#paths.root}: server.lock was removed or replaced; stopping`));
    return false;
  }

  /** Whether housekeeping is due; a wall clock stepped back does not postpone it by the step. */
  #housekeepingDue(): boolean {
    const now = this.#o.now();
    if (now < this.#nextHousekeeping && this.#nextHousekeeping - now <= this.#o.housekeepingIntervalMs) return false;
    this.#nextHousekeeping = now + this.#o.housekeepingIntervalMs;
    return true;
  }

  #stopFatally(err: Error): void {
    if (this.#fatal !== undefined) return;
    this.#fatal = err;
    this.#onFatal(err);
  }

  /** Stops starting work, lets tasks finish within the grace period, then terminates the rest. */
  async #drain(): Promise<void> {
    this.#draining = true;
    this.#log.info('stopping: no new tasks will start', { running: this.#running.size, pending: this.#queue.size });
    // A spool that is gone or unsafe gets no grace: nothing of it may be touched any more.
    const deadline = this.#o.now() + (this.#fatal === undefined ? this.#o.shutdownGraceMs : 0);
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
      if (this.#fatal === undefined) this.#removeLogs(id); // the next run writes its own
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
    if (!committed) this.#log.warn('stopped before every result was written; those requests run again at the next start');
    this.#writer.close();
    this.#log.info('server stopped', { pending: this.#queue.size });
  }

  /** Runs a step outside a tick (timers, watcher callbacks): a fault is logged once and retried later, never thrown into the event loop. */
  #safely(step: string, run: () => void): void {
    try {
      run();
      this.#faults.succeeded(step);
    } catch (err) {
      this.#faults.failed(step, err);
    }
  }

  /** Whether a tick may touch the spool now (see LayoutGuard.check). */
  #guardLayout(periodic = false): boolean {
    return this.#fatal === undefined && this.#guard.check(periodic);
  }

  /** Serves a recreated or replaced directory (LayoutGuard adopted it): its entries, its watcher. */
  #adoptDirectory(dir: SpoolDir): void {
    if (dir === 'pending') this.#safely('adopting pending/', () => this.#queuePending());
    if (dir === 'requested' || dir === 'aborting') {
      this.#watchers?.invalidate(dir);
      this.#watchers?.rewatch();
      this.#rescan(false, this.#o.watch); // what it holds now, the old watcher never reported
    }
  }

  #schedule(): void {
    if (this.#tickScheduled || this.#ended) return;
    this.#tickScheduled = true;
    setImmediate(() => {
      this.#tickScheduled = false;
      if (!this.#ended) this.#tick();
    });
  }

  /**
   * One pass of the loop. Synchronous: nothing else runs until it returns.
   * A step that fails (EACCES, EMFILE, ENOSPC …) does not stop the steps after
   * it, except that nothing starts while aborts could not be carried out (an
   * abort must win); the next event or rescan retries.
   */
  #tick(): void {
    this.#ticks++;
    let failure: unknown;
    const step = (run: () => number): number => {
      try {
        return run();
      } catch (err) {
        failure ??= err;
        return 0;
      }
    };
    step(() => (this.#manager.startTick(), 0));
    if (!this.#guardLayout()) return;
    const counts: TickCounts = { added: 0, started: 0, aborted: 0, completed: 0 };
    counts.completed = step(() => this.#reapCompleted());
    counts.aborted += step(() => this.#expireRunTimeouts());
    counts.added = step(() => this.#admitNew());
    const before = failure;
    counts.aborted += step(() => this.#processAborts());
    const abortsFailed = failure !== before;
    if (!this.#draining && !abortsFailed) counts.started = step(() => this.#startPending());
    const startFailed = failure !== before;
    step(() => (this.#parkWaiting(), 0));
    step(() => (this.#publishHold(startFailed), 0));
    this.#logTick(counts);
    this.#metrics.tick(failure);
    if (failure === undefined) this.#faults.succeeded('tick');
    else this.#faults.failed('tick', failure);
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
      if (this.#manager.hasEnded?.(id) === true) {
        // It ended before the server could act on its deadline (its output still draining, or the server was stopped): its own outcome follows.
        this.#log.debug('run timeout passed after the task had ended; its own result stands', { id });
        continue;
      }
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

  /** Drops a running request from the books (and its deadline timer, and its process record). */
  #forgetRunning(id: string): RunningInfo | undefined {
    const info = this.#running.get(id);
    if (info === undefined) return undefined;
    info.deadline?.clear();
    this.#running.delete(id);
    // A record left behind (EACCES) is harmless: the next server finds its group gone, or kills what is left of it.
    this.#safely('removing a process record', () => this.#orphans.forget(id));
    return info;
  }

  /** Records a started task's process group; a record that cannot be written fails the request (thrown). */
  #recordProcess(id: string, pid: number): void {
    try {
      this.#orphans.record(id, pid);
    } catch (err) {
      throw new WorkQueueError(`cannot record the task's process in running/ (${(err as Error).message}); it was killed`, 'ERR_PROCESS_RECORD');
    }
  }

  /**
   * Whether one more task may start: the manager has room, counting the tasks
   * a dead server left that are still alive; and none of those was killed a
   * moment ago (it is about to go, and its request keeps its place in line).
   */
  #hasRoom(): boolean {
    if (this.#orphans.settling) return false;
    // (A manager with reserve() already counts them; this covers one without.)
    return this.#manager.hasCapacity() && (this.#orphans.size === 0 || this.#running.size + this.#orphans.size < this.#manager.maxTasks);
  }

  /**
   * Removes a request's output logs; a failure (EACCES on logs/) is logged once
   * and left to housekeeping, which removes orphaned logs after an hour.
   */
  #removeLogs(id: string): void {
    try {
      removeLogs(this.#paths, id);
      this.#faults.succeeded('removing logs');
    } catch (err) {
      this.#faults.failed('removing logs', err, { id });
    }
  }

  /** A planted non-empty directory under an id: left for the operator, never handled again by this server; logged once. */
  #leaveInPlace(dir: string, id: string): void {
    if (this.#ignored.has(`${dir}/${id}`)) return;
    this.#ignored.add(`${dir}/${id}`);
    this.#log.warn('left a non-empty directory in place for the operator; it is ignored from now on', { dir, id });
  }

  #logTick(c: TickCounts): void {
    const now = this.#o.now();
    const busy = c.added + c.started + c.aborted + c.completed > 0;
    if (busy) {
      this.#log.info('tick', { new: c.added, started: c.started, aborted: c.aborted, completed: c.completed, pending: this.#queue.size, running: this.#running.size });
    }
    // A wall clock stepped back does not postpone the heartbeat by the step.
    if (now >= this.#nextHeartbeat || this.#nextHeartbeat - now > this.#o.heartbeatIntervalMs) {
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

  /**
   * Takes newly requested ids into the queue (they move to pending/ at the end
   * of the tick, or straight to running/). An entry that is not a regular file
   * is answered at once with a `rejected` result, never opened. A fault part-way
   * leaves the names not yet looked at for the next tick.
   */
  #admitNew(): number {
    if (this.#seenRequested.size === 0) return 0;
    const names = [...this.#seenRequested].sort();
    this.#seenRequested = new Set();
    let n = 0;
    let i = 0;
    try {
      for (; i < names.length; i++) if (this.#admitOne(names[i]!)) n++;
    } catch (err) {
      for (const name of names.slice(i)) this.#seenRequested.add(name);
      throw err;
    }
    return n;
  }

  /** Admits one name seen in requested/; true when it joined the queue. */
  #admitOne(id: string): boolean {
    if (this.#movedOut.has(id)) return false; // the event of our own move out of requested/
    if (!this.#checkName('requested', id)) return false;
    if (this.#queue.has(id) || this.#running.has(id) || this.#answering.has(id) || this.#ignored.has(`requested/${id}`)) return false;
    const path = entryPath(this.#paths, 'requested', id);
    if (this.#tombstones.has(id)) {
      // The abort came first and wins: the request never starts.
      if (this.#removeIn('requested', id) !== 'absent') this.#finishAbort(id, 'requested');
      return false;
    }
    const stat = sfs.entryStat(path);
    if (stat === undefined) return false; // gone (its client aborted it by hand)
    if (!stat.isFile()) {
      this.#movedOut.add(id);
      this.#rejectRequest(id, 'requested', new ProtocolError(`requested/${id} is ${sfs.describeEntry(stat)}; requests must be regular files`), undefined);
      return false;
    }
    this.#unparked.add(id);
    this.#queue.insert(id);
    this.#queuedAt.set(id, this.#o.now());
    this.#metrics.received(id);
    this.#log.debug('admitted', { id });
    const aheadMs = farFutureByMs(id, this.#o.now());
    if (aheadMs !== undefined) {
      this.#log.warn("request id is far ahead of the server's clock: it waits behind every request with an earlier id; check the client's clock", { id, aheadSeconds: Math.round(aheadMs / 1000) });
    }
    return true;
  }

  /** Carries out abort requests: drop, terminate, remove the result, or keep a tombstone. */
  #processAborts(): number {
    if (this.#seenAborts.size === 0) return 0;
    const names = [...this.#seenAborts].sort();
    this.#seenAborts = new Set();
    let n = 0;
    let i = 0;
    try {
      for (; i < names.length; i++) if (this.#processAbort(names[i]!)) n++;
    } catch (err) {
      for (const name of names.slice(i)) this.#seenAborts.add(name); // retried at the next tick
      throw err;
    }
    return n;
  }

  /**
   * Carries out one abort; true when it removed a request. The request's entry
   * is removed before the server's books change, so a removal that fails
   * (EACCES) leaves everything as it was, to retry.
   */
  #processAbort(id: string): boolean {
    if (!this.#checkName('aborting', id) || this.#ignored.has(`aborting/${id}`)) return false;
    if (!sfs.entryExists(entryPath(this.#paths, 'aborting', id))) {
      this.#tombstones.delete(id);
      return false;
    }
    if (this.#writer.holds(id)) {
      // Its result is being written: it will not be published.
      this.#writer.cancel(id);
      this.#abortsAfterPublish.add(id);
      return false;
    }
    const action = planAbort(this.#locate(id));
    if ((action.kind === 'drop' || action.kind === 'terminate') && !this.#abortAllowed(id, action.kind === 'drop' ? action.state : 'running')) {
      this.#removeIn('aborting', id);
      return false;
    }
    switch (action.kind) {
      case 'drop':
        this.#removeIn(action.state, id);
        this.#queue.remove(id);
        this.#unparked.delete(id);
        break;
      case 'terminate':
        this.#removeIn('running', id);
        this.#manager.terminateTask(id);
        this.#forgetRunning(id);
        this.#metrics.killed('abort');
        this.#removeLogs(id);
        break;
      case 'remove-result':
        if (this.#removeIn('complete', id) === 'removed') this.#unclaimedResults--;
        this.#removeLogs(id);
        this.#log.debug('abort removed an unclaimed result', { id });
        this.#removeIn('aborting', id);
        return false; // the request already finished; it is not counted again
      case 'keep-tombstone': {
        const first = this.#tombstones.get(id) ?? this.#o.now();
        this.#tombstones.set(id, first);
        if (tombstoneExpired(first, this.#o.now(), this.#o.abortTombstoneMs)) {
          this.#removeIn('aborting', id);
          this.#tombstones.delete(id);
          this.#log.info('dropped abort for unknown id', { id });
        }
        return false;
      }
    }
    this.#finishAbort(id, action.kind === 'terminate' ? 'running' : action.state);
    return true;
  }

  #finishAbort(id: string, state: string): void {
    const abortFile = entryPath(this.#paths, 'aborting', id);
    const reason = readAbortReason(abortFile);
    const uid = sfs.entryStat(abortFile)?.uid;
    this.#tombstones.delete(id);
    this.#queuedAt.delete(id);
    this.#metrics.aborted(id, reason === 'timeout' || reason === 'run-timeout' ? 'timed_out' : 'aborted');
    this.#log.debug('aborted', { id, state, reason, uid });
    this.#removeIn('aborting', id);
  }

  /** Starts pending requests in FIFO order while the manager has room and results can be written. */
  #startPending(): number {
    let n = 0;
    while (this.#queue.size > 0 && this.#hasRoom() && !this.#writer.blocked) {
      const id = this.#queue.shift()!;
      const queuedAt = this.#queuedAt.get(id);
      this.#queuedAt.delete(id);
      const from = this.#unparked.delete(id) ? 'requested' : 'pending';
      let started: boolean | 'wait';
      try {
        started = this.#startOne(id, from, queuedAt);
      } catch (err) {
        // A fault (EMFILE, EACCES …), not a broken request: back in line, where it was, for the next tick.
        this.#requeue(id, from, queuedAt);
        throw err;
      }
      if (started === 'wait') {
        this.#requeue(id, from, queuedAt); // first in line still: nothing behind it starts before it
        break;
      }
      if (started) n++;
    }
    return n;
  }

  #requeue(id: string, from: 'requested' | 'pending', queuedAt: number | undefined): void {
    this.#queue.insert(id);
    if (queuedAt !== undefined) this.#queuedAt.set(id, queuedAt);
    if (from === 'requested') this.#unparked.add(id);
  }

  /**
   * Reads a queued request, moves it to running/ and starts it; true when it
   * started. A broken request gets a `rejected` result; a fault is thrown
   * before anything changed; 'wait' when its owner cannot be trusted yet (see #checkOwner).
   */
  #startOne(id: string, from: 'requested' | 'pending', queuedAt: number | undefined): boolean | 'wait' {
    if (from === 'requested') this.#movedOut.add(id);
    const file = entryPath(this.#paths, from, id);
    let envelope: RequestEnvelope;
    try {
      const read = sfs.readOwnedEntry(file, MAX_REQUEST_BYTES);
      if (read === undefined) {
        this.#log.warn('pending request vanished before it started', { id });
        this.#metrics.forget(id);
        return false;
      }
      envelope = decodeRequest(read.bytes);
      if (this.#checkOwner(id, file, read) === 'wait') return 'wait';
    } catch (err) {
      if (!(err instanceof ProtocolError) && !(err instanceof ForeignRequestError)) throw err;
      this.#rejectRequest(id, from, err, queuedAt);
      return false;
    }
    if (!sfs.moveEntry(file, entryPath(this.#paths, 'running', id))) {
      this.#metrics.forget(id);
      return false;
    }
    const startedAt = this.#o.now();
    this.#metrics.started(id);
    const info: RunningInfo = { startedAt, queuedAt };
    const { runTimeoutMs } = envelope;
    if (runTimeoutMs !== undefined) {
      info.runTimeoutMs = runTimeoutMs;
      info.deadline = setLongTimeout(() => {
        this.#expired.add(id);
        this.#schedule();
      }, runTimeoutMs);
    }
    this.#running.set(id, info);
    this.#log.debug('started', { id });
    let started = false;
    try {
      const task = this.#manager.startTask(id, envelope.body, taskInputOf(envelope));
      started = true;
      // Before the task counts as started: a server killed from now on leaves a record for the next one.
      if (task) this.#recordProcess(id, task.pid);
    } catch (err) {
      if (started) this.#manager.terminateTask(id);
      this.#forgetRunning(id);
      this.#publishResult(id, 'running', outcomeToResult(id, { ok: false, error: serializeError(err) }, { startedAt, queuedAt }, this.#o.now()));
      this.#metrics.finished(id, 'error');
    }
    return true;
  }

  /**
   * Moves requests admitted this tick that could not start to pending/: queued,
   * waiting for capacity. One that cannot be moved (a fault) stays admitted, in
   * requested/, and is moved at the next tick.
   */
  #parkWaiting(): void {
    for (const id of [...this.#unparked]) {
      this.#movedOut.add(id);
      const moved = sfs.moveEntry(entryPath(this.#paths, 'requested', id), entryPath(this.#paths, 'pending', id));
      this.#unparked.delete(id);
      if (!moved) {
        this.#queue.remove(id); // removed meanwhile by hand: nothing to run
        this.#queuedAt.delete(id);
        this.#metrics.forget(id);
      }
    }
  }

  /**
   * Tells clients what keeps the line from moving (`server.state`), when that
   * changed: a write per change, none per request while it stays the same. A
   * write that fails is logged once and tried again at the next tick.
   */
  #publishHold(faulted: boolean): void {
    const queued = this.#queue.size;
    if (queued === 0 && this.#publishedHold === NOTHING_HELD) return; // the usual case: nothing to weigh
    // (hasRoom() is asked only with work waiting: a load-aware manager then starts watching the load.)
    const hold = whatHoldsTheLine({
      queued,
      stopping: this.#draining,
      faulted,
      resultsBlocked: this.#writer.blocked,
      orphans: this.#orphans.size,
      orphansSettling: this.#orphans.settling,
      hasRoom: queued > 0 && this.#hasRoom(),
      managerHold: queued > 0 ? this.#manager.holdReason?.() : undefined,
      maxTasks: this.#manager.maxTasks,
    });
    const key = JSON.stringify(hold);
    if (key === this.#publishedHold) return;
    this.#publishedHold = undefined;
    this.#safely('publishing server.state', () => {
      writeServerState(this.#paths, { pid: this.#owner.pid, startedAt: this.#owner.startedAt, hold, since: this.#o.now() });
      this.#publishedHold = key;
    });
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

  /**
   * In a spool shared by several users, only the request's owner (the owner of
   * its file), the server's user and root may abort it, unless the operator
   * allows anyone (`abortPolicy: 'anyone'`). A refused abort is logged.
   */
  #abortAllowed(id: string, state: 'requested' | 'pending' | 'running'): boolean {
    const abortUid = sfs.entryStat(entryPath(this.#paths, 'aborting', id))?.uid;
    const ownerUid = sfs.entryStat(entryPath(this.#paths, state, id))?.uid;
    if (abortUid === undefined || mayAbort(abortUid, ownerUid, process.getuid?.() ?? 0, this.#o.abortPolicy)) return true;
    this.#log.warn('refused an abort filed by a user who does not own the request', { id, abortUid, ownerUid });
    return false;
  }

  /** Removes `dir/id` whatever it is, without following it; a non-empty directory is left in place (logged once). */
  #removeIn(dir: SpoolDir, id: string): sfs.Removal {
    const removal = sfs.removeAnyEntry(entryPath(this.#paths, dir, id));
    if (removal === 'kept') this.#leaveInPlace(dir, id);
    return removal;
  }

  /**
   * Throws ForeignRequestError unless a request whose file `read.uid` owns may
   * run here (option `requestOwners`); a file with a second name is not
   * trusted for its owner (see linked-requests.ts): 'wait' for a publish.
   */
  #checkOwner(id: string, path: string, read: { uid: number; nlink: number; dev: number; ino: number }): 'wait' | undefined {
    const owners = this.#o.requestOwners;
    const { uid, nlink } = read;
    if (!mayRunRequest(uid, owners)) throw new ForeignRequestError(`request ${id} was filed by uid ${uid}; this server runs only requests filed by uid ${owners!.join(' or ')}`, uid);
    if (owners === undefined) return undefined;
    const verdict = this.#linked!.judge(id, path, read, this.#o.now());
    if (verdict === 'reject') throw new ForeignRequestError(`request ${id} has ${nlink} names (hard links): its owner uid ${uid} does not say who filed it, since anyone may link a file they do not own`, uid);
    return verdict === 'wait' ? 'wait' : undefined;
  }

  /** Answers a request that cannot be read or decoded, or may not run here, with an error result, and logs it once. */
  #rejectRequest(id: string, state: 'pending' | 'requested', err: Error, queuedAt: number | undefined): void {
    const foreign = err instanceof ForeignRequestError;
    this.#log.warn(foreign ? 'refused a request filed by a user this server does not run requests for' : 'rejected unreadable request', { id, error: err.message });
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

  /** Encodes a result and hands it to the writer (published now, at the next group commit, or at a retry). */
  #publishResult(id: string, from: LastState, result: Omit<ResultEnvelope, 'v' | 'type'>): void {
    let bytes: Buffer;
    try {
      bytes = encodeResult(result);
    } catch (err) {
      bytes = encodeResult({ ...withoutValue(result), ok: false, status: 'error', error: serializeError(new ProtocolError(`the task's result cannot be stored: ${(err as Error).message}`)) });
    }
    this.#answering.add(id);
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

  /** Forgets warned names no longer in `dir`, so the set stays as small as the junk that is there. */
  #forgetWarnedNames(dir: WatchedDir, present: readonly string[]): void {
    const here = new Set(present);
    for (const key of this.#warnedNames) {
      if (key.startsWith(`${dir}/`) && !here.has(key.slice(dir.length + 1))) this.#warnedNames.delete(key);
    }
  }

  /** Removes unclaimed results past their TTL, stale temp files and orphaned logs; logs the counts. */
  #housekeep(): void {
    try {
      // Directories are never removed (never descended into); other entries are unlinked, never followed.
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
        sfs.removeAnyEntry(entryPath(this.#paths, 'complete', id));
        this.#removeLogs(id);
      }
      for (const name of plan.staleTemps) sfs.removeAnyEntry(join(this.#paths.dirs.tmp, name));
      for (const name of plan.orphanLogs) sfs.removeAnyEntry(join(this.#paths.dirs.logs, name));
      const removed = plan.expiredResults.length + plan.staleTemps.length + plan.orphanLogs.length;
      if (removed > 0) {
        this.#log.info('housekeeping', { expiredResults: plan.expiredResults.length, staleTemps: plan.staleTemps.length, orphanLogs: plan.orphanLogs.length });
      }
      this.#faults.succeeded('housekeeping');
    } catch (err) {
      this.#faults.failed('housekeeping', err);
    }
  }

  // ---- start-up, watching, rescans -----------------------------------------

  /** Tells the operator once, at start, about a file system the spool's promises do not hold on. */
  #warnAboutFileSystem(): void {
    const info = describeFileSystem(this.#paths.root);
    if (info === undefined) return;
    for (const warning of fileSystemWarnings(info)) this.#log.warn(warning, { source: info.source, mountPoint: info.mountPoint, type: info.type });
  }

  /** Rebuilds the queue from the spool: nothing a previous server left is lost. */
  #recover(): void {
    const inRunning = sfs.listEntries(this.#paths.dirs.running);
    const finished = new Set(inRunning.filter((n) => n.endsWith(STAGED_SUFFIX)).map((n) => n.slice(0, -STAGED_SUFFIX.length)).filter(isRequestId));
    for (const id of finished) this.#publishStaged(id);
    const records = inRunning.filter((n) => n.endsWith(PROCESS_SUFFIX)).map((n) => n.slice(0, -PROCESS_SUFFIX.length)).filter(isRequestId);
    const runningIds = inRunning.filter((n) => !n.endsWith(STAGED_SUFFIX) && !n.endsWith(PROCESS_SUFFIX) && !this.#publishedAtStart.has(n) && this.#checkName('running', n));
    const completeIds = new Set(sfs.listEntries(this.#paths.dirs.complete).filter(isRequestId));
    this.#unclaimedResults = completeIds.size;
    const steps = planRecovery(runningIds, completeIds, this.#o.interrupted);
    // A record whose request left running/ (it finished as its server died): only its task's leftovers may remain.
    for (const id of records) if (!runningIds.includes(id)) steps.push({ kind: 'drop-leftover', id });
    // What a dead server left running is killed first: a request runs again (or is failed) only once it is gone.
    for (const step of steps) if (this.#orphans.settle(step.id, step)) this.#resume(step);
    this.#watchOrphans();
    this.#queuePending();
    this.#rescan();
    this.#log.info('recovered spool', { pending: this.#queue.size, interrupted: runningIds.length, policy: this.#o.interrupted });
  }

  /** Carries out a recovery step for a request whose previous task is gone. */
  #resume(step: RecoveryStep): void {
    if (step.kind === 'drop-leftover') this.#removeIn('running', step.id);
    else if (step.kind === 'requeue') {
      this.#removeLogs(step.id); // the interrupted run's output; the re-run writes its own
      sfs.moveEntry(entryPath(this.#paths, 'running', step.id), entryPath(this.#paths, 'pending', step.id));
    } else {
      const error: SerializedError = { name: 'ServerRestartedError', code: 'ERR_SERVER_RESTARTED', message: 'the server restarted while this request was running; it was not run again (interrupted: fail)' };
      this.#publishResult(step.id, 'running', { id: step.id, ok: false, status: 'restarted', error, finishedAt: this.#o.now() });
      this.#metrics.finished(step.id, 'restarted');
    }
  }

  /** Looks at held orphans again; carries out the steps of those now gone. `all`: stuck ones too. */
  #recheckOrphans(all: boolean): void {
    if (this.#orphans.size === 0) return;
    this.#safely('killing what the previous server left running', () => {
      const released = this.#orphans.recheck(all);
      for (const [, step] of released) this.#resume(step);
      if (released.some(([, step]) => step.kind === 'requeue')) this.#queuePending();
    });
    this.#watchOrphans();
    this.#schedule();
  }

  /** Tells the manager how many slots orphans hold, and looks at just-killed ones often until they are gone. */
  #watchOrphans(): void {
    this.#manager.reserve?.(this.#orphans.size);
    if (this.#orphans.settling) this.#orphanTimer ??= setInterval(() => this.#recheckOrphans(false), ORPHAN_RECHECK_MS);
    else {
      clearInterval(this.#orphanTimer);
      this.#orphanTimer = undefined;
    }
  }

  /** Ids whose staged result a starting server published: their request is finished. */
  readonly #publishedAtStart = new Set<string>();

  /**
   * A result the previous server wrote but did not publish (it stopped between
   * the steps of ResultWriter): publish it and drop its request, which is
   * finished. A torn or foreign one is discarded, and its request runs again.
   */
  #publishStaged(id: string): void {
    const staged = stagedResultPath(this.#paths, id);
    let valid = false;
    try {
      const bytes = sfs.readEntry(staged, MAX_RESULT_BYTES);
      valid = bytes !== undefined && decodeResult(bytes).id === id;
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
    }
    if (!valid) {
      sfs.removeAnyEntry(staged);
      this.#log.warn('discarded a torn result the previous server left; the request runs again', { id });
      return;
    }
    for (const dir of ['requested', 'pending', 'running'] as const) this.#removeIn(dir, id);
    const dest = entryPath(this.#paths, 'complete', id);
    if (sfs.entryExists(dest) && sfs.removeAnyEntry(dest) === 'kept') return;
    sfs.moveEntry(staged, dest);
    this.#publishedAtStart.add(id);
    this.#unclaimedResults++;
    this.#log.info('published a result the previous server had written but not published', { id });
  }

  /** Queues every id in pending/ the server does not know yet (at start, or when pending/ was replaced). */
  #queuePending(): void {
    const now = this.#o.now();
    for (const id of sfs.listEntries(this.#paths.dirs.pending)) {
      if (!this.#checkName('pending', id)) continue;
      if (this.#queue.has(id) || this.#running.has(id) || this.#answering.has(id) || this.#ignored.has(`pending/${id}`)) continue;
      this.#queue.insert(id);
      this.#queuedAt.set(id, now);
      this.#metrics.queued(id);
    }
  }

  /**
   * The safety net: re-reads requested/ and aborting/ for anything the watcher
   * missed. A periodic rescan also judges the watcher: an entry it finds
   * unreported is only a suspect (its event may still be queued), counted as
   * missed at the next periodic rescan unless the watcher reports it meanwhile.
   * A directory that cannot be read is logged once and read again next time.
   * @param judge whether entries not reported yet become suspects
   */
  #rescan(periodic = false, judge = periodic && this.#o.watch): void {
    if (periodic) this.#movedOut = new Set(); // bounded: a rescan re-reads requested/ anyway
    if (periodic && this.#o.watch) this.#countMissed();
    const { requested, aborting, complete } = this.#paths.dirs;
    this.#safely('rescan of requested/', () => {
      const names = sfs.listEntries(requested);
      for (const name of names) {
        if (judge && !this.#seenRequested.has(name) && this.#isNewRequest(name)) this.#unreported.add(join(requested, name));
        this.#seenRequested.add(name);
      }
      if (periodic) this.#forgetWarnedNames('requested', names);
    });
    this.#safely('rescan of aborting/', () => {
      const names = sfs.listEntries(aborting);
      for (const name of names) {
        if (judge && !this.#seenAborts.has(name) && isRequestId(name) && !this.#tombstones.has(name) && !this.#ignored.has(`aborting/${name}`)) this.#unreported.add(join(aborting, name));
        this.#seenAborts.add(name);
      }
      if (periodic) this.#forgetWarnedNames('aborting', names);
    });
    this.#safely('rescan of complete/', () => {
      this.#unclaimedResults = sfs.listEntries(complete).filter(isRequestId).length;
    });
    this.#schedule();
  }

  /** Whether a name in requested/ is a request the server has yet to take in (not one it knows, answers, or ignores). */
  #isNewRequest(name: string): boolean {
    return isRequestId(name) && !this.#queue.has(name) && !this.#answering.has(name) && !this.#ignored.has(`requested/${name}`);
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

  #onWatchEvent(dir: WatchedDir, path: string, name: string | null): void {
    if (name === null) this.#rescan();
    else if (name !== basename(path)) {
      // (An event named after the directory itself is its own removal: the layout check handles that.)
      (dir === 'requested' ? this.#seenRequested : this.#seenAborts).add(name);
      // A late event clears a suspect; the one for the server's own move out of dir does not.
      if (this.#unreported.size > 0 && this.#unreported.has(join(path, name))) {
        this.#safely('watching', () => {
          if (sfs.entryExists(join(path, name))) this.#unreported.delete(join(path, name));
        });
      }
    }
    this.#schedule();
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

/** What a request carries for its task besides its body; undefined when it carries nothing. */
function taskInputOf(envelope: RequestEnvelope): TaskInput | undefined {
  if (!hasTaskInput(envelope)) return undefined;
  const { env, replaceEnv, stdin } = envelope;
  return stripUndefined({ env, replaceEnv, stdin });
}
