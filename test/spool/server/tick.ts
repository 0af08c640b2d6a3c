/**
 * The serving loop driven one tick at a time, as chromite's tests drove its
 * server: a real spool, a scripted TaskManager, no watchers and no timers;
 * the test says when the server looks (a rescan) and when it ticks.
 */
import t, { type Test } from 'tap';
import { linkSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { openServedSpool, serverIdentity } from '../../../src/spool/access.js';
import { decodeResult } from '../../../src/spool/codec.js';
import { acquireLock } from '../../../src/spool/lock.js';
import { resolveServerOptions, type WorkQueueServerOptions } from '../../../src/spool/server/options.js';
import { recover } from '../../../src/spool/server/recovery.js';
import { Serving } from '../../../src/spool/server/serving.js';
import { tick } from '../../../src/spool/server/tick.js';
import { publishRecheckMs } from '../../../src/spool/server/run-steps.js';
import { spoolContents } from '../../fixtures/helpers.js';
import { testClient } from '../../fixtures/hostile.js';
import { ScriptedTaskManager } from '../../fixtures/scripted-manager.js';

/** A serving of a fresh spool, recovered and ready to tick; `look()` is a rescan, then a tick. */
function ticking(t: Test, capacity: number, options: Partial<WorkQueueServerOptions> = {}) {
  const spool = t.testdir();
  const who = serverIdentity();
  const paths = openServedSpool(spool, who);
  const lock = acquireLock(paths);
  const manager = new ScriptedTaskManager(capacity);
  /** The delays of the ticks asked for later (scheduleIn). */
  const later: number[] = [];
  const s = new Serving(resolveServerOptions({ spool, watch: false, ...options }), paths, manager, lock.owner, who, {
    schedule: () => {},
    scheduleIn: (ms) => later.push(ms),
    stop: (err) => {
      throw err; // the spool is gone or unsafe: fails the test at the tick that found it
    },
    adopted: () => {},
  });
  t.teardown(() => {
    s.writer.close();
    s.metrics.close();
    lock.release();
  });
  recover(s);
  const look = (): void => {
    s.inbox.rescan();
    tick(s);
  };
  return { s, spool, manager, later, client: testClient(t, spool), look };
}

/** The result a tick published in complete/. */
function resultIn(spool: string, id: string) {
  return decodeResult(readFileSync(join(spool, 'complete', id)));
}

t.test('a tick starts requests in FIFO order within capacity and parks the rest; a finished task is published at the next tick', async (t) => {
  const { s, spool, manager, client, look } = ticking(t, 2);
  const [a, b, c] = [await client.enqueue('a'), await client.enqueue('b'), await client.enqueue('c')];
  t.strictSame(manager.startedIds, [], 'nothing starts before a tick');
  look();
  t.strictSame(manager.startedIds, [a, b], 'the two oldest start, in order');
  t.strictSame(manager.started.map((x) => x.request), ['a', 'b'], 'with their bodies');
  let left = spoolContents(spool);
  t.strictSame(left.running.filter((n) => !n.includes('.')), [a, b], 'running/ holds them');
  t.strictSame(left.pending, [c], 'the third waits in pending/');
  t.strictSame(left.requested, [], 'requested/ is empty');
  t.strictSame(s.book.get(c)?.stage, 'pending', 'the book says where it is');

  manager.finish(a, { ok: true, value: 'done a' });
  tick(s);
  t.strictSame(manager.startedIds, [a, b, c], 'the freed slot goes to the next in line');
  t.match(resultIn(spool, a), { id: a, ok: true, status: 'normal', value: 'done a' }, "a's result is in complete/");
  left = spoolContents(spool);
  t.strictSame(left.complete, [a]);
  t.strictSame(left.pending, [], 'nothing waits');
  t.equal(s.book.held(a), false, 'a published request leaves the book');
  t.same(s.book.running, 2);
});

t.test('a request that arrives with room starts at the same tick, moved straight from requested/ to running/', async (t) => {
  const { spool, manager, client, look } = ticking(t, 1);
  const id = await client.enqueue({ job: 1 });
  look();
  t.strictSame(manager.startedIds, [id]);
  const left = spoolContents(spool);
  t.strictSame([left.requested, left.pending], [[], []], 'it never went through pending/');
});

t.test('a request met while its publish is in progress (its temp name still in tmp/) waits first in line, and a tick is asked for soon: nothing else would wake the server', async (t) => {
  const { s, spool, manager, later, client, look } = ticking(t, 2, { requestOwners: [process.getuid!()] });
  const id = await client.enqueue('first');
  const behind = await client.enqueue('second');
  const temp = join(spool, 'tmp', `${id}.publishing`);
  linkSync(join(spool, 'requested', id), temp); // as between the client's link(2) and its unlink of the temp name
  look();
  t.strictSame(manager.startedIds, [], 'neither starts: the first waits for its publish, the second behind it');
  t.strictSame(later, [publishRecheckMs(0)], 'a tick is asked for at once (1 ms)');
  t.equal(publishRecheckMs(0), 1);
  t.equal(publishRecheckMs(40), 10, 'less often the longer it waits');
  t.equal(publishRecheckMs(60_000), 100, 'at most every 100 ms');
  unlinkSync(temp); // the publish ends; the server watches requested/, not tmp/, so only the asked-for tick sees it
  tick(s);
  t.strictSame(manager.startedIds, [id, behind], 'both start, in order');
});

t.test('an abort wins: a queued request aborted before a slot frees never starts, and a running one is terminated', async (t) => {
  const { s, spool, manager, client, look } = ticking(t, 1);
  const [running, queued] = [await client.enqueue('first'), await client.enqueue('second')];
  look();
  t.strictSame(manager.startedIds, [running]);
  await client.abort([queued, running]);
  look();
  t.strictSame(manager.terminated, [running], 'the running task is terminated');
  manager.setCapacity(2);
  tick(s);
  t.strictSame(manager.startedIds, [running], 'the aborted queued request never starts');
  const left = spoolContents(spool);
  for (const dir of ['requested', 'pending', 'running', 'complete', 'aborting']) t.strictSame(left[dir], [], `${dir}/ is empty`);
  t.equal(s.book.queued + s.book.running, 0, 'the book holds nothing');
});

t.test('an abort that comes before its request leaves a tombstone: the request, when it comes, never starts', async (t) => {
  const { s, spool, manager, client, look } = ticking(t, 1);
  const id = await client.enqueue('late');
  // Its abort is seen first: the request is hidden from the server until after it.
  const hidden = join(spool, 'tmp', 'hidden');
  renameSync(join(spool, 'requested', id), hidden);
  await client.abort(id);
  look();
  t.equal(s.book.get(id)?.stage, 'tombstone', 'the book remembers the abort');
  renameSync(hidden, join(spool, 'requested', id));
  look();
  t.strictSame(manager.startedIds, [], 'it never started');
  const left = spoolContents(spool);
  t.strictSame([left.requested, left.aborting, left.complete], [[], [], []], 'request and abort are both gone');
  t.equal(s.book.get(id), undefined, 'and so is the tombstone');
});

t.test('a task that fails to start is answered with an error result at the same tick; the line moves on', async (t) => {
  const { spool, manager, client, look } = ticking(t, 1);
  manager.failStarts = new Error('no such handler');
  const [a, b] = [await client.enqueue('a'), await client.enqueue('b')];
  look();
  t.match(resultIn(spool, a), { id: a, ok: false, status: 'error', error: { message: 'no such handler' } });
  t.match(resultIn(spool, b), { id: b, ok: false, status: 'error' }, 'the next one tried the free slot too');
  t.strictSame(spoolContents(spool).complete, [a, b]);
});
