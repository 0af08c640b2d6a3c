/**
 * The jobs a Redis server holds, and the steps that move each one: start it
 * unless aborted, reap its outcome, end it at its run timeout, kill it for an
 * abort or a lock in doubt, let it go (result stored, job completed or put
 * back in line) once its task is gone; and the renewal of their locks. The
 * serving loop (serving.ts) takes the jobs and calls these.
 */
import type { Job } from 'bullmq';
import { ProtocolError, serializeError, type SerializedError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { setLongTimeout, type LongTimeout } from '../../long-timer.js';
import type { MetricsStamps, ServerMetrics } from '../../metrics.js';
import { stripUndefined } from '../../options.js';
import { isRequestId } from '../../queue/request-id.js';
import { decodeRequest, type RequestEnvelope } from '../../spool/codec.js';
import { taskInputOf } from '../../task-input.js';
import type { TaskManager, TaskOutcome } from '../../task-manager/types.js';
import type { RunningRecord } from '../keys.js';
import { killMarginMs, type ResolvedRedisServerOptions } from './options.js';
import { interruptedResult, takeLogs, type ResultFields, type ServerStore } from './store.js';

/** A job this server holds: its task runs, or has ended and its result is being stored. */
export interface Held {
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

/** Tries at letting a job go (a Redis blip), a second apart, while its lock is still renewed. */
const LET_GO_ATTEMPTS = 30;

export interface HeldJobsDeps {
  o: ResolvedRedisServerOptions;
  manager: TaskManager;
  metrics: ServerMetrics;
  log: Logger;
  store: ServerStore;
  serverId: string;
  host: string;
  /** Called when room may have been freed (a task ended, a job was let go). */
  wake: () => void;
}

export class HeldJobs {
  readonly #o: ResolvedRedisServerOptions;
  readonly #manager: TaskManager;
  readonly #metrics: ServerMetrics;
  readonly #log: Logger;
  readonly #store: ServerStore;
  readonly #serverId: string;
  readonly #host: string;
  readonly #wake: () => void;
  readonly #held = new Map<string, Held>();
  /** Jobs being let go (results stored, jobs completed): waited for before the server exits. */
  readonly #lettingGo = new Set<Promise<void>>();

  constructor(deps: HeldJobsDeps) {
    this.#o = deps.o;
    this.#manager = deps.manager;
    this.#metrics = deps.metrics;
    this.#log = deps.log;
    this.#store = deps.store;
    this.#serverId = deps.serverId;
    this.#host = deps.host;
    this.#wake = deps.wake;
  }

  /** Tasks running here now (not those whose job is being let go). */
  get runningCount(): number {
    let n = 0;
    for (const held of this.#held.values()) if (held.phase === 'running') n++;
    return n;
  }

  async start(job: Job, token: string): Promise<void> {
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
      this.letGo(id, held, interruptedResult(id, job.deferredFailure));
      return;
    }
    let envelope: RequestEnvelope;
    try {
      const encoded = (job.data as { e?: unknown } | undefined)?.e;
      if (typeof encoded !== 'string') throw new ProtocolError('the job holds no request envelope');
      envelope = decodeRequest(Buffer.from(encoded, 'base64'));
    } catch (err) {
      this.#metrics.finished('rejected');
      this.letGo(id, held, { id, ok: false, status: 'rejected', error: serializeError(err), queuedAt, finishedAt: Date.now() });
      return;
    }
    // Held from now on (its lock renewed; an abort message marks it), then recorded as running unless aborted: one script.
    held.phase = 'starting';
    this.#held.set(id, held);
    const record: RunningRecord = { server: this.#serverId, host: this.#host, startedAt: Date.now() };
    const mayStart = await this.#store.start(id, record);
    if (this.#held.get(id) !== held) return; // its lock was lost meanwhile: not ours to start
    if (!mayStart || held.abortPending === true) {
      // Aborted before it started: it never runs, and no result is stored.
      this.#log.debug('aborted before it started', { id });
      this.letGo(id, held, undefined);
      void this.#store.tombstone(id).catch(() => {});
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
      this.letGo(id, held, { id, ok: false, status: 'error', error: serializeError(err), queuedAt, startedAt: held.startedAt, finishedAt: Date.now() });
      return;
    }
    this.#log.debug('started', { id, pid });
    // The pid, for `wq status` elsewhere: not waited for (a failure only leaves it out).
    if (pid !== undefined) this.#store.recordPid(id, { ...record, pid });
    if (envelope.runTimeoutMs !== undefined) {
      held.runTimeoutMs = envelope.runTimeoutMs;
      held.deadline = setLongTimeout(() => this.#runTimedOut(id), envelope.runTimeoutMs); // past 2^31 ms a plain timer fires at once
    }
  }

  /** Publishes the outcomes of tasks that finished. */
  onWake(): void {
    for (const [id, outcome] of this.#manager.reap()) this.#finished(id, outcome);
    this.#wake();
  }

  #finished(id: string, outcome: TaskOutcome): void {
    const held = this.endRun(id);
    if (held === undefined) return; // terminated: its outcome is discarded
    const result: ResultFields = { id, ok: outcome.ok, status: outcome.ok ? 'normal' : 'error', queuedAt: held.queuedAt, startedAt: held.startedAt, finishedAt: Date.now() };
    if (outcome.ok) result.value = outcome.value;
    else result.error = outcome.error;
    if (outcome.logs === true) result.logs = true;
    this.#metrics.finished(outcome.ok ? 'normal' : 'error', held.stamps);
    this.letGo(id, held, result);
    this.#log.debug('completed', { id, ok: outcome.ok });
  }

  #runTimedOut(id: string): void {
    const held = this.#held.get(id);
    if (held?.phase !== 'running' || held.runTimeoutMs === undefined) return;
    if (this.#manager.hasEnded?.(id) === true) return; // its own outcome follows
    this.#manager.terminateTask(id);
    this.endRun(id);
    this.#metrics.killed('run_timeout');
    this.#metrics.finished('timed_out', held.stamps);
    const error: SerializedError = { name: 'RunTimeoutError', code: 'ERR_RUN_TIMEOUT', message: `the task ran longer than its run timeout of ${held.runTimeoutMs / 1000} s and was terminated` };
    this.letGo(id, held, { id, ok: false, status: 'timed_out', runTimeoutMs: held.runTimeoutMs, error, queuedAt: held.queuedAt, startedAt: held.startedAt, finishedAt: Date.now() }, true);
    this.#log.info('run timeout: terminated', { id, runTimeoutSeconds: held.runTimeoutMs / 1000 });
  }

  /** The task is over, or being killed: the job is now being let go. Undefined if no task of it runs here. */
  endRun(id: string): Held | undefined {
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
  letGo(id: string, held: Held, result: ResultFields | undefined | 'again', killed = false): void {
    held.phase = 'finishing';
    this.#held.set(id, held);
    const done = (async () => {
      if (killed) await this.#gone(id);
      const outputs = typeof result === 'object' && result.logs === true ? takeLogs(this.#o.logDir, id, result.value) : undefined;
      for (let attempt = 1; this.#held.get(id) === held; attempt++) {
        try {
          if (typeof result === 'object') {
            if (!(await this.#store.storeResult(id, result, outputs))) this.#log.debug('result not stored: the request was aborted', { id });
          } else await this.#store.forgetRunning(id);
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
      this.#wake();
    })();
    this.#lettingGo.add(done);
    void done.finally(() => this.#lettingGo.delete(done));
  }

  /** Resolves once a terminated task is gone (TaskManager.isGone), or after its kill grace and a second more. */
  async #gone(id: string): Promise<void> {
    const deadline = Date.now() + this.#o.killGraceMs + 1000;
    while (this.#manager.isGone?.(id) === false && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  }

  /** For an abort: kills a task this server runs (no result is stored), and lets its job go once the task is gone. */
  abortIfHeld(id: string): void {
    const held = this.#held.get(id);
    if (held?.phase === 'starting') held.abortPending = true; // #start sees it before it starts the task
    if (held?.phase !== 'running') return;
    this.#manager.terminateTask(id);
    this.endRun(id);
    this.#log.info('aborted while running: terminated', { id });
    this.#metrics.killed('abort');
    this.#metrics.aborted('aborted', held.stamps);
    this.letGo(id, held, undefined, true);
    void this.#store.tombstone(id).catch(() => {}); // acted on: a tombstone now
  }

  /** The safety net for a lost abort message: are any of the running ids aborted? */
  async checkAbortMarkers(): Promise<void> {
    const running = [...this.#held].filter(([, held]) => held.phase === 'running').map(([id]) => id);
    for (const id of await this.#store.abortedAmong(running)) this.abortIfHeld(id);
  }


  /**
   * Renews the lock of each job held. A task whose lock cannot be renewed
   * (someone else's now) or not confirmed in time (Redis out of reach) is
   * killed while there is still time for its kill grace before the lock
   * expires; its job is then not let go by this server (another one takes it).
   */
  renewLocks(): void {
    const now = Date.now();
    const killBy = killMarginMs(this.#o);
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
      this.endRun(id);
      this.#log.error(`killed a task: ${why}; it runs again elsewhere, or fails with --fail-interrupted`, { id });
    } else {
      this.#log.error(`gave up a job ${held.phase === 'starting' ? 'before its task started' : 'whose task had ended'}: ${why}; it runs again elsewhere, or fails with --fail-interrupted`, { id });
    }
    this.#held.delete(id); // not let go by this server
    this.#wake();
  }

  /**
   * On stop, after the grace period: kills what still runs and, once the
   * manager has seen every task gone (close() waits for them), puts those
   * jobs back in line, or fails them under `interrupted: 'fail'`; then waits
   * until every job is let go.
   */
  async drain(): Promise<void> {
    const left = [...this.#held].filter(([, held]) => held.phase === 'running');
    for (const [id] of left) {
      this.#manager.terminateTask(id);
      this.endRun(id);
      this.#metrics.killed('shutdown');
    }
    if (left.length > 0) await this.#manager.close();
    const fail = this.#o.interrupted === 'fail';
    for (const [id, held] of left) {
      if (fail) this.#metrics.finished('restarted', held.stamps);
      this.letGo(id, held, fail ? interruptedResult(id, 'interrupted: fail') : 'again');
      this.#log.warn(fail ? 'stopped with the server; failed (interrupted: fail)' : 'stopped with the server; back in line for a server of the queue', { id });
    }
    while (this.#lettingGo.size > 0) await Promise.all([...this.#lettingGo]);
  }

  #warn(what: string, err: unknown, id?: string): void {
    this.#log.warn(`redis: ${what} failed; retrying`, stripUndefined({ id, error: err instanceof Error ? err.message : String(err) }));
  }
}
