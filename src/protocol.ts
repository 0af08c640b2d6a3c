/**
 * Pure protocol decisions, over plain data, with no file-system access: what an
 * abort does to a request in each state, and what a starting server does with
 * the requests a previous server left behind. The server carries them out.
 */
import { redirectableBy, type DirectoryAccess } from './spool/permissions.js';
import type { ManagerHold, QueueHold } from './queue/types.js';

/** Where an aborted id was found. Checked in flow order by the caller. */
export type AbortTarget = 'requested' | 'pending' | 'running' | 'complete' | 'unknown';

export type AbortAction =
  /** Not yet admitted: remove the request file; it never starts. */
  | { kind: 'drop'; state: 'requested' | 'pending' }
  /** Kill the task, discard its outcome, remove the running file. */
  | { kind: 'terminate' }
  /** The result was written but not claimed: remove it. */
  | { kind: 'remove-result' }
  /**
   * No such request (yet). Keep the abort file as a tombstone: the request may
   * still be published (the abort must win), until the tombstone expires.
   */
  | { kind: 'keep-tombstone' };

export function planAbort(target: AbortTarget): AbortAction {
  switch (target) {
    case 'requested':
    case 'pending':
      return { kind: 'drop', state: target };
    case 'running':
      return { kind: 'terminate' };
    case 'complete':
      return { kind: 'remove-result' };
    case 'unknown':
      return { kind: 'keep-tombstone' };
  }
}

/** Whether a tombstone (an abort for an id not seen) has lived long enough to drop. */
export function tombstoneExpired(firstSeenMs: number, nowMs: number, ttlMs: number): boolean {
  return nowMs - firstSeenMs >= ttlMs;
}

/**
 * What a client that filed an abort can tell from one look at the spool. The
 * server carries out an abort by removing the request's entry first and the
 * marker (`aborting/<id>`) last, and refuses one by removing the marker alone
 * (docs/protocol.md, *Aborts*). So: the request in no state means it is gone
 * (aborted, or finished and claimed meanwhile); the marker gone while the
 * request is still somewhere means the server refused it, unless the marker
 * the server removed was not this client's (it found one already filed), which
 * it then files again; the marker still there means the server has not acted yet.
 */
export type AbortVerdict = 'gone' | 'refused' | 'file-again' | 'not-yet';

export function judgeAbort(look: { requestFound: boolean; markerFound: boolean; ownMarker: boolean }): AbortVerdict {
  if (!look.requestFound) return 'gone';
  if (look.markerFound) return 'not-yet';
  return look.ownMarker ? 'refused' : 'file-again';
}

/** What to do with requests a crashed or stopped server left in `running/`. */
export type InterruptedPolicy = 'rerun' | 'fail';

export type RecoveryStep =
  /** The result was already published before the stop: only the running file is left over. */
  | { kind: 'drop-leftover'; id: string }
  /** Move back to pending; it keeps its place in line (ids are ordered by time). */
  | { kind: 'requeue'; id: string }
  /** Complete it with a "server restarted" error. */
  | { kind: 'fail'; id: string };

export function planRecovery(runningIds: readonly string[], completeIds: ReadonlySet<string>, policy: InterruptedPolicy): RecoveryStep[] {
  return [...runningIds].sort().map((id): RecoveryStep => {
    if (completeIds.has(id)) return { kind: 'drop-leftover', id };
    return policy === 'rerun' ? { kind: 'requeue', id } : { kind: 'fail', id };
  });
}

/** What is at a path, as far as the spool's layout cares (spool/fs.ts: identifyEntry); plain data, so that decisions over it stay pure. */
export interface EntryIdentity {
  type: 'directory' | 'symlink' | 'other' | 'missing';
  dev?: number;
  ino?: number;
  /** Permission bits, including setgid and sticky (`mode & 0o7777`). */
  mode?: number;
  /** Its owner. */
  uid?: number;
  /** Its group. */
  gid?: number;
  /** How many names it has (hard links). */
  nlink?: number;
}

/** What a directory of the spool is, as observed (see spool/layout.ts: observeLayout): an entry's identity, less its link count. */
export type ObservedDirectory = Omit<EntryIdentity, 'nlink'>;

export interface ObservedLayout<Dir extends string> {
  /** The spool directory itself (reached through a symlink, if it is one). */
  root: ObservedDirectory;
  dirs: Record<Dir, ObservedDirectory>;
}

export type LayoutVerdict<Dir extends string> =
  /**
   * Serve on. `recreate`: state directories that are missing (a tmp cleaner,
   * a hand) and are made again; `replaced`: real directories that are not the
   * ones the server started with (moved aside by hand), to watch and rescan anew.
   */
  | { kind: 'serve'; recreate: Dir[]; replaced: Dir[] }
  /** Stop serving: the spool is gone, replaced, or leads out of itself. */
  | { kind: 'stop'; reason: string };

const same = (a: ObservedDirectory, b: ObservedDirectory): boolean => a.dev === b.dev && a.ino === b.ino;

/** An observed directory as permissions.ts judges it (unknown owner or mode: nothing to judge, so trusted and private). */
const access = (path: string, d: ObservedDirectory): DirectoryAccess => ({ path, mode: d.mode ?? 0, uid: d.uid ?? 0, gid: d.gid });

/**
 * Judges the spool's layout against what the server started with. The spool
 * directory removed or replaced: stop (its lock went with it, and the requests
 * the server knows of are no longer where it thinks). A state directory that is
 * a symlink or not a directory: stop, before anything is moved through it.
 * Given the server's uid, also stop when someone else could now rename a state
 * directory (see permissions.ts: redirectableBy), as when one was replaced by
 * a directory another user owns in a shared spool.
 */
export function checkLayout<Dir extends string>(expected: ObservedLayout<Dir>, observed: ObservedLayout<Dir>, serverUid?: number, privateGids: readonly number[] = []): LayoutVerdict<Dir> {
  if (observed.root.type === 'missing') return { kind: 'stop', reason: 'the spool directory was removed while the server ran (removed or replaced; its lock went with it)' };
  if (observed.root.type !== 'directory' || !same(observed.root, expected.root)) {
    return { kind: 'stop', reason: 'the spool directory was replaced while the server ran (removed or replaced; its lock went with it)' };
  }
  const recreate: Dir[] = [];
  const replaced: Dir[] = [];
  for (const dir of Object.keys(expected.dirs) as Dir[]) {
    const now = observed.dirs[dir];
    if (now.type === 'symlink') return { kind: 'stop', reason: `${dir}/ is now a symbolic link; wq never follows a symlink out of the spool` };
    if (now.type === 'other') return { kind: 'stop', reason: `${dir}/ is no longer a directory` };
    if (now.type === 'missing') recreate.push(dir);
    else if (!same(now, expected.dirs[dir])) replaced.push(dir);
    const redirectable = serverUid === undefined ? undefined : redirectableBy(access('the spool directory', observed.root), access(`${dir}/`, now), serverUid, privateGids);
    if (redirectable !== undefined) return { kind: 'stop', reason: `${redirectable}; wq never lets others redirect the spool` };
  }
  return { kind: 'serve', recreate, replaced };
}

/**
 * What a server recorded about a task's process when it started it
 * (`running/<id>.proc`, docs/protocol.md): the leader of the task's process
 * group, when it started, and on which boot.
 */
export interface TaskProcessRecord {
  /** The group leader's pid, which is also the group's id. */
  pid: number;
  /** The leader's start time, in clock ticks since boot. */
  startTicks: number;
  /** The boot id of the machine when the task started. */
  bootId: string;
}

/** What /proc shows now for a recorded process group. */
export interface GroupObservation {
  /** The process that has the recorded pid now, if any. */
  leader?: { startTicks: number; zombie: boolean };
  /** Processes whose process group is the recorded pid, zombies included. */
  members: Array<{ pid: number; startTicks: number; zombie: boolean }>;
}

export type OrphanVerdict =
  /** Nothing of the task is left working: its request may run again (or be failed). */
  | { kind: 'gone'; why: string }
  /** These processes of the task still live: kill the group first. */
  | { kind: 'alive'; pids: number[] };

/**
 * Whether what a dead server started for a request is still working. Pids are
 * reused, so a live process only counts when it is provably the task's: on the
 * same boot, in its process group, started no earlier than the recorded
 * leader. A live leader with another start time means the pid was reused,
 * which the kernel only allows once the task's whole group was gone.
 */
export function judgeOrphan(record: TaskProcessRecord, bootId: string | undefined, now: GroupObservation): OrphanVerdict {
  if (bootId !== undefined && record.bootId !== bootId) return { kind: 'gone', why: 'the machine rebooted since it started' };
  if (now.leader !== undefined && !now.leader.zombie && now.leader.startTicks !== record.startTicks) {
    return { kind: 'gone', why: 'its pid now belongs to another process' };
  }
  const pids = now.members.filter((m) => !m.zombie && m.startTicks >= record.startTicks).map((m) => m.pid);
  return pids.length === 0 ? { kind: 'gone', why: 'no process of its group is left' } : { kind: 'alive', pids };
}

/** What holds the line, and a task manager's own hold: the queue interface's words (src/queue/types.ts). */
export type { QueueHold, ManagerHold } from './queue/types.js';

/** What the server knows at the end of a tick, for whatHoldsTheLine(). */
export interface HoldFacts {
  /** Requests still queued. */
  queued: number;
  stopping: boolean;
  /** A step that had to run before starting tasks failed, or starting them did. */
  faulted: boolean;
  resultsBlocked: boolean;
  /** Slots held by a stopped server's tasks still alive, and whether one was killed a moment ago. */
  orphans: number;
  orphansSettling: boolean;
  /** Whether one more task could start now. */
  hasRoom: boolean;
  /** The manager's own reason for having no capacity, if it has one. */
  managerHold: ManagerHold | undefined;
  maxTasks: number;
}

/**
 * Why the line does not move, first cause first: a stopping server, a fault,
 * results that cannot be written, a stopped server's tasks, the manager's own
 * reason (the load), or full capacity.
 */
export function whatHoldsTheLine(f: HoldFacts): QueueHold {
  if (f.queued === 0) return { reason: 'none' };
  if (f.stopping) return { reason: 'stopping' };
  if (f.faulted) return { reason: 'fault' };
  if (f.resultsBlocked) return { reason: 'results' };
  if (f.hasRoom) return { reason: 'none' };
  if (f.orphansSettling || f.orphans > 0) return { reason: 'orphans', tasks: f.orphans };
  return f.managerHold ?? { reason: 'capacity', maxTasks: f.maxTasks };
}
