/**
 * The tick's intake steps: new requests join the line, aborts are carried out.
 * Invariants: an abort wins over its request (one seen first leaves a
 * tombstone, and the request never starts); an entry that is not a regular
 * file is answered, never opened; a request's entry is removed before the
 * books change, so a removal that fails (EACCES) leaves all as it was, to retry.
 */
import type { MetricsStamps } from '../../metrics.js';
import { ProtocolError } from '../../errors.js';
import { planAbort, tombstoneExpired, type AbortTarget } from '../../protocol.js';
import { readAbortReason } from '../abort-reason.js';
import { entryPath } from '../layout.js';
import { mayAbort } from '../permissions.js';
import { farFutureByMs } from '../request-id.js';
import * as sfs from '../fs.js';
import type { Serving } from './serving.js';

/**
 * Takes newly requested ids into the line (they move to pending/ at the end
 * of the tick, or straight to running/). A fault part-way leaves the names not
 * yet looked at for the next tick. Returns how many joined.
 */
export function admitNew(s: Serving): number {
  return eachName(s, 'requested', s.inbox.takeRequested(), admitOne);
}

/** Carries out abort requests: drop, terminate, remove the result, or keep a tombstone. Returns how many requests it removed. */
export function processAborts(s: Serving): number {
  return eachName(s, 'aborting', s.inbox.takeAborts(), processAbort);
}

/** Runs `one` on each name in order; on a fault, puts the names not done back in the inbox and throws. */
function eachName(s: Serving, dir: 'requested' | 'aborting', names: readonly string[], one: (s: Serving, name: string) => boolean): number {
  let n = 0;
  let i = 0;
  try {
    for (; i < names.length; i++) if (one(s, names[i]!)) n++;
  } catch (err) {
    s.inbox.putBack(dir, names.slice(i)); // retried at the next tick
    throw err;
  }
  return n;
}

/** Admits one name seen in requested/; true when it joined the line. */
function admitOne(s: Serving, id: string): boolean {
  const { book, inbox } = s;
  if (inbox.isOwnMove(id)) return false; // the event of our own move out of requested/
  if (!inbox.checkName('requested', id)) return false;
  if (book.held(id) || book.isPlanted('requested', id)) return false;
  if (book.get(id)?.stage === 'tombstone') {
    // The abort came first and wins: the request never starts.
    if (s.removeIn('requested', id) !== 'absent') finishAbort(s, id, 'requested', undefined); // never admitted: no wait to measure
    return false;
  }
  const stat = sfs.entryStat(entryPath(s.paths, 'requested', id));
  if (stat === undefined) return false; // gone (its client aborted it by hand)
  if (!stat.isFile()) {
    inbox.movedOut(id);
    s.rejectRequest(id, 'requested', new ProtocolError(`requested/${id} is ${sfs.describeEntry(stat)}; requests must be regular files`), undefined);
    return false;
  }
  const now = s.o.now();
  book.enqueue(id, 'requested', now, s.metrics.received());
  s.log.debug('admitted', { id });
  const aheadMs = farFutureByMs(id, now);
  if (aheadMs !== undefined) {
    s.log.warn("request id is far ahead of the server's clock: it waits behind every request with an earlier id; check the client's clock", { id, aheadSeconds: Math.round(aheadMs / 1000) });
  }
  return true;
}

/** Carries out one abort; true when it removed a request. */
function processAbort(s: Serving, id: string): boolean {
  const { book } = s;
  if (!s.inbox.checkName('aborting', id) || book.isPlanted('aborting', id)) return false;
  if (!sfs.entryExists(entryPath(s.paths, 'aborting', id))) {
    book.dropTombstone(id);
    return false;
  }
  const entry = book.get(id);
  if (entry?.stage === 'answering') {
    // Its result is being written: it will not be published.
    s.writer.cancel(id);
    entry.abortAfterPublish = true;
    return false;
  }
  const action = planAbort(locate(s, id));
  if ((action.kind === 'drop' || action.kind === 'terminate') && !abortAllowed(s, id, action.kind === 'drop' ? action.state : 'running')) {
    s.removeIn('aborting', id);
    return false;
  }
  switch (action.kind) {
    case 'drop':
      s.removeIn(action.state, id);
      break;
    case 'terminate':
      s.removeIn('running', id);
      s.manager.terminateTask(id);
      s.forgetRunning(id);
      s.metrics.killed('abort');
      s.removeLogs(id);
      break;
    case 'remove-result':
      if (s.removeIn('complete', id) === 'removed') book.unclaimedResults--;
      s.removeLogs(id);
      s.log.debug('abort removed an unclaimed result', { id });
      s.removeIn('aborting', id);
      return false; // the request already finished; it is not counted again
    case 'keep-tombstone': {
      const first = book.tombstone(id, s.o.now());
      if (tombstoneExpired(first, s.o.now(), s.o.abortTombstoneMs)) {
        s.removeIn('aborting', id);
        book.dropTombstone(id);
        s.log.info('dropped abort for unknown id', { id });
      }
      return false;
    }
  }
  finishAbort(s, id, action.kind === 'terminate' ? 'running' : action.state, entry);
  return true;
}

/** The request is gone: counts the abort (a timeout if its client gave up waiting), forgets it, removes the abort file. */
function finishAbort(s: Serving, id: string, state: string, stamps: MetricsStamps | undefined): void {
  const abortFile = entryPath(s.paths, 'aborting', id);
  const reason = readAbortReason(abortFile);
  const uid = sfs.entryStat(abortFile)?.uid;
  s.metrics.aborted(reason === 'timeout' || reason === 'run-timeout' ? 'timed_out' : 'aborted', stamps);
  s.book.forget(id);
  s.log.debug('aborted', { id, state, reason, uid });
  s.removeIn('aborting', id);
}

/** Where an id is, checked in flow order so a request moving forward is not missed. */
function locate(s: Serving, id: string): AbortTarget {
  const stage = s.book.get(id)?.stage;
  if (stage === 'requested' || stage === 'pending' || stage === 'running') return stage;
  if (sfs.entryExists(entryPath(s.paths, 'requested', id))) return 'requested';
  if (sfs.entryExists(entryPath(s.paths, 'complete', id))) return 'complete';
  return 'unknown';
}

/**
 * In a spool shared by several users, only the request's owner (the owner of
 * its file), the server's user and root may abort it, unless the operator
 * allows anyone (`abortPolicy: 'anyone'`). A refused abort is logged.
 */
function abortAllowed(s: Serving, id: string, state: 'requested' | 'pending' | 'running'): boolean {
  const abortUid = sfs.entryStat(entryPath(s.paths, 'aborting', id))?.uid;
  const ownerUid = sfs.entryStat(entryPath(s.paths, state, id))?.uid;
  if (abortUid === undefined || mayAbort(abortUid, ownerUid, process.getuid?.() ?? 0, s.o.abortPolicy)) return true;
  s.log.warn('refused an abort filed by a user who does not own the request', { id, abortUid, ownerUid });
  return false;
}
