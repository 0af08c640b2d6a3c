/**
 * What Linux says about processes, from /proc: a process's start time (to tell
 * a process from a later one that reuses its pid), the members of a process
 * group, and the boot id. Zombies count as gone: they do no work, and where
 * PID 1 does not reap orphans they stay zombies for good. Read only; killing
 * is process-group.ts's.
 */
import { currentBootId } from '../spool/lock.js';
import * as sfs from '../spool/fs.js';

/** One process as /proc/<pid>/stat shows it. */
export interface ProcessEntry {
  pid: number;
  /** Its process group. */
  pgid: number;
  /** When it started, in clock ticks since boot (field 22 of /proc/<pid>/stat). */
  startTicks: number;
  /** Exited, waiting to be reaped: does no work. */
  zombie: boolean;
}

/** Parses /proc/<pid>/stat; undefined for text that is not one. */
export function parseStat(pid: number, text: string): ProcessEntry | undefined {
  // "<pid> (<comm>) <state> <ppid> <pgrp> …": comm may hold spaces and parentheses, so split at the last ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const fields = text.slice(close + 2).split(' ');
  const pgid = Number(fields[2]);
  const startTicks = Number(fields[19]);
  if (fields[0] === undefined || !Number.isInteger(pgid) || !Number.isInteger(startTicks)) return undefined;
  return { pid, pgid, startTicks, zombie: fields[0] === 'Z' || fields[0] === 'X' };
}

/** The process with this pid now, or undefined if there is none (or no /proc). */
export function readProcess(pid: number): ProcessEntry | undefined {
  let text: string | undefined;
  try {
    text = sfs.readSmallTextFile(`/proc/${pid}/stat`);
  } catch (err) {
    if (isVanished(err)) return undefined;
    throw err;
  }
  return text === undefined ? undefined : parseStat(pid, text);
}

/**
 * The processes whose process group is `pgid`, zombies included (the caller
 * judges). One pass over /proc: a few hundred small reads on a busy machine,
 * done only while a dead server's task may still be alive.
 */
export function groupMembers(pgid: number): ProcessEntry[] {
  const out: ProcessEntry[] = [];
  for (const name of sfs.listEntries('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const entry = readProcess(Number(name));
    if (entry !== undefined && entry.pgid === pgid) out.push(entry);
  }
  return out;
}

/** This boot's id (a record from another boot names processes that are long gone). */
export function bootId(): string | undefined {
  return currentBootId();
}

/** A process that exited between the listing and the read: ENOENT, or ESRCH from a /proc file being torn down. */
function isVanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ESRCH';
}
