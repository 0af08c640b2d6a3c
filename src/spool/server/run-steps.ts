/**
 * The tick's steps that move requests through their run: reap finished tasks,
 * end those past their run timeout, start pending ones in FIFO order, park the
 * rest in pending/, and tell clients what holds the line (server.state).
 * Invariants: a request starts only after every earlier one did, within the
 * manager's capacity and while results can be written; a fault before a start
 * leaves the request first in line; a started task is recorded in running/ before it counts.
 */
import { ForeignRequestError, ProtocolError, serializeError, WorkQueueError, type SerializedError } from '../../errors.js';
import { setLongTimeout } from '../../long-timer.js';
import { whatHoldsTheLine } from '../../protocol.js';
import { taskInputOf } from '../../task-input.js';
import { decodeRequest, MAX_REQUEST_BYTES, type RequestEnvelope } from '../codec.js';
import { entryPath, logPath } from '../layout.js';
import { mayRunRequest } from '../permissions.js';
import { writeServerState } from '../server-state.js';
import * as sfs from '../fs.js';
import type { RequestEntry } from './book.js';
import { NOTHING_HELD, outcomeToResult, type Serving } from './serving.js';

/**
 * How soon a request whose file still has its temp name (a client's publish in
 * progress: link(2), then unlink of the temp name, microseconds apart) is
 * looked at again: at once (1 ms), then less often the longer it has waited (a
 * client stopped between the two calls), at most every 100 ms, until
 * LINK_SETTLE_MS rejects it. Without it, it waited for the next rescan (2 s by default).
 */
export function publishRecheckMs(waitedMs: number): number {
  return Math.min(100, Math.max(1, Math.floor(waitedMs / 4)));
}

/** Publishes the results of tasks that finished. Returns how many. */
export function reapCompleted(s: Serving): number {
  let n = 0;
  for (const [id, outcome] of s.manager.reap()) {
    const entry = s.endRun(id);
    if (entry === undefined) continue; // terminated: its outcome is discarded
    s.publishResult(id, 'running', outcomeToResult(id, outcome, entry, s.o.now()));
    s.metrics.finished(outcome.ok ? 'normal' : 'error', entry);
    s.log.debug('completed', { id, ok: outcome.ok });
    n++;
  }
  return n;
}

/** Terminates tasks past their run timeout and answers them with a `timed_out` result. Returns how many. */
export function expireRunTimeouts(s: Serving): number {
  let n = 0;
  for (const id of s.book.takeExpired()) {
    const entry = s.book.get(id);
    const runTimeoutMs = entry?.stage === 'running' ? entry.runTimeoutMs : undefined;
    if (entry === undefined || runTimeoutMs === undefined) continue; // finished or aborted meanwhile
    if (s.manager.hasEnded?.(id) === true) {
      // It ended before the server could act on its deadline (its output still draining, or the server was stopped): its own outcome follows.
      s.log.debug('run timeout passed after the task had ended; its own result stands', { id });
      continue;
    }
    s.manager.terminateTask(id);
    s.endRun(id);
    s.metrics.killed('run_timeout');
    const error: SerializedError = {
      name: 'RunTimeoutError',
      code: 'ERR_RUN_TIMEOUT',
      message: `the task ran longer than its run timeout of ${runTimeoutMs / 1000} s and was terminated`,
    };
    const logs = sfs.entryExists(logPath(s.paths, id, 'stdout'));
    const result = outcomeToResult(id, { ok: false, error, logs }, entry, s.o.now());
    s.publishResult(id, 'running', { ...result, status: 'timed_out', runTimeoutMs });
    s.metrics.finished('timed_out', entry);
    s.log.info('run timeout: terminated', { id, runTimeoutSeconds: runTimeoutMs / 1000 });
    n++;
  }
  return n;
}

/** Starts requests in FIFO order while the manager has room and results can be written. Returns how many started. */
export function startPending(s: Serving): number {
  let n = 0;
  while (s.book.queued > 0 && s.hasRoom() && !s.writer.blocked) {
    const [id, entry] = s.book.next()!;
    let started: boolean | 'wait';
    try {
      started = startOne(s, id, entry);
    } catch (err) {
      // A fault (EMFILE, EACCES …), not a broken request: back in line, where it was, for the next tick.
      s.book.requeue(id);
      throw err;
    }
    if (started === 'wait') {
      s.book.requeue(id); // first in line still: nothing behind it starts before it
      // Nothing the server watches changes when the client removes its temp name (tmp/ is not watched): look again soon.
      s.hooks.scheduleIn(publishRecheckMs(s.linked.waitedMs(id, s.o.now())));
      break;
    }
    if (started) n++;
  }
  return n;
}

/**
 * Reads a request taken from the line, moves it to running/ and starts it;
 * true when it started. A broken request gets a `rejected` result; a fault is
 * thrown before anything changed; 'wait' when its owner cannot be trusted yet (see checkOwner).
 */
function startOne(s: Serving, id: string, entry: RequestEntry): boolean | 'wait' {
  const from = entry.stage as 'requested' | 'pending';
  if (from === 'requested') s.inbox.movedOut(id);
  const file = entryPath(s.paths, from, id);
  let envelope: RequestEnvelope;
  try {
    const read = sfs.readOwnedEntry(file, MAX_REQUEST_BYTES);
    if (read === undefined) {
      s.log.warn('pending request vanished before it started', { id });
      vanished(s, id);
      return false;
    }
    envelope = decodeRequest(read.bytes);
    if (checkOwner(s, id, file, read) === 'wait') return 'wait';
  } catch (err) {
    if (!(err instanceof ProtocolError) && !(err instanceof ForeignRequestError)) throw err;
    s.rejectRequest(id, from, err, entry.queuedAt);
    return false;
  }
  if (!sfs.moveEntry(file, entryPath(s.paths, 'running', id))) {
    vanished(s, id);
    return false;
  }
  const startedAt = s.o.now();
  s.book.started(entry, startedAt, s.metrics.started(entry));
  const { runTimeoutMs } = envelope;
  if (runTimeoutMs !== undefined) {
    entry.runTimeoutMs = runTimeoutMs;
    entry.deadline = setLongTimeout(() => {
      s.book.expire(id);
      s.hooks.schedule();
    }, runTimeoutMs);
  }
  s.log.debug('started', { id });
  let started = false;
  try {
    const task = s.manager.startTask(id, envelope.body, taskInputOf(envelope));
    started = true;
    // Before the task counts as started: a server killed from now on leaves a record for the next one.
    if (task) recordProcess(s, id, task.pid, task.startTicks);
  } catch (err) {
    if (started) s.manager.terminateTask(id);
    s.endRun(id);
    s.publishResult(id, 'running', outcomeToResult(id, { ok: false, error: serializeError(err) }, entry, s.o.now()));
    s.metrics.finished('error', entry);
  }
  return true;
}

/** A request taken from the line whose file is gone (removed by hand): nothing to run. */
function vanished(s: Serving, id: string): void {
  s.book.forget(id);
}

/**
 * Throws ForeignRequestError unless a request whose file `read.uid` owns may
 * run here (option `requestOwners`); a file with a second name is not
 * trusted for its owner (see linked-requests.ts): 'wait' for a publish.
 */
function checkOwner(s: Serving, id: string, path: string, read: { uid: number; nlink: number; dev: number; ino: number }): 'wait' | undefined {
  const owners = s.o.requestOwners;
  const { uid, nlink } = read;
  if (!mayRunRequest(uid, owners)) throw new ForeignRequestError(`request ${id} was filed by uid ${uid}; this server runs only requests filed by uid ${owners!.join(' or ')}`, uid);
  if (owners === undefined) return undefined;
  const verdict = s.linked.judge(id, path, read, s.o.now());
  if (verdict === 'reject') throw new ForeignRequestError(`request ${id} has ${nlink} names (hard links): its owner uid ${uid} does not say who filed it, since anyone may link a file they do not own`, uid);
  return verdict === 'wait' ? 'wait' : undefined;
}

/** Records a started task's process group; a record that cannot be written fails the request (thrown). */
function recordProcess(s: Serving, id: string, pid: number, startTicks: number | undefined): void {
  try {
    s.orphans.record(id, pid, startTicks);
  } catch (err) {
    throw new WorkQueueError(`cannot record the task's process in running/ (${(err as Error).message}); it was killed`, 'ERR_PROCESS_RECORD');
  }
}

/**
 * Moves requests admitted this tick that could not start to pending/: queued,
 * waiting for capacity. One that cannot be moved (a fault) stays admitted, in
 * requested/, and is moved at the next tick.
 */
export function parkWaiting(s: Serving): void {
  const ids = s.book.takeAdmitted();
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    const entry = s.book.get(id);
    if (entry?.stage !== 'requested') continue; // started, answered or aborted meanwhile
    s.inbox.movedOut(id);
    let moved: boolean;
    try {
      moved = sfs.moveEntry(entryPath(s.paths, 'requested', id), entryPath(s.paths, 'pending', id));
    } catch (err) {
      s.book.keepAdmitted(ids.slice(i));
      throw err;
    }
    if (moved) s.book.parked(entry);
    else vanished(s, id); // removed meanwhile by hand: nothing to run
  }
}

/**
 * Tells clients what keeps the line from moving (`server.state`), when that
 * changed: a write per change, none per request while it stays the same. A
 * write that fails is logged once and tried again at the next tick.
 */
export function publishHold(s: Serving, faulted: boolean): void {
  const queued = s.book.queued;
  if (queued === 0 && s.publishedHold === NOTHING_HELD) return; // the usual case: nothing to weigh
  // (hasRoom() is asked only with work waiting: a load-aware manager then starts watching the load.)
  const hold = whatHoldsTheLine({
    queued,
    stopping: s.draining,
    faulted,
    resultsBlocked: s.writer.blocked,
    orphans: s.orphans.size,
    orphansSettling: s.orphans.settling,
    hasRoom: queued > 0 && s.hasRoom(),
    managerHold: queued > 0 ? s.manager.holdReason?.() : undefined,
    maxTasks: s.manager.maxTasks,
  });
  const key = JSON.stringify(hold);
  if (key === s.publishedHold) return;
  s.publishedHold = undefined;
  s.safely('publishing server.state', () => {
    writeServerState(s.paths, { pid: s.owner.pid, startedAt: s.owner.startedAt, hold, since: s.o.now() });
    s.publishedHold = key;
  });
}
