/**
 * A read-only snapshot of a spool for `wq status`: who serves it, and every
 * request with its place in line, run time, pid, or result age. It reads the
 * directories, never the request files, so it is cheap and works without a server.
 */
import { entryPath, logPath, openSpool, type RequestState, type SpoolPaths } from './spool/layout.js';
import { isServing, readLockOwner } from './spool/lock.js';
import { isRequestId, requestIdTimeMs } from './spool/request-id.js';
import * as sfs from './spool/fs.js';

export interface ServerStatus {
  pid: number;
  host: string;
  startedAt: number;
  uptimeSeconds: number;
  maxTasks: number | null;
  /** False when the lock names a process that is gone (a crashed server). */
  alive: boolean;
}

export interface RequestStatus {
  id: string;
  state: RequestState;
  /** When the client made the request (from the id), ms since the epoch. */
  submittedAt: number;
  /** requested/pending: 1-based place in line (1 starts next). */
  position?: number;
  /** running: seconds since it started. */
  runningSeconds?: number;
  /** running command tasks: the command's pid. */
  pid?: number;
  /** complete: seconds the result has waited to be claimed. */
  waitingSeconds?: number;
  /** An abort for it is filed but not carried out yet. */
  aborting?: boolean;
}

export interface SpoolStatus {
  spool: string;
  server: ServerStatus | null;
  counts: Record<RequestState, number> & { aborting: number };
  /** Every request, in line order: waiting ones first (by position), then running, then complete. */
  requests: RequestStatus[];
}

export function readSpoolStatus(spool: string, now: number = Date.now()): SpoolStatus {
  const paths = openSpool(spool, { create: false });
  const ids = (dir: 'requested' | 'pending' | 'running' | 'complete' | 'aborting') => sfs.listEntries(paths.dirs[dir]).filter(isRequestId).sort();
  const aborting = new Set(ids('aborting'));
  const waiting = [...ids('requested').map((id) => [id, 'requested'] as const), ...ids('pending').map((id) => [id, 'pending'] as const)].sort(([a], [b]) =>
    a < b ? -1 : a > b ? 1 : 0,
  );
  const running = ids('running');
  const complete = ids('complete');
  const requests: RequestStatus[] = [];
  waiting.forEach(([id, state], i) => requests.push(withAbort({ id, state, submittedAt: requestIdTimeMs(id), position: i + 1 }, aborting)));
  for (const id of running) {
    const status: RequestStatus = { id, state: 'running', submittedAt: requestIdTimeMs(id) };
    const since = changedMs(entryPath(paths, 'running', id));
    if (since !== undefined) status.runningSeconds = Math.max(0, (now - since) / 1000);
    const pid = readPid(paths, id);
    if (pid !== undefined) status.pid = pid;
    requests.push(withAbort(status, aborting));
  }
  for (const id of complete) {
    const status: RequestStatus = { id, state: 'complete', submittedAt: requestIdTimeMs(id) };
    const since = changedMs(entryPath(paths, 'complete', id));
    if (since !== undefined) status.waitingSeconds = Math.max(0, (now - since) / 1000);
    requests.push(withAbort(status, aborting));
  }
  const countOf = (state: RequestState) => requests.filter((r) => r.state === state).length;
  return {
    spool: paths.root,
    server: serverStatus(paths, now),
    counts: { requested: countOf('requested'), pending: countOf('pending'), running: running.length, complete: complete.length, aborting: aborting.size },
    requests,
  };
}

function serverStatus(paths: SpoolPaths, now: number): ServerStatus | null {
  const owner = readLockOwner(paths);
  if (owner === undefined) return null;
  const maxTasks = owner.info?.maxTasks;
  return {
    pid: owner.pid,
    host: owner.host,
    startedAt: owner.startedAt,
    uptimeSeconds: Math.max(0, (now - owner.startedAt) / 1000),
    maxTasks: typeof maxTasks === 'number' ? maxTasks : null,
    alive: isServing(paths, owner),
  };
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
