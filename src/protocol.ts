/**
 * Pure protocol decisions, over plain data, with no file-system access: what an
 * abort does to a request in each state, and what a starting server does with
 * the requests a previous server left behind. The server carries them out.
 */

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
