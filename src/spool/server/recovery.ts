/**
 * Recovery at start: rebuilds the books from what a previous server left.
 * Invariants: nothing it left is lost: a staged result is published (its
 * request is finished) or, torn, discarded (its request runs again); a request
 * it left running runs again (or fails, `interrupted: 'fail'`) only once its
 * old task is gone; every request in pending/ rejoins the line, in id order.
 */
import { ProtocolError } from '../../errors.js';
import { planRecovery, type RecoveryStep } from '../../protocol.js';
import { decodeResult, MAX_RESULT_BYTES } from '../codec.js';
import { entryPath, PROCESS_SUFFIX, stagedResultPath, STAGED_SUFFIX } from '../layout.js';
import { describeFileSystem, fileSystemWarnings } from '../mount.js';
import { isRequestId } from '../request-id.js';
import * as sfs from '../fs.js';
import type { Serving } from './serving.js';

/** While a dead server's task was just killed, how often to look whether it is gone. */
const ORPHAN_RECHECK_MS = 20;

/** Rebuilds the line from the spool, then rescans requested/ and aborting/. */
export function recover(s: Serving): void {
  warnAboutFileSystem(s);
  const inRunning = sfs.listEntries(s.paths.dirs.running);
  const finished = new Set(inRunning.filter((n) => n.endsWith(STAGED_SUFFIX)).map((n) => n.slice(0, -STAGED_SUFFIX.length)).filter(isRequestId));
  const publishedAtStart = new Set<string>();
  for (const id of finished) if (publishStaged(s, id)) publishedAtStart.add(id);
  const records = inRunning.filter((n) => n.endsWith(PROCESS_SUFFIX)).map((n) => n.slice(0, -PROCESS_SUFFIX.length)).filter(isRequestId);
  const runningIds = inRunning.filter((n) => !n.endsWith(STAGED_SUFFIX) && !n.endsWith(PROCESS_SUFFIX) && !publishedAtStart.has(n) && s.inbox.checkName('running', n));
  const completeIds = new Set(sfs.listEntries(s.paths.dirs.complete).filter(isRequestId));
  s.book.unclaimedResults = completeIds.size;
  const steps = planRecovery(runningIds, completeIds, s.o.interrupted);
  // A record whose request left running/ (it finished as its server died): only its task's leftovers may remain.
  for (const id of records) if (!runningIds.includes(id)) steps.push({ kind: 'drop-leftover', id });
  // What a dead server left running is killed first: a request runs again (or is failed) only once it is gone.
  for (const step of steps) if (s.orphans.settle(step.id, step)) resume(s, step);
  watchOrphans(s);
  queuePending(s);
  s.inbox.rescan();
  s.log.info('recovered spool', { pending: s.book.queued, interrupted: runningIds.length, policy: s.o.interrupted });
}

/** Tells the operator once, at start, about a file system the spool's promises do not hold on. */
function warnAboutFileSystem(s: Serving): void {
  const info = describeFileSystem(s.paths.root);
  if (info === undefined) return;
  for (const warning of fileSystemWarnings(info)) s.log.warn(warning, { source: info.source, mountPoint: info.mountPoint, type: info.type });
}

/** Carries out a recovery step for a request whose previous task is gone. */
function resume(s: Serving, step: RecoveryStep): void {
  if (step.kind === 'drop-leftover') s.removeIn('running', step.id);
  else if (step.kind === 'requeue') {
    s.removeLogs(step.id); // the interrupted run's output; the re-run writes its own
    sfs.moveEntry(entryPath(s.paths, 'running', step.id), entryPath(s.paths, 'pending', step.id));
  } else s.failInterrupted(step.id);
}

/** Looks at held orphans again; carries out the steps of those now gone. `all`: stuck ones too. */
export function recheckOrphans(s: Serving, all: boolean): void {
  if (s.orphans.size === 0) return;
  s.safely('killing what the previous server left running', () => {
    const released = s.orphans.recheck(all);
    for (const [, step] of released) resume(s, step);
    if (released.some(([, step]) => step.kind === 'requeue')) queuePending(s);
  });
  watchOrphans(s);
  s.hooks.schedule();
}

/** Tells the manager how many slots orphans hold, and looks at just-killed ones often until they are gone. */
function watchOrphans(s: Serving): void {
  s.manager.reserve?.(s.orphans.size);
  if (s.orphans.settling) s.orphanTimer ??= setInterval(() => recheckOrphans(s, false), ORPHAN_RECHECK_MS);
  else stopWatchingOrphans(s);
}

/** Stops looking at just-killed orphans (the server stops). */
export function stopWatchingOrphans(s: Serving): void {
  clearInterval(s.orphanTimer);
  s.orphanTimer = undefined;
}

/**
 * A result the previous server wrote but did not publish (it stopped between
 * the steps of ResultWriter): publish it and drop its request, which is
 * finished; true when published. A torn or foreign one is discarded, and its request runs again.
 */
function publishStaged(s: Serving, id: string): boolean {
  const staged = stagedResultPath(s.paths, id);
  let valid = false;
  try {
    const bytes = sfs.readEntry(staged, MAX_RESULT_BYTES);
    valid = bytes !== undefined && decodeResult(bytes).id === id;
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
  }
  if (!valid) {
    sfs.removeAnyEntry(staged);
    s.log.warn('discarded a torn result the previous server left; the request runs again', { id });
    return false;
  }
  for (const dir of ['requested', 'pending', 'running'] as const) s.removeIn(dir, id);
  const dest = entryPath(s.paths, 'complete', id);
  if (sfs.entryExists(dest) && sfs.removeAnyEntry(dest) === 'kept') return false;
  sfs.moveEntry(staged, dest);
  s.log.info('published a result the previous server had written but not published', { id });
  return true;
}

/** Queues every id in pending/ the server does not hold yet (at start, or when pending/ was replaced or a requeue refilled it). */
export function queuePending(s: Serving): void {
  const now = s.o.now();
  for (const id of sfs.listEntries(s.paths.dirs.pending)) {
    if (!s.inbox.checkName('pending', id)) continue;
    if (s.book.held(id) || s.book.isPlanted('pending', id)) continue;
    s.book.enqueue(id, 'pending', now, s.metrics.queued());
  }
}
