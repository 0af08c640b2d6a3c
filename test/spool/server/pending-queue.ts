import t from 'tap';
import { PendingQueue } from '../../../src/spool/server/pending-queue.js';

/** Ids as the server sees them: fixed width, so lexical order is time order. */
function id(n: number): string {
  return `${String(1_700_000_000_000_000 + n).padStart(16, '0')}-${n.toString(16).padStart(12, '0')}`;
}

/** The head of the line, as the queue's iterator (what the server reads) shows it. */
function head(q: PendingQueue): string | undefined {
  return [...q][0];
}

/** An id's 1-based place in line, as the iterator shows it; undefined if not queued. */
function positionOf(q: PendingQueue, queued: string): number | undefined {
  const i = [...q].indexOf(queued);
  return i < 0 ? undefined : i + 1;
}

function drain(q: PendingQueue): string[] {
  const out: string[] = [];
  for (let next = q.shift(); next !== undefined; next = q.shift()) out.push(next);
  return out;
}

t.test('an empty queue', async (t) => {
  const q = new PendingQueue();
  t.equal(q.size, 0);
  t.equal(head(q), undefined);
  t.equal(q.shift(), undefined);
  t.equal(positionOf(q, id(1)), undefined);
  t.notOk(q.has(id(1)));
  t.notOk(q.remove(id(1)));
  t.strictSame([...q], []);
});

t.test('ids come out oldest first', async (t) => {
  const q = new PendingQueue();
  for (const n of [1, 2, 3]) t.ok(q.insert(id(n)));
  t.equal(q.size, 3);
  t.equal(head(q), id(1));
  t.equal(head(q), id(1), 'looking at the head does not consume it');
  t.strictSame([...q], [id(1), id(2), id(3)]);
  t.equal(q.shift(), id(1));
  t.notOk(q.has(id(1)), 'shifted ids leave the queue');
  t.equal(q.size, 2);
  t.strictSame(drain(q), [id(2), id(3)]);
  t.equal(q.size, 0);
});

t.test('a late arrival with an older id lands in its sorted place', async (t) => {
  const q = new PendingQueue();
  for (const n of [10, 20, 30, 40]) q.insert(id(n));
  q.insert(id(25));
  q.insert(id(5));
  q.insert(id(45));
  q.insert(id(35));
  t.strictSame([...q], [5, 10, 20, 25, 30, 35, 40, 45].map(id));
  t.equal(positionOf(q, id(25)), 4);
  t.equal(head(q), id(5));
});

t.test('an older id inserted after some were shifted goes to the head, not before them', async (t) => {
  const q = new PendingQueue();
  for (const n of [10, 20, 30]) q.insert(id(n));
  t.equal(q.shift(), id(10));
  q.insert(id(15));
  q.insert(id(1)); // older than everything still queued
  t.strictSame([...q], [id(1), id(15), id(20), id(30)]);
  t.strictSame(drain(q), [id(1), id(15), id(20), id(30)]);
});

t.test('random insertion order still comes out sorted', async (t) => {
  let seed = 12345;
  const random = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const ns = Array.from({ length: 2000 }, (_, i) => i);
  for (let i = ns.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ns[i], ns[j]] = [ns[j]!, ns[i]!];
  }
  const q = new PendingQueue();
  for (const n of ns) q.insert(id(n));
  t.equal(q.size, ns.length);
  const out = drain(q);
  t.equal(out.length, ns.length);
  t.ok(out.every((x, i) => i === 0 || out[i - 1]! < x), 'strictly increasing');
});

t.test('duplicates are refused', async (t) => {
  const q = new PendingQueue();
  t.ok(q.insert(id(1)));
  t.ok(q.insert(id(2)));
  t.notOk(q.insert(id(1)), 'the head again');
  t.notOk(q.insert(id(2)), 'the tail again');
  t.equal(q.size, 2);
  t.strictSame([...q], [id(1), id(2)]);
  t.strictSame(drain(q), [id(1), id(2)]);
});

t.test('remove is lazy, but every view honours it at once', async (t) => {
  const q = new PendingQueue();
  for (const n of [1, 2, 3, 4, 5]) q.insert(id(n));
  t.ok(q.remove(id(1)), 'the head');
  t.ok(q.remove(id(3)), 'the middle');
  t.ok(q.remove(id(5)), 'the tail');
  t.notOk(q.remove(id(3)), 'twice');
  t.notOk(q.remove(id(9)), 'never queued');
  t.equal(q.size, 2);
  t.notOk(q.has(id(1)));
  t.notOk(q.has(id(3)));
  t.ok(q.has(id(2)));
  t.equal(head(q), id(2), 'a removed head is skipped');
  t.strictSame([...q], [id(2), id(4)], 'iteration skips removed ids');
  t.equal(positionOf(q, id(2)), 1);
  t.equal(positionOf(q, id(4)), 2, 'positions count only live ids');
  t.equal(positionOf(q, id(3)), undefined);
  t.strictSame(drain(q), [id(2), id(4)], 'shift skips removed ids');
  t.equal(q.size, 0);
});

t.test('removing everything leaves an empty queue', async (t) => {
  const q = new PendingQueue();
  for (const n of [1, 2, 3]) q.insert(id(n));
  for (const n of [3, 1, 2]) q.remove(id(n));
  t.equal(q.size, 0);
  t.equal(head(q), undefined);
  t.equal(q.shift(), undefined);
  t.strictSame([...q], []);
  q.insert(id(7));
  t.strictSame([...q], [id(7)], 'usable afterwards');
});

t.test('an id removed and inserted again is queued once, in its place', async (t) => {
  // The server does this when an aborted id is published again (a forced id collision).
  const q = new PendingQueue();
  for (const n of [1, 2, 3]) q.insert(id(n));
  q.remove(id(2));
  t.ok(q.insert(id(2)), 'accepted again');
  t.equal(q.size, 3);
  t.strictSame([...q], [id(1), id(2), id(3)], 'iteration lists it once');
  t.equal(positionOf(q, id(3)), 3);

  q.remove(id(3));
  t.ok(q.insert(id(3)), 'the tail, again');
  t.strictSame([...q], [id(1), id(2), id(3)], 'the tail is listed once');
  t.strictSame(drain(q), [id(1), id(2), id(3)]);
});

t.test('a long run with aborts stays correct through compaction', async (t) => {
  const q = new PendingQueue();
  const total = 12_000;
  const expected: string[] = [];
  for (let n = 0; n < total; n++) q.insert(id(n));
  let removed = 0;
  for (let n = 0; n < total; n++) {
    if (n % 7 === 3) removed += q.remove(id(n)) ? 1 : 0;
    else expected.push(id(n));
  }
  t.equal(removed, Math.ceil((total - 3) / 7), 'every abort found its id');
  t.equal(q.size, expected.length);
  const first: string[] = [];
  for (let i = 0; i < 5000; i++) first.push(q.shift()!);
  t.strictSame(first, expected.slice(0, 5000), 'the first 5000 shifts are in order, skipping aborts');
  t.equal(q.size, expected.length - 5000);
  t.equal(head(q), expected[5000]);
  t.equal(positionOf(q, expected[5010]!), 11, 'positions are right after compaction');
  t.notOk(q.has(expected[4999]!), 'shifted ids are gone');
  // Late arrivals older than everything left, and a new tail, after the compaction.
  q.insert(id(-1));
  q.insert(id(total + 1));
  const rest = drain(q);
  t.equal(rest[0], id(-1), 'the late old id goes first');
  t.strictSame(rest.slice(1), [...expected.slice(5000), id(total + 1)]);
  t.equal(q.size, 0);
  t.strictSame([...q], []);
});
