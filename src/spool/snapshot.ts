/**
 * A read-only snapshot of a spool for `wq status` (the spool's
 * QueueBackend.status()): who serves it, and every request with its place in
 * line and what holds it there, run time, pid, or result age; and one
 * request's progress for the live line of a wait (progress()). It reads the directories, never the request files, so it is
 * cheap and works without a server; a request left running by a server that
 * is gone is shown as interrupted, with a pid only if its task still lives.
 */
import { ProtocolError } from '../errors.js';
import { liveProcessProbe } from './server/orphans.js';
import { judgeOrphan } from '../protocol.js';
import { placeInLine, waitingLine } from '../queue/line.js';
import type { QueueStatus, RequestHold, RequestProgress, RequestStatus, ServerStatus } from '../queue/types.js';
import { locateRequest } from './locate.js';
import { entryPath, logPath, openSpool, processRecordPath, type RequestState, type SpoolPaths } from './layout.js';
import { isServing, readLockOwner, type LockOwner } from './lock.js';
import { decodeProcessRecord, MAX_PROCESS_RECORD_BYTES } from './process-record.js';
import { isRequestId, requestIdTimeMs } from './request-id.js';
import { readServerState } from './server-state.js';
import * as sfs from './fs.js';
import { asSpoolError } from './spool-fault.js';

/** Who serves a spool now, as waiting clients and `wq status` need it. */
export interface Serving {
  owner: LockOwner | undefined;
  alive: boolean;
}

/** Reads the lock: its owner facts, and whether a server holds it now. */
export function readServing(paths: SpoolPaths): Serving {
  const owner = readLockOwner(paths);
  return { owner, alive: isServing(paths, owner) };
}

export type { RequestHold, RequestStatus, ServerStatus } from '../queue/types.js';

export function readSpoolStatus(spool: string, now: number = Date.now()): QueueStatus {
  try {
    return readStatus(spool, now);
  } catch (err) {
    throw asSpoolError(spool, err); // EACCES on a directory of another user's spool, …
  }
}

function readStatus(spool: string, now: number): QueueStatus {
  const paths = openSpool(spool, { create: false });
  const serving = readServing(paths);
  const hold = queueHold(paths, serving);
  const ids = (dir: 'requested' | 'pending' | 'running' | 'complete' | 'aborting') => sfs.listEntries(paths.dirs[dir]).filter(isRequestId).sort();
  const aborting = new Set(ids('aborting'));
  const waiting = waitingLine(ids('requested'), ids('pending'));
  const running = ids('running');
  const complete = ids('complete');
  const requests: RequestStatus[] = [];
  for (const { id, state, position } of waiting) {
    const status: RequestStatus = { id, state, submittedAt: requestIdTimeMs(id), position };
    if (hold !== undefined) status.heldBy = hold;
    requests.push(withAbort(status, aborting));
  }
  for (const id of running) {
    const status: RequestStatus = { id, state: 'running', submittedAt: requestIdTimeMs(id) };
    const since = changedMs(entryPath(paths, 'running', id));
    if (since !== undefined) status.runningSeconds = secondsSince(since, now);
    if (serving.alive) {
      const pid = readPid(paths, id);
      if (pid !== undefined) status.pid = pid;
    } else {
      Object.assign(status, interruptedTask(paths, id));
    }
    requests.push(withAbort(status, aborting));
  }
  for (const id of complete) {
    const status: RequestStatus = { id, state: 'complete', submittedAt: requestIdTimeMs(id) };
    const since = changedMs(entryPath(paths, 'complete', id));
    if (since !== undefined) status.waitingSeconds = secondsSince(since, now);
    requests.push(withAbort(status, aborting));
  }
  const countOf = (state: RequestState) => requests.filter((r) => r.state === state).length;
  return {
    spool: paths.root,
    server: serverStatus(serving, now),
    counts: {
      requested: countOf('requested'),
      pending: countOf('pending'),
      running: running.length,
      complete: complete.length,
      aborting: requests.filter((r) => r.aborting === true).length,
    },
    requests,
  };
}

/**
 * One request's progress, for the live line of a wait (redrawn every second):
 * its place in line and what holds the line, or since when it runs, from
 * directory listings, the lock and server.state. It never reads /proc (what
 * is left of an interrupted task is for `wq status`).
 */
export function readProgress(paths: SpoolPaths, id: string): RequestProgress {
  const state = locateRequest(paths, id);
  if (state === 'requested' || state === 'pending') {
    const line = waitingLine(sfs.listEntries(paths.dirs.requested).filter(isRequestId), sfs.listEntries(paths.dirs.pending).filter(isRequestId));
    const heldBy = queueHold(paths, readServing(paths));
    const progress: RequestProgress = { state, position: placeInLine(line, id), waiting: line.length };
    if (heldBy !== undefined) progress.heldBy = heldBy;
    return progress;
  }
  if (state === 'running') {
    if (!readServing(paths).alive) return { state, interrupted: true };
    return { state, sinceMs: changedMs(entryPath(paths, 'running', id)) };
  }
  return { state };
}

/**
 * What holds the waiting requests of a spool now: no server, or the hold the
 * serving process published; undefined when nothing does (or its server, an
 * older version, does not say).
 * @example
 * const hold = queueHold(paths, readServing(paths)); // { reason: 'capacity', maxTasks: 2 }
 */
export function queueHold(paths: SpoolPaths, serving: Serving): RequestHold | undefined {
  if (!serving.alive) return { reason: 'no-server' };
  const state = serving.owner === undefined ? undefined : readServerState(paths, serving.owner);
  return state === undefined || state.hold.reason === 'none' ? undefined : state.hold;
}

/**
 * A request left in running/ by a server that is gone: interrupted, with the
 * pid of its task only while that task provably lives (its process record,
 * judged as a starting server judges it: same boot, same start time).
 */
export function interruptedTask(paths: SpoolPaths, id: string): Pick<RequestStatus, 'interrupted' | 'pid' | 'survivingPids'> {
  const out: Pick<RequestStatus, 'interrupted' | 'pid' | 'survivingPids'> = { interrupted: true };
  let bytes: Buffer | undefined;
  try {
    bytes = sfs.readEntry(processRecordPath(paths, id), MAX_PROCESS_RECORD_BYTES);
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return out; // planted, not a record: it tells nothing
  }
  const record = bytes === undefined ? undefined : decodeProcessRecord(bytes);
  if (record === undefined) return out;
  const verdict = judgeOrphan(record, liveProcessProbe.bootId(), liveProcessProbe.observe(record.pid));
  if (verdict.kind === 'alive') {
    out.survivingPids = verdict.pids;
    if (verdict.pids.includes(record.pid)) out.pid = record.pid;
  }
  return out;
}

function serverStatus({ owner, alive }: Serving, now: number): ServerStatus | null {
  if (owner === undefined) return null;
  const maxTasks = owner.info?.maxTasks;
  return {
    pid: owner.pid,
    host: owner.host,
    startedAt: owner.startedAt,
    uptimeSeconds: secondsSince(owner.startedAt, now),
    maxTasks: typeof maxTasks === 'number' ? maxTasks : null,
    alive,
  };
}

/** Seconds from `sinceMs` to `nowMs`, to the millisecond (finer would be noise: the times are file and wall clock times), never negative. */
export function secondsSince(sinceMs: number, nowMs: number): number {
  return Math.max(0, Math.round(nowMs - sinceMs)) / 1000;
}

function withAbort(status: RequestStatus, aborting: ReadonlySet<string>): RequestStatus {
  if (aborting.has(status.id)) status.aborting = true;
  return status;
}

/** ctime: a rename into the state directory sets it, so it is when the request got there. */
function changedMs(path: string): number | undefined {
  return sfs.entryStat(path)?.ctimeMs;
}

function readPid(paths: SpoolPaths, id: string): number | undefined {
  try {
    const text = sfs.readEntry(logPath(paths, id, 'pid'), 32)?.toString('ascii').trim();
    const pid = Number(text);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
