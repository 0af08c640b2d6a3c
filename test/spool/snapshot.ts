/**
 * readSpoolStatus against a real spool: no server, then a real server with one
 * slot held by a blocking task; places in line follow id order across
 * requested/ and pending/; running, complete and aborting entries; the lock.
 */
import { spawnSync } from 'node:child_process';
import { lstatSync, realpathSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { WorkQueueClient } from '../../src/client.js';
import { SpoolError } from '../../src/errors.js';
import { openSpool } from '../../src/spool/layout.js';
import { acquireLock } from '../../src/spool/lock.js';
import { requestIdTimeMs, type IdSource } from '../../src/spool/request-id.js';
import { readSpoolStatus, type RequestStatus } from '../../src/spool/snapshot.js';
import { InProcessTaskManager } from '../../src/task-manager/in-process.js';
import { spoolContents, startServer, waitFor } from '../fixtures/helpers.js';
import { deadPid } from '../fixtures/processes.js';

/** One task per id that finishes when the test says so. */
function blockingManager(maxTasks = 1): { manager: InProcessTaskManager; started: string[]; finish(id: string): void } {
  const started: string[] = [];
  const release = new Map<string, () => void>();
  const manager = new InProcessTaskManager(
    (_request, { id }) =>
      new Promise<string>((resolve) => {
        started.push(id);
        release.set(id, () => resolve(`done ${id}`));
      }),
    { maxTasks },
  );
  return {
    manager,
    started,
    finish(id) {
      const fn = release.get(id);
      if (fn === undefined) throw new Error(`task ${id} has not started`);
      fn();
    },
  };
}

/** An id source that makes one id at a chosen microsecond (to slot a request between others). */
function idAt(micros: number): IdSource {
  return { nowMicros: () => micros, suffix: () => '0000000000aa' };
}

const pick = (s: RequestStatus) => {
  const { id, state, position, aborting } = s;
  return { id, state, position, aborting };
};

t.test('no server: requests in requested/ are numbered in id order', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const a = await client.enqueue('a');
  const b = await client.enqueue('b');
  const c = await client.enqueue('c');
  const now = Date.now();
  const status = readSpoolStatus(spool, now);
  t.equal(status.spool, spool);
  t.equal(status.server, null, 'no lock: no server');
  t.strictSame(status.counts, { requested: 3, pending: 0, running: 0, complete: 0, aborting: 0 });
  t.strictSame(status.requests.map(pick), [
    { id: a, state: 'requested', position: 1, aborting: undefined },
    { id: b, state: 'requested', position: 2, aborting: undefined },
    { id: c, state: 'requested', position: 3, aborting: undefined },
  ]);
  t.equal(status.requests[0]!.submittedAt, requestIdTimeMs(a), 'submittedAt comes from the id');
  t.ok(status.requests.every((r) => r.runningSeconds === undefined && r.waitingSeconds === undefined && r.pid === undefined));
});

t.test('a served spool: waiting, running, aborting and complete entries', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const a = await client.enqueue('a');
  const b = await client.enqueue('b');

  // No watcher and a slow rescan: requests enqueued after the start stay in requested/
  // (the start-up scan admits a and b); the task manager's wake-ups still run ticks.
  const { manager, started, finish } = blockingManager(1);
  const { server } = startServer(t, manager, { spool, watch: false, rescanIntervalMs: 600_000 });
  await waitFor(() => started.includes(a), 'a to start');
  t.strictSame(server.counts, { pending: 1, running: 1 });

  // e slots in between a and b by its id, though it is in requested/ and b in pending/.
  const e = await new WorkQueueClient({ spool, idSource: idAt(Number(b.slice(0, 16)) - 1) }).enqueue('e');
  const c = await client.enqueue('c');
  const d = await client.enqueue('d');
  await client.abort(c);
  t.strictSame(spoolContents(spool).pending, [b], 'b was admitted');
  t.strictSame(spoolContents(spool).requested, [e, c, d].sort(), 'the later ones were not');

  const runningSince = lstatSync(join(spool, 'running', a)).ctimeMs;
  let status = readSpoolStatus(spool, runningSince + 7_000);
  t.ok(status.server, 'the lock names a server');
  t.equal(status.server?.pid, process.pid);
  t.equal(status.server?.host, hostname());
  t.equal(status.server?.maxTasks, 1);
  t.equal(status.server?.alive, true);
  t.strictSame(status.counts, { requested: 3, pending: 1, running: 1, complete: 0, aborting: 1 });
  t.strictSame(status.requests.map(pick), [
    { id: e, state: 'requested', position: 1, aborting: undefined },
    { id: b, state: 'pending', position: 2, aborting: undefined },
    { id: c, state: 'requested', position: 3, aborting: true },
    { id: d, state: 'requested', position: 4, aborting: undefined },
    { id: a, state: 'running', position: undefined, aborting: undefined },
  ]);
  const running = status.requests.find((r) => r.id === a)!;
  t.equal(running.runningSeconds, 7, 'running for the seconds since it moved to running/');
  t.equal(running.pid, undefined, 'an in-process task has no pid');

  finish(a);
  await waitFor(() => started.includes(b), 'b to start once a is done');
  const completeSince = lstatSync(join(spool, 'complete', a)).ctimeMs;
  status = readSpoolStatus(spool, completeSince + 5_000);
  t.strictSame(status.counts, { requested: 3, pending: 0, running: 1, complete: 1, aborting: 1 });
  t.strictSame(status.requests.map(pick), [
    { id: e, state: 'requested', position: 1, aborting: undefined },
    { id: c, state: 'requested', position: 2, aborting: true },
    { id: d, state: 'requested', position: 3, aborting: undefined },
    { id: b, state: 'running', position: undefined, aborting: undefined },
    { id: a, state: 'complete', position: undefined, aborting: undefined },
  ]);
  const complete = status.requests.find((r) => r.id === a)!;
  t.equal(complete.waitingSeconds, 5, 'waiting to be claimed since it reached complete/');
  t.equal(complete.runningSeconds, undefined);

  t.equal(await client.wait(a), `done ${a}`, 'the result listed is the real one');
  t.notOk(readSpoolStatus(spool).requests.some((r) => r.id === a), 'a claimed result is no longer listed');
});

t.test('a request that is not an id is not listed', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'spool');
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const a = await client.enqueue('a');
  writeFileSync(join(spool, 'requested', '.editor-swap'), '');
  writeFileSync(join(spool, 'pending', 'README'), '');
  writeFileSync(join(spool, 'aborting', 'junk'), '');
  const status = readSpoolStatus(spool);
  t.strictSame(status.requests.map((r) => r.id), [a]);
  t.strictSame(status.counts, { requested: 1, pending: 0, running: 0, complete: 0, aborting: 0 });
});

t.test('the lock', async (t) => {
  t.test('a lock naming a dead process of this host: alive is false', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    const paths = openSpool(spool);
    const pid = deadPid();
    const startedAt = Date.now() - 60_000;
    writeFileSync(paths.lockFile, JSON.stringify({ pid, host: hostname(), startedAt, info: { maxTasks: 3 } }));
    const status = readSpoolStatus(spool, startedAt + 90_000);
    t.strictSame(status.server, { pid, host: hostname(), startedAt, uptimeSeconds: 90, maxTasks: 3, alive: false });
  });

  t.test('a lock held by a live process of this host: alive is true', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    const paths = openSpool(spool);
    const lock = acquireLock(paths);
    t.teardown(() => lock.release());
    const status = readSpoolStatus(spool);
    t.equal(status.server?.alive, true);
    t.equal(status.server?.maxTasks, null, 'no maxTasks in the lock: null');
  });

  t.test('a lock naming a live process that does not hold it (a reused pid): alive is false', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    const paths = openSpool(spool);
    writeFileSync(paths.lockFile, JSON.stringify({ pid: process.pid, host: hostname(), startedAt: Date.now(), info: {} }));
    t.equal(readSpoolStatus(spool).server?.alive, false);
  });

  t.test('a live pid but another boot id: alive is false (the machine rebooted)', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    const paths = openSpool(spool);
    writeFileSync(paths.lockFile, JSON.stringify({ pid: process.pid, host: hostname(), bootId: 'not-this-boot', startedAt: Date.now() }));
    t.equal(readSpoolStatus(spool).server?.alive, false);
  });

  t.test('a lock from another host is never judged dead', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    const paths = openSpool(spool);
    writeFileSync(paths.lockFile, JSON.stringify({ pid: deadPid(), host: `not-${hostname()}`, startedAt: Date.now() }));
    t.equal(readSpoolStatus(spool).server?.alive, true);
  });

  t.test('an unreadable lock reads as no server', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    const paths = openSpool(spool);
    writeFileSync(paths.lockFile, 'not json');
    t.equal(readSpoolStatus(spool).server, null);
  });

  t.test('after the server stops, the lock is gone', async (t) => {
    const spool = join(realpathSync(t.testdir()), 'spool');
    const { manager } = blockingManager(2);
    const { stop } = startServer(t, manager, { spool });
    await waitFor(() => readSpoolStatus(spool).server !== null, 'the server to take the lock');
    t.equal(readSpoolStatus(spool).server?.maxTasks, 2);
    await stop();
    t.equal(readSpoolStatus(spool).server, null);
  });
});

t.test('a spool that does not exist is an error, not created', async (t) => {
  const spool = join(realpathSync(t.testdir()), 'nowhere');
  t.throws(() => readSpoolStatus(spool), SpoolError);
  t.throws(() => readSpoolStatus(spool), { code: 'ERR_SPOOL' });
});
