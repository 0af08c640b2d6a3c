/**
 * A read-only snapshot of a spool for `wq status`: who serves it, and every
 * request with its place in line and what holds it there, run time, pid, or
 * result age. It reads the directories, never the request files, so it is
 * cheap and works without a server; a request left running by a server that
 * is gone is shown as interrupted, with a pid only if its task still lives.
 */
import { ProtocolError } from './errors.js';
import { liveProcessProbe } from './spool/server/orphans.js';
import { judgeOrphan, type QueueHold } from './protocol.js';
import { entryPath, logPath, openSpool, processRecordPath, type RequestState, type SpoolPaths } from './spool/layout.js';
import { isServing, readLockOwner, type LockOwner } from './spool/lock.js';
import { decodeProcessRecord, MAX_PROCESS_RECORD_BYTES } from './spool/process-record.js';
import { isRequestId, requestIdTimeMs } from './spool/request-id.js';
import { readServerState } from './spool/server-state.js';
import * as sfs from './spool/fs.js';
import { asSpoolError } from './spool/spool-fault.js';

/**
 * What keeps waiting requests from starting: no server at all, or what the
 * serving process published (docs/protocol.md, *Server state*).
 */
export type RequestHold = Exclude<QueueHold, { reason: 'none' }> | { reason: 'no-server' };

export interface ServerStatus {
  pid: number;
  host: string;
  startedAt: number;
  uptimeSeconds: number;
  maxTasks: number | null;
  /** False when the lock names a process that is gone (a crashed server). */
  alive: boolean;
}

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

export interface RequestStatus {
  id: string;
  state: RequestState;
  /** When the client made the request (from the id), ms since the epoch. */
  submittedAt: number;
  /** requested/pending: 1-based place in line (1 starts next). */
  position?: number;
  /** requested/pending: what keeps the line from moving, when something does. */
  heldBy?: RequestHold;
  /** running: seconds since it started, to the millisecond. */
  runningSeconds?: number;
  /** running command tasks: the command's pid (never that of a task known to be gone). */
  pid?: number;
  /** running, but no server runs: the request runs again (or fails) when one starts. */
  interrupted?: boolean;
  /** interrupted: the processes of its task still alive, which the next server kills first. */
  survivingPids?: number[];
  /** complete: seconds the result has waited to be claimed, to the millisecond. */
  waitingSeconds?: number;
  /** An abort for it is filed but not carried out yet. */
  aborting?: boolean;
}

export interface SpoolStatus {
  spool: string;
  server: ServerStatus | null;
  /** Requests in each state; `aborting`: those of them with an abort filed and not carried out yet (an abort for an id in no state is not counted). */
  counts: Record<RequestState, number> & { aborting: number };
  /** Every request, in line order: waiting ones first (by position), then running, then complete. */
  requests: RequestStatus[];
}

export function readSpoolStatus(spool: string, now: number = Date.now()): SpoolStatus {
  try {
    return readStatus(spool, now);
  } catch (err) {
    throw asSpoolError(spool, err); // EACCES on a directory of another user's spool, …
  }
}

function readStatus(spool: string, now: number): SpoolStatus {
  const paths = openSpool(spool, { create: false });
  const serving = readServing(paths);
  const hold = queueHold(paths, serving);
  const ids = (dir: 'requested' | 'pending' | 'running' | 'complete' | 'aborting') => sfs.listEntries(paths.dirs[dir]).filter(isRequestId).sort();
  const aborting = new Set(ids('aborting'));
  const waiting = [...ids('requested').map((id) => [id, 'requested'] as const), ...ids('pending').map((id) => [id, 'pending'] as const)].sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const running = ids('running');
  const complete = ids('complete');
  const requests: RequestStatus[] = [];
  waiting.forEach(([id, state], i) => {
    const status: RequestStatus = { id, state, submittedAt: requestIdTimeMs(id), position: i + 1 };
    if (hold !== undefined) status.heldBy = hold;
    requests.push(withAbort(status, aborting));
  });
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
