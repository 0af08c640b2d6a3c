/**
 * Housekeeping: the pure plan of which leftovers to remove, and housekeep(),
 * which gathers the ages and acts on it. A result nobody claimed (its client
 * died) goes after the result TTL; a temp file after an age no live writer can
 * reach (writes take milliseconds); a log whose request is in no state any
 * more after the same age. Directories are never removed nor descended into.
 */
import { join } from 'node:path';
import { entryPath } from '../layout.js';
import { isRequestId } from '../request-id.js';
import * as sfs from '../fs.js';
import type { Serving } from './serving.js';

export interface HousekeepingPolicy {
  /** Unclaimed results older than this are removed. */
  resultTtlMs: number;
  /** Temp files and orphaned logs older than this are removed. */
  leftoverMaxAgeMs: number;
}

export interface AgedEntry {
  name: string;
  /** Last change of the entry (ctime: a rename or link counts), ms. */
  changedMs: number;
}

export interface HousekeepingPlan {
  expiredResults: string[];
  staleTemps: string[];
  orphanLogs: string[];
}

/**
 * @param liveIds ids that are in some state now (their logs are kept)
 */
export function planHousekeeping(
  nowMs: number,
  policy: HousekeepingPolicy,
  complete: readonly AgedEntry[],
  temps: readonly AgedEntry[],
  logs: readonly AgedEntry[],
  liveIds: ReadonlySet<string>,
): HousekeepingPlan {
  const older = (e: AgedEntry, ms: number) => nowMs - e.changedMs > ms;
  return {
    expiredResults: complete.filter((e) => isRequestId(e.name) && older(e, policy.resultTtlMs)).map((e) => e.name),
    staleTemps: temps.filter((e) => older(e, policy.leftoverMaxAgeMs)).map((e) => e.name),
    orphanLogs: logs
      .filter((e) => older(e, policy.leftoverMaxAgeMs) && !liveIds.has(logOwner(e.name)))
      .map((e) => e.name),
  };
}

/** The request id a log file belongs to (`<id>.<suffix>`). */
export function logOwner(name: string): string {
  const dot = name.indexOf('.');
  return dot === -1 ? name : name.slice(0, dot);
}

/** Whether housekeeping is due; a wall clock stepped back does not postpone it by the step. */
export function housekeepingDue(s: Serving): boolean {
  const now = s.o.now();
  if (now < s.nextHousekeeping && s.nextHousekeeping - now <= s.o.housekeepingIntervalMs) return false;
  s.nextHousekeeping = now + s.o.housekeepingIntervalMs;
  return true;
}

/** Removes unclaimed results past their TTL, stale temp files and orphaned logs; logs the counts. */
export function housekeep(s: Serving): void {
  const { paths } = s;
  try {
    // Directories are never removed (never descended into); other entries are unlinked, never followed.
    const aged = (dir: 'complete' | 'tmp' | 'logs'): AgedEntry[] =>
      sfs.listEntries(paths.dirs[dir]).flatMap((name) => {
        const stat = sfs.entryStat(join(paths.dirs[dir], name));
        return stat === undefined || stat.isDirectory() ? [] : [{ name, changedMs: stat.ctimeMs }];
      });
    const complete = aged('complete');
    const live = new Set<string>([...s.book.live(), ...complete.map((e) => e.name)]);
    for (const name of sfs.listEntries(paths.dirs.requested)) live.add(name);
    const plan = planHousekeeping(s.o.now(), s.o, complete, aged('tmp'), aged('logs'), live);
    for (const id of plan.expiredResults) {
      sfs.removeAnyEntry(entryPath(paths, 'complete', id));
      s.removeLogs(id);
    }
    for (const name of plan.staleTemps) sfs.removeAnyEntry(join(paths.dirs.tmp, name));
    for (const name of plan.orphanLogs) sfs.removeAnyEntry(join(paths.dirs.logs, name));
    const removed = plan.expiredResults.length + plan.staleTemps.length + plan.orphanLogs.length;
    if (removed > 0) {
      s.log.info('housekeeping', { expiredResults: plan.expiredResults.length, staleTemps: plan.staleTemps.length, orphanLogs: plan.orphanLogs.length });
    }
    s.faults.succeeded('housekeeping');
  } catch (err) {
    s.faults.failed('housekeeping', err);
  }
}
