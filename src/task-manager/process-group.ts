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

/**
 * Whether a child process has exited, even if its exit has not been collected
 * yet: a zombie (state Z in /proc/<pid>/stat) has ended, though Node reports
 * its 'exit' only when the event loop next reads SIGCHLD. Only for our own
 * children: their pid cannot be reused before we collect them.
 */
export function hasExited(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH')) return true; // collected meanwhile
    return false; // cannot tell (no /proc): judged still running
  }
  // "<pid> (<comm>) <state> …": comm may hold spaces or parentheses, so read after the last ')'.
  return stat.charAt(stat.lastIndexOf(')') + 2) === 'Z';
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
