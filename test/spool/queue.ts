/**
 * The spool as a queue backend, through the interface wq uses beside the
 * client's own methods: where a request is, whether a server serves, one
 * request's progress (the live line's), status, and what it lacks nothing of
 * (follow). Real spools, a real in-process server.
 */
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { SpoolError } from '../../src/errors.js';
import { InProcessTaskManager } from '../../src/task-manager/in-process.js';
import { startServer, waitFor } from '../fixtures/helpers.js';

const spoolIn = (t: Test): string => join(realpathSync(t.testdir()), 'spool');

t.test('no server: places in line, the hold, and the state of each request', async (t) => {
  const spool = spoolIn(t);
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const [a, b, c] = [await client.enqueue('a'), await client.enqueue('b'), await client.enqueue('c')];
  const { queue } = client;
  t.equal(queue.location, spool);
  t.equal(await queue.serving(), false, 'no lock: nobody serves');
  t.equal(await queue.locate(b), 'requested');
  const first = queue.progress(b);
  t.ok(first instanceof Promise, 'the first look loads the snapshot code');
  t.strictSame(await first, { state: 'requested', position: 2, waiting: 3, heldBy: { reason: 'no-server' } });
  const again = queue.progress(c);
  t.notOk(again instanceof Promise, 'later looks answer at once, as the live line redraws');
  t.strictSame(again, { state: 'requested', position: 3, waiting: 3, heldBy: { reason: 'no-server' } });
  t.strictSame(await queue.progress('1795366421947895-8d42b22ad816'), { state: undefined }, 'in no state: finishing');
  const status = await queue.status();
  t.strictSame(status.requests.map((r) => [r.id, r.position]), [[a, 1], [b, 2], [c, 3]], 'the status gives the same places');
  t.equal(typeof queue.follow, 'function', 'the spool keeps output apart: it can follow');
});

t.test('served: a running request has a start time; a result is complete', async (t) => {
  const spool = spoolIn(t);
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  startServer(t, new InProcessTaskManager(async (req: string) => (req === 'hold' ? held.then(() => req) : req)), { spool, rescanIntervalMs: 50 });
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const id = await client.enqueue('hold');
  const { queue } = client;
  await waitFor(async () => (await queue.locate(id)) === 'running', 'the request runs');
  t.equal(await queue.serving(), true);
  const running = await queue.progress(id);
  t.equal(running.state, 'running');
  t.ok(running.state === 'running' && !running.interrupted && typeof running.sinceMs === 'number', 'since when it runs');
  release();
  await waitFor(async () => (await queue.locate(id)) === 'complete', 'the result is written');
  t.strictSame(await queue.progress(id), { state: 'complete' });
  t.equal(await client.wait(id), 'hold');
});

t.test('status and progress create nothing: a spool that is not there is a SpoolError', async (t) => {
  const spool = spoolIn(t);
  const { queue } = new WorkQueueClient({ spool });
  await t.rejects(Promise.resolve().then(() => queue.status()), SpoolError);
  await t.rejects(Promise.resolve().then(() => queue.progress('1795366421947895-8d42b22ad816')), SpoolError);
});
