/**
 * The ancestor's scenario matrix, in our words: a real WorkQueueServer and real
 * WorkQueueClients on a temp spool, the server driven by a scripted TaskManager
 * (the test decides capacity and when tasks finish) or an InProcessTaskManager.
 */
import t, { type Test } from 'tap';
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Packr } from 'msgpackr';
import { WorkQueueClient } from '../src/client.js';
import { SpoolLockedError, TaskFailedError, UnknownRequestError, WorkQueueCancelledError, WorkQueueTimeoutError } from '../src/errors.js';
import { WorkQueueServer, resolveServerOptions, type WorkQueueServerOptions } from '../src/server.js';
import { encodeRequest, encodeResult } from '../src/spool/codec.js';
import { FAR_FUTURE_ID_MS, formatRequestId, type IdSource } from '../src/spool/request-id.js';
import { InProcessTaskManager } from '../src/task-manager/in-process.js';
import { LoadAwareTaskManager } from '../src/task-manager/load-aware.js';
import type { TaskManager, TaskOutcome } from '../src/task-manager/types.js';
import { spoolContents, startServer, waitFor } from './fixtures/helpers.js';
import { ScriptedTaskManager } from './fixtures/scripted-manager.js';
import { RecordingLogger } from './fixtures/hostile.js';

const STATE_DIRS = ['requested', 'pending', 'running', 'complete', 'aborting', 'tmp'] as const;
const EMPTY = Object.fromEntries(STATE_DIRS.map((d) => [d, []]));


/** Resolves once the server has run two more ticks, so it has looked at everything written before the call. */
async function serverHasLooked(manager: ScriptedTaskManager): Promise<void> {
  const from = manager.ticks;
  await waitFor(() => manager.ticks >= from + 2, 'two more server ticks');
}

function serverOptions(spool: string, extra: Partial<WorkQueueServerOptions> = {}): WorkQueueServerOptions {
  return { spool, rescanIntervalMs: 50, ...extra };
}

function makeClient(t: Test, spool: string, extra: { idSource?: IdSource; watch?: boolean } = {}): WorkQueueClient {
  const client = new WorkQueueClient({ spool, recheckIntervalMs: 50, ...extra });
  t.teardown(() => client.close());
  return client;
}

/**
 * A fresh spool path in the test's own directory. tap removes that directory
 * before running teardowns registered after the first testdir() call, which would
 * pull the spool from under a running server; registering a teardown first makes
 * the servers stop (startServer's teardown) before the directory goes.
 */
function spoolDir(t: Test): string {
  t.teardown(() => {});
  return join(t.testdir(), 'spool');
}

async function enqueueMany(client: WorkQueueClient, n: number, body: (i: number) => unknown = (i) => ({ n: i })): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(await client.enqueue(body(i)));
  return ids;
}

async function waitEmpty(spool: string, what: string): Promise<void> {
  await waitFor(() => STATE_DIRS.every((d) => spoolContents(spool)[d]!.length === 0), `an empty spool: ${what}`);
}

/** An id source whose clock stands still and whose randomness cycles through `suffixes`. */
function stuckSource(micros: number, suffixes: string[]): IdSource {
  let i = 0;
  return { nowMicros: () => micros, suffix: () => suffixes[i++ % suffixes.length]! };
}

t.test('server options are validated and completed', async (t) => {
  const resolved = resolveServerOptions({ spool: '/s' });
  t.match(resolved, { spool: '/s', interrupted: 'rerun', watch: true, rescanIntervalMs: 2000, abortTombstoneMs: 600_000, shutdownGraceMs: 0, durable: false });
  t.equal(resolveServerOptions({ spool: '/s', rescanIntervalMs: undefined }).rescanIntervalMs, 2000, 'undefined means the default');
  t.equal(resolveServerOptions({ spool: '/s', interrupted: 'fail' }).interrupted, 'fail');
  t.equal(resolved.requestOwners, undefined, 'by default every request runs, whoever filed it');
  t.strictSame(resolveServerOptions({ spool: '/s', requestOwners: [0] }).requestOwners, [0]);
  const bad: Array<Partial<WorkQueueServerOptions>> = [
    { spool: '' },
    { interrupted: 'retry' as 'fail' },
    { rescanIntervalMs: 0 },
    { rescanIntervalMs: Number.NaN },
    { abortTombstoneMs: -1 },
    { shutdownGraceMs: Infinity },
    { heartbeatIntervalMs: '5' as unknown as number },
    { requestOwners: [-1] },
    { requestOwners: 0 as unknown as number[] },
  ];
  for (const options of bad) {
    t.throws(() => resolveServerOptions({ spool: '/s', ...options }), { name: 'InvalidOptionError', code: 'ERR_INVALID_OPTION' }, JSON.stringify(options));
  }
  t.throws(() => new WorkQueueServer({ spool: '/s', rescanIntervalMs: -5 }), { message: /Expected `rescanIntervalMs` to be a finite number >= 1 and <= 2147483647, got `-5` \(number\)/ });
  t.throws(() => new WorkQueueServer({ spool: '/s', rescanIntervalMs: 2 ** 31 }), { message: /Expected `rescanIntervalMs` to be a finite number >= 1 and <= 2147483647, got `2147483648` \(number\)/ }, 'a period setInterval cannot hold');
});

t.test('requestOwners: a request whose file another uid owns gets a rejected result and never runs', async (t) => {
  const spool = spoolDir(t);
  const me = process.getuid?.() ?? 0;
  const ran: unknown[] = [];
  startServer(t, new InProcessTaskManager((request) => void ran.push(request)), serverOptions(spool, { requestOwners: [me + 1] }));
  const client = new WorkQueueClient({ spool });
  t.teardown(() => client.close());
  const id = await client.enqueue('mine');
  t.match(await client.waitForResult(id, { timeoutMs: 10_000 }), {
    ok: false,
    status: 'rejected',
    error: { name: 'ForeignRequestError', code: 'ERR_FOREIGN_REQUEST', message: `request ${id} was filed by uid ${me}; this server runs only requests filed by uid ${me + 1}` },
  });
  t.strictSame(ran, [], 'it never ran');
});

t.test('requestOwners: a request met mid-publish (its temp name still in tmp/) starts once the temp name goes, without waiting for a rescan', async (t) => {
  const spool = spoolDir(t);
  const me = process.getuid?.() ?? 0;
  const ran: unknown[] = [];
  // No rescan for an hour: only the server's own re-check of a waiting publish can start it.
  startServer(t, new InProcessTaskManager((request) => void ran.push(request)), serverOptions(spool, { requestOwners: [me], rescanIntervalMs: 3_600_000 }));
  const client = makeClient(t, spool);
  await waitFor(() => existsSync(join(spool, 'tmp')), 'the spool is made');
  // A request file with its temp name, published by link(2) as a client does, the temp name left for a while.
  const id = formatRequestId(Date.now() * 1000, 'a1b2c3d4e5f6');
  const temp = join(spool, 'tmp', `${id}.publishing`);
  writeFileSync(temp, encodeRequest({ body: 'mine', submittedAt: Date.now(), client: { pid: process.pid, host: 'test' } }));
  linkSync(temp, join(spool, 'requested', id));
  await waitFor(() => spoolContents(spool).pending!.includes(id), 'the server took it in, and parked it while it has a second name');
  t.strictSame(ran, [], 'it does not run while it has a second name');
  unlinkSync(temp);
  t.match(await client.waitForResult(id, { timeoutMs: 20_000 }), { ok: true, status: 'normal' });
  t.strictSame(ran, ['mine'], 'it ran once the publish ended');
});

t.test('capacity decides how many start, and they start oldest first', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(0);
  const { server } = startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const ids = await enqueueMany(client, 5, (i) => ({ job: i }));

  await waitFor(() => spoolContents(spool).pending.length === 5, 'all five admitted to pending/');
  await serverHasLooked(manager);
  t.strictSame(manager.started, [], 'capacity 0: nothing starts');
  t.strictSame(server.counts, { pending: 5, running: 0 });

  manager.setCapacity(1);
  await waitFor(() => manager.started.length >= 1, 'a start');
  await serverHasLooked(manager);
  t.strictSame(manager.startedIds, [ids[0]], 'capacity 1: exactly the oldest starts');
  t.strictSame(manager.started[0]!.request, { job: 0 }, 'with the body the client sent');
  t.strictSame(spoolContents(spool).running, [ids[0]]);
  t.strictSame(spoolContents(spool).pending, ids.slice(1));

  manager.setCapacity(3);
  await waitFor(() => manager.started.length >= 3, 'three started');
  await serverHasLooked(manager);
  t.strictSame(manager.startedIds, ids.slice(0, 3), 'more capacity: the next ones in id order');
  t.strictSame(server.counts, { pending: 2, running: 3 });

  manager.finish(ids[1]!); // finishing out of order frees one slot
  await waitFor(() => manager.started.length >= 4, 'the fourth start');
  await serverHasLooked(manager);
  t.strictSame(manager.startedIds, ids.slice(0, 4), 'a freed slot goes to the oldest pending');
  t.equal(await client.wait(ids[1]!), `done ${ids[1]}`);

  for (const id of [ids[0]!, ids[2]!, ids[3]!]) manager.finish(id);
  await waitFor(() => manager.started.length === 5, 'the last start');
  manager.finish(ids[4]!);
  for (const id of ids.filter((_, i) => i !== 1)) t.equal(await client.wait(id), `done ${id}`);
  t.strictSame(manager.startedIds, ids, 'every request started once, in id order');
  await waitEmpty(spool, 'after every result was claimed');
});

t.test('many requests: distinct ids in order, run in that order, each gets its own result', async (t) => {
  const spool = spoolDir(t);
  const order: number[] = [];
  const manager = new InProcessTaskManager(async (req: { n: number }) => {
    order.push(req.n);
    return { doubled: req.n * 2 };
  }, { maxTasks: 4 });
  const client = makeClient(t, spool);
  const ids = await enqueueMany(client, 150);
  t.equal(new Set(ids).size, ids.length, 'no duplicates');
  t.strictSame([...ids].sort(), ids, 'lexical order is enqueue order');
  t.strictSame(spoolContents(spool).requested, ids, 'all published');

  startServer(t, manager, serverOptions(spool));
  const values = await Promise.all(ids.map((id) => client.wait(id)));
  t.strictSame(values, ids.map((_, n) => ({ doubled: n * 2 })));
  t.strictSame(order, ids.map((_, n) => n), 'started in FIFO (id) order');
  await waitEmpty(spool, 'after 150 requests');
});

t.test('an id far in the future waits behind every earlier id (FIFO by id), and the server warns about it once', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(0);
  const logger = new RecordingLogger();
  startServer(t, manager, serverOptions(spool, { logger }));
  const yearAhead = makeClient(t, spool, { idSource: { nowMicros: () => (Date.now() + 365 * 24 * 3600_000) * 1000, suffix: () => 'aaaaaaaaaaaa' } });
  const far = await yearAhead.enqueue('from a clock a year ahead');
  const client = makeClient(t, spool);
  const later = await enqueueMany(client, 2);
  await waitFor(() => spoolContents(spool).pending.length === 3, 'all three admitted');
  manager.setCapacity(1);
  for (const id of later) {
    await waitFor(() => manager.startedIds.includes(id), `${id} to start`);
    manager.finish(id);
  }
  await waitFor(() => manager.startedIds.includes(far), 'the far-future request to start');
  t.strictSame(manager.startedIds, [...later, far], 'the requests that arrived later but carry earlier ids ran first');
  const warnings = logger.find(/far ahead of the server's clock/);
  t.equal(warnings.length, 1, 'one warning, for the far-future id only');
  t.equal(warnings[0]?.fields.id, far);
  t.ok(Number(warnings[0]?.fields.aheadSeconds) * 1000 > FAR_FUTURE_ID_MS, 'with how far ahead it is');
  manager.finish(far);
  t.equal(await yearAhead.wait(far), `done ${far}`);
});

t.test('colliding ids: every client still gets a distinct id', async (t) => {
  const spool = spoolDir(t);
  const micros = 1_800_000_000_000_000;
  const suffixes = ['000000000000', '000000000001'];
  // One client: its generator never repeats, whatever the source says.
  const one = makeClient(t, spool, { idSource: stuckSource(micros, suffixes) });
  const fromOne = await enqueueMany(one, 20);
  t.equal(new Set(fromOne).size, 20, 'one client: distinct');
  t.strictSame([...fromOne].sort(), fromOne, 'one client: ordered');
  // Many clients with the same broken source (as separate processes would be): only
  // the file system keeps them apart.
  const fromMany: string[] = [];
  for (let i = 0; i < 10; i++) fromMany.push(await makeClient(t, spool, { idSource: stuckSource(micros, suffixes) }).enqueue({ client: i }));
  const all = [...fromOne, ...fromMany];
  t.equal(new Set(all).size, all.length, 'many clients: distinct');
  t.equal(spoolContents(spool).requested.length, all.length, 'each is its own file');
  const manager = new InProcessTaskManager((req: unknown) => req, { maxTasks: 2 });
  startServer(t, manager, serverOptions(spool));
  t.strictSame(await makeClient(t, spool).wait(fromMany[3]!), { client: 3 }, 'and each gets its own result');
});

t.test('a colliding id is refused even after the first request left requested/', async (t) => {
  const spool = spoolDir(t);
  const micros = 1_800_000_000_000_000;
  const manager = new ScriptedTaskManager(0);
  startServer(t, manager, serverOptions(spool));
  const first = await makeClient(t, spool, { idSource: stuckSource(micros, ['000000000000']) }).enqueue('first');
  await waitFor(() => spoolContents(spool).pending.includes(first), 'the first admitted to pending/');
  const second = await makeClient(t, spool, { idSource: stuckSource(micros, ['000000000000']) }).enqueue('second');
  t.not(second, first, 'the second request gets another id');
});

t.test('abort a request before the server starts: it never runs', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const [keep, drop] = await enqueueMany(client, 2);
  await client.abort(drop!);
  const manager = new ScriptedTaskManager(5);
  startServer(t, manager, serverOptions(spool));
  await waitFor(() => manager.started.length === 1 && spoolContents(spool).aborting.length === 0, 'the abort carried out');
  await serverHasLooked(manager);
  t.strictSame(manager.startedIds, [keep], 'only the other request started');
  t.strictSame(spoolContents(spool).pending, []);
  await t.rejects(client.wait(drop!), UnknownRequestError);
});

t.test('abort a pending request: it is removed and never starts', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(0);
  const { server } = startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const [a, b] = await enqueueMany(client, 2);
  await waitFor(() => spoolContents(spool).pending.length === 2, 'both pending');
  await client.abort(a!);
  await waitFor(() => spoolContents(spool).pending.length === 1 && spoolContents(spool).aborting.length === 0, 'the abort carried out');
  t.strictSame(spoolContents(spool).pending, [b]);
  t.strictSame(server.counts, { pending: 1, running: 0 });
  manager.setCapacity(2);
  await waitFor(() => manager.started.length === 1, 'b starts');
  await serverHasLooked(manager);
  t.strictSame(manager.startedIds, [b], 'the aborted request never starts');
  await t.rejects(client.wait(a!), UnknownRequestError);
});

t.test('abort a running request: the task is terminated and no result ever appears', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(1);
  const { server } = startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const [a, b] = await enqueueMany(client, 2);
  await waitFor(() => manager.started.length === 1, 'a starts');
  await client.abort(a!);
  await waitFor(() => manager.terminated.includes(a!), 'terminateTask called');
  await waitFor(() => spoolContents(spool).running.every((id) => id !== a) && spoolContents(spool).aborting.length === 0, 'running/ and aborting/ cleared');
  t.strictSame(manager.terminated, [a]);
  await waitFor(() => manager.started.length === 2, 'the freed slot goes to b');
  t.strictSame(manager.startedIds, [a, b]);
  manager.finishLate(a!); // even if the manager reports it anyway, it is discarded
  await serverHasLooked(manager);
  t.notOk(spoolContents(spool).complete.includes(a!), 'no result for the aborted request');
  t.strictSame(server.counts, { pending: 0, running: 1 });
  await t.rejects(client.wait(a!), UnknownRequestError);
  manager.finish(b!);
  t.equal(await client.wait(b!), `done ${b}`);
  await waitEmpty(spool, 'after the abort and the other result');
});

t.test('abort a complete request: its unclaimed result is removed', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(1);
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const id = await client.enqueue('x');
  await waitFor(() => manager.started.length === 1, 'started');
  manager.finish(id);
  await waitFor(() => spoolContents(spool).complete.includes(id), 'the result is published');
  await client.abort(id);
  await waitEmpty(spool, 'result and abort removed');
  t.strictSame(manager.terminated, [], 'nothing to terminate');
  await t.rejects(client.wait(id), UnknownRequestError);
});

t.test('abort an unknown id: harmless, kept as a tombstone until it expires', async (t) => {
  const spool = spoolDir(t);
  let now = 1_000_000;
  const manager = new ScriptedTaskManager(1);
  startServer(t, manager, serverOptions(spool, { abortTombstoneMs: 60_000, now: () => now }));
  const client = makeClient(t, spool);
  const ghost = formatRequestId(1_700_000_000_000_000, 'deadbeef0000');
  await client.abort(ghost);
  await client.abort(ghost); // twice is as good as once
  await serverHasLooked(manager);
  await serverHasLooked(manager);
  t.strictSame(spoolContents(spool).aborting, [ghost], 'kept as a tombstone');
  const id = await client.enqueue('still works');
  await waitFor(() => manager.started.length === 1, 'a normal request starts');
  manager.finish(id);
  t.equal(await client.wait(id), `done ${id}`, 'the server carries on');
  now += 60_000;
  await waitFor(() => spoolContents(spool).aborting.length === 0, 'the expired tombstone is dropped');
});

t.test('an abort written before its request is enqueued still wins', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(3);
  startServer(t, manager, serverOptions(spool));
  const micros = 1_800_000_000_000_000;
  const client = makeClient(t, spool, { idSource: stuckSource(micros, ['abcdef012345']) });
  const predicted = formatRequestId(micros, 'abcdef012345');
  await client.abort(predicted);
  await serverHasLooked(manager);
  t.strictSame(spoolContents(spool).aborting, [predicted], 'the server keeps the early abort');
  const id = await client.enqueue('should never run');
  t.equal(id, predicted, 'the predicted id');
  await waitEmpty(spool, 'request and abort both gone');
  await serverHasLooked(manager);
  t.strictSame(manager.started, [], 'it never started');
  await t.rejects(client.wait(id), UnknownRequestError);
});

t.test('wait times out while pending: timeout error, then the request is aborted', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(0);
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const id = await client.enqueue('slow queue');
  await waitFor(() => spoolContents(spool).pending.includes(id), 'pending');
  await t.rejects(client.wait(id, { timeoutMs: 100 }), { name: 'WorkQueueTimeoutError', requestId: id });
  await waitEmpty(spool, 'the timed-out request is gone');
  manager.setCapacity(1);
  await serverHasLooked(manager);
  t.strictSame(manager.started, [], 'it never starts');
  await t.rejects(client.wait(id), UnknownRequestError, 'and there is nothing left to wait for');
});

t.test('the timeout error names the request and the timeout', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(0);
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const id = await client.enqueue('x');
  try {
    await client.wait(id, { timeoutMs: 80 });
    t.fail('should time out');
  } catch (err) {
    t.type(err, WorkQueueTimeoutError);
    t.match(err, { code: 'ERR_TIMEOUT', requestId: id, timeoutMs: 80, deadline: 'total' });
  }
  await waitEmpty(spool, 'aborted after the timeout');
});

t.test('wait times out while running: the task is terminated and no result appears', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(1);
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const id = await client.enqueue('slow task');
  await waitFor(() => manager.started.length === 1, 'running');
  await t.rejects(client.wait(id, { timeoutMs: 100 }), { name: 'WorkQueueTimeoutError', requestId: id });
  await waitFor(() => manager.terminated.includes(id), 'terminated');
  await waitEmpty(spool, 'the timed-out request is gone');
  manager.finishLate(id);
  await serverHasLooked(manager);
  t.strictSame(spoolContents(spool), EMPTY, 'a late outcome leaves nothing behind');
});

t.test('a run timeout set at enqueue: the server terminates the task and answers timed_out', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(1);
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const id = await client.enqueue('never ends', { runTimeoutMs: 50 });
  await waitFor(() => manager.terminated.includes(id), 'terminated at its run timeout');
  const err = await client.wait(id).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, WorkQueueTimeoutError);
  t.match(err, { requestId: id, timeoutMs: 50, deadline: 'run' });
  t.strictSame(manager.startedIds, [id]);
  manager.finishLate(id);
  await serverHasLooked(manager);
  t.strictSame(spoolContents(spool), EMPTY, 'a late outcome leaves nothing behind');
});

t.test('a run timeout does not terminate a task the manager says has ended: its own outcome is published', async (t) => {
  // A manager whose task ends at once but whose outcome is not ready yet (a command's output
  // draining). It has ended from its start, so a loaded machine cannot let the deadline pass first.
  class EndingManager extends ScriptedTaskManager {
    readonly ended = new Set<string>();
    override startTask(id: string, request: unknown): void {
      super.startTask(id, request);
      this.ended.add(id);
    }
    hasEnded(id: string): boolean {
      return this.ended.has(id);
    }
  }
  // Also through LoadAwareTaskManager (wq serve --max-load), which must pass hasEnded on.
  for (const wrapped of [false, true]) {
    await t.test(wrapped ? 'wrapped by LoadAwareTaskManager' : 'the manager itself', async (t) => {
      const manager = new EndingManager(1);
      const logger = new RecordingLogger();
      const served = wrapped ? new LoadAwareTaskManager(manager, { maxLoad: 1, load: () => 0 }) : manager;
      const spool = spoolDir(t);
      startServer(t, served, serverOptions(spool, { logger }));
      const client = makeClient(t, spool);
      const id = await client.enqueue('ends in time', { runTimeoutMs: 50 });
      await waitFor(() => manager.startedIds.includes(id), 'the task to start');
      await waitFor(() => logger.find('run timeout passed after the task had ended; its own result stands').length === 1, 'the server to act on the run timeout');
      t.strictSame(manager.terminated, [], 'the task was not terminated');
      manager.finish(id);
      const result = await client.waitForResult(id);
      t.match(result, { ok: true, status: 'normal', value: `done ${id}` }, 'its own outcome, not timed_out');
    });
  }
});

t.test('the full lifecycle leaves every state directory empty', async (t) => {
  for (const variant of [{}, { durable: true }, { watch: false }] as const) {
    await t.test(JSON.stringify(variant), async (t) => {
      const spool = spoolDir(t);
      const seen: string[] = [];
      const client = new WorkQueueClient({ spool, recheckIntervalMs: 50, ...('durable' in variant ? variant : {}) });
      t.teardown(() => client.close());
      const manager = new InProcessTaskManager((request: { argv: string[] }, { id }) => {
        seen.push(client.state(id) ?? 'none');
        return { echoed: request.argv };
      });
      startServer(t, manager, serverOptions(spool, variant));
      const id = await client.enqueue({ argv: ['echo', 'hi'] });
      const result = await client.waitForResult(id, { timeoutMs: 10_000 });
      t.match(result, { id, ok: true, status: 'normal', value: { echoed: ['echo', 'hi'] } });
      t.ok(result.queuedAt! <= result.startedAt! && result.startedAt! <= result.finishedAt, 'timestamps in order');
      t.strictSame(seen, ['running'], 'the task ran while its request was in running/');
      t.strictSame(spoolContents(spool), EMPTY);
    });
  }
});

t.test("a task's failure reaches the client as TaskFailedError", async (t) => {
  const spool = spoolDir(t);
  class QuotaError extends Error {
    code = 'E_QUOTA';
    constructor(message: string) {
      super(message);
      this.name = 'QuotaError';
    }
  }
  const manager = new InProcessTaskManager((req: string) => {
    if (req === 'string') throw 'plain string thrown';
    throw new QuotaError(`out of quota for ${req}`);
  });
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const id = await client.enqueue('disk');
  const err = await client.wait(id).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, TaskFailedError);
  const failed = err as TaskFailedError;
  t.equal(failed.requestId, id);
  t.equal(failed.code, 'E_QUOTA', 'the remote code is the error code');
  t.match(failed.remote, { name: 'QuotaError', message: 'out of quota for disk', code: 'E_QUOTA' });
  t.match(failed.remote.stack, /QuotaError: out of quota for disk/, 'the remote stack travels');
  t.type(failed.cause, Error);
  t.equal((failed.cause as Error).message, 'out of quota for disk');
  t.equal((failed.cause as Error).name, 'QuotaError');
  t.match(failed.message, /QuotaError: out of quota for disk/);

  const id2 = await client.enqueue('string');
  const result = await client.waitForResult(id2);
  t.match(result, { ok: false, status: 'error', error: { name: 'Error', message: 'plain string thrown' } });
  await waitEmpty(spool, 'failures are claimed like results');
});

t.test('a manager whose startTask throws fails just that request', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(1);
  manager.failStarts = Object.assign(new Error('cannot fork'), { code: 'EAGAIN' });
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const id = await client.enqueue('x');
  await t.rejects(client.wait(id), { name: 'TaskFailedError', code: 'EAGAIN', remote: { message: 'cannot fork' } });
  manager.failStarts = undefined;
  const next = await client.enqueue('y');
  await waitFor(() => manager.started.length === 1, 'the next one starts');
  manager.finish(next);
  t.equal(await client.wait(next), `done ${next}`);
});

t.test('restart with queued work: the next server runs it in FIFO order', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const first = new ScriptedTaskManager(0);
  const one = startServer(t, first, serverOptions(spool));
  const early = await enqueueMany(client, 4);
  await waitFor(() => spoolContents(spool).pending.length === 4, 'admitted');
  await one.stop();
  t.ok(first.closed, 'the manager was closed');
  t.strictSame(spoolContents(spool).pending, early, 'pending work is kept across the stop');
  const late = await enqueueMany(client, 2); // while no server runs
  const second = new ScriptedTaskManager(0);
  const { server } = startServer(t, second, serverOptions(spool));
  await waitFor(() => server.counts.pending === 6, 'all six queued again');
  second.setCapacity(10);
  await waitFor(() => second.started.length === 6, 'all six start');
  t.strictSame(second.startedIds, [...early, ...late], 'in id order');
  t.strictSame(second.started.map((s) => s.request), [0, 1, 2, 3, 0, 1].map((n) => ({ n })));
});

t.test('restart with running work: rerun by default', async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const first = new ScriptedTaskManager(1);
  const one = startServer(t, first, serverOptions(spool));
  const [a, b] = await enqueueMany(client, 2);
  await waitFor(() => first.started.length === 1, 'a running');
  await one.stop();
  t.strictSame(first.terminated, [a], 'the running task is stopped at shutdown');
  t.strictSame(spoolContents(spool).running, [a], 'and left in running/');

  const second = new ScriptedTaskManager(2);
  startServer(t, second, serverOptions(spool));
  await waitFor(() => second.started.length === 2, 'both start');
  t.strictSame(second.startedIds, [a, b], 'the interrupted request runs again, first');
  second.finish(a!, { ok: true, value: 'second time lucky' });
  t.equal(await client.wait(a!), 'second time lucky');
});

t.test("restart with running work and interrupted: 'fail'", async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const first = new ScriptedTaskManager(1);
  const one = startServer(t, first, serverOptions(spool));
  const [a, b] = await enqueueMany(client, 2);
  await waitFor(() => first.started.length === 1, 'a running');
  await one.stop();

  const second = new ScriptedTaskManager(2);
  startServer(t, second, serverOptions(spool, { interrupted: 'fail' }));
  const err = await client.wait(a!).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, TaskFailedError);
  t.match(err, { code: 'ERR_SERVER_RESTARTED', requestId: a, remote: { code: 'ERR_SERVER_RESTARTED', name: 'ServerRestartedError' } });
  await waitFor(() => second.started.length === 1, 'b starts');
  t.strictSame(second.startedIds, [b], 'the interrupted request is not run again');
});

t.test("restart: a request whose result was published is not run again", async (t) => {
  const spool = spoolDir(t);
  const client = makeClient(t, spool);
  const id = await client.enqueue('done before the crash');
  // What a server that died between publishing a result and removing running/<id> leaves.
  const result = encodeResult({ id, ok: true, status: 'normal', value: 'kept', finishedAt: 1 });
  renameSync(join(spool, 'requested', id), join(spool, 'running', id));
  writeFileSync(join(spool, 'complete', id), result);
  const manager = new ScriptedTaskManager(1);
  startServer(t, manager, serverOptions(spool));
  await serverHasLooked(manager);
  t.strictSame(manager.started, []);
  t.strictSame(spoolContents(spool).running, [], 'the leftover is removed');
  t.equal(await client.wait(id), 'kept');
});

t.test('a second server on the same spool is refused', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(1);
  startServer(t, manager, serverOptions(spool));
  const intruder = new ScriptedTaskManager(1);
  const err = await new WorkQueueServer(serverOptions(spool)).processRequests(intruder).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, SpoolLockedError);
  t.match(err, { code: 'ERR_SPOOL_LOCKED', ownerPid: process.pid });
  const client = makeClient(t, spool);
  const id = await client.enqueue('for the first server');
  await waitFor(() => manager.started.length === 1, 'the first server still serves');
  t.strictSame(intruder.started, [], 'the refused server started nothing');
  manager.finish(id);
  t.equal(await client.wait(id), `done ${id}`);
});

t.test('waiting on an id nobody enqueued rejects with UnknownRequestError', async (t) => {
  const spool = spoolDir(t);
  startServer(t, new ScriptedTaskManager(1), serverOptions(spool));
  const client = makeClient(t, spool);
  const ghost = formatRequestId(1_700_000_000_000_000, '0123456789ab');
  const err = await client.wait(ghost).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, UnknownRequestError);
  t.match(err, { code: 'ERR_UNKNOWN_REQUEST', requestId: ghost });
  t.strictSame(spoolContents(spool).aborting, [], 'an unknown id is not aborted');
});

t.test('cancelling a wait through an AbortSignal aborts the request', async (t) => {
  const spool = spoolDir(t);
  const manager = new ScriptedTaskManager(1);
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const [running, queued] = await enqueueMany(client, 2);
  await waitFor(() => manager.started.length === 1 && spoolContents(spool).pending.length === 1, 'one running, one queued');

  for (const id of [queued!, running!]) {
    const controller = new AbortController();
    const waiting = client.wait(id, { signal: controller.signal });
    const reason = new Error(`user gave up on ${id}`);
    controller.abort(reason);
    const err = await waiting.then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, WorkQueueCancelledError);
    t.match(err, { code: 'ERR_CANCELLED', requestId: id });
    t.equal((err as Error).cause, reason, 'the reason is the cause');
  }
  await waitEmpty(spool, 'both cancelled requests are gone');
  t.strictSame(manager.terminated, [running], 'the running one was terminated');
  t.strictSame(manager.startedIds, [running], 'the queued one never started');

  const id = await client.enqueue('already cancelled');
  const controller = new AbortController();
  controller.abort();
  await t.rejects(client.wait(id, { signal: controller.signal }), WorkQueueCancelledError, 'a signal aborted before the wait');
  await waitEmpty(spool, 'that one is gone too');
});

t.test('a result that cannot be stored reaches the client as a failure, and the server carries on', async (t) => {
  const spool = spoolDir(t);
  const manager = new InProcessTaskManager((req: string) => {
    if (req === 'map') return new Map([['a', 1]]);
    if (req === 'function') return { f: () => 1 };
    return `fine: ${req}`;
  });
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  for (const kind of ['map', 'function']) {
    const id = await client.enqueue(kind);
    const result = await client.waitForResult(id);
    t.match(result, { id, ok: false, status: 'error', error: { name: 'ProtocolError', code: 'ERR_PROTOCOL', message: /cannot be stored/ } }, kind);
    t.equal(result.value, undefined, 'no value');
  }
  const id = await client.enqueue('map');
  await t.rejects(client.wait(id), { name: 'TaskFailedError', code: 'ERR_PROTOCOL' });
  t.equal(await client.run('ok'), 'fine: ok', 'the server is still serving');
  t.strictSame(spoolContents(spool), EMPTY);
});

t.test('an unreadable request file gets a rejected result the client can wait for', async (t) => {
  const spool = spoolDir(t);
  const calls: unknown[] = [];
  const manager = new InProcessTaskManager((req: unknown) => {
    calls.push(req);
    return 'ran';
  });
  startServer(t, manager, serverOptions(spool));
  const client = makeClient(t, spool);
  const valid = encodeRequest({ body: 'x', submittedAt: 1, client: { pid: 1, host: 'h' } });
  const planted: Record<string, Buffer> = {
    garbage: Buffer.from('this is not msgpack \u0000\u00ff'),
    empty: Buffer.alloc(0),
    truncated: valid.subarray(0, valid.length - 3),
    'another version': new Packr({ useRecords: false }).pack({ v: 99, type: 'request', body: 'x', submittedAt: 1, client: { pid: 1, host: 'h' } }),
    'a result, not a request': new Packr({ useRecords: false }).pack({ v: 1, type: 'result', id: 'x', ok: true, status: 'normal', finishedAt: 1 }),
  };
  let n = 0;
  for (const [what, bytes] of Object.entries(planted)) {
    const id = formatRequestId(1_800_000_000_000_000 + n++, 'badbadbadbad');
    // Written in full, then given its public name, as any publisher would.
    const temp = join(spool, 'tmp', `plant.${n}`);
    writeFileSync(temp, bytes);
    renameSync(temp, join(spool, 'requested', id));
    const result = await client.waitForResult(id, { timeoutMs: 10_000 });
    t.match(result, { id, ok: false, status: 'rejected', error: { name: 'ProtocolError' } }, what);
  }
  const id = formatRequestId(1_800_000_000_000_000 + n++, 'badbadbadbad');
  writeFileSync(join(spool, 'tmp', 'plant.last'), 'garbage');
  renameSync(join(spool, 'tmp', 'plant.last'), join(spool, 'requested', id));
  await t.rejects(client.wait(id), { name: 'TaskFailedError', code: 'ERR_PROTOCOL' }, 'wait() throws it');
  t.strictSame(calls, [], 'no handler ever saw a bad request');
  t.equal(await client.run('good'), 'ran', 'good requests still run');
  t.strictSame(spoolContents(spool), EMPTY);
});

t.test('a rescan that hits a file-system error is logged and retried, not thrown', async (t) => {
  // A tmp cleaner (systemd-tmpfiles, tmpwatch) removing the empty requested/
  // makes the periodic rescan fail with ENOENT; EMFILE or EACCES would do the same.
  const spool = spoolDir(t);
  const logged: string[] = [];
  const logger = { debug() {}, info() {}, warn() {}, error: (message: string) => void logged.push(message) };
  const manager = new ScriptedTaskManager(1);
  const { done } = startServer(t, manager, serverOptions(spool, { logger }));
  let stopped = false;
  void done.finally(() => (stopped = true));
  const escaped: Error[] = [];
  const monitor = (err: Error): void => void escaped.push(err);
  process.on('uncaughtExceptionMonitor', monitor);
  t.teardown(() => void process.off('uncaughtExceptionMonitor', monitor));
  const client = makeClient(t, spool);
  const first = await client.enqueue('before');
  await waitFor(() => manager.started.length === 1, 'the server serves');

  rmdirSync(join(spool, 'requested'));
  await waitFor(() => logged.length > 0 || escaped.length > 0, 'the rescan to fail');
  t.strictSame(escaped.map(String), [], 'nothing escapes the server as an uncaught exception');
  if (escaped.length > 0) return; // tap has ended this test; leave the spool alone
  t.notOk(stopped, 'the server is still running');
  mkdirSync(join(spool, 'requested'));
  manager.finish(first);
  t.equal(await client.wait(first), `done ${first}`);
  const second = await client.enqueue('after');
  await waitFor(() => manager.started.length === 2, 'the server still serves');
  manager.finish(second);
  t.equal(await client.wait(second), `done ${second}`);
});

t.test('names that are not ids are ignored without crashing', async (t) => {
  for (const watch of [true, false]) {
    await t.test(`watch: ${watch}`, async (t) => {
      const spool = spoolDir(t);
      const junk = ['README', '.hidden', 'x y', '1795366421947895-8D42B22AD816', '1795366421947895-8d42b22ad816.tmp', '~lock'];
      for (const dir of ['requested', 'pending', 'running', 'aborting']) {
        mkdirSync(join(spool, dir), { recursive: true });
        for (const name of junk) writeFileSync(join(spool, dir, name), 'junk');
        mkdirSync(join(spool, dir, 'a-directory'));
      }
      const manager = new ScriptedTaskManager(1);
      startServer(t, manager, serverOptions(spool, { watch })); // junk found at start
      const client = makeClient(t, spool);
      const runOne = async (body: string): Promise<unknown> => {
        const id = await client.enqueue(body);
        await waitFor(() => manager.startedIds.includes(id), `${body} starts`);
        manager.finish(id, { ok: true, value: body });
        return client.wait(id);
      };
      t.equal(await runOne('first'), 'first');
      for (const name of junk) writeFileSync(join(spool, 'requested', `${name}.late`), 'junk'); // found while serving
      writeFileSync(join(spool, 'aborting', 'not-an-id'), '');
      await serverHasLooked(manager);
      await serverHasLooked(manager);
      t.equal(await runOne('second'), 'second', 'the server is still serving');
      t.strictSame(manager.started.map((s) => s.request), ['first', 'second'], 'junk never started');
      const left = spoolContents(spool);
      t.strictSame(left.requested, [...junk, ...junk.map((n) => `${n}.late`), 'a-directory'].sort(), 'junk in requested/ left alone');
      t.strictSame(left.pending, [...junk, 'a-directory'].sort(), 'junk in pending/ left alone');
      t.strictSame(left.running, [...junk, 'a-directory'].sort(), 'junk in running/ left alone');
      t.strictSame(left.aborting, [...junk, 'a-directory', 'not-an-id'].sort(), 'junk in aborting/ left alone');
      t.strictSame(left.complete, []);
      t.equal(readFileSync(join(spool, 'requested', 'README'), 'utf8'), 'junk', 'contents untouched');
    });
  }
});
