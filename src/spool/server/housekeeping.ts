/**
 * Housekeeping decisions, pure: which leftovers to remove. A result nobody
 * claimed (its client died) goes after the result TTL; a temp file after an age
 * no live writer can reach (writes take milliseconds); a log whose request is in
 * no state any more after the same age. The server gathers the ages and acts.
 */
import { isRequestId } from '../request-id.js';

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
