/**
 * The serving loop's life: take the lock, recover, watch, tick whenever
 * something happens, and the periodic safety net; drain and release at the end.
 * Invariants: only the lock's holder touches the spool (a lost lock, or a spool
 * gone or unsafe, stops the server: no tick runs after that); nothing ticks,
 * watches or writes once serving ended; at a stop, running tasks get the grace
 * period and are then terminated, left in running/ to run again at the next start.
 */
import type { TaskManager, TaskManagerEvent } from '../../task-manager/types.js';
import { openServedSpool, serverIdentity, type ServerIdentity } from '../access.js';
import type { SpoolDir, SpoolPaths } from '../layout.js';
import { acquireLock, type HeldLock } from '../lock.js';
import { removeServerState } from '../server-state.js';
import { asSpoolError } from '../spool-fault.js';
import { DirectoryWatchers } from './directory-watchers.js';
import { housekeep, housekeepingDue } from './housekeeping.js';
import type { ResolvedOptions } from './options.js';
import { queuePending, recheckOrphans, recover, stopWatchingOrphans } from './recovery.js';
import { Serving } from './serving.js';
import { tick } from './tick.js';

/** At shutdown, how long to wait for results still being committed (durable) or retried (a full disk). */
const COMMIT_WAIT_AT_STOP_MS = 10_000;

/**
 * Serves the spool until `signal` aborts (or a fatal fault): see WorkQueueServer.processRequests.
 * @param attach sees the serving once it exists (the server's counts read its books)
 */
export async function serveSpool(o: ResolvedOptions, manager: TaskManager, signal: AbortSignal | undefined, attach: (s: Serving) => void): Promise<void> {
  const who = serverIdentity();
  let paths: SpoolPaths;
  try {
    paths = openServedSpool(o.spool, who); // refuses symlinked state directories, and directories others could swap for one
  } catch (err) {
    throw asSpoolError(o.spool, err);
  }
  let lock: HeldLock;
  try {
    lock = acquireLock(paths, { maxTasks: manager.maxTasks });
  } catch (err) {
    throw asSpoolError(o.spool, err); // EROFS, EACCES on server.lock
  }
  let loop: ServingLoop | undefined;
  try {
    loop = new ServingLoop(o, paths, manager, lock, who);
    attach(loop.serving);
    await loop.run(signal);
  } finally {
    loop?.end();
    lock.release();
  }
}

class ServingLoop {
  readonly serving: Serving;
  readonly #lock: HeldLock;
  /** Watches of requested/, aborting/ and the spool directory (none when `watch` is off). */
  readonly #watchers: DirectoryWatchers | undefined;
  #tickScheduled = false;
  /** Serving has ended: nothing may tick, watch or write any more (a tick queued before the end would otherwise act on a spool the server no longer serves). */
  #ended = false;
  #stopping = false;
  #rescanTimer: NodeJS.Timeout | undefined;
  /** A tick asked for later (scheduleIn): one at a time, the earliest wins. */
  #laterTimer: NodeJS.Timeout | undefined;
  #laterAt = Infinity;
  /** Settles run(): undefined for a stop at the signal, else the fatal error. */
  #finish: (err?: Error) => void = () => {};

  constructor(o: ResolvedOptions, paths: SpoolPaths, manager: TaskManager, lock: HeldLock, who: ServerIdentity) {
    this.#lock = lock;
    const s = new Serving(o, paths, manager, lock.owner, who, {
      schedule: () => this.#schedule(),
      scheduleIn: (ms) => this.#scheduleIn(ms),
      stop: (err) => this.#stop(err),
      adopted: (dir) => this.#adoptDirectory(dir),
    });
    this.serving = s;
    if (o.watch) {
      this.#watchers = new DirectoryWatchers((target) => (target === 'spool' ? paths.root : paths.dirs[target]), {
        onName: (target, path, name) => {
          if (target !== 'spool') return s.inbox.onWatchEvent(target, path, name);
          s.guard.changed(); // something in the spool directory changed: the next tick checks the layout
          this.#schedule();
        },
        onBroken: (target, path, err) => {
          if (target !== 'spool') return s.log.error('watcher failed; relying on rescans', { dir: path, error: err.message });
          s.guard.watched(false);
          s.log.error('watch of the spool directory failed; checking its layout at every tick until it is re-armed', { dir: path, error: err.message });
        },
        onArmed: (target, err) => {
          if (target === 'spool') s.guard.watched(err === undefined);
          if (err === undefined) s.faults.succeeded(`watching ${target}/`);
          else s.faults.failed(`watching ${target}/`, err, { dir: target });
        },
      });
    }
  }

  /** Recovers, then ticks at every event until a stop; resolves at a signal's stop, rejects at a fatal one. */
  async run(signal: AbortSignal | undefined): Promise<void> {
    const s = this.serving;
    const done = new Promise<void>((resolve, reject) => {
      this.#finish = (err) => (err === undefined ? resolve() : reject(err));
    });
    s.log.info('server started', { spool: s.paths.root, pid: process.pid, maxTasks: s.manager.maxTasks });
    recover(s);
    s.manager.setWakeHandler(() => this.#schedule());
    s.manager.setEventHandler?.((event) => this.#onManagerEvent(event));
    this.#watchers?.watchAll();
    this.#rescanTimer = setInterval(() => this.#periodic(), s.o.rescanIntervalMs);
    if (this.#lockStillHeld()) tick(s); // the first tick starts tasks: not if the lock file was replaced since it was taken
    const onAbort = (): void => this.#stop();
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Ends serving: no more ticks, watches or timers; server.state goes while the lock is still ours. */
  end(): void {
    const s = this.serving;
    this.#ended = true;
    this.#watchers?.close();
    stopWatchingOrphans(s);
    clearInterval(this.#rescanTimer);
    clearTimeout(this.#laterTimer);
    s.metrics.close();
    // Only while the lock is still ours: its holder alone writes server.state.
    if (s.fatal === undefined) s.safely('removing server.state', () => removeServerState(s.paths));
  }

  /**
   * Stops: at the signal (no error), or because the spool is gone or unsafe, or
   * the lock lost; then as at a signal (tasks are terminated and run again at the
   * next start), and run() rejects, so a supervisor restarts the server on whatever is there.
   */
  #stop(fatal?: Error): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (fatal !== undefined) this.serving.log.error(`stopping: ${fatal.message}`);
    void this.#drain().then(
      () => this.#finish(fatal),
      (err: Error) => this.#finish(fatal ?? err),
    );
  }

  /** What a task manager reports besides outcomes: counted and logged. */
  #onManagerEvent(event: TaskManagerEvent): void {
    const { log, metrics } = this.serving;
    if (event.type === 'worker-output') {
      // A handler's own output, one line at a time, with the request it was running: stderr as a warning.
      const fields = { id: event.taskId, pid: event.pid, line: event.line };
      if (event.stream === 'stderr') log.warn('handler stderr', fields);
      else log.info('handler stdout', fields);
      return;
    }
    if (event.type === 'worker-crashed') {
      metrics.workerCrashed();
      log.warn('worker process crashed', { pid: event.pid, id: event.taskId, exitCode: event.exitCode, signal: event.signal });
    }
  }

  /** The periodic safety net: checks the spool and the lock, re-arms lost watchers, rescans, housekeeps. */
  #periodic(): void {
    const s = this.serving;
    let intact = s.guardLayout(true);
    if (s.fatal !== undefined) return;
    if (!this.#lockStillHeld()) return;
    // Only with the lock still in place: a spool being removed (rm -rf) loses it, or itself, within the interval.
    if (!intact && s.guard.recreateMissing()) intact = s.guardLayout();
    if (intact) {
      this.#watchers?.rewatch();
      recheckOrphans(s, true);
      s.inbox.rescan(true);
      if (housekeepingDue(s)) housekeep(s);
    }
    this.#schedule(); // a tick even when the rescan failed: what an earlier tick could not do is retried
  }

  /** Whether the lock still names this server; stops the server if not. A lock that cannot be read now (EACCES, EMFILE) is not lost. */
  #lockStillHeld(): boolean {
    const s = this.serving;
    try {
      const held = this.#lock.stillHeld();
      s.faults.succeeded('lock check');
      if (held) return true;
    } catch (err) {
      s.faults.failed('lock check', err);
      return true;
    }
    s.stopFatally(new Error(`lost the lock of spool ${s.paths.root}: server.lock was removed or replaced; stopping`));
    return false;
  }

  /** Stops starting work, lets tasks finish within the grace period, then terminates the rest. */
  async #drain(): Promise<void> {
    const s = this.serving;
    s.draining = true;
    s.log.info('stopping: no new tasks will start', { running: s.book.running, pending: s.book.queued });
    // A spool that is gone or unsafe gets no grace: nothing of it may be touched any more.
    const deadline = s.o.now() + (s.fatal === undefined ? s.o.shutdownGraceMs : 0);
    while (s.book.running > 0 && s.o.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - s.o.now()))));
      tick(s);
    }
    tick(s); // reap anything that finished at the last moment
    for (const id of s.book.runningIds()) {
      // Left in running/: the next server re-runs it (or fails it with `interrupted: 'fail'`).
      s.manager.terminateTask(id);
      s.forgetRunning(id);
      s.metrics.killed('shutdown');
      if (s.fatal === undefined) s.removeLogs(id); // the next run writes its own
      s.log.info('terminated at shutdown; will run again at next start', { id });
    }
    await s.manager.close();
    // Durable results still being committed: give them a moment, then leave them to a re-run.
    let timer: NodeJS.Timeout | undefined;
    const committed = await Promise.race([
      s.writer.idle().then(() => true),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), COMMIT_WAIT_AT_STOP_MS))),
    ]);
    clearTimeout(timer);
    if (!committed) s.log.warn('stopped before every result was written; those requests run again at the next start');
    s.writer.close();
    s.log.info('server stopped', { pending: s.book.queued });
  }

  /** Serves a recreated or replaced directory (LayoutGuard adopted it): its entries, its watcher. */
  #adoptDirectory(dir: SpoolDir): void {
    const s = this.serving;
    if (dir === 'pending') s.safely('adopting pending/', () => queuePending(s));
    if (dir === 'requested' || dir === 'aborting') {
      this.#watchers?.invalidate(dir);
      this.#watchers?.rewatch();
      s.inbox.rescan(false, s.o.watch); // what it holds now, the old watcher never reported
    }
  }

  #scheduleIn(ms: number): void {
    const at = performance.now() + ms;
    if (this.#ended || at >= this.#laterAt) return;
    clearTimeout(this.#laterTimer);
    this.#laterAt = at;
    this.#laterTimer = setTimeout(() => {
      this.#laterTimer = undefined;
      this.#laterAt = Infinity;
      this.#schedule();
    }, ms);
  }

  #schedule(): void {
    if (this.#tickScheduled || this.#ended) return;
    this.#tickScheduled = true;
    setImmediate(() => {
      this.#tickScheduled = false;
      if (!this.#ended) tick(this.serving);
    });
  }
}
