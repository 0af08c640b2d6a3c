/**
 * Resource faults: a full disk (a real small tmpfs where this machine allows
 * mounting one, and injected ENOSPC everywhere), EMFILE, permission denied on
 * each directory, and clocks stepped backwards.
 *
 * The policy: the server logs a fault once (not at every tick or rescan), keeps
 * running, starts no task whose result it could not write, and recovers by
 * itself when the fault goes away; no request is lost and none runs twice.
 * Faults a real directory cannot produce (EMFILE; EACCES for root) are injected
 * into node:fs under the server only (test/fixtures/faulty-fs.ts): clients keep working.
 */
import t, { type Test } from 'tap';
import { closeSync, existsSync, openSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UnknownRequestError } from '../src/errors.js';
import { WorkQueueServer } from '../src/server.js';
import { InProcessTaskManager } from '../src/task-manager/in-process.js';
import { openSpool, SPOOL_DIRS } from '../src/spool/layout.js';
import * as sfs from '../src/spool/fs.js';
import { MAX_ID_AHEAD_MICROS, type IdSource } from '../src/spool/request-id.js';
import { spoolContents, startServer, waitFor } from './fixtures/helpers.js';
import { canMountTmpfs, mountTmpfs } from './fixtures/tmpfs.js';
import { FaultSwitch, loadFaultyServer, startServerFrom, type Fault } from './fixtures/faulty-fs.js';
import { GatedManager, RecordingLogger, spoolIn, testClient, trackSettled, watchEscapes } from './fixtures/hostile.js';

const STATE_DIRS = ['requested', 'pending', 'running', 'complete', 'aborting', 'tmp'] as const;

interface ScenarioOptions {
  spool: string;
  ServerClass?: typeof WorkQueueServer;
  /** Turns the fault on and off. */
  on(): void;
  off(): void;
  durable?: boolean;
  /** Whether clients can enqueue and abort while the fault lasts (not on a really full disk). */
  clientsWorkDuringFault?: boolean;
  /** Whether the fault stops results from being written (then no new task may start meanwhile). */
  blocksResults?: boolean;
  /** For faults only housekeeping meets (tmp/): how often it runs, so it runs while the fault lasts. */
  housekeepingIntervalMs?: number;
}

/**
 * Two requests running and two pending when the fault starts; during it the
 * two running ones finish (one normally, one by an abort), a pending one is
 * aborted and two more are enqueued. After it, every request that was not
 * aborted gets its result, having run exactly once.
 */
async function survivesFault(t: Test, o: ScenarioOptions): Promise<RecordingLogger> {
  const escaped = watchEscapes(t);
  const logger = new RecordingLogger();
  t.teardown(() => {
    if (!t.passing()) t.comment(logger.lines.filter((l) => l.level !== 'debug' && l.message !== 'tick').map((l) => `${l.level} ${l.message} ${JSON.stringify(l.fields)}`).join('\n'));
  });
  const manager = new GatedManager(2, async (req: string, ctx) => {
    if (req === 'abort me while running') await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve));
    return { echo: req, pad: 'x'.repeat(8000) };
  });
  const { done, stop } = startServerFrom(t, o.ServerClass ?? WorkQueueServer, manager, { spool: o.spool, rescanIntervalMs: 20, logger, durable: o.durable === true, ...(o.housekeepingIntervalMs === undefined ? {} : { housekeepingIntervalMs: o.housekeepingIntervalMs }) });
  const settled = trackSettled(done);
  const client = testClient(t, o.spool, { durable: o.durable === true });
  const [first, abortRunning, second, abortPending] = [
    await client.enqueue('first'),
    await client.enqueue('abort me while running'),
    await client.enqueue('second'),
    await client.enqueue('abort me while pending'),
  ] as [string, string, string, string];
  await waitFor(() => manager.waiting === 2 && spoolContents(o.spool).pending.length === 2, 'two running, two pending');

  o.on();
  const clientActs = async (): Promise<string[]> => {
    await client.abort(abortRunning);
    await client.abort(abortPending);
    return [await client.enqueue('third'), await client.enqueue('fourth')];
  };
  let later = o.clientsWorkDuringFault === false ? [] : await clientActs();
  manager.release(); // `first` finishes under the fault
  // Once a result could not be written, nothing new starts (durable mode learns it at its commit, a moment later).
  let startedWhenKnown = Infinity;
  if (o.blocksResults === true) {
    // The fault of a step that stops new tasks: the results', or the spool check's (which then touches nothing);
    // not another step's (server.state, say, fails under the same fault and may be logged first).
    await waitFor(() => logger.lines.some((l) => l.level === 'error' && /^(writing results|durable commit of results|spool check) failed/.test(l.message)), 'the fault to be logged');
    startedWhenKnown = manager.calls.length;
  }
  await manager.moreTicks(30); // many ticks and rescans under the fault
  t.notOk(settled(), 'the server keeps running under the fault');
  const errors = logger.lines.filter((l) => l.level === 'error');
  t.ok(errors.length <= 10, `each failing step is logged once, not at every tick or rescan (${errors.length} error lines)`);
  if (o.blocksResults === true) {
    // Default mode knows at once (in the tick that reaped `first`): only the first two ever started.
    const limit = o.durable === true ? startedWhenKnown : 2;
    t.ok(manager.calls.length <= limit, `no new task starts while results cannot be written (${manager.calls.length} started)`);
  }

  o.off();
  if (o.clientsWorkDuringFault === false) later = await clientActs();
  const expected = { first, second, third: later[0]!, fourth: later[1]! };
  for (const [body, id] of Object.entries(expected)) {
    const result = (await client.wait(id, { timeoutMs: 20_000 })) as { echo: string };
    t.equal(result.echo, body, `${body}: its result arrives after the fault`);
  }
  for (const id of [abortRunning, abortPending]) await t.rejects(client.wait(id, { timeoutMs: 20_000 }), UnknownRequestError, 'an abort filed during the fault still wins');
  t.strictSame([...manager.calls].sort(), ['abort me while running', 'first', 'fourth', 'second', 'third'], 'every request ran exactly once; the aborted pending one never ran');
  await waitFor(() => STATE_DIRS.every((d) => spoolContents(o.spool)[d]!.length === 0), 'an empty spool');
  t.notOk(settled(), 'still serving');
  t.strictSame(escaped, [], 'nothing escaped as an uncaught exception');
  await stop();
  return logger;
}

/** Mounts a small tmpfs for a spool, if this machine lets us; unmounted at the end of the test. */

/** Writes `path` until the file system is full. */
function fillDisk(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}


t.test('disk full, for real: a small tmpfs', { skip: !canMountTmpfs && 'cannot mount a tmpfs here (not root?): the injected ENOSPC tests below cover it' }, async (t) => {
  for (const durable of [false, true]) {
    await t.test(durable ? 'durable' : 'default', async (t) => {
      const mount = mountTmpfs(t, '1m');
      const spool = join(mount, 'spool');
      const filler = join(mount, 'filler');
      await survivesFault(t, {
        spool,
        durable,
        on: () => fillDisk(filler),
        off: () => unlinkSync(filler),
        clientsWorkDuringFault: false, // clients cannot write on a full disk either
        blocksResults: true,
      });
    });
  }
});

t.test('disk full, injected (ENOSPC on every write under the spool)', async (t) => {
  for (const durable of [false, true]) {
    await t.test(durable ? 'durable' : 'default', async (t) => {
      const { spool } = spoolIn(t);
      const faults = new FaultSwitch();
      const { WorkQueueServer: FaultyServer } = await loadFaultyServer(t, faults);
      await survivesFault(t, {
        spool,
        durable,
        ServerClass: FaultyServer,
        on: () => (faults.fault = { code: 'ENOSPC', dir: spool }),
        off: () => (faults.fault = undefined),
        blocksResults: true,
      });
      t.ok(faults.injected > 0, 'the fault was hit');
    });
  }
});

t.test('the injected faults reach every module that touches the spool, not only spool/fs.ts', async (t) => {
  const { spool } = spoolIn(t);
  const faults = new FaultSwitch();
  faults.trace(spool);
  const { WorkQueueServer: FaultyServer } = await loadFaultyServer(t, faults);
  const logger = new RecordingLogger();
  const { stop } = startServerFrom(t, FaultyServer, new InProcessTaskManager(async () => 'ok', { maxTasks: 1 }), { spool, logger });
  await waitFor(() => logger.find('server started').length > 0, 'the server to start');
  const client = testClient(t, spool);
  t.equal(await client.run({ n: 1 }, { timeoutMs: 30_000 }), 'ok', 'a request runs through the faulty modules (the fault is off)');
  await stop();
  // Named by file, not by directory: where these modules live may change, that they are covered may not.
  // The door (spool/fs.ts) calls node:fs from its parts in fs/: entries.ts, read.ts, write.ts (the result), lock-file.ts.
  for (const name of ['entries.ts', 'read.ts', 'write.ts', 'lock-file.ts', 'layout.ts', 'lock.ts', 'mount.ts', 'layout-guard.ts', 'directory-watchers.ts']) {
    t.ok(faults.callers.has(name), `${name} reaches the spool through the faulty node:fs`);
  }
});

t.test('EMFILE: no file descriptor left for anything under the spool', async (t) => {
  const { spool } = spoolIn(t);
  const faults = new FaultSwitch();
  const { WorkQueueServer: FaultyServer } = await loadFaultyServer(t, faults);
  const logger = await survivesFault(t, {
    spool,
    ServerClass: FaultyServer,
    on: () => (faults.fault = { code: 'EMFILE', dir: spool }),
    off: () => (faults.fault = undefined),
    blocksResults: true,
  });
  t.ok(faults.injected > 0, 'the fault was hit');
  t.strictSame(logger.find(/lost the lock|removed or replaced/), [], 'an unreadable lock is not a lost lock');
});

t.test('permission denied on each directory of the spool, and on the spool itself', async (t) => {
  for (const dir of ['.', ...SPOOL_DIRS]) {
    await t.test(dir === '.' ? 'the spool directory' : `${dir}/`, async (t) => {
      const { spool } = spoolIn(t);
      const faults = new FaultSwitch();
      const { WorkQueueServer: FaultyServer } = await loadFaultyServer(t, faults);
      const fault: Fault = { code: 'EACCES', dir: dir === '.' ? spool : join(spool, dir) };
      const logger = await survivesFault(t, {
        spool,
        ServerClass: FaultyServer,
        on: () => (faults.fault = fault),
        off: () => (faults.fault = undefined),
        // Results are staged in running/ and renamed into complete/ (tmp/ is the clients').
        blocksResults: dir === 'complete' || dir === 'running' || dir === '.',
        // The server meets tmp/ only in housekeeping, which otherwise runs once at start and may
        // finish before the fault begins (how soon depends on how long the start took).
        ...(dir === 'tmp' ? { housekeepingIntervalMs: 20 } : {}),
      });
      t.ok(faults.injected > 0, 'the fault was hit');
      t.strictSame(logger.find(/lost the lock|removed or replaced|rejected/), [], 'a fault is not mistaken for a lost spool or a broken request');
    });
  }
});

/** An id source whose clock follows `micros(i)` for the i-th id, with a fixed suffix (so a repeated time repeats the id). */
function scriptedClock(micros: (i: number) => number): IdSource {
  let i = 0;
  return { nowMicros: () => micros(i++), suffix: () => '0123456789ab' };
}

t.test('a client clock stepped backwards mid-run, by less than MAX_ID_AHEAD_MICROS: no duplicate or reordered ids, and FIFO holds', async (t) => {
  const { spool } = spoolIn(t);
  const base = Date.now() * 1000;
  const step = MAX_ID_AHEAD_MICROS * 0.4; // 2 s
  // Forward, then 2 s back, then standing still, then 4 s back, then forward again.
  const clock = scriptedClock((i) => (i < 10 ? base + i * 1000 : i < 20 ? base - step + i : i < 30 ? base - step : i < 40 ? base - 2 * step + i : base + i * 1000));
  const manager = new GatedManager(1, (req: number) => req);
  startServer(t, manager, { spool, rescanIntervalMs: 20 });
  const client = testClient(t, spool, { idSource: clock });
  const ids: string[] = [];
  for (let i = 0; i < 50; i++) {
    ids.push(await client.enqueue(i));
    if (i === 0) await waitFor(() => manager.waiting === 1, 'the first request running (and holding the only slot)');
  }
  t.equal(new Set(ids).size, ids.length, 'no duplicates');
  t.strictSame([...ids].sort(), ids, 'ids sort in the order they were made');
  const stamps = ids.map((id) => Number(id.slice(0, 16)));
  t.ok(stamps.every((s, i) => i === 0 || s > stamps[i - 1]!), 'timestamps strictly increase');
  manager.release();
  for (const [i, id] of ids.entries()) t.equal(await client.wait(id), i);
  t.strictSame(manager.calls, ids.map((_, i) => i), 'run in enqueue order');
});

t.test('a client clock stepped back by more than MAX_ID_AHEAD_MICROS (an hour): ids follow the clock again, none repeats, and the server runs them in id order', async (t) => {
  const { spool } = spoolIn(t);
  const base = Date.now() * 1000;
  const hour = 3600e6;
  // An hour ahead for the first ten ids, then corrected: the later ids are an hour earlier.
  const readings = (i: number): number => (i < 10 ? base + hour + i * 1000 : base + i * 1000);
  const clock = scriptedClock(readings);
  const manager = new GatedManager(1, (req: number) => req);
  startServer(t, manager, { spool, rescanIntervalMs: 20 });
  const client = testClient(t, spool, { idSource: clock });
  const ids: string[] = [];
  for (let i = 0; i < 20; i++) {
    ids.push(await client.enqueue(i));
    if (i === 0) await waitFor(() => manager.waiting === 1, 'the first request running (and holding the only slot)');
  }
  t.equal(new Set(ids).size, ids.length, 'no duplicates');
  const stamps = ids.map((id) => Number(id.slice(0, 16)));
  t.ok(stamps.every((s, i) => s - readings(i) <= MAX_ID_AHEAD_MICROS), 'no id runs more than MAX_ID_AHEAD_MICROS ahead of its clock');
  t.ok(stamps[10]! < stamps[9]!, 'after the correction, ids follow the clock back');
  manager.release();
  for (const [i, id] of ids.entries()) t.equal(await client.wait(id), i);
  const byId = ids.map((id, i) => [id, i] as const).sort(([a], [b]) => (a < b ? -1 : 1)).map(([, i]) => i);
  t.strictSame(manager.calls.slice(1), byId.filter((i) => i !== 0), 'the queued ones ran in id order: those made after the correction first');
});

t.test("the server's clock stepped backwards: heartbeats and housekeeping keep their period", async (t) => {
  const { spool } = spoolIn(t);
  let offset = 2 * 3600_000; // two hours ahead: what is planted now is older than the leftover age (1 h)
  const logger = new RecordingLogger();
  const manager = new GatedManager(1, (r) => r, false);
  startServer(t, manager, { spool, rescanIntervalMs: 20, heartbeatIntervalMs: 40, housekeepingIntervalMs: 40, now: () => Date.now() + offset, logger });
  const heartbeats = (): number => logger.find('heartbeat').length;
  await waitFor(() => heartbeats() >= 2, 'heartbeats');
  offset = 1.5 * 3600_000; // half an hour back (still ahead of the leftover age)
  const from = heartbeats();
  writeFileSync(join(spool, 'tmp', 'stale-temp'), 'left by a dead writer');
  await waitFor(() => heartbeats() >= from + 3, 'heartbeats after the step');
  await waitFor(() => !existsSync(join(spool, 'tmp', 'stale-temp')), 'housekeeping after the step');
  t.pass('heartbeats and housekeeping go on after the clock stepped back');
  t.equal(await testClient(t, spool).run('still'), 'still');
});

t.test('a move into a directory that is gone is a fault, not a request that vanished', async (t) => {
  const { spool } = spoolIn(t);
  const paths = openSpool(spool);
  writeFileSync(join(paths.dirs.pending, 'x'), 'request');
  rmSync(paths.dirs.running, { recursive: true });
  t.throws(() => sfs.moveEntry(join(paths.dirs.pending, 'x'), join(paths.dirs.running, 'x')), { code: 'ENOENT' }, 'thrown: the caller keeps the request in its books');
  t.ok(existsSync(join(paths.dirs.pending, 'x')), 'and the request is where it was');
  t.equal(sfs.moveEntry(join(paths.dirs.pending, 'gone'), join(paths.dirs.complete, 'gone')), false, 'a source that is gone is the race moveEntry tolerates');
});

t.test('an abort the server cannot read yet still wins: nothing starts while aborting/ is unreadable', async (t) => {
  const { spool } = spoolIn(t);
  const faults = new FaultSwitch();
  const { WorkQueueServer: FaultyServer } = await loadFaultyServer(t, faults);
  const manager = new GatedManager(1);
  startServerFrom(t, FaultyServer, manager, { spool, rescanIntervalMs: 20 });
  const client = testClient(t, spool);
  const first = await client.enqueue('first');
  const aborted = await client.enqueue('aborted while queued');
  await waitFor(() => manager.waiting === 1 && spoolContents(spool).pending.length === 1, 'one running, one queued');
  faults.fault = { code: 'EACCES', dir: join(spool, 'aborting') };
  await client.abort(aborted);
  manager.release(); // a slot frees while the abort cannot be read
  t.strictSame(await client.wait(first, { timeoutMs: 10_000 }), { echo: 'first' });
  await manager.moreTicks(10);
  t.strictSame(manager.calls, ['first'], 'the aborted request did not take the free slot');
  faults.fault = undefined;
  await t.rejects(client.wait(aborted, { timeoutMs: 10_000 }), UnknownRequestError, 'the abort is carried out once it can be read');
  t.strictSame(manager.calls, ['first'], 'and the request never ran');
});

t.test('a queued request the server cannot read for a fault (not its own fault) waits in line and runs once it can', async (t) => {
  for (const dir of ['pending', 'running'] as const) {
    await t.test(`EACCES on ${dir}/`, async (t) => {
      const { spool } = spoolIn(t);
      const faults = new FaultSwitch();
      const { WorkQueueServer: FaultyServer } = await loadFaultyServer(t, faults);
      const manager = new GatedManager(2);
      manager.limit = 1;
      startServerFrom(t, FaultyServer, manager, { spool, rescanIntervalMs: 20 });
      const client = testClient(t, spool);
      const [first, second] = [await client.enqueue('first'), await client.enqueue('second')];
      await waitFor(() => manager.waiting === 1 && spoolContents(spool).pending.length === 1, 'one running, one queued');
      // The next start reads pending/<id> and moves it to running/: either fails now.
      faults.fault = { code: 'EACCES', dir: join(spool, dir) };
      manager.limit = 2; // a free slot, without a result to write
      await client.enqueue('nudge'); // an event, so the server ticks and tries
      await manager.moreTicks(10);
      t.strictSame(manager.calls, ['first'], 'nothing could start');
      faults.fault = undefined;
      manager.release();
      t.strictSame(await client.wait(second, { timeoutMs: 10_000 }), { echo: 'second' }, 'the request was kept in line, and runs');
      t.strictSame(await client.wait(first, { timeoutMs: 10_000 }), { echo: 'first' });
    });
  }
});
