/**
 * One serving of a spool: what the server holds from taking the lock to
 * releasing it (its books, inbox, result writer, task manager, guard), and the
 * effects every step shares (answering a request, removing its entries).
 * Invariants: a result goes to the writer only through publishResult(), which
 * marks its request `answering` first; nothing is removed by following a name
 * (removeIn: a planted non-empty directory is left in place and remembered).
 */
import { ForeignRequestError, ProtocolError, serializeError, type SerializedError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { ServerMetrics } from '../../metrics.js';
import type { TaskManager, TaskOutcome } from '../../task-manager/types.js';
import { encodeResult, type ResultEnvelope, type ResultStatus } from '../codec.js';
import type { ServerIdentity } from '../access.js';
import { entryPath, removeLogs, type SpoolDir, type SpoolPaths } from '../layout.js';
import type { LockOwner } from '../lock.js';
import * as sfs from '../fs.js';
import { RequestBook, type RequestEntry } from './book.js';
import { FaultLog } from './fault-log.js';
import { Inbox } from './inbox.js';
import { LayoutGuard } from './layout-guard.js';
import { LinkedRequests } from './linked-requests.js';
import type { ResolvedOptions } from './options.js';
import { Orphans } from './orphans.js';
import { diskFullResult } from './result-on-full-disk.js';
import { ResultWriter, type LastState } from './result-writer.js';
import type { RecoveryStep } from '../../protocol.js';

/** server.state's hold when nothing waits or the line moves: the same as no file at all. */
export const NOTHING_HELD = JSON.stringify({ reason: 'none' });

/** A result before the codec adds its version and type. */
export type ResultFields = Omit<ResultEnvelope, 'v' | 'type'>;

/** What the serving loop (lifecycle.ts) does for the parts: ticks, fatal stops, adopted directories. */
export interface ServingHooks {
  /** Asks for a tick soon (never runs one now). */
  schedule(): void;
  /** Asks for a tick in `ms` milliseconds (at the latest: an earlier request for one stands). */
  scheduleIn(ms: number): void;
  /** The spool is gone or unsafe, or the lock lost: stop. Called once. */
  stop(err: Error): void;
  /** LayoutGuard adopted a recreated or replaced state directory. */
  adopted(dir: SpoolDir): void;
}

export class Serving {
  readonly o: ResolvedOptions;
  readonly log: Logger;
  readonly paths: SpoolPaths;
  readonly manager: TaskManager;
  /** Who holds the lock (this server), as server.state names it. */
  readonly owner: LockOwner;
  readonly book = new RequestBook();
  /** Faults of steps retried later (tick, rescan, lock check …), each logged once per episode. */
  readonly faults: FaultLog;
  readonly metrics: ServerMetrics;
  readonly inbox: Inbox;
  readonly writer: ResultWriter;
  /** Checks, before each tick, that the spool is still the one the server started on. */
  readonly guard: LayoutGuard;
  /** Tasks' process records, and what a dead server left running. */
  readonly orphans: Orphans<RecoveryStep>;
  /** Requests seen with a second name, for the owner rule. */
  readonly linked: LinkedRequests;
  readonly hooks: ServingHooks;
  /** No new task starts: the server is stopping. */
  draining = false;
  /** Why the server must stop (the spool is gone, replaced, or unsafe; the lock lost): no tick touches the spool once set. */
  fatal: Error | undefined;
  /** What server.state says now (JSON of its hold; none: no file is the same); undefined after a write failed. */
  publishedHold: string | undefined = NOTHING_HELD;
  ticks = 0;
  nextHeartbeat = 0;
  nextHousekeeping = 0;
  /** Looks at just-killed orphans until they are gone (recovery.ts). */
  orphanTimer: NodeJS.Timeout | undefined;

  constructor(o: ResolvedOptions, paths: SpoolPaths, manager: TaskManager, owner: LockOwner, who: ServerIdentity, hooks: ServingHooks) {
    this.o = o;
    this.log = o.logger;
    this.paths = paths;
    this.manager = manager;
    this.owner = owner;
    this.hooks = hooks;
    this.faults = new FaultLog(this.log);
    const book = this.book;
    const snapshot = () => ({ pending: book.queued, running: book.running, capacityUsage: manager.size, capacityLimit: manager.maxTasks, unclaimedResults: book.unclaimedResults });
    // A test that fakes the wall clock fakes metric durations too; otherwise they use a monotonic clock.
    this.metrics = new ServerMetrics(o.meter, snapshot, o.now === Date.now ? undefined : o.now);
    this.inbox = new Inbox({ paths, book, log: this.log, metrics: this.metrics, watch: o.watch, safely: (step, run) => this.safely(step, run), schedule: hooks.schedule });
    this.linked = new LinkedRequests(paths.dirs.tmp);
    this.orphans = new Orphans(paths, this.log);
    this.guard = new LayoutGuard(paths, { log: this.log, faults: this.faults, stop: (err) => this.stopFatally(err), adopted: hooks.adopted }, who);
    this.writer = new ResultWriter(
      paths,
      o.durable,
      this.log,
      (id, published) => this.#published(id, published),
      (id, from) => this.leaveInPlace(from, id),
      (id, bytes) => {
        this.removeLogs(id);
        return diskFullResult(bytes);
      },
    );
  }

  /** Whether a tick may touch the spool now (see LayoutGuard.check). */
  guardLayout(periodic = false): boolean {
    return this.fatal === undefined && this.guard.check(periodic);
  }

  stopFatally(err: Error): void {
    if (this.fatal !== undefined) return;
    this.fatal = err;
    this.hooks.stop(err);
  }

  /** Runs a step outside a tick (timers, watcher callbacks): a fault is logged once and retried later, never thrown into the event loop. */
  safely(step: string, run: () => void): void {
    try {
      run();
      this.faults.succeeded(step);
    } catch (err) {
      this.faults.failed(step, err);
    }
  }

  /**
   * Whether one more task may start: the manager has room, counting the tasks
   * a dead server left that are still alive; and none of those was killed a
   * moment ago (it is about to go, and its request keeps its place in line).
   */
  hasRoom(): boolean {
    if (this.orphans.settling) return false;
    // (A manager with reserve() already counts them; this covers one without.)
    return this.manager.hasCapacity() && (this.orphans.size === 0 || this.book.running + this.orphans.size < this.manager.maxTasks);
  }

  /** Encodes a result and hands it to the writer (published now, at the next group commit, or at a retry). */
  publishResult(id: string, from: LastState, result: ResultFields): void {
    let bytes: Buffer;
    try {
      bytes = encodeResult(result);
    } catch (err) {
      bytes = encodeResult({ ...withoutValue(result), ok: false, status: 'error', error: serializeError(new ProtocolError(`the task's result cannot be stored: ${(err as Error).message}`)) });
    }
    this.book.answering(id);
    this.writer.write(id, from, bytes);
  }

  /** Answers a request that cannot be read or decoded, or may not run here, with a `rejected` result, and logs it. */
  rejectRequest(id: string, state: 'pending' | 'requested', err: Error, queuedAt: number | undefined): void {
    this.log.warn(err instanceof ForeignRequestError ? 'refused a request filed by a user this server does not run requests for' : 'rejected unreadable request', { id, error: err.message });
    const result: ResultFields = { id, ok: false, status: 'rejected', error: serializeError(err), finishedAt: this.o.now() };
    if (queuedAt !== undefined) result.queuedAt = queuedAt;
    this.publishResult(id, state, result);
    this.metrics.finished('rejected'); // never ran: no run time
  }

  /** Answers a request whose task a dead server left running, under `interrupted: 'fail'`. */
  failInterrupted(id: string): void {
    const error: SerializedError = { name: 'ServerRestartedError', code: 'ERR_SERVER_RESTARTED', message: 'the server restarted while this request was running; it was not run again (interrupted: fail)' };
    this.publishResult(id, 'running', { id, ok: false, status: 'restarted', error, finishedAt: this.o.now() });
    this.metrics.finished('restarted'); // ran under another server: no run time here
  }

  /**
   * A running request's task is over and its result follows: drops the task's
   * process record. Its entry stays (publishResult() moves it on, timer and all); undefined if it is not running.
   */
  endRun(id: string): RequestEntry | undefined {
    const entry = this.book.get(id);
    if (entry?.stage !== 'running') return undefined;
    // A record left behind (EACCES) is harmless: the next server finds its group gone, or kills what is left of it.
    this.safely('removing a process record', () => this.orphans.forget(id));
    return entry;
  }

  /** Drops a running request from the books (and its deadline timer, and its process record): aborted, or left at shutdown. */
  forgetRunning(id: string): RequestEntry | undefined {
    if (this.book.get(id)?.stage !== 'running') return undefined;
    const entry = this.book.forget(id);
    // A record left behind (EACCES) is harmless: the next server finds its group gone, or kills what is left of it.
    this.safely('removing a process record', () => this.orphans.forget(id));
    return entry;
  }

  /**
   * Removes a request's output logs; a failure (EACCES on logs/) is logged once
   * and left to housekeeping, which removes orphaned logs after an hour.
   */
  removeLogs(id: string): void {
    try {
      removeLogs(this.paths, id);
      this.faults.succeeded('removing logs');
    } catch (err) {
      this.faults.failed('removing logs', err, { id });
    }
  }

  /** Removes `dir/id` whatever it is, without following it; a non-empty directory is left in place (logged once). */
  removeIn(dir: SpoolDir, id: string): sfs.Removal {
    const removal = sfs.removeAnyEntry(entryPath(this.paths, dir, id));
    if (removal === 'kept') this.leaveInPlace(dir, id);
    return removal;
  }

  /** A planted non-empty directory under an id: left for the operator, never handled again by this server; logged once. */
  leaveInPlace(dir: string, id: string): void {
    if (this.book.plant(dir, id)) this.log.warn('left a non-empty directory in place for the operator; it is ignored from now on', { dir, id });
  }

  /** The writer let go of a result: published, or (aborted, or a planted directory in the way) not. */
  #published(id: string, published: boolean): void {
    if (published) this.book.unclaimedResults++;
    if (this.book.get(id)?.stage !== 'answering') return;
    if (this.book.forget(id)?.abortAfterPublish === true) {
      // The abort won: the result was never published. Like an abort of a complete request, it is not counted again.
      this.removeLogs(id);
      this.removeIn('aborting', id);
      this.log.debug('abort removed a result before it was published', { id });
    }
  }
}

/** The result of a task that ran: its outcome, and when it was queued, started (its entry's times) and finished. */
export function outcomeToResult(id: string, outcome: TaskOutcome, times: Pick<RequestEntry, 'startedAt' | 'queuedAt'>, finishedAt: number): ResultFields {
  const status: ResultStatus = outcome.ok ? 'normal' : 'error';
  // (Every running entry has startedAt.)
  const result: ResultFields = { id, ok: outcome.ok, status, startedAt: times.startedAt ?? finishedAt, finishedAt };
  if (times.queuedAt !== undefined) result.queuedAt = times.queuedAt;
  if (outcome.ok) result.value = outcome.value;
  else result.error = outcome.error;
  if (outcome.logs === true) result.logs = true;
  return result;
}

function withoutValue(result: ResultFields): ResultFields {
  const { value: _value, ...rest } = result;
  return rest;
}
