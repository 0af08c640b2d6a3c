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
  /** Its parent. */
  ppid: number;
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
  const ppid = Number(fields[1]);
  const pgid = Number(fields[2]);
  const startTicks = Number(fields[19]);
  if (fields[0] === undefined || !Number.isInteger(ppid) || !Number.isInteger(pgid) || !Number.isInteger(startTicks)) return undefined;
  return { pid, ppid, pgid, startTicks, zombie: fields[0] === 'Z' || fields[0] === 'X' };
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
 * Every process now, zombies included (the caller judges). One pass over
 * /proc: a few hundred small reads on a busy machine.
 */
export function listProcesses(): ProcessEntry[] {
  const out: ProcessEntry[] = [];
  for (const name of sfs.listEntries('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const entry = readProcess(Number(name));
    if (entry !== undefined) out.push(entry);
  }
  return out;
}

/** The processes whose process group is `pgid`, zombies included: done only while a dead server's task may still be alive. */
export function groupMembers(pgid: number): ProcessEntry[] {
  return listProcesses().filter((entry) => entry.pgid === pgid);
}

/** A process's argv (/proc/<pid>/cmdline), or undefined if it is gone. */
export function commandLine(pid: number): string[] | undefined {
  try {
    return sfs.readSmallTextFile(`/proc/${pid}/cmdline`)?.split('\0');
  } catch (err) {
    if (isVanished(err)) return undefined;
    throw err;
  }
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
