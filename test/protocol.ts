import t from 'tap';
import { checkLayout, judgeAbort, planAbort, planRecovery, tombstoneExpired, whatHoldsTheLine, type AbortTarget, type HoldFacts } from '../src/protocol.js';

const A = '1700000000000001-00000000000a';
const B = '1700000000000002-00000000000b';
const C = '1700000000000003-00000000000c';
const D = '1700000000000004-00000000000d';

t.test('planAbort says what an abort does in each state', async (t) => {
  const expected: Record<AbortTarget, ReturnType<typeof planAbort>> = {
    requested: { kind: 'drop', state: 'requested' },
    pending: { kind: 'drop', state: 'pending' },
    running: { kind: 'terminate' },
    complete: { kind: 'remove-result' },
    unknown: { kind: 'keep-tombstone' },
  };
  for (const [target, action] of Object.entries(expected)) {
    t.strictSame(planAbort(target as AbortTarget), action, target);
  }
});

t.test('tombstoneExpired', async (t) => {
  t.notOk(tombstoneExpired(1000, 1000, 600_000), 'just seen');
  t.notOk(tombstoneExpired(1000, 600_999, 600_000), 'one ms short');
  t.ok(tombstoneExpired(1000, 601_000, 600_000), 'exactly the ttl');
  t.ok(tombstoneExpired(1000, 10_000_000, 600_000), 'long past');
  t.ok(tombstoneExpired(1000, 1000, 0), 'a zero ttl expires at once');
  t.notOk(tombstoneExpired(5000, 1000, 600_000), 'a clock that stepped back does not expire it');
});

t.test('planRecovery requeues interrupted requests by default, in id order', async (t) => {
  t.strictSame(planRecovery([C, A, B], new Set(), 'rerun'), [
    { kind: 'requeue', id: A },
    { kind: 'requeue', id: B },
    { kind: 'requeue', id: C },
  ]);
});

t.test("planRecovery fails interrupted requests with policy 'fail', in id order", async (t) => {
  t.strictSame(planRecovery([B, C, A], new Set(), 'fail'), [
    { kind: 'fail', id: A },
    { kind: 'fail', id: B },
    { kind: 'fail', id: C },
  ]);
});

t.test('planRecovery only drops the leftover when the result was already published', async (t) => {
  for (const policy of ['rerun', 'fail'] as const) {
    t.strictSame(
      planRecovery([D, B, A], new Set([B, C]), policy),
      [
        { kind: policy === 'rerun' ? 'requeue' : 'fail', id: A },
        { kind: 'drop-leftover', id: B },
        { kind: policy === 'rerun' ? 'requeue' : 'fail', id: D },
      ],
      policy,
    );
  }
  t.strictSame(planRecovery([], new Set([A]), 'rerun'), [], 'a result with nothing running is none of its business');
});

t.test('planRecovery does not modify its input', async (t) => {
  const running = Object.freeze([C, A]);
  planRecovery(running, new Set(), 'rerun');
  t.strictSame(running, [C, A]);
});

t.test('checkLayout: given the server uid, stops when someone else could now rename a state directory', async (t) => {
  const dir = (ino: number, uid = 1000) => ({ type: 'directory' as const, dev: 1, ino, mode: 0o2755, uid });
  const expected = { root: { ...dir(1), mode: 0o3775 }, dirs: { complete: dir(2), pending: dir(3) } };
  t.strictSame(checkLayout(expected, expected, 1000), { kind: 'serve', recreate: [], replaced: [] }, 'a sticky shared spool whose directories the server owns');
  const theirs = { ...expected, dirs: { ...expected.dirs, complete: dir(9, 2000) } };
  t.match(checkLayout(expected, theirs, 1000), { kind: 'stop', reason: /complete\/ is owned by uid 2000 in the shared directory/ }, 'complete/ replaced by one a member owns');
  t.match(checkLayout(expected, theirs), { kind: 'serve', replaced: ['complete'] }, 'without the uid, only the identity is judged');
  const unsticky = { ...expected, root: { ...expected.root, mode: 0o2775 } };
  t.match(checkLayout(expected, unsticky, 1000), { kind: 'stop', reason: /no sticky bit/ }, 'the sticky bit taken off the spool directory');
  t.match(checkLayout(expected, { ...expected, dirs: { ...expected.dirs, pending: { type: 'missing' as const } } }, 1000), { kind: 'serve', recreate: ['pending'] }, 'a missing directory is not judged');
});

t.test('whatHoldsTheLine names the first cause that keeps the queue from moving', async (t) => {
  const facts: HoldFacts = { queued: 2, stopping: false, faulted: false, resultsBlocked: false, orphans: 0, orphansSettling: false, hasRoom: false, managerHold: undefined, maxTasks: 3 };
  const load = { reason: 'load', load: 5, maxLoad: 2 } as const;
  t.strictSame(whatHoldsTheLine(facts), { reason: 'capacity', maxTasks: 3 }, 'no room, nothing else: capacity');
  t.strictSame(whatHoldsTheLine({ ...facts, managerHold: load }), load, "the manager's own reason");
  t.strictSame(whatHoldsTheLine({ ...facts, orphans: 1, managerHold: load }), { reason: 'orphans', tasks: 1 }, "a stopped server's tasks before the load");
  t.strictSame(whatHoldsTheLine({ ...facts, orphansSettling: true }), { reason: 'orphans', tasks: 0 });
  t.strictSame(whatHoldsTheLine({ ...facts, resultsBlocked: true, orphans: 1 }), { reason: 'results' });
  t.strictSame(whatHoldsTheLine({ ...facts, faulted: true, resultsBlocked: true }), { reason: 'fault' });
  t.strictSame(whatHoldsTheLine({ ...facts, stopping: true, faulted: true }), { reason: 'stopping' }, 'stopping first');
  t.strictSame(whatHoldsTheLine({ ...facts, hasRoom: true }), { reason: 'none' }, 'room: the line moves');
  t.strictSame(whatHoldsTheLine({ ...facts, queued: 0, stopping: true }), { reason: 'none' }, 'nothing waits: nothing is held');
});

t.test('judgeAbort: what a client that filed an abort can tell from one look', async (t) => {
  const look = (requestFound: boolean, markerFound: boolean, ownMarker: boolean) => judgeAbort({ requestFound, markerFound, ownMarker });
  t.equal(look(false, true, true), 'gone', 'the request in no state: gone, whether the marker is still there (a tombstone) …');
  t.equal(look(false, false, true), 'gone', '… or not (carried out: the request went first)');
  t.equal(look(false, false, false), 'gone');
  t.equal(look(true, true, true), 'not-yet', 'both there: the server has not acted');
  t.equal(look(true, true, false), 'not-yet');
  t.equal(look(true, false, true), 'refused', 'the marker gone, the request still there: refused');
  t.equal(look(true, false, false), 'file-again', "… unless the marker removed was someone else's: file our own");
});
