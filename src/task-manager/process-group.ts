/**
 * Killing a task for real: every task process leads its own process group, so
 * a signal to the group reaches whatever it started. SIGTERM first, SIGKILL
 * after a grace period, and a final SIGKILL to the group once the leader exits
 * so no straggler keeps working outside the queue's capacity.
 */
import { readFileSync } from 'node:fs';
import { isErrno } from '../errors.js';
import { setLongTimeout } from '../long-timer.js';

/** Sends a signal to a whole process group; false if the group is gone. */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return false;
    throw err;
  }
}

export interface GroupKill {
  /** Call when the group leader has exited: sweeps the group and stops the timer. */
  leaderExited(): void;
}

/** SIGTERM now, SIGKILL after `graceMs` unless the leader exits first. */
export function killGroup(pgid: number, graceMs: number): GroupKill {
  signalGroup(pgid, 'SIGTERM');
  const timer = setLongTimeout(() => signalGroup(pgid, 'SIGKILL'), graceMs);
  return {
    leaderExited() {
      timer.clear();
      signalGroup(pgid, 'SIGKILL');
    },
  };
}

/** What reading /proc/<pid>/stat gave: its text, ENOENT/ESRCH, or any other failure. */
export type ProcStat = { kind: 'stat'; text: string } | { kind: 'missing' } | { kind: 'unreadable' };

/**
 * The decision behind hasExited, on plain data. A missing stat file means the
 * process was collected only where /proc is there at all (`procMounted`);
 * without /proc every file is missing, and a task judged ended would never
 * meet its run timeout. A zombie (state Z) has ended.
 */
export function exitedFromStat(stat: ProcStat, procMounted: boolean): boolean {
  if (stat.kind === 'missing') return procMounted;
  if (stat.kind === 'unreadable') return false; // cannot tell: judged still running
  // "<pid> (<comm>) <state> …": comm may hold spaces or parentheses, so read after the last ')'.
  return stat.text.charAt(stat.text.lastIndexOf(')') + 2) === 'Z';
}

let procMountedCache: boolean | undefined;

/** Whether this process can read its own /proc entry; probed once. */
export function procIsMounted(): boolean {
  procMountedCache ??= readProcStat('self').kind === 'stat';
  return procMountedCache;
}

function readProcStat(pid: number | 'self'): ProcStat {
  try {
    return { kind: 'stat', text: readFileSync(`/proc/${pid}/stat`, 'latin1') };
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) return { kind: 'missing' };
    if (err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string') return { kind: 'unreadable' };
    throw err;
  }
}

/**
 * Whether a child process has exited, even if its exit has not been collected
 * yet: a zombie has ended, though Node reports its 'exit' only when the event
 * loop next reads SIGCHLD. Only for our own children: their pid cannot be
 * reused before we collect them. Without /proc (`procMounted` false), only
 * Node's 'exit' tells.
 */
export function hasExited(pid: number, procMounted: () => boolean = procIsMounted): boolean {
  const stat = readProcStat(pid);
  return exitedFromStat(stat, stat.kind === 'missing' && procMounted());
}

/** Like signalGroup, but a group the caller may not signal (EPERM) is left alone: false. */
export function signalGroupIfAllowed(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    return signalGroup(pgid, signal);
  } catch (err) {
    if (isErrno(err, 'EPERM')) return false;
    throw err;
  }
}
